//! The same disk over Xen Share (xensblk) beside blkif, in the block
//! group's run: the comparison the Xen Share prototype was about.
//!
//! - **Throughput and latency**, the one-operation-in-flight cases (the
//!   xensblk client is synchronous): a new guest runs `xsim-guest
//!   xensblk-bench SHARE OP SIZE SECONDS` against dom0's `xensblk`
//!   serving the same image on a new share; MB/s, IOPS and the median
//!   operation's time beside blkfront's.
//! - **Setup**: from the toolstack's command to a guest driver that can
//!   do I/O, each through its command-line tool, as a user sets a disk
//!   up. blkif: `xsim attach DOMAIN vbd ...` (returns once the backend,
//!   already running, has taken the device), then the frontend's state
//!   seen `Connected` (4), the guest running `blkfront DEVID info`.
//!   xensblk: `vdevice --create block IMAGE 0 DOMAIN`, which starts dom0's
//!   server (one per disk: the prototype's design), waits until it has
//!   described the disk, then adds the device to the guest's vdevice page
//!   and returns once the guest's bus acknowledged it with its driver
//!   started (`xsim-guest xensblk --no-export`: the disk opened, not
//!   exported). Both guests are running and waiting before the clock
//!   starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xen_platform::share::Shares;
use xenstore::Store as _;
use xsim::{DomainSpec, StateDir, Toolstack};

use crate::hosted_block::{beside, parse_line, Case, Measured, GROUP};
use crate::results::{Results, OURS};

/// The programs of the Xen Share side and the two tools, and the host
/// and image they work on.
pub struct ShareSide {
    /// The host's state directory.
    state: StateDir,
    /// The disk image both sides serve.
    image: PathBuf,
    /// `xsim-guest` (its `xensblk-bench` and `xensblk`).
    guest: PathBuf,
    /// dom0's `xensblk` server.
    server: PathBuf,
    /// Xen Share's device tool.
    vdevice: PathBuf,
    /// The hosted toolstack (`xsim attach`).
    xsim: PathBuf,
}

impl ShareSide {
    /// The programs built beside this one, for the host at `state` and
    /// the disk `image`.
    pub fn find(state: &StateDir, image: &Path) -> Result<ShareSide> {
        Ok(ShareSide {
            state: state.clone(),
            image: image.to_owned(),
            guest: beside("xsim-guest")?,
            server: beside("xensblk")?,
            vdevice: beside("vdevice")?,
            xsim: beside("xsim")?,
        })
    }
}

/// The guests' disk id for blkif (`xvda`).
const DEVID: u32 = 51712;

/// Runs `case` over xensblk and records it beside blkif's `blkif`.
pub fn beside_blkif(
    ts: &mut Toolstack,
    side: &ShareSide,
    case: Case,
    seconds: f64,
    blkif: Measured,
    res: &mut Results,
) -> Result<()> {
    let shared = through_share(ts, side, case, seconds).with_context(|| format!("{} through xensblk", case.label()))?;
    let label = case.label();
    let name = |what: &str| format!("{label} over Xen Share (xensblk): {what}");
    res.add(GROUP, &name("MB/s"), "MB/s", true, OURS, shared.mb_per_s());
    res.add(GROUP, &name("IOPS"), "ops/s", true, OURS, shared.iops());
    res.add(GROUP, &format!("{label}: xensblk / blkif"), "×", true, OURS, shared.mb_per_s() / blkif.mb_per_s());
    if let (Some(blkif_p50), Some(shared_p50)) = (blkif.p50_us, shared.p50_us) {
        res.add(GROUP, &format!("{label}: median operation, blkif"), "µs", false, OURS, blkif_p50);
        res.add(GROUP, &name("median operation"), "µs", false, OURS, shared_p50);
    }
    Ok(())
}

