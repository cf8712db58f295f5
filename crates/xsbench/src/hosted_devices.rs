//! Device-layer figures, in the hosted phase:
//!
//! - **Device ring round trip** (group [`RING_GROUP`]): one request and
//!   its response through xen-ioring's `FrontRing`/`BackRing` over one
//!   shared 4 KiB page between two threads, each sleeping on an eventfd
//!   (the hosted event channel's primitive) whenever its final check says
//!   so, and woken only when the ring's event indices ask for a notify.
//!   Beside it, in the same run and on the same CPU, the eventfd +
//!   shared-memory ping-pong floor of the hosted phase: what two wake-ups
//!   cost with no ring at all. The difference is the ring's own cost
//!   (copies, index checks, fences).
//! - **Device attach** (group [`ATTACH_GROUP`]): `xsim attach` as a
//!   library call, N devices one after another to one running guest with
//!   the null backend of `xsim::devices::null_driver` serving dom0's side,
//!   each attach waiting for the backend's InitWait as `xsim attach` does;
//!   per device, for N = 1, 100 and 1,000. A cost that grows with N is a
//!   per-device walk somewhere: the toolstack's id choice and the backend
//!   bus's scan each listed every device per attach until they stopped
//!   (docs/benchmarks.md, "Device layer").
//!
//! Block throughput through a `blkif` frontend and backend on hosted
//! rings has a phase of its own, `--only block` (`hosted_block`), with a
//! host of its own: it needs `xen-blkback` in dom0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fd::OwnedFd;
use xen_ioring::{BackRing, FrontRing};
use xen_shared_mem::OwnedMem;
use xsim::devices::null_driver::BackendThread;
use xsim::devices::{self, AttachSpec};
use xsim::{DomainSpec, StateDir, Toolstack};

use crate::progress::Counter;
use crate::results::{Results, OURS};
use crate::stats::{micros, time_each};
use crate::workloads::latency::MACHINE;
use crate::workloads::{pin_thread, Config};

/// The ring figures' group.
pub const RING_GROUP: &str = "Device ring round trip";
/// The attach figures' group.
pub const ATTACH_GROUP: &str = "Device attach";

/// How many devices are attached in a row.
pub fn device_counts(cfg: Config) -> Vec<usize> {
    if cfg.quick {
        vec![1, 10]
    } else {
        vec![1, 100, 1000]
    }
}

/// The ring round trip beside the floor, once.
pub fn ring(iters: usize, res: &mut Results) -> Result<()> {
    let (floor50, floor99) = crate::hosted::eventfd_floor(iters)?;
    res.add(RING_GROUP, "floor: eventfd + shared memory ping-pong p50", "µs", false, MACHINE, floor50);
    res.add(RING_GROUP, "floor: eventfd + shared memory ping-pong p99", "µs", false, MACHINE, floor99);
    let (ring50, ring99) = ring_round_trip(iters)?;
    res.add(RING_GROUP, "FrontRing/BackRing request + response, eventfd wake-ups p50", "µs", false, OURS, ring50);
    res.add(RING_GROUP, "FrontRing/BackRing request + response, eventfd wake-ups p99", "µs", false, OURS, ring99);
    Ok(())
}

fn wake(fd: &OwnedFd) -> Result<()> {
    rustix::io::write(fd, &1u64.to_ne_bytes())?;
    Ok(())
}

fn sleep_on(fd: &OwnedFd) -> Result<()> {
    let mut buf = [0u8; 8];
    rustix::io::read(fd, &mut buf)?;
    Ok(())
}

/// One request in flight at a time, `iters` timed after a tenth as many
/// untimed; median and p99 in microseconds.
fn ring_round_trip(iters: usize) -> Result<(f64, f64)> {
    let page = OwnedMem::pages(1);
    let mut front = FrontRing::<u64, u64>::new(page.mem())?;
    let to_back = eventfd(0, EventfdFlags::empty())?;
    let to_front = eventfd(0, EventfdFlags::empty())?;
    let stop = AtomicBool::new(false);
    let warmup = iters / 10;
    std::thread::scope(|s| {
        let back = s.spawn(|| -> Result<()> {
            pin_thread(0);
            let mut back = BackRing::<u64, u64>::attach(page.mem(), 0)?;
            while !stop.load(Ordering::Acquire) {
                sleep_on(&to_back)?;
                loop {
                    while let Some(req) = back.take_request()? {
                        back.push_response(&req.wrapping_add(1))?;
                    }
                    if back.publish_responses() {
                        wake(&to_front)?;
                    }
                    if !back.final_check_for_requests()? {
                        break;
                    }
                }
            }
            Ok(())
        });
        let mut next = 0u64;
        let timed = time_each(warmup, iters, || {
            next += 1;
            front.push_request(&next)?;
            if front.publish_requests() {
                wake(&to_back)?;
            }
            loop {
                if let Some(rsp) = front.take_response()? {
                    ensure!(rsp == next + 1, "response {rsp} to request {next}");
                    return Ok(());
                }
                if !front.final_check_for_responses()? {
                    sleep_on(&to_front)?;
                }
            }
        });
        stop.store(true, Ordering::Release);
        wake(&to_back)?;
        back.join().map_err(|_| anyhow::anyhow!("the back thread panicked"))??;
        timed
    })
}

/// Per-device microseconds of attaching `n` devices to one guest.
pub fn attach(ts: &mut Toolstack, state: &StateDir, guest: &std::path::Path, n: usize) -> Result<f64> {
    let client = xenstore::Client::connect(state.xenstored_socket()).context("the backend's connection")?;
    let backend = BackendThread::start(client, 0, "vif");
    let spec = DomainSpec {
        name: format!("devices-{n}"),
        program: vec![guest.to_string_lossy().into_owned(), "demo".into()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let domid = ts.create(&spec)?.domid;
    let mut counter = Counter::new("attached", n, "devices");
    let began = Instant::now();
    let attached = (0..n).try_for_each(|i| {
        counter.update(i);
        let spec = AttachSpec { timeout: Duration::from_secs(30), ..AttachSpec::new(domid, "vif") };
        devices::attach(ts, &spec).map(drop).with_context(|| format!("attaching device {i} of {n}"))
    });
    let elapsed = began.elapsed();
    counter.finish(n);
    // Destroy removes the devices with the domain.
    let destroyed = ts.destroy(domid);
    attached?;
    destroyed?;
    backend.stop().context("the null backend")?;
    // Counts are small.
    #[allow(clippy::cast_precision_loss)]
    Ok(micros(elapsed) / n as f64)
}
