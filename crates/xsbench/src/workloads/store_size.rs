//! Store size: the daemons are filled side by side, step by step, with a
//! busy host's store (`/local/domain/<n>/...`, 100 nodes per domain, owned
//! by the domain as a toolstack leaves them), and at each size the run
//! records each daemon's resident memory and its READ, WRITE and
//! transaction latency on nodes picked at random.
//!
//! Filling is pipelined (128 requests per write); its time per node is
//! recorded too, as the write throughput of a growing store.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use xenstore_wire::Op;

use super::{on_cpu, Config, Target};
use crate::conn::{drain, z, Conn};
use crate::daemons::rss_bytes;
use crate::progress::{self, Counter};
use crate::results::Results;
use crate::stats::{median, micros};

/// The group the figures go in.
pub const GROUP: &str = "Store size";

/// Nodes per domain.
pub const NODES_PER_DOMAIN: usize = 100;

/// Store sizes measured (nodes written, on top of the daemon's own few).
pub fn sizes(cfg: Config) -> Vec<usize> {
    if cfg.quick {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 10_000, 100_000, 1_000_000]
    }
}

/// A daemon taking part, and the process whose memory is its memory.
#[derive(Debug, Clone, Copy)]
pub struct Sized<'a> {
    /// The daemon.
    pub target: Target<'a>,
    /// Its pid, if memory is to be measured.
    pub pid: Option<u32>,
}

/// The paths (relative to `/local/domain/<n>`, parents first, `""` for the
/// domain's own node) and values of one domain: what a toolstack, the
/// backends and a guest's frontends write for a PV guest with a console,
/// a network card and disks.
pub fn domain_nodes(n: usize) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::with_capacity(NODES_PER_DOMAIN);
    let mut put = |k: &str, val: String| v.push((k.to_owned(), val));
    put("", String::new());
    put("vm", format!("/vm/00000000-0000-0000-0000-{n:012}"));
    put("name", format!("guest-{n}"));
    put("domid", n.to_string());
    put("memory", String::new());
    for k in ["static-max", "target", "videoram"] {
        put(&format!("memory/{k}"), "1048576".into());
    }
    put("cpu", String::new());
    for c in 0..2 {
        put(&format!("cpu/{c}"), String::new());
        put(&format!("cpu/{c}/availability"), "online".into());
    }
    put("control", String::new());
    put("control/shutdown", String::new());
    for f in ["poweroff", "reboot", "suspend", "s3", "s4", "vcpu-hotplug"] {
        put(&format!("control/feature-{f}"), "1".into());
    }
    put("control/platform-feature-multiprocessor-suspend", "1".into());
    put("control/platform-feature-xs_reset_watches", "1".into());
    put("console", String::new());
    for (k, val) in [
        ("ring-ref", "2097151"),
        ("port", "2"),
        ("limit", "1048576"),
        ("type", "xenconsoled"),
        ("output", "pty"),
        ("tty", "/dev/pts/3"),
        ("backend-id", "0"),
    ] {
        put(&format!("console/{k}"), val.into());
    }
    put("device", String::new());
    put("device/vif", String::new());
    put("device/vif/0", String::new());
    for (k, val) in [
        ("backend", format!("/local/domain/0/backend/vif/{n}/0")),
        ("backend-id", "0".into()),
        ("state", "4".into()),
        ("handle", "0".into()),
        ("mac", format!("00:16:3e:{:02x}:{:02x}:{:02x}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)),
        ("mtu", "1500".into()),
        ("tx-ring-ref", "8".into()),
        ("rx-ring-ref", "9".into()),
        ("event-channel", "10".into()),
        ("request-rx-copy", "1".into()),
        ("feature-rx-notify", "1".into()),
        ("feature-sg", "1".into()),
        ("feature-gso-tcpv4", "1".into()),
    ] {
        put(&format!("device/vif/0/{k}"), val);
    }
    put("device/vbd", String::new());
    for dev in ["51712", "51728", "51744"] {
        put(&format!("device/vbd/{dev}"), String::new());
        for (k, val) in [
            ("backend", format!("/local/domain/0/backend/vbd/{n}/{dev}")),
            ("backend-id", "0".into()),
            ("state", "4".into()),
            ("virtual-device", dev.into()),
            ("device-type", "disk".into()),
            ("ring-ref", "8".into()),
            ("event-channel", "11".into()),
            ("protocol", "x86_64-abi".into()),
            ("feature-persistent", "1".into()),
            ("multi-queue-num-queues", "1".into()),
        ] {
            put(&format!("device/vbd/{dev}/{k}"), val);
        }
    }
    put("data", String::new());
    put("attr", String::new());
    put("drivers", String::new());
    let mut i = 0;
    while v.len() < NODES_PER_DOMAIN {
        v.push((format!("data/key{i}"), format!("value-{i}")));
        i += 1;
    }
    v
}

/// Writes domains `from + 1..=to` into the daemon, pipelined (domain 0's
/// directory belongs to dom0), until `deadline`, counting nodes on
/// `counter`; returns the number of domains the store then holds (`to`
/// unless the deadline came first).
fn fill(c: &mut Conn, from: usize, to: usize, deadline: Instant, counter: &mut Counter) -> Result<usize> {
    for domid in from + 1..=to {
        counter.update((domid - 1) * NODES_PER_DOMAIN);
        if Instant::now() >= deadline {
            return Ok(domid - 1);
        }
        let base = format!("/local/domain/{domid}");
        let nodes = domain_nodes(domid);
        for (rel, value) in &nodes {
            let path = if rel.is_empty() { base.clone() } else { format!("{base}/{rel}") };
            c.send(Op::Write, 0, &[path.as_bytes(), b"\0", value.as_bytes()]);
            if rel.is_empty() {
                // The toolstack gives the domain its own directory; what is
                // created below inherits the owner.
                c.send(Op::SetPerms, 0, &[path.as_bytes(), b"\0", format!("n{domid}\0r0\0").as_bytes()]);
            }
        }
        // One domain per batch: 101 requests in one write.
        drain(c, nodes.len() + 1)?;
    }
    Ok(to)
}

/// A small deterministic generator, so that every daemon gets the same
/// random choices.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// Seeded.
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    /// Next value below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // The high bits are the good ones; `n` is far below 2^32.
        #[allow(clippy::cast_possible_truncation)]
        let r = (self.0 >> 33) as usize;
        r % n
    }
}

