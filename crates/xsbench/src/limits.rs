//! What bounds the number of hosted domains on this machine, for the
//! many-domains figures: descriptors (each domain holds several in the
//! hypervisor and in xenstored), processes (each domain is one) and
//! memory. The bench raises what a process may raise for itself and its
//! children (the host it starts inherits its limits), and measures what
//! each domain costs, so that the notes can say where the count would
//! stop.

use std::path::Path;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors the bench asks for: enough for 10,000 domains' several
/// each in one process, with room.
const WANTED_FILES: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE as far as this process may: the hard limit up to
/// the kernel's `fs.nr_open` when privileged (CAP_SYS_RESOURCE), else the
/// soft limit up to the hard one. Returns what was before and after, as
/// `(soft, hard)` pairs, for the notes.
pub fn raise_files() -> ((u64, u64), (u64, u64)) {
    let before = pair(getrlimit(Resource::Nofile));
    let nr_open = read_number("/proc/sys/fs/nr_open").unwrap_or(before.1);
    let want = WANTED_FILES.min(nr_open).max(before.1);
    if setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum: Some(want) }).is_err() {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(before.1), maximum: Some(before.1) });
    }
    (before, pair(getrlimit(Resource::Nofile)))
}

/// This process's RLIMIT_NOFILE (soft), which the host it started
/// inherited.
pub fn files() -> u64 {
    pair(getrlimit(Resource::Nofile)).0
}

/// A limit as numbers, unlimited as `u64::MAX`.
fn pair(limit: Rlimit) -> (u64, u64) {
    (limit.current.unwrap_or(u64::MAX), limit.maximum.unwrap_or(u64::MAX))
}

/// The process-count limits: the kernel's `pid_max`, `threads-max`, and
/// this user's RLIMIT_NPROC (soft), each as read.
pub fn processes() -> (Option<u64>, Option<u64>, u64) {
    let nproc = getrlimit(Resource::Nproc).current.unwrap_or(u64::MAX);
    (read_number("/proc/sys/kernel/pid_max"), read_number("/proc/sys/kernel/threads-max"), nproc)
}

/// Memory the kernel says is available, in KiB.
pub fn available_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What one process holds: open descriptors and resident memory (KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Open descriptors.
    pub fds: u64,
    /// Resident set, KiB.
    pub rss_kib: u64,
}

/// What process `pid` holds now, if it can be read.
pub fn held(pid: u32) -> Option<Held> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(Held { fds: u64::try_from(fds).ok()?, rss_kib })
}

/// A number alone in a file (a sysctl).
fn read_number(path: impl AsRef<Path>) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
