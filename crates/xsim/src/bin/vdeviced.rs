//! `vdeviced`: Xen Share's device service in dom0 on real Xen, what
//! `vdevice` talks to there (`xsim::vdeviced`). Grants end with the
//! process that made them, so what a device is made of lives here, in one
//! process, for as long as the device does:
//!
//! - each guest's vdevice page: a one-page share of dom0 and the guest
//!   (`xen_platform::pair_share`), offered in
//!   `/local/domain/N/vdevice/page` (the guest may read it, only dom0
//!   write), made when a device first goes to the guest;
//! - a LAN's share, relayed by the share service
//!   (`xen_platform::relay_share`): each guest member's offer in
//!   `/local/domain/N/vdevice/share/DEVICE`, where the guest's driver
//!   finds it for the entry naming DEVICE; dom0's end, when dom0 is a
//!   member, a TAP interface `xsnDEVICE` in dom0 (10.88.255.254/16);
//! - a disk's two-domain share and its xensblk server, a thread serving
//!   the file (described before the client is told, as the prototype's
//!   `--create block` waited for the server).
//!
//! Requests are served one at a time, each change to a page waiting for
//! the guest's acknowledgement as hosted. Domains that are gone leave
//! their devices (looked at every second and before each request). On
//! SIGTERM every device is taken down.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use xen_platform::pair_share::PairShare;
use xen_platform::relay_share::{RelayShares, GNTALLOC_LIMIT};
use xen_platform::share::{lan_ip, Shares};
use xen_platform::xen::{XenDomainStates, XenEventChannels, XenGrants};
use xen_platform::{DomId, DomainStates};
use xen_share::blk::BLK_PAGES;
use xen_share::net::{LanPort, LAN_PAGES, MAX_LAN_MEMBERS};
use xen_share::{kind, status, Entry, VdeviceHost};
use xenstore::{Access, Client, Store};

/// How long a change waits for a guest's acknowledgement unless the
/// request says.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long the teardown at exit waits for each guest.
const TEARDOWN: Duration = Duration::from_secs(1);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vdeviced",
    version,
    about = "Xen Share's device service in dom0 on real Xen: vdevice pages, shares and dom0's ends, for `vdevice`."
)]
struct Cli {
    /// Where to listen for `vdevice`.
    #[arg(long, default_value = xsim::vdeviced::SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// Pages the service may grant in all (`xen_gntalloc.limit`).
    #[arg(long, default_value_t = GNTALLOC_LIMIT, value_name = "PAGES")]
    page_limit: usize,
}

fn main() {
    if let Err(e) = run(&Cli::parse()) {
        eprintln!("vdeviced: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let mut service = Service {
        store: Client::open().context("connecting to xenstored")?,
        relay: RelayShares::start(Box::new(XenGrants::open()?), Box::new(XenEventChannels::open()?), cli.page_limit)
            .context("starting the share service")?,
        grants: XenGrants::open()?,
        states: XenDomainStates::open()?,
        pages: BTreeMap::new(),
        devices: BTreeMap::new(),
        next: 1,
        notes: Vec::new(),
    };
    if let Some(dir) = cli.socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&cli.socket);
    let listener = UnixListener::bind(&cli.socket).with_context(|| format!("listening on {}", cli.socket.display()))?;
    std::fs::set_permissions(&cli.socket, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    println!("vdeviced: listening on {}", cli.socket.display());
    let second = Timespec { tv_sec: 1, tv_nsec: 0 };
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(&listener, PollFlags::IN)];
        let _ = poll(&mut fds, Some(&second));
        service.prune();
        let Ok((stream, _)) = listener.accept() else { continue };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let result = match xsim::vdeviced::read_request(&stream) {
            Ok(words) => {
                service.notes.clear();
                let result = service.handle(&words);
                let notes: String = service.notes.iter().map(|n| format!("vdevice: {n}\n")).collect();
                result.map(|text| notes.clone() + &text).map_err(|e| format!("{notes}{e:#}"))
            }
            Err(e) => Err(format!("a bad request: {e}")),
        };
        if let Err(e) = xsim::vdeviced::answer(&stream, &result) {
            eprintln!("vdeviced: answering: {e}");
        }
    }
    println!("vdeviced: taking every device down");
    let devices: Vec<u32> = service.devices.keys().copied().collect();
    for device in devices {
        if let Err(e) = service.destroy(device, TEARDOWN) {
            eprintln!("vdeviced: device {device}: {e:#}");
        }
    }
    let _ = std::fs::remove_file(&cli.socket);
    Ok(())
}

