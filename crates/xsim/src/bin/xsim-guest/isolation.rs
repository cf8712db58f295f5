//! Guest-side isolation checks: what a hostile guest would try first to
//! get out of its domain, each expected to be refused.
//!
//! - `dom0-sockets STATE_DIR`: connecting to xenstored's and the
//!   hypervisor's sockets (either one would make it dom0) fails, or the
//!   connection is closed before any request is answered; a burst of
//!   tries, then one more a second later, lets the test see the daemons'
//!   logs rate-limited;
//! - `proc PID...`: another process's `/proc/PID/fd/N` links and
//!   `/proc/PID/mem` (its pages), its descriptors through `pidfd_getfd`,
//!   and signals to it, are all refused; the same on itself work, so the
//!   refusals are not a broken method.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rustix::fs::{open, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_getfd, pidfd_open, test_kill_process, Pid, PidfdFlags, PidfdGetfdFlags};
use xenstore::Store;

/// Tries per socket in the burst.
const BURST: usize = 30;

/// `dom0-sockets STATE_DIR`.
pub fn dom0_sockets(args: &[String]) -> Result<()> {
    let state = Path::new(args.first().context("dom0-sockets: which state directory?")?);
    ensure!(std::env::var_os("XENSTORED_PATH").is_none(), "XENSTORED_PATH is in a guest's environment");
    let xenstored = state.join("xenstored.sock");
    let hypervisor = xen_platform::hosted::hypervisor_socket(state);
    for round in 0..=BURST {
        if round == BURST {
            // After the rate limit's window: this one is logged with the
            // count of those that were not.
            std::thread::sleep(Duration::from_millis(1100));
        }
        let how = xenstored_refused(&xenstored)?;
        if round == 0 {
            println!("xenstored.sock: {how}");
        }
        let how = hypervisor_refused(&hypervisor)?;
        if round == 0 {
            println!("hypervisor.sock: {how}");
        }
    }
    Ok(())
}

/// How a connection to xenstored's socket was refused; an error if a
/// request was answered.
fn xenstored_refused(path: &Path) -> Result<String> {
    let client = match xenstore::Client::connect(path) {
        Ok(client) => client,
        Err(e) => return Ok(format!("connect refused ({e})")),
    };
    match client.read("/local/domain/0/name") {
        Ok(name) => bail!("xenstored answered a guest on its socket: {:?}", String::from_utf8_lossy(&name)),
        Err(e) => Ok(format!("connected, then closed unanswered ({e})")),
    }
}

/// How a connection to the hypervisor's socket was refused; an error if a
/// privileged request was answered.
fn hypervisor_refused(path: &Path) -> Result<String> {
    let host = match xen_platform::hosted::Host::connect(path) {
        Ok(host) => host,
        Err(e) => return Ok(format!("connect refused ({e})")),
    };
    match xen_platform::Toolstack::list(&mut host.toolstack()) {
        Ok(domains) => bail!("the hypervisor answered a guest on dom0's socket: {} domains", domains.len()),
        Err(e) => Ok(format!("connected, then closed unanswered ({e})")),
    }
}

/// `proc PID...`.
pub fn proc_files(args: &[String]) -> Result<()> {
    ensure!(!args.is_empty(), "proc: which pids?");
    // The method works on this process: the refusals below are the
    // kernel's, not a mistake here.
    let me = rustix::process::getpid();
    reach(me).context("the checks fail on the guest itself")?;
    for arg in args {
        let pid = arg.parse::<i32>().ok().and_then(Pid::from_raw).with_context(|| format!("bad pid {arg}"))?;
        match reach(pid) {
            Ok(()) => bail!("pid {arg}: its /proc files, descriptors and signals are all open to this guest"),
            Err(e) => println!("pid {}: refused: {e:#}", pid.as_raw_nonzero()),
        }
        refused_all(pid)?;
    }
    Ok(())
}

/// Succeeds if `pid`'s memory, its descriptor 0 (as a `/proc` link and
/// through `pidfd_getfd`) and a null signal are all reachable.
fn reach(pid: Pid) -> Result<()> {
    let n = pid.as_raw_nonzero();
    open_file(&format!("/proc/{n}/mem")).context("mem")?;
    open_file(&format!("/proc/{n}/fd/0")).context("fd/0")?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).context("pidfd_open")?;
    pidfd_getfd(&pidfd, 0, PidfdGetfdFlags::empty()).context("pidfd_getfd")?;
    test_kill_process(pid).context("kill 0")?;
    Ok(())
}

/// Every way in to `pid` is refused with EACCES or EPERM (ENOENT for a
/// descriptor number it does not have).
fn refused_all(pid: Pid) -> Result<()> {
    let n = pid.as_raw_nonzero();
    let refused = |what: &str, e: Errno| -> Result<()> {
        ensure!(matches!(e, Errno::ACCESS | Errno::PERM), "pid {n}: {what}: {e} rather than refused");
        Ok(())
    };
    match open_file(&format!("/proc/{n}/mem")) {
        Ok(()) => bail!("pid {n}: opened its /proc/PID/mem"),
        Err(e) => refused("mem", e)?,
    }
    for fd in 0..64 {
        match open_file(&format!("/proc/{n}/fd/{fd}")) {
            Ok(()) => bail!("pid {n}: opened its /proc/PID/fd/{fd}"),
            Err(Errno::NOENT) => {}
            Err(e) => refused("fd", e)?,
        }
    }
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).with_context(|| format!("pid {n}: pidfd_open"))?;
    for fd in 0..64 {
        match pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) {
            Ok(_) => bail!("pid {n}: took its descriptor {fd}"),
            Err(Errno::BADF) => {}
            Err(e) => refused("pidfd_getfd", e)?,
        }
    }
    match test_kill_process(pid) {
        Ok(()) => bail!("pid {n}: may signal it"),
        Err(e) => refused("kill", e)?,
    }
    Ok(())
}

fn open_file(path: &str) -> Result<(), Errno> {
    open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map(drop)
}
