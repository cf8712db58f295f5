//! The guest's device bus: on each change of its vdevice page, binds new
//! entries to the driver that takes their type and feature bits (probe),
//! lets removed ones go (remove), records each outcome in the entry's
//! status and acknowledges the change.

use std::collections::BTreeMap;
use std::io;

use xen_platform::share::{Share, TRIGGER_CHANGED};

use crate::page::{status, Entry, Page};
use crate::toolstack::CHANGE_TRIGGER;

/// A device the bus found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// Its slot in the page.
    pub slot: usize,
    /// What the toolstack wrote.
    pub entry: Entry,
}

/// A driver: takes devices of one type whose feature bits include the
/// ones it needs.
pub trait Driver: Send {
    /// Its name, for logs.
    fn name(&self) -> &str;

    /// The device type it drives ([`crate::page::kind`]).
    fn kind(&self) -> u16;

    /// Feature bits a device must have for this driver.
    fn needs(&self) -> u32 {
        0
    }

    /// Starts driving `device`; an error marks the device `FAILED`.
    fn probe(&mut self, device: &Device) -> Result<(), String>;

    /// Stops driving `device` (removed by the toolstack, or rewritten).
    fn remove(&mut self, device: &Device);
}

/// What one scan did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// `driver` runs the device.
    Probed {
        /// The device.
        device: Device,
        /// The driver's name.
        driver: String,
    },
    /// `driver` could not run the device.
    Failed {
        /// The device.
        device: Device,
        /// The driver's name.
        driver: String,
        /// Its reason.
        why: String,
    },
    /// No driver takes the device (acknowledged, not driven).
    NoDriver {
        /// The device.
        device: Device,
    },
    /// The device went (its driver, if any, let go).
    Removed {
        /// The device.
        device: Device,
    },
}

/// The bus: its drivers and the devices bound to them, by slot.
#[derive(Default)]
pub struct Bus {
    drivers: Vec<Box<dyn Driver>>,
    bound: BTreeMap<usize, (Device, Option<usize>)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let drivers: Vec<&str> = self.drivers.iter().map(|d| d.name()).collect();
        f.debug_struct("Bus").field("drivers", &drivers).field("bound", &self.bound).finish()
    }
}

impl Bus {
    /// A bus with no drivers.
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Adds a driver (the first registered that matches takes a device).
    pub fn register(&mut self, driver: Box<dyn Driver>) {
        self.drivers.push(driver);
    }

