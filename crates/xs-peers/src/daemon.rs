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
//! - Xen 4.20's daemons ([`Flavor::C420`], [`Flavor::OCaml420`]) run
//!   chrooted in the Debian 13 root of [`crate::trixie`], each in a private
//!   mount namespace (`unshare -m --propagation private`) in which the state
//!   directory is bind-mounted at `ROOT/xs`, `proc` at `ROOT/proc`, `/dev`
//!   at `ROOT/dev` and a small tmpfs at `ROOT/run` (for oxenstored, the
//!   state directory's `run/` over its `/var/run/xenstored` there); then
//!   `chroot ROOT env LD_PRELOAD=<the 4.20 shim> DAEMON`. Every step execs
//!   in place, so the child is the daemon, whose death ends the namespace
//!   and its mounts: nothing is ever mounted on the host. The daemon's
//!   socket is a file in the state directory (C: `daemon.sock`, with
//!   `XENSTORED_PATH=/xs/daemon.sock` and `XENSTORED_RUNDIR=/xs`; OCaml:
//!   `run/socket`) and the caller's socket path a symlink to it.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xenstore_wire::{Header, Op, HEADER_LEN};

use crate::trixie::{self, STATE_IN_ROOT, XEN_BIN};
use crate::{check, path, shim, Error, Need};

/// Which reference daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Xen 4.17's C `xenstored` (Debian 12's `xen-utils-4.17`).
    C,
    /// Xen 4.17's OCaml `oxenstored`.
    OCaml,
    /// Xen 4.20's C `xenstored` (Debian 13's `xen-utils-4.20`, in the root
    /// of [`crate::trixie`]).
    C420,
    /// Xen 4.20's OCaml `oxenstored` (likewise).
    OCaml420,
}

impl Flavor {
    /// Every flavor, oldest Xen first, C before OCaml.
    pub const ALL: [Flavor; 4] = [Flavor::C, Flavor::OCaml, Flavor::C420, Flavor::OCaml420];

