//! Block device throughput (group [`GROUP`], `--only block`): a hosted
//! guest's `blkfront` reading and writing through dom0's `xen-blkback`,
//! beside the same I/O done straight on the backing file by this
//! process: the limit, what the backend's own `pread`/`pwrite` could do
//! with no ring, grants or domains in between.
//!
//! For each of read and write × 4 KiB and 64 KiB × queue depth 1 and 32,
//! and in each repetition, ours then the limit, back to back:
//!
//! - **Ours**: a new guest (created paused, the vbd attached with
//!   [`xsim::devices::attach()`] as `xsim attach DOMAIN vbd params=IMAGE
//!   mode=w` does, then unpaused) runs `blkfront --cpu 1 DEVID bench OP
//!   SIZE DEPTH SECONDS` and prints the operations it completed in the
//!   window; the guest is destroyed after.
//! - **The limit**: DEPTH threads (one at depth 1) `pread` or `pwrite`
//!   SIZE bytes each, for the same seconds, from a shared counter.
//!
//! Both use sequential offsets over the same region, the whole image,
//! wrapping around (operation `n` at `(n mod slots) * SIZE`), and both go
//! through the page cache: the backend opens the image without
//! `O_DIRECT` and so does the limit. The image is written in full and
//! synced before the first case, so reads find every page cached and
//! writes replace cached pages; writes are never flushed by either.
//!
//! Placement, as in the rest of the hosted phase: the host (hypervisor,
//! xenstored) and `xen-blkback` on CPU 0, the guest pinned to CPU 1 (its
//! own vCPU). The limit's threads may use both CPUs, as ours does
//! (frontend on one, backend on the other).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xsim::devices::{self, AttachSpec};
use xsim::{host, DomainSpec, StateDir, Toolstack};

use crate::hosted_block_share::{beside_blkif, ShareSide};
use crate::progress;
use crate::results::{Results, OURS};
use crate::workloads::latency::MACHINE;
use crate::workloads::{on_cpu, unpin_thread, Config};

/// The figures' group.
pub const GROUP: &str = "Block device throughput";

/// The guest's disk: `xvda`, as libxl numbers it.
const DEVID: u32 = 51712;

/// One measured combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Writes, or reads.
    pub write: bool,
    /// Bytes per operation.
    pub size: u64,
    /// Operations in flight.
    pub depth: usize,
}

impl Case {
    /// `read` or `write`.
    pub fn op(self) -> &'static str {
        if self.write {
            "write"
        } else {
            "read"
        }
    }

    /// `read 4 KiB QD1`: the start of its figures' names.
    pub fn label(self) -> String {
        format!("{} {} KiB QD{}", self.op(), self.size / 1024, self.depth)
    }
}

/// Read and write × 4 KiB and 64 KiB × depth 1 and 32, as the issue asks.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for write in [false, true] {
        for size in [4096, 65536] {
            for depth in [1, 32] {
                cases.push(Case { write, size, depth });
            }
        }
    }
    cases
}

/// How big the image is and how long each side of a case runs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    image_bytes: u64,
    seconds: f64,
}

fn plan(cfg: Config) -> Plan {
    if cfg.quick {
        Plan { image_bytes: 16 << 20, seconds: 0.3 }
    } else {
        Plan { image_bytes: 256 << 20, seconds: 3.0 }
    }
}

/// What one side of a case did in its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Operations completed.
    pub ops: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The window.
    pub seconds: f64,
    /// The median operation's time in microseconds, when the side
    /// measured it (the guests do; the limit does not).
    pub p50_us: Option<f64>,
}

