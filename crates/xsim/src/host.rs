//! Starting and stopping a host: the hypervisor process, then xenstored as
//! dom0's daemon serving domains through it.

use std::fs::OpenOptions;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, test_kill_process, Pid, Signal};
use xen_platform::hosted::{Confinement, Isolation};
use xenstore::Store;

use crate::StateDir;

/// How long `up` waits for each daemon's socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `down` waits for each daemon to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the programs a host runs are.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `xsim` binary (run as `xsim hypervisor`).
    pub xsim: PathBuf,
    /// The `xenstored` binary.
    pub xenstored: PathBuf,
}

impl Programs {
    /// `xsim` is this executable when it is xsim, else a sibling of it;
    /// xenstored is `$XSIM_XENSTORED`, else a sibling, else from `PATH`.
    pub fn locate() -> Result<Programs> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        // Test binaries live in target/<profile>/deps; the programs one up.
        let sibling = |name: &str| -> Option<PathBuf> {
            [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()].into_iter().find(|p| p.is_file())
        };
        let xsim = if exe.file_name().is_some_and(|n| n == "xsim") {
            exe.clone()
        } else {
            sibling("xsim").context("cannot find the xsim binary next to this program")?
        };
        // Installed (scripts/install), xenstored is in the prefix's sbin.
        let installed = dir.parent().map(|p| p.join("sbin").join("xenstored")).filter(|p| p.is_file());
        let xenstored = match std::env::var_os("XSIM_XENSTORED") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => sibling("xenstored").or(installed).unwrap_or_else(|| PathBuf::from("xenstored")),
        };
        Ok(Programs { xsim, xenstored })
    }
}

/// Whether a host is running in `state` (its hypervisor answers).
pub fn is_up(state: &StateDir) -> bool {
    hypervisor_answers(&state.hypervisor_socket())
}

fn hypervisor_answers(socket: &Path) -> bool {
    xen_platform::hosted::Host::connect(socket).is_ok()
}

fn xenstored_answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// Starts the hypervisor and xenstored in `state`, and writes dom0's nodes,
/// with the strongest isolation of guests this process can have.
pub fn up(state: &StateDir, programs: &Programs) -> Result<()> {
    up_with(state, programs, Isolation::strongest()).map(drop)
}

/// Starts the hypervisor and xenstored in `state`, and writes dom0's nodes;
/// guests will be isolated as `isolation` says (an error if this process
/// cannot). Both run in the background, in their own process group, until
/// [`down`]. Returns the confinement in force, to tell the user.
pub fn up_with(state: &StateDir, programs: &Programs, isolation: Isolation) -> Result<Confinement> {
    if is_up(state) {
        bail!("a host is already running in {}", state.root().display());
    }
    let confinement = Confinement::with(isolation);
    confinement.check().map_err(anyhow::Error::msg).with_context(|| format!("isolation {}", isolation.name()))?;
    // The state directory holds dom0's sockets: made the owner's alone
    // when it is made here (an existing one is left as it is).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state.root())
        .with_context(|| format!("creating {}", state.root().display()))?;
    std::fs::create_dir_all(state.root().join("console"))
        .with_context(|| format!("creating {}", state.root().display()))?;
    let log = |path: PathBuf| -> Result<std::fs::File> {
        OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))
    };

    let mut hypervisor = Command::new(&programs.xsim);
    hypervisor
        .arg("hypervisor")
        .arg("--state")
        .arg(state.root())
        .arg("--isolation")
        .arg(isolation.name())
        // Guests must find their ring, not dom0's socket.
        .env_remove("XENSTORED_PATH")
        .stdin(Stdio::null())
        .stdout(log(state.hypervisor_log())?)
        .stderr(log(state.hypervisor_log())?)
        .process_group(0);
    let child = hypervisor.spawn().with_context(|| format!("starting {}", programs.xsim.display()))?;
    std::fs::write(state.hypervisor_pid(), format!("{}\n", child.id()))?;
    wait_for_socket(
        &state.hypervisor_socket(),
        hypervisor_answers,
        child.id(),
        "the hypervisor",
        &state.hypervisor_log(),
    )?;

    let mut xenstored = Command::new(&programs.xenstored);
    xenstored
        .arg("--no-fork")
        .arg("--socket")
        .arg(state.xenstored_socket())
        .arg("--hosted")
        .arg(state.hypervisor_socket())
        .arg("--log-file")
        .arg(state.xenstored_log())
        .arg("--pid-file")
        .arg(state.xenstored_pid())
        .env_remove("XENSTORED_PATH")
        .stdin(Stdio::null())
        .stdout(log(state.xenstored_log())?)
        .stderr(log(state.xenstored_log())?)
        .process_group(0);
    let child = match xenstored.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = down(state);
            return Err(e).with_context(|| format!("starting {}", programs.xenstored.display()));
        }
    };
    std::fs::write(state.xenstored_pid(), format!("{}\n", child.id()))?;
    if let Err(e) =
        wait_for_socket(&state.xenstored_socket(), xenstored_answers, child.id(), "xenstored", &state.xenstored_log())
    {
        let _ = down(state);
        return Err(e);
    }
    write_dom0_nodes(state).context("writing dom0's nodes")?;
    Ok(confinement)
}

/// What `xen-init-dom0` writes for dom0.
fn write_dom0_nodes(state: &StateDir) -> Result<()> {
    let client = xenstore::Client::connect(state.xenstored_socket())?;
    client.transaction(|t| {
        t.write("/local/domain/0/name", b"Domain-0")?;
        t.write("/local/domain/0/domid", b"0")?;
        Ok(())
    })?;
    Ok(())
}

fn wait_for_socket(socket: &Path, answers: fn(&Path) -> bool, pid: u32, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if answers(socket) {
            return Ok(());
        }
        if !alive(pid) || Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{what} did not start (see {}):\n{}", log.display(), tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid in a pid file, if it holds one.
pub fn pid_of(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return false };
    if test_kill_process(pid).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped by its parent) is not alive.
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn stop(pid_file: &Path, what: &str) -> Result<bool> {
    let Some(raw) = pid_of(pid_file) else { return Ok(false) };
    let _ = std::fs::remove_file(pid_file);
    let Some(pid) = i32::try_from(raw).ok().and_then(Pid::from_raw) else { return Ok(false) };
    if !alive(raw) {
        return Ok(false);
    }
    let _ = kill_process(pid, Signal::TERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(raw) {
        if Instant::now() > deadline {
            let _ = kill_process(pid, Signal::KILL);
            bail!("{what} (pid {raw}) did not exit on SIGTERM; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(true)
}

/// Stops xenstored, then the hypervisor (which destroys every domain).
/// Returns whether anything was running.
pub fn down(state: &StateDir) -> Result<bool> {
    let a = stop(&state.xenstored_pid(), "xenstored")?;
    let b = stop(&state.hypervisor_pid(), "the hypervisor")?;
    for socket in [state.xenstored_socket(), state.hypervisor_socket()] {
        let _ = std::fs::remove_file(socket);
    }
    Ok(a || b)
}
