//! Real Xen: the platform traits over Linux's `/dev/xen/*` devices
//! (feature `xen`).
//!
//! | type | trait | device |
//! | --- | --- | --- |
//! | [`XenEventChannels`] | [`EventChannels`](crate::EventChannels) | `/dev/xen/evtchn` |
//! | [`XenForeignMemory`] | [`ForeignMemory`](crate::ForeignMemory) | `/dev/xen/privcmd` (and `/dev/xen/gntdev` for a guest's xenstore page) |
//! | [`XenGrants`] | [`Grants`](crate::Grants) | `/dev/xen/gntdev` to map, `/dev/xen/gntalloc` to grant |
//! | [`XenDomainStates`] | [`DomainStates`](crate::DomainStates) | `/dev/xen/privcmd` (a sysctl hypercall), `/dev/xen/hypercall` for its buffer |
//! | [`XenDom0Store`] | [`Dom0Store`](crate::Dom0Store) | `/proc/xen/xsd_kva`, `/dev/xen/xenbus_backend` or `/proc/xen/xsd_port` |
//!
//! [`detect`] says whether this is a Xen control domain, where the daemon
//! should use these. Each `open` fails with an error naming the device and
//! what may be missing (`opening /dev/xen/evtchn: No such file or directory
//! (is this a Xen domain with the xen-evtchn module loaded?)`).
//!
//! # Mappings and `fork`
//!
//! Linux does not copy privcmd's and gntdev's mappings into a child
//! (`VM_DONTCOPY`), and on a PV dom0 a gntdev file maps only into the
//! address space of the process that opened it: pages mapped by [`XenForeignMemory`] or
//! [`XenGrants`] are not mapped in a process forked afterwards, so a
//! daemon maps them (and lets gntdev be opened, which happens at the
//! first grant mapping) after daemonizing. Descriptors, event-channel
//! bindings, dom0's ring (`xsd_kva`) and [`XenDomainStates`] (which takes
//! its hypercall buffer again in a new process) survive a fork.
//!
//! # What is checked without Xen
//!
//! The ioctl numbers and structure layouts against the C headers
//! (`tests/c_layout.rs`), the parsing of what the devices return, and the
//! errors when a device is missing. Nothing here has run against a
//! hypervisor on this project's CI; see `docs/DESIGN.md` ("Real Xen").

#[doc(hidden)]
pub mod abi;
mod dom0;
mod domains;
mod evtchn;
mod foreign;
mod grants;

pub use dom0::XenDom0Store;
pub use domains::XenDomainStates;
pub use evtchn::XenEventChannels;
pub use foreign::XenForeignMemory;
pub use grants::XenGrants;

use std::ffi::c_int;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// The event-channel device.
pub const EVTCHN_DEVICE: &str = "/dev/xen/evtchn";
/// The privileged-command device (hypercalls, foreign mapping).
pub const PRIVCMD_DEVICE: &str = "/dev/xen/privcmd";
/// The hypercall-buffer device (Linux 4.18 and later).
pub const HYPERCALL_DEVICE: &str = "/dev/xen/hypercall";
/// The grant-mapping device.
pub const GNTDEV_DEVICE: &str = "/dev/xen/gntdev";
/// The grant-allocating device.
pub const GNTALLOC_DEVICE: &str = "/dev/xen/gntalloc";
/// Dom0's xenbus backend device (dom0's xenstore port).
pub const XENBUS_BACKEND_DEVICE: &str = "/dev/xen/xenbus_backend";
/// Dom0's xenstore page, when xenstored runs in dom0 (xenfs).
pub const XSD_KVA: &str = "/proc/xen/xsd_kva";
/// Dom0's xenstore port, as text (xenfs).
pub const XSD_PORT: &str = "/proc/xen/xsd_port";
/// What this domain may do (xenfs): `control_d` in dom0.
pub const CAPABILITIES: &str = "/proc/xen/capabilities";

/// Whether this is a Xen domain with privileged control, where xenstored
/// should serve domains through this module: `/proc/xen/capabilities`
/// says `control_d`, or, when it cannot be read (xenfs not mounted),
/// `/dev/xen/privcmd` exists.
///
/// A guest with xenfs mounted is not a control domain (its capabilities
/// are empty) even though it has a privcmd device.
pub fn detect() -> bool {
    let capabilities = std::fs::read_to_string(CAPABILITIES).ok();
    is_control_domain(capabilities.as_deref(), Path::new(PRIVCMD_DEVICE).exists())
}

