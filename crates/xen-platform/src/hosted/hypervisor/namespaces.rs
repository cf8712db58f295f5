//! A guest's own namespaces, made by the hypervisor because a guest may
//! not make them:
//!
//! - **network** (`DomainConfig::netns`): loopback and a TAP interface,
//!   `xsn0`, with the guest's xensnet MAC and address
//!   ([`crate::share::lan_mac`], [`crate::share::lan_ip`]); the guest
//!   inherits a descriptor attached to it (`XSIM_TAP_FD`), because
//!   `/dev/net/tun` is often root's alone. The interface is persistent
//!   and owned by the guest's user, so a driver that lost the descriptor
//!   can attach again where `/dev/net/tun` is open to all. ICMP echo
//!   sockets allowed, so `ping` works unprivileged.
//! - **mount** (`DomainConfig::fuse`): `/mnt` is a FUSE filesystem mounted
//!   for the guest's user, with every mount of the namespace private; the
//!   guest serves it on the `/dev/fuse` descriptor it inherits (a guest
//!   cannot mount: it has no privilege, runs with `no_new_privs`, and its
//!   Landlock domain forbids mount changes).
//!
//! Namespaces belong to a thread: the guest is spawned from a short-lived
//! thread that made them, configured them (iproute2's `ip` for the
//! network, inheriting the thread's namespace) and then forks the guest,
//! which inherits them too. The hypervisor's own thread never changes
//! namespace; nothing is configured or mounted outside the guest's.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{open, Mode, OFlags};
use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

use crate::DomId;

/// Where the guest's FUSE filesystem is mounted in its namespace.
pub const FUSE_MOUNT: &str = "/mnt";

/// Descriptors the hypervisor opened in a guest's namespaces, for the
/// guest to inherit.
#[derive(Debug, Default)]
pub(super) struct Handed {
    /// The `/dev/fuse` descriptor of its `/mnt` (`XSIM_FUSE_FD`).
    pub(super) fuse: Option<OwnedFd>,
    /// Its TAP interface, attached (`XSIM_TAP_FD`).
    pub(super) tap: Option<OwnedFd>,
}

/// Runs `spawn` in a thread inside new namespaces set up for `domid`
/// (owned by `owner`): a network namespace with its TAP if `net`, a mount
/// namespace with the FUSE mount if `fuse`; `spawn` gets the descriptors
/// to hand the guest.
pub(super) fn in_new_namespaces<T: Send>(
    domid: DomId,
    owner: u32,
    net: bool,
    fuse: bool,
    spawn: impl FnOnce(Handed) -> io::Result<T> + Send,
) -> io::Result<T> {
    if !rustix::process::geteuid().is_root() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "a guest's namespaces need a root hypervisor"));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut handed = Handed::default();
                if net {
                    // SAFETY: the namespace changes for this thread alone
                    // (a network namespace is per thread), which exists
                    // only to make the guest's and ends after the spawn;
                    // nothing else runs on it.
                    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }?;
                    handed.tap = Some(crate::hosted::tap::set_up_lan_namespace(domid, Some(owner))?);
                }
                if fuse {
                    // SAFETY: as above; a new mount namespace takes this
                    // thread's filesystem context with it, which no other
                    // thread shares from here on.
                    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::FS) }?;
                    handed.fuse = Some(mount_fuse(owner)?);
                }
                spawn(handed)
            })
            .join()
            .map_err(|_| io::Error::other("the namespaces' thread panicked"))?
    })
}

/// Makes every mount of the calling thread's (new) mount namespace
/// private, then mounts a FUSE filesystem for `owner` at [`FUSE_MOUNT`];
/// returns its `/dev/fuse` descriptor.
fn mount_fuse(owner: u32) -> io::Result<OwnedFd> {
    mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
    let device = open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let data =
        std::ffi::CString::new(format!("fd={},rootmode=40000,user_id={owner},group_id={owner}", device.as_raw_fd()))
            .map_err(io::Error::other)?;
    mount("xensblk", FUSE_MOUNT, "fuse.xensblk", MountFlags::NOSUID | MountFlags::NODEV, Some(data.as_c_str()))?;
    Ok(device)
}
