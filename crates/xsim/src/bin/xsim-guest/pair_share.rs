//! `xsim-guest pair-share offer GUEST [OUTSIDER]` (in dom0) and
//! `xsim-guest pair-share accept` (in a guest): a two-domain Xen Share
//! (`xen_platform::pair_share`) on real Xen, for `tests/xen`.
//!
//! dom0 grants two pages and a trigger page to GUEST, writes `from dom0`
//! at 0 and the offer to `data/pair-offer` of GUEST (and of OUTSIDER,
//! who was granted nothing). The guest accepts: it reads dom0's bytes,
//! writes `from guest` at the second page, raises trigger 3 and waits
//! for dom0's 5. dom0 checks the guest's bytes, raises 5 and exits 0.
//! Each guest writes what came of its accept to `data/pair-result`:
//! `ok`, or `refused: WHY` (the outsider's expected end), or
//! `failed: WHY`.
//!
//! `pair-share vdevice-host GUEST` (dom0) and `pair-share vdevice-bus`
//! (the guest) run the vdevice page on such a share: dom0 offers a page
//! in `/local/domain/GUEST/vdevice/page` (the guest may read it, only
//! dom0 write), adds a LAN device to it and removes it again, each change
//! acknowledged by the guest's bus, whose driver takes the device and
//! lets it go. The guest writes `data/vdevice-result` (`ok` or
//! `failed: WHY`).
//!
//! `pair-share block-server GUEST` (dom0) and `pair-share block-client`
//! (the guest) run xensblk on such a share: dom0 serves a 4 MiB image
//! it makes to the guest (the offer in the guest's `data/blk-offer`),
//! the guest writes 1 MiB of a pattern, flushes, reads it back and
//! writes `data/blk-result`; dom0 then finds the pattern in its image.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xen_platform::pair_share::{PairOffer, PairShare};
use xen_platform::share::Share;
use xen_platform::xen::{XenEventChannels, XenGrants};
use xen_platform::{DomId, PAGE_SIZE};
use xen_share::{kind, status, Bus, BusEvent, Device, Driver, Entry, VdeviceHost};
use xenstore::{Access, Client, ErrorCode, PermList, Store};

/// The share's name in this test (one share at a time).
const SHARE: u32 = 1;

/// The vdevice page's share.
const PAGE_SHARE: u32 = 2;

/// The block device's share.
const BLOCK_SHARE: u32 = 3;

/// What the block check writes: 1 MiB of a pattern no sector repeats.
fn pattern() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i.wrapping_mul(31) ^ (i >> 9)).to_le_bytes()[0]).collect()
}

/// How long each side waits for the other.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

pub fn run(args: &[String]) -> Result<()> {
    match args {
        [what, guest, rest @ ..] if what == "offer" && rest.len() <= 1 => {
            let guest: DomId = guest.parse().context("GUEST")?;
            let outsider = rest.first().map(|o| o.parse::<DomId>()).transpose().context("OUTSIDER")?;
            offer(guest, outsider)
        }
        [what] if what == "accept" => accept(),
        [what, guest] if what == "vdevice-host" => vdevice_host(guest.parse().context("GUEST")?),
        [what] if what == "vdevice-bus" => vdevice_bus(),
        [what, guest] if what == "block-server" => block_server(guest.parse().context("GUEST")?),
        [what] if what == "block-client" => block_client(),
        _ => bail!(
            "usage: xsim-guest pair-share offer GUEST [OUTSIDER] | accept | vdevice-host GUEST | vdevice-bus | \
             block-server GUEST | block-client"
        ),
    }
}

/// Waits up to [`PATIENCE`] for every bit of `want` on `share`.
fn await_triggers(share: &mut PairShare, want: u32) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = 0;
    while seen & want != want {
        if Instant::now() > deadline {
            bail!("triggers {want:#x} never came (saw {seen:#x})");
        }
        share.wait(Some(Duration::from_millis(100)))?;
        seen |= share.take_pending()?;
    }
    Ok(())
}

fn read_bytes(share: &PairShare, offset: usize, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    share.pages().shared_mem().read_bytes(offset, &mut bytes);
    bytes
}

/// This domain's grant and event-channel handles on Xen.
fn xen_handles() -> Result<(XenGrants, Box<XenEventChannels>)> {
    Ok((XenGrants::open()?, Box::new(XenEventChannels::open()?)))
}

/// Reads `path` once it exists (up to [`PATIENCE`]).
pub(crate) fn await_node(client: &Client, path: &str) -> Result<String> {
    await_node_within(client, path, PATIENCE)
}

/// Reads `path` once it exists (up to `patience`).
pub(crate) fn await_node_within(client: &Client, path: &str, patience: Duration) -> Result<String> {
    let deadline = Instant::now() + patience;
    loop {
        match client.read(path) {
            Ok(text) => return Ok(String::from_utf8(text)?),
            Err(e) if e.code() == Some(ErrorCode::ENOENT) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("waiting for {path}")),
        }
    }
}