/// How long one daemon may take to grow the store by one step. A daemon
/// whose writes slow down with the store's size stops growing there; the
/// run goes on with the others and says so.
pub fn step_budget(cfg: Config) -> Duration {
    Duration::from_secs(if cfg.quick { 60 } else { 150 })
}

/// Fills every daemon to each size in turn and measures them side by side.
pub fn run(daemons: &[Sized<'_>], cfg: Config, reps: usize, res: &mut Results) -> Result<()> {
    let mut conns: Vec<Conn> = daemons.iter().map(|d| Conn::connect(d.target.socket)).collect::<Result<_>>()?;
    let base_rss: Vec<Option<u64>> = daemons.iter().map(|d| d.pid.and_then(|p| rss_bytes(p).ok())).collect();
    let mut active = vec![true; daemons.len()];
    let mut domains = 0;
    let nodes_of = domain_nodes(0);
    for size in sizes(cfg) {
        let want = size / NODES_PER_DOMAIN;
        let label = human(size);
        let from = human(domains * NODES_PER_DOMAIN);
        for (i, (d, c)) in daemons.iter().zip(conns.iter_mut()).enumerate() {
            if !active[i] {
                continue;
            }
            progress::step(format_args!("store: filling {} from {from} to {label} nodes", d.target.name));
            let mut counter = Counter::new(format!("{} filled", d.target.name), size, "nodes");
            let began = Instant::now();
            let reached = fill(c, domains, want, began + step_budget(cfg), &mut counter)?;
            let secs = began.elapsed().as_secs_f64();
            counter.finish(reached * NODES_PER_DOMAIN);
            // Node counts are far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            let per_node = secs * 1e6 / ((reached - domains).max(1) * NODES_PER_DOMAIN) as f64;
            res.add(
                GROUP,
                &format!("fill {from} → {label}, pipelined: per node"),
                "µs",
                false,
                d.target.name,
                per_node,
            );
            if reached < want {
                active[i] = false;
                let mut text = format!(
                    "{}: growing the store from {from} to {label} nodes was stopped after {secs:.0} s at {} nodes \
                     ({per_node:.0} µs per node written in that step)",
                    d.target.name,
                    reached * NODES_PER_DOMAIN
                );
                if let (Some(pid), Some(base)) = (d.pid, base_rss[i]) {
                    // Byte counts are far below 2^53.
                    #[allow(clippy::cast_precision_loss)]
                    let per = rss_bytes(pid)?.saturating_sub(base) as f64 / (reached * NODES_PER_DOMAIN) as f64;
                    text.push_str(&format!("; its memory per node there was {per:.0} bytes"));
                }
                res.observe(text);
            }
        }
        domains = want;
        for (i, (d, base)) in daemons.iter().zip(&base_rss).enumerate() {
            if let (true, Some(pid), Some(base)) = (active[i], d.pid, base) {
                let rss = rss_bytes(pid)?;
                // Byte counts are far below 2^53.
                #[allow(clippy::cast_precision_loss)]
                {
                    res.add(
                        GROUP,
                        &format!("RSS at {label} nodes"),
                        "MiB",
                        false,
                        d.target.name,
                        rss as f64 / 1048576.0,
                    );
                    let per = rss.saturating_sub(*base) as f64 / size as f64;
                    res.add(GROUP, &format!("memory per node at {label}"), "bytes", false, d.target.name, per);
                }
            }
        }
        progress::step(format_args!("store: latency at {label} nodes"));
        on_cpu(0, || -> Result<()> {
            for rep in 0..reps {
                for (i, (d, c)) in daemons.iter().zip(conns.iter_mut()).enumerate() {
                    if !active[i] {
                        continue;
                    }
                    let seed = (size * 31 + rep) as u64;
                    let (read, write, tx) = latencies(c, cfg, domains, &nodes_of, seed)?;
                    res.add(GROUP, &format!("READ p50 at {label}"), "µs", false, d.target.name, read);
                    res.add(GROUP, &format!("WRITE p50 at {label}"), "µs", false, d.target.name, write);
                    res.add(
                        GROUP,
                        &format!("tx start + 3 reads + 3 writes + commit p50 at {label}"),
                        "µs",
                        false,
                        d.target.name,
                        tx,
                    );
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// A size as the table shows it: `1k`, `100k`, `1M`.
pub fn human(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Median READ, WRITE and transaction latency on random nodes.
fn latencies(
    c: &mut Conn,
    cfg: Config,
    domains: usize,
    nodes: &[(String, String)],
    seed: u64,
) -> Result<(f64, f64, f64)> {
    let mut rng = Lcg::new(seed);
    let pick = |rng: &mut Lcg| {
        let n = 1 + rng.below(domains);
        let (rel, _) = &nodes[1 + rng.below(nodes.len() - 1)];
        z(&format!("/local/domain/{n}/{rel}"))
    };
    let iters = cfg.n(3_000, 200);
    let mut reads = Vec::with_capacity(iters);
    let mut writes = Vec::with_capacity(iters);
    for _ in 0..iters {
        let p = pick(&mut rng);
        let began = Instant::now();
        let m = c.call(Op::Read, 0, &[&p])?;
        reads.push(micros(began.elapsed()));
        ensure!(m.error().is_none(), "READ {:?}: {:?}", String::from_utf8_lossy(&p), m.error());
        let began = Instant::now();
        c.call_ok(Op::Write, 0, &[&p, &m.payload])?;
        writes.push(micros(began.elapsed()));
    }
    let mut txs = Vec::new();
    for _ in 0..cfg.n(500, 50) {
        let n = 1 + rng.below(domains);
        let paths: Vec<Vec<u8>> = ["memory/target", "control/shutdown", "data/key0"]
            .iter()
            .map(|rel| z(&format!("/local/domain/{n}/{rel}")))
            .collect();
        let began = Instant::now();
        let retries = super::txn::read_modify_write(c, &paths)?;
        txs.push(micros(began.elapsed()));
        ensure!(retries == 0, "an uncontended transaction got EAGAIN");
    }
    Ok((median(&mut reads), median(&mut writes), median(&mut txs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_is_exactly_100_distinct_nodes_parents_first() {
        for n in [0, 7, 9999] {
            let nodes = domain_nodes(n);
            assert_eq!(nodes.len(), NODES_PER_DOMAIN);
            let mut seen = std::collections::HashSet::new();
            for (rel, _) in &nodes {
                if let Some((parent, _)) = rel.rsplit_once('/') {
                    assert!(seen.contains(parent), "{rel} before its parent");
                } else if !rel.is_empty() {
                    assert!(seen.contains(""), "{rel} before the domain node");
                }
                assert!(seen.insert(rel.clone()), "{rel} twice");
            }
        }
    }

    #[test]
    fn sizes_read_as_the_table_writes_them() {
        assert_eq!(human(1_000), "1k");
        assert_eq!(human(100_000), "100k");
        assert_eq!(human(1_000_000), "1M");
        assert_eq!(human(1_500), "1500");
    }
}
