//! Command-line options, named as the C daemon names them.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use xenstore_db::{QuotaKind, Quotas};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/xenstored/socket";

/// The socket's name in `XENSTORED_RUNDIR`.
const SOCKET_NAME: &str = "socket";

/// What the environment says of the socket: `XENSTORED_PATH` names it,
/// else `XENSTORED_RUNDIR` names its directory (libxenstore's
/// `xs_daemon_socket`, which the C daemon listens on). Empty values count
/// as unset.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `XENSTORED_PATH`.
    pub path: Option<String>,
    /// `XENSTORED_RUNDIR`.
    pub rundir: Option<String>,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Environment {
        Environment { path: std::env::var("XENSTORED_PATH").ok(), rundir: std::env::var("XENSTORED_RUNDIR").ok() }
    }

    /// The socket it names, if it names one.
    fn socket(&self) -> Option<PathBuf> {
        if let Some(path) = self.path.as_ref().filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        self.rundir.as_ref().filter(|d| !d.is_empty()).map(|dir| PathBuf::from(dir).join(SOCKET_NAME))
    }
}

/// Everything the command line and environment decide.
#[derive(Debug, Clone)]
pub struct Options {
    /// Socket path (`--socket`, else `XENSTORED_PATH`, else
    /// `$XENSTORED_RUNDIR/socket`, else the default).
    pub socket: PathBuf,
    /// Where to write the pid (`-F`).
    pub pid_file: Option<PathBuf>,
    /// Stay in the foreground (`-N`).
    pub no_fork: bool,
    /// Print the daemon's pid on stdout (`-P`).
    pub output_pid: bool,
    /// One line per request and reply (`-T`).
    pub trace_file: Option<PathBuf>,
    /// Hard quotas (`-E -S -W -t -A -M -Q`).
    pub quotas: Quotas,
    /// Soft quotas (`-q`): exceeding one is logged, not refused.
    pub soft_quotas: Vec<(String, u32)>,
    /// Keep a removed domain's nodes (`-K`).
    pub keep_orphans: bool,
    /// More logging (`-V`).
    pub verbose: bool,
    /// Where log lines go (`--log-file`); when not set, the system log for
    /// a daemon that forks, standard error with `-N`.
    pub log_file: Option<PathBuf>,
    /// Serve domains through the hosted hypervisor at this socket
    /// (`--hosted`; `xsim up` passes it).
    pub hosted: Option<PathBuf>,
    /// Serve the statistics as Prometheus text here (`--metrics`).
    pub metrics: Option<xenstored::MetricsAddr>,
    /// Keep the store in this directory and recover it at start
    /// (`--persist`).
    pub persist: Option<PathBuf>,
    /// Journal bytes after which a snapshot is taken
    /// (`--persist-snapshot`).
    pub snapshot_bytes: u64,
    /// Take over from the daemon that executed this one (`-U`): its state
    /// is in the run directory's `state_dump`, its descriptors inherited.
    pub live_update: bool,
    /// Options accepted for the C daemon's sake that have no effect here,
    /// to be logged once logging is set up.
    pub warnings: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: PathBuf::from(DEFAULT_SOCKET),
            pid_file: None,
            no_fork: false,
            output_pid: false,
            trace_file: None,
            quotas: Quotas::default(),
            soft_quotas: Vec::new(),
            keep_orphans: false,
            verbose: false,
            log_file: None,
            hosted: None,
            metrics: None,
            persist: None,
            snapshot_bytes: xenstored::persist::DEFAULT_SNAPSHOT_BYTES,
            live_update: false,
            warnings: Vec::new(),
        }
    }
}

