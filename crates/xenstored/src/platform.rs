//! Choosing the platform the daemon serves domains through.

use std::io;
use std::path::Path;

use xen_platform::{EventChannelParts, EventChannels};
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
        adopt_events: adopt_hosted,
    })
}

/// The hosted hypervisor at `socket`, with the event-channel handle a
/// live update handed over (its ports still bound).
pub(crate) fn hosted_adopting(socket: &Path, parts: EventChannelParts) -> io::Result<Platform> {
    // A fresh handle is made and dropped unused (nothing bound on it).
    let mut platform = hosted(socket)?;
    platform.events = adopt_hosted(parts)?;
    Ok(platform)
}

fn adopt_hosted(parts: EventChannelParts) -> io::Result<Box<dyn EventChannels>> {
    Ok(Box::new(xen_platform::hosted::HostedEventChannels::adopt(0, parts)?))
}

fn adopt_xen(parts: EventChannelParts) -> io::Result<Box<dyn EventChannels>> {
    Ok(Box::new(xen_platform::xen::XenEventChannels::adopt(parts)?))
}

/// Real Xen with the event-channel handle a live update handed over.
pub(crate) fn xen_adopting(parts: EventChannelParts) -> io::Result<Platform> {
    use xen_platform::xen::{XenDom0Store, XenDomainStates, XenForeignMemory};
    Ok(Platform {
        events: adopt_xen(parts)?,
        memory: Box::new(XenForeignMemory::open()?),
        domains: Box::new(XenDomainStates::open()?),
        dom0_store: Box::new(XenDom0Store::new()),
        adopt_events: adopt_xen,
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
        adopt_events: adopt_xen,
    })
}
