//! Landlock (Linux 5.13 and later), the one part of guest confinement
//! that works without privilege: each guest is put in a Landlock domain
//! of its own before its program runs, and the kernel then refuses it
//! every ptrace-class access to a process outside that domain: opening
//! `/proc/PID/fd/N`, `/proc/PID/mem` or `/proc/PID/environ`, `ptrace`,
//! `process_vm_readv`, `pidfd_getfd`. Sibling guests and dom0's daemons
//! are all outside, so a guest cannot reach their pages or descriptors
//! even when it runs as the same user. From ABI 6 (Linux 6.12) the domain
//! also scopes signals and abstract Unix sockets to itself.
//!
//! Landlock restricts only what a ruleset "handles"; ours handles making
//! device nodes (which no guest needs), so that the ruleset is not empty
//! on kernels before ABI 6, and allows nothing else extra: every other
//! file access stays as the guest's user has it.
//!
//! The system calls have no wrapper in rustix, hence the raw calls here.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// `struct landlock_ruleset_attr` (uapi `linux/landlock.h`), as of ABI 6.
#[repr(C)]
#[derive(Debug, Default)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask for the ABI version.
const CREATE_RULESET_VERSION: u32 = 1 << 0;
/// `LANDLOCK_ACCESS_FS_MAKE_CHAR`.
const ACCESS_FS_MAKE_CHAR: u64 = 1 << 6;
/// `LANDLOCK_ACCESS_FS_MAKE_BLOCK`.
const ACCESS_FS_MAKE_BLOCK: u64 = 1 << 11;
/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// `LANDLOCK_SCOPE_SIGNAL` (ABI 6).
const SCOPE_SIGNAL: u64 = 1 << 1;
/// The first ABI with scopes.
const ABI_SCOPES: u32 = 6;

/// The kernel's Landlock ABI version, or `None` when Landlock is not
/// built in or not enabled.
pub(crate) fn abi() -> Option<u32> {
    // SAFETY: with a null attribute, size 0 and the VERSION flag the call
    // reads no memory; it returns the ABI version or -1.
    let version = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, ptr::null::<RulesetAttr>(), 0usize, CREATE_RULESET_VERSION)
    };
    u32::try_from(version).ok().filter(|&v| v > 0)
}

/// A ruleset for one guest under ABI `abi` (see the module documentation).
pub(super) fn ruleset(abi: u32) -> io::Result<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: ACCESS_FS_MAKE_CHAR | ACCESS_FS_MAKE_BLOCK,
        handled_access_net: 0,
        scoped: if abi >= ABI_SCOPES { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 },
    };
    // A kernel older than ABI 6 knows a shorter attribute and accepts the
    // longer one as long as the fields it does not know are zero, as they
    // are here below ABI 6 (`handled_access_net` always is).
    let size = std::mem::size_of::<RulesetAttr>();
    // SAFETY: `attr` is a live, initialised `landlock_ruleset_attr` of
    // `size` bytes; the call only reads it and returns a new descriptor
    // (close-on-exec, as every Landlock ruleset fd) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, ptr::from_ref(&attr), size, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("ruleset fd out of range"))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Puts the calling process in a new Landlock domain made from `ruleset`.
/// The caller must have set no_new_privs. Async-signal-safe: it runs in
/// the forked child before exec.
pub(super) fn restrict_self(ruleset: BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: one system call on a descriptor the caller keeps open for
    // the duration; no memory is passed.
    let result = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
