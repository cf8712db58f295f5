//! The xenbus part of the backend (blkback's `xenbus.c`): at probe,
//! open the image named by `params` and write what the frontend reads;
//! at connect, map the ring the frontend published, bind its event
//! channel and keep data pages mapped if the frontend offers
//! `feature-persistent`; at disconnect, unmap (ring and kept pages) and
//! unbind.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;

use xen_platform::Port;
use xenbus::{Backend, DeviceCtx, Error};

use crate::abi::{MAX_RING_PAGE_ORDER, SECTOR_SIZE, VDISK_READONLY};
use crate::backend::data_pages::DataPages;
use crate::backend::disk::Disk;
use crate::backend::hub::Hub;
use crate::backend::ring_config::RingConfig;
use crate::backend::served::Served;

/// `EIO`, for failures without an errno of their own.
const EIO: i32 = 5;

/// One `vbd` device's backend driver.
#[derive(Debug)]
pub struct VbdBackend {
    hub: Rc<RefCell<Hub>>,
    disk: Option<Rc<Disk>>,
    port: Option<Port>,
}

impl VbdBackend {
    pub(crate) fn new(hub: Rc<RefCell<Hub>>) -> VbdBackend {
        VbdBackend { hub, disk: None, port: None }
    }
}

/// The image path in a `params` node: libxl writes the target, QEMU's
/// disks may carry a format before it (`aio:/images/a.img`).
pub fn image_path(params: &str) -> &str {
    for format in ["aio:", "raw:", "file:", "phy:"] {
        if let Some(path) = params.strip_prefix(format) {
            return path;
        }
    }
    params
}

/// A platform failure as a fatal device error.
fn fatal(err: &io::Error, what: &str) -> Error {
    Error::driver(err.raw_os_error().unwrap_or(EIO), format!("{what}: {err}"))
}

impl Backend for VbdBackend {
    fn probe(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        let params: String = dev.read("params")?;
        let readonly = match dev.read::<String>("mode") {
            Ok(mode) => mode.starts_with('r'),
            Err(Error::Xs(err)) if err.code() == Some(xenstore::ErrorCode::ENOENT) => false,
            Err(err) => return Err(err),
        };
        let path = image_path(params.trim());
        let disk = Disk::open(Path::new(path), readonly).map_err(|err| fatal(&err, &format!("opening {path}")))?;
        let geometry = disk.geometry();
        let info = if readonly { VDISK_READONLY } else { 0 };
        dev.publish(&[
            ("feature-flush-cache", &1),
            ("feature-discard", &u8::from(geometry.discard)),
            ("feature-persistent", &1),
            ("discard-granularity", &SECTOR_SIZE),
            ("max-ring-page-order", &MAX_RING_PAGE_ORDER),
            ("sectors", &geometry.sectors),
            ("sector-size", &SECTOR_SIZE),
            ("info", &info),
        ])?;
        self.disk = Some(Rc::new(disk));
        Ok(())
    }

    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        let Some(disk) = self.disk.clone() else { return Err(Error::driver(EIO, "no image opened")) };
        let config = RingConfig::read(dev)?;
        let frontend = dev.otherend_id();
        let mut hub = self.hub.borrow_mut();
        let ring = hub.grants.map_grants(frontend, &config.refs, true).map_err(|e| fatal(&e, "mapping ring-ref"))?;
        let cursors =
            Served::fresh_cursors(&ring).map_err(|e| Error::driver(EIO, format!("ring pages hold no ring: {e}")))?;
        let port = hub
            .events
            .bind_interdomain(frontend, config.port)
            .map_err(|e| fatal(&e, &format!("binding event-channel {}", config.port)))?;
        let notifier = match hub.events.notifier(port) {
            Ok(notifier) => notifier,
            Err(err) => {
                let _ = hub.events.unbind(port);
                return Err(fatal(&err, "notifier"));
            }
        };
        let pages = DataPages::new(frontend, config.persistent);
        hub.attach(Served::new(dev.dev.dir(), port, notifier, ring, cursors, disk, pages));
        self.port = Some(port);
        let persistent = config.persistent;
        tracing::info!(device = dev.dev.dir(), pages = config.refs.len(), port, persistent, "connected");
        Ok(())
    }

    fn disconnect(&mut self, dev: &DeviceCtx<'_>) {
        if let Some(port) = self.port.take() {
            self.hub.borrow_mut().detach(port);
            tracing::info!(device = dev.dev.dir(), "disconnected: ring unmapped, port unbound");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_may_carry_a_format_before_the_path() {
        assert_eq!(image_path("/images/a.img"), "/images/a.img");
        assert_eq!(image_path("aio:/images/a.img"), "/images/a.img");
    }
}
