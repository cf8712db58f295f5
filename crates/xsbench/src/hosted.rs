//! Hosted mode (ours only: the references cannot serve hosted domains):
//! the READ round trip over a guest's shared-memory ring beside the
//! machine's eventfd + shared-memory floor, the cost of creating and
//! introducing N domains, a quiet client's latency while a guest
//! attacks (`hosted_attacks`), and the device layer's figures
//! (`hosted_devices`: a device ring's round trip, attaching devices).
//!
//! The whole host (hypervisor, xenstored, guests) runs on CPU 0, as the
//! single-client latencies do, so a round trip is two switches on one
//! core.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rustix::event::{eventfd, EventfdFlags};
use xenstore_wire::Op;
use xsim::{host, DomainSpec, StateDir, Toolstack};

use crate::conn::Conn;
use crate::hosted_devices;
use crate::progress::{self, Counter};
use crate::results::{Results, OURS};
use crate::stats::{micros, time_each};
use crate::workloads::latency::MACHINE;
use crate::workloads::{on_cpu, pin_thread, Config};

/// The group the figures go in.
pub const GROUP: &str = "Hosted domains";

/// Domain counts for create + introduce.
pub fn domain_counts(cfg: Config) -> Vec<usize> {
    if cfg.quick {
        vec![2, 10]
    } else {
        vec![10, 100, 1000]
    }
}

/// Where xsim's programs are: beside this binary.
pub(crate) fn programs() -> Result<(host::Programs, PathBuf)> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("binary directory")?;
    let programs = host::Programs { xsim: dir.join("xsim"), xenstored: crate::daemons::our_xenstored()? };
    let guest = dir.join("xsim-guest");
    for p in [&programs.xsim, &guest] {
        if !p.is_file() {
            bail!("{} missing: build it with `cargo build --release --bins`", p.display());
        }
    }
    Ok((programs, guest))
}

/// Runs the hosted figures `reps` times.
pub fn run(dir: &Path, cfg: Config, reps: usize, res: &mut Results) -> Result<()> {
    let (programs, guest) = programs()?;
    let state = StateDir::at(dir.join("xsim"));
    // Children inherit the affinity: the whole host lives on CPU 0.
    let (result, down) = on_cpu(0, || {
        let result = host::up(&state, &programs).and_then(|()| measure(&state, &guest, cfg, reps, res));
        (result, host::down(&state))
    });
    result?;
    down.map(|_| ())
}

fn measure(state: &StateDir, guest: &Path, cfg: Config, reps: usize, res: &mut Results) -> Result<()> {
    let iters = cfg.n(20_000, 300);
    let mut ts = Toolstack::connect(state)?;
    let mut sock = Conn::connect(&state.xenstored_socket())?;
    sock.call_ok(Op::Write, 0, &[b"/bench\0", b"0123456789abcdef"])?;
    for rep in 0..reps {
        progress::step(format_args!("hosted: round trips, repetition {} of {reps}", rep + 1));
        let (evt50, _) = eventfd_floor(iters)?;
        res.add(GROUP, "floor: eventfd + shared memory ping-pong p50", "µs", false, MACHINE, evt50);
        let (sock50, _) = time_each(iters / 10, iters, || {
            sock.call_ok(Op::Read, 0, &[b"/bench\0"])?;
            Ok(())
        })?;
        res.add(GROUP, "READ over the Unix socket p50", "µs", false, OURS, sock50);
        res.add(GROUP, "READ over a guest's ring p50", "µs", false, OURS, ring_read(&mut ts, state, guest, iters)?);
        progress::step(format_args!("hosted: a guest attacks, repetition {} of {reps}", rep + 1));
        crate::hosted_attacks::measure(&mut ts, state, guest, &mut sock, cfg, res)?;
        progress::step(format_args!("hosted: device ring round trips, repetition {} of {reps}", rep + 1));
        hosted_devices::ring(iters, res)?;
    }
    for n in hosted_devices::device_counts(cfg) {
        for rep in 0..reps {
            progress::step(format_args!("hosted: {n} devices attached, repetition {} of {reps}", rep + 1));
            let per = hosted_devices::attach(&mut ts, state, guest, n)?;
            res.add(hosted_devices::ATTACH_GROUP, &format!("attach {n} in a row: per device"), "µs", false, OURS, per);
        }
    }
    for n in domain_counts(cfg) {
        for rep in 0..reps {
            progress::step(format_args!("hosted: {n} domains created and destroyed, repetition {} of {reps}", rep + 1));
            let (create, destroy) = create_introduce(&mut ts, n)?;
            res.add(GROUP, &format!("create + introduce, {n} domains: per domain"), "µs", false, OURS, create);
            res.add(GROUP, &format!("destroy + release, {n} domains: per domain"), "µs", false, OURS, destroy);
        }
    }
    Ok(())
}

