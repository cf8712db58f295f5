//! `xsim-guest relay-share lan GUEST...` (in dom0) and `relay-share
//! lan-member` (in each guest): xensnet on real Xen, over a share of
//! several guests that dom0's service relays
//! (`xen_platform::relay_share`), for `tests/xen`.
//!
//! dom0 starts the service, makes a LAN share of itself and the guests,
//! joins it with a TAP interface (`xsn0`, `10.88.255.254/16`) and writes
//! each guest's offer to its `data/lan-offer` and the members' addresses
//! to its `data/lan-peers`. Each guest accepts, joins with a TAP of its
//! own (its domid's MAC and address, as hosted) and pings every other
//! member with busybox's `ping`, then writes `data/lan-result` (`ok` or
//! `failed: WHY`). dom0 then pings each guest itself, removes the first
//! guest from the LAN and checks that it is cut off (its port hears
//! `EPERM`, its `data/lan-removed`; dom0's ping to it fails) while the
//! others still answer. Each check prints `relay-share: PASS what` or
//! the command fails saying why.

use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xen_platform::hosted::tap;
use xen_platform::relay_share::{RelayMember, RelayOffer, RelayShares, GNTALLOC_LIMIT};
use xen_platform::share::{lan_ip, lan_mac, Shares, LAN_PREFIX, LAN_TAP};
use xen_platform::xen::{XenEventChannels, XenGrants};
use xen_platform::DomId;
use xen_share::net::{LanPort, LAN_PAGES};
use xenstore::{Access, Client, PermList, Store};

use crate::pair_share::{await_node, await_node_within, publish, PATIENCE};

pub fn run(args: &[String]) -> Result<()> {
    match args {
        [what, guests @ ..] if what == "lan" && !guests.is_empty() => {
            let guests = guests.iter().map(|g| g.parse::<DomId>()).collect::<Result<Vec<_>, _>>().context("GUEST")?;
            lan(&guests)
        }
        [what] if what == "lan-member" => lan_member(),
        _ => bail!("usage: xsim-guest relay-share lan GUEST... | lan-member"),
    }
}

/// Makes this domain's end of the LAN: a TAP interface with `domid`'s
/// MAC and address, up (busybox's `ip` does).
fn lan_tap(domid: DomId) -> Result<OwnedFd> {
    let fd = tap::attach(LAN_TAP).with_context(|| format!("making {LAN_TAP} (is tun loaded?)"))?;
    let mac = lan_mac(domid).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let address = format!("{}/{LAN_PREFIX}", lan_ip(domid));
    tap::ip(&["link", "set", "dev", LAN_TAP, "address", &mac])?;
    tap::ip(&["addr", "add", &address, "dev", LAN_TAP])?;
    tap::ip(&["link", "set", "dev", LAN_TAP, "up"])?;
    Ok(fd)
}

/// Carries frames between `port` and `tap` in a thread until `stop`;
/// the thread returns why it ended.
fn pump(port: LanPort, tap: OwnedFd) -> (Arc<AtomicBool>, JoinHandle<std::io::Result<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    (stop, std::thread::spawn(move || xsim::lan::pump(port, tap, &flag)))
}

/// Whether `address` answers busybox's `ping` (3 echoes within 20 s, or
/// 1 within 3 s when `expect_silence`); its output is printed.
fn ping(address: &str, expect_silence: bool) -> Result<bool> {
    let (count, deadline) = if expect_silence { ("1", "3") } else { ("3", "20") };
    let output = Command::new("ping").args(["-c", count, "-w", deadline, address]).output().context("running ping")?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(output.status.success())
}

fn lan(guests: &[DomId]) -> Result<()> {
    let client = Client::open().context("connecting to xenstored")?;
    let service = RelayShares::start(Box::new(XenGrants::open()?), Box::new(XenEventChannels::open()?), GNTALLOC_LIMIT)
        .context("starting the share service")?;
    let members: Vec<DomId> = std::iter::once(0).chain(guests.iter().copied()).collect();
    let share = service.create(LAN_PAGES, &members).context("making the LAN's share")?;
    println!("relay-share: LAN share {share} of {members:?}: {} pages granted", service.granted_pages());
    let port = LanPort::join(service.attach(share)?).context("dom0 joining the LAN")?;
    let (stop, pumping) = pump(port, lan_tap(0)?);
    let peers: Vec<String> = members.iter().map(|&d| lan_ip(d).to_string()).collect();
    for &guest in guests {
        let offer = service.offer(share, guest)?.to_text();
        let owned = PermList::owned_by(guest, Access::None);
        publish(&client, &format!("/local/domain/{guest}/data/lan-peers"), &peers.join(" "), &owned)?;
        publish(&client, &format!("/local/domain/{guest}/data/lan-offer"), &offer, &owned)?;
    }
    let checked = check_lan(&client, &service, share, guests);
    stop.store(true, Ordering::Relaxed);
    let pumped = pumping.join().map_err(|_| anyhow::anyhow!("dom0's pump panicked"))?;
    checked?;
    pumped.context("dom0's end of the LAN")?;
    Ok(())
}

