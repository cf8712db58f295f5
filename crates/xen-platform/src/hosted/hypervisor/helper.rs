//! Short-lived forked helpers: a child that makes one or two system calls
//! and exits without ever executing a program. `std`'s spawn forks, sets
//! the child's credentials as asked, runs the closure, and reports an
//! error the closure returns; a closure that exits on success leaves it
//! nothing to report, and the child's exit status says the rest.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use rustix::thread::UnshareFlags;

/// Whether this process may make a user namespace (it tries, in a child).
pub(super) fn can_unshare_user() -> bool {
    run(Command::new("/"), || {
        // SAFETY: the child has one thread and shares no descriptor table
        // with anyone: making it a new user namespace affects it alone.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }.map_err(io::Error::from)
    })
    .is_ok()
}

/// Kills every process running as `uid` (a destroyed guest's processes,
/// its descendants included, wherever they were reparented). A child set
/// to that uid sends SIGKILL with `kill(-1)`, which reaches each process
/// of its user but itself; the kernel walks the process list under the
/// lock that `fork` takes, so none can escape by forking meanwhile.
pub(super) fn kill_all_of(uid: u32) -> io::Result<()> {
    let mut command = Command::new("/");
    command.uid(uid).gid(uid);
    run(command, || {
        // SAFETY: kill is async-signal-safe and touches no memory; ESRCH
        // (nothing of this user left) is as good as success.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        Ok(())
    })
}

/// Forks `command`'s child, runs `step` in it and exits 0 if it succeeds;
/// `step`'s error, or a non-zero exit, otherwise.
fn run(mut command: Command, step: fn() -> io::Result<()>) -> io::Result<()> {
    let in_child = move || -> io::Result<()> {
        step()?;
        // SAFETY: _exit ends the child at once, without running the
        // parent's atexit handlers or flushing its buffers (copies of the
        // parent's); it is async-signal-safe.
        unsafe { libc::_exit(0) }
    };
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (`step`'s, then _exit); it
    // allocates nothing and takes no lock.
    unsafe { command.pre_exec(in_child) };
    let status = command.spawn()?.wait()?;
    match status.code() {
        Some(0) => Ok(()),
        _ => Err(io::Error::other(format!("helper ended with {status} ({:?})", status.signal()))),
    }
}
