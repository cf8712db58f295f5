//! The hosted half of the `contained` figures: a quiet dom0 client's READ
//! latency over the socket while a guest attacks from its own ring, within
//! its quotas (`xsim-guest attack KIND SECONDS`). The socket half,
//! `workloads::contained`, has privileged attackers, which quotas do not
//! bind; here the attacker is an ordinary domain.
//!
//! Beside the latency, the daemon's resident memory before the guest and
//! while it attacks: `hoard` makes it hold all that the guest's quotas
//! allow.
//!
//! The host runs on CPU 0 as in the rest of the hosted phase; the attacking
//! guest pins itself to CPU 1, so CPU 0 does the daemon's work for both.
//! The quiet client runs at a higher priority, as if on its own vCPU
//! ([`as_quiet_domain`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use xenstore_wire::Op;
use xsim::{DomainSpec, StateDir, Toolstack};

use crate::conn::Conn;
use crate::results::{Results, OURS};
use crate::stats::time_each;
use crate::workloads::{as_quiet_domain, Config};

/// The group the figures go in.
pub const GROUP: &str = "Contained: quiet dom0 READ while a hosted guest attacks";

/// The guest's attacks (`xsim-guest attack` kinds).
const ATTACKS: &[&str] = &["writes", "unread", "garbage", "transactions", "storm", "hoard"];

/// Measures the quiet client idle, then while each attack runs.
pub fn measure(
    ts: &mut Toolstack,
    state: &StateDir,
    guest: &Path,
    sock: &mut Conn,
    cfg: Config,
    res: &mut Results,
) -> Result<()> {
    let iters = cfg.n(5_000, 300);
    let seconds = cfg.n(3, 1);
    let read = |sock: &mut Conn| {
        as_quiet_domain(|| {
            time_each(iters / 10, iters, || {
                sock.call_ok(Op::Read, 0, &[b"/bench\0"])?;
                Ok(())
            })
        })
    };
    let (idle50, idle99) = read(sock)?;
    res.add(GROUP, "idle p50", "µs", false, OURS, idle50);
    res.add(GROUP, "idle p99", "µs", false, OURS, idle99);
    for kind in ATTACKS {
        let spec = DomainSpec {
            name: format!("attack-{kind}"),
            program: vec![guest.to_string_lossy().into_owned(), "attack".into(), (*kind).into(), seconds.to_string()],
            env: Vec::new(),
            paused: false,
            netns: false,
            fuse: false,
        };
        let rss_idle = daemon_rss(state);
        let domid = ts.create(&spec)?.domid;
        // Let the attack get going before timing.
        std::thread::sleep(Duration::from_millis(200));
        let timed = read(sock);
        // What the daemon holds while the guest holds all it can: `hoard`
        // says when it has it all, and keeps it to the end.
        if *kind == "hoard" {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !std::fs::read_to_string(state.console(domid)).unwrap_or_default().contains("hoarded:")
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let rss_attacked = daemon_rss(state);
        let finished = ts.wait_shutdown(domid, Duration::from_secs(60))?;
        let console = std::fs::read_to_string(state.console(domid)).unwrap_or_default();
        ts.destroy(domid)?;
        let (p50, p99) = timed?;
        let rounds: Option<f64> = console
            .lines()
            .find_map(|l| l.strip_prefix(&format!("attack {kind}: "))?.strip_suffix(" rounds")?.parse().ok());
        let Some(rounds) = rounds.filter(|_| finished.is_some()) else {
            anyhow::bail!("the {kind} attack did not finish:\n{console}")
        };
        // What the attacker got done: proof that it ran, and at what pace.
        res.add(GROUP, &format!("guest {kind}: attack rounds per second"), "/s", true, OURS, rounds / seconds as f64);
        res.add(GROUP, &format!("guest {kind}: p50"), "µs", false, OURS, p50);
        res.add(GROUP, &format!("guest {kind}: p99"), "µs", false, OURS, p99);
        res.add(GROUP, &format!("guest {kind}: p50 / idle"), "x", false, OURS, p50 / idle50);
        res.add(GROUP, &format!("guest {kind}: p99 / idle"), "x", false, OURS, p99 / idle99);
        if let (Some(idle), Some(attacked)) = (rss_idle, rss_attacked) {
            let growth = attacked.saturating_sub(idle) as f64 / (1024.0 * 1024.0);
            res.add(GROUP, &format!("guest {kind}: daemon RSS growth"), "MiB", false, OURS, growth);
        }
    }
    Ok(())
}

/// The daemon's resident memory in bytes (`VmRSS`), if it can be read.
fn daemon_rss(state: &StateDir) -> Option<u64> {
    let pid = xsim::host::pid_of(&state.xenstored_pid())?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
