//! Descriptors handed from a process to the program it executes: the
//! listening socket, the connections and the event-channel handle of a
//! xenstored live update.
//!
//! Everything this workspace opens is close-on-exec, so that no child
//! inherits a domain's pages or channels by accident. A live update clears
//! the flag on exactly the descriptors it hands over
//! ([`keep_across_exec`]); the new program takes each number named in the
//! state it was given back into ownership ([`adopt_inherited`]), which
//! sets the flag again.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::{fcntl_getfd, fcntl_setfd, Errno, FdFlags};

/// Lets `fd` survive the next `exec` (clears close-on-exec).
pub fn keep_across_exec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl_getfd(fd)?;
    fcntl_setfd(fd, flags.difference(FdFlags::CLOEXEC))?;
    Ok(())
}

/// Makes `fd` close-on-exec again (a live update that failed).
pub fn close_on_exec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl_getfd(fd)?;
    fcntl_setfd(fd, flags | FdFlags::CLOEXEC)?;
    Ok(())
}

/// Takes ownership of descriptor `raw`, inherited across `exec` from the
/// program that ran before, and makes it close-on-exec again. `EBADF` if
/// the number is not open (a state that names descriptors this process
/// did not inherit is refused rather than trusted), `EINVAL` if negative.
///
/// The caller must adopt each number once: two owners of one number would
/// close it twice. A state naming a number twice must be refused before
/// (the live-update loader checks that its numbers are distinct).
pub fn adopt_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(Errno::INVAL.into());
    }
    // SAFETY: the borrow lasts for this call only; fcntl on a number that
    // is not open fails with EBADF and touches nothing.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl_getfd(borrowed)?;
    // SAFETY: the number is open (checked above), and by this function's
    // contract it was inherited for this caller and nothing else in the
    // process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    close_on_exec(fd.as_fd())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};

    use super::*;

    #[test]
    fn kept_descriptor_loses_and_adopted_one_regains_close_on_exec() {
        let file = tempfile::tempfile().unwrap();
        assert!(fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
        keep_across_exec(file.as_fd()).unwrap();
        assert!(!fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
        let raw = file.into_raw_fd();
        let adopted = adopt_inherited(raw).unwrap();
        assert_eq!(adopted.as_raw_fd(), raw);
        assert!(fcntl_getfd(&adopted).unwrap().contains(FdFlags::CLOEXEC));
    }

    #[test]
    fn numbers_not_open_are_refused() {
        assert_eq!(adopt_inherited(-1).unwrap_err().raw_os_error(), Some(Errno::INVAL.raw_os_error()));
        // A number far above anything this test process opened.
        assert_eq!(adopt_inherited(1_000_000).unwrap_err().raw_os_error(), Some(Errno::BADF.raw_os_error()));
    }
}
