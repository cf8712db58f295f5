//! `xen-blkback`: the block backend for dom0 (or a driver domain).
//! Serves every device under its domain's `backend/vbd/*/*` (or
//! `backend/qdisk`, `--type`; one frontend domain's only, `--domain`),
//! each from the raw image its `params` node names (`mode` without a
//! `w` makes it read-only), until signalled (`SIGTERM`, `SIGINT`,
//! `SIGHUP`: the rings are unmapped and the ports closed on the way out).
//!
//! ```text
//! xen-blkback [--platform hosted|xen] [--type vbd|qdisk] [--domain N]
//!             [--socket PATH] [--hypervisor PATH] [--state DIR] [--domid N] [--tick-ms MS] [-v]
//! xen-blkback qemu-compat QEMU-ARGS...
//! ```
//!
//! The platform is Xen when running on it (and built with the `xen`
//! feature), else hosted: xsim's hypervisor at `--hypervisor`, else
//! `hypervisor.sock` in the xsim state directory (`--state`, else
//! `$XSIM_STATE`, else `$XDG_RUNTIME_DIR/xsim`, else `/tmp/xsim-<uid>`).
//! xenstored is `--socket`, else found as every dom0 tool finds it
//! (`XENSTORED_PATH`, the daemon's socket, `/dev/xen/xenbus`).
//!
//! # In QEMU's place
//!
//! Called by a QEMU name (`xen-qemu-system-i386`, `qemu-system-*`: a copy
//! or a link at the path libxl runs), or as `xen-blkback qemu-compat
//! ARGS`, it reads QEMU's command line instead and serves the `qdisk`
//! disks of the one guest libxl started it for (see `qemu.rs`). One
//! program rather than two: the install is a link at libxl's path, and
//! the serving code is the same; the name decides, as the C xenstore
//! tools choose their job by the name they were called by.

#[cfg(not(any(feature = "hosted", feature = "xen")))]
compile_error!("xen-blkback needs a platform: the hosted or the xen feature");

mod platform;
mod qemu;
mod qemu_args;
mod qmp;
mod serve;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use blkif::{BackendType, Blkback, ServeConfig};
use clap::Parser;
use platform::Platform;
use serve::{Ended, Stop};
use xenbus::SyncConn;

/// Serves Xen PV block devices from image files.
#[derive(Debug, Parser)]
#[command(name = "xen-blkback", version, after_help = "As QEMU for libxl: xen-blkback qemu-compat QEMU-ARGS...")]
struct Args {
    /// The platform (default: xen when running on Xen, else hosted).
    #[arg(long, value_enum)]
    platform: Option<Platform>,
    /// The backend directory type to serve: vbd, or qdisk (libxl's disks
    /// for a userspace backend).
    #[arg(long = "type", default_value_t = BackendType::Vbd, value_parser = parse_type)]
    backend_type: BackendType,
    /// Serve only this frontend domain's devices.
    #[arg(long)]
    domain: Option<u16>,
    /// xenstored's socket (default: XENSTORED_PATH, else the usual place).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The hosted hypervisor's socket (default: in the xsim state directory).
    #[arg(long)]
    hypervisor: Option<PathBuf>,
    /// The xsim state directory.
    #[arg(long)]
    state: Option<PathBuf>,
    /// The domain this backend runs in.
    #[arg(long, default_value_t = 0)]
    domid: u16,
    /// The longest wait when nothing happens (a request's event channel
    /// or a xenstore event ends it sooner).
    #[arg(long, default_value_t = 20)]
    tick_ms: u64,
    /// Log each device's handshake and failures (twice: every request).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn parse_type(s: &str) -> Result<BackendType, String> {
    s.parse()
}

/// Logs to stderr from `level` up (colours only on a terminal: as QEMU,
/// the log usually goes to a file, `/var/log/xen/qemu-dm-<name>.log`).
fn init_logging(level: tracing::Level) {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_max_level(level).with_ansi(ansi).with_writer(std::io::stderr).init();
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if argv.first().is_some_and(|a| qemu::called_as_qemu(a)) {
        return qemu::main(&argv[1..]);
    }
    if argv.get(1).map(String::as_str) == Some("qemu-compat") {
        return qemu::main(&argv[2..]);
    }
    let args = Args::parse();
    init_logging(match args.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    });
    let stop = Stop::on_signals()?;
    let platform = args.platform.unwrap_or_else(platform::detect);
    let hypervisor = args.hypervisor;
    let state = args.state;
    let machine = platform::open(platform, || hypervisor.unwrap_or_else(|| platform::hypervisor_socket(state)))?;
    let client = match &args.socket {
        Some(path) => xenstore::Client::connect(path),
        None => xenstore::Client::open(),
    }
    .context("connecting to xenstored")?;
    let config = ServeConfig { backend_type: args.backend_type, frontend: args.domain };
    let mut backend = Blkback::with_config(SyncConn::new(client), args.domid, machine.grants, machine.events, config);
    backend.start().with_context(|| format!("watching backend/{}", args.backend_type))?;
    eprintln!("xen-blkback: serving {} of domain {} ({platform:?})", backend.bus().watched(), args.domid);
    let ended = serve::run(&mut backend, &stop, Duration::from_millis(args.tick_ms), |_| Ok(None))?;
    if ended == Ended::Signal {
        tracing::info!("signalled: unmapping and exiting");
    }
    Ok(())
}
