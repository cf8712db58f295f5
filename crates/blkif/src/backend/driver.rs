//! The xenbus part of the backend (blkback's `xenbus.c`, QEMU's
//! `xen-block.c`): at probe, open the image named by `params` and write
//! what the frontend reads;
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

use crate::abi::{MAX_RING_PAGE_ORDER, SECTOR_SIZE, VDISK_CDROM, VDISK_READONLY};
use crate::backend::data_pages::DataPages;
use crate::backend::disk::Disk;
use crate::backend::hub::Hub;
use crate::backend::params::{image_path, ParamsError};
use crate::backend::ring_config::RingConfig;
use crate::backend::served::Served;

/// `EIO`, for failures without an errno of their own.
const EIO: i32 = 5;
/// `EINVAL`, for a `params` that names no image.
const EINVAL: i32 = 22;
/// `EOPNOTSUPP`, for an image format this backend does not serve.
const EOPNOTSUPP: i32 = 95;

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

/// A platform failure as a fatal device error.
fn fatal(err: &io::Error, what: &str) -> Error {
    Error::driver(err.raw_os_error().unwrap_or(EIO), format!("{what}: {err}"))
}

/// What the toolstack wrote for the device, as this backend reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    /// `params`, as written.
    params: String,
    /// `mode` without a `w` (Linux's blkback: `strchr(mode, 'w')`), or
    /// a CD-ROM. A missing `mode` is writable.
    readonly: bool,
    /// `device-type` `cdrom`: read-only, `info` says `VDISK_CDROM`, as
    /// QEMU's xen-cdrom.
    cdrom: bool,
    /// Discard may be offered: libxl's `discard-enable` is not `0` (it
    /// writes 1 for writable disks unless the configuration says
    /// `no-discard`; missing, as our own toolstack leaves it, is on).
    /// Offered only for writable images.
    discard: bool,
}

impl Settings {
    fn read(dev: &DeviceCtx<'_>) -> Result<Settings, Error> {
        let params: String = dev.read("params")?;
        let mode = optional::<String>(dev, "mode")?;
        let cdrom = optional::<String>(dev, "device-type")?.is_some_and(|t| t.trim() == "cdrom");
        let readonly = cdrom || mode.is_some_and(|m| !m.contains('w'));
        let discard = optional::<String>(dev, "discard-enable")?.is_none_or(|v| v.trim() != "0");
        Ok(Settings { params, readonly, cdrom, discard })
    }
}

/// A key of the device's own directory that may be missing.
fn optional<T: std::str::FromStr>(dev: &DeviceCtx<'_>, key: &str) -> Result<Option<T>, Error> {
    match dev.read(key) {
        Ok(value) => Ok(Some(value)),
        Err(Error::Xs(err)) if err.code() == Some(xenstore::ErrorCode::ENOENT) => Ok(None),
        Err(err) => Err(err),
    }
}

impl Backend for VbdBackend {
    fn probe(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        let settings = Settings::read(dev)?;
        let path = image_path(&settings.params).map_err(|err| {
            let errno = if matches!(err, ParamsError::Format(_)) { EOPNOTSUPP } else { EINVAL };
            Error::driver(errno, format!("params {:?}: {err}", settings.params))
        })?;
        let mut disk =
            Disk::open(Path::new(path), settings.readonly).map_err(|err| fatal(&err, &format!("opening {path}")))?;
        if !settings.discard {
            disk = disk.without_discard();
        }
        let geometry = disk.geometry();
        let mut info = if settings.readonly { VDISK_READONLY } else { 0 };
        if settings.cdrom {
            info |= VDISK_CDROM;
        }
        let mut features: Vec<(&str, &dyn std::fmt::Display)> = vec![
            ("feature-flush-cache", &1),
            ("feature-discard", &0),
            ("feature-persistent", &1),
            ("max-ring-page-order", &MAX_RING_PAGE_ORDER),
            ("sectors", &geometry.sectors),
            ("sector-size", &SECTOR_SIZE),
            ("info", &info),
        ];
        if geometry.discard {
            features[1] = ("feature-discard", &1);
            features.push(("discard-granularity", &SECTOR_SIZE));
            features.push(("discard-alignment", &0));
        }
        dev.publish(&features)?;
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
