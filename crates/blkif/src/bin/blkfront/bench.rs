//! `blkfront DEVID bench read|write SIZE DEPTH SECONDS`: throughput of
//! the block API with DEPTH operations of SIZE bytes in flight.
//!
//! Offsets are **sequential**: operation `n` covers bytes
//! `(n mod slots) * SIZE ..` of the disk, where `slots` is how many whole
//! operations fit, so the run wraps around the whole disk; with DEPTH in
//! flight, the next operation issued is always the next offset. An
//! operation is counted when its result is taken before SECONDS have
//! passed since the first was issued; those in flight then are drained
//! and not counted. Writes carry the same bytes each time and are never
//! flushed (the figure is the data path, as a limit measured with
//! `pwrite` on the image is). One line says the result, for a benchmark
//! to parse:
//!
//! ```text
//! bench op=read size=4096 depth=32 ops=123456 bytes=505675776 seconds=3.000 p50_us=310.2
//! ```
//!
//! `p50_us` is the median time from an operation's submission to its
//! result being taken.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use blkif::abi::SECTOR_SIZE;
use blkif::{Blkfront, Ticket};
use xenbus::SyncConn;

/// What a bench command asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// Writes, or reads.
    pub write: bool,
    /// Bytes per operation: whole sectors.
    pub size: u64,
    /// Operations in flight.
    pub depth: usize,
    /// How long operations are counted.
    pub seconds: f64,
}

impl Spec {
    /// Parses `read|write SIZE DEPTH SECONDS`.
    pub fn parse<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Spec> {
        let mut next = |what: &str| words.next().ok_or_else(|| anyhow!("bench: missing {what}"));
        let write = match next("read|write")? {
            "read" => false,
            "write" => true,
            other => bail!("bench: {other:?} is not read or write"),
        };
        let size: u64 = next("SIZE")?.parse().map_err(|_| anyhow!("bench: SIZE is not a number"))?;
        let depth: usize = next("DEPTH")?.parse().map_err(|_| anyhow!("bench: DEPTH is not a number"))?;
        let seconds: f64 = next("SECONDS")?.parse().map_err(|_| anyhow!("bench: SECONDS is not a number"))?;
        ensure!(size > 0 && size % SECTOR_SIZE == 0, "bench: SIZE must be whole 512-byte sectors");
        ensure!(depth > 0, "bench: DEPTH must be at least 1");
        ensure!(seconds.is_finite() && seconds > 0.0, "bench: SECONDS must be positive");
        Ok(Spec { write, size, depth, seconds })
    }
}

/// What a bench run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Operations completed in the window.
    pub ops: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The window.
    pub seconds: f64,
    /// Median submission-to-result time, in microseconds.
    pub p50_us: f64,
}

impl Outcome {
    /// The machine-readable line (see the module documentation).
    pub fn line(&self, spec: &Spec) -> String {
        format!(
            "bench op={} size={} depth={} ops={} bytes={} seconds={:.3} p50_us={:.1}",
            if spec.write { "write" } else { "read" },
            spec.size,
            spec.depth,
            self.ops,
            self.bytes,
            self.seconds,
            self.p50_us
        )
    }
}

/// Runs `spec` on connected device `devid` of `sectors` sectors. An
/// operation that fails, or no operation completing in `timeout`, ends
/// the run with an error.
pub fn run(
    front: &mut Blkfront<SyncConn>,
    devid: u32,
    sectors: u64,
    spec: &Spec,
    timeout: Duration,
    tick: Duration,
) -> Result<Outcome> {
    let per_op = spec.size / SECTOR_SIZE;
    let slots = sectors / per_op;
    ensure!(slots > 0, "bench: the disk ({sectors} sectors) is smaller than one operation");
    let data = vec![0x5a_u8; usize::try_from(spec.size)?];
    let mut issued = 0_u64;
    let mut submit = |front: &mut Blkfront<SyncConn>| -> Result<(Ticket, Instant)> {
        let sector = (issued % slots) * per_op;
        issued += 1;
        let ticket =
            if spec.write { front.write(devid, sector, data.clone()) } else { front.read(devid, sector, per_op) };
        Ok((ticket.map_err(|e| anyhow!("submitting: {e}"))?, Instant::now()))
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.seconds);
    let mut in_flight = Vec::with_capacity(spec.depth);
    for _ in 0..spec.depth {
        in_flight.push(submit(front)?);
    }
    let mut latencies_ns: Vec<u64> = Vec::new();
    let mut last_done = Instant::now();
    while !in_flight.is_empty() {
        let work = front.step()?;
        let now = Instant::now();
        let mut done = 0;
        let mut i = 0;
        while i < in_flight.len() {
            let (ticket, submitted) = in_flight[i];
            let Some(result) = front.take(devid, ticket) else {
                i += 1;
                continue;
            };
            let bytes = result.map_err(|e| anyhow!("an operation failed: {e}"))?;
            ensure!(spec.write || bytes.len() as u64 == spec.size, "a read returned {} bytes", bytes.len());
            in_flight.swap_remove(i);
            done += 1;
            if now < deadline {
                latencies_ns.push(u64::try_from((now - submitted).as_nanos()).unwrap_or(u64::MAX));
                if in_flight.len() < spec.depth {
                    in_flight.push(submit(front)?);
                }
            }
        }
        if done > 0 {
            last_done = now;
        } else if now - last_done > timeout {
            bail!("bench: no operation completed in {timeout:?}");
        }
        if done == 0 && work == 0 {
            let _ = front.wait(tick);
        }
    }
    let ops = latencies_ns.len() as u64;
    latencies_ns.sort_unstable();
    let p50_ns = latencies_ns.get(latencies_ns.len() / 2).copied().unwrap_or(0);
    // Nanoseconds of one operation: exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let p50_us = p50_ns as f64 / 1000.0;
    Ok(Outcome { ops, bytes: ops * spec.size, seconds: spec.seconds, p50_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Spec> {
        Spec::parse(s.split_whitespace())
    }

    #[test]
    fn parse_read_and_write_gives_the_spec() {
        assert_eq!(parse("read 4096 32 3").unwrap(), Spec { write: false, size: 4096, depth: 32, seconds: 3.0 });
        assert_eq!(parse("write 65536 1 0.5").unwrap(), Spec { write: true, size: 65536, depth: 1, seconds: 0.5 });
    }

    #[test]
    fn parse_partial_sector_or_zero_depth_is_refused() {
        assert!(parse("read 1000 1 1").is_err());
        assert!(parse("read 4096 0 1").is_err());
        assert!(parse("read 4096 1 0").is_err());
        assert!(parse("trim 4096 1 1").is_err());
        assert!(parse("read 4096 1").is_err());
    }

    #[test]
    fn line_names_every_field() {
        let spec = Spec { write: true, size: 4096, depth: 32, seconds: 3.0 };
        let outcome = Outcome { ops: 10, bytes: 40960, seconds: 3.0, p50_us: 12.34 };
        assert_eq!(
            outcome.line(&spec),
            "bench op=write size=4096 depth=32 ops=10 bytes=40960 seconds=3.000 p50_us=12.3"
        );
    }
}