    /// What running it needs.
    pub fn needs(self) -> &'static [Need] {
        match self {
            Flavor::C => crate::C_XENSTORED,
            Flavor::OCaml => crate::OXENSTORED,
            Flavor::C420 => crate::C_XENSTORED_420,
            Flavor::OCaml420 => crate::OXENSTORED_420,
        }
    }

    /// The Xen release it comes from: `4.17` or `4.20`.
    pub fn xen_version(self) -> &'static str {
        match self {
            Flavor::C | Flavor::OCaml => "4.17",
            Flavor::C420 | Flavor::OCaml420 => "4.20",
        }
    }

    /// Whether it is an `oxenstored`.
    pub fn is_ocaml(self) -> bool {
        matches!(self, Flavor::OCaml | Flavor::OCaml420)
    }

    /// Whether it runs in the Debian 13 root of [`crate::trixie`].
    pub fn in_trixie(self) -> bool {
        matches!(self, Flavor::C420 | Flavor::OCaml420)
    }

    /// The daemon's executable as the host sees it (4.17: under
    /// [`root`](crate::root); 4.20: in the Debian 13 root, which may not
    /// be built yet).
    pub fn binary(self) -> PathBuf {
        if self.in_trixie() {
            trixie::host_path(&self.binary_in_root())
        } else {
            path(&format!("/usr/lib/xen-{}/bin/{}", self.xen_version(), self.program()))
        }
    }

    /// `xenstored` or `oxenstored`.
    fn program(self) -> &'static str {
        if self.is_ocaml() {
            "oxenstored"
        } else {
            "xenstored"
        }
    }

    /// A 4.20 daemon's executable as it sees itself, inside the root.
    fn binary_in_root(self) -> String {
        format!("{XEN_BIN}/{}", self.program())
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
    /// trace the C daemon). A 4.20 daemon sees the paths of the Debian 13
    /// root, its state directory as `/xs`.
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
    /// and returns once it has answered a request. A 4.20 daemon's first
    /// start builds the Debian 13 root ([`trixie::prepare`]) when it is not
    /// ready: minutes, not seconds.
    pub fn start(self, socket: &Path) -> Result<Reference, Error> {
        check(self.flavor.needs())?;
        let shim = if self.flavor.in_trixie() {
            trixie::prepare()?;
            PathBuf::from(trixie::shim()?)
        } else {
            shim::shim()?
        };
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
                cmd.env("LD_PRELOAD", &shim).env("XS_PEER_DIR", dir);
                cmd
            }
            Flavor::OCaml => {
                let mut cmd = self.oxenstored_command(dir).map_err(|e| failed("oxenstored.conf", e))?;
                cmd.env("LD_PRELOAD", &shim).env("XS_PEER_DIR", dir);
                cmd
            }
            Flavor::C420 | Flavor::OCaml420 => {
                self.trixie_command(dir, &shim).map_err(|e| failed("prepare the 4.20 daemon's start", e))?
            }
        };
        cmd.env_remove("XS_PEER_DOMAINS");
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

    /// Writes oxenstored's configuration into `dir`: `base` (Debian's)
    /// with its files moved into the state directory, which the daemon sees
    /// as `seen_as`, then the caller's lines. Returns the file's path as
    /// the daemon sees it.
    fn oxenstored_conf(&self, base: &Path, dir: &Path, seen_as: &Path) -> std::io::Result<PathBuf> {
        let base = std::fs::read_to_string(base).unwrap_or_default();
        let moved = ["pid-file", "xenstored-kva", "xenstored-port", "xenstored-log-file", "access-log-file"];
        let mut conf: String = base
            .lines()
            .filter(|l| !moved.iter().any(|k| l.split('=').next().is_some_and(|key| key.trim() == *k)))
            .map(|l| format!("{l}\n"))
            .collect();
        for (key, file) in moved.iter().zip(["oxenstored.pid", "xsd_kva", "xsd_port", "oxenstored.log", "access.log"]) {
            conf.push_str(&format!("{key} = {}\n", seen_as.join(file).display()));
        }
        for line in &self.config {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(dir.join("oxenstored.conf"), conf)?;
        std::fs::create_dir(dir.join("run"))?;
        Ok(seen_as.join("oxenstored.conf"))
    }

    /// `unshare -m sh -c '<mounts>; exec oxenstored ...'`, with its
    /// configuration written into `dir`.
    fn oxenstored_command(&self, dir: &Path) -> std::io::Result<Command> {
        let conf_file = self.oxenstored_conf(&path("/etc/xen/oxenstored.conf"), dir, dir)?;
        let run = dir.join("run");
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

    /// A 4.20 daemon: `unshare -m sh -c '<mounts>; exec chroot ROOT env
    /// LD_PRELOAD=SHIM DAEMON ...'` (see the module's documentation), with
    /// oxenstored's configuration written into `dir`. `shim` is the path
    /// inside the root.
    fn trixie_command(&self, dir: &Path, shim: &Path) -> std::io::Result<Command> {
        let root = trixie::root();
        let seen_as = Path::new(STATE_IN_ROOT);
        // The mount point of the state directory (the root has it; a root
        // made elsewhere may not).
        std::fs::create_dir_all(trixie::host_path(STATE_IN_ROOT))?;
        let kind = if self.flavor.is_ocaml() { "ocaml" } else { "c" };
        let mut cmd = Command::new(path("/usr/bin/unshare"));
        cmd.args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            .arg(concat!(
                "set -e; root=$1; state=$2; kind=$3; chroot=$4; shift 4; ",
                "mount --bind \"$state\" \"$root/xs\"; ",
                "mount -t proc proc \"$root/proc\"; ",
                "mount --rbind /dev \"$root/dev\"; ",
                "mount -t tmpfs -o mode=0755,size=16m xs-peer-run \"$root/run\"; ",
                "mkdir -p \"$root/run/xenstored\" \"$root/run/lock\"; ",
                "if [ \"$kind\" = ocaml ]; then mount --bind \"$state/run\" \"$root/run/xenstored\"; fi; ",
                "exec \"$chroot\" \"$root\" \"$@\""
            ))
            .arg("sh")
            .arg(&root)
            .arg(dir)
            .arg(kind)
            .arg(path("/usr/sbin/chroot"))
            // Set here rather than on `unshare`: the shim is a library of
            // the root's, for the root's glibc, not the host's tools.
            .arg("/usr/bin/env")
            .arg(format!("LD_PRELOAD={}", shim.display()))
            .arg(self.flavor.binary_in_root());
        if self.flavor.is_ocaml() {
            let base = trixie::host_path("/etc/xen/oxenstored.conf");
            let conf_file = self.oxenstored_conf(&base, dir, seen_as)?;
            cmd.args(["--no-fork", "--no-access-log", "--config-file"]).arg(conf_file);
        } else {
            cmd.arg("-N").env("XENSTORED_RUNDIR", seen_as).env("XENSTORED_PATH", seen_as.join("daemon.sock"));
        }
        cmd.args(&self.args).env("XS_PEER_DIR", seen_as);
        Ok(cmd)
    }
}

/// Where `flavor` makes its socket when that is not the caller's path (the
/// caller's path is then a symlink to it), in the state directory `dir`.
fn own_socket(flavor: Flavor, dir: &Path) -> Option<PathBuf> {
    match flavor {
        Flavor::C => None,
        Flavor::OCaml | Flavor::OCaml420 => Some(dir.join("run/socket")),
        Flavor::C420 => Some(dir.join("daemon.sock")),
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
        let inner = own_socket(self.flavor, self.state.path());
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("{:?} daemon exited during start ({status})", self.flavor));
            }
            if let Some(inner) = inner.as_ref().filter(|inner| !self.socket.exists() && inner.exists()) {
                std::os::unix::fs::symlink(inner, &self.socket).map_err(|e| format!("link the socket: {e}"))?;
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
