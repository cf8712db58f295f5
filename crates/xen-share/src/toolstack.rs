//! The toolstack's side of a domain's vdevice page: one change at a time,
//! each announced with trigger [`CHANGE_TRIGGER`] and waited for until the
//! guest acknowledges it, with a timeout and a clear error.
//!
//! A guest that never answers costs the toolstack its timeout, never a
//! half-written page: each change is one entry, written before `change`
//! moves. Two toolstack processes must not change one page at once (the
//! caller serialises them, e.g. with a lock file).

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use xen_platform::share::{Share, TRIGGER_CHANGED};

use crate::page::{kind, status, Entry, Page, MAX_SLOTS};

/// The trigger both sides raise on a vdevice page's share: the toolstack
/// after a change, the guest after acknowledging.
pub const CHANGE_TRIGGER: u32 = 0;

/// How often the page is looked at while waiting, whatever the triggers
/// say (another process of dom0 may take them).
const RECHECK: Duration = Duration::from_millis(10);

/// Why a change did not complete.
#[derive(Debug)]
pub enum VdeviceError {
    /// The guest did not acknowledge change `change` within `waited`.
    Timeout {
        /// The change waited for.
        change: u32,
        /// How long.
        waited: Duration,
        /// The slot's status bits when the wait ended.
        status: u32,
    },
    /// The page has no free slot.
    Full,
    /// The domain (and its page) is gone.
    Gone,
    /// The platform failed.
    Io(io::Error),
}

impl fmt::Display for VdeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VdeviceError::Timeout { change, waited, status: bits } => write!(
                f,
                "the guest did not acknowledge change {change} within {:.1} s (device status: {})",
                waited.as_secs_f64(),
                status::describe(*bits)
            ),
            VdeviceError::Full => write!(f, "the domain's vdevice page is full ({MAX_SLOTS} devices)"),
            VdeviceError::Gone => write!(f, "the domain is gone"),
            VdeviceError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VdeviceError {}

impl From<io::Error> for VdeviceError {
    fn from(e: io::Error) -> VdeviceError {
        VdeviceError::Io(e)
    }
}

/// dom0's hold on one domain's vdevice page.
#[derive(Debug)]
pub struct VdeviceHost<'s> {
    share: &'s mut dyn Share,
}

impl<'s> VdeviceHost<'s> {
    /// Takes `share` (dom0's attachment of the domain's vdevice share) and
    /// sets the page up if it is new.
    pub fn new(share: &'s mut dyn Share) -> VdeviceHost<'s> {
        Page::new(share.pages().shared_mem()).set_up();
        VdeviceHost { share }
    }

    fn page(&self) -> Page<'_> {
        Page::new(self.share.pages().shared_mem())
    }

    /// Adds a device: writes `entry` into a free slot, announces it, and
    /// waits up to `timeout` for the guest's acknowledgement. Returns the
    /// slot and its status bits then (a guest without a driver for it
    /// answers `ACKNOWLEDGE` alone; a driver that failed, `FAILED`).
    pub fn add(&mut self, entry: Entry, timeout: Duration) -> Result<(usize, u32), VdeviceError> {
        assert_ne!(entry.kind, kind::FREE, "a device has a type");
        let page = self.page();
        let slot = (0..MAX_SLOTS).find(|&slot| page.entry(slot).is_none()).ok_or(VdeviceError::Full)?;
        page.write_entry(slot, entry);
        let change = page.bump_change();
        self.announce_and_wait(change, slot, 0, timeout)?;
        Ok((slot, self.page().status(slot)))
    }

    /// Removes the device in `slot`: sets `REMOVED`, announces it, waits up
    /// to `timeout` for `REMOVED_ACK`, then frees the slot. On a timeout
    /// the slot stays (removed, unacknowledged) for the caller to decide:
    /// [`VdeviceHost::free`] forces it.
    pub fn remove(&mut self, slot: usize, timeout: Duration) -> Result<(), VdeviceError> {
        let page = self.page();
        page.set_status(slot, status::REMOVED);
        let change = page.bump_change();
        self.announce_and_wait(change, slot, status::REMOVED_ACK, timeout)?;
        self.page().free(slot);
        Ok(())
    }

    /// Frees `slot` without the guest (after a removal it did not
    /// acknowledge).
    pub fn free(&mut self, slot: usize) {
        self.page().free(slot);
    }

    /// Waits up to `timeout` until `slot`'s status has every bit of
    /// `bits` (a block device's server running: `DRIVER_OK`). `FAILED`
    /// ends the wait early with a timeout error carrying the status.
    pub fn wait_status(&mut self, slot: usize, bits: u32, timeout: Duration) -> Result<u32, VdeviceError> {
        let change = self.page().change();
        self.wait(change, slot, bits, timeout)?;
        Ok(self.page().status(slot))
    }

    /// The status bits of `slot`.
    pub fn status(&self, slot: usize) -> u32 {
        self.page().status(slot)
    }

    /// The entries in use, with their status.
    pub fn entries(&self) -> Vec<(usize, Entry, u32)> {
        let page = self.page();
        (0..page.slots()).filter_map(|slot| page.entry(slot).map(|e| (slot, e, page.status(slot)))).collect()
    }

    fn announce_and_wait(
        &mut self,
        change: u32,
        slot: usize,
        bits: u32,
        timeout: Duration,
    ) -> Result<(), VdeviceError> {
        self.share.trigger(CHANGE_TRIGGER)?;
        self.wait(change, slot, bits, timeout)
    }

    /// Waits until the guest acknowledged `change` and `slot` has `bits`.
    fn wait(&mut self, change: u32, slot: usize, bits: u32, timeout: Duration) -> Result<(), VdeviceError> {
        let started = Instant::now();
        loop {
            let page = self.page();
            let acked = page.acknowledged().wrapping_sub(change) < u32::MAX / 2;
            let st = page.status(slot);
            if acked && st & bits == bits {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout || (acked && st & status::FAILED != 0) {
                return Err(VdeviceError::Timeout { change, waited, status: st });
            }
            self.share.wait(Some(RECHECK.min(timeout - waited)))?;
            if self.share.take_pending()? & 1 << TRIGGER_CHANGED != 0 {
                // The page's share changed: it ends only with its domain.
                match self.share.refresh() {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(2) => return Err(VdeviceError::Gone),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}
