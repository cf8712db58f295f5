//! `xsim-guest xensnet`: the guest's xensnet driver ("modprobe xensnet").
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
use xen_platform::share::{Shares, LAN_TAP};
use xen_share::net::LanPort;
use xen_share::{kind, Device, Driver};

/// Runs the bus until the domain goes.
pub fn run(_args: &[String]) -> Result<()> {
    let (host, _) = Host::from_guest_env().context("not a hosted guest")?;
    let page = crate::vdevice_bus::page(&host)?;
    let tap = crate::handed::take_char_device(ENV_TAP_FD);
    let driver = NetDriver { host, tap, running: HashMap::new() };
    crate::vdevice_bus::serve(page, Box::new(driver), "xensnet", "waiting for LAN devices")
}

/// Drives LAN devices: one pump thread each.
struct NetDriver {
    host: Host,
    /// The TAP descriptor the hypervisor handed this guest: each LAN's
    /// pump gets a duplicate, so a LAN removed and added again finds the
    /// interface still attached. Without one (a guest started some other
    /// way), `/dev/net/tun` is opened.
    tap: Option<OwnedFd>,
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
        let share = self.host.shares().attach(device.entry.share).map_err(|e| format!("attaching the LAN: {e}"))?;
        let port = LanPort::join(share).map_err(|e| format!("joining the LAN: {e}"))?;
        let tap = match &self.tap {
            Some(fd) => fd.try_clone().map_err(|e| format!("duplicating {LAN_TAP}'s descriptor: {e}"))?,
            None => xen_platform::hosted::tap::attach(LAN_TAP)
                .map_err(|e| format!("opening {LAN_TAP} (xsim create --netns): {e}"))?,
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