/// The usage text for `--help`.
pub const USAGE: &str = "\
Usage: xenstored [options]
  --socket <path>          listen on this Unix socket (default: $XENSTORED_PATH,
                           else $XENSTORED_RUNDIR/socket, else
                           /var/run/xenstored/socket)
  --hosted <path>          serve domains of the hosted hypervisor listening at
                           <path> (xsim's hypervisor.sock)
  -F, --pid-file <file>    write the daemon's pid to this file
  -N, --no-fork            stay in the foreground
  -P, --output-pid         print the daemon's pid on stdout
  -T, --trace-file <file>  log every request and reply to this file
  -E, --entry-nb <nb>      nodes a domain may own
  -S, --entry-size <size>  bytes in one node's value
  -W, --watch-nb <nb>      watches per connection
  -t, --transaction <nb>   open transactions per connection
  -A, --perm-nb <nb>       permission entries per node
  -M, --path-max <chars>   path length below a domain's home
  -Q, --quota <what>=<nb>  set a quota: nodes, node-size, watches, transactions,
                           transaction-nodes, permissions, path-max, outstanding,
                           memory (bytes a domain makes the daemon hold)
  -q, --quota-soft <what>=<nb>  set a soft quota (exceeding it is logged)
  -K, --keep-orphans       keep a removed domain's nodes (given to dom0)
  -V, --verbose            verbose logging
  --log-file <file>        append log lines to this file, reopened on SIGHUP
                           (default: the system log, /dev/log, when the daemon
                           forks; standard error with -N)
  --metrics <addr>         serve per-domain statistics as Prometheus text over
                           HTTP at <addr>: host:port (127.0.0.1:9427; port 0
                           picks one, logged) or a Unix socket path
  -U, --live-update        take over from the daemon that executed this one
                           (a live update: `xenstore-control live-update`
                           runs the new binary so; not for starting by hand)
  --persist <dir>          keep the store in <dir> (made if missing): every
                           change is journaled and synced before it is
                           acknowledged; at start the store and the domains'
                           rings are recovered from it (crash recovery)
  --persist-snapshot <bytes>  journal size after which a snapshot is taken
                           (default 67108864)
  -D, -R, -I[on|off], -w <what>=<s>, --event <port>, --master-domid <id>,
  --priv-domid <id>, --trace-control=<x>
                           accepted for compatibility with the C daemon; no
                           effect here (a warning is logged)
  -H, --help               this text
  --version                print the version

Short options may be grouped and take their value attached (-NV, -E5); long
options take --name=value or --name value and may be abbreviated.
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run with these options.
    Run(Box<Options>),
    /// Print usage and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// Whether an option takes an argument (`getopt_long`'s `has_arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    /// Only attached: `-Ion`, `--internal-db=on`.
    Optional,
}

/// One option of the C daemon's (`xenstored_core.c`, Xen 4.17 to 4.22)
/// or ours: its short letter if it has one, its long name, its argument.
struct Opt {
    short: Option<char>,
    long: &'static str,
    arg: Arg,
}

const fn opt(short: Option<char>, long: &'static str, arg: Arg) -> Opt {
    Opt { short, long, arg }
}

/// Every option accepted. The C daemon's `getopt_long` table, so that any
/// `XENSTORED_ARGS` it takes is taken here (`-NV`, `-E5`, `--entry-nb=5`,
/// `--no-f`), plus `--socket`, `--hosted`, `--log-file`, `--metrics`,
/// `--persist`, `--persist-snapshot` and `--version`.
const OPTS: &[Opt] = &[
    opt(Some('D'), "no-domain-init", Arg::No),
    opt(Some('E'), "entry-nb", Arg::Required),
    opt(Some('F'), "pid-file", Arg::Required),
    opt(None, "event", Arg::Required),
    opt(None, "master-domid", Arg::Required),
    opt(Some('H'), "help", Arg::Optional),
    opt(Some('N'), "no-fork", Arg::No),
    opt(None, "priv-domid", Arg::Required),
    opt(Some('P'), "output-pid", Arg::No),
    opt(Some('S'), "entry-size", Arg::Required),
    opt(Some('T'), "trace-file", Arg::Required),
    opt(None, "trace-control", Arg::Required),
    opt(Some('t'), "transaction", Arg::Required),
    opt(Some('A'), "perm-nb", Arg::Required),
    opt(Some('M'), "path-max", Arg::Required),
    opt(Some('Q'), "quota", Arg::Required),
    opt(Some('q'), "quota-soft", Arg::Required),
    opt(Some('w'), "timeout", Arg::Required),
    opt(Some('R'), "no-recovery", Arg::No),
    opt(Some('I'), "internal-db", Arg::Optional),
    opt(Some('K'), "keep-orphans", Arg::No),
    opt(Some('V'), "verbose", Arg::No),
    opt(Some('W'), "watch-nb", Arg::Required),
    opt(Some('U'), "live-update", Arg::No),
    opt(None, "socket", Arg::Required),
    opt(None, "hosted", Arg::Required),
    opt(None, "log-file", Arg::Required),
    opt(None, "metrics", Arg::Required),
    opt(None, "persist", Arg::Required),
    opt(None, "persist-snapshot", Arg::Required),
    opt(None, "version", Arg::No),
];

