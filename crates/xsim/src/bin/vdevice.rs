//! `vdevice`: Xen Share's device tool, run in dom0 of a hosted host
//! (`xsim up`), or of real Xen, where it asks dom0's `vdeviced`, which
//! holds what the devices are made of (`--xen`, the default on a Xen
//! dom0 when no hosted state directory is named). A device is a share plus one entry in each member's
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
use xen_share::blk::BLK_PAGES;
use xen_share::net::{LAN_PAGES, MAX_LAN_MEMBERS};
use xen_share::{kind, status, Entry, VdeviceHost};
use xsim::StateDir;

/// How often a wait for dom0's programs (a server describing its disk,
/// a LAN end joining, one ending) looks: they take a few milliseconds, and
/// each look is a read of memory or of a small file.
const POLL: Duration = Duration::from_millis(1);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vdevice",
    version,
    about = "Creates, changes and lists Xen Share devices of a hosted host's domains (xsim up), or of real Xen's \
             (asking dom0's vdeviced).",
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
    /// Create a device: `net DOMAIN...` (a LAN of those domains; dom0,
    /// `0`, joins through a TAP in a network namespace of its own that
    /// --list names), or
    /// `block FILE SERVER CLIENT` (FILE served by SERVER, which must be
    /// dom0, to CLIENT: waits for the server to run before it tells the
    /// client).
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
    /// Real Xen: ask dom0's `vdeviced` (the default on a Xen dom0 when no
    /// hosted state directory is named).
    #[arg(long, conflicts_with = "state")]
    xen: bool,
    /// Where `vdeviced` listens (real Xen).
    #[arg(long, value_name = "PATH", default_value = xsim::vdeviced::SOCKET)]
    socket: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("vdevice: {e:#}");
        std::process::exit(1);
    }
}

/// Whether this runs on real Xen: asked, or a Xen dom0 (`privcmd`) and
/// no hosted host named.
fn on_xen(cli: &Cli) -> bool {
    cli.xen
        || (cli.state.is_none() && std::env::var_os("XSIM_STATE").is_none() && Path::new("/dev/xen/privcmd").exists())
}

