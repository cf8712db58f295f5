//! `xsim`: the hosted toolstack's command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use xen_platform::hosted::{Confinement, Isolation};
use xen_platform::ShutdownReason;
use xsim::devices::{self, listing, AttachSpec};
use xsim::{host, list, DomainSpec, StateDir, Toolstack};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "xsim",
    version,
    about = "Runs Xen domains as processes on plain Linux: a host process plays the hypervisor, \
             xenstored serves the domains' rings, guest programs are domains.",
    after_help = "NAME is a domain name or id. The state directory is --state, else $XSIM_STATE, \
                  else $XDG_RUNTIME_DIR/xsim, else /tmp/xsim-<uid>."
)]
struct Cli {
    /// The host's state directory.
    #[arg(long, global = true, value_name = "DIR")]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the hypervisor and xenstored.
    ///
    /// Says how guests are isolated from dom0 and from each other: as
    /// root each guest runs as a user of its own; otherwise each runs in a
    /// user namespace of its own, which dom0's sockets refuse; Landlock,
    /// where the kernel has it, keeps every guest out of other processes'
    /// /proc files.
    Up {
        /// uid (a user per guest; needs root), userns (a user namespace
        /// per guest) or none; the strongest available by default.
        #[arg(long, value_name = "HOW")]
        isolation: Option<Isolation>,
    },
    /// Stop them (destroys every domain).
    Down,
    /// Print `export XSIM_STATE=...` and `export XENSTORED_PATH=...` for dom0 tools.
    Env,
    /// Run the hypervisor in the foreground (`xsim up` starts it).
    #[command(hide = true)]
    Hypervisor {
        /// As for `up`.
        #[arg(long, value_name = "HOW")]
        isolation: Option<Isolation>,
    },
    /// Print a shell completion script (scripts/install installs them).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, xsim(1), in roff (scripts/install installs it).
    #[command(hide = true)]
    Man,
    /// Start PROGRAM as a new domain; prints its id.
    ///
    /// The program runs with the caller's environment (over `xsim up`'s),
    /// less XENSTORED_PATH (a guest reaches xenstored over its own ring),
    /// and with each --env on top.
    Create {
        /// Leave the domain paused (`xsim unpause` lets it run).
        #[arg(short, long)]
        paused: bool,
        /// Run it in a network namespace of its own, with loopback and a
        /// TAP interface, xsn0, addressed 10.88.X.Y/16 from its domid, for
        /// a xensnet LAN (`vdevice --create net`) to carry; needs root.
        #[arg(long)]
        netns: bool,
        /// Run it in a mount namespace of its own whose /mnt is a FUSE
        /// filesystem that the guest serves on the descriptor
        /// XSIM_FUSE_FD (`xsim-guest xensblk` exports its disk there as
        /// /mnt/disk); needs root.
        #[arg(long)]
        fuse: bool,
        /// Set a variable for the program (repeatable).
        #[arg(short, long = "env", value_name = "NAME=VALUE", value_parser = env_pair)]
        env: Vec<(String, String)>,
        /// The domain's name (not all digits: it would read as an id).
        #[arg(value_parser = domain_name)]
        name: String,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "PROGRAM")]
        program: Vec<String>,
    },
    /// List domains in `xl list`'s columns: Name, ID, Mem, VCPUs, State, Time(s).
    ///
    /// A domain is a process: Mem is its resident memory in MiB, VCPUs its
    /// threads, Time(s) its CPU time (user + system); a domain whose
    /// process has ended (shut down, not destroyed) shows 0 for the three.
    /// State is xl's six flags, `-` where unset: r running (its process on
    /// a CPU), b blocked (its process waiting), p paused, s shut down, the
    /// shutdown reason (- poweroff, r reboot, s suspend, c crash, w
    /// watchdog, S soft_reset), d dying. Domain-0's figures are
    /// xenstored's, dom0's one resident program here (the hypervisor
    /// process plays Xen, which xl list does not count either).
    List {
        /// Only these domains, in this order (all when none is given).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Print the domain's console (its output so far).
    Console {
        /// Keep printing what the domain writes until it is destroyed.
        #[arg(short, long)]
        follow: bool,
        /// The domain.
        name: String,
    },
    /// Let a paused domain run.
    Unpause {
        /// The domain.
        name: String,
    },
    /// Stop a domain from running.
    Pause {
        /// The domain.
        name: String,
    },
    /// Wait until the domain shuts down by itself; prints how.
    ///
    /// For scripts that run a guest program to its end: the exit status
    /// is 0 when the guest powered off (its program exited 0), 1 when it
    /// shut down otherwise (a program that failed crashes its domain) or
    /// was still running after the timeout.
    Wait {
        /// Seconds to wait.
        #[arg(short, long, default_value_t = 60.0, value_name = "SECS")]
        timeout: f64,
        /// The domain.
        name: String,
    },
    /// Ask the guest to shut down (control/shutdown) and wait for it.
    ///
    /// The guest shuts down with the reason it reports (a guest asked to
    /// reboot may halt). If it has not shut down after the wait, this fails,
    /// or with --force shuts it down for REASON without it.
    Shutdown {
        /// Why: poweroff, reboot, suspend, crash, watchdog, soft_reset.
        #[arg(short, long, default_value = "poweroff", value_parser = reason)]
        reason: ShutdownReason,
        /// Seconds to wait for the guest.
        #[arg(short = 'w', long = "wait", default_value_t = 5.0, value_name = "SECS")]
        wait: f64,
        /// Shut it down without the guest if it has not after the wait.
        #[arg(short, long)]
        force: bool,
        /// The domain.
        name: String,
    },
    /// Destroy a domain and remove its nodes.
    Destroy {
        /// The domain.
        name: String,
    },
    /// Attach a PV device to a domain, as `xl block-attach` does; prints its id.
    ///
    /// Writes the frontend directory (/local/domain/FE/device/TYPE/ID, the
    /// guest's, readable by the backend domain) and the backend directory
    /// (/local/domain/BE/backend/TYPE/FE/ID, the backend domain's, readable
    /// by the guest) in one transaction, with `state` 1 in both and `online`
    /// 1 and each KEY=VALUE in the backend's (a vbd's frontend also gets
    /// `virtual-device` and `device-type`). Then waits for the backend to
    /// take the device (state InitWait or later). If it does not, this
    /// fails and leaves the directories, as libxl does: a backend started
    /// later still takes the device, and `xsim detach --force` removes it.
    #[command(after_help = "Examples:\n  xsim attach guest vbd params=/srv/disk.img mode=w\n  \
                            xsim attach --backend driver-dom --devid 0 guest vif mac=00:16:3e:00:00:01")]
    Attach {
        /// The domain serving the device (name or id).
        #[arg(short, long, default_value = "0", value_name = "DOMAIN")]
        backend: String,
        /// The device id (default: the next free one; for vbd the next xvd disk, 51712 for xvda).
        #[arg(short, long, value_name = "N")]
        devid: Option<u32>,
        /// Seconds to wait for the backend.
        #[arg(short, long, default_value_t = 10.0, value_name = "SECS", value_parser = seconds)]
        timeout: f64,
        /// The guest (name or id).
        domain: String,
        /// The device type: vbd, vif, or any other one word.
        #[arg(value_name = "TYPE", value_parser = device_type)]
        devtype: String,
        /// Keys for the backend directory (params, mode, mac, ...).
        #[arg(value_name = "KEY=VALUE", value_parser = backend_pair)]
        keys: Vec<(String, String)>,
    },
    /// Detach a device, as `xl block-detach` does.
    ///
    /// Writes `online` 0 and state Closing (5) to the backend directory,
    /// waits for the backend to reach Closed (6) (which it does once the
    /// guest's frontend has closed), then removes both directories. If the
    /// backend does not close in time, this fails and removes nothing;
    /// --force removes the directories at once, without asking.
    Detach {
        /// Seconds to wait for the backend to close.
        #[arg(short, long, default_value_t = 10.0, value_name = "SECS", value_parser = seconds)]
        timeout: f64,
        /// Remove the directories without waiting for either end.
        #[arg(short, long)]
        force: bool,
        /// The guest (name or id).
        domain: String,
        /// The device type.
        #[arg(value_name = "TYPE", value_parser = device_type)]
        devtype: String,
        /// The device id (`xsim devices` lists them).
        devid: u32,
    },
    /// List a domain's devices, as `xl block-list` does: Type, Devid, BE, FE-state, BE-state, BE-path.
    ///
    /// BE is the backend's domain, BE-path its directory. The states are
    /// the numbers in each end's `state` node: 1 Initialising, 2 InitWait,
    /// 3 Initialised, 4 Connected, 5 Closing, 6 Closed, 7 Reconfiguring,
    /// 8 Reconfigured; 0 where the node is missing, ? where it holds no
    /// state. Lists the devices xsim attached (its own record of them, as
    /// xl lists libxl's).
    Devices {
        /// The guest (name or id).
        domain: String,
    },
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err("want a number of seconds (such as 10 or 0.5)".into()),
    }
}

