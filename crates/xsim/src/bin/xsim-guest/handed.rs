//! Descriptors the hypervisor opened for this guest in its namespaces and
//! named in its environment (`XSIM_FUSE_FD`, `XSIM_TAP_FD`): a guest may
//! not mount, and `/dev/net/tun` is often root's alone.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// The character device named by the environment variable `var`, taken
/// once (the variable is removed, so nothing else in this process takes
/// it). `None` without the variable, or when it does not name an open
/// character device: a wrong environment must not make us own, and later
/// close, an unrelated file.
pub fn take_char_device(var: &str) -> Option<OwnedFd> {
    let raw: i32 = std::env::var(var).ok()?.parse().ok()?;
    std::env::remove_var(var);
    if raw < 3 {
        return None;
    }
    // SAFETY: the borrow lasts for this call only; fstat on a closed or
    // foreign number fails harmlessly.
    let stat = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(raw) }).ok()?;
    if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_char_device() {
        return None;
    }
    // SAFETY: the hypervisor started this process with `raw` open for it,
    // named by `var`, which was removed above so that nothing else in this
    // process takes it; nothing owns it yet.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}
