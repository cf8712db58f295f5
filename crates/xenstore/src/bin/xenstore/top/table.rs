//! What `xenstore top` shows: one row per domain from two samples (rates
//! are the counters' growth over the time between them), sorted, and laid
//! out in fixed columns. Pure: the screen and batch modes print its lines.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::sample::{DomainSample, Sample};

/// A column: what it shows and how it sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Domain id.
    Domid,
    /// Domain name.
    Name,
    /// Connections.
    Conns,
    /// Nodes owned.
    Nodes,
    /// Nodes as a share of the nodes quota.
    NodesPct,
    /// Watches.
    Watches,
    /// Watches as a share of the watches quota.
    WatchesPct,
    /// Open transactions.
    Tx,
    /// Store memory charged to it.
    Memory,
    /// Memory as a share of the memory quota.
    MemoryPct,
    /// Requests per second.
    Requests,
    /// Bytes received per second.
    In,
    /// Bytes sent per second.
    Out,
    /// Requests refused with EACCES or EPERM (total).
    Denied,
    /// Requests refused by a quota (total).
    Quota,
}

/// Every column, in display order: header, width, and the key that sorts
/// by it (interactive mode and `--sort`).
pub const COLUMNS: &[(Column, &str, usize, char)] = &[
    (Column::Domid, "DOMID", 5, 'd'),
    (Column::Name, "NAME", 16, 'a'),
    (Column::Conns, "CONN", 4, 'c'),
    (Column::Nodes, "NODES", 7, 'n'),
    (Column::NodesPct, "NODE%", 5, 'N'),
    (Column::Watches, "WATCH", 6, 'w'),
    (Column::WatchesPct, "WAT%", 5, 'W'),
    (Column::Tx, "TX", 3, 't'),
    (Column::Memory, "MEM", 5, 'm'),
    (Column::MemoryPct, "MEM%", 4, 'M'),
    (Column::Requests, "REQ/S", 7, 'r'),
    (Column::In, "IN/S", 7, 'i'),
    (Column::Out, "OUT/S", 7, 'o'),
    (Column::Denied, "DENIED", 6, 'e'),
    (Column::Quota, "QUOTA", 6, 'u'),
];

impl Column {
    /// The column a key sorts by.
    pub fn from_key(key: char) -> Option<Column> {
        COLUMNS.iter().find(|c| c.3 == key).map(|c| c.0)
    }

    /// The column named by `--sort` (its header, any case, or its key).
    pub fn from_name(name: &str) -> Option<Column> {
        let mut chars = name.chars();
        if let (Some(key), None) = (chars.next(), chars.next()) {
            return Column::from_key(key);
        }
        COLUMNS.iter().find(|c| c.1.eq_ignore_ascii_case(name)).map(|c| c.0)
    }

    /// Its header.
    pub fn header(self) -> &'static str {
        COLUMNS.iter().find(|c| c.0 == self).map_or("?", |c| c.1)
    }

    /// Whether it sorts largest first by default (figures do; id and name
    /// do not).
    fn descending(self) -> bool {
        !matches!(self, Column::Domid | Column::Name)
    }
}

/// One domain's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Domain id.
    pub domid: u32,
    /// Its name, or `-`.
    pub name: String,
    /// Whether it is introduced.
    pub introduced: bool,
    conns: u64,
    nodes: u64,
    nodes_pct: Option<f64>,
    watches: u64,
    watches_pct: Option<f64>,
    tx: u64,
    memory: u64,
    memory_pct: Option<f64>,
    /// Requests per second (`None`: no earlier sample of the domain).
    pub requests: Option<f64>,
    bytes_in: Option<f64>,
    bytes_out: Option<f64>,
    denied: u64,
    quota: u64,
}

/// The rows and totals of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// One row per domain, sorted.
    pub rows: Vec<Row>,
    /// The summary lines above the table.
    pub summary: Vec<String>,
}

/// How to sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// By this column.
    pub column: Column,
    /// The other way round from the column's default.
    pub reversed: bool,
}

fn rate(now: &DomainSample, before: Option<&DomainSample>, column: &str, seconds: f64) -> Option<f64> {
    let before = before?;
    let (now, then) = (now.get(column), before.get(column));
    (now >= then && seconds > 0.0).then(|| (now - then) as f64 / seconds)
}

fn share(used: u64, quota: Option<u64>) -> Option<f64> {
    quota.filter(|q| *q > 0).map(|q| used as f64 * 100.0 / q as f64)
}

