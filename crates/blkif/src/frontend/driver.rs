//! The xenbus part of the frontend (blkfront's `talk_to_blkback` and
//! `blkfront_connect`): at connect, grant the ring and data pages, offer
//! an event channel and publish them (with `feature-persistent` 1,
//! unless configured not to); when the backend is connected,
//! read the disk's details; at disconnect, end the grants and put the
//! requests in flight back in the queue.

use std::cell::RefCell;
use std::rc::Rc;

use xenbus::{DeviceCtx, Error, Frontend};

use crate::abi::{PROTOCOL_X86_64, VDISK_READONLY};
use crate::frontend::hub::{DiskInfo, FrontHub};
use crate::frontend::link::Link;

/// `EIO`, for failures without an errno of their own.
const EIO: i32 = 5;

/// One `vbd` device's frontend driver.
#[derive(Debug)]
pub struct VbdFrontend {
    hub: Rc<RefCell<FrontHub>>,
    dir: String,
}

impl VbdFrontend {
    pub(crate) fn new(hub: Rc<RefCell<FrontHub>>, dir: &str) -> VbdFrontend {
        VbdFrontend { hub, dir: dir.to_owned() }
    }
}

/// A key of the other end that may be missing, as 0.
fn flag(dev: &DeviceCtx<'_>, key: &str) -> Result<u64, Error> {
    match dev.read_otherend::<u64>(key) {
        Ok(value) => Ok(value),
        Err(Error::Xs(err)) if err.code() == Some(xenstore::ErrorCode::ENOENT) => Ok(0),
        Err(err) => Err(err),
    }
}

impl Frontend for VbdFrontend {
    fn probe(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.hub.borrow_mut().add_device(&self.dir);
        Ok(())
    }

    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        let backend = dev.otherend_id();
        let offered = u32::try_from(flag(dev, "max-ring-page-order")?).unwrap_or(0);
        let mut hub = self.hub.borrow_mut();
        let order = hub.ring_page_order.min(offered);
        let FrontHub { grants, events, .. } = &mut *hub;
        let link = Link::new(grants.as_mut(), events.as_mut(), backend, order)
            .map_err(|e| Error::driver(e.raw_os_error().unwrap_or(EIO), format!("allocating the ring: {e}")))?;
        let mut keys: Vec<(String, String)> = Vec::new();
        if order == 0 {
            keys.push(("ring-ref".into(), link.ring_refs()[0].to_string()));
        } else {
            keys.push(("ring-page-order".into(), order.to_string()));
            for (i, gref) in link.ring_refs().iter().enumerate() {
                keys.push((format!("ring-ref{i}"), gref.to_string()));
            }
        }
        keys.push(("event-channel".into(), link.port.to_string()));
        keys.push(("protocol".into(), PROTOCOL_X86_64.into()));
        // The pool's pages are granted writable and reused by every
        // request of this connection: blkif.h's promise. Written either
        // way, as Linux does, so no earlier connection's value remains.
        keys.push(("feature-persistent".into(), u8::from(hub.persistent).to_string()));
        let pairs: Vec<(&str, &dyn std::fmt::Display)> =
            keys.iter().map(|(k, v)| (k.as_str(), v as &dyn std::fmt::Display)).collect();
        dev.publish(&pairs)?;
        tracing::info!(device = self.dir, order, port = link.port, "published the ring");
        hub.set_link(&self.dir, link);
        Ok(())
    }

    fn backend_connected(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        let sectors: u64 = dev.read_otherend("sectors")?;
        let sector_size: u64 = dev.read_otherend("sector-size")?;
        let info = flag(dev, "info")?;
        let details = DiskInfo {
            sectors,
            sector_size,
            readonly: info & u64::from(VDISK_READONLY) != 0,
            flush: flag(dev, "feature-flush-cache")? == 1,
            discard: flag(dev, "feature-discard")? == 1,
            persistent: self.hub.borrow().persistent && flag(dev, "feature-persistent")? == 1,
        };
        tracing::info!(device = self.dir, ?details, "backend connected");
        self.hub.borrow_mut().set_info(&self.dir, details);
        Ok(())
    }

    fn disconnect(&mut self, _dev: &DeviceCtx<'_>) {
        self.hub.borrow_mut().drop_link(&self.dir);
    }

    fn remove(&mut self, _dev: &DeviceCtx<'_>) {
        self.hub.borrow_mut().remove_device(&self.dir);
    }
}
