//! The workloads, each bounded in count and time.
//!
//! Every workload takes the daemon's socket and the run's [`Config`], does
//! its work as dom0 (socket connections are privileged in every daemon),
//! checks that the daemon did what was asked (a benchmark of a daemon that
//! lost an increment or an event would be meaningless), records its
//! figures, and removes what it created.

pub mod contained;
pub mod contended;
pub mod directory;
pub mod fanout;
pub mod latency;
pub mod many_conns;
pub mod store_size;
pub mod subtree;
pub mod throughput;
pub mod txn;

use std::path::Path;

use anyhow::Result;

use crate::results::Results;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// A small run (seconds), to check that everything works.
    pub quick: bool,
}

impl Config {
    /// `full` normally, `quick` in a quick run.
    pub fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// A daemon to drive: its name in the results and its socket.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `rust`, `c`, `c-4.20`, `ocaml`, `ocaml-4.20`, or what the user named it.
    pub name: &'a str,
    /// Its Unix socket.
    pub socket: &'a Path,
}

/// A workload that runs once per repetition on every daemon.
pub type Workload = fn(Target<'_>, Config, &mut Results) -> Result<()>;

/// The repeated workloads, by name, in the order they run.
pub const REPEATED: &[(&str, Workload)] = &[
    ("latency", latency::run),
    ("throughput", throughput::run),
    ("subtree", subtree::run),
    ("directory", directory::run),
    ("txn", txn::run_uncontended),
    ("contended", contended::run),
    ("fanout", fanout::run),
    ("many-conns", many_conns::run),
    ("contained", contained::run),
];

/// Pins the calling thread to `cpu` (best effort: a machine with one CPU
/// has nothing to choose).
pub fn pin_thread(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// Runs `f` with the calling thread pinned to `cpu`, and unpins it after,
/// whatever `f` returns.
pub fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> T) -> T {
    pin_thread(cpu);
    let result = f();
    unpin_thread();
    result
}

/// Runs `f` with the calling thread at a higher scheduling priority
/// (nice -10, when allowed: root), then back at its own.
///
/// For the `contained` figures: a quiet domain has its own vCPU, so its
/// next request is sent as soon as its reply arrives. Sharing the daemon's
/// CPU at equal priority instead, the quiet client woken by its reply
/// waits for the busy daemon's scheduler slice (hundreds of microseconds
/// under EEVDF), and the figure measured the kernel's scheduler rather
/// than the daemon's turns. The daemon's own CPU is still the one shared,
/// so what is measured is the daemon's work between the quiet requests.
pub fn as_quiet_domain<T>(f: impl FnOnce() -> T) -> T {
    let before = rustix::process::getpriority_process(None).unwrap_or(0);
    let raised = rustix::process::setpriority_process(None, -10).is_ok();
    let result = f();
    if raised {
        let _ = rustix::process::setpriority_process(None, before);
    }
    result
}

/// Unpins the calling thread.
pub fn unpin_thread() {
    let mut set = rustix::thread::CpuSet::new();
    for cpu in 0..rustix::thread::CpuSet::MAX_CPU.min(1024) {
        set.set(cpu);
    }
    let _ = rustix::thread::sched_setaffinity(None, &set);
}
