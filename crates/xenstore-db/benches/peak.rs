//! Peak memory of single big operations against the store they run on:
//! no one request may make the process hold more than twice what it holds
//! at rest.
//!
//! Each operation runs in a fresh child process on a host-shaped store of
//! [`STORE_NODES`] nodes (see `host/mod.rs`) plus what the operation needs
//! (a directory of [`WIDE`] children). The child resets its peak resident
//! set (`echo 5 > /proc/self/clear_refs`), reads `VmRSS` (the steady
//! state), runs the operation and reads `VmHWM` (the peak), and prints:
//!
//! `peak: op=... steady_bytes=... touched_bytes=... peak_bytes=... after_bytes=... extra_bytes=... peak_over_steady=... extra_over_touched=...`
//!
//! `extra` is the peak above the steady state; `touched` is what the
//! operation's own nodes cost at rest (the directory it removes or lists,
//! or what the transaction leaves behind), so `extra_over_touched` says
//! how the transient compares with the data the operation touches.
//!
//! Under `cargo bench` (which passes `--bench`) the store has 100k nodes;
//! otherwise (`cargo test --benches`) 1k, as a smoke test.

use std::process::Command;

use xenstore_db::ConnId;
use xenstore_wire::{Reply, Request};

mod host;
use host::Host;

/// Tells a child process which operation to measure, and on what size.
const OP_VAR: &str = "XENSTORE_DB_BENCH_PEAK_OP";
const SIZE_VAR: &str = "XENSTORE_DB_BENCH_PEAK_NODES";

/// Nodes of the store the operations run on, under `cargo bench`.
const STORE_NODES: usize = 100_000;

/// Children of the wide directory, and writes in the big transaction.
const WIDE: usize = 10_000;

/// The operations measured.
const OPS: [&str; 3] = ["rm_10k_children", "tx_10k_writes", "directory_part_10k"];

fn main() {
    if let (Ok(op), Ok(size)) = (std::env::var(OP_VAR), std::env::var(SIZE_VAR)) {
        measure(&op, size.parse().expect("a node count"));
        return;
    }
    let size = if std::env::args().any(|a| a == "--bench") { STORE_NODES } else { 1_000 };
    let exe = std::env::current_exe().expect("own path");
    for op in OPS {
        let status = Command::new(&exe).env(OP_VAR, op).env(SIZE_VAR, size.to_string()).status().expect("run child");
        assert!(status.success(), "measuring {op} failed: {status}");
    }
}

fn measure(op: &str, size: usize) {
    let mut host = Host::build(size);
    let dom0 = host.dom0;
    let before_setup = rss_bytes("VmRSS");
    let wide = "/local/domain/0/wide";
    if op != "tx_10k_writes" {
        for i in 0..WIDE {
            host.write(&format!("{wide}/child-{i}"), b"1");
        }
    }
    let steady = rss_bytes("VmRSS");
    let setup = steady.saturating_sub(before_setup);
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak resident set");
    let steady = rss_bytes("VmRSS");
    match op {
        "rm_10k_children" => ok(&mut host, dom0, 0, &Request::Rm(wide)),
        "tx_10k_writes" => {
            let out = host.engine.handle(dom0, 0, &Request::TransactionStart);
            let Ok(Reply::TransactionStart(tx)) = out.reply else { panic!("start: {:?}", out.reply) };
            for i in 0..WIDE {
                let path = format!("{wide}/child-{i}");
                ok(&mut host, dom0, tx, &Request::Write { path: &path, value: b"1" });
            }
            ok(&mut host, dom0, tx, &Request::TransactionEnd { commit: true });
        }
        "directory_part_10k" => {
            let mut offset = 0u32;
            loop {
                let out = host.engine.handle(dom0, 0, &Request::DirectoryPart { path: wide, offset });
                let Ok(Reply::DirectoryPart { names, complete, .. }) = out.reply else {
                    panic!("directory_part: {:?}", out.reply)
                };
                if complete {
                    break;
                }
                offset += u32::try_from(names.len()).expect("a part is small");
            }
        }
        _ => panic!("unknown operation {op}"),
    }
    let peak = rss_bytes("VmHWM");
    let after = rss_bytes("VmRSS");
    // The nodes the operation touches at rest: the wide directory it
    // removes or lists, or the one the transaction leaves behind.
    let touched = if op == "tx_10k_writes" { after.saturating_sub(steady) } else { setup };
    let extra = peak.saturating_sub(steady);
    #[allow(clippy::cast_precision_loss)]
    let (over_steady, over_touched) = (peak as f64 / steady as f64, extra as f64 / touched.max(1) as f64);
    println!(
        "peak: op={op} nodes={} steady_bytes={steady} touched_bytes={touched} peak_bytes={peak} \
         after_bytes={after} extra_bytes={extra} peak_over_steady={over_steady:.3} \
         extra_over_touched={over_touched:.2}",
        host.engine.node_count()
    );
    std::hint::black_box(&host);
}

/// Handles `request`, panicking unless it succeeded.
fn ok(host: &mut Host, conn: ConnId, tx: u32, request: &Request<'_>) {
    let out = host.engine.handle(conn, tx, request);
    assert!(out.reply.is_ok(), "{request:?}: {:?}", out.reply);
}

/// A field of `/proc/self/status` (reported in kB), in bytes.
fn rss_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("the status line");
    kb * 1024
}
