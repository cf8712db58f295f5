//! `vdevice`: Xen Share's device tool, run in dom0 of a hosted host
//! (`xsim up`). A device is a share plus one entry in each member's
//! vdevice page; every page change waits for that guest's bus to
//! acknowledge it (see `docs/xen-share.md`).
//!
//! The devices made here are kept in `$XSIM_STATE/vdevices` (one line
//! each: share, type, pages, then `domid:slot` per member), so that a
//! member's slot is what this tool wrote, never what the guest's page
//! says; `$XSIM_STATE/vdevices.lock` serialises concurrent runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Parser};
use xen_platform::hosted::Host;
use xen_platform::share::{ShareRef, Shares};
use xen_platform::{DomId, Toolstack as _};
use xen_share::net::{LAN_PAGES, MAX_LAN_MEMBERS};
use xen_share::{kind, status, Entry, VdeviceError, VdeviceHost};
use xsim::StateDir;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vdevice",
    version,
    about = "Creates, changes and lists Xen Share devices of a hosted host's domains (xsim up).",
    after_help = "DOMAIN is a domain name or id; DEVICE is the number --create printed (the device's share). \
                  Each change to a domain's vdevice page waits for its bus to acknowledge it \
                  (xsim-guest xensnet runs one).",
    group(ArgGroup::new("action").required(true).args(["create", "add", "remove", "list", "destroy"]))
)]
struct Cli {
    /// The host's state directory (else $XSIM_STATE, as xsim).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Seconds to wait for each guest's acknowledgement.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    timeout: f64,
    /// Create a device: `net DOMAIN...` (a LAN of those domains).
    #[arg(long, num_args = 2.., value_names = ["KIND", "ARGS"])]
    create: Option<Vec<String>>,
    /// Add DOMAIN to DEVICE.
    #[arg(long, num_args = 2, value_names = ["DEVICE", "DOMAIN"])]
    add: Option<Vec<String>>,
    /// Remove DOMAIN from DEVICE (it is cut off the device's share).
    #[arg(long, num_args = 2, value_names = ["DEVICE", "DOMAIN"])]
    remove: Option<Vec<String>>,
    /// List the devices and each member's status.
    #[arg(long)]
    list: bool,
    /// Remove every member of DEVICE and end it.
    #[arg(long, value_name = "DEVICE")]
    destroy: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("vdevice: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let state = cli.state.map_or_else(StateDir::from_env, StateDir::at);
    let host = Host::connect(&state.hypervisor_socket())
        .with_context(|| format!("no hosted host at {} (xsim up)", state.root().display()))?;
    let _lock = lock(&state.root().join("vdevices.lock"))?;
    let mut tool = Tool {
        shares: host.shares(),
        host,
        registry: Registry::load(&state.root().join("vdevices"))?,
        timeout: Duration::try_from_secs_f64(cli.timeout).context("--timeout")?,
    };
    if let Some(args) = cli.create {
        let device = tool.create(&args[0], &args[1..])?;
        println!("{device}");
    } else if let Some(args) = cli.add {
        tool.add(&args[0], &args[1])?;
    } else if let Some(args) = cli.remove {
        tool.remove(&args[0], &args[1])?;
    } else if let Some(device) = cli.destroy {
        tool.destroy(&device)?;
    } else {
        print!("{}", tool.list()?);
    }
    tool.registry.save()
}

/// Holds an exclusive lock on `path` until dropped.
fn lock(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(file)
}

/// One device made by this tool.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Device {
    share: ShareRef,
    kind: u16,
    pages: usize,
    /// Each member and its slot in that member's vdevice page.
    members: Vec<(DomId, usize)>,
}

/// The devices made here, as a file.
#[derive(Debug)]
struct Registry {
    path: PathBuf,
    devices: Vec<Device>,
}

