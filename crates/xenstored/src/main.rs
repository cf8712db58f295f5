//! `xenstored`: the XenStore daemon.
//!
//! Listens on a Unix socket (privileged, dom0 connections), serves the
//! XenStore protocol with the `xenstore-db` engine, and exits cleanly on
//! SIGTERM or SIGINT. Options follow the C daemon's (`--help`).

#![forbid(unsafe_code)]

mod notify;
mod options;
mod platform;
mod syslog;

use std::io::Write;

use anyhow::{Context, Result};
use tracing::info;
use xenstore_db::Config;

use crate::options::{Command, Options};
use xenstored::{Server, Settings};

fn main() {
    if let Err(e) = run() {
        eprintln!("xenstored: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let command = options::parse(std::env::args().skip(1), &options::Environment::current())?;
    let options = match command {
        Command::Help => {
            print!("{}", options::USAGE);
            return Ok(());
        }
        Command::Version => {
            println!("xenstored {} (xen-control-plane)", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Run(o) => *o,
    };
    // Daemonizing changes directory to `/`: make paths absolute first.
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let exec = xenstored::ExecContext {
        rundir: rundir(&cwd.join(&options.socket)),
        cwd: cwd.clone(),
        args: std::env::args_os().skip(1).collect(),
    };
    let mut options = options;
    options.socket = cwd.join(&options.socket);
    options.pid_file = options.pid_file.map(|p| cwd.join(p));
    options.trace_file = options.trace_file.map(|p| cwd.join(p));
    options.log_file = options.log_file.map(|p| cwd.join(p));
    let log = init_logging(&options)?;
    for warning in &options.warnings {
        tracing::warn!("{warning}");
    }
    let mut soft = xenstore_db::Quotas::unlimited();
    for (name, value) in &options.soft_quotas {
        if let Some(kind) = xenstore_db::QuotaKind::from_name(name) {
            soft.set(kind, *value);
        }
    }
    let settings = Settings {
        socket: options.socket.clone(),
        config: Config {
            quotas: options.quotas,
            keep_orphans: options.keep_orphans,
            soft_quotas: soft,
            ..Config::default()
        },
        limits: Default::default(),
        trace_file: options.trace_file.clone(),
    };
    let mut server = if options.live_update {
        let mut server = restore(settings, exec, &options, &cwd)?;
        if let Some(dir) = &options.persist {
            // The state came from the daemon before, not the disk: the
            // store directory starts again from a snapshot of it.
            server
                .persist_handed_over(&cwd.join(dir), options.snapshot_bytes)
                .context("--persist after a live update")?;
        }
        server
    } else {
        // Bind before forking so that errors reach the caller's terminal
        // and the socket exists when the parent returns.
        let mut server = Server::bind(settings)?;
        server.set_exec_context(exec);
        // Before the platform: serving domains attaches the recovered rings.
        if let Some(dir) = &options.persist {
            let dir = cwd.join(dir);
            let started = std::time::Instant::now();
            let report = server.persist(&dir, options.snapshot_bytes).context("recovering the store (--persist)")?;
            info!(
                dir = %dir.display(),
                snapshot = ?report.snapshot,
                journals = report.journals,
                requests = report.requests,
                truncated = report.truncated,
                ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "store recovered"
            );
        }
        serve_domains(&mut server, &options, &cwd)?;
        server
    };
    if let Some(log) = log {
        server.on_hangup(Box::new(move || log.reopen()));
    }
    if let Some(addr) = &options.metrics {
        let addr = match addr {
            xenstored::MetricsAddr::Unix(path) => xenstored::MetricsAddr::Unix(cwd.join(path)),
            tcp => tcp.clone(),
        };
        server.serve_metrics(&addr)?;
    }
    // The daemon a live update executed is the same process, already
    // detached (the C daemon does not fork again either).
    if !options.no_fork && !options.live_update {
        nix::unistd::daemon(false, false).context("daemonizing")?;
    }
    let pid = std::process::id();
    if let Some(path) = &options.pid_file {
        std::fs::write(path, format!("{pid}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if options.output_pid && !options.live_update {
        println!("{pid}");
        let _ = std::io::stdout().flush();
    }
    notify::ready().context("notifying systemd")?;
    info!(socket = %options.socket.display(), pid, "xenstored ready");
    server.run()?;
    if let Some(path) = &options.pid_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The run directory: `$XENSTORED_RUNDIR` if set, else the socket's
/// directory (`/var/run/xenstored` by default, the C daemon's).
fn rundir(socket: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("XENSTORED_RUNDIR").filter(|d| !d.is_empty()) {
        Some(dir) => dir.into(),
        None => socket.parent().map_or_else(|| "/".into(), std::path::Path::to_path_buf),
    }
}

/// `--live-update`: the state and descriptors the previous daemon handed
/// over, through the same platform it served domains through.
fn restore(
    settings: Settings,
    exec: xenstored::ExecContext,
    options: &Options,
    cwd: &std::path::Path,
) -> Result<Server> {
    let mut restored = xenstored::Restored::load(&exec.rundir)?;
    let platform = match (restored.take_events(), &options.hosted) {
        (Some(parts), Some(hypervisor)) => {
            // As when started (see `serve_domains`).
            nix::sys::prctl::set_dumpable(false).context("making the daemon non-dumpable")?;
            let hypervisor = cwd.join(hypervisor);
            Some(
                platform::hosted_adopting(&hypervisor, parts)
                    .with_context(|| format!("live update: the hosted hypervisor at {}", hypervisor.display()))?,
            )
        }
        (Some(parts), None) => Some(platform::xen_adopting(parts).context("live update: the Xen devices")?),
        (None, _) if restored.served_domains() => {
            anyhow::bail!("live update: the state has rings but no event-channel handle")
        }
        (None, _) => None,
    };
    let server = Server::restore(settings, exec, restored, platform)?;
    info!("live update: serving on from the state handed over");
    Ok(server)
}

/// The platform that serves domains' rings: the hosted hypervisor when
/// asked, else Xen on a Xen control domain, else none.
fn serve_domains(server: &mut Server, options: &Options, cwd: &std::path::Path) -> Result<()> {
    if let Some(hypervisor) = &options.hosted {
        // Guests may run as this user: not dumpable, so that none can open
        // this process's /proc/PID/fd (every ring's page) or mem.
        nix::sys::prctl::set_dumpable(false).context("making the daemon non-dumpable")?;
        let hypervisor = cwd.join(hypervisor);
        let platform = platform::hosted(&hypervisor)
            .with_context(|| format!("connecting to the hosted hypervisor at {}", hypervisor.display()))?;
        server.serve_domains(platform)?;
    } else if xen_platform::xen::detect() {
        // Xen's mappings are not inherited across fork (privcmd and gntdev
        // mark them so), but none is made here: guests' pages are mapped
        // at INTRODUCE, after daemonizing; dom0's own page (xsd_kva) and
        // the descriptors are inherited.
        let platform = platform::xen().context("opening the Xen devices of this control domain")?;
        server.serve_domains(platform).context("serving domains through Xen")?;
        info!("serving domains through Xen");
        if !std::path::Path::new(xen_platform::xen::XSD_KVA).exists() {
            tracing::warn!(
                "{} is missing (is xenfs mounted on /proc/xen?): dom0's own xenstore ring is not served, so dom0's \
                 kernel cannot reach xenstore",
                xen_platform::xen::XSD_KVA
            );
        }
    } else {
        tracing::warn!(
            "no platform to serve domains' rings (not a Xen control domain: /proc/xen/capabilities lacks control_d \
             and there is no /dev/xen/privcmd; --hosted serves xsim's domains): INTRODUCE records a domain but \
             nothing serves its ring"
        );
    }
    Ok(())
}

/// Sets up logging: to `--log-file` (reopened on SIGHUP); else, for a
/// daemon that forks, to the system log (its standard error is gone);
/// else standard error. Returns the log file's handle, if any.
fn init_logging(options: &Options) -> Result<Option<LogFile>> {
    let level = if options.verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_ansi(false);
    if options.log_file.is_none() && !options.no_fork {
        match syslog::Syslog::connect() {
            // The system log stamps its own time.
            Ok(syslog) => {
                builder.without_time().with_writer(syslog).init();
                return Ok(None);
            }
            Err(e) => eprintln!("xenstored: no system log ({e}); a forked daemon logs nowhere without --log-file"),
        }
    }
    match &options.log_file {
        Some(path) => {
            // Opened before forking: the descriptor survives daemonizing.
            let log = LogFile::open(path)?;
            let writer = log.clone();
            builder.with_writer(move || writer.clone()).init();
            Ok(Some(log))
        }
        None => {
            builder.with_writer(std::io::stderr).init();
            Ok(None)
        }
    }
}

/// The log file, which SIGHUP opens again by name (after logrotate moved
/// it away, lines go to a new file of the same name).
#[derive(Debug, Clone)]
struct LogFile {
    path: std::path::PathBuf,
    file: std::sync::Arc<std::sync::Mutex<std::fs::File>>,
}

impl LogFile {
    fn open(path: &std::path::Path) -> Result<LogFile> {
        let file = Self::append(path).with_context(|| format!("opening log file {}", path.display()))?;
        Ok(LogFile { path: path.to_path_buf(), file: std::sync::Arc::new(std::sync::Mutex::new(file)) })
    }

    fn append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().create(true).append(true).open(path)
    }

    /// Opens the file again by its path; keeps the old one if that fails.
    fn reopen(&self) {
        match Self::append(&self.path) {
            Ok(file) => *self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = file,
            Err(e) => tracing::warn!("SIGHUP: cannot reopen the log file {}: {e}", self.path.display()),
        }
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).flush()
    }
}
