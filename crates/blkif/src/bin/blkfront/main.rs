//! `blkfront`: a block frontend in userspace, for a hosted guest or a
//! Linux guest on Xen. Connects the guest's `vbd` device DEVID (its
//! `virtual-device` number), runs the commands given in order, closes the
//! device and exits 0 if every command passed (the hypervisor records a
//! poweroff), 1 otherwise.
//!
//! Which machine: a hosted guest (the xsim hypervisor's socket in its
//! environment) uses its ring and the hypervisor's grants; elsewhere, on
//! Xen, xenstore through `/dev/xen/xenbus`, pages granted through
//! `/dev/xen/gntalloc`, event channels through `/dev/xen/evtchn` (feature
//! `xen`). On Xen the guest kernel's own `xen-blkfront` must not be loaded:
//! it would claim the device first.
//!
//! ```text
//! blkfront [--timeout SECS] [--ring-page-order N] [--cpu N] [--no-persistent] DEVID COMMAND...
//!   info                              print sectors, sector size, read-only, features
//!   write SECTOR FILE                 write a file (padded to whole sectors)
//!   write SECTOR --pattern SEED COUNT write COUNT sectors of the seed's pattern
//!   read SECTOR COUNT                 read and print a checksum
//!   verify SECTOR FILE                read and compare with a file
//!   verify SECTOR --pattern SEED COUNT
//!   flush                             make the writes durable
//!   bench read|write SIZE DEPTH SECONDS
//!                                     throughput with DEPTH operations of SIZE
//!                                     bytes in flight, sequential offsets over
//!                                     the whole disk ([`bench`])
//! ```
//!
//! `--no-persistent` writes `feature-persistent` 0, so the
//! backend maps each request's pages for it alone (to compare).
//!
//! `--cpu N` pins the program to CPU N (best effort), as a guest with a
//! vCPU of its own: a benchmark keeps it off the CPU of dom0's backend.
//!
//! A device left connected by an earlier run (or a crashed one) is
//! reset first, as Linux's `xenbus_reset_frontend` does: Closed, wait for
//! the backend to close, Initialising, wait for the backend's InitWait.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use blkif::abi::SECTOR_SIZE;
use blkif::pattern::{first_mismatch, pattern};
use blkif::{Blkfront, FrontConfig};
use xen_platform::{EventChannels, Grants};
use xenbus::{paths, switch, Conn, SyncConn, XenbusState};
use xenstore::Store;

mod bench;

/// Waiting between steps when nothing happens, by default: an event
/// channel or a xenstore event ends the wait sooner.
const TICK_MS: u64 = 10;

/// One command of the command line.
#[derive(Debug)]
enum Command {
    Info,
    Write { sector: u64, data: Source },
    Read { sector: u64, count: u64 },
    Verify { sector: u64, data: Source },
    Flush,
    Bench(bench::Spec),
}

#[derive(Debug)]
enum Source {
    File(String),
    Pattern { seed: u64, count: u64 },
}

impl Source {
    fn bytes(&self, sector: u64) -> Result<Vec<u8>> {
        match self {
            Source::File(path) => {
                let mut data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
                let size = usize::try_from(SECTOR_SIZE)?;
                data.resize(data.len().div_ceil(size) * size, 0);
                Ok(data)
            }
            Source::Pattern { seed, count } => Ok(pattern(*seed, sector, *count)),
        }
    }
}

struct Options {
    timeout: Duration,
    tick: Duration,
    order: u32,
    cpu: Option<usize>,
    no_persistent: bool,
    devid: u32,
    commands: Vec<Command>,
}

/// The command line: options, the device, then the commands (parsed in
/// order by [`parse_commands`], since each takes its own arguments).
#[derive(clap::Parser, Debug)]
#[command(
    name = "blkfront",
    version,
    about = "A block frontend in userspace, for a hosted guest or a Linux guest on Xen (with the kernel's \
             xen-blkfront not loaded): connects vbd DEVID, runs the COMMANDs in order, closes the device; \
             prints PASS blkfront and exits 0 if all passed",
    after_help = COMMANDS
)]
struct Cli {
    /// Seconds to wait for the backend at each step.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// Ask for a ring of 2^N pages (the backend's max-ring-page-order bounds it).
    #[arg(long, default_value_t = 0, value_name = "N")]
    ring_page_order: u32,
    /// Pin to this CPU (best effort), as a guest with a vCPU of its own.
    #[arg(long, value_name = "N")]
    cpu: Option<usize>,
    /// The longest wait between steps when nothing happens (an event
    /// channel or a xenstore event ends it sooner).
    #[arg(long, default_value_t = TICK_MS, value_name = "MS")]
    tick_ms: u64,
    /// Write `feature-persistent` 0: the backend maps each request's pages
    /// anew (for comparisons and tests).
    #[arg(long)]
    no_persistent: bool,
    /// The device: its virtual-device number (51712 is xvda).
    devid: u32,
    /// What to do, in order (see below).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    commands: Vec<String>,
}

