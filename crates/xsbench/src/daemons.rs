//! Starting and stopping the daemons under test, and reading their memory.
//!
//! Ours is the `xenstored` built beside this binary. The references are
//! Debian's C xenstored and oxenstored of Xen 4.17 (Debian 12's
//! `xen-utils-4.17`) and of Xen 4.20 (Debian 13's `xen-utils-4.20`), started
//! socket-only by this project's launcher, `xs-peers`. The 4.17 ones need
//! root, `xen-utils-4.17`, `libxen-dev` and `gcc`; the 4.20 ones root,
//! `unshare` and a Debian 13 root file system, which `xs-peers` builds with
//! `mmdebstrap` at their first start (a download of a minute or so). When
//! something is missing the run says what and goes on with the daemons it
//! has. `$XS_PEERS` names a directory of start/stop scripts to use instead
//! (`start-cxenstored.sh SOCKET`, printing the pid, and `stop-cxenstored.sh
//! SOCKET`; likewise `oxenstored`, and `cxenstored-4.20`, `oxenstored-4.20`
//! for the 4.20 ones, scripts that build their own Debian 13 root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use xs_peers::{Flavor, Launch, Reference};

use crate::results::DaemonInfo;

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// This project's xenstored.
    Rust,
    /// Debian's C xenstored (Xen 4.17).
    C,
    /// Debian's C xenstored (Xen 4.20, Debian 13).
    C420,
    /// Debian's oxenstored (Xen 4.17).
    OCaml,
    /// Debian's oxenstored (Xen 4.20, Debian 13).
    OCaml420,
}

impl Kind {
    /// Every daemon, ours first, then the references (the table's column
    /// order).
    pub const ALL: [Kind; 5] = [Kind::Rust, Kind::C, Kind::C420, Kind::OCaml, Kind::OCaml420];

    /// The name used in results (`c` and `ocaml` are the 4.17 ones, as in
    /// results files written before the 4.20 ones took part).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rust => crate::results::OURS,
            Kind::C => "c",
            Kind::C420 => "c-4.20",
            Kind::OCaml => "ocaml",
            Kind::OCaml420 => "ocaml-4.20",
        }
    }

    /// Its column's title in the table.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Rust => "rust (ours)",
            Kind::C => "C 4.17",
            Kind::C420 => "C 4.20",
            Kind::OCaml => "OCaml 4.17",
            Kind::OCaml420 => "OCaml 4.20",
        }
    }

    /// Parses a name from the command line.
    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s).with_context(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown daemon {s:?} ({})", names.join(", "))
        })
    }

    fn peer_script(self) -> Option<&'static str> {
        match self {
            Kind::Rust => None,
            Kind::C => Some("cxenstored"),
            Kind::C420 => Some("cxenstored-4.20"),
            Kind::OCaml => Some("oxenstored"),
            Kind::OCaml420 => Some("oxenstored-4.20"),
        }
    }

    fn flavor(self) -> Option<Flavor> {
        match self {
            Kind::Rust => None,
            Kind::C => Some(Flavor::C),
            Kind::C420 => Some(Flavor::C420),
            Kind::OCaml => Some(Flavor::OCaml),
            Kind::OCaml420 => Some(Flavor::OCaml420),
        }
    }
}

/// The directory of peer start/stop scripts in `$XS_PEERS`, when it is set
/// (else the references are run by `xs-peers`).
pub fn peers_dir() -> Option<PathBuf> {
    std::env::var_os("XS_PEERS").map(PathBuf::from)
}

/// Our xenstored: `$XS_BENCH_XENSTORED`, else the one beside this binary.
pub fn our_xenstored() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("XS_BENCH_XENSTORED") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("binary directory")?.join("xenstored");
    if !p.is_file() {
        bail!("{} missing: build it with `cargo build --release --bins`", p.display());
    }
    Ok(p)
}

