//! Finding the daemon from inside a hosted guest (a process the hosted
//! hypervisor of [`xen_platform::hosted`] started as a domain): there is no
//! kernel xenbus driver and no daemon socket meant for it, only the
//! domain's own ring page and event channel, inherited from the
//! hypervisor.

use std::io;

use xen_platform::hosted::{GuestStart, Host, ENV_HYPERVISOR_FD};

use super::{SharedRing, Transport};

/// Whether [`super::connect_default`] should use the guest's ring: inside a
/// hosted guest (`XSIM_HYPERVISOR_FD` set) unless `XENSTORED_PATH` names a
/// daemon explicitly. Checked before the default socket path, which on a
/// hosted machine is the host's daemon (dom0's connection), not ours.
pub fn in_hosted_guest() -> bool {
    std::env::var_os(ENV_HYPERVISOR_FD).is_some() && std::env::var_os("XENSTORED_PATH").is_none()
}

/// Connects over this hosted guest's xenstore ring: asks the hypervisor
/// (through the inherited socket) for the ring page and port, claims the
/// port on an event-channel handle, and resets the ring (a reconnection,
/// if the daemon supports it) so that nothing an earlier process of this
/// domain left in it is taken for ours. The hosted hypervisor hands the
/// start information out once per process, so this works once per process
/// (`EBUSY` after).
pub fn connect_guest_ring() -> io::Result<Box<dyn Transport>> {
    let (host, start) = Host::from_guest_env()?;
    ring_of(&host, start)
}

/// [`connect_guest_ring`] for a guest that adopted its hypervisor
/// connection itself (to report its own shutdown, say, with
/// [`Host::shutdown_self`]): the ring `start` describes.
pub fn ring_of(host: &Host, start: GuestStart) -> io::Result<Box<dyn Transport>> {
    // The host connection stays alive inside the event-channel handle
    // (which holds a clone of it) for as long as the transport.
    let mut events = host.event_channels()?;
    let port = events.claim(start.store_port)?;
    let ring = SharedRing::new(start.store_page, Box::new(events), port)?;
    ring.reconnect()?;
    Ok(Box::new(ring))
}
