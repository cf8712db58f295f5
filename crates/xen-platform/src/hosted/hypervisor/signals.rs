//! SIGTERM and SIGINT end [`Hypervisor::serve`](super::Hypervisor::serve)
//! by writing its stop eventfd.
//!
//! The handler may only make async-signal-safe calls, so serving loops
//! register their eventfd's number in a fixed table of atomics; the
//! handler writes to each. With no loop registered the signal takes its
//! default action (the process ends), as if no handler were installed.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Once};

/// How many loops one process may have serving with signal handling.
const SLOTS: usize = 16;

/// Eventfd numbers of the serving loops; -1 is free.
static TARGETS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// Installs the handlers once per process.
static INSTALL: Once = Once::new();

/// A loop's place in the table; freed when dropped.
#[derive(Debug)]
pub(super) struct Registration {
    slot: Option<usize>,
    /// Kept open while registered.
    _fd: Arc<OwnedFd>,
}

impl Registration {
    /// Makes SIGTERM and SIGINT signal `fd`. More than [`SLOTS`] loops at
    /// once are served without signal handling (stop handles still work).
    pub(super) fn new(fd: Arc<OwnedFd>) -> io::Result<Registration> {
        INSTALL.call_once(install);
        let raw = fd.as_raw_fd();
        let slot = TARGETS.iter().position(|t| t.compare_exchange(-1, raw, Ordering::SeqCst, Ordering::SeqCst).is_ok());
        Ok(Registration { slot, _fd: fd })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            TARGETS[slot].store(-1, Ordering::SeqCst);
        }
    }
}

/// Installs [`on_signal`] for SIGTERM and SIGINT.
fn install() {
    for signo in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; we then set the handler to a function with the signature
        // sigaction expects for a handler without SA_SIGINFO, which only
        // makes async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signo, &action, std::ptr::null_mut());
        }
    }
}

/// Writes every registered eventfd, or re-raises with the default action
/// when none is.
extern "C" fn on_signal(signo: libc::c_int) {
    // SAFETY: errno is thread-local; saving and restoring it keeps the
    // interrupted code's view intact.
    let saved_errno = unsafe { *libc::__errno_location() };
    let one = 1u64.to_ne_bytes();
    let mut delivered = false;
    for target in &TARGETS {
        let fd = target.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write is async-signal-safe; `one` is 8 readable
            // bytes; a stale number at worst makes write fail.
            unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
            delivered = true;
        }
    }
    if !delivered {
        // SAFETY: signal and raise are async-signal-safe; restoring the
        // default action and raising again ends the process as the signal
        // would have without us.
        unsafe {
            libc::signal(signo, libc::SIG_DFL);
            libc::raise(signo);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}
