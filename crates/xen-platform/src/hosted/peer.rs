//! Who may connect to dom0's sockets (the hypervisor's, xenstored's): a
//! connection there is privileged, so each one's peer is checked when it
//! is accepted, from the credentials the kernel recorded at `connect`.
//!
//! The peer must run as this process's user and in its user namespace.
//! A hosted guest fails one or the other whatever it does: under a uid
//! per guest it has another uid, and under user namespaces it is in a
//! namespace of its own that neither it nor any process it starts can
//! leave (see the hypervisor's `isolation` module). No list of guests is
//! needed, so xenstored checks the same way with no round trip to the
//! hypervisor.
//!
//! The namespace is read from `/proc/PID/ns/user` of the peer's pid; the
//! peer's pidfd (`SO_PEERPIDFD`, Linux 6.5) is checked to be still alive
//! after the read, so the pid was not reused by another process
//! meanwhile. Without `SO_PEERPIDFD` the pidfd is opened from the pid,
//! which leaves a short window for reuse before it is opened.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

use crate::RateLimit;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{stat, Stat};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// `SO_PEERPIDFD` (asm-generic/socket.h; Linux 6.5).
const SO_PEERPIDFD: i32 = 77;

/// Why a connection was refused: its peer and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The peer's pid as this process sees it (0: not visible here).
    pub pid: i32,
    /// The peer's uid.
    pub uid: u32,
    /// Why.
    pub why: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} uid {}: {}", self.pid, self.uid, self.why)
    }
}

/// Checks that the peer of the connected Unix socket `socket` is of
/// dom0 here: this process's user, in this process's user namespace.
pub fn check_dom0_peer(socket: BorrowedFd<'_>) -> Result<(), Refusal> {
    let refuse = |pid: i32, uid: u32, why| Err(Refusal { pid, uid, why });
    let Ok(cred) = peer_credentials(socket) else {
        return refuse(0, u32::MAX, "no peer credentials");
    };
    let (pid, uid) = (cred.pid, cred.uid);
    if uid != rustix::process::geteuid().as_raw() {
        return refuse(pid, uid, "another user (a guest's, or not dom0's)");
    }
    let Some(peer) = Pid::from_raw(pid) else {
        return refuse(pid, uid, "the peer is outside this pid namespace");
    };
    let Ok(pidfd) = peer_pidfd(socket, peer) else {
        return refuse(pid, uid, "the peer has exited");
    };
    let theirs = stat(format!("/proc/{pid}/ns/user").as_str());
    // The pidfd polls readable once its process has exited: only a live
    // one proves that the pid read above was still the peer's.
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let alive = matches!(poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(0));
    match (theirs, own_user_namespace()) {
        (Ok(theirs), Ok(ours)) if alive && same_file(&theirs, &ours) => Ok(()),
        (Ok(_), Ok(_)) if alive => refuse(pid, uid, "another user namespace (a guest's)"),
        _ => refuse(pid, uid, "the peer's user namespace cannot be read"),
    }
}

/// `SO_PEERCRED`, read here rather than through rustix, whose `UCred`
/// cannot hold the pid 0 the kernel reports for a peer outside this pid
/// namespace.
fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = socklen::<libc::ucred>()?;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a live
    // `struct ucred`, and updates `len`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if result == 0 && len == socklen::<libc::ucred>()? {
        Ok(cred)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The peer's pidfd: `SO_PEERPIDFD`, or opened from its pid on kernels
/// without it.
fn peer_pidfd(socket: BorrowedFd<'_>, pid: Pid) -> io::Result<OwnedFd> {
    let mut fd: i32 = -1;
    let mut len = socklen::<i32>()?;
    // SAFETY: getsockopt writes at most `len` bytes (an int) into `fd`,
    // which lives across the call, and updates `len`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            std::ptr::from_mut(&mut fd).cast(),
            &mut len,
        )
    };
    if result == 0 && fd >= 0 {
        // SAFETY: the kernel returned a new pidfd that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}

fn socklen<T>() -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(|_| io::Error::other("option size"))
}

fn own_user_namespace() -> io::Result<Stat> {
    Ok(stat("/proc/self/ns/user")?)
}

fn same_file(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// Rate-limits refusal log lines, so that a guest that connects in a
/// loop cannot flood a daemon's log: at most ten lines a second, the count
/// of those left out told with the next one.
#[derive(Debug)]
pub struct RefusalLog(RateLimit);

impl Default for RefusalLog {
    fn default() -> RefusalLog {
        RefusalLog(RateLimit::new(10))
    }
}

impl RefusalLog {
    /// `refusal` as a log line, or `None` when over the rate.
    pub fn line(&mut self, what: &str, refusal: &Refusal, now: Instant) -> Option<String> {
        let suppressed = self.0.admit(now)?;
        let more = if suppressed > 0 { format!(" ({suppressed} more refused, not logged)") } else { String::new() };
        Some(format!("refused a connection to {what} from {refusal}{more}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn peer_of_this_process_is_dom0() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(check_dom0_peer(a.as_fd()), Ok(()));
    }
}
