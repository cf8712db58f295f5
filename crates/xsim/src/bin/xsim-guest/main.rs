//! `xsim-guest`: guest programs for hosted domains.
//!
//! Run by `xsim create NAME -- xsim-guest ROLE [ARGS]`. Each role talks to
//! xenstored over the domain's own ring (the client finds it through what
//! the hosted hypervisor handed the process) and ends with exit status 0
//! on success, which the hypervisor records as a poweroff (anything else
//! is a crash). What it did goes to its console (`xsim console NAME`).
//!
//! Roles:
//! - `demo`: writes a greeting under `data/`, then waits for
//!   `control/shutdown` and shuts down for the reason asked (reboot,
//!   poweroff or halt), reporting it to the hypervisor;
//! - `ipc`: one side of the two-guest message exchange (see
//!   `xsim::ipc`);
//! - `check NAME [ARGS]`: one guest-side behaviour check (see `checks.rs`,
//!   and `isolation.rs` for those that try to get out of the domain);
//! - `bench-read ROUNDS ITERS`: READ round trips over the ring, timed
//!   (for `xs-bench`'s hosted figures);
//! - `attack KIND SECONDS`: misbehaves within its quotas for a while (for
//!   `xs-bench`'s `contained` figures; see `attack.rs`);
//! - `null-frontend TYPE` / `null-backend TYPE`: the handshake-only
//!   drivers of `xsim::devices::null_driver` for this domain's devices of
//!   TYPE, until the domain is destroyed (see `drivers.rs`).
//! - `xensnet`: the Xen Share LAN driver: the domain's vdevice bus, each
//!   LAN device carried to its TAP interface (`xsim create --netns`; see
//!   `xensnet.rs`).
//! - `xensblk`: the Xen Share block driver: the domain's vdevice bus, its
//!   block device exported as `/mnt/disk` (`xsim create --fuse`; see
//!   `xensblk.rs`), or with `--no-export` only opened and held;
//! - `xensblk-bench SHARE read|write SIZE SECONDS`: a xensblk disk's
//!   throughput through its client API, for `xs-bench` (see
//!   `xensblk_bench.rs`);
//! - `pair-share offer GUEST [OUTSIDER]` / `pair-share accept`: a share
//!   of dom0 and one guest on real Xen (`tests/xen`; see
//!   `pair_share.rs`).
//! - `relay-share lan GUEST...` / `relay-share lan-member`: xensnet on
//!   real Xen over a share of several guests relayed by dom0's service
//!   (`tests/xen`; see `relay_share.rs`).

mod attack;
mod checks;
mod drivers;
mod handed;
mod ipc;
mod isolation;
mod pair_share;
mod raw_ring;
mod relay_share;
mod vdevice_bus;
mod xensblk;
mod xensblk_bench;
mod xensnet;

use anyhow::{bail, Context, Result};
use xen_platform::hosted::Host;
use xen_platform::ShutdownReason;
use xenstore::{Client, Options, Store};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("ipc") => ipc::run(&args[1..]),
        Some("pair-share") => pair_share::run(&args[1..]),
        Some("relay-share") => relay_share::run(&args[1..]),
        Some("check") => checks::run(&args[1..]),
        Some("bench-read") => bench_read(&args[1..]),
        Some("attack") => attack::run(&args[1..]),
        Some("xensnet") => xensnet::run(&args[1..]),
        Some("xensblk") => xensblk::run(&args[1..]),
        Some("xensblk-bench") => xensblk_bench::run(&args[1..]),
        Some(role @ ("null-frontend" | "null-backend")) => drivers::run(role, &args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: xsim-guest demo | ipc [--count N] | check NAME [ARGS] | null-frontend TYPE | null-backend TYPE | \
             xensnet | xensblk [--no-export] | xensblk-bench SHARE read|write SIZE SECONDS | \
             pair-share offer GUEST [OUTSIDER] | pair-share accept | relay-share lan GUEST... | relay-share lan-member"
        )),
    };
    match result {
        Ok(()) => {}
        Err(e) => {
            println!("FAIL: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Writes `data/greeting`, then waits for the toolstack's shutdown request
/// and shuts down for the reason asked, as a Linux guest does
/// (SCHEDOP_shutdown: `reboot` is a reboot, `poweroff` and `halt` a
/// poweroff), so `xsim list` and `xsim shutdown` show it.
fn demo() -> Result<()> {
    let (host, start) = Host::from_guest_env().context("not a hosted guest")?;
    let client = Client::with_transport(xenstore::transport::hosted::ring_of(&host, start)?, Options::default())?;
    let domid = String::from_utf8_lossy(&client.read("domid")?).into_owned();
    let name = String::from_utf8_lossy(&client.read("name")?).into_owned();
    client.write("data/greeting", format!("hello from {name} (domain {domid})").as_bytes())?;
    println!("demo guest {name} (domain {domid}) up; waiting for control/shutdown");
    let watch = client.watch("control/shutdown", "shutdown")?;
    loop {
        let _event = watch.recv_timeout(std::time::Duration::from_secs(3600)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let request = client.read("control/shutdown")?;
        match request.as_slice() {
            b"" => continue,
            b"poweroff" | b"reboot" | b"halt" => {
                println!("shutdown requested ({}); bye", String::from_utf8_lossy(&request));
                let reason = if request == b"reboot" { ShutdownReason::Reboot } else { ShutdownReason::Poweroff };
                host.shutdown_self(reason)?;
                return Ok(());
            }
            other => bail!("unknown shutdown request {:?}", String::from_utf8_lossy(other)),
        }
    }
}

/// Times READ round trips over the ring: prints one line per round,
/// `round <median ns> <p99 ns>`.
fn bench_read(args: &[String]) -> Result<()> {
    let rounds: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let iters: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let client = Client::open()?;
    client.write("data/bench", b"0123456789abcdef")?;
    for _ in 0..iters / 10 {
        client.read("data/bench")?;
    }
    for _ in 0..rounds {
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = std::time::Instant::now();
            let v = client.read("data/bench")?;
            times.push(t.elapsed().as_nanos());
            if v.len() != 16 {
                bail!("bad value");
            }
        }
        times.sort_unstable();
        println!("round {} {}", times[iters / 2], times[iters * 99 / 100]);
    }
    Ok(())
}