/// [`detect`]'s rule, on what it read.
fn is_control_domain(capabilities: Option<&str>, privcmd_exists: bool) -> bool {
    match capabilities {
        Some(text) => text.split(|c: char| c.is_whitespace() || c == ',').any(|word| word == "control_d"),
        None => privcmd_exists,
    }
}

/// An error of this module: what was being done, and the system's error.
/// Wrapped in an `io::Error` of the same kind, so that callers see one
/// line (`opening /dev/xen/evtchn: No such file or directory (...)`) and
/// can still reach the errno ([`errno`]).
#[derive(Debug)]
struct XenError {
    context: String,
    source: io::Error,
    hint: Option<&'static str>,
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, describe(&self.source))?;
        if let Some(hint) = self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for XenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `source` as an error saying what was being done.
pub(crate) fn context(source: io::Error, context: impl Into<String>) -> io::Error {
    let kind = source.kind();
    io::Error::new(kind, XenError { context: context.into(), source, hint: None })
}

/// The errno behind an error of this module (or any `io::Error`).
pub(crate) fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| errno(&e.get_ref()?.downcast_ref::<XenError>()?.source))
}

/// The system's text for an error, without std's ` (os error N)`.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_owned(),
        _ => text,
    }
}

/// Opens a Xen device read-write, close-on-exec (and non-blocking when
/// asked); the error names it and says what may be missing (`hint`).
pub(crate) fn open_device(path: &Path, nonblocking: bool, hint: &'static str) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDWR | OFlags::CLOEXEC;
    if nonblocking {
        flags |= OFlags::NONBLOCK;
    }
    rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
        let source = io::Error::from(e);
        let kind = source.kind();
        io::Error::new(kind, XenError { context: format!("opening {}", path.display()), source, hint: Some(hint) })
    })
}

/// `ioctl(fd, request, arg)`: the call's non-negative result, or its errno.
///
/// # Safety
///
/// `arg` must be valid for every read and write the driver behind `fd`
/// makes for `request` (the structure the request number names, and any
/// memory it points to), for the duration of the call.
pub(crate) unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: u32, arg: *mut T) -> io::Result<c_int> {
    // SAFETY: `fd` is open for the borrow; the caller vouches for `arg`.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), request_number(request), arg) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// An ioctl number as the C library's `ioctl` takes it.
#[cfg(not(target_env = "musl"))]
fn request_number(request: u32) -> libc::Ioctl {
    libc::Ioctl::from(request)
}

/// An ioctl number as the C library's `ioctl` takes it (musl: an `int`,
/// the same bits).
#[cfg(target_env = "musl")]
fn request_number(request: u32) -> libc::Ioctl {
    libc::Ioctl::from_ne_bytes(request.to_ne_bytes())
}

/// An ioctl's non-negative result as a `u32` (a port).
pub(crate) fn non_negative(result: c_int) -> io::Result<u32> {
    u32::try_from(result).map_err(|_| io::Error::other("an ioctl returned a negative result without an error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_domain_when_capabilities_say_control_d() {
        assert!(is_control_domain(Some("control_d\n"), true));
        assert!(is_control_domain(Some("control_d"), false));
    }

    #[test]
    fn guest_with_xenfs_is_not_a_control_domain_even_with_privcmd() {
        assert!(!is_control_domain(Some(""), true));
        assert!(!is_control_domain(Some("\n"), true));
        assert!(!is_control_domain(Some("not_control_d"), true));
    }

    #[test]
    fn without_xenfs_privcmd_decides() {
        assert!(is_control_domain(None, true));
        assert!(!is_control_domain(None, false));
    }

    #[test]
    fn missing_device_error_names_the_device_and_the_module() {
        let e = open_device(
            Path::new("/nonexistent/xen/evtchn"),
            true,
            "is this a Xen domain with the xen-evtchn module loaded?",
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "opening /nonexistent/xen/evtchn: No such file or directory \
             (is this a Xen domain with the xen-evtchn module loaded?)"
        );
        assert_eq!(errno(&e), Some(libc::ENOENT));
    }

    #[test]
    fn context_keeps_the_kind_and_the_errno() {
        let e = context(io::Error::from_raw_os_error(libc::EACCES), "listing domains");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "listing domains: Permission denied");
        assert_eq!(errno(&e), Some(libc::EACCES));
        let outer = context(e, "and then");
        assert_eq!(outer.to_string(), "and then: listing domains: Permission denied");
        assert_eq!(errno(&outer), Some(libc::EACCES));
    }
}