/// dom0 writes `offer` (its text) at `path` with `perms`.
pub(crate) fn publish(client: &Client, path: &str, offer: &str, perms: &PermList) -> Result<()> {
    client.write(path, offer.as_bytes()).with_context(|| format!("writing {path}"))?;
    client.set_perms(path, perms).with_context(|| format!("setting the permissions of {path}"))
}

/// A guest's part: `part` runs with the store and this domain's id, and
/// what came of it (`ok`, or `failed: WHY`) goes to `node` for dom0.
fn guest_part(node: &str, label: &str, part: impl FnOnce(&Client, DomId) -> Result<String>) -> Result<()> {
    let client = Client::open().context("connecting to xenstored")?;
    let me: DomId = String::from_utf8(client.read("domid")?)?.trim().parse()?;
    let result = part(&client, me).unwrap_or_else(|e| format!("failed: {e:#}"));
    println!("pair-share: {label}{result}");
    client.write(node, result.as_bytes())?;
    Ok(())
}

fn offer(guest: DomId, outsider: Option<DomId>) -> Result<()> {
    let client = Client::open().context("connecting to xenstored")?;
    let (mut grants, channels) = xen_handles()?;
    let (mut share, offer) = PairShare::offer(SHARE, &mut grants, channels, guest, 2).context("offering the share")?;
    share.pages().shared_mem().write_bytes(0, b"from dom0");
    for domid in std::iter::once(guest).chain(outsider) {
        let path = format!("/local/domain/{domid}/data/pair-offer");
        publish(&client, &path, &offer.to_text(), &PermList::owned_by(domid, Access::None))?;
    }
    println!("pair-share: offered {} to domain {guest}", offer.to_text());
    await_triggers(&mut share, 1 << 3).context("the guest's trigger")?;
    let got = read_bytes(&share, PAGE_SIZE, 10);
    if got != b"from guest" {
        bail!("the guest's bytes: {:?}", String::from_utf8_lossy(&got));
    }
    share.trigger(5)?;
    println!("pair-share: the guest's bytes and trigger came; PASS");
    // The guest's last wait ends on our trigger: keep the grants until it
    // has said so.
    await_node(&client, &format!("/local/domain/{guest}/data/pair-result"))?;
    Ok(())
}

fn accept() -> Result<()> {
    guest_part("data/pair-result", "", use_offer)
}

/// Accepts and plays the guest's part: `ok`, or `refused: WHY` when the
/// grants refused this domain.
fn use_offer(client: &Client, me: DomId) -> Result<String> {
    let offer = PairOffer::parse(await_node(client, "data/pair-offer")?.trim())?;
    let (mut grants, channels) = xen_handles()?;
    let mut share = match PairShare::accept(SHARE, &mut grants, channels, me, &offer) {
        Ok(share) => share,
        Err(e) => return Ok(format!("refused: {e}")),
    };
    let got = read_bytes(&share, 0, 9);
    if got != b"from dom0" {
        bail!("dom0's bytes: {:?}", String::from_utf8_lossy(&got));
    }
    share.pages().shared_mem().write_bytes(PAGE_SIZE, b"from guest");
    share.trigger(3)?;
    await_triggers(&mut share, 1 << 5).context("dom0's trigger")?;
    Ok("ok".to_owned())
}

fn vdevice_host(guest: DomId) -> Result<()> {
    let client = Client::open().context("connecting to xenstored")?;
    let (mut grants, channels) = xen_handles()?;
    let (mut share, offer) =
        PairShare::offer(PAGE_SHARE, &mut grants, channels, guest, 1).context("offering the page")?;
    let mut host = VdeviceHost::new(&mut share);
    let perms = xsim::toolstack::perms(&[(0, Access::None), (guest, Access::Read)]);
    publish(&client, &format!("/local/domain/{guest}/vdevice/page"), &offer.to_text(), &perms)?;
    let dir = format!("/local/domain/{guest}/vdevice");
    client.set_perms(&dir, &perms).with_context(|| format!("setting the permissions of {dir}"))?;
    let entry = Entry { kind: kind::NET, numpages: 1, features: 0, share: 99 };
    let (slot, bits) = host.add(entry, PATIENCE).map_err(|e| anyhow::anyhow!("adding a device: {e}"))?;
    let want = status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK;
    if bits & want != want {
        bail!("the guest's bus answered status {bits:#x}, not {want:#x}");
    }
    println!("pair-share: the guest's bus took the device in slot {slot} (status {bits:#x})");
    host.remove(slot, PATIENCE).map_err(|e| anyhow::anyhow!("removing the device: {e}"))?;
    println!("pair-share: the guest acknowledged the removal");
    let result = await_node(&client, &format!("/local/domain/{guest}/data/vdevice-result"))?;
    if result != "ok" {
        bail!("the guest's bus: {result}");
    }
    // The offer stays in the store after this process (and its grants)
    // ends, as an offer does when dom0's service dies: the guest's next
    // bus (`xsim-guest xensnet` in tests/xen, against vdeviced) must
    // refuse it and wait for a live one.
    println!("pair-share: vdevice page on a two-domain share; PASS");
    Ok(())
}