/// How an option is named in messages: `-E/--entry-nb`.
fn label(o: &Opt) -> String {
    match o.short {
        Some(c) => format!("-{c}/--{}", o.long),
        None => format!("--{}", o.long),
    }
}

/// Parses arguments (without the program name) and the environment's
/// `XENSTORED_PATH` and `XENSTORED_RUNDIR`, as `getopt_long` would with
/// the C daemon's table:
/// short options cluster and take their value attached or as the next
/// argument, long options take `=value` or the next argument and may be
/// abbreviated to an unambiguous prefix, `--` ends the options. Options
/// that have no effect here are accepted with a warning in
/// [`Options::warnings`]; errors name the option at fault.
pub fn parse(args: impl IntoIterator<Item = String>, env: &Environment) -> Result<Command> {
    let mut o = Options::default();
    if let Some(path) = env.socket() {
        o.socket = path;
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            if let Some(operand) = args.next() {
                bail!("unexpected argument {operand:?}: xenstored takes options only (see --help)");
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let opt = find_long(name)?;
            let value = match (opt.arg, inline) {
                (Arg::No, Some(_)) => bail!("option --{} does not take a value", opt.long),
                (Arg::No, None) | (Arg::Optional, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => {
                    Some(args.next().ok_or_else(|| anyhow!("option --{} needs a value", opt.long))?)
                }
            };
            if let Some(command) = apply(&mut o, opt, value)? {
                return Ok(command);
            }
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            bail!("unexpected argument {arg:?}: xenstored takes options only (see --help)");
        };
        for (at, c) in cluster.char_indices() {
            let opt =
                OPTS.iter().find(|o| o.short == Some(c)).ok_or_else(|| anyhow!("unknown option -{c} (see --help)"))?;
            let rest = &cluster[at + c.len_utf8()..];
            let value = match opt.arg {
                Arg::No => None,
                Arg::Optional => (!rest.is_empty()).then(|| rest.to_owned()),
                Arg::Required if !rest.is_empty() => Some(rest.to_owned()),
                Arg::Required => Some(args.next().ok_or_else(|| anyhow!("option {} needs a value", label(opt)))?),
            };
            if let Some(command) = apply(&mut o, opt, value.clone())? {
                return Ok(command);
            }
            if value.is_some() {
                break;
            }
        }
    }
    Ok(Command::Run(Box::new(o)))
}

/// The option a long name or an unambiguous prefix of one names.
fn find_long(name: &str) -> Result<&'static Opt> {
    if let Some(exact) = OPTS.iter().find(|o| o.long == name) {
        return Ok(exact);
    }
    let candidates: Vec<&Opt> = OPTS.iter().filter(|o| !name.is_empty() && o.long.starts_with(name)).collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => bail!("unknown option --{name} (see --help)"),
        many => {
            let names: Vec<String> = many.iter().map(|o| format!("--{}", o.long)).collect();
            bail!("option --{name} is ambiguous: {}", names.join(", "))
        }
    }
}