impl Measured {
    // Counts of operations and bytes in a few seconds: far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn iops(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// A program built beside this one.
pub fn beside(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("binary directory")?.join(name);
    if !path.is_file() {
        bail!("{} missing: build it with `cargo build --release --bins`", path.display());
    }
    Ok(path)
}

/// Runs every case `reps` times on a host of its own.
pub fn run(dir: &Path, cfg: Config, reps: usize, res: &mut Results) -> Result<()> {
    let (programs, _) = crate::hosted::programs()?;
    let blkback = beside("xen-blkback")?;
    let blkfront = beside("blkfront")?;
    let plan = plan(cfg);
    let image = dir.join("block.img");
    progress::step(format_args!("block: writing a {} MiB image", plan.image_bytes >> 20));
    fill(&image, plan.image_bytes)?;
    let state = StateDir::at(dir.join("xsim-block"));
    let share_side = ShareSide::find(&state, &image)?;
    // Children inherit the affinity: the host and the backend live on CPU 0.
    let (result, down) = on_cpu(0, || {
        let result = host::up(&state, &programs).and_then(|()| {
            let backend = Backend::start(&blkback, &state, &dir.join("blkback.log"))?;
            let measured = measure(&state, &blkfront, &share_side, &image, plan, reps, res);
            backend.stop();
            measured
        });
        (result, host::down(&state))
    });
    let _ = std::fs::remove_file(&image);
    result?;
    down.map(|_| ())
}

fn measure(
    state: &StateDir,
    blkfront: &Path,
    share_side: &ShareSide,
    image: &Path,
    plan: Plan,
    reps: usize,
    res: &mut Results,
) -> Result<()> {
    let mut ts = Toolstack::connect(state)?;
    for rep in 0..reps {
        for case in cases() {
            progress::step(format_args!("block: {}, repetition {} of {reps}", case.label(), rep + 1));
            let ours = through_guest(&mut ts, state, blkfront, image, case, plan.seconds)
                .with_context(|| format!("{} through blkfront", case.label()))?;
            let limit = on_the_file(image, plan.image_bytes, case, plan.seconds)
                .with_context(|| format!("{} on the file", case.label()))?;
            record(res, case, ours, limit);
            // Xen Share's block device beside it, one operation in flight
            // (its client is synchronous).
            if case.depth == 1 {
                beside_blkif(&mut ts, share_side, case, plan.seconds, ours, res)?;
            }
        }
        progress::step(format_args!("block: setup of each, repetition {} of {reps}", rep + 1));
        crate::hosted_block_share::setup(&mut ts, share_side, blkfront, res)?;
    }
    Ok(())
}

/// Adds one repetition of a case: MB/s and IOPS of both sides (the limit
/// in the `machine` column), and ours over the limit.
fn record(res: &mut Results, case: Case, ours: Measured, limit: Measured) {
    let label = case.label();
    for (daemon, m) in [(OURS, ours), (MACHINE, limit)] {
        res.add(GROUP, &format!("{label}: MB/s"), "MB/s", true, daemon, m.mb_per_s());
        res.add(GROUP, &format!("{label}: IOPS"), "ops/s", true, daemon, m.iops());
    }
    res.add(GROUP, &format!("{label}: ours / limit"), "×", true, OURS, ours.mb_per_s() / limit.mb_per_s());
}

/// Writes `bytes` of non-zero data and syncs, so that every block is
/// allocated, cached, and clean before the first case.
fn fill(path: &Path, bytes: u64) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0xa5_u8; 1 << 20];
    for _ in 0..bytes / chunk.len() as u64 {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(())
}

/// `xen-blkback` serving dom0's `backend/vbd`, killed when stopped.
struct Backend(Child);

