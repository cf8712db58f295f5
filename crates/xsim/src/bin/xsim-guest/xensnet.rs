//! `xsim-guest xensnet`: the guest's xensnet driver ("modprobe xensnet"),
//! hosted and on real Xen.
//! Runs the domain's vdevice bus with a driver for LAN devices: each one
//! joins the LAN's share and carries frames between it and the guest's
//! TAP interface (`xsn0`, made by `xsim create --netns` in the guest's
//! network namespace, attached for us by the hypervisor: `XSIM_TAP_FD`),
//! so ordinary tools (`ping`, TCP) run over the LAN.
//! Prints each bus event; runs until the domain is destroyed.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use xen_platform::hosted::{Host, ENV_TAP_FD};
use xen_platform::relay_share::{RelayMember, RelayOffer};
use xen_platform::share::{Share, ShareRef, Shares, LAN_TAP};
use xen_platform::xen::{XenEventChannels, XenGrants};
use xen_platform::DomId;
use xen_share::net::LanPort;
use xen_share::{kind, Device, Driver};

/// Runs the bus until the domain goes: hosted, or on real Xen (where the
/// page and each LAN's offer come from `vdeviced` through the store, and
/// the driver makes `xsn0` itself).
pub fn run(_args: &[String]) -> Result<()> {
    let driver = match Host::from_guest_env() {
        Ok((host, _)) => {
            let page = crate::vdevice_bus::page(&host)?;
            let tap = Tap::Handed(crate::handed::take_char_device(ENV_TAP_FD));
            let attach: Attach = Box::new(move |share| host.shares().attach(share));
            (page, NetDriver { attach, tap, running: HashMap::new() })
        }
        Err(_) if crate::vdevice_bus::on_xen() => {
            let client = xenstore::Client::open().context("connecting to xenstored")?;
            let me = crate::vdevice_bus::xen_domid(&client)?;
            let page = crate::vdevice_bus::xen_page(&client)?;
            let attach: Attach = Box::new(|share| {
                let offer = RelayOffer::parse(crate::vdevice_bus::xen_offer(share)?.trim())?;
                let member = RelayMember::accept(
                    &mut XenGrants::open()?,
                    Box::new(XenEventChannels::open()?),
                    Box::new(XenEventChannels::open()?),
                    &offer,
                )?;
                Ok(Box::new(member) as Box<dyn Share>)
            });
            (page, NetDriver { attach, tap: Tap::Make(me), running: HashMap::new() })
        }
        Err(e) => return Err(e).context("neither a hosted guest nor a Xen guest"),
    };
    let (page, driver) = driver;
    crate::vdevice_bus::serve(page, Box::new(driver), "xensnet", "waiting for LAN devices")
}

/// How a LAN device attaches its share.
type Attach = Box<dyn FnMut(ShareRef) -> std::io::Result<Box<dyn Share>> + Send>;

/// Where `xsn0` comes from.
enum Tap {
    /// The TAP descriptor the hypervisor handed this guest: each LAN's
    /// pump gets a duplicate, so a LAN removed and added again finds the
    /// interface still attached. Without one (a guest started some other
    /// way), `/dev/net/tun` is opened.
    Handed(Option<OwnedFd>),
    /// On real Xen, made for each LAN with this domid's MAC and address,
    /// gone with its pump.
    Make(DomId),
}

/// Drives LAN devices: one pump thread each.
struct NetDriver {
    attach: Attach,
    tap: Tap,
    running: HashMap<usize, (Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Driver for NetDriver {
    fn name(&self) -> &str {
        "xensnet"
    }

    fn kind(&self) -> u16 {
        kind::NET
    }

    fn probe(&mut self, device: &Device) -> Result<(), String> {
        if !self.running.is_empty() {
            return Err(format!("one LAN per guest: {LAN_TAP} carries another"));
        }
        let share = (self.attach)(device.entry.share).map_err(|e| format!("attaching the LAN: {e}"))?;
        let port = LanPort::join(share).map_err(|e| format!("joining the LAN: {e}"))?;
        let tap = match &self.tap {
            Tap::Handed(Some(fd)) => fd.try_clone().map_err(|e| format!("duplicating {LAN_TAP}'s descriptor: {e}"))?,
            Tap::Handed(None) => xen_platform::hosted::tap::attach(LAN_TAP)
                .map_err(|e| format!("opening {LAN_TAP} (xsim create --netns): {e}"))?,
            Tap::Make(me) => {
                xsim::lan::make_tap(LAN_TAP, *me).map_err(|e| format!("making {LAN_TAP} (is tun loaded?): {e}"))?
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let slot = device.slot;
        let thread = std::thread::spawn(move || {
            if let Err(e) = xsim::lan::pump(port, tap, &flag) {
                println!("xensnet: LAN in slot {slot} stopped: {e}");
            }
        });
        self.running.insert(device.slot, (stop, thread));
        Ok(())
    }

    fn remove(&mut self, device: &Device) {
        if let Some((stop, thread)) = self.running.remove(&device.slot) {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}