/// Applies one option; `Some` when it ends parsing (help, version).
fn apply(o: &mut Options, opt: &Opt, value: Option<String>) -> Result<Option<Command>> {
    let name = label(opt);
    let value = || value.clone().ok_or_else(|| anyhow!("option {name} needs a value"));
    match opt.long {
        "socket" => o.socket = PathBuf::from(value()?),
        "hosted" => o.hosted = Some(PathBuf::from(value()?)),
        "pid-file" => o.pid_file = Some(PathBuf::from(value()?)),
        "no-fork" => o.no_fork = true,
        "output-pid" => o.output_pid = true,
        "trace-file" => o.trace_file = Some(PathBuf::from(value()?)),
        "entry-nb" => set(&mut o.quotas, QuotaKind::Nodes, &name, &value()?)?,
        "entry-size" => set(&mut o.quotas, QuotaKind::NodeSize, &name, &value()?)?,
        "watch-nb" => set(&mut o.quotas, QuotaKind::Watches, &name, &value()?)?,
        "transaction" => set(&mut o.quotas, QuotaKind::Transactions, &name, &value()?)?,
        "perm-nb" => set(&mut o.quotas, QuotaKind::Permissions, &name, &value()?)?,
        "path-max" => set(&mut o.quotas, QuotaKind::PathLength, &name, &value()?)?,
        "quota" | "quota-soft" => {
            let spec = value()?;
            let (what, nb) =
                spec.split_once('=').ok_or_else(|| anyhow!("option {name} wants <what>=<nb>, got {spec:?}"))?;
            let Some(kind) = QuotaKind::from_name(what) else {
                bail!("option {name}: unknown quota {what:?} (valid: {})", quota_names());
            };
            let nb = number(&name, nb)?;
            if opt.long == "quota" {
                o.quotas.set(kind, nb);
            } else {
                o.soft_quotas.push((what.to_owned(), nb));
            }
        }
        "keep-orphans" => o.keep_orphans = true,
        "verbose" => o.verbose = true,
        "log-file" => o.log_file = Some(PathBuf::from(value()?)),
        "metrics" => {
            let text = value()?;
            o.metrics = Some(xenstored::MetricsAddr::parse(&text).map_err(|e| anyhow::anyhow!("option {name}: {e}"))?);
        }
        "persist" => o.persist = Some(PathBuf::from(value()?)),
        "persist-snapshot" => {
            let text = value()?;
            o.snapshot_bytes =
                text.parse().map_err(|_| anyhow!("option {name} wants a number of bytes, got {text:?}"))?;
        }
        "help" => return Ok(Some(Command::Help)),
        "version" => return Ok(Some(Command::Version)),
        "internal-db" => match value().ok().as_deref() {
            None | Some("on") => {}
            Some("off") => o.warnings.push(format!("option {name} off: the store is always in memory here")),
            Some(other) => bail!("option {name}: {other:?} is not on or off"),
        },
        "live-update" => o.live_update = true,
        "no-domain-init" | "no-recovery" | "event" | "master-domid" | "priv-domid" | "timeout" | "trace-control" => {
            let shown = value().map(|v| format!(" {v}")).unwrap_or_default();
            o.warnings.push(format!("option {name}{shown} has no effect in this xenstored; ignored"));
        }
        other => bail!("option --{other} is not handled"),
    }
    Ok(None)
}