/// The frame for sample `now`, with rates against `before` taken
/// `seconds` earlier (none on the first frame).
pub fn frame(now: &Sample, before: Option<&Sample>, seconds: f64, order: Order) -> Frame {
    let mut rows: Vec<Row> = now
        .domains
        .iter()
        .map(|d| {
            let prev = before.and_then(|b| b.domains.iter().find(|p| p.domid == d.domid));
            Row {
                domid: d.domid,
                name: d.name.clone().unwrap_or_else(|| "-".to_owned()),
                introduced: d.get("introduced") == 1,
                conns: d.get("connections"),
                nodes: d.get("nodes"),
                nodes_pct: share(d.get("nodes"), d.maybe("quota-nodes")),
                watches: d.get("watches"),
                watches_pct: share(d.get("watches"), d.maybe("quota-watches")),
                tx: d.get("transactions"),
                memory: d.get("memory"),
                memory_pct: share(d.get("memory"), d.maybe("quota-memory")),
                requests: rate(d, prev, "requests", seconds),
                bytes_in: rate(d, prev, "bytes-in", seconds),
                bytes_out: rate(d, prev, "bytes-out", seconds),
                denied: d.get("refused-access"),
                quota: d.get("refused-quota"),
            }
        })
        .collect();
    sort(&mut rows, order);
    Frame { summary: summary(now, &rows, order), rows }
}

fn sort(rows: &mut [Row], order: Order) {
    let f = |o: Option<f64>| o.unwrap_or(-1.0);
    rows.sort_by(|a, b| {
        let by = match order.column {
            Column::Domid => a.domid.cmp(&b.domid),
            Column::Name => a.name.cmp(&b.name),
            Column::Conns => a.conns.cmp(&b.conns),
            Column::Nodes => a.nodes.cmp(&b.nodes),
            Column::NodesPct => f(a.nodes_pct).total_cmp(&f(b.nodes_pct)),
            Column::Watches => a.watches.cmp(&b.watches),
            Column::WatchesPct => f(a.watches_pct).total_cmp(&f(b.watches_pct)),
            Column::Tx => a.tx.cmp(&b.tx),
            Column::Memory => a.memory.cmp(&b.memory),
            Column::MemoryPct => f(a.memory_pct).total_cmp(&f(b.memory_pct)),
            Column::Requests => f(a.requests).total_cmp(&f(b.requests)),
            Column::In => f(a.bytes_in).total_cmp(&f(b.bytes_in)),
            Column::Out => f(a.bytes_out).total_cmp(&f(b.bytes_out)),
            Column::Denied => a.denied.cmp(&b.denied),
            Column::Quota => a.quota.cmp(&b.quota),
        };
        let by = if order.column.descending() != order.reversed { by.reverse() } else { by };
        // Ties: by domid, so rows do not jump between refreshes.
        match by {
            Ordering::Equal => a.domid.cmp(&b.domid),
            other => other,
        }
    });
}

fn summary(now: &Sample, rows: &[Row], order: Order) -> Vec<String> {
    let total = |name: &str| now.totals.get(name).copied().unwrap_or(0.0);
    let uptime = std::time::Duration::try_from_secs_f64(total("uptime")).map_or(0, |d| d.as_secs());
    let mut first = format!(
        "xenstored up {}:{:02}:{:02}, {} domains, {} nodes, {} watches, {} transactions, {} connections",
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60,
        total("domains"),
        total("nodes"),
        total("watches"),
        total("transactions"),
        total("connections"),
    );
    if let Some(rss) = now.totals.get("resident-bytes") {
        let _ = write!(first, ", RSS {}", bytes(*rss));
    }
    let sum = |f: fn(&Row) -> Option<f64>| rows.iter().filter_map(f).sum::<f64>();
    let have_rates = rows.iter().any(|r| r.requests.is_some());
    let second = if have_rates {
        format!(
            "{} req/s, in {}/s, out {}/s; sorted by {}{}",
            count(sum(|r| r.requests)),
            bytes(sum(|r| r.bytes_in)),
            bytes(sum(|r| r.bytes_out)),
            order.column.header(),
            if order.reversed { " (reversed)" } else { "" },
        )
    } else {
        format!("rates from the next refresh; sorted by {}", order.column.header())
    };
    vec![first, second]
}

