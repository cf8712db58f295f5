//! `xs-bench`: drives any xenstored at a socket path with the same
//! workloads, runs ours and the C and OCaml references side by side in one
//! run, and publishes the table and plots.
//!
//! ```text
//! xs-bench compare [--quick] [--reps N] [--out DIR] [--daemons rust,c,ocaml]
//!                  [--only W,W..] [--no-store] [--no-hosted]
//! xs-bench run --socket PATH [--name NAME] [--pid PID] [--quick] [--reps N]
//!              [--only W,W..] [--out DIR]
//! xs-bench report RESULTS.json [--md docs/benchmarks.md] [--plots DIR]
//! ```
//!
//! Workloads (`--only`): latency, throughput, subtree, directory, txn,
//! contended, fanout, many-conns, store, hosted.

mod conn;
mod daemons;
mod hosted;
mod plot;
mod poller;
mod report;
mod results;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use daemons::{Daemon, Kind};
use results::Results;
use workloads::store_size::Sized;
use workloads::{Config, Target};

/// Command-line options shared by `compare` and `run`.
#[derive(Debug)]
struct Options {
    quick: bool,
    reps: Option<usize>,
    out: PathBuf,
    only: Option<Vec<String>>,
    daemons: Vec<Kind>,
    store: bool,
    hosted: bool,
    socket: Option<PathBuf>,
    name: String,
    pid: Option<u32>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            quick: false,
            reps: None,
            out: PathBuf::from("target/xs-bench"),
            only: None,
            daemons: Kind::ALL.to_vec(),
            store: true,
            hosted: true,
            socket: None,
            name: "daemon".into(),
            pid: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--reps" => o.reps = Some(value()?.parse()?),
                "--out" => o.out = PathBuf::from(value()?),
                "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
                "--daemons" => o.daemons = value()?.split(',').map(Kind::parse).collect::<Result<_>>()?,
                "--no-store" => o.store = false,
                "--no-hosted" => o.hosted = false,
                "--socket" => o.socket = Some(PathBuf::from(value()?)),
                "--name" => o.name = value()?.clone(),
                "--pid" => o.pid = Some(value()?.parse()?),
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }

    fn wants(&self, workload: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|w| w == workload))
    }

    fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.quick { 1 } else { 5 })
    }

    fn config(&self) -> Config {
        Config { quick: self.quick }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("compare") => Options::parse(&args[1..]).and_then(|o| compare(&o, &args)),
        Some("run") => Options::parse(&args[1..]).and_then(|o| run_one(&o, &args)),
        Some("report") => report_cmd(&args[1..]),
        _ => Err(anyhow::anyhow!("usage: xs-bench compare|run|report (see the crate docs)")),
    };
    if let Err(e) = result {
        eprintln!("xs-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Describes the machine: CPU model, CPUs, memory, kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} ({cpus} CPUs), {} GiB RAM, Linux {}",
        model.unwrap_or("unknown CPU"),
        mem_kb / 1024 / 1024,
        kernel.trim()
    )
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn new_results(argv: &[String]) -> Results {
    Results {
        machine: machine(),
        date: now_utc(),
        command: format!("xs-bench {}", argv.join(" ")),
        ..Results::default()
    }
}

/// Runs `f`, and on failure notes it in the results instead of stopping:
/// one daemon failing a workload must not lose the others' figures.
fn attempt(res: &mut Results, what: &str, f: impl FnOnce(&mut Results) -> Result<()>) {
    if let Err(e) = f(res) {
        let note = format!("{what} failed: {e:#}");
        eprintln!("xs-bench: {note}");
        res.notes.push(note);
    }
}

/// Writes what has been measured so far (after each phase, so a run
/// stopped in a long phase keeps the earlier ones).
fn checkpoint(res: &Results, out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let file = out.join("results.json");
    std::fs::write(&file, serde_json::to_string_pretty(res)?)?;
    Ok(file)
}

fn save(res: &Results, out: &Path) -> Result<()> {
    let file = checkpoint(res, out)?;
    println!("{}", report::table(res));
    println!("{}", report::goals_table(res));
    eprintln!("xs-bench: results in {}", file.display());
    Ok(())
}

/// The repeated workloads against one daemon at `--socket`.
fn run_one(o: &Options, argv: &[String]) -> Result<()> {
    let socket = o.socket.clone().context("--socket is required")?;
    let mut res = new_results(argv);
    let cfg = o.config();
    let target = Target { name: &o.name, socket: &socket };
    for _ in 0..o.reps() {
        attempt(&mut res, "AF_UNIX floor", |r| workloads::latency::floor(cfg, r));
        for (name, workload) in workloads::REPEATED {
            if o.wants(name) {
                attempt(&mut res, &format!("{} {name}", o.name), |r| workload(target, cfg, r));
            }
        }
    }
    if o.wants("store") {
        let sized = [Sized { target, pid: o.pid }];
        attempt(&mut res, "store", |r| workloads::store_size::run(&sized, cfg, o.reps(), r));
    }
    save(&res, &o.out)
}

fn start_all(kinds: &[Kind], dir: &Path, res: &mut Results) -> Vec<Daemon> {
    let mut running = Vec::new();
    for &kind in kinds {
        match Daemon::start(kind, dir).and_then(|d| d.pin(0).map(|()| d)) {
            Ok(d) => running.push(d),
            Err(e) => {
                let note = format!("{} did not start: {e:#}", kind.name());
                eprintln!("xs-bench: {note}");
                res.notes.push(note);
            }
        }
    }
    running
}

/// Ours and the references side by side.
fn compare(o: &Options, argv: &[String]) -> Result<()> {
    let mut res = new_results(argv);
    let cfg = o.config();
    let kinds: Vec<Kind> = o
        .daemons
        .iter()
        .copied()
        .filter(|&k| {
            let info = daemons::probe(k);
            eprintln!("xs-bench: {}: {}", info.name, info.description);
            let present = info.present;
            res.daemons.push(info);
            present
        })
        .collect();
    // Domain ids the store workload names in permissions must exist for
    // the references (their shim asks the "hypervisor").
    std::env::set_var("XSSHIM_DOMAINS", "all");
    let dir = tempfile::Builder::new().prefix("xs-bench-").tempdir()?;
    let repeated: Vec<_> = workloads::REPEATED.iter().filter(|(n, _)| o.wants(n)).collect();
    if !repeated.is_empty() {
        let running = start_all(&kinds, dir.path(), &mut res);
        for rep in 0..o.reps() {
            eprintln!("xs-bench: repetition {} of {}", rep + 1, o.reps());
            attempt(&mut res, "AF_UNIX floor", |r| workloads::latency::floor(cfg, r));
            for (name, workload) in &repeated {
                for d in &running {
                    let target = Target { name: d.kind.name(), socket: &d.socket };
                    attempt(&mut res, &format!("{} {name}", d.kind.name()), |r| workload(target, cfg, r));
                }
            }
        }
        for d in running {
            d.stop()?;
        }
        checkpoint(&res, &o.out)?;
    }
    if o.store && o.wants("store") {
        eprintln!("xs-bench: store size, daemons filled side by side");
        let running = start_all(&kinds, dir.path(), &mut res);
        let sized: Vec<Sized<'_>> = running
            .iter()
            .map(|d| Sized { target: Target { name: d.kind.name(), socket: &d.socket }, pid: Some(d.pid) })
            .collect();
        attempt(&mut res, "store", |r| workloads::store_size::run(&sized, cfg, o.reps(), r));
        for d in running {
            d.stop()?;
        }
        checkpoint(&res, &o.out)?;
    }
    if o.hosted && o.wants("hosted") && kinds.contains(&Kind::Rust) {
        eprintln!("xs-bench: hosted domains");
        attempt(&mut res, "hosted", |r| hosted::run(dir.path(), cfg, o.reps(), r));
    }
    save(&res, &o.out)
}

/// Writes the generated part of the markdown and the plots.
fn report_cmd(args: &[String]) -> Result<()> {
    let file = args.first().context("usage: xs-bench report RESULTS.json [--md FILE] [--plots DIR]")?;
    let mut md = PathBuf::from("docs/benchmarks.md");
    let mut plots = PathBuf::from("docs/benchmarks");
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--md" => md = PathBuf::from(it.next().context("--md needs a file")?),
            "--plots" => plots = PathBuf::from(it.next().context("--plots needs a directory")?),
            other => bail!("unknown option {other:?}"),
        }
    }
    let res: Results = serde_json::from_str(&std::fs::read_to_string(file).with_context(|| file.clone())?)?;
    let made = plot::all(&res, &plots)?;
    let rel = |f: &str| -> String {
        let base = md.parent().unwrap_or(Path::new("."));
        plots.join(f).strip_prefix(base).map_or_else(|_| plots.join(f), Path::to_path_buf).display().to_string()
    };
    let links: Vec<(String, String)> = made.iter().map(|(f, t)| (rel(f), t.clone())).collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let doc = std::fs::read_to_string(&md).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    std::fs::write(&md, report::splice(&doc, &report::generated(&res, &links)))?;
    std::fs::copy(file, plots.join("results.json"))?;
    eprintln!("xs-bench: wrote {} and {} plots in {}", md.display(), made.len(), plots.display());
    Ok(())
}
