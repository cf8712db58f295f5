//! Starting a guest's program paused, with its hypervisor socket.
//!
//! The child, between fork and exec, takes its credentials and confines
//! itself ([`Confine`]), makes its socket end inheritable, closes every
//! other descriptor above stderr and stops itself with SIGSTOP; the hypervisor waits until it is stopped. Unpausing
//! (SIGCONT) lets it exec the program.
//!
//! Closing the other descriptors is not only hygiene: `std`'s spawn waits
//! on a close-on-exec pipe for the exec to happen, which would never come
//! while the child is stopped before exec. Closing that pipe early tells
//! the parent "exec'd" at once. The cost: an exec that fails after
//! unpause can no longer be reported to `spawn`, so the child aborts and
//! the domain crashes; [`resolve`] checks the program beforehand to make
//! that rare.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{access, Access};
use rustix::io::{fcntl_dupfd_cloexec, fcntl_setfd, Errno, FdFlags};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use rustix::process::{getpid, kill_process, pidfd_open, waitid, Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::confine::Confine;
use super::isolation::Confinement;
use super::namespaces::Handed;
use crate::hosted::{ENV_DOMID, ENV_FUSE_FD, ENV_HYPERVISOR_FD, ENV_TAP_FD};
use crate::{DomId, DomainConfig};

/// A guest process, stopped before exec.
#[derive(Debug)]
pub(super) struct Spawned {
    /// Its pidfd: polls readable when it exits.
    pub(super) pidfd: OwnedFd,
    /// The hypervisor's end of its socket, non-blocking.
    pub(super) socket: OwnedFd,
    /// Its pid, for listing (the pidfd is what signals and waits use).
    pub(super) pid: u32,
}

/// Starts `config.program` as domain `domid`, confined (as user `uid`
/// if given), stopped, with
/// stdin from `/dev/null` and stdout and stderr appended to `console`,
/// and the `handed` descriptors inherited (named in its environment).
pub(super) fn spawn_paused(
    config: &DomainConfig,
    domid: DomId,
    console: &Path,
    confinement: &Confinement,
    uid: Option<u32>,
    handed: Handed,
) -> io::Result<Spawned> {
    let (name, args) = config.program.split_first().ok_or(Errno::INVAL)?;
    let cwd = config.cwd.as_ref().map(PathBuf::from);
    let program = resolve(name, cwd.as_deref(), config)?;

    let (ours, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::io::ioctl_fionbio(&ours, true)?;
    // Keep the child's end off 0..=2, which the child's stdio replaces,
    // and the handed descriptors likewise.
    let off_stdio = |fd: OwnedFd| if fd.as_raw_fd() < 3 { fcntl_dupfd_cloexec(&fd, 3) } else { Ok(fd) };
    let theirs = off_stdio(theirs)?;
    let number = theirs.as_raw_fd();
    let mut inherited = Vec::with_capacity(2);
    for (name, fd) in [(ENV_FUSE_FD, handed.fuse), (ENV_TAP_FD, handed.tap)] {
        if let Some(fd) = fd {
            inherited.push((name, off_stdio(fd)?));
        }
    }
    // The descriptors the child keeps, ascending, for `close_all_but`;
    // made before the fork, which may not allocate.
    let mut keep: Vec<u32> = std::iter::once(&theirs)
        .chain(inherited.iter().map(|(_, fd)| fd))
        .map(|fd| u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::BADF))
        .collect::<Result<_, _>>()?;
    keep.sort_unstable();

    let log = OpenOptions::new().create(true).append(true).open(console)?;
    let mut command = Command::new(&program);
    command
        .arg0(name)
        .args(args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .env(ENV_HYPERVISOR_FD, number.to_string())
        .env(ENV_DOMID, domid.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(cwd) = &cwd {
        command.current_dir(cwd);
    }
    for (name, fd) in &inherited {
        command.env(name, fd.as_raw_fd().to_string());
    }
    let confine = Confine::prepare(confinement, uid, &mut command)?;
    let in_child = move || -> io::Result<()> {
        confine.apply()?;
        fcntl_setfd(&theirs, FdFlags::empty())?;
        for (_, fd) in &inherited {
            fcntl_setfd(fd, FdFlags::empty())?;
        }
        close_all_but(&keep)?;
        kill_process(getpid(), Signal::STOP)?;
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed. It makes raw system calls only
    // (those of `Confine::apply`, then fcntl, close_range, kill) through
    // rustix and libc, allocates nothing and takes no lock; the
    // descriptors it uses are ones it owns.
    unsafe { command.pre_exec(in_child) };
    let child = command.spawn()?;
    // Dropping the command closes our copy of the child's end.
    drop(command);

    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw).ok_or(Errno::SRCH)?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
    wait_stopped(&pidfd)?;
    Ok(Spawned { pidfd, socket: ours, pid: child.id() })
}

/// Waits until the child stops itself; an error if it died instead
/// (then it is reaped).
fn wait_stopped(pidfd: &OwnedFd) -> io::Result<()> {
    let options = WaitIdOptions::STOPPED | WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
    loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), options) {
            Ok(Some(status)) if status.stopped() => return Ok(()),
            Ok(Some(_)) => {
                let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
                return Err(io::Error::other("guest died before it was paused"));
            }
            Ok(None) | Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Closes every descriptor from 3 up except those in `keep` (ascending,
/// each at least 3); async-signal-safe.
pub(super) fn close_all_but(keep: &[u32]) -> io::Result<()> {
    let mut first = 3u32;
    for &kept in keep {
        if kept > first {
            close_range(first, kept - 1)?;
        }
        first = first.max(kept.saturating_add(1));
    }
    close_range(first, u32::MAX)
}

/// `close_range(first, last, 0)`, which rustix does not offer.
fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; the child owns every
    // descriptor in the range and none is used again before exec (the
    // exec error pipe of `std` among them, on purpose: see the module
    // documentation).
    let result = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The program `name` names, as an absolute path to an executable: with a
/// slash it is a path (relative to `cwd`); without, it is looked up on
/// the guest's `PATH` (or the hypervisor's). `ENOENT`/`EACCES` if none.
fn resolve(name: &str, cwd: Option<&Path>, config: &DomainConfig) -> io::Result<PathBuf> {
    let base = match cwd {
        Some(cwd) => cwd.to_path_buf(),
        None => std::env::current_dir()?,
    };
    if name.contains('/') {
        let path = base.join(name);
        access(&path, Access::EXEC_OK)?;
        return Ok(path);
    }
    let path_var = config
        .env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
    std::env::split_paths(&path_var)
        .map(|dir| base.join(dir).join(name))
        .find(|candidate| access(candidate, Access::EXEC_OK).is_ok() && candidate.is_file())
        .ok_or_else(|| Errno::NOENT.into())
}