/// Whether `kind` can run here, and what it is (or why not).
pub fn probe(kind: Kind) -> DaemonInfo {
    let (present, description) = match kind.peer_script() {
        None => match our_xenstored() {
            Ok(p) => (true, format!("{} (this tree, release build)", p.display())),
            Err(e) => (false, format!("{e:#}")),
        },
        Some(name) => {
            let flavor = kind.flavor().expect("a reference");
            let binary = flavor.binary();
            let package = if flavor.in_trixie() { "Debian 13 xen-utils-4.20" } else { "Debian xen-utils-4.17" };
            match (peers_dir(), xs_peers::missing(flavor.needs())) {
                (None, Some(need)) => (false, format!("not run: {need}")),
                (None, None) if flavor.in_trixie() => {
                    let root = xs_peers::trixie::root();
                    let built = if xs_peers::trixie::ready() { "" } else { ", built now with mmdebstrap" };
                    let where_ = format!("chrooted in the Debian 13 root {}{built}", root.display());
                    (true, format!("{package} {}, {where_}, socket-only via xs-peers", binary.display()))
                }
                (None, None) => (true, format!("{package} {}, socket-only via xs-peers", binary.display())),
                (Some(peers), _) => {
                    let script = peers.join(format!("start-{name}.sh"));
                    if !script.is_file() {
                        (false, format!("not run: {} not found (XS_PEERS is set)", script.display()))
                    } else if !flavor.in_trixie() && !binary.is_file() {
                        (false, format!("not run: {} missing (apt-get install xen-utils-4.17)", binary.display()))
                    } else if !rustix::process::geteuid().is_root() {
                        (false, "not run: the peer scripts need root".to_owned())
                    } else {
                        // A 4.20 script builds its own Debian 13 root when
                        // it has none.
                        let via = script.display();
                        (true, format!("{package} {}, socket-only via {via}", binary.display()))
                    }
                }
            }
        }
    };
    DaemonInfo { name: kind.name().to_owned(), description, present }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Which one.
    pub kind: Kind,
    /// Its socket.
    pub socket: PathBuf,
    /// Its process.
    pub pid: u32,
    child: Option<Child>,
    reference: Option<Reference>,
    stopped: bool,
}

impl Daemon {
    /// Starts `kind` with its socket in `dir`, and waits until it answers.
    pub fn start(kind: Kind, dir: &Path) -> Result<Daemon> {
        let sockdir = dir.join(kind.name());
        std::fs::create_dir_all(&sockdir)?;
        let socket = sockdir.join("socket");
        let daemon = match kind.peer_script() {
            None => {
                let log = std::fs::File::create(sockdir.join("daemon.log"))?;
                let child = Command::new(our_xenstored()?)
                    .arg("-N")
                    .arg("--socket")
                    .arg(&socket)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .context("start our xenstored")?;
                Daemon {
                    kind,
                    socket: socket.clone(),
                    pid: child.id(),
                    child: Some(child),
                    reference: None,
                    stopped: false,
                }
            }
            Some(_) if peers_dir().is_none() => {
                let flavor = kind.flavor().expect("a reference");
                // Domain ids the store workload names in permissions must
                // exist for the references (the shim answers for the
                // "hypervisor").
                let reference = Launch::new(flavor)
                    .domains("all")
                    .start(&socket)
                    .with_context(|| format!("start {}", kind.name()))?;
                Daemon {
                    kind,
                    socket: socket.clone(),
                    pid: reference.pid(),
                    child: None,
                    reference: Some(reference),
                    stopped: false,
                }
            }
            Some(name) => {
                let script = peers_dir().expect("XS_PEERS").join(format!("start-{name}.sh"));
                let out = Command::new("sh")
                    .arg(&script)
                    .arg(&socket)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .with_context(|| format!("run {}", script.display()))?;
                if !out.status.success() {
                    bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stdout));
                }
                let stdout = String::from_utf8_lossy(&out.stdout);
                let pid = stdout
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("no pid in {stdout:?}"))?;
                Daemon { kind, socket: socket.clone(), pid, child: None, reference: None, stopped: false }
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = crate::conn::Conn::connect(&socket) {
                if c.call(xenstore_wire::Op::Read, 0, &[b"/\0"]).is_ok() {
                    return Ok(daemon);
                }
            }
            if Instant::now() > deadline {
                bail!("{} did not answer at {}", kind.name(), socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pins every thread of the daemon to `cpu`, so that runs compare the
    /// daemons' work rather than where the scheduler put them.
    pub fn pin(&self, cpu: usize) -> Result<()> {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &self.pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .context("run taskset")?;
        if !status.success() {
            bail!("taskset failed for pid {}", self.pid);
        }
        Ok(())
    }

    /// Stops the daemon.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait()?;
        } else if let Some(reference) = self.reference.take() {
            reference.stop()?;
        } else if let (Some(name), Some(peers)) = (self.kind.peer_script(), peers_dir()) {
            let script = peers.join(format!("stop-{name}.sh"));
            Command::new("sh").arg(&script).arg(&self.socket).stdout(Stdio::null()).status()?;
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Resident set size of process `pid` now, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}
