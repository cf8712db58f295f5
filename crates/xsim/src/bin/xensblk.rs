//! `xensblk`: dom0's xensblk server, the userspace block backend of Xen
//! Share. Serves FILE to the client of share SHARE (see
//! `xen_share::blk`) until killed; `vdevice --create block` starts it.
//! An answered write is in FILE's page cache and an answered flush on its
//! disk, so killing this program loses no answered write, and a new one
//! started on the same share takes up where it stopped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use xen_platform::share::Shares;
use xsim::StateDir;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "xensblk", version, about = "Serves a file as a Xen Share block device (dom0's xensblk server).")]
struct Cli {
    /// The host's state directory (else $XSIM_STATE, as xsim).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The device's share (`vdevice --list`).
    #[arg(long)]
    share: u32,
    /// The disk image: its size, a multiple of 512 bytes, is the disk's.
    file: PathBuf,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xensblk: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let state = cli.state.map_or_else(StateDir::from_env, StateDir::at);
    let host = state.connect_hypervisor()?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&cli.file)
        .with_context(|| format!("opening {}", cli.file.display()))?;
    let mut share = host.shares().attach(cli.share).with_context(|| format!("attaching share {}", cli.share))?;
    eprintln!("xensblk: serving {} on share {}", cli.file.display(), cli.share);
    xen_share::blk::serve(&mut *share, &file, Duration::from_millis(200), &|| false)
        .with_context(|| format!("serving share {}", cli.share))
}
