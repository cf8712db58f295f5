//! Memory per node of a host-shaped store (see `host/mod.rs`).
//!
//! For each size the binary runs itself in a fresh child process, so one
//! size's freed memory cannot hide the next one's growth. The child reads
//! its resident set size (`VmRSS` in `/proc/self/status`) after creating the
//! engine and again after building the store, and prints one line:
//!
//! `memory: nodes=... guests=... rss_delta_bytes=... bytes_per_node=... build_secs=...`
//!
//! The delta is what the process asked of the OS: nodes, their keys and
//! values, the persistent map's inner nodes, and the allocator's overhead
//! and slack.
//!
//! Under `cargo bench` (which passes `--bench`) it measures 100k and 1M
//! nodes; otherwise (`cargo test --benches`) only 1k, as a smoke test.

use std::process::Command;
use std::time::Instant;

mod host;
use host::Host;

/// Tells a child process which size to measure.
const SIZE_VAR: &str = "XENSTORE_DB_BENCH_MEMORY_NODES";

fn main() {
    if let Ok(size) = std::env::var(SIZE_VAR) {
        measure(size.parse().expect("a node count"));
        return;
    }
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") { &[100_000, 1_000_000] } else { &[1_000] };
    let exe = std::env::current_exe().expect("own path");
    for size in sizes {
        let status = Command::new(&exe).env(SIZE_VAR, size.to_string()).status().expect("run child");
        assert!(status.success(), "measuring {size} nodes failed: {status}");
    }
}

fn measure(size: usize) {
    // Warm the allocator and the engine's code paths on a tiny store first.
    drop(Host::build(NODES_FOR_WARMUP));
    let before = rss_bytes();
    let started = Instant::now();
    let host = Host::build(size);
    let build_secs = started.elapsed().as_secs_f64();
    let after = rss_bytes();
    let nodes = host.engine.node_count();
    let delta = after.saturating_sub(before);
    let per_node = delta as f64 / nodes as f64;
    println!(
        "memory: nodes={nodes} guests={} rss_before_bytes={before} rss_after_bytes={after} \
         rss_delta_bytes={delta} bytes_per_node={per_node:.1} build_secs={build_secs:.2}",
        host.domains
    );
    std::hint::black_box(&host);
}

const NODES_FOR_WARMUP: usize = 100;

/// The process's resident set size, from `VmRSS` (reported in kB).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("VmRSS line");
    kb * 1024
}
