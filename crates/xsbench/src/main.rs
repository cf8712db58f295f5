//! `xs-bench`: drives any xenstored at a socket path with the same
//! workloads, runs ours and the C and OCaml references (Xen 4.17 and 4.20)
//! side by side in one run, and publishes the table and plots.
//!
//! `xs-bench --help` and `xs-bench COMMAND --help` give the commands and
//! their options.

mod conn;
mod daemons;
mod hosted;
mod hosted_attacks;
mod hosted_block;
mod hosted_block_share;
mod hosted_devices;
mod hosted_domains;
mod hosted_lan;
mod limits;
mod plot;
mod poller;
mod progress;
mod report;
mod results;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};

use daemons::{Daemon, Kind};
use results::Results;
use workloads::store_size::Sized;
use workloads::{Config, Target};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "xs-bench",
    version,
    about = "Drives any xenstored with the same workloads: ours and the C and OCaml references (Xen \
             4.17 and 4.20) side by side (compare), one daemon at a socket (run), and the published table and plots (report).",
    after_help = "Workloads (--only): latency, throughput, subtree, directory, txn, contended, fanout, \
                  many-conns, contained, store, hosted, domains (hosted's many-domains figures alone), block (block device throughput through a \
                  hosted guest's blkfront and xen-blkback, beside pread/pwrite on the image, and over \
                  Xen Share's xensblk), lan (Xen Share's LAN against a veth pair; root)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Ours and the references side by side in one run (the Xen 4.17 references
    /// need root, xen-utils-4.17, libxen-dev and gcc; the Xen 4.20 ones root and a
    /// Debian 13 root file system, built at their first start with mmdebstrap;
    /// missing ones are said and skipped).
    Compare {
        #[command(flatten)]
        common: Common,
        /// Which daemons: rust, c, c-4.20, ocaml, ocaml-4.20 (c and ocaml are Xen 4.17's).
        #[arg(long, value_delimiter = ',', default_value = "rust,c,c-4.20,ocaml,ocaml-4.20", value_parser = daemon_kind)]
        daemons: Vec<Kind>,
        /// Skip the store-size phase.
        #[arg(long)]
        no_store: bool,
        /// Skip the hosted-domain phases (hosted, block).
        #[arg(long)]
        no_hosted: bool,
    },
    /// The same workloads against one daemon listening at a socket.
    Run {
        #[command(flatten)]
        common: Common,
        /// The daemon's socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// The daemon's name in the results (its column in the table).
        #[arg(long, default_value = "daemon")]
        name: String,
        /// The daemon's pid, to measure its memory in the store phase.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Print a shell completion script (scripts/install installs them).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, xs-bench(1), in roff (scripts/install installs it).
    #[command(hide = true)]
    Man,
    /// Writes the generated part of the markdown and the plots from a results file.
    Report {
        /// A results.json written by compare or run.
        results: PathBuf,
        /// The markdown file whose generated part is replaced.
        #[arg(long, default_value = "docs/benchmarks.md")]
        md: PathBuf,
        /// Where the plots go.
        #[arg(long, default_value = "docs/benchmarks")]
        plots: PathBuf,
    },
}

/// Options shared by `compare` and `run`.
#[derive(Debug, Args)]
struct Common {
    /// Small sizes and one repetition: a smoke run.
    #[arg(long)]
    quick: bool,
    /// Repetitions (default 5, or 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Where results.json goes.
    #[arg(long, default_value = "target/xs-bench", value_name = "DIR")]
    out: PathBuf,
    /// Only these workloads.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    only: Option<Vec<String>>,
    /// Print no progress on stderr (failures are still said).
    #[arg(short, long)]
    quiet: bool,
}

/// Every workload `--only` may name.
const WORKLOADS: [&str; 14] = [
    "latency",
    "throughput",
    "subtree",
    "directory",
    "txn",
    "contended",
    "fanout",
    "many-conns",
    "contained",
    "store",
    "hosted",
    "domains",
    "block",
    "lan",
];

fn daemon_kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name).map_err(|e| e.to_string())
}

