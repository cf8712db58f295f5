//! Choosing the platform the daemon serves domains through.

use std::io;
use std::path::Path;

use xenstored::Platform;

/// The hosted hypervisor at `socket` (dom0's view: event channels,
/// foreign mapping, domain states; no dom0 ring: dom0 uses the socket).
pub(crate) fn hosted(socket: &Path) -> io::Result<Platform> {
    let host = xen_platform::hosted::Host::connect(socket)?;
    Ok(Platform {
        events: Box::new(host.event_channels()?),
        memory: Box::new(host.foreign_memory()),
        domains: Box::new(host.domain_states()),
        dom0_store: Box::new(host.dom0_store()),
    })
}