/// Everything the service holds.
struct Service {
    store: Client,
    relay: RelayShares,
    grants: XenGrants,
    states: XenDomainStates,
    /// Each guest's vdevice page.
    pages: BTreeMap<DomId, PairShare>,
    devices: BTreeMap<u32, Device>,
    /// The next device number.
    next: u32,
    /// What this request has to say besides its answer.
    notes: Vec<String>,
}

/// One device.
struct Device {
    kind: u16,
    pages: usize,
    /// Each guest member and its slot in that guest's page.
    members: Vec<(DomId, usize)>,
    end: End,
}

/// What the device is made of besides the entries.
enum End {
    /// A LAN: its relayed share, and dom0's end when dom0 is on it.
    Lan { share: u32, dom0: Option<Running> },
    /// A disk: its server, serving the file to the one client.
    Block { file: PathBuf, server: Running },
}

/// A thread of the service's and how to stop it.
struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn start(work: impl FnOnce(&AtomicBool) -> std::io::Result<()> + Send + 'static) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        Running { stop, thread: std::thread::spawn(move || work(&flag)) }
    }

    /// Stops the thread; what it ended with.
    fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow!("the thread panicked"))?.map_err(Into::into)
    }
}

/// The permissions of what dom0 tells `guest`: dom0's, the guest may read.
fn told(guest: DomId) -> xenstore::PermList {
    xsim::toolstack::perms(&[(0, Access::None), (guest, Access::Read)])
}

impl Service {
    fn handle(&mut self, words: &[String]) -> Result<String> {
        self.prune();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let (timeout, words) = match words.as_slice() {
            ["timeout", secs, rest @ ..] => {
                let secs: f64 = secs.parse().map_err(|_| anyhow!("a bad timeout {secs:?}"))?;
                (Duration::try_from_secs_f64(secs).context("the timeout")?, rest)
            }
            rest => (TIMEOUT, rest),
        };
        match words {
            ["create", "net", domains @ ..] if !domains.is_empty() => {
                Ok(format!("{}\n", self.create_net(domains, timeout)?))
            }
            ["create", "block", file, server, client] => {
                Ok(format!("{}\n", self.create_block(Path::new(file), server, client, timeout)?))
            }
            ["create", "block", ..] => bail!("usage: --create block FILE SERVER CLIENT"),
            ["create", other, ..] => bail!("unknown device type {other:?} (net, block)"),
            ["add", device, domain] => self.add(self.device(device)?, domain, timeout).map(|()| String::new()),
            ["remove", device, domain] => self.remove(self.device(device)?, domain, timeout).map(|()| String::new()),
            ["destroy", device] => self.destroy(self.device(device)?, timeout).map(|()| String::new()),
            ["list"] => self.list(),
            _ => bail!("unknown request {words:?}"),
        }
    }

    fn device(&self, which: &str) -> Result<u32> {
        let device = which.parse().map_err(|_| anyhow!("{which:?} is not a device number"))?;
        if !self.devices.contains_key(&device) {
            bail!("no device {device}");
        }
        Ok(device)
    }

    /// The domains that exist, by id, with their names.
    fn domains(&mut self) -> Result<BTreeMap<DomId, String>> {
        let mut domains = BTreeMap::new();
        for (domid, _) in self.states.states()? {
            let name = self.store.read(&format!("/local/domain/{domid}/name")).unwrap_or_default();
            domains.insert(domid, String::from_utf8_lossy(&name).into_owned());
        }
        Ok(domains)
    }

    /// A domain by name or id.
    fn resolve(&mut self, which: &str) -> Result<DomId> {
        let domains = self.domains()?;
        if let Ok(id) = which.parse::<DomId>() {
            if domains.contains_key(&id) {
                return Ok(id);
            }
        }
        domains.iter().find(|(_, name)| *name == which).map(|(&d, _)| d).ok_or_else(|| anyhow!("no domain {which:?}"))
    }