/// What `compare` and `run` were asked.
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
    fn new(common: Common) -> Options {
        progress::set_quiet(common.quiet);
        Options {
            quick: common.quick,
            reps: common.reps,
            out: common.out,
            only: common.only,
            daemons: Kind::ALL.to_vec(),
            store: true,
            hosted: true,
            socket: None,
            name: "daemon".into(),
            pid: None,
        }
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
    let cli = Cli::parse();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match cli.command {
        Cmd::Compare { common, daemons, no_store, no_hosted } => {
            let o = Options { daemons, store: !no_store, hosted: !no_hosted, ..Options::new(common) };
            compare(&o, &argv)
        }
        Cmd::Run { common, socket, name, pid } => {
            let o = Options { socket: Some(socket), name, pid, ..Options::new(common) };
            run_one(&o, &argv)
        }
        Cmd::Report { results, md, plots } => report_cmd(&results, &md, &plots),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xs-bench", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(Into::into),
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
    progress::step(format_args!("results in {}", file.display()));
    Ok(())
}

/// The repeated workloads against one daemon at `--socket`.
fn run_one(o: &Options, argv: &[String]) -> Result<()> {
    let socket = o.socket.clone().context("--socket is required")?;
    progress::step(format_args!("measuring {} at {}", o.name, socket.display()));
    let mut res = new_results(argv);
    let cfg = o.config();
    let target = Target { name: &o.name, socket: &socket };
    for rep in 0..o.reps() {
        progress::step(format_args!("repetition {} of {}", rep + 1, o.reps()));
        attempt(&mut res, "AF_UNIX floor", |r| workloads::latency::floor(cfg, r));
        for (name, workload) in workloads::REPEATED {
            if o.wants(name) {
                progress::step(format_args!("{name} on {}", o.name));
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
            progress::step(format_args!("{}: {}", info.name, info.description));
            let present = info.present;
            res.daemons.push(info);
            present
        })
        .collect();
    // Domain ids the store workload names in permissions must exist for
    // the references: xs-peers is told so at each start, and scripts from
    // $XS_PEERS are told with this variable.
    std::env::set_var("XSSHIM_DOMAINS", "all");
    let dir = tempfile::Builder::new().prefix("xs-bench-").tempdir()?;
    let repeated: Vec<_> = workloads::REPEATED.iter().filter(|(n, _)| o.wants(n)).collect();
    if !repeated.is_empty() {
        let running = start_all(&kinds, dir.path(), &mut res);
        for rep in 0..o.reps() {
            progress::step(format_args!("repetition {} of {}", rep + 1, o.reps()));
            attempt(&mut res, "AF_UNIX floor", |r| workloads::latency::floor(cfg, r));
            for (name, workload) in &repeated {
                for d in &running {
                    progress::step(format_args!("{name} on {}", d.kind.name()));
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
        progress::step("store size, daemons filled side by side");
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
    if o.hosted && (o.wants("hosted") || o.wants("domains")) && kinds.contains(&Kind::Rust) {
        progress::step("hosted domains");
        let domains_only = !o.wants("hosted");
        attempt(&mut res, "hosted", |r| hosted::run(dir.path(), cfg, o.reps(), domains_only, r));
        checkpoint(&res, &o.out)?;
    }
    if o.hosted && o.wants("block") && kinds.contains(&Kind::Rust) {
        progress::step("block device throughput");
        attempt(&mut res, "block", |r| hosted_block::run(dir.path(), cfg, o.reps(), r));
        checkpoint(&res, &o.out)?;
    }
    if o.hosted && o.wants("lan") && kinds.contains(&Kind::Rust) {
        progress::step("Xen Share LAN against a veth pair");
        attempt(&mut res, "lan", |r| hosted_lan::run(dir.path(), cfg, o.reps(), r));
    }
    save(&res, &o.out)
}

/// Writes the generated part of the markdown and the plots.
fn report_cmd(file: &Path, md: &Path, plots: &Path) -> Result<()> {
    let res: Results =
        serde_json::from_str(&std::fs::read_to_string(file).with_context(|| file.display().to_string())?)?;
    let made = plot::all(&res, plots)?;
    let rel = |f: &str| -> String {
        let base = md.parent().unwrap_or(Path::new("."));
        plots.join(f).strip_prefix(base).map_or_else(|_| plots.join(f), Path::to_path_buf).display().to_string()
    };
    let links: Vec<(String, String)> = made.iter().map(|(f, t)| (rel(f), t.clone())).collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let doc = std::fs::read_to_string(md).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    std::fs::write(md, report::splice(&doc, &report::generated(&res, &links)))?;
    // Beside the plots, unless it is already there: copying a file onto
    // itself would empty it.
    let kept = plots.join("results.json");
    if std::fs::canonicalize(file).ok() != std::fs::canonicalize(&kept).ok() {
        std::fs::copy(file, &kept)?;
    }
    eprintln!("xs-bench: wrote {} and {} plots in {}", md.display(), made.len(), plots.display());
    Ok(())
}
