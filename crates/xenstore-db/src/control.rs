//! CONTROL (`xenstore-control`): the commands, with the C daemon's names,
//! arguments and output formats.
//!
//! The engine answers the commands that read or change the store (`check`,
//! `quota`, `quota-soft`, `help`) itself; those that act on the daemon
//! (`log`, `logfile`, `print`, `memreport`, `stats`) come back as
//! [`Effect::Daemon`] for the driver. Guests may not use CONTROL at all.

use std::fmt::Write as _;

use xenstore_wire::{DomId, ErrorCode, Reply, Request};

use crate::applied::Applied;
use crate::effect::{DaemonCommand, Effect, LiveUpdate};
use crate::permissions::{privileged_only, Caller};
use crate::quota::{QuotaKind, Quotas};
use crate::{Engine, Outcome};

/// `help` output: one command per line, a tab before its arguments.
const HELP: &str = "check\t\nlog\ton|off\n\
live-update\t[-c <cmdline>] [-F] [-t <timeout>] [-v <version>] <file>\n    Default timeout is 60 seconds, default version is 2.\n\
logfile\t<file>\nmemreport\t[<file>]\nprint\t<string>\n\
quota\t[set <name> <val>|<domid>]\nquota-soft\t[set <name> <val>]\nstats\t[<first domid>]\nhelp\t\n";

/// A `live-update` step, parsed as the C daemon's `do_control_lu` does
/// (`-t` and `-v` values as `atoi` reads them); `None` is `EINVAL`.
fn live_update(args: &[&str]) -> Option<LiveUpdate> {
    match args {
        ["-a"] => Some(LiveUpdate::Abort),
        ["-c", cmdline] => Some(LiveUpdate::CommandLine((*cmdline).to_owned())),
        ["-f", file] => Some(LiveUpdate::Binary((*file).to_owned())),
        ["-s", options @ ..] => {
            let (mut timeout_secs, mut force, mut version) = (0, false, 2);
            let mut options = options.iter();
            while let Some(option) = options.next() {
                match *option {
                    "-F" => force = true,
                    "-t" => timeout_secs = atoi(options.next()?),
                    "-v" => version = atoi(options.next()?),
                    _ => return None,
                }
            }
            Some(LiveUpdate::Start { timeout_secs, force, version })
        }
        _ => None,
    }
}

/// C's `atoi` as far as a count of seconds goes: leading digits, else 0.
fn atoi(s: &str) -> u32 {
    let digits = s.trim_start().bytes().take_while(u8::is_ascii_digit).count();
    s.trim_start().get(..digits).and_then(|d| d.parse().ok()).unwrap_or(0)
}

fn text(s: impl Into<Vec<u8>>) -> Outcome {
    Outcome::ok(Reply::Text(s.into()))
}

fn daemon(command: DaemonCommand) -> Outcome {
    Outcome { effects: vec![Effect::Daemon(command)], ..text("OK") }
}

impl Engine {
    /// CONTROL: parses the command and answers it, or hands it to the
    /// driver as an [`Effect::Daemon`].
    pub(crate) fn control(&mut self, caller: Caller, payload: &[u8]) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        let args: Option<Vec<&str>> = Request::control_args(payload).map(|a| std::str::from_utf8(a).ok()).collect();
        let Some(args) = args else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        match args.as_slice() {
            ["help"] => text(HELP),
            ["check"] => match self.check() {
                Ok(()) => text("OK"),
                Err(problem) => text(problem),
            },
            ["log", "on"] => daemon(DaemonCommand::Log(true)),
            ["log", "off"] => daemon(DaemonCommand::Log(false)),
            ["logfile", file] => daemon(DaemonCommand::LogFile((*file).to_owned())),
            ["print", words @ ..] => daemon(DaemonCommand::Print(words.join(" "))),
            ["memreport"] => daemon(DaemonCommand::MemReport(None)),
            ["memreport", file] => daemon(DaemonCommand::MemReport(Some((*file).to_owned()))),
            ["stats"] => daemon(DaemonCommand::Stats(0)),
            ["stats", from] => match from.parse::<DomId>() {
                Ok(from) => daemon(DaemonCommand::Stats(from)),
                Err(_) => Outcome::error(ErrorCode::EINVAL),
            },
            ["live-update", rest @ ..] => match live_update(rest) {
                Some(step) => daemon(DaemonCommand::LiveUpdate(step)),
                None => Outcome::error(ErrorCode::EINVAL),
            },
            ["quota"] => text(quota_table(&self.config.quotas)),
            ["quota", "set", name, value] => self.control_set_quota(caller, name, value, false),
            ["quota", domid] => self.quota_usage(domid),
            ["quota-soft"] => text(quota_table(&self.config.soft_quotas)),
            ["quota-soft", "set", name, value] => self.control_set_quota(caller, name, value, true),
            _ => Outcome::error(ErrorCode::EINVAL),
        }
    }

    /// `quota set` changes the global (error-level) value, as SET_QUOTA
    /// without a domain does; `quota-soft set` the warning level.
    fn control_set_quota(&mut self, caller: Caller, name: &str, value: &str, soft: bool) -> Outcome {
        let (Some(kind), Ok(value)) = (QuotaKind::from_name(name), value.parse::<u32>()) else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        if soft {
            self.config.soft_quotas.set(kind, value);
            return Outcome { applied: vec![Applied::SoftQuota { kind, value }], ..text("OK") };
        }
        let set = self.set_quota(caller, None, name, value);
        match set.reply {
            Ok(_) => Outcome { applied: set.applied, ..text("OK") },
            Err(e) => Outcome::error(e),
        }
    }

    /// `quota <domid>`: what the domain uses now.
    fn quota_usage(&self, domid: &str) -> Outcome {
        let Some((domid, usage)) = domid.parse::<DomId>().ok().and_then(|d| self.usage(d).map(|u| (d, u))) else {
            return Outcome::error(ErrorCode::ENOENT);
        };
        let mut out = format!("Domain {domid}:\n");
        for (name, value) in [
            ("nodes", usage.nodes),
            ("watches", usage.watches),
            ("transactions", usage.transactions),
            ("outstanding", 0),
            ("memory", usage.memory),
        ] {
            let _ = writeln!(out, "{name:<16}: {value:>8}");
        }
        text(out)
    }
}

/// The C daemon's quota table.
fn quota_table(quotas: &Quotas) -> String {
    let mut out = String::from("Quota settings:\n");
    for kind in QuotaKind::ALL {
        let _ = writeln!(out, "{:<17}: {:>8} {}", kind.name(), quotas.get(kind), describe(kind));
    }
    out
}

fn describe(kind: QuotaKind) -> &'static str {
    match kind {
        QuotaKind::Nodes => "Nodes per domain",
        QuotaKind::Watches => "Watches per domain",
        QuotaKind::Transactions => "Transactions per domain",
        QuotaKind::Outstanding => "Outstanding requests per domain",
        QuotaKind::TransactionNodes => "Max. number of accessed nodes per transaction",
        QuotaKind::NodeSize => "Max. size of a node",
        QuotaKind::PathLength => "Max. length of a node path",
        QuotaKind::Permissions => "Max. number of permissions per node",
        QuotaKind::Memory => "Total Xenstore memory per domain",
    }
}