fn quota_names() -> String {
    QuotaKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

fn number(option: &str, text: &str) -> Result<u32> {
    text.parse().map_err(|_| anyhow!("option {option}: {text:?} is not a number"))
}

fn set(quotas: &mut Quotas, kind: QuotaKind, option: &str, text: &str) -> Result<()> {
    quotas.set(kind, number(option, text)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: Option<&str>) -> Options {
        let env = Environment { path: env.map(str::to_owned), rundir: None };
        match parse(args.iter().map(|s| s.to_string()), &env).unwrap() {
            Command::Run(o) => *o,
            other => panic!("{other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        match parse(args.iter().map(|s| s.to_string()), &Environment::default()) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("{args:?} parsed: {other:?}"),
        }
    }

    #[test]
    fn short_options_cluster_and_take_attached_values_as_getopt_long() {
        let o = run(&["-NV", "-E5", "-KPT/tmp/t"], None);
        assert!(o.no_fork && o.verbose && o.keep_orphans && o.output_pid);
        assert_eq!(o.quotas.get(QuotaKind::Nodes), 5);
        assert_eq!(o.trace_file, Some(PathBuf::from("/tmp/t")));
    }

    #[test]
    fn long_options_take_equals_values_and_unambiguous_prefixes() {
        let o = run(&["--entry-nb=7", "--no-f", "--watch", "9", "--keep"], None);
        assert_eq!(o.quotas.get(QuotaKind::Nodes), 7);
        assert_eq!(o.quotas.get(QuotaKind::Watches), 9);
        assert!(o.no_fork && o.keep_orphans);
        assert!(error(&["--no"]).contains("ambiguous"), "{}", error(&["--no"]));
    }

    #[test]
    fn c_daemon_options_without_effect_are_accepted_with_a_warning() {
        let o = run(
            &[
                "-D",
                "-R",
                "-U",
                "-Ioff",
                "-w",
                "watch-event=20",
                "--event",
                "3",
                "--master-domid=0",
                "--priv-domid",
                "0",
            ],
            None,
        );
        assert_eq!(o.warnings.len(), 7, "{:?}", o.warnings);
        assert!(o.live_update, "-U is the live update's restart");
        assert!(o.warnings.iter().any(|w| w.contains("--event 3")), "{:?}", o.warnings);
        let memory = run(&["-Q", "memory=100000"], None);
        assert!(memory.warnings.is_empty(), "{:?}", memory.warnings);
        assert_eq!(memory.quotas.get(QuotaKind::Memory), 100_000);
    }

    #[test]
    fn help_and_version_end_parsing() {
        let env = Environment::default();
        assert!(matches!(parse(["-H".to_string()], &env), Ok(Command::Help)));
        assert!(matches!(parse(["--vers".to_string(), "--bogus".to_string()], &env), Ok(Command::Version)));
    }

    #[test]
    fn errors_name_the_option_and_the_valid_values() {
        assert!(error(&["-E", "x"]).contains("-E/--entry-nb"));
        let quota = error(&["--quota", "bogus=1"]);
        assert!(quota.contains("-Q/--quota") && quota.contains("transaction-nodes"), "{quota}");
        assert!(error(&["--no-fork=1"]).contains("--no-fork does not take a value"));
        assert!(error(&["-x"]).contains("unknown option -x"));
        assert!(error(&["stray"]).contains("takes options only"));
        assert!(error(&["-I", "maybe"]).contains("takes options only"), "-I takes its value attached only");
        assert!(error(&["-Imaybe"]).contains("not on or off"));
    }

    #[test]
    fn socket_comes_from_flag_then_env_then_default() {
        assert_eq!(run(&[], None).socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(run(&[], Some("/tmp/e")).socket, PathBuf::from("/tmp/e"));
        assert_eq!(run(&["--socket", "/tmp/f"], Some("/tmp/e")).socket, PathBuf::from("/tmp/f"));
        assert_eq!(run(&["--socket=/tmp/g"], None).socket, PathBuf::from("/tmp/g"));
    }

    #[test]
    fn socket_comes_from_rundir_when_no_path_names_it() {
        let parse_with = |args: &[&str], path: Option<&str>, rundir: Option<&str>| {
            let env = Environment { path: path.map(str::to_owned), rundir: rundir.map(str::to_owned) };
            match parse(args.iter().map(|s| s.to_string()), &env).unwrap() {
                Command::Run(o) => o.socket,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(parse_with(&[], None, Some("/run/xs")), PathBuf::from("/run/xs/socket"));
        assert_eq!(parse_with(&[], Some("/tmp/e"), Some("/run/xs")), PathBuf::from("/tmp/e"));
        assert_eq!(parse_with(&["--socket", "/tmp/f"], None, Some("/run/xs")), PathBuf::from("/tmp/f"));
        assert_eq!(parse_with(&[], None, Some("")), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn c_daemon_quota_flags_set_quotas() {
        let o = run(&["-E", "5", "-S", "6", "-W", "7", "-t", "8", "-A", "9", "-M", "10", "-Q", "outstanding=11"], None);
        assert_eq!(o.quotas.get(QuotaKind::Nodes), 5);
        assert_eq!(o.quotas.get(QuotaKind::NodeSize), 6);
        assert_eq!(o.quotas.get(QuotaKind::Watches), 7);
        assert_eq!(o.quotas.get(QuotaKind::Transactions), 8);
        assert_eq!(o.quotas.get(QuotaKind::Permissions), 9);
        assert_eq!(o.quotas.get(QuotaKind::PathLength), 10);
        assert_eq!(o.quotas.get(QuotaKind::Outstanding), 11);
    }

    #[test]
    fn log_file_and_flags_parse() {
        let o = run(&["--log-file", "/tmp/x.log", "-N", "-K", "-V", "-T", "/tmp/t"], None);
        assert_eq!(o.log_file, Some(PathBuf::from("/tmp/x.log")));
        assert!(o.no_fork && o.keep_orphans && o.verbose);
        assert_eq!(o.trace_file, Some(PathBuf::from("/tmp/t")));
    }

    #[test]
    fn bad_options_are_errors() {
        for bad in [&["-E"][..], &["-E", "x"], &["-Q", "nodes"], &["-Q", "bogus=1"], &["--frobnicate"]] {
            assert!(parse(bad.iter().map(|s| s.to_string()), &Environment::default()).is_err(), "{bad:?}");
        }
    }
}