/// The commands, for `--help`.
const COMMANDS: &str = "Commands:
  info                               sectors, sector size, read-only, features
  write SECTOR FILE                  write a file (padded to whole sectors)
  write SECTOR --pattern SEED COUNT  write COUNT sectors of the seed's pattern
  read SECTOR COUNT                  read and print a checksum
  verify SECTOR FILE                 read and compare with a file
  verify SECTOR --pattern SEED COUNT read and compare with the pattern
  flush                              make the writes durable
  bench read|write SIZE DEPTH SECONDS
                                     throughput with DEPTH operations of SIZE bytes in flight

Example: blkfront 51712 write 0 --pattern 7 4096 flush verify 0 --pattern 7 4096";

fn parse_commands(words: &[String]) -> Result<Vec<Command>> {
    let mut args = words.iter().map(String::as_str).peekable();
    let number = |s: Option<&str>, what: &str| -> Result<u64> {
        s.ok_or_else(|| anyhow!("missing {what}"))?.parse().with_context(|| format!("{what} is not a number"))
    };
    let mut commands = Vec::new();
    while let Some(word) = args.next() {
        commands.push(match word {
            "info" => Command::Info,
            "flush" => Command::Flush,
            "bench" => Command::Bench(bench::Spec::parse(&mut args)?),
            "read" => Command::Read { sector: number(args.next(), "SECTOR")?, count: number(args.next(), "COUNT")? },
            "write" | "verify" => {
                let sector = number(args.next(), "SECTOR")?;
                let data = match args.next() {
                    Some("--pattern") => {
                        let seed = number(args.next(), "SEED")?;
                        Source::Pattern { seed, count: number(args.next(), "COUNT")? }
                    }
                    Some(path) => Source::File(path.to_owned()),
                    None => bail!("{word}: missing FILE or --pattern SEED COUNT"),
                };
                if word == "write" {
                    Command::Write { sector, data }
                } else {
                    Command::Verify { sector, data }
                }
            }
            other => bail!("unknown command {other:?} (blkfront --help lists them)"),
        });
    }
    Ok(commands)
}

