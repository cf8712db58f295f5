//! `xsim-guest xensblk-bench SHARE read|write SIZE SECONDS`: throughput
//! of a xensblk disk through its client API (`xen_share::blk::Disk`),
//! one operation in flight (the client is synchronous), on the share
//! SHARE this domain is a member of. Offsets are sequential and wrap
//! around the disk; writes are never flushed. Prints the same line as
//! `blkfront bench`, for `xs-bench` to put the two side by side:
//!
//! ```text
//! bench op=read size=4096 depth=1 ops=123456 bytes=505675776 seconds=3.000 p50_us=31.2
//! ```
//!
//! then `PASS xensblk-bench`. Pins itself to CPU 1 when there is one (the
//! guest's own vCPU, as `blkfront --cpu 1`).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xen_platform::hosted::Host;
use xen_platform::share::Shares;
use xen_share::blk::{Disk, SECTOR};

/// Runs the benchmark `args` describe.
pub fn run(args: &[String]) -> Result<()> {
    let [share, op, size, seconds] = args else {
        bail!("usage: xsim-guest xensblk-bench SHARE read|write SIZE SECONDS")
    };
    let share: u32 = share.parse().context("SHARE")?;
    let write = match op.as_str() {
        "read" => false,
        "write" => true,
        other => bail!("unknown operation {other:?} (read, write)"),
    };
    let size: u64 = size.parse().context("SIZE")?;
    ensure!(size > 0 && size % SECTOR == 0, "SIZE must be whole sectors");
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    let mut set = rustix::thread::CpuSet::new();
    set.set(1);
    let _ = rustix::thread::sched_setaffinity(None, &set);

    let (host, _) = Host::from_guest_env().context("not a hosted guest")?;
    let mut disk = Disk::open(host.shares().attach(share)?, Duration::from_secs(10))?;
    let slots = disk.len() / size;
    ensure!(slots > 0, "the disk is smaller than one operation");
    let mut buf = vec![0xa5_u8; usize::try_from(size)?];
    let mut latencies = Vec::new();
    let started = Instant::now();
    let window = Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    while started.elapsed() < window {
        let offset = (n % slots) * size;
        let t = Instant::now();
        if write {
            disk.write_at(&buf, offset)?;
        } else {
            disk.read_at(&mut buf, offset)?;
        }
        latencies.push(t.elapsed());
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
    println!(
        "bench op={op} size={size} depth=1 ops={n} bytes={} seconds={elapsed:.3} p50_us={:.1}",
        n * size,
        p50.as_secs_f64() * 1e6
    );
    println!("PASS xensblk-bench");
    Ok(())
}