/// One case through a new guest's xensblk client, against dom0's
/// `xensblk` serving the same image on a new share.
fn through_share(ts: &mut Toolstack, side: &ShareSide, case: Case, seconds: f64) -> Result<Measured> {
    let (state, image) = (&side.state, &side.image);
    let host = state.connect_hypervisor()?;
    let shares = host.shares();
    let share = shares.create(xen_share::blk::BLK_PAGES, &[0])?;
    let mut server = Command::new(&side.server)
        .arg("--state")
        .arg(state.root())
        .args(["--share", &share.to_string()])
        .arg(image)
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", side.server.display()))?;
    let program = vec![
        side.guest.to_string_lossy().into_owned(),
        "xensblk-bench".into(),
        share.to_string(),
        case.op().into(),
        case.size.to_string(),
        seconds.to_string(),
    ];
    let spec = DomainSpec {
        name: format!("xsb-{}-{}k", case.op(), case.size / 1024),
        program,
        env: Vec::new(),
        paused: true,
        netns: false,
        fuse: false,
    };
    let ran = ts.create(&spec).and_then(|new| {
        shares.add_member(share, new.domid)?;
        ts.unpause(new.domid)?;
        let finished = ts.wait_shutdown(new.domid, Duration::from_secs_f64(seconds) + Duration::from_secs(60));
        let console = std::fs::read_to_string(state.console(new.domid)).unwrap_or_default();
        let destroyed = ts.destroy(new.domid);
        ensure!(finished?.is_some(), "the guest did not finish:\n{console}");
        destroyed?;
        Ok(console)
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = shares.destroy(share);
    let console = ran?;
    ensure!(console.contains("PASS xensblk-bench"), "xensblk-bench failed:\n{console}");
    parse_line(&console).with_context(|| format!("no bench line in\n{console}"))
}

/// One repetition of each side's setup, recorded in milliseconds.
pub fn setup(ts: &mut Toolstack, side: &ShareSide, blkfront: &Path, res: &mut Results) -> Result<()> {
    let blkif = blkif_setup(ts, side, blkfront).context("blkif's setup")?;
    let shared = xensblk_setup(ts, side).context("xensblk's setup")?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    res.add(GROUP, "setup: blkif (xsim attach to frontend Connected)", "ms", false, OURS, ms(blkif));
    res.add(GROUP, "setup: xensblk (vdevice --create block to driver ok)", "ms", false, OURS, ms(shared));
    res.add(GROUP, "setup: xensblk / blkif", "×", false, OURS, ms(shared) / ms(blkif));
    Ok(())
}

/// Patience for a step of the setups on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running guest, destroyed when dropped.
struct Guest<'a> {
    ts: &'a mut Toolstack,
    domid: u16,
}

impl<'a> Guest<'a> {
    fn start(ts: &'a mut Toolstack, name: &str, program: Vec<String>) -> Result<Guest<'a>> {
        let spec =
            DomainSpec { name: name.to_owned(), program, env: Vec::new(), paused: false, netns: false, fuse: false };
        let domid = ts.create(&spec)?.domid;
        Ok(Guest { ts, domid })
    }
}

impl Drop for Guest<'_> {
    fn drop(&mut self) {
        let _ = self.ts.destroy(self.domid);
    }
}

/// Runs a tool to its end; its stdout, or its error output as the error.
fn tool(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!("{} {}: {}", program.display(), args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until `check` holds, polling every 100 µs.
fn wait_until(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !check()? {
        ensure!(Instant::now() < deadline, "{what} did not happen in {PATIENCE:?}");
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

fn blkif_setup(ts: &mut Toolstack, side: &ShareSide, blkfront: &Path) -> Result<Duration> {
    let (state, image) = (&side.state, &side.image);
    let program = [blkfront.to_string_lossy().as_ref(), "--timeout", "30", &DEVID.to_string(), "info"]
        .map(str::to_owned)
        .to_vec();
    let guest = Guest::start(ts, "xsb-setup-blkif", program)?;
    let domid = guest.domid;
    // Its frontend is up and watching before the clock starts.
    std::thread::sleep(Duration::from_millis(300));
    let root = state.root().to_string_lossy().into_owned();
    let params = format!("params={}", image.display());
    let dom = domid.to_string();
    let started = Instant::now();
    let devid = DEVID.to_string();
    let keys = [params.as_str(), "mode=w", "type=phy", "dev=xvda", "device-type=disk"];
    let mut args = vec!["attach", "--state", &root, "--devid", &devid, &dom, "vbd"];
    args.extend(keys);
    tool(&side.xsim, &args)?;
    let state_path = format!("/local/domain/{domid}/device/vbd/{DEVID}/state");
    wait_until("the frontend's Connected", || Ok(guest.ts.store().read(&state_path).is_ok_and(|v| v == b"4")))?;
    let took = started.elapsed();
    drop(guest);
    Ok(took)
}

fn xensblk_setup(ts: &mut Toolstack, side: &ShareSide) -> Result<Duration> {
    let (state, image) = (&side.state, &side.image);
    let program = [side.guest.to_string_lossy().as_ref(), "xensblk", "--no-export"].map(str::to_owned).to_vec();
    let guest = Guest::start(ts, "xsb-setup-xensblk", program)?;
    let domid = guest.domid;
    let console = state.console(domid);
    wait_until("the guest's bus", || {
        Ok(std::fs::read_to_string(&console).unwrap_or_default().contains("waiting for a block device"))
    })?;
    let root = state.root().to_string_lossy().into_owned();
    let dom = domid.to_string();
    let image = image.to_string_lossy().into_owned();
    let started = Instant::now();
    let device = tool(&side.vdevice, &["--state", &root, "--create", "block", &image, "0", &dom])?;
    let took = started.elapsed();
    let opened = std::fs::read_to_string(&console).unwrap_or_default();
    drop(guest);
    tool(&side.vdevice, &["--state", &root, "--destroy", device.trim()])?;
    ensure!(opened.contains("opened"), "the guest's driver did not open the disk:\n{opened}");
    Ok(took)
}