/// On real Xen: the request to `vdeviced`, its answer printed (its notes,
/// `vdevice: ...` lines, on stderr).
fn ask_service(cli: &Cli) -> Result<()> {
    let mut words = vec!["timeout".to_owned(), cli.timeout.to_string()];
    if let Some(args) = &cli.create {
        words.push("create".into());
        words.extend(args.iter().cloned());
    } else if let Some(args) = &cli.add {
        words.push("add".into());
        words.extend(args.iter().cloned());
    } else if let Some(args) = &cli.remove {
        words.push("remove".into());
        words.extend(args.iter().cloned());
    } else if let Some(device) = &cli.destroy {
        words.extend(["destroy".to_owned(), device.clone()]);
    } else {
        words.push("list".into());
    }
    let (text, failed) = match xsim::vdeviced::ask(&cli.socket, &words)? {
        Ok(text) => (text, None),
        Err(text) => {
            let (notes, why) =
                text.rsplit_once('\n').map_or((String::new(), text.clone()), |(n, w)| (n.to_owned(), w.to_owned()));
            (notes + "\n", Some(why))
        }
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("vdevice: ") {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    match failed {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

fn run(cli: Cli) -> Result<()> {
    if on_xen(&cli) {
        return ask_service(&cli);
    }
    let state = cli.state.map_or_else(StateDir::from_env, StateDir::at);
    let host = state.connect_hypervisor()?;
    let _lock = lock(&state.root().join("vdevices.lock"))?;
    let mut tool = Tool {
        state: state.root().to_owned(),
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
    /// dom0's program, by pid: a disk's server (`xensblk`), or dom0's
    /// end of a LAN (`xensnet`; dom0 is then a member).
    server: Option<u32>,
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
            if let Some(pid) = d.server {
                let _ = write!(text, " server={pid}");
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
    let mut members = Vec::new();
    let mut server = None;
    for word in words {
        if let Some(pid) = word.strip_prefix("server=") {
            server = Some(pid.parse().map_err(|_| bad())?);
            continue;
        }
        let (d, s) = word.split_once(':').ok_or_else(bad)?;
        members.push((d.parse().map_err(|_| bad())?, s.parse().map_err(|_| bad())?));
    }
    Ok(Device { share, kind, pages, members, server })
}

/// What a run works with.
struct Tool {
    host: Host,
    /// The host's state directory.
    state: PathBuf,
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
        xsim::vdevice_entries::add_entry(&mut *page, domid, entry, self.timeout, &mut |n| eprintln!("vdevice: {n}"))
    }

    /// Takes the entry in `slot` out of `domid`'s page: acknowledged by
    /// its bus, or forced after the timeout (said on stderr).
    fn remove_entry(&self, domid: DomId, slot: usize) -> Result<()> {
        let Ok(share) = self.shares.vdevice(domid) else { return Ok(()) }; // the domain is gone
        let mut page = self.shares.attach(share)?;
        xsim::vdevice_entries::remove_entry(&mut *page, domid, slot, self.timeout, &mut |n| eprintln!("vdevice: {n}"))
    }

    fn create(&mut self, kind_name: &str, args: &[String]) -> Result<ShareRef> {
        match kind_name {
            "net" => {}
            "block" => return self.create_block(args),
            other => bail!("unknown device type {other:?} (net, block)"),
        }
        let domids = args.iter().map(|a| self.resolve(a)).collect::<Result<Vec<_>>>()?;
        if domids.len() > MAX_LAN_MEMBERS {
            bail!("a LAN has at most {MAX_LAN_MEMBERS} members");
        }
        if (1..domids.len()).any(|i| domids[..i].contains(&domids[i])) {
            bail!("a domain is named twice");
        }
        let share = self.shares.create(LAN_PAGES, &domids).context("creating the share")?;
        let entry = Entry { kind: kind::NET, numpages: u16::try_from(LAN_PAGES)?, features: 0, share };
        let mut members = Vec::new();
        let mut server = None;
        for &domid in &domids {
            // dom0 has no vdevice bus: its end is a program of its own.
            let added = if domid == 0 {
                self.start_lan_end(share).map(|pid| server = Some(pid))
            } else {
                self.add_entry(domid, entry).map(|slot| members.push((domid, slot)))
            };
            if let Err(e) = added {
                for &(d, slot) in &members {
                    let _ = self.remove_entry(d, slot);
                }
                if let Some(pid) = server {
                    self.stop_server(pid);
                }
                let _ = self.shares.destroy(share);
                return Err(e.context("nothing created"));
            }
        }
        self.registry.devices.push(Device { share, kind: kind::NET, pages: LAN_PAGES, members, server });
        Ok(share)
    }

    /// The network namespace of dom0's end of LAN `share`: named after
    /// the host too, since hosts (state directories) share the machine's
    /// namespaces.
    fn lan_netns(&self, share: ShareRef) -> String {
        // FNV-1a of the state directory's path, however it was spelt.
        let state = std::fs::canonicalize(&self.state).unwrap_or_else(|_| self.state.clone());
        let hash = state
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        format!("xsim-lan{share}-{:04x}", hash & 0xffff)
    }

    /// Starts dom0's end of LAN `share` (`xensnet`, beside this program)
    /// and waits until it has joined; its pid.
    fn start_lan_end(&self, share: ShareRef) -> Result<u32> {
        let netns = self.lan_netns(share);
        let log = self.state.join(format!("xensnet-{share}.log"));
        let args = ["--share".to_owned(), share.to_string(), "--netns".to_owned(), netns.clone()];
        let mut child = self.start_server("xensnet", &args, &log)?;
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("xensnet: ready") {
                eprintln!(
                    "vdevice: dom0 is {} on LAN {share} in the network namespace {netns} (ip netns exec {netns} ...)",
                    xen_platform::share::lan_ip(0)
                );
                return Ok(child.id());
            }
            if let Some(status) = child.try_wait()? {
                bail!("dom0's xensnet exited ({status}): {}", text.trim());
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("dom0's xensnet did not join within {:.1} s", self.timeout.as_secs_f64());
            }
            std::thread::sleep(POLL);
        }
    }

    /// `block FILE SERVER CLIENT`: starts dom0's `xensblk` on a new share,
    /// waits until it describes the disk, then adds the device to the
    /// client's page.
    fn create_block(&mut self, args: &[String]) -> Result<ShareRef> {
        let [file, server, client] = args else { bail!("usage: --create block FILE SERVER CLIENT") };
        if self.resolve(server)? != 0 {
            bail!("only dom0 serves xensblk disks so far");
        }
        let client = self.resolve(client)?;
        let file = std::path::absolute(file)?;
        let size = std::fs::metadata(&file).with_context(|| format!("{}", file.display()))?.len();
        if size == 0 || size % xen_share::blk::SECTOR != 0 {
            bail!("{}: its size must be a non-zero multiple of 512 bytes", file.display());
        }
        let share = self.shares.create(BLK_PAGES, &[0, client]).context("creating the share")?;
        let undo = |tool: &Tool, server: Option<&mut std::process::Child>| {
            if let Some(child) = server {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = tool.shares.destroy(share);
        };
        let log = self.state.join(format!("xensblk-{share}.log"));
        let args = ["--share".to_owned(), share.to_string(), file.to_string_lossy().into_owned()];
        let mut child = match self.start_server("xensblk", &args, &log) {
            Ok(child) => child,
            Err(e) => {
                undo(self, None);
                return Err(e);
            }
        };
        // The server runs once it has described the disk.
        let described = self.wait_described(share, &mut child, &log);
        if let Err(e) = described {
            undo(self, Some(&mut child));
            return Err(e.context("nothing created"));
        }
        let entry = Entry { kind: kind::BLOCK, numpages: u16::try_from(BLK_PAGES)?, features: 0, share };
        let slot = match self.add_entry(client, entry) {
            Ok(slot) => slot,
            Err(e) => {
                undo(self, Some(&mut child));
                return Err(e.context("nothing created"));
            }
        };
        self.registry.devices.push(Device {
            share,
            kind: kind::BLOCK,
            pages: BLK_PAGES,
            members: vec![(client, slot)],
            server: Some(child.id()),
        });
        Ok(share)
    }

    /// Starts dom0's `program` (beside this one) with `args` after the
    /// state directory, detached (a process group of its own), its output
    /// in `log`.
    fn start_server(&self, program: &str, args: &[String], log: &Path) -> Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let program = std::env::current_exe()?.with_file_name(program);
        let out = std::fs::File::create(log)?;
        std::process::Command::new(&program)
            .arg("--state")
            .arg(&self.state)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))
    }

    /// Waits up to the timeout until the server described the disk.
    fn wait_described(&self, share: ShareRef, child: &mut std::process::Child, log: &Path) -> Result<()> {
        let attached = self.shares.attach(share)?;
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            if xen_share::blk::disk_sectors(attached.pages().shared_mem()).is_some() {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                bail!("the server exited ({status}): {}", text.trim());
            }
            if std::time::Instant::now() >= deadline {
                bail!("the server did not start within {:.1} s", self.timeout.as_secs_f64());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Ends dom0's program of a device (a disk's `xensblk`, a LAN's
    /// `xensnet`), if that pid is still one, and waits (up to the
    /// timeout) until it has: `xensnet` removes its namespace as it goes.
    fn stop_server(&self, pid: u32) {
        let ours = |pid: u32| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // A zombie (nobody reaped it yet) is gone.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
            matches!(comm.trim(), "xensblk" | "xensnet") && !zombie
        };
        let Some(target) = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)) else { return };
        if !ours(pid) {
            return;
        }
        let _ = rustix::process::kill_process(target, rustix::process::Signal::TERM);
        let deadline = std::time::Instant::now() + self.timeout;
        while ours(pid) {
            if std::time::Instant::now() >= deadline {
                eprintln!("vdevice: dom0's process {pid} did not end; killed");
                let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    fn add(&mut self, device: &str, domain: &str) -> Result<()> {
        let domid = self.resolve(domain)?;
        let d = self.registry.find(device)?.clone();
        if d.kind != kind::NET {
            bail!("only a LAN takes more members");
        }
        if d.members.iter().any(|(m, _)| *m == domid) || (domid == 0 && d.server.is_some()) {
            bail!("domain {domid} is on device {} already", d.share);
        }
        if d.members.len() + usize::from(d.server.is_some()) >= MAX_LAN_MEMBERS {
            bail!("a LAN has at most {MAX_LAN_MEMBERS} members");
        }
        self.shares.add_member(d.share, domid).context("adding to the share")?;
        if domid == 0 {
            return match self.start_lan_end(d.share) {
                Ok(pid) => {
                    self.registry.find(device)?.server = Some(pid);
                    Ok(())
                }
                Err(e) => {
                    let _ = self.shares.remove_member(d.share, 0);
                    Err(e)
                }
            };
        }
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
        if d.kind == kind::BLOCK {
            // A disk has one client: removing it ends the device.
            return self.destroy(device);
        }
        if domid == 0 {
            let pid = d.server.ok_or_else(|| anyhow!("domain 0 is not on {device}"))?;
            self.stop_server(pid);
            self.registry.find(device)?.server = None;
        } else {
            let &(_, slot) = d
                .members
                .iter()
                .find(|(m, _)| *m == domid)
                .ok_or_else(|| anyhow!("domain {domid} is not on {device}"))?;
            self.remove_entry(domid, slot)?;
        }
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
        if let Some(pid) = d.server {
            self.stop_server(pid);
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
            let _ = write!(out, "{} {} ({} pages)", d.share, kind::name(d.kind), d.pages);
            match d.server {
                Some(pid) if d.kind == kind::BLOCK => {
                    let _ = write!(out, ", served by dom0's xensblk (pid {pid})");
                }
                _ => {}
            }
            out.push('\n');
            if let (Some(pid), true) = (d.server, d.kind == kind::NET) {
                let _ = writeln!(
                    out,
                    "  domain 0: xensnet (pid {pid}), {} in the network namespace {}",
                    xen_platform::share::lan_ip(0),
                    self.lan_netns(d.share)
                );
            }
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