    /// The devices bound, by slot.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.bound.values().map(|(device, _)| device)
    }

    /// Looks at the whole page: lets go of devices removed or rewritten,
    /// probes new ones, then acknowledges the change it read first.
    pub fn scan(&mut self, page: Page<'_>) -> Vec<BusEvent> {
        let change = page.change();
        let mut events = Vec::new();
        let gone: Vec<usize> = self
            .bound
            .iter()
            .filter(|(&slot, (device, _))| {
                page.status(slot) & status::REMOVED != 0 || page.entry(slot) != Some(device.entry)
            })
            .map(|(&slot, _)| slot)
            .collect();
        for slot in gone {
            if let Some((device, driver)) = self.bound.remove(&slot) {
                if let Some(driver) = driver.and_then(|d| self.drivers.get_mut(d)) {
                    driver.remove(&device);
                }
                if page.status(slot) & status::REMOVED != 0 {
                    page.set_status(slot, status::REMOVED_ACK);
                }
                events.push(BusEvent::Removed { device });
            }
        }
        for slot in 0..page.slots() {
            if self.bound.contains_key(&slot) {
                continue;
            }
            let Some(entry) = page.entry(slot) else { continue };
            if page.status(slot) & status::REMOVED != 0 {
                // Removed before this bus took it (a bus started late).
                page.set_status(slot, status::REMOVED_ACK);
                continue;
            }
            let device = Device { slot, entry };
            page.set_status(slot, status::ACKNOWLEDGE);
            let matching =
                self.drivers.iter().position(|d| d.kind() == entry.kind && entry.features & d.needs() == d.needs());
            match matching {
                None => events.push(BusEvent::NoDriver { device }),
                Some(index) => {
                    let driver = &mut self.drivers[index];
                    page.set_status(slot, status::DRIVER);
                    match driver.probe(&device) {
                        Ok(()) => {
                            page.set_status(slot, status::DRIVER_OK);
                            events.push(BusEvent::Probed { device, driver: driver.name().to_owned() });
                        }
                        Err(why) => {
                            page.set_status(slot, status::FAILED);
                            events.push(BusEvent::Failed { device, driver: driver.name().to_owned(), why });
                        }
                    }
                }
            }
            self.bound.insert(slot, (device, matching));
        }
        page.acknowledge(change);
        events
    }

    /// Handles what the page's share says happened: scans when the
    /// toolstack announced a change (or a wake-up lost its bits), and
    /// tells the toolstack it acknowledged. Does not block.
    pub fn poll(&mut self, share: &mut dyn Share) -> io::Result<Vec<BusEvent>> {
        let pending = share.take_pending()?;
        if pending & 1 << TRIGGER_CHANGED != 0 {
            share.refresh()?;
        }
        let page = Page::new(share.pages().shared_mem());
        if !page.is_set_up() || page.acknowledged() == page.change() && pending & 1 << CHANGE_TRIGGER == 0 {
            return Ok(Vec::new());
        }
        let events = self.scan(page);
        share.trigger(CHANGE_TRIGGER)?;
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::kind;
    use std::sync::{Arc, Mutex};
    use xen_shared_mem::OwnedMem;

    /// A driver that records what it was asked, failing probes of devices
    /// whose share is 13.
    struct Recorder {
        kind: u16,
        needs: u32,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Driver for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn kind(&self) -> u16 {
            self.kind
        }
        fn needs(&self) -> u32 {
            self.needs
        }
        fn probe(&mut self, device: &Device) -> Result<(), String> {
            self.log.lock().unwrap().push(format!("probe {}", device.slot));
            if device.entry.share == 13 {
                Err("unlucky".into())
            } else {
                Ok(())
            }
        }
        fn remove(&mut self, device: &Device) {
            self.log.lock().unwrap().push(format!("remove {}", device.slot));
        }
    }

    fn net(share: u32, features: u32) -> Entry {
        Entry { kind: kind::NET, numpages: 1, features, share }
    }

    #[test]
    fn devices_are_probed_by_type_and_features_and_removed_with_acknowledgement() {
        let owned = OwnedMem::pages(1);
        let page = Page::new(owned.mem());
        page.set_up();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut bus = Bus::new();
        bus.register(Box::new(Recorder { kind: kind::NET, needs: 0b10, log: log.clone() }));

        page.write_entry(0, net(5, 0b11));
        page.write_entry(1, net(6, 0b01)); // lacks the feature the driver needs
        page.write_entry(2, net(13, 0b10)); // its probe fails
        page.write_entry(3, Entry { kind: kind::BLOCK, ..net(7, 0) });
        let change = page.bump_change();
        let events = bus.scan(page);
        assert_eq!(page.acknowledged(), change);
        assert_eq!(events.len(), 4);
        use status::*;
        assert_eq!(page.status(0), ACKNOWLEDGE | DRIVER | DRIVER_OK);
        assert_eq!(page.status(1), ACKNOWLEDGE);
        assert_eq!(page.status(2), ACKNOWLEDGE | DRIVER | FAILED);
        assert_eq!(page.status(3), ACKNOWLEDGE);
        assert_eq!(*log.lock().unwrap(), ["probe 0", "probe 2"]);

        // A scan with nothing new probes nothing again.
        assert!(bus.scan(page).is_empty());

        page.set_status(0, REMOVED);
        page.set_status(3, REMOVED);
        page.bump_change();
        let events = bus.scan(page);
        assert_eq!(events.len(), 2);
        assert_ne!(page.status(0) & REMOVED_ACK, 0);
        assert_ne!(page.status(3) & REMOVED_ACK, 0);
        assert_eq!(*log.lock().unwrap(), ["probe 0", "probe 2", "remove 0"]);

        // The toolstack frees and reuses the slot: a new device there.
        page.free(0);
        page.write_entry(0, net(8, 0b10));
        page.bump_change();
        bus.scan(page);
        assert_eq!(*log.lock().unwrap(), ["probe 0", "probe 2", "remove 0", "probe 0"]);
        assert_eq!(page.status(0), ACKNOWLEDGE | DRIVER | DRIVER_OK);
    }

    #[test]
    fn a_rewritten_entry_is_removed_then_probed_again() {
        let owned = OwnedMem::pages(1);
        let page = Page::new(owned.mem());
        page.set_up();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut bus = Bus::new();
        bus.register(Box::new(Recorder { kind: kind::NET, needs: 0, log: log.clone() }));
        page.write_entry(0, net(5, 0));
        page.bump_change();
        bus.scan(page);
        page.write_entry(0, net(9, 0));
        page.bump_change();
        bus.scan(page);
        assert_eq!(*log.lock().unwrap(), ["probe 0", "remove 0", "probe 0"]);
    }
}
