//! Per-domain statistics: what each domain costs the daemon, for an
//! administrator (`xenstore top`, through CONTROL `stats`) and for a
//! scraper (Prometheus text, see [`crate::metrics`]). Neither reference
//! daemon has them.
//!
//! Counting is a few additions per request on the connection already in
//! hand ([`Counters`]); nothing is looked up or formatted on the request
//! path. Figures are assembled only when asked for: the engine's view of
//! each domain ([`Engine::usage_from`]) plus the counters of its
//! connections, and of the socket connections that have closed. A
//! domain's figures go when the domain does.

use std::fmt::Write as _;
use std::ops::AddAssign;

use xenstore_db::{DomainUsage, QuotaKind};
use xenstore_wire::{DomId, PAYLOAD_MAX};

use crate::server::Server;

/// What one connection (or the closed connections of one domain) has
/// done since it was made. Counters only grow: rates are for the reader
/// to compute, as Prometheus does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Requests handled.
    pub(crate) requests: u64,
    /// Bytes of requests, headers included.
    pub(crate) bytes_in: u64,
    /// Bytes of replies and watch events queued for it.
    pub(crate) bytes_out: u64,
    /// Watch events queued for it.
    pub(crate) events: u64,
    /// Requests refused with EACCES or EPERM.
    pub(crate) refused_access: u64,
    /// Requests refused by a quota.
    pub(crate) refused_quota: u64,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.requests += o.requests;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.events += o.events;
        self.refused_access += o.refused_access;
        self.refused_quota += o.refused_quota;
    }
}

/// One domain's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DomainStats {
    /// What the store says of it.
    pub(crate) usage: DomainUsage,
    /// What its connections did.
    pub(crate) counters: Counters,
}

/// The daemon-wide figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Totals {
    /// Seconds since the daemon started.
    pub(crate) uptime: f64,
    /// Nodes in the store.
    pub(crate) nodes: usize,
    /// Watches registered.
    pub(crate) watches: usize,
    /// Transactions open.
    pub(crate) transactions: usize,
    /// Connections served (sockets and rings).
    pub(crate) connections: usize,
    /// Domains the store knows.
    pub(crate) domains: usize,
    /// Bytes waiting in the connections' outboxes.
    pub(crate) queued_bytes: usize,
    /// The process's resident memory, if `/proc` says.
    pub(crate) resident_bytes: Option<u64>,
}

/// The columns of a `stats` page's `domain` lines, in order. `xenstore
/// top` finds each by name, so columns can be added at the end.
pub(crate) const COLUMNS: &str = "domid introduced connections nodes watches transactions requests bytes-in \
bytes-out events refused-access refused-quota quota-nodes quota-watches quota-transactions memory quota-memory name";

/// The first line of a `stats` reply: the format's name and version.
pub(crate) const MAGIC: &str = "xenstored-stats 1";

/// Room kept at the end of a page for the `more` line (and the nul the
/// wire adds).
const MORE_LINE_MAX: usize = "more 65535\n".len() + 1;

/// The shortest `domain` line: every figure one digit, no quotas, no name.
const MIN_DOMAIN_LINE: usize = "domain 0 0 0 0 0 0 0 0 0 0 0 0 - - - 0 - -\n".len();

impl Server {
    /// Figures for at most `limit` known domains from `from` on, in domid
    /// order.
    pub(crate) fn domain_stats(&self, from: DomId, limit: usize) -> Vec<DomainStats> {
        let mut out: Vec<DomainStats> = self
            .engine
            .usage_from(from, limit)
            .into_iter()
            .map(|usage| DomainStats { usage, counters: Counters::default() })
            .collect();
        let mut add = |domid: DomId, counters: &Counters| {
            if let Ok(i) = out.binary_search_by_key(&domid, |d| d.usage.domid) {
                out[i].counters += *counters;
            }
        };
        for (&id, conn) in &self.conns {
            let domid = conn.domid().or_else(|| self.engine.caller(id).map(|c| c.domid)).unwrap_or(0);
            add(domid, &conn.counters);
        }
        for (&domid, counters) in &self.departed {
            add(domid, counters);
        }
        out
    }

    /// The daemon-wide figures.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            uptime: self.started.elapsed().as_secs_f64(),
            nodes: self.engine.node_count(),
            watches: self.engine.watch_count(),
            transactions: self.engine.transaction_count(),
            connections: self.conns.len(),
            domains: self.engine.domain_count(),
            queued_bytes: self.conns.values().map(|c| c.outbox.queued_bytes()).sum(),
            resident_bytes: crate::control::resident_bytes(),
        }
    }

    /// CONTROL `stats [<first domid>]`: the totals, then one line per
    /// domain from `from` on, as many as fit in one reply; a last line
    /// `more <domid>` says where the next page starts.
    pub(crate) fn stats_page(&self, from: DomId) -> String {
        let t = self.totals();
        let mut out = String::new();
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "uptime {:.3}", t.uptime);
        for (name, value) in [
            ("nodes", t.nodes),
            ("watches", t.watches),
            ("transactions", t.transactions),
            ("connections", t.connections),
            ("domains", t.domains),
            ("queued-bytes", t.queued_bytes),
        ] {
            let _ = writeln!(out, "{name} {value}");
        }
        if let Some(rss) = t.resident_bytes {
            let _ = writeln!(out, "resident-bytes {rss}");
        }
        let _ = writeln!(out, "columns {COLUMNS}");
        // More candidates than can fit (a line is at least
        // MIN_DOMAIN_LINE bytes): when they all fit, there are no more.
        let candidates = self.domain_stats(from, PAYLOAD_MAX / MIN_DOMAIN_LINE + 1);
        let mut line = String::new();
        for d in &candidates {
            line.clear();
            domain_line(&mut line, d);
            if out.len() + line.len() + MORE_LINE_MAX > PAYLOAD_MAX {
                let _ = writeln!(out, "more {}", d.usage.domid);
                break;
            }
            out.push_str(&line);
        }
        out
    }
}

/// One `domain` line, in [`COLUMNS`]' order; `-` for a quota that does
/// not apply (dom0). The name, last, has control characters replaced so
/// that it cannot break the line.
fn domain_line(out: &mut String, d: &DomainStats) {
    let u = &d.usage;
    let c = &d.counters;
    let _ = write!(
        out,
        "domain {} {} {} {} {} {} {} {} {} {} {} {}",
        u.domid,
        u8::from(u.introduced),
        u.connections,
        u.usage.nodes,
        u.usage.watches,
        u.usage.transactions,
        c.requests,
        c.bytes_in,
        c.bytes_out,
        c.events,
        c.refused_access,
        c.refused_quota,
    );
    for kind in [QuotaKind::Nodes, QuotaKind::Watches, QuotaKind::Transactions] {
        match u.quotas {
            Some(q) => {
                let _ = write!(out, " {}", q.get(kind));
            }
            None => out.push_str(" -"),
        }
    }
    let _ = write!(out, " {}", u.usage.memory);
    match u.quotas {
        Some(q) => {
            let _ = write!(out, " {}", q.get(QuotaKind::Memory));
        }
        None => out.push_str(" -"),
    }
    out.push(' ');
    match &u.name {
        Some(name) => out.extend(name.chars().map(|ch| if ch.is_control() { '?' } else { ch })),
        None => out.push('-'),
    }
    out.push('\n');
}
