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

/// Real Xen, on a control domain: `/dev/xen/evtchn`, `/dev/xen/privcmd`
/// (with `/dev/xen/gntdev` for guests' xenstore pages), and dom0's own
/// ring when dom0's kernel left one for a local xenstored
/// (`/proc/xen/xsd_kva`).
pub(crate) fn xen() -> io::Result<Platform> {
    use xen_platform::xen::{XenDom0Store, XenDomainStates, XenEventChannels, XenForeignMemory};
    Ok(Platform {
        events: Box::new(XenEventChannels::open()?),
        memory: Box::new(XenForeignMemory::open()?),
        domains: Box::new(XenDomainStates::open()?),
        dom0_store: Box::new(XenDom0Store::new()),
    })
}