/// A count per second: whole numbers from 10 up.
fn count(v: f64) -> String {
    match v {
        v if v >= 100_000.0 => format!("{:.0}k", v / 1000.0),
        v if v >= 10.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

/// Bytes, with a binary unit: `812`, `1.2K`, `35M`.
fn bytes(v: f64) -> String {
    let mut v = v;
    for unit in ["", "K", "M", "G"] {
        if v < 1024.0 || unit == "G" {
            return match unit {
                "" => format!("{v:.0}"),
                _ if v < 10.0 => format!("{v:.1}{unit}"),
                _ => format!("{v:.0}{unit}"),
            };
        }
        v /= 1024.0;
    }
    unreachable!("the loop returns at G")
}

/// The header line of the table.
pub fn header() -> String {
    let mut out = String::new();
    for (column, name, width, _) in COLUMNS {
        push(&mut out, name, *width, *column == Column::Name);
    }
    out.trim_end().to_owned()
}

fn push(out: &mut String, text: &str, width: usize, left: bool) {
    if !out.is_empty() {
        out.push(' ');
    }
    let text: String = text.chars().take(width).collect();
    if left {
        let _ = write!(out, "{text:<width$}");
    } else {
        let _ = write!(out, "{text:>width$}");
    }
}

/// One row's line.
pub fn line(row: &Row) -> String {
    let pct = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.0}"));
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or("-".to_owned(), f);
    let mut out = String::new();
    for (column, _, width, _) in COLUMNS {
        let text = match column {
            Column::Domid => row.domid.to_string(),
            Column::Name => row.name.clone(),
            Column::Conns => row.conns.to_string(),
            Column::Nodes => row.nodes.to_string(),
            Column::NodesPct => pct(row.nodes_pct),
            Column::Watches => row.watches.to_string(),
            Column::WatchesPct => pct(row.watches_pct),
            Column::Tx => row.tx.to_string(),
            Column::Memory => bytes(row.memory as f64),
            Column::MemoryPct => pct(row.memory_pct),
            Column::Requests => opt(row.requests, count),
            Column::In => opt(row.bytes_in, bytes),
            Column::Out => opt(row.bytes_out, bytes),
            Column::Denied => row.denied.to_string(),
            Column::Quota => row.quota.to_string(),
        };
        push(&mut out, &text, *width, *column == Column::Name);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::sample::parse_page;

    fn sample(lines: &str) -> Sample {
        let mut s = Sample::default();
        let text = format!(
            "xenstored-stats 1\nuptime 3725\ndomains 3\ncolumns domid introduced connections nodes watches \
transactions requests bytes-in bytes-out refused-access refused-quota quota-nodes quota-watches name\n{lines}"
        );
        parse_page(&text, &mut s).unwrap();
        s
    }

    #[test]
    fn rates_come_from_two_samples_and_rows_sort_by_them() {
        let before =
            sample("domain 0 1 2 50 3 0 100 1000 2000 0 0 - - Domain-0\ndomain 4 1 1 10 1 0 10 0 0 0 0 1000 128 web\n");
        let now = sample("domain 0 1 2 50 3 0 110 1000 2000 0 0 - - Domain-0\ndomain 4 1 1 500 64 1 210 2048 0 2 1 1000 128 web\ndomain 9 1 1 1 0 0 5 0 0 0 0 1000 128 new\n");
        let order = Order { column: Column::Requests, reversed: false };
        let f = frame(&now, Some(&before), 2.0, order);
        let ids: Vec<u32> = f.rows.iter().map(|r| r.domid).collect();
        // web: 100 req/s; dom0: 5 req/s; the new domain has no rate yet.
        assert_eq!(ids, [4, 0, 9]);
        assert_eq!(f.rows[0].requests, Some(100.0));
        assert_eq!(f.rows[2].requests, None);
        let web = line(&f.rows[0]);
        assert_eq!(
            web.split_whitespace().collect::<Vec<_>>(),
            ["4", "web", "1", "500", "50", "64", "50", "1", "0", "-", "100", "1.0K", "0", "2", "1"]
        );
        assert!(line(&f.rows[1]).contains(" - "), "dom0 has no quota: {}", line(&f.rows[1]));
        assert!(f.summary[0].starts_with("xenstored up 1:02:05, 3 domains"), "{:?}", f.summary);
        assert!(f.summary[1].starts_with("105 req/s"), "{:?}", f.summary);
        let by_id = frame(&now, Some(&before), 2.0, Order { column: Column::Domid, reversed: false });
        assert_eq!(by_id.rows.iter().map(|r| r.domid).collect::<Vec<_>>(), [0, 4, 9]);
        let by_nodes = frame(&now, Some(&before), 2.0, Order { column: Column::Nodes, reversed: true });
        assert_eq!(by_nodes.rows.iter().map(|r| r.domid).collect::<Vec<_>>(), [9, 0, 4], "fewest nodes first");
    }

    #[test]
    fn columns_line_up_with_the_header() {
        let now = sample("domain 12345 1 1 1 1 1 1 1 1 1 1 1 1 a-very-long-domain-name\n");
        let f = frame(&now, None, 0.0, Order { column: Column::Domid, reversed: false });
        let row = line(&f.rows[0]);
        assert!(row.starts_with("12345 a-very-long-doma "), "{row}");
        assert_eq!(header().find("CONN").map(|i| i + 4), row.find(" 1 ").map(|i| i + 2));
    }

    #[test]
    fn units() {
        assert_eq!((bytes(812.0), bytes(1229.0), bytes(35.0 * 1048576.0)), ("812".into(), "1.2K".into(), "35M".into()));
        assert_eq!((count(3.25), count(42.4), count(250_000.0)), ("3.2".into(), "42".into(), "250k".into()));
        assert_eq!(Column::from_name("req/s"), Some(Column::Requests));
        assert_eq!(Column::from_name("n"), Some(Column::Nodes));
        assert_eq!(Column::from_name("bogus"), None);
    }
}
