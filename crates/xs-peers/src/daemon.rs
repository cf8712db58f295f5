//! Starting and stopping one of Debian's reference daemons socket-only.
//!
//! Each daemon gets a private state directory (removed when it stops)
//! holding dom0's ring page and event-channel port (`xsd_kva`, `xsd_port`,
//! what the shim opens for `/proc/xen/...`), its log, and for oxenstored its
//! configuration and run directory. The daemon runs in the foreground as a
//! child of this process, so stopping it needs no pid file.
//!
//! - C `xenstored`: `-N` (no fork) with the normal dom0 start (not `-D`,
//!   with which 4.17 crashes at the first write), `XENSTORED_PATH` = the
//!   caller's socket, `XENSTORED_RUNDIR` = the state directory.
//! - `oxenstored`: its socket, `/var/run/xenstored/socket`, is compiled in.
//!   It runs in a private mount namespace (`unshare -m`) in which the state
//!   directory's `run/` is bind-mounted over `/var/run/xenstored` (over a
//!   namespace-private tmpfs on `/run` when that directory does not exist),
//!   and the caller's socket path is a symlink to `run/socket`. Its
//!   configuration is Debian's `/etc/xen/oxenstored.conf` with the pid,
//!   log, ring and port files moved into the state directory, plus the
//!   caller's lines; the access log is off.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xenstore_wire::{Header, Op, HEADER_LEN};

use crate::{check, path, shim, Error, Need};

/// Which reference daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Xen 4.17's C `xenstored`.
    C,
    /// Xen 4.17's OCaml `oxenstored`.
    OCaml,
}

impl Flavor {
    /// What running it needs.
    pub fn needs(self) -> &'static [Need] {
        match self {
            Flavor::C => crate::C_XENSTORED,
            Flavor::OCaml => crate::OXENSTORED,
        }
    }

    /// The daemon's executable (under [`root`](crate::root)).
    pub fn binary(self) -> PathBuf {
        match self {
            Flavor::C => path("/usr/lib/xen-4.17/bin/xenstored"),
            Flavor::OCaml => path("/usr/lib/xen-4.17/bin/oxenstored"),
        }
    }
}

/// How to start a reference daemon: [`Launch::new`], options, then
/// [`Launch::start`].
#[derive(Debug, Clone)]
pub struct Launch {
    flavor: Flavor,
    domains: Option<String>,
    args: Vec<OsString>,
    config: Vec<String>,
    timeout: Duration,
}

impl Launch {
    /// The daemon `flavor`, where only dom0 exists.
    pub fn new(flavor: Flavor) -> Launch {
        Launch { flavor, domains: None, args: Vec::new(), config: Vec::new(), timeout: Duration::from_secs(15) }
    }

    /// Which other domains the daemon is told exist, so that permissions may
    /// name them: `"all"`, or ranges such as `"1-10,77"`.
    pub fn domains(mut self, list: &str) -> Launch {
        self.domains = Some(list.to_owned());
        self
    }

    /// An extra command-line argument for the daemon (e.g. `-T FILE` to
    /// trace the C daemon).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// A line added to oxenstored's configuration (later keys win), e.g.
    /// `quota-maxentity = 100000`. The C daemon has none.
    pub fn config(mut self, line: &str) -> Launch {
        self.config.push(line.to_owned());
        self
    }