fn check_lan(client: &Client, service: &RelayShares, share: u32, guests: &[DomId]) -> Result<()> {
    for &guest in guests {
        let result = await_node(client, &format!("/local/domain/{guest}/data/lan-result"))?;
        if result != "ok" {
            bail!("domain {guest}: {result}");
        }
    }
    for &guest in guests {
        if !ping(&lan_ip(guest).to_string(), false)? {
            bail!("dom0 cannot ping domain {guest}");
        }
    }
    println!("relay-share: PASS every member of the LAN pings every other");
    let (&removed, kept) = guests.split_first().context("no guest")?;
    service.remove_member(share, removed).context("removing a member")?;
    let heard = await_node(client, &format!("/local/domain/{removed}/data/lan-removed"))?;
    if !heard.starts_with("removed") {
        bail!("the removed domain {removed}: {heard}");
    }
    if ping(&lan_ip(removed).to_string(), true)? {
        bail!("dom0 still pings the removed domain {removed}");
    }
    for &guest in kept {
        if !ping(&lan_ip(guest).to_string(), false)? {
            bail!("dom0 cannot ping domain {guest} after domain {removed} left");
        }
    }
    println!("relay-share: PASS a removed member is cut off ({heard}), the others still answer");
    for &guest in guests {
        publish(
            client,
            &format!("/local/domain/{guest}/data/lan-done"),
            "1",
            &PermList::owned_by(guest, Access::None),
        )?;
    }
    Ok(())
}

fn lan_member() -> Result<()> {
    let client = Client::open().context("connecting to xenstored")?;
    let me: DomId = String::from_utf8(client.read("domid")?)?.trim().parse()?;
    let joined = join_lan(&client, me);
    let (stop, pumping) = match joined {
        Ok(running) => running,
        Err(e) => {
            client.write("data/lan-result", format!("failed: {e:#}").as_bytes())?;
            return Err(e);
        }
    };
    // Until dom0 removes this domain (the pump ends with EPERM) or says
    // it is done.
    let deadline = Instant::now() + PATIENCE;
    while !pumping.is_finished() && client.read("data/lan-done").is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let ended = pumping.join().map_err(|_| anyhow::anyhow!("the pump panicked"))?;
    let said = match ended {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => format!("removed: {e}"),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => "the LAN ended".to_owned(),
        Err(e) => format!("failed: {e}"),
        Ok(()) => "stopped".to_owned(),
    };
    println!("relay-share: LAN port: {said}");
    client.write("data/lan-removed", said.as_bytes())?;
    Ok(())
}

/// Accepts dom0's offer, joins the LAN and pings the other members;
/// says how it went in `data/lan-result`.
fn join_lan(client: &Client, me: DomId) -> Result<(Arc<AtomicBool>, JoinHandle<std::io::Result<()>>)> {
    // dom0 offers the LAN after its other checks with the guests.
    let offer = RelayOffer::parse(await_node_within(client, "data/lan-offer", 3 * PATIENCE)?.trim())?;
    let member = RelayMember::accept(
        &mut XenGrants::open()?,
        Box::new(XenEventChannels::open()?),
        Box::new(XenEventChannels::open()?),
        &offer,
    )
    .context("accepting the LAN's share")?;
    let port = LanPort::join(Box::new(member)).context("joining the LAN")?;
    let running = pump(port, lan_tap(me)?);
    let peers = await_node(client, "data/lan-peers")?;
    let own = lan_ip(me).to_string();
    for address in peers.split_whitespace().filter(|a| *a != own) {
        if !ping(address, false)? {
            running.0.store(true, Ordering::Relaxed);
            bail!("no answer from {address}");
        }
    }
    client.write("data/lan-result", b"ok")?;
    Ok(running)
}