    /// `domid`'s vdevice page, offered to it when first wanted.
    fn page(&mut self, domid: DomId) -> Result<&mut PairShare> {
        if !self.pages.contains_key(&domid) {
            let channels = Box::new(XenEventChannels::open()?);
            let (page, offer) =
                PairShare::offer(0, &mut self.grants, channels, domid, 1).context("offering the vdevice page")?;
            let dir = format!("/local/domain/{domid}/vdevice");
            self.store.write(&format!("{dir}/page"), offer.to_text().as_bytes())?;
            self.store.set_perms(&format!("{dir}/page"), &told(domid))?;
            self.store.set_perms(&dir, &told(domid))?;
            self.pages.insert(domid, page);
        }
        self.pages.get_mut(&domid).ok_or_else(|| anyhow!("domain {domid}'s page"))
    }

    /// Tells `domid` device `device`'s offer.
    fn tell(&mut self, domid: DomId, device: u32, offer: &str) -> Result<()> {
        let path = format!("/local/domain/{domid}/vdevice/share/{device}");
        self.store.write(&path, offer.as_bytes())?;
        self.store.set_perms(&path, &told(domid))?;
        Ok(())
    }

    fn untell(&mut self, domid: DomId, device: u32) {
        let _ = self.store.rm(&format!("/local/domain/{domid}/vdevice/share/{device}"));
    }

    /// Writes `entry` into `domid`'s page and waits for its bus.
    fn add_entry(&mut self, domid: DomId, entry: Entry, timeout: Duration) -> Result<usize> {
        let mut notes = Vec::new();
        let page = self.page(domid)?;
        let slot = xsim::vdevice_entries::add_entry(page, domid, entry, timeout, &mut |n| notes.push(n));
        self.notes.extend(notes);
        slot
    }

    /// Takes the entry in `slot` out of `domid`'s page: acknowledged by
    /// its bus, or forced after the timeout (said in a note).
    fn remove_entry(&mut self, domid: DomId, slot: usize, timeout: Duration) -> Result<()> {
        let Some(page) = self.pages.get_mut(&domid) else { return Ok(()) };
        let notes = &mut self.notes;
        xsim::vdevice_entries::remove_entry(page, domid, slot, timeout, &mut |n| notes.push(n))
    }

    fn next_device(&mut self) -> u32 {
        let device = self.next;
        self.next = self.next.checked_add(1).unwrap_or(1).max(1);
        device
    }

    /// dom0 joins LAN `share` (device `device`) through `xsnDEVICE`.
    fn start_lan_end(&mut self, share: u32, device: u32) -> Result<Running> {
        if let Some(other) = self.devices.iter().find_map(|(&d, x)| match &x.end {
            End::Lan { dom0: Some(_), .. } => Some(d),
            _ => None,
        }) {
            bail!("dom0 is on LAN {other} already (one LAN at a time for dom0 on Xen: both would be its 10.88.0.0/16)");
        }
        let port = LanPort::join(self.relay.attach(share)?).context("dom0 joining the LAN")?;
        let name = format!("xsn{device}");
        let tap = xsim::lan::make_tap(&name, 0).with_context(|| format!("making {name} (is tun loaded?)"))?;
        self.notes.push(format!("dom0 is {} on LAN {device}, interface {name}", lan_ip(0)));
        Ok(Running::start(move |stop| xsim::lan::pump(port, tap, stop)))
    }

    fn create_net(&mut self, domains: &[&str], timeout: Duration) -> Result<u32> {
        let domids = domains.iter().map(|d| self.resolve(d)).collect::<Result<Vec<_>>>()?;
        if domids.len() > MAX_LAN_MEMBERS {
            bail!("a LAN has at most {MAX_LAN_MEMBERS} members");
        }
        if (1..domids.len()).any(|i| domids[..i].contains(&domids[i])) {
            bail!("a domain is named twice");
        }
        let share = self.relay.create(LAN_PAGES, &domids).context("creating the share")?;
        let device = self.next_device();
        let mut made =
            Device { kind: kind::NET, pages: LAN_PAGES, members: Vec::new(), end: End::Lan { share, dom0: None } };
        for &domid in &domids {
            if let Err(e) = self.join(&mut made, device, share, domid, timeout) {
                self.undo(device, made);
                return Err(e.context("nothing created"));
            }
        }
        self.devices.insert(device, made);
        Ok(device)
    }

