//! One change to a guest's vdevice page, as both `vdevice` (hosted) and
//! `vdeviced` (real Xen) make it: the entry written and the guest's bus
//! waited for, a driver's failure undone, a removal forced after the
//! timeout. What they have to say besides an error goes to `note`.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use xen_platform::share::Share;
use xen_platform::DomId;
use xen_share::{status, Entry, VdeviceError, VdeviceHost};

/// Writes `entry` into `domid`'s `page` and waits for its bus; the slot.
/// A driver that failed to start the device has it taken out again.
pub fn add_entry(
    page: &mut dyn Share,
    domid: DomId,
    entry: Entry,
    timeout: Duration,
    note: &mut dyn FnMut(String),
) -> Result<usize> {
    let mut host = VdeviceHost::new(page);
    let (slot, bits) = host.add(entry, timeout).map_err(|e| anyhow!("domain {domid}: {e}"))?;
    if bits & status::FAILED != 0 {
        host.remove(slot, timeout).unwrap_or_else(|_| host.free(slot));
        bail!("domain {domid}: its driver failed to start the device");
    }
    if bits & status::DRIVER_OK == 0 {
        note(format!("domain {domid} has no driver for the device (acknowledged only)"));
    }
    Ok(slot)
}

/// Takes the entry in `slot` out of `domid`'s `page`: acknowledged by its
/// bus, or forced after the timeout (said in a note).
pub fn remove_entry(
    page: &mut dyn Share,
    domid: DomId,
    slot: usize,
    timeout: Duration,
    note: &mut dyn FnMut(String),
) -> Result<()> {
    let mut host = VdeviceHost::new(page);
    match host.remove(slot, timeout) {
        Ok(()) | Err(VdeviceError::Gone) => Ok(()),
        Err(e @ VdeviceError::Timeout { .. }) => {
            host.free(slot);
            note(format!("domain {domid}: {e}; removed anyway"));
            Ok(())
        }
        Err(e) => Err(anyhow!("domain {domid}: {e}")),
    }
}