    /// Starts the daemon answering at `socket` (whose directory is created),
    /// and returns once it has answered a request.
    pub fn start(self, socket: &Path) -> Result<Reference, Error> {
        check(self.flavor.needs())?;
        let shim = shim::shim()?;
        let failed = |what: &str, e: std::io::Error| Error::Failed(format!("{what}: {e}"));
        let socket = std::path::absolute(socket).map_err(|e| failed("socket path", e))?;
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(&format!("create {}", dir.display()), e))?;
        }
        remove_socket(&socket);
        let state = tempfile::Builder::new().prefix("xs-peer-").tempdir().map_err(|e| failed("state directory", e))?;
        let dir = state.path();
        std::fs::write(dir.join("xsd_kva"), [0u8; 4096]).map_err(|e| failed("xsd_kva", e))?;
        // No newline: oxenstored reads the number with int_of_string.
        std::fs::write(dir.join("xsd_port"), "1").map_err(|e| failed("xsd_port", e))?;
        let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| failed("daemon.log", e))?;

        let mut cmd = match self.flavor {
            Flavor::C => {
                let mut cmd = Command::new(self.flavor.binary());
                cmd.arg("-N").args(&self.args).env("XENSTORED_RUNDIR", dir).env("XENSTORED_PATH", &socket);
                cmd
            }
            Flavor::OCaml => self.oxenstored_command(dir).map_err(|e| failed("oxenstored.conf", e))?,
        };
        cmd.env("LD_PRELOAD", &shim).env("XS_PEER_DIR", dir).env_remove("XS_PEER_DOMAINS");
        if let Some(domains) = &self.domains {
            cmd.env("XS_PEER_DOMAINS", domains);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| failed("daemon.log", e))?)
            .stderr(log)
            .spawn()
            .map_err(|e| failed(&format!("start {}", self.flavor.binary().display()), e))?;
        let mut daemon = Reference { flavor: self.flavor, socket, child, state, stopped: false };
        if let Err(why) = daemon.wait_ready(self.timeout) {
            let log = daemon.log();
            let _ = daemon.stop_inner();
            return Err(Error::Failed(format!("{why}; its log:\n{log}")));
        }
        Ok(daemon)
    }

    /// `unshare -m sh -c '<mounts>; exec oxenstored ...'`, with its
    /// configuration written into `dir`.
    fn oxenstored_command(&self, dir: &Path) -> std::io::Result<Command> {
        let base = std::fs::read_to_string(path("/etc/xen/oxenstored.conf")).unwrap_or_default();
        let moved = ["pid-file", "xenstored-kva", "xenstored-port", "xenstored-log-file", "access-log-file"];
        let mut conf: String = base
            .lines()
            .filter(|l| !moved.iter().any(|k| l.split('=').next().is_some_and(|key| key.trim() == *k)))
            .map(|l| format!("{l}\n"))
            .collect();
        for (key, file) in moved.iter().zip(["oxenstored.pid", "xsd_kva", "xsd_port", "oxenstored.log", "access.log"]) {
            conf.push_str(&format!("{key} = {}\n", dir.join(file).display()));
        }
        for line in &self.config {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_file = dir.join("oxenstored.conf");
        std::fs::write(&conf_file, conf)?;
        let run = dir.join("run");
        std::fs::create_dir(&run)?;
        // /var/run is a link to /run on Debian: mount on what it names.
        let var_run = std::fs::canonicalize("/var/run").unwrap_or_else(|_| PathBuf::from("/var/run"));
        let mut cmd = Command::new(path("/usr/bin/unshare"));
        cmd.args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            .arg(concat!(
                "set -e; target=$1/xenstored; ",
                "if [ ! -d \"$target\" ]; then mount -t tmpfs -o mode=0755 xs-peer-run \"$1\"; mkdir \"$target\"; fi; ",
                "mount --bind \"$2\" \"$target\"; shift 2; exec \"$@\""
            ))
            .arg("sh")
            .arg(var_run)
            .arg(&run)
            .arg(self.flavor.binary())
            .args(["--no-fork", "--no-access-log", "--config-file"])
            .arg(conf_file)
            .args(&self.args);
        Ok(cmd)
    }
}

/// A reference daemon started by [`Launch::start`]; stopped (and its state
/// directory removed) on drop.
#[derive(Debug)]
pub struct Reference {
    flavor: Flavor,
    socket: PathBuf,
    child: Child,
    state: tempfile::TempDir,
    stopped: bool,
}

impl Reference {
    /// Starts `flavor` at `socket` with the defaults of [`Launch`].
    pub fn start(flavor: Flavor, socket: &Path) -> Result<Reference, Error> {
        Launch::new(flavor).start(socket)
    }

    /// Which daemon.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The socket it answers at.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon (and the shim) printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("daemon.log")).unwrap_or_default()
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after 5 seconds.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop_inner().map_err(|e| Error::Failed(format!("stop {:?} daemon: {e}", self.flavor)))
    }

    fn stop_inner(&mut self) -> std::io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if self.child.try_wait()?.is_none() {
            if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.child.try_wait()?.is_none() {
                self.child.kill()?;
            }
        }
        self.child.wait()?;
        remove_socket(&self.socket);
        Ok(())
    }

    /// Waits until the daemon answers a READ at its socket.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let inner = self.state.path().join("run/socket");
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("{:?} daemon exited during start ({status})", self.flavor));
            }
            if self.flavor == Flavor::OCaml && !self.socket.exists() && inner.exists() {
                std::os::unix::fs::symlink(&inner, &self.socket).map_err(|e| format!("link the socket: {e}"))?;
            }
            if answers(&self.socket) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{:?} daemon did not answer at {}", self.flavor, self.socket.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Whether a daemon at `socket` answers a READ of `/`.
fn answers(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Header { op: Op::Read as u32, req_id: 1, tx_id: 0, len: 2 }.encode().to_vec();
    request.extend_from_slice(b"/\0");
    let mut reply = [0u8; HEADER_LEN];
    stream.write_all(&request).is_ok() && stream.read_exact(&mut reply).is_ok()
}

/// Removes a socket, or the symlink to one, left at `socket`; anything
/// else there is not ours and stays.
fn remove_socket(socket: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if meta.file_type().is_socket() || meta.file_type().is_symlink() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
