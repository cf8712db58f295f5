//! Command-line options, named as the C daemon names them.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use xenstore_db::{QuotaKind, Quotas};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/xenstored/socket";

/// Everything the command line and environment decide.
#[derive(Debug, Clone)]
pub struct Options {
    /// Socket path (`--socket`, else `XENSTORED_PATH`, else the default).
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
    /// Where log lines go (`--log-file`); standard error when not set, which
    /// a forked daemon has closed.
    pub log_file: Option<PathBuf>,
    /// Serve domains through the hosted hypervisor at this socket
    /// (`--hosted`; `xsim up` passes it).
    pub hosted: Option<PathBuf>,
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
        }
    }
}

/// The usage text for `--help`.
pub const USAGE: &str = "\
Usage: xenstored [options]
  --socket <path>          listen on this Unix socket (default: $XENSTORED_PATH,
                           else /var/run/xenstored/socket)
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
                           transaction-nodes, permissions, path-max, outstanding
  -q, --quota-soft <what>=<nb>  set a soft quota (exceeding it is logged)
  -K, --keep-orphans       keep a removed domain's nodes (given to dom0)
  -V, --verbose            verbose logging
  --log-file <file>        append log lines to this file (default: standard
                           error, which a forked daemon does not have)
  -D, -R, -I <on|off>, -w <what>=<s>, --trace-control=<x>
                           accepted for compatibility with the C daemon; no effect
  -H, --help               this text
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run with these options.
    Run(Box<Options>),
    /// Print usage and exit.
    Help,
}

/// Parses arguments (without the program name) and the environment's
/// `XENSTORED_PATH`.
pub fn parse(args: impl IntoIterator<Item = String>, env_socket: Option<String>) -> Result<Command> {
    let mut o = Options::default();
    if let Some(path) = env_socket.filter(|p| !p.is_empty()) {
        o.socket = PathBuf::from(path);
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--name=value` and `--name value` both work, as with getopt_long.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or_else(|| anyhow!("option {what} needs a value")),
            }
        };
        match name.as_str() {
            "--socket" => o.socket = PathBuf::from(value("--socket")?),
            "--hosted" => o.hosted = Some(PathBuf::from(value("--hosted")?)),
            "-F" | "--pid-file" => o.pid_file = Some(PathBuf::from(value("--pid-file")?)),
            "-N" | "--no-fork" => o.no_fork = true,
            "-P" | "--output-pid" => o.output_pid = true,
            "-T" | "--trace-file" => o.trace_file = Some(PathBuf::from(value("--trace-file")?)),
            "-E" | "--entry-nb" => set(&mut o.quotas, QuotaKind::Nodes, &value("--entry-nb")?)?,
            "-S" | "--entry-size" => set(&mut o.quotas, QuotaKind::NodeSize, &value("--entry-size")?)?,
            "-W" | "--watch-nb" => set(&mut o.quotas, QuotaKind::Watches, &value("--watch-nb")?)?,
            "-t" | "--transaction" => set(&mut o.quotas, QuotaKind::Transactions, &value("--transaction")?)?,
            "-A" | "--perm-nb" => set(&mut o.quotas, QuotaKind::Permissions, &value("--perm-nb")?)?,
            "-M" | "--path-max" => set(&mut o.quotas, QuotaKind::PathLength, &value("--path-max")?)?,
            "-Q" | "--quota" => {
                let spec = value("--quota")?;
                let (what, nb) =
                    spec.split_once('=').ok_or_else(|| anyhow!("--quota wants <what>=<nb>, got {spec:?}"))?;
                let kind = QuotaKind::from_name(what).ok_or_else(|| anyhow!("unknown quota {what:?}"))?;
                set(&mut o.quotas, kind, nb)?;
            }
            "-q" | "--quota-soft" => {
                let spec = value("--quota-soft")?;
                let (what, nb) =
                    spec.split_once('=').ok_or_else(|| anyhow!("--quota-soft wants <what>=<nb>, got {spec:?}"))?;
                if QuotaKind::from_name(what).is_none() {
                    bail!("unknown soft quota {what:?}");
                }
                o.soft_quotas.push((what.to_owned(), number(nb)?));
            }
            "-K" | "--keep-orphans" => o.keep_orphans = true,
            "-V" | "--verbose" => o.verbose = true,
            "--log-file" => o.log_file = Some(PathBuf::from(value("--log-file")?)),
            "-D" | "--no-domain-init" | "-R" | "--no-recovery" => {}
            "-I" | "--internal-db" | "-w" | "--timeout" => {
                value(&name)?;
            }
            "--trace-control" => {
                value("--trace-control")?;
            }
            "-H" | "--help" => return Ok(Command::Help),
            other => bail!("unknown option {other:?} (see --help)"),
        }
    }
    Ok(Command::Run(Box::new(o)))
}

fn number(text: &str) -> Result<u32> {
    text.parse().with_context(|| format!("not a number: {text:?}"))
}

fn set(quotas: &mut Quotas, kind: QuotaKind, text: &str) -> Result<()> {
    quotas.set(kind, number(text)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: Option<&str>) -> Options {
        match parse(args.iter().map(|s| s.to_string()), env.map(str::to_owned)).unwrap() {
            Command::Run(o) => *o,
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn socket_comes_from_flag_then_env_then_default() {
        assert_eq!(run(&[], None).socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(run(&[], Some("/tmp/e")).socket, PathBuf::from("/tmp/e"));
        assert_eq!(run(&["--socket", "/tmp/f"], Some("/tmp/e")).socket, PathBuf::from("/tmp/f"));
        assert_eq!(run(&["--socket=/tmp/g"], None).socket, PathBuf::from("/tmp/g"));
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
            assert!(parse(bad.iter().map(|s| s.to_string()), None).is_err(), "{bad:?}");
        }
    }
}
