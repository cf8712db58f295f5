//! `xenstored`: the XenStore daemon.
//!
//! Listens on a Unix socket (privileged, dom0 connections), serves the
//! XenStore protocol with the `xenstore-db` engine, and exits cleanly on
//! SIGTERM or SIGINT. Options follow the C daemon's (`--help`).

#![forbid(unsafe_code)]

mod notify;
mod options;
mod platform;

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
    let command = options::parse(std::env::args().skip(1), std::env::var("XENSTORED_PATH").ok())?;
    let options = match command {
        Command::Help => {
            print!("{}", options::USAGE);
            return Ok(());
        }
        Command::Run(o) => *o,
    };
    // Daemonizing changes directory to `/`: make paths absolute first.
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let mut options = options;
    options.socket = cwd.join(&options.socket);
    options.pid_file = options.pid_file.map(|p| cwd.join(p));
    options.trace_file = options.trace_file.map(|p| cwd.join(p));
    options.log_file = options.log_file.map(|p| cwd.join(p));
    init_logging(&options)?;
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
    // Bind before forking so that errors reach the caller's terminal and the
    // socket exists when the parent returns.
    let mut server = Server::bind(settings)?;
    if let Some(hypervisor) = &options.hosted {
        let hypervisor = cwd.join(hypervisor);
        let platform = platform::hosted(&hypervisor)
            .with_context(|| format!("connecting to the hosted hypervisor at {}", hypervisor.display()))?;
        server.serve_domains(platform)?;
    }
    if !options.no_fork {
        nix::unistd::daemon(false, false).context("daemonizing")?;
    }
    let pid = std::process::id();
    if let Some(path) = &options.pid_file {
        std::fs::write(path, format!("{pid}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if options.output_pid {
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

fn init_logging(options: &Options) -> Result<()> {
    let level = if options.verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_ansi(false);
    match &options.log_file {
        Some(path) => {
            // Opened before forking: the descriptor survives daemonizing.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(file)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