/// Takes LAN devices and lets them go; nothing more.
struct Null;

impl Driver for Null {
    fn name(&self) -> &str {
        "null"
    }

    fn kind(&self) -> u16 {
        kind::NET
    }

    fn probe(&mut self, device: &Device) -> Result<(), String> {
        println!("pair-share: probed {device:?}");
        Ok(())
    }

    fn remove(&mut self, device: &Device) {
        println!("pair-share: removed {device:?}");
    }
}

fn vdevice_bus() -> Result<()> {
    guest_part("data/vdevice-result", "vdevice bus ", run_bus)
}

/// Runs a bus on the page dom0 offers until its one device came and went.
fn run_bus(client: &Client, me: DomId) -> Result<String> {
    let offer = PairOffer::parse(await_node(client, "vdevice/page")?.trim())?;
    let (mut grants, channels) = xen_handles()?;
    let mut page = PairShare::accept(PAGE_SHARE, &mut grants, channels, me, &offer).context("accepting the page")?;
    let mut bus = Bus::new();
    bus.register(Box::new(Null));
    let deadline = Instant::now() + PATIENCE;
    let (mut probed, mut removed) = (false, false);
    while !(probed && removed) {
        if Instant::now() > deadline {
            bail!("the device never came and went (probed {probed}, removed {removed})");
        }
        for event in bus.poll(&mut page)? {
            println!("pair-share: {event:?}");
            match event {
                BusEvent::Probed { .. } => probed = true,
                BusEvent::Removed { .. } if probed => removed = true,
                other => bail!("unexpected bus event {other:?}"),
            }
        }
        page.wait(Some(Duration::from_millis(200)))?;
    }
    Ok("ok".to_owned())
}

fn block_server(guest: DomId) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let client = Client::open().context("connecting to xenstored")?;
    let path = std::env::temp_dir().join(format!("xensblk-{guest}.img"));
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    file.set_len(4 << 20)?;
    let (mut grants, channels) = xen_handles()?;
    let pages = xen_share::blk::BLK_PAGES;
    let (mut share, offer) =
        PairShare::offer(BLOCK_SHARE, &mut grants, channels, guest, pages).context("offering the disk's share")?;
    let offer_path = format!("/local/domain/{guest}/data/blk-offer");
    publish(&client, &offer_path, &offer.to_text(), &PermList::owned_by(guest, Access::None))?;
    println!("pair-share: serving {} ({pages} pages) to domain {guest}", path.display());
    // Served until the guest says how it went, or fails to within
    // PATIENCE (the serving stops either way).
    let result_path = format!("/local/domain/{guest}/data/blk-result");
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || -> Result<String> {
            let result = Client::open().map_err(anyhow::Error::from).and_then(|c| await_node(&c, &result_path));
            done.store(true, Ordering::Release);
            result
        })
    };
    xen_share::blk::serve(&mut share, &file, Duration::from_millis(100), &|| done.load(Ordering::Acquire))
        .context("serving")?;
    let result = watcher.join().map_err(|_| anyhow::anyhow!("the watcher panicked"))??;
    if result != "ok" {
        bail!("the guest's client: {result}");
    }
    let mut image = vec![0; 1 << 20];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut image, 0)?;
    if image != pattern() {
        bail!("the image does not hold what the guest wrote");
    }
    let _ = std::fs::remove_file(&path);
    println!("pair-share: xensblk on a two-domain share: the guest's 1 MiB is in the image; PASS");
    Ok(())
}

fn block_client() -> Result<()> {
    guest_part("data/blk-result", "block client ", run_client)
}

/// Writes the pattern, flushes and reads it back through xensblk.
fn run_client(client: &Client, me: DomId) -> Result<String> {
    let offer = PairOffer::parse(await_node(client, "data/blk-offer")?.trim())?;
    let (mut grants, channels) = xen_handles()?;
    let share = PairShare::accept(BLOCK_SHARE, &mut grants, channels, me, &offer).context("accepting the disk")?;
    let mut disk = xen_share::blk::Disk::open(Box::new(share), PATIENCE).context("opening the disk")?;
    if disk.len() != 4 << 20 {
        bail!("the disk is {} bytes, not 4 MiB", disk.len());
    }
    let data = pattern();
    disk.write_at(&data, 0).context("writing")?;
    disk.flush().context("flushing")?;
    let mut back = vec![0; data.len()];
    disk.read_at(&mut back, 0).context("reading back")?;
    if back != data {
        bail!("what came back differs from what was written");
    }
    Ok("ok".to_owned())
}
