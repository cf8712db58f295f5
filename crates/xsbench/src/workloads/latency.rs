//! Single-client READ and WRITE round trips, beside the machine's floor: a
//! bare AF_UNIX 16-byte request/reply between two threads.
//!
//! The client runs on the daemon's CPU, so a round trip is two context
//! switches on one core, the same as the floor's; across cores this
//! machine adds tens of microseconds of wake-up latency that would drown
//! the daemons' differences.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use anyhow::Result;
use xenstore_wire::Op;

use super::{on_cpu, pin_thread, Config, Target};
use crate::conn::{z, Conn};
use crate::results::Results;
use crate::stats::time_each;

/// The group the figures go in.
pub const GROUP: &str = "Single client round trip";

/// Measures READ and WRITE round trips on one connection.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    on_cpu(0, || measure(t, cfg, res))
}

fn measure(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let iters = cfg.n(20_000, 300);
    let mut c = Conn::connect(t.socket)?;
    let path = z("/bench/lat");
    c.call_ok(Op::Write, 0, &[b"/bench/lat\0", b"0123456789abcdef"])?;
    let (read50, read99) = time_each(iters / 10, iters, || {
        let m = c.call(Op::Read, 0, &[&path])?;
        anyhow::ensure!(m.payload == b"0123456789abcdef", "READ returned {:?}", m.payload);
        Ok(())
    })?;
    let (write50, write99) = time_each(iters / 10, iters, || {
        c.call_ok(Op::Write, 0, &[b"/bench/lat\0", b"0123456789abcdef"])?;
        Ok(())
    })?;
    c.call_ok(Op::Rm, 0, &[b"/bench/lat\0"])?;
    res.add(GROUP, "READ p50", "µs", false, t.name, read50);
    res.add(GROUP, "READ p99", "µs", false, t.name, read99);
    res.add(GROUP, "WRITE p50", "µs", false, t.name, write50);
    res.add(GROUP, "WRITE p99", "µs", false, t.name, write99);
    Ok(())
}

/// The name under which machine floors are recorded.
pub const MACHINE: &str = "machine";

/// Measures the AF_UNIX request/reply floor on CPU 0.
pub fn floor(cfg: Config, res: &mut Results) -> Result<()> {
    let iters = cfg.n(20_000, 300);
    let (mut a, mut b) = UnixStream::pair()?;
    let total = iters + iters / 10;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        pin_thread(0);
        let mut buf = [0u8; 16];
        for _ in 0..total {
            b.read_exact(&mut buf)?;
            b.write_all(&buf)?;
        }
        Ok(())
    });
    let mut buf = [0u8; 16];
    let timed = on_cpu(0, || {
        time_each(iters / 10, iters, || {
            a.write_all(&[7u8; 16])?;
            a.read_exact(&mut buf)?;
            Ok(())
        })
    });
    let (p50, p99) = timed?;
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    res.add(GROUP, "floor: AF_UNIX request/reply p50", "µs", false, MACHINE, p50);
    res.add(GROUP, "floor: AF_UNIX request/reply p99", "µs", false, MACHINE, p99);
    Ok(())
}
