//! `xsim`: the hosted toolstack's command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xen_platform::ShutdownReason;
use xsim::{host, DomainSpec, StateDir, Toolstack};

const USAGE: &str = "\
Usage: xsim [--state DIR] <command> [args]

Runs Xen domains as processes on plain Linux: a host process plays the
hypervisor, xenstored serves the domains' rings, guest programs are domains.

Commands:
  up                         start the hypervisor and xenstored
  down                       stop them (destroys every domain)
  env                        print `export XENSTORED_PATH=...` for dom0 tools
  create [-p] NAME -- PROGRAM [ARGS...]
                             start PROGRAM as a new domain (paused with -p)
  list                       list domains: name, id, state
  console NAME               print the domain's console (its output)
  unpause NAME | pause NAME  let a domain run / stop it running
  shutdown [-r REASON] [-w SECS] NAME
                             ask the guest to shut down (control/shutdown),
                             forcing it after SECS (default 5)
  destroy NAME               destroy a domain and remove its nodes

NAME is a domain name or id. The state directory is --state, else
$XSIM_STATE, else $XDG_RUNTIME_DIR/xsim, else /tmp/xsim-<uid>.
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xsim: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut state = None;
    if args.first().map(String::as_str) == Some("--state") {
        if args.len() < 2 {
            bail!("--state needs a directory");
        }
        state = Some(StateDir::at(PathBuf::from(args.remove(1))));
        args.remove(0);
    }
    let state = state.unwrap_or_else(StateDir::from_env);
    let Some(command) = args.first().cloned() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    let rest = &args[1..];
    match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "up" => {
            host::up(&state, &host::Programs::locate()?)?;
            println!("host up in {}", state.root().display());
            println!("export XENSTORED_PATH={}", state.xenstored_socket().display());
            Ok(())
        }
        "down" => {
            if !host::down(&state)? {
                eprintln!("xsim: no host was running in {}", state.root().display());
            }
            Ok(())
        }
        "env" => {
            println!("export XSIM_STATE={}", state.root().display());
            println!("export XENSTORED_PATH={}", state.xenstored_socket().display());
            Ok(())
        }
        "hypervisor" => {
            // Internal: `xsim up` runs this in the background.
            let dir = match rest {
                [flag, dir] if flag == "--state" => StateDir::at(PathBuf::from(dir)),
                [] => state,
                _ => bail!("usage: xsim hypervisor [--state DIR]"),
            };
            let hv = xen_platform::hosted::Hypervisor::bind(dir.root()).context("starting the hypervisor")?;
            hv.serve().context("running the hypervisor")?;
            Ok(())
        }
        "create" => create(&state, rest),
        "list" => {
            let mut ts = Toolstack::connect(&state)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<32} {:>5}  State", "Name", "ID")?;
            for d in ts.list()? {
                writeln!(out, "{:<32} {:>5}  {}", d.name, d.domid, d.state)?;
            }
            Ok(())
        }
        "console" => {
            let [name] = rest else { bail!("usage: xsim console NAME") };
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(name)?;
            let path = state.console(d.domid);
            let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            std::io::stdout().write_all(&text)?;
            Ok(())
        }
        "unpause" | "pause" | "destroy" => {
            let [name] = rest else { bail!("usage: xsim {command} NAME") };
            let mut ts = Toolstack::connect(&state)?;
            let d = ts.resolve(name)?;
            match command.as_str() {
                "unpause" => ts.unpause(d.domid),
                "pause" => ts.pause(d.domid),
                _ => ts.destroy(d.domid),
            }
        }
        "shutdown" => shutdown(&state, rest),
        other => bail!("unknown command {other:?} (try `xsim help`)"),
    }
}

fn create(state: &StateDir, args: &[String]) -> Result<()> {
    let mut paused = false;
    let mut i = 0;
    let mut name = None;
    while i < args.len() {
        match args[i].as_str() {
            "-p" => paused = true,
            "--" => {
                i += 1;
                break;
            }
            a if a.starts_with('-') => bail!("create: unknown option {a}"),
            a => {
                if name.replace(a.to_owned()).is_some() {
                    bail!("create: one NAME, then `--` and the program");
                }
            }
        }
        i += 1;
    }
    let Some(name) = name else { bail!("usage: xsim create [-p] NAME -- PROGRAM [ARGS...]") };
    let program: Vec<String> = args[i..].to_vec();
    if program.is_empty() {
        bail!("usage: xsim create [-p] NAME -- PROGRAM [ARGS...]");
    }
    let mut ts = Toolstack::connect(state)?;
    let new = ts.create(&DomainSpec { name: name.clone(), program, env: Vec::new(), paused })?;
    println!("{}", new.domid);
    Ok(())
}

fn shutdown(state: &StateDir, args: &[String]) -> Result<()> {
    let mut reason = ShutdownReason::Poweroff;
    let mut grace = Duration::from_secs(5);
    let mut name = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-r" => {
                let r = it.next().context("-r needs a reason")?;
                reason = ShutdownReason::from_name(r).with_context(|| format!("unknown shutdown reason {r:?}"))?;
            }
            "-w" => {
                let s = it.next().context("-w needs seconds")?;
                grace = Duration::from_secs_f64(s.parse().with_context(|| format!("bad seconds {s:?}"))?);
            }
            other => name = Some(other.to_owned()),
        }
    }
    let Some(name) = name else { bail!("usage: xsim shutdown [-r REASON] [-w SECS] NAME") };
    let mut ts = Toolstack::connect(state)?;
    let d = ts.resolve(&name)?;
    let state = ts.shutdown(d.domid, reason, grace)?;
    println!("{} ({}): {}", d.name, d.domid, state);
    Ok(())
}
