//! What every device of one frontend shares: the grant and event-channel
//! handles, and each device's queue, details and connection.

use std::collections::BTreeMap;

use xen_platform::{EventChannels, Grants, Port};

use crate::frontend::link::Link;
use crate::frontend::queue::Queue;

/// What the backend said about the disk when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in 512-byte sectors (`sectors`).
    pub sectors: u64,
    /// The disk's logical sector size (`sector-size`).
    pub sector_size: u64,
    /// `info` has `VDISK_READONLY`.
    pub readonly: bool,
    /// `feature-flush-cache` is 1.
    pub flush: bool,
    /// `feature-discard` is 1.
    pub discard: bool,
    /// Both ends offered `feature-persistent`: the backend keeps the data
    /// pages mapped.
    pub persistent: bool,
}

/// One device as the frontend holds it.
#[derive(Debug, Default)]
pub(crate) struct FrontDevice {
    pub(crate) queue: Queue,
    /// Set while the backend is connected.
    pub(crate) info: Option<DiskInfo>,
    pub(crate) link: Option<Link>,
}

/// The shared state of a frontend.
#[derive(Debug)]
pub(crate) struct FrontHub {
    pub(crate) grants: Box<dyn Grants>,
    pub(crate) events: Box<dyn EventChannels>,
    pub(crate) ring_page_order: u32,
    /// Whether to offer `feature-persistent`.
    pub(crate) persistent: bool,
    pub(crate) devices: BTreeMap<String, FrontDevice>,
}

impl FrontHub {
    pub(crate) fn add_device(&mut self, dir: &str) {
        self.devices.entry(dir.to_owned()).or_default();
    }

    pub(crate) fn set_link(&mut self, dir: &str, link: Link) {
        if let Some(device) = self.devices.get_mut(dir) {
            device.queue.set_slots(link.slots);
            device.link = Some(link);
        }
    }

    pub(crate) fn set_info(&mut self, dir: &str, info: DiskInfo) {
        if let Some(device) = self.devices.get_mut(dir) {
            device.info = Some(info);
        }
    }

    /// Ends a connection: the grants end, the port closes, the requests
    /// in flight wait for the next connection.
    pub(crate) fn drop_link(&mut self, dir: &str) {
        let Some(device) = self.devices.get_mut(dir) else { return };
        device.info = None;
        device.queue.requeue();
        if let Some(link) = device.link.take() {
            let port: Port = link.port;
            drop(link);
            if let Err(err) = self.events.unbind(port) {
                tracing::warn!(device = dir, %err, "could not close the event channel");
            }
        }
    }

    /// The device left the bus: its operations fail. The entry stays so
    /// that their results can still be taken (and a device attached again
    /// at the same place starts from it).
    pub(crate) fn remove_device(&mut self, dir: &str) {
        self.drop_link(dir);
        if let Some(device) = self.devices.get_mut(dir) {
            device.queue.fail_all();
        }
    }
}