impl Registry {
    fn load(path: &Path) -> Result<Registry> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let devices = text.lines().filter(|l| !l.trim().is_empty()).map(parse_device).collect::<Result<_>>()?;
        Ok(Registry { path: path.to_owned(), devices })
    }

    fn save(&self) -> Result<()> {
        let mut text = String::new();
        for d in &self.devices {
            let _ = write!(text, "{} {} {}", d.share, kind::name(d.kind), d.pages);
            for (domid, slot) in &d.members {
                let _ = write!(text, " {domid}:{slot}");
            }
            text.push('\n');
        }
        let tmp = self.path.with_extension("new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    fn find(&mut self, device: &str) -> Result<&mut Device> {
        let share: ShareRef = device.parse().map_err(|_| anyhow!("{device:?} is not a device number"))?;
        self.devices.iter_mut().find(|d| d.share == share).ok_or_else(|| anyhow!("no device {share}"))
    }
}

fn parse_device(line: &str) -> Result<Device> {
    let bad = || anyhow!("bad line in the device registry: {line:?}");
    let mut words = line.split_whitespace();
    let share = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let kind = match words.next().ok_or_else(bad)? {
        "net" => kind::NET,
        "block" => kind::BLOCK,
        "console" => kind::CONSOLE,
        _ => return Err(bad()),
    };
    let pages = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let members = words
        .map(|w| {
            let (d, s) = w.split_once(':')?;
            Some((d.parse().ok()?, s.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    Ok(Device { share, kind, pages, members })
}

/// What a run works with.
struct Tool {
    host: Host,
    shares: xen_platform::hosted::HostedShares,
    registry: Registry,
    timeout: Duration,
}

impl Tool {
    /// A domain by name or id.
    fn resolve(&self, which: &str) -> Result<DomId> {
        let list = self.host.toolstack().list()?;
        if let Ok(id) = which.parse::<DomId>() {
            if list.iter().any(|d| d.domid == id) {
                return Ok(id);
            }
        }
        list.iter().find(|d| d.name == which).map(|d| d.domid).ok_or_else(|| anyhow!("no domain {which:?}"))
    }

    /// Writes `entry` into `domid`'s page and waits for its bus.
    fn add_entry(&self, domid: DomId, entry: Entry) -> Result<usize> {
        let mut page = self.shares.attach(self.shares.vdevice(domid)?)?;
        let mut vdevice = VdeviceHost::new(&mut *page);
        let (slot, bits) = vdevice.add(entry, self.timeout).map_err(|e| anyhow!("domain {domid}: {e}"))?;
        if bits & status::FAILED != 0 {
            vdevice.remove(slot, self.timeout).unwrap_or_else(|_| vdevice.free(slot));
            bail!("domain {domid}: its driver failed to start the device");
        }
        if bits & status::DRIVER_OK == 0 {
            eprintln!("vdevice: domain {domid} has no driver for the device (acknowledged only)");
        }
        Ok(slot)
    }

    /// Takes the entry in `slot` out of `domid`'s page: acknowledged by
    /// its bus, or forced after the timeout (said on stderr).
    fn remove_entry(&self, domid: DomId, slot: usize) -> Result<()> {
        let Ok(share) = self.shares.vdevice(domid) else { return Ok(()) }; // the domain is gone
        let mut page = self.shares.attach(share)?;
        let mut vdevice = VdeviceHost::new(&mut *page);
        match vdevice.remove(slot, self.timeout) {
            Ok(()) | Err(VdeviceError::Gone) => Ok(()),
            Err(e @ VdeviceError::Timeout { .. }) => {
                eprintln!("vdevice: domain {domid}: {e}; removed anyway");
                vdevice.free(slot);
                Ok(())
            }
            Err(e) => Err(anyhow!("domain {domid}: {e}")),
        }
    }

    fn create(&mut self, kind_name: &str, args: &[String]) -> Result<ShareRef> {
        match kind_name {
            "net" => {}
            "block" => bail!("block devices need xensblk, which is not built yet"),
            other => bail!("unknown device type {other:?} (net)"),
        }
        let domids = args.iter().map(|a| self.resolve(a)).collect::<Result<Vec<_>>>()?;
        if domids.len() > MAX_LAN_MEMBERS {
            bail!("a LAN has at most {MAX_LAN_MEMBERS} members");
        }
        let share = self.shares.create(LAN_PAGES, &domids).context("creating the share")?;
        let entry = Entry { kind: kind::NET, numpages: u16::try_from(LAN_PAGES)?, features: 0, share };
        let mut members = Vec::new();
        for &domid in &domids {
            match self.add_entry(domid, entry) {
                Ok(slot) => members.push((domid, slot)),
                Err(e) => {
                    for &(d, slot) in &members {
                        let _ = self.remove_entry(d, slot);
                    }
                    let _ = self.shares.destroy(share);
                    return Err(e.context("nothing created"));
                }
            }
        }
        self.registry.devices.push(Device { share, kind: kind::NET, pages: LAN_PAGES, members });
        Ok(share)
    }

    fn add(&mut self, device: &str, domain: &str) -> Result<()> {
        let domid = self.resolve(domain)?;
        let d = self.registry.find(device)?.clone();
        if d.members.iter().any(|(m, _)| *m == domid) {
            bail!("domain {domid} is on device {} already", d.share);
        }
        if d.members.len() >= MAX_LAN_MEMBERS {
            bail!("a LAN has at most {MAX_LAN_MEMBERS} members");
        }
        self.shares.add_member(d.share, domid).context("adding to the share")?;
        let entry = Entry { kind: d.kind, numpages: u16::try_from(d.pages)?, features: 0, share: d.share };
        match self.add_entry(domid, entry) {
            Ok(slot) => {
                self.registry.find(device)?.members.push((domid, slot));
                Ok(())
            }
            Err(e) => {
                let _ = self.shares.remove_member(d.share, domid);
                Err(e)
            }
        }
    }

    fn remove(&mut self, device: &str, domain: &str) -> Result<()> {
        let domid = self.resolve(domain).or_else(|_| domain.parse().map_err(|_| anyhow!("no domain {domain:?}")))?;
        let d = self.registry.find(device)?.clone();
        let &(_, slot) =
            d.members.iter().find(|(m, _)| *m == domid).ok_or_else(|| anyhow!("domain {domid} is not on {device}"))?;
        self.remove_entry(domid, slot)?;
        // Cut off: the share moves away from it (a domain already gone has
        // left it).
        match self.shares.remove_member(d.share, domid) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {}
            Err(e) => return Err(e).context("removing from the share"),
        }
        self.registry.find(device)?.members.retain(|(m, _)| *m != domid);
        Ok(())
    }

    fn destroy(&mut self, device: &str) -> Result<()> {
        let d = self.registry.find(device)?.clone();
        for &(domid, slot) in &d.members {
            self.remove_entry(domid, slot)?;
        }
        match self.shares.destroy(d.share) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {}
            Err(e) => return Err(e).context("ending the share"),
        }
        self.registry.devices.retain(|x| x.share != d.share);
        Ok(())
    }

    fn list(&self) -> Result<String> {
        let names: std::collections::HashMap<DomId, String> =
            self.host.toolstack().list()?.into_iter().map(|d| (d.domid, d.name)).collect();
        let mut out = String::new();
        for d in &self.registry.devices {
            let _ = writeln!(out, "{} {} ({} pages)", d.share, kind::name(d.kind), d.pages);
            for &(domid, slot) in &d.members {
                let Some(name) = names.get(&domid) else {
                    let _ = writeln!(out, "  domain {domid}: gone");
                    continue;
                };
                let status = match self.shares.vdevice(domid).and_then(|s| self.shares.attach(s)) {
                    Ok(mut page) => status::describe(VdeviceHost::new(&mut *page).status(slot)),
                    Err(e) => format!("unreadable ({e})"),
                };
                let _ = writeln!(out, "  domain {domid} ({name}), slot {slot}: {status}");
            }
        }
        Ok(out)
    }
}
