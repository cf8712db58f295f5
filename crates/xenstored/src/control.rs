//! CONTROL commands (`xenstore-control`), with the C daemon's names,
//! arguments and output formats.

use std::fmt::Write as _;
use std::path::Path;

use tracing::info;
use xenstore_db::{ConnId, Outcome, QuotaKind};
use xenstore_wire::{DomId, ErrorCode, Reply, Request};

use crate::server::Server;

/// `help` output: one command per line, a tab before its arguments.
const HELP: &str = "check\t\nlog\ton|off\nlogfile\t<file>\nmemreport\t[<file>]\nprint\t<string>\n\
quota\t[set <name> <val>|<domid>]\nquota-soft\t[set <name> <val>]\nhelp\t\n";

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
    }
}

fn text(s: impl Into<Vec<u8>>) -> Outcome {
    Outcome::ok(Reply::Text(s.into()))
}

impl Server {
    /// Runs one CONTROL request.
    pub(crate) fn control(&mut self, id: ConnId, payload: &[u8]) -> Outcome {
        if !self.engine.caller(id).is_some_and(|c| c.privileged) {
            return Outcome::error(ErrorCode::EACCES);
        }
        let args: Vec<&[u8]> = Request::control_args(payload).collect();
        let Some(args_str) = args.iter().map(|a| std::str::from_utf8(a).ok()).collect::<Option<Vec<&str>>>() else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        match args_str.as_slice() {
            ["help"] => text(HELP),
            ["check"] => self.engine.handle(id, 0, &Request::Control(payload)),
            ["log", "on"] => {
                self.trace.set_enabled(true);
                text("OK")
            }
            ["log", "off"] => {
                self.trace.set_enabled(false);
                text("OK")
            }
            ["logfile", file] => match self.trace.set_file(Path::new(file)) {
                Ok(()) => text("OK"),
                Err(e) => text(format!("cannot open {file}: {e}")),
            },
            ["print", words @ ..] => {
                let line = words.join(" ");
                info!("control print: {line}");
                self.trace.note(&line);
                text("OK")
            }
            ["memreport"] => text(self.memreport()),
            ["memreport", file] => match std::fs::write(file, self.memreport()) {
                Ok(()) => text("OK"),
                Err(e) => text(format!("cannot write {file}: {e}")),
            },
            ["quota"] => text(quota_table(|k| self.engine.config().quotas.get(k), "error level")),
            ["quota", "set", name, value] => self.set_quota(name, value, false),
            ["quota", domid] => match domid.parse::<DomId>().ok().and_then(|d| self.engine.usage(d).map(|u| (d, u))) {
                Some((d, usage)) => {
                    let mut out = format!("Domain {d}:\n");
                    for (name, value) in [
                        ("nodes", usage.nodes),
                        ("watches", usage.watches),
                        ("transactions", usage.transactions),
                        ("outstanding", 0),
                    ] {
                        let _ = writeln!(out, "{name:<16}: {value:>8}");
                    }
                    text(out)
                }
                None => Outcome::error(ErrorCode::ENOENT),
            },
            ["quota-soft"] => text(quota_table(|k| self.soft_quotas.get(k), "warning level")),
            ["quota-soft", "set", name, value] => self.set_quota(name, value, true),
            _ => Outcome::error(ErrorCode::EINVAL),
        }
    }

    fn set_quota(&mut self, name: &str, value: &str, soft: bool) -> Outcome {
        let (Some(kind), Ok(value)) = (QuotaKind::from_name(name), value.parse::<u32>()) else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        if soft {
            self.soft_quotas.set(kind, value);
            return text("OK");
        }
        let dom0 = self.engine.connect(xenstore_db::Caller::DOM0);
        let out = self.engine.handle(dom0, 0, &Request::SetQuota { domid: None, quota: name, value });
        self.engine.disconnect(dom0);
        match out.reply {
            Ok(_) => text("OK"),
            Err(e) => Outcome::error(e),
        }
    }

    fn memreport(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "nodes: {}", self.engine.node_count());
        let _ = writeln!(out, "watches: {}", self.engine.watch_count());
        let _ = writeln!(out, "transactions: {}", self.engine.transaction_count());
        let _ = writeln!(out, "connections: {}", self.conns.len());
        let queued: usize = self.conns.values().map(|c| c.outbox.queued_bytes()).sum();
        let _ = writeln!(out, "queued output bytes: {queued}");
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(out, "resident memory bytes: {rss}");
        }
        out
    }
}

fn quota_table(value: impl Fn(QuotaKind) -> u32, level: &str) -> String {
    let mut out = String::from("Quota settings:\n");
    for kind in QuotaKind::ALL {
        let desc = describe(kind);
        let _ = writeln!(out, "{:<17}: {:>8} {desc}", kind.name(), value(kind));
    }
    let _ = level;
    out
}

/// Resident set size from `/proc/self/statm`.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
