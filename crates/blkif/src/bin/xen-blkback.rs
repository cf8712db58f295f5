//! `xen-blkback`: the block backend for dom0 (or a driver domain) on the
//! hosted platform. Serves every `vbd` device under its domain's
//! `backend/vbd/*/*`, each from the image file its `params` node names
//! (`mode` `r` makes it read-only), until killed.
//!
//! ```text
//! xen-blkback [--socket PATH] [--hypervisor PATH] [--state DIR] [--domid N] [--tick-ms MS] [-v]
//! ```
//!
//! xenstored's socket is `--socket`, else `XENSTORED_PATH` (as for every
//! dom0 tool); the hypervisor's is `--hypervisor`, else
//! `hypervisor.sock` in the xsim state directory (`--state`, else
//! `$XSIM_STATE`, else `$XDG_RUNTIME_DIR/xsim`, else `/tmp/xsim-<uid>`,
//! as xsim finds it).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use blkif::Blkback;
use clap::Parser;
use xen_platform::hosted::{hypervisor_socket, Host};
use xenbus::SyncConn;

/// Serves Xen PV block devices from image files (hosted platform).
#[derive(Debug, Parser)]
#[command(name = "xen-blkback", version)]
struct Args {
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
    /// How often xenstore events are looked at when no request comes.
    #[arg(long, default_value_t = 20)]
    tick_ms: u64,
    /// Log each device's handshake and failures (twice: every request).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The xsim state directory, found as xsim finds it.
fn state_dir(explicit: Option<PathBuf>) -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    explicit
        .or_else(|| env("XSIM_STATE"))
        .or_else(|| env("XDG_RUNTIME_DIR").map(|d| d.join("xsim")))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("xsim-{}", rustix::process::getuid().as_raw())))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let level = match args.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    let hypervisor = args.hypervisor.unwrap_or_else(|| hypervisor_socket(&state_dir(args.state)));
    let host = Host::connect(&hypervisor).with_context(|| format!("connecting to {}", hypervisor.display()))?;
    let client = match &args.socket {
        Some(path) => xenstore::Client::connect(path),
        None => xenstore::Client::open(),
    }
    .context("connecting to xenstored")?;
    let events = host.event_channels().context("opening event channels")?;
    let mut backend = Blkback::new(SyncConn::new(client), args.domid, Box::new(host.grants()), Box::new(events));
    backend.start().context("watching backend/vbd")?;
    eprintln!("xen-blkback: serving backend/vbd of domain {}", args.domid);
    backend.run(Duration::from_millis(args.tick_ms)).context("serving")?;
    Ok(())
}