    /// `domid`, a member of LAN `share` already, joins device `device`:
    /// dom0 through its TAP, a guest through an entry in its page.
    fn join(&mut self, made: &mut Device, device: u32, share: u32, domid: DomId, timeout: Duration) -> Result<()> {
        if domid == 0 {
            let running = self.start_lan_end(share, device)?;
            if let End::Lan { dom0, .. } = &mut made.end {
                *dom0 = Some(running);
            }
            return Ok(());
        }
        let offer = self.relay.offer(share, domid)?.to_text();
        self.tell(domid, device, &offer)?;
        let entry = Entry { kind: kind::NET, numpages: u16::try_from(LAN_PAGES)?, features: 0, share: device };
        match self.add_entry(domid, entry, timeout) {
            Ok(slot) => {
                made.members.push((domid, slot));
                Ok(())
            }
            Err(e) => {
                self.untell(domid, device);
                Err(e)
            }
        }
    }

    /// Takes apart a device that was never finished (or is going).
    fn undo(&mut self, device: u32, made: Device) {
        for &(domid, slot) in &made.members {
            let _ = self.remove_entry(domid, slot, TEARDOWN);
            self.untell(domid, device);
        }
        match made.end {
            End::Lan { share, dom0 } => {
                if let Some(running) = dom0 {
                    let _ = running.stop();
                }
                let _ = self.relay.destroy(share);
            }
            End::Block { server, .. } => {
                let _ = server.stop();
            }
        }
    }

    fn create_block(&mut self, file: &Path, server: &str, client: &str, timeout: Duration) -> Result<u32> {
        if self.resolve(server)? != 0 {
            bail!("only dom0 serves xensblk disks so far");
        }
        let client = self.resolve(client)?;
        if client == 0 {
            bail!("dom0 serves the disk: its client is a guest");
        }
        let path = std::path::absolute(file)?;
        let opened = std::fs::OpenOptions::new().read(true).write(true).open(&path);
        let file = opened.with_context(|| format!("{}", path.display()))?;
        let size = file.metadata()?.len();
        if size == 0 || size % xen_share::blk::SECTOR != 0 {
            bail!("{}: its size must be a non-zero multiple of 512 bytes", path.display());
        }
        let device = self.next_device();
        let channels = Box::new(XenEventChannels::open()?);
        let (mut share, offer) = PairShare::offer(device, &mut self.grants, channels, client, BLK_PAGES)
            .context("granting the disk's share")?;
        // The server runs before the client is told.
        xen_share::blk::describe(&share, &file)?;
        let server = Running::start(move |stop| {
            xen_share::blk::serve(&mut share, &file, Duration::from_millis(100), &|| stop.load(Ordering::Relaxed))
        });
        let mut made =
            Device { kind: kind::BLOCK, pages: BLK_PAGES, members: Vec::new(), end: End::Block { file: path, server } };
        let entry = Entry { kind: kind::BLOCK, numpages: u16::try_from(BLK_PAGES)?, features: 0, share: device };
        let added = self.tell(client, device, &offer.to_text()).and_then(|()| self.add_entry(client, entry, timeout));
        match added {
            Ok(slot) => made.members.push((client, slot)),
            Err(e) => {
                self.untell(client, device);
                self.undo(device, made);
                return Err(e.context("nothing created"));
            }
        }
        self.devices.insert(device, made);
        Ok(device)
    }

    fn add(&mut self, device: u32, domain: &str, timeout: Duration) -> Result<()> {
        let domid = self.resolve(domain)?;
        let mut made = self.devices.remove(&device).ok_or_else(|| anyhow!("no device {device}"))?;
        let result = self.add_to(&mut made, device, domid, timeout);
        self.devices.insert(device, made);
        result
    }

    fn add_to(&mut self, made: &mut Device, device: u32, domid: DomId, timeout: Duration) -> Result<()> {
        let End::Lan { share, dom0 } = &made.end else { bail!("only a LAN takes more members") };
        let share = *share;
        if made.members.iter().any(|(m, _)| *m == domid) || (domid == 0 && dom0.is_some()) {
            bail!("domain {domid} is on device {device} already");
        }
        if made.members.len() + usize::from(dom0.is_some()) >= MAX_LAN_MEMBERS {
            bail!("a LAN has at most {MAX_LAN_MEMBERS} members");
        }
        self.relay.add_member(share, domid).context("adding to the share")?;
        let joined = self.join(made, device, share, domid, timeout);
        if joined.is_err() {
            let _ = self.relay.remove_member(share, domid);
        }
        joined
    }

