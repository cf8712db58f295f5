//! `xensnet`: dom0's end of a xensnet LAN. Joins the LAN on share SHARE
//! as domain 0 and carries its frames to a TAP interface (`xsn0`, MAC
//! `02:58:53:00:00:00`, address `10.88.255.254/16`) in a network
//! namespace of its own, NAME, which it makes and, when it ends, removes:
//! dom0's own network is never touched. `ip netns exec NAME ping
//! 10.88.0.1` then reaches domain 1. `vdevice --create net 0 ...` and
//! `vdevice --add DEVICE 0` start it; `vdevice --remove DEVICE 0` and
//! `--destroy` end it (SIGTERM). It also ends when the LAN drops dom0 or
//! is destroyed.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use xen_platform::hosted::{tap, Host};
use xen_platform::share::{lan_ip, Shares};
use xen_share::net::LanPort;
use xsim::StateDir;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "xensnet",
    version,
    about = "Puts dom0 on a Xen Share LAN, through a TAP interface in a network namespace of its own."
)]
struct Cli {
    /// The host's state directory (else $XSIM_STATE, as xsim).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The LAN's share (`vdevice --list`).
    #[arg(long)]
    share: u32,
    /// The network namespace to make (`ip netns`); it must not exist.
    #[arg(long, value_name = "NAME")]
    netns: String,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xensnet: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let state = cli.state.clone().map_or_else(StateDir::from_env, StateDir::at);
    let host = state.connect_hypervisor()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    if std::path::Path::new("/run/netns").join(&cli.netns).exists() {
        bail!("the network namespace {} exists already (ip netns del {0})", cli.netns);
    }
    tap::ip(&["netns", "add", &cli.netns]).context("making the network namespace")?;
    let served = serve(&host, &cli, &stop);
    let removed = tap::ip(&["netns", "del", &cli.netns]);
    served?;
    removed.context("removing the network namespace")
}

/// Sets the namespace up, joins the LAN and carries frames until told to
/// stop or dropped.
fn serve(host: &Host, cli: &Cli, stop: &AtomicBool) -> Result<()> {
    let tap = in_namespace(&cli.netns).context("setting up the namespace")?;
    let share = host.shares().attach(cli.share).with_context(|| format!("attaching share {}", cli.share))?;
    let port = LanPort::join(share).context("joining the LAN")?;
    // vdevice waits for this line.
    println!("xensnet: ready: dom0 is {} on LAN {} in network namespace {}", lan_ip(0), cli.share, cli.netns);
    match xsim::lan::pump(port, tap, stop) {
        Ok(()) => Ok(()),
        // Dropped from the LAN, or the LAN destroyed: the end.
        Err(e) if e.raw_os_error().is_some_and(is_gone) => {
            println!("xensnet: off the LAN ({e})");
            Ok(())
        }
        Err(e) => Err(e).context("carrying frames"),
    }
}

/// Whether `errno` says this member is off the LAN: removed, the LAN
/// destroyed, or the host gone (`xsim down`).
fn is_gone(errno: i32) -> bool {
    use rustix::io::Errno;
    [Errno::PERM, Errno::NOENT, Errno::CONNRESET, Errno::PIPE].iter().any(|e| e.raw_os_error() == errno)
}

/// Configures dom0's end in the namespace `name` from a thread that
/// enters it (a network namespace is per thread; this process's others
/// stay in dom0's); a descriptor attached to its TAP.
fn in_namespace(name: &str) -> Result<std::os::fd::OwnedFd> {
    let path = std::path::Path::new("/run/netns").join(name);
    let ns = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<std::os::fd::OwnedFd> {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .context("entering it")?;
                Ok(tap::set_up_lan_namespace(0, None)?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("its thread panicked"))?
    })
}