/// Waits until `<dir>/state` is one of `wanted`.
fn wait_state(store: &dyn Store, dir: &str, wanted: &[XenbusState], timeout: Duration) -> Result<XenbusState> {
    let start = Instant::now();
    loop {
        let state = switch::read_state(store, dir)?;
        if wanted.contains(&state) {
            return Ok(state);
        }
        if start.elapsed() > timeout {
            bail!("{dir} is {state}, not {wanted:?}, after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(TICK_MS));
    }
}

/// Brings a device an earlier frontend left behind back to Initialising
/// with the backend waiting (Linux's `xenbus_reset_frontend`).
fn reset(conn: &SyncConn, dir: &str, timeout: Duration) -> Result<()> {
    let store = conn.store();
    let own = switch::read_state(store, dir)?;
    if own == XenbusState::Initialising || own == XenbusState::Unknown {
        return Ok(());
    }
    let backend = String::from_utf8(store.read(&paths::child(dir, "backend"))?)?;
    println!("blkfront: resetting {dir} (left {own})");
    switch::switch_state(conn, dir, XenbusState::Closed)?;
    wait_state(store, &backend, &[XenbusState::Closed, XenbusState::InitWait], timeout)?;
    switch::switch_state(conn, dir, XenbusState::Initialising)?;
    wait_state(store, &backend, &[XenbusState::InitWait], timeout)?;
    Ok(())
}

/// Best effort: on a machine without CPU `cpu` the program runs where
/// it was started.
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn run(options: &Options) -> Result<bool> {
    if let Some(cpu) = options.cpu {
        pin_to(cpu);
    }
    let guest = Guest::open()?;
    let domid = guest.domid;
    let conn = SyncConn::new(guest.client);
    let devid = options.devid;
    let dir = paths::frontend_dir(domid, "vbd", devid);
    reset(&conn, &dir, options.timeout)?;
    let config = FrontConfig { ring_page_order: options.order, no_persistent: options.no_persistent };
    let mut front = Blkfront::new(conn, domid, guest.grants, guest.events, config);
    front.start()?;
    front
        .wait_connected(devid, options.timeout, options.tick)?
        .ok_or_else(|| anyhow!("device {devid} did not connect in {:?}", options.timeout))?;
    let mut passed = true;
    for command in &options.commands {
        let ok = execute(&mut front, devid, command, options)?;
        println!("{} {command:?}", if ok { "ok" } else { "FAILED" });
        passed &= ok;
    }
    front.close(devid)?;
    let start = Instant::now();
    while switch::read_state(front.bus().conn().store(), &dir)? != XenbusState::Closed
        && start.elapsed() < options.timeout
    {
        if front.step()? == 0 {
            let _ = front.wait(options.tick);
        }
    }
    Ok(passed)
}

/// What the frontend needs of the guest's machine.
struct Guest {
    domid: u16,
    client: xenstore::Client,
    grants: Box<dyn Grants>,
    events: Box<dyn EventChannels>,
    /// Hosted: the hypervisor connection the handles go through.
    #[cfg(feature = "hosted")]
    _host: Option<xen_platform::hosted::Host>,
}

impl Guest {
    /// A hosted guest's machine when the environment says so, else Xen's.
    fn open() -> Result<Guest> {
        #[cfg(feature = "hosted")]
        if std::env::var_os(xen_platform::hosted::ENV_HYPERVISOR_FD).is_some() {
            let (host, start) = xen_platform::hosted::Host::from_guest_env().context("not a hosted guest")?;
            let domid = start.domid;
            let transport = xenstore::transport::hosted::ring_of(&host, start)?;
            let client = xenstore::Client::with_transport(transport, xenstore::Options::default())?;
            let grants = Box::new(host.grants());
            let events = Box::new(host.event_channels()?);
            return Ok(Guest { domid, client, grants, events, _host: Some(host) });
        }
        Guest::xen()
    }

    #[cfg(feature = "xen")]
    fn xen() -> Result<Guest> {
        let client = xenstore::Client::open().context("connecting to xenstore (/dev/xen/xenbus)")?;
        let domid = String::from_utf8_lossy(&client.read("domid").context("reading this domain's id")?)
            .trim()
            .parse()
            .context("this domain's id")?;
        let grants = Box::new(xen_platform::xen::XenGrants::open()?);
        let events = Box::new(xen_platform::xen::XenEventChannels::open()?);
        Ok(Guest {
            domid,
            client,
            grants,
            events,
            #[cfg(feature = "hosted")]
            _host: None,
        })
    }

    #[cfg(not(feature = "xen"))]
    fn xen() -> Result<Guest> {
        bail!("not a hosted guest, and built without Xen support (the xen feature)")
    }
}

fn execute(front: &mut Blkfront<SyncConn>, devid: u32, command: &Command, options: &Options) -> Result<bool> {
    let (timeout, tick) = (options.timeout, options.tick);
    let wait = |front: &mut Blkfront<SyncConn>, ticket| -> Result<Vec<u8>> {
        match front.wait_for(devid, ticket, timeout, tick)? {
            Some(result) => Ok(result?),
            None => bail!("no answer in {timeout:?}"),
        }
    };
    match command {
        Command::Info => {
            let info = front.info(devid).ok_or_else(|| anyhow!("not connected"))?;
            println!(
                "sectors {} sector-size {} read-only {} flush {} discard {} persistent {}",
                info.sectors, info.sector_size, info.readonly, info.flush, info.discard, info.persistent
            );
            Ok(true)
        }
        Command::Write { sector, data } => {
            let ticket = front.write(devid, *sector, data.bytes(*sector)?)?;
            wait(front, ticket).map(|_| true)
        }
        Command::Read { sector, count } => {
            let ticket = front.read(devid, *sector, *count)?;
            let data = wait(front, ticket)?;
            let sum = data.iter().fold(0u64, |acc, &b| acc.rotate_left(5) ^ u64::from(b));
            println!("read {} bytes, checksum {sum:016x}", data.len());
            Ok(true)
        }
        Command::Verify { sector, data } => {
            let expected = data.bytes(*sector)?;
            let ticket = front.read(devid, *sector, expected.len() as u64 / SECTOR_SIZE)?;
            let got = wait(front, ticket)?;
            let bad = match data {
                Source::Pattern { seed, .. } => first_mismatch(*seed, *sector, &got),
                Source::File(_) => (got != expected).then_some(*sector),
            };
            if let Some(bad) = bad {
                println!("verify: sector {bad} differs");
            }
            Ok(bad.is_none())
        }
        Command::Flush => {
            let ticket = front.flush(devid)?;
            wait(front, ticket).map(|_| true)
        }
        Command::Bench(spec) => {
            let sectors = front.info(devid).ok_or_else(|| anyhow!("not connected"))?.sectors;
            let outcome = bench::run(front, devid, sectors, spec, timeout, tick)?;
            println!("{}", outcome.line(spec));
            Ok(true)
        }
    }
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    let result = parse_commands(&cli.commands).and_then(|commands| {
        let options = Options {
            timeout: Duration::from_secs(cli.timeout),
            tick: Duration::from_millis(cli.tick_ms),
            order: cli.ring_page_order,
            cpu: cli.cpu,
            no_persistent: cli.no_persistent,
            devid: cli.devid,
            commands,
        };
        run(&options)
    });
    match result {
        Ok(true) => println!("PASS blkfront"),
        Ok(false) => {
            println!("FAIL blkfront: a command failed");
            std::process::exit(1);
        }
        Err(err) => {
            println!("FAIL blkfront: {err:#}");
            std::process::exit(1);
        }
    }
}