    fn remove(&mut self, device: u32, domain: &str, timeout: Duration) -> Result<()> {
        let domid = self.resolve(domain).or_else(|_| domain.parse().map_err(|_| anyhow!("no domain {domain:?}")))?;
        let made = self.devices.get_mut(&device).ok_or_else(|| anyhow!("no device {device}"))?;
        let share = match &mut made.end {
            // A disk has one client: removing it ends the device.
            End::Block { .. } => return self.destroy(device, timeout),
            End::Lan { share, dom0 } if domid == 0 => {
                let running = dom0.take().ok_or_else(|| anyhow!("domain 0 is not on {device}"))?;
                running.stop().context("dom0's end of the LAN")?;
                *share
            }
            End::Lan { share, .. } => {
                let share = *share;
                let &(_, slot) = made
                    .members
                    .iter()
                    .find(|(m, _)| *m == domid)
                    .ok_or_else(|| anyhow!("domain {domid} is not on {device}"))?;
                made.members.retain(|(m, _)| *m != domid);
                self.remove_entry(domid, slot, timeout)?;
                self.untell(domid, device);
                share
            }
        };
        // Cut off (a domain already gone has left it).
        match self.relay.remove_member(share, domid) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => Ok(()),
            Err(e) => Err(e).context("removing from the share"),
        }
    }

    fn destroy(&mut self, device: u32, timeout: Duration) -> Result<()> {
        let made = self.devices.remove(&device).ok_or_else(|| anyhow!("no device {device}"))?;
        for &(domid, slot) in &made.members {
            if let Err(e) = self.remove_entry(domid, slot, timeout) {
                self.notes.push(format!("{e:#}"));
            }
        }
        let members = made.members.clone();
        let made = Device { members: Vec::new(), ..made };
        for (domid, _) in members {
            self.untell(domid, device);
        }
        self.undo(device, made);
        Ok(())
    }

    fn list(&mut self) -> Result<String> {
        let names = self.domains()?;
        let mut out = String::new();
        for (&device, made) in &self.devices {
            let _ = write!(out, "{device} {} ({} pages)", kind::name(made.kind), made.pages);
            match &made.end {
                End::Block { file, .. } => {
                    let _ = writeln!(out, ", {} served by dom0 (vdeviced)", file.display());
                }
                End::Lan { dom0, .. } => {
                    out.push('\n');
                    if dom0.is_some() {
                        let _ = writeln!(out, "  domain 0: {} on interface xsn{device}", lan_ip(0));
                    }
                }
            }
            for &(domid, slot) in &made.members {
                let Some(name) = names.get(&domid) else {
                    let _ = writeln!(out, "  domain {domid}: gone");
                    continue;
                };
                let status = match self.pages.get_mut(&domid) {
                    Some(page) => status::describe(VdeviceHost::new(page).status(slot)),
                    None => "no page".to_owned(),
                };
                let _ = writeln!(out, "  domain {domid} ({name}), slot {slot}: {status}");
            }
        }
        Ok(out)
    }

    /// Domains that are gone leave everything: their page, their place on
    /// each LAN, the disks they were the client of.
    fn prune(&mut self) {
        let Ok(states) = self.states.states() else { return };
        let live: Vec<DomId> = states.into_iter().map(|(d, _)| d).collect();
        let mut gone: Vec<DomId> = self.pages.keys().copied().filter(|d| !live.contains(d)).collect();
        for made in self.devices.values() {
            gone.extend(made.members.iter().map(|&(d, _)| d).filter(|d| !live.contains(d)));
        }
        gone.sort_unstable();
        gone.dedup();
        for domid in gone {
            println!("vdeviced: domain {domid} is gone");
            self.pages.remove(&domid);
            self.relay.domain_gone(domid);
            let disks: Vec<u32> = self
                .devices
                .iter()
                .filter(|(_, x)| matches!(x.end, End::Block { .. }) && x.members.iter().any(|&(d, _)| d == domid))
                .map(|(&device, _)| device)
                .collect();
            for device in disks {
                let _ = self.destroy(device, Duration::ZERO);
            }
            for made in self.devices.values_mut() {
                made.members.retain(|&(d, _)| d != domid);
            }
        }
    }
}
