//! Domains' shared rings: INTRODUCE maps a guest's xenstore page and binds
//! its event channel; each ring is then served like a socket connection,
//! as an unprivileged caller with the guest's domid.
//!
//! All rings share one pollable event-channel handle: one notification
//! wakes the loop, which asks the handle which ports are pending and
//! serves those rings only (nothing is O(domains) per request). The
//! domain-exception interrupt (VIRQ_DOM_EXC) arrives on the same handle;
//! only then does the daemon list domains, to learn which have shut down
//! or gone.

use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use xen_platform::{DomId, DomainStates, EventChannels, ForeignMemory, MappedPages, Notifier, Port};
use xenstore_db::ConnId;
use xenstore_ring::{MappedServer, Notify, RING_SIZE};

use crate::outbox::Outbox;

/// What the daemon needs of the platform to serve domains.
#[derive(Debug)]
pub struct Platform {
    /// The daemon's event channels: every ring's port and VIRQ_DOM_EXC.
    pub events: Box<dyn EventChannels>,
    /// Mapping guests' xenstore pages.
    pub memory: Box<dyn ForeignMemory>,
    /// Domain states, read when VIRQ_DOM_EXC fires.
    pub domains: Box<dyn DomainStates>,
}

/// How the ring signals the guest. The ring layer asks for a
/// notification after every index update; this only records the wish, and
/// the loop sends one notification per ring per iteration
/// ([`DomainRing::kick`]), after it has read the requests and written the
/// replies: one wake-up of the guest per round trip instead of two.
#[derive(Debug)]
pub(crate) struct RingNotify {
    wanted: Arc<AtomicBool>,
}

impl Notify for RingNotify {
    fn notify(&mut self) {
        self.wanted.store(true, Ordering::Relaxed);
    }
}

/// One domain's ring connection.
#[derive(Debug)]
pub(crate) struct DomainRing {
    pub(crate) domid: DomId,
    pub(crate) port: Port,
    pub(crate) server: MappedServer<MappedPages, RingNotify>,
    pub(crate) outbox: Outbox,
    /// The ring layer asked to notify the guest.
    wanted: Arc<AtomicBool>,
    notifier: Notifier,
    /// Signalling the guest failed.
    broken: bool,
    /// The error indicator is set: nothing is served until the guest
    /// reconnects.
    pub(crate) stopped: bool,
    /// Reading is paused until the outbox drains (backpressure).
    pub(crate) paused: bool,
}

impl DomainRing {
    /// Serves `pages` for `domid`, signalling it through `notifier`.
    pub(crate) fn new(domid: DomId, port: Port, pages: MappedPages, notifier: Notifier) -> DomainRing {
        let wanted = Arc::new(AtomicBool::new(false));
        let notify = RingNotify { wanted: wanted.clone() };
        DomainRing {
            domid,
            port,
            server: MappedServer::new(pages, notify),
            outbox: Outbox::default(),
            wanted,
            notifier,
            broken: false,
            stopped: false,
            paused: false,
        }
    }

    /// Sends the notification the ring layer asked for since the last
    /// kick, if any. The index updates it announces happened before (the
    /// ring layer fenced after each), so the guest sees them when woken.
    pub(crate) fn kick(&mut self) {
        if self.wanted.swap(false, Ordering::Relaxed) && self.notifier.notify().is_err() {
            self.broken = true;
        }
    }

    /// Whether signalling the guest has failed.
    pub(crate) fn channel_broken(&self) -> bool {
        self.broken
    }
}

/// The rings being served, by connection, port and domain.
#[derive(Debug)]
pub(crate) struct Rings {
    pub(crate) platform: Platform,
    /// The port bound to VIRQ_DOM_EXC.
    pub(crate) virq_port: Port,
    pub(crate) by_conn: HashMap<ConnId, DomainRing>,
    pub(crate) by_port: HashMap<Port, ConnId>,
    pub(crate) by_domid: HashMap<DomId, ConnId>,
    /// Rings that used up their budget: served again at the next loop
    /// iteration, after the others had their turn.
    pub(crate) more: Vec<ConnId>,
    /// Scratch for pending ports.
    pub(crate) pending: Vec<Port>,
}

impl Rings {
    /// Binds VIRQ_DOM_EXC and gets ready to serve rings.
    pub(crate) fn new(mut platform: Platform) -> io::Result<Rings> {
        let virq_port = platform.events.bind_virq(xen_platform::Virq::DomExc)?;
        Ok(Rings {
            platform,
            virq_port,
            by_conn: HashMap::new(),
            by_port: HashMap::new(),
            by_domid: HashMap::new(),
            more: Vec::new(),
            pending: Vec::new(),
        })
    }

    /// Maps a domain's page and binds its port: the platform half of
    /// INTRODUCE.
    pub(crate) fn attach(&mut self, domid: DomId, gfn: u64, port: u32) -> io::Result<DomainRing> {
        let pages = self.platform.memory.map_foreign(domid, gfn, 1)?;
        let local = self.platform.events.bind_interdomain(domid, port)?;
        match self.platform.events.notifier(local) {
            Ok(notifier) => Ok(DomainRing::new(domid, local, pages, notifier)),
            Err(e) => {
                let _ = self.platform.events.unbind(local);
                Err(e)
            }
        }
    }

    /// Starts serving a ring as connection `conn`.
    pub(crate) fn insert(&mut self, conn: ConnId, ring: DomainRing) {
        self.by_port.insert(ring.port, conn);
        self.by_domid.insert(ring.domid, conn);
        self.by_conn.insert(conn, ring);
    }

    /// Stops serving a domain's ring: unbinds the port and unmaps the page.
    /// Returns the connection it was served as.
    pub(crate) fn remove_domain(&mut self, domid: DomId) -> Option<ConnId> {
        let conn = self.by_domid.remove(&domid)?;
        if let Some(ring) = self.by_conn.remove(&conn) {
            self.by_port.remove(&ring.port);
            let _ = self.platform.events.unbind(ring.port);
        }
        Some(conn)
    }
}

/// The response queue of a ring as a byte sink for an [`Outbox`]: one
/// ring write (and so one notification) per flush of up to a ring-full.
pub(crate) struct RingSink<'a>(pub(crate) &'a mut MappedServer<MappedPages, RingNotify>);

impl Write for RingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut gathered = [0u8; RING_SIZE];
        let mut len = 0;
        for buf in bufs {
            let n = buf.len().min(RING_SIZE - len);
            gathered[len..len + n].copy_from_slice(&buf[..n]);
            len += n;
            if len == RING_SIZE {
                break;
            }
        }
        if len == 0 {
            return Ok(0);
        }
        match self.0.write(&gathered[..len]) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
