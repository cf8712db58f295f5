//! Who may connect to the listening socket. A socket connection is dom0's
//! (privileged), so its peer must be of dom0: this daemon's user, in its
//! user namespace ([`xen_platform::hosted::peer`] says why that tells
//! any hosted guest apart, whatever it does). A refused connection is
//! closed at once and logged, within a rate a guest connecting in a loop
//! cannot flood.

use std::os::fd::AsFd;
use std::time::Instant;

use tracing::warn;
use xen_platform::hosted::peer::{check_dom0_peer, RefusalLog};

/// The check, with its log's rate limit.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    log: RefusalLog,
}

impl Peers {
    /// Whether the peer of a just-accepted `socket` may be served.
    pub(crate) fn admit(&mut self, socket: &impl AsFd) -> bool {
        match check_dom0_peer(socket.as_fd()) {
            Ok(()) => true,
            Err(refusal) => {
                if let Some(line) = self.log.line("xenstored", &refusal, Instant::now()) {
                    warn!("{line}");
                }
                false
            }
        }
    }
}