/// Two threads ping-pong a counter in shared memory, waking each other
/// through eventfds: what a ring round trip costs at least.
pub fn eventfd_floor(iters: usize) -> Result<(f64, f64)> {
    let to_b = Arc::new(eventfd(0, EventfdFlags::empty())?);
    let to_a = Arc::new(eventfd(0, EventfdFlags::empty())?);
    let shared = Arc::new(AtomicU64::new(0));
    let (tb, ta, sh) = (to_b.clone(), to_a.clone(), shared.clone());
    let total = iters + iters / 10;
    let echo = std::thread::spawn(move || -> rustix::io::Result<()> {
        pin_thread(0);
        let mut buf = [0u8; 8];
        for _ in 0..total {
            rustix::io::read(&*tb, &mut buf)?;
            sh.fetch_add(1, Ordering::AcqRel);
            rustix::io::write(&*ta, &1u64.to_ne_bytes())?;
        }
        Ok(())
    });
    let mut buf = [0u8; 8];
    let result = time_each(iters / 10, iters, || {
        let before = shared.load(Ordering::Acquire);
        rustix::io::write(&*to_b, &1u64.to_ne_bytes())?;
        rustix::io::read(&*to_a, &mut buf)?;
        ensure!(shared.load(Ordering::Acquire) == before + 1, "the echo thread did not count");
        Ok(())
    });
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    result
}

/// Median READ round trip of a guest over its ring (`xsim-guest
/// bench-read`, one round), in microseconds.
fn ring_read(ts: &mut Toolstack, state: &StateDir, guest: &Path, iters: usize) -> Result<f64> {
    let spec = DomainSpec {
        name: "bench-read".into(),
        program: vec![guest.to_string_lossy().into_owned(), "bench-read".into(), "1".into(), iters.to_string()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let domid = ts.create(&spec)?.domid;
    let finished = ts.wait_shutdown(domid, Duration::from_secs(300))?;
    let console = std::fs::read_to_string(state.console(domid)).unwrap_or_default();
    ts.destroy(domid)?;
    ensure!(finished.is_some(), "the bench guest did not finish:\n{console}");
    let line =
        console.lines().find_map(|l| l.strip_prefix("round ")).with_context(|| format!("no result in\n{console}"))?;
    let ns: f64 = line.split_whitespace().next().context("round median")?.parse()?;
    Ok(ns / 1000.0)
}

/// Creates and introduces `n` domains one after another (each a paused
/// process), then destroys them; per-domain microseconds of each phase.
fn create_introduce(ts: &mut Toolstack, n: usize) -> Result<(f64, f64)> {
    let mut domids = Vec::with_capacity(n);
    let mut counter = Counter::new("created", n, "domains");
    let began = Instant::now();
    for i in 0..n {
        counter.update(i);
        let spec = DomainSpec {
            name: format!("idle{i}"),
            program: vec!["/bin/sleep".into(), "3600".into()],
            env: Vec::new(),
            paused: true,
            netns: false,
            fuse: false,
        };
        domids.push(ts.create(&spec).with_context(|| format!("creating domain {i} of {n}"))?.domid);
    }
    let create = micros(began.elapsed());
    counter.finish(n);
    let began = Instant::now();
    for d in domids {
        ts.destroy(d)?;
    }
    let destroy = micros(began.elapsed());
    // Counts are small.
    #[allow(clippy::cast_precision_loss)]
    Ok((create / n as f64, destroy / n as f64))
}