fn device_type(text: &str) -> Result<String, String> {
    xsim::devices::names::check_type(text).map(|()| text.to_owned())
}

fn backend_pair(text: &str) -> Result<(String, String), String> {
    xsim::devices::names::backend_pair(text)
}

fn domain_name(name: &str) -> Result<String, String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a name that is all digits would be taken for a domain id".into());
    }
    Ok(name.to_owned())
}

fn env_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err("want NAME=VALUE".into()),
    }
}

/// What a guest program is started with: the caller's environment (minus
/// XENSTORED_PATH, which would point it at dom0's privileged socket),
/// then `extra`.
fn guest_env(extra: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k != "XENSTORED_PATH").collect();
    env.extend(extra);
    env
}

fn reason(name: &str) -> Result<ShutdownReason, String> {
    ShutdownReason::from_name(name)
        .ok_or_else(|| "unknown shutdown reason (valid: poweroff, reboot, suspend, crash, watchdog, soft_reset)".into())
}

fn main() {
    // A dom0 tool holds privileged connections (the hypervisor's): not
    // dumpable, so that a guest of the same user cannot take them through
    // /proc/PID/fd.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("xsim: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let state = cli.state.map_or_else(StateDir::from_env, StateDir::at);
    match cli.command {
        Cmd::Up { isolation } => {
            let isolation = isolation.unwrap_or_else(Isolation::strongest);
            let confinement = host::up_with(&state, &host::Programs::locate()?, isolation)?;
            println!("host up in {}", state.root().display());
            println!("guest isolation ({}): {confinement}", isolation.name());
            println!("export XENSTORED_PATH={}", state.xenstored_socket().display());
            Ok(())
        }
        Cmd::Down => {
            if !host::down(&state)? {
                eprintln!("xsim: no host was running in {}", state.root().display());
            }
            Ok(())
        }
        Cmd::Env => {
            println!("export XSIM_STATE={}", state.root().display());
            println!("export XENSTORED_PATH={}", state.xenstored_socket().display());
            Ok(())
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xsim", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Cmd::Hypervisor { isolation } => {
            let confinement = Confinement::with(isolation.unwrap_or_else(Isolation::strongest));
            let hv =
                xen_platform::hosted::Hypervisor::bind(state.root(), confinement).context("starting the hypervisor")?;
            hv.serve().context("running the hypervisor")?;
            Ok(())
        }
        Cmd::Create { paused, netns, fuse, env, name, program } => {
            let mut ts = Toolstack::connect(&state)?;
            let new = ts.create(&DomainSpec { name, program, env: guest_env(env), paused, netns, fuse })?;
            println!("{}", new.domid);
            Ok(())
        }
        Cmd::List { names } => {
            let mut ts = Toolstack::connect(&state)?;
            let domains = if names.is_empty() {
                ts.list()?
            } else {
                names.iter().map(|n| ts.resolve(n)).collect::<Result<_>>()?
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", list::HEADER)?;
            for d in domains {
                // Dom0 has no guest process: xenstored stands for it.
                let pid = d.pid.or_else(|| (d.domid == 0).then(|| host::pid_of(&state.xenstored_pid())).flatten());
                writeln!(out, "{}", list::row(&d, pid.and_then(list::Usage::of)))?;
            }
            Ok(())
        }
        Cmd::Console { follow, name } => {
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(&name)?;
            let path = state.console(d.domid);
            let mut out = std::io::stdout().lock();
            let mut shown = 0;
            loop {
                let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                out.write_all(text.get(shown..).unwrap_or_default())?;
                out.flush()?;
                shown = text.len().max(shown);
                if !follow || ts.resolve(&d.domid.to_string()).is_err() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Cmd::Unpause { name } => {
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(&name)?;
            ts.unpause(d.domid)
        }
        Cmd::Pause { name } => {
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(&name)?;
            ts.pause(d.domid)
        }
        Cmd::Destroy { name } => {
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(&name)?;
            ts.destroy(d.domid)
        }
        Cmd::Attach { backend, devid, timeout, domain, devtype, keys } => {
            let mut ts = Toolstack::connect(&state)?;
            let frontend = ts.resolve(&domain)?.domid;
            let backend = ts.resolve(&backend).context("--backend")?.domid;
            let spec = AttachSpec {
                frontend,
                devtype,
                backend,
                devid,
                backend_keys: keys,
                timeout: Duration::from_secs_f64(timeout),
            };
            println!("{}", devices::attach(&mut ts, &spec)?);
            Ok(())
        }
        Cmd::Detach { timeout, force, domain, devtype, devid } => {
            let mut ts = Toolstack::connect(&state)?;
            let frontend = ts.resolve(&domain)?.domid;
            devices::detach(&mut ts, frontend, &devtype, devid, Duration::from_secs_f64(timeout), force)
        }
        Cmd::Devices { domain } => {
            let mut ts = Toolstack::connect(&state)?;
            let frontend = ts.resolve(&domain)?.domid;
            let records = devices::record::all(ts.store(), frontend)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", listing::HEADER)?;
            for record in &records {
                writeln!(out, "{}", listing::row(ts.store(), record))?;
            }
            Ok(())
        }
        Cmd::Wait { timeout, name } => {
            if !(timeout.is_finite() && timeout >= 0.0) {
                bail!("--timeout {timeout}: not a number of seconds");
            }
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(&name)?;
            match ts.wait_shutdown(d.domid, Duration::from_secs_f64(timeout))? {
                Some(state) => {
                    println!("{} ({}): {}", d.name, d.domid, state);
                    if state != xen_platform::DomainState::Shutdown(ShutdownReason::Poweroff) {
                        bail!("{} ({}) did not power off: {state}", d.name, d.domid);
                    }
                    Ok(())
                }
                None => bail!("{} ({}) is still running after {timeout} s", d.name, d.domid),
            }
        }
        Cmd::Shutdown { reason, wait, force, name } => {
            if !(wait.is_finite() && wait >= 0.0) {
                bail!("--wait {wait}: not a number of seconds");
            }
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(&name)?;
            eprintln!("xsim: asked {} ({}) to {}; waiting up to {wait} s", d.name, d.domid, reason.name());
            ts.request_shutdown(d.domid, reason)?;
            let state = match ts.wait_shutdown(d.domid, Duration::from_secs_f64(wait))? {
                Some(state) => state,
                None if force => {
                    eprintln!("xsim: {} did not shut down in {wait} s: forcing it ({})", d.name, reason.name());
                    ts.force_shutdown(d.domid, reason)?
                }
                None => bail!(
                    "{} ({}) is still running after {wait} s (`xsim shutdown --force` shuts it down without it)",
                    d.name,
                    d.domid
                ),
            };
            println!("{} ({}): {}", d.name, d.domid, state);
            Ok(())
        }
    }
}
