//! Finding the daemon from inside a hosted guest (a process the hosted
//! hypervisor of [`xen_platform::hosted`] started as a domain): there is no
//! kernel xenbus driver and no daemon socket meant for it, only the
//! domain's own ring page and event channel, inherited from the
//! hypervisor.

use std::io;

use xen_platform::hosted::ENV_HYPERVISOR_FD;

use super::Transport;

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
    // TODO(hosted): `xen_platform::hosted` is outlined but not implemented
    // in the committed tree yet (`Host::from_guest_env`,
    // `Host::event_channels`, `HostedEventChannels::claim`); the next
    // commit replaces this error with the glue.
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "connecting over a hosted guest's xenstore ring is not available yet (xen_platform::hosted)",
    ))
}