impl Backend {
    fn start(program: &Path, state: &StateDir, log: &Path) -> Result<Backend> {
        let child = Command::new(program)
            .arg("--hypervisor")
            .arg(state.hypervisor_socket())
            .arg("--socket")
            .arg(state.xenstored_socket())
            .stderr(File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Backend(child))
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One case through a new guest's `blkfront`.
fn through_guest(
    ts: &mut Toolstack,
    state: &StateDir,
    blkfront: &Path,
    image: &Path,
    case: Case,
    seconds: f64,
) -> Result<Measured> {
    let program = [
        blkfront.to_string_lossy().into_owned(),
        "--timeout".into(),
        "30".into(),
        "--cpu".into(),
        "1".into(),
        DEVID.to_string(),
        "bench".into(),
        case.op().into(),
        case.size.to_string(),
        case.depth.to_string(),
        seconds.to_string(),
    ];
    let spec = DomainSpec {
        name: format!("blk-{}-{}k-qd{}", case.op(), case.size / 1024, case.depth),
        program: program.to_vec(),
        env: Vec::new(),
        paused: true,
        netns: false,
        fuse: false,
    };
    let domid = ts.create(&spec)?.domid;
    let keys = [
        ("params", image.display().to_string()),
        ("mode", "w".to_owned()),
        ("type", "phy".to_owned()),
        ("dev", "xvda".to_owned()),
        ("device-type", "disk".to_owned()),
    ];
    let attach = AttachSpec {
        devid: Some(DEVID),
        backend_keys: keys.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        timeout: Duration::from_secs(30),
        ..AttachSpec::new(domid, "vbd")
    };
    let ran = devices::attach(ts, &attach)
        .and_then(|_| ts.unpause(domid))
        .and_then(|()| ts.wait_shutdown(domid, Duration::from_secs_f64(seconds) + Duration::from_secs(60)));
    let console = std::fs::read_to_string(state.console(domid)).unwrap_or_default();
    // Destroy removes the device with the domain; the backend lets it go.
    let destroyed = ts.destroy(domid);
    ensure!(ran?.is_some(), "the guest did not finish:\n{console}");
    destroyed?;
    ensure!(console.contains("PASS blkfront"), "blkfront failed:\n{console}");
    parse_line(&console).with_context(|| format!("no bench line in\n{console}"))
}

/// The `bench op=... ops=N bytes=N seconds=S ...` line of `blkfront`.
pub fn parse_line(console: &str) -> Option<Measured> {
    let line = console.lines().find(|l| l.starts_with("bench op="))?;
    let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='));
    Some(Measured {
        ops: field("ops")?.parse().ok()?,
        bytes: field("bytes")?.parse().ok()?,
        seconds: field("seconds")?.parse().ok()?,
        p50_us: field("p50_us").and_then(|v| v.parse().ok()),
    })
}

/// One case straight on the file: `depth` threads, each `pread`ing or
/// `pwrite`ing `size` bytes at the next offset until the window closes.
fn on_the_file(image: &Path, region: u64, case: Case, seconds: f64) -> Result<Measured> {
    // No O_DIRECT: through the page cache, as the backend.
    let file = OpenOptions::new().read(true).write(true).open(image)?;
    let slots = region / case.size;
    ensure!(slots > 0, "the image is smaller than one operation");
    let size = usize::try_from(case.size)?;
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let ops = std::thread::scope(|s| {
        let workers: Vec<_> = (0..case.depth)
            .map(|_| {
                s.spawn(|| -> std::io::Result<u64> {
                    unpin_thread();
                    let mut buf = vec![0x5a_u8; size];
                    let mut done = 0;
                    while Instant::now() < deadline {
                        let offset = (next.fetch_add(1, Ordering::Relaxed) % slots) * case.size;
                        if case.write {
                            file.write_all_at(&buf, offset)?;
                        } else {
                            file.read_exact_at(&mut buf, offset)?;
                        }
                        if Instant::now() < deadline {
                            done += 1;
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        workers.into_iter().try_fold(0, |sum, w| {
            let done = w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))??;
            anyhow::Ok(sum + done)
        })
    })?;
    Ok(Measured { ops, bytes: ops * case.size, seconds, p50_us: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_cover_both_ops_sizes_and_depths_once() {
        let labels: Vec<String> = cases().into_iter().map(Case::label).collect();
        assert_eq!(
            labels,
            [
                "read 4 KiB QD1",
                "read 4 KiB QD32",
                "read 64 KiB QD1",
                "read 64 KiB QD32",
                "write 4 KiB QD1",
                "write 4 KiB QD32",
                "write 64 KiB QD1",
                "write 64 KiB QD32",
            ]
        );
    }

    #[test]
    fn parse_line_reads_the_counts_among_other_output() {
        let console = "blkfront: resetting\nbench op=read size=4096 depth=1 ops=25 bytes=102400 seconds=0.500 \
                       p50_us=12.0\nok Bench\nPASS blkfront\n";
        let m = parse_line(console).unwrap();
        assert_eq!(m, Measured { ops: 25, bytes: 102_400, seconds: 0.5, p50_us: Some(12.0) });
        assert!((m.mb_per_s() - 0.2048).abs() < 1e-9);
        assert!((m.iops() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn parse_line_without_a_bench_line_is_none() {
        assert_eq!(parse_line("FAIL blkfront: device 51712 did not connect\n"), None);
    }

    #[test]
    fn on_the_file_reads_whole_operations() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        fill(&image, 1 << 20).unwrap();
        let case = Case { write: false, size: 4096, depth: 2 };
        let m = on_the_file(&image, 1 << 20, case, 0.05).unwrap();
        assert!(m.ops > 0 && m.bytes == m.ops * 4096, "{m:?}");
    }
}
