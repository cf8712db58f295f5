//! Bus enumeration: one role and device type in one domain. The bus
//! watches its root (`device/<type>` for frontends, `backend/<type>` for
//! backends, under the domain's home), probes devices that appear,
//! removes those whose directory vanished, and hands each other-end event
//! to its device.
//!
//! The decisions (what an event concerns, which devices are probed, how
//! a backend starts one, what vanished) are [`crate::enumerate`]'s, shared
//! with the async bus; this file does the I/O and owns the drivers.
//!
//! Which devices are probed: as in Linux, a device whose own `state` is
//! `Initialising` (a device that is not new "is going away after switching
//! to Closed"). A backend also takes over a device that is `online` and
//! neither closing nor closed: that is a backend process restarting. If
//! the device was connected, the frontend's published rings belong to the
//! old process, so the new one closes the device, waits for the frontend
//! to close, and goes back to `InitWait`, which makes the frontend
//! reconnect.
//!
//! What a root event costs does not grow with the number of devices: an
//! event at or below a device directory looks at that one directory (its
//! `state`, or whether it still exists), and only an event above the
//! device level (the root's first event, a whole frontend domain's
//! directory appearing or going) lists what lies below it. Listing the
//! whole root on every event made each attach O(devices): N names
//! transferred and compared with the N devices held.
//!
//! A backend bus may serve one frontend domain only
//! ([`Bus::serving_frontend`]): it then watches and lists
//! `backend/<type>/<fe>` alone, as QEMU's xen-bus does for the domain it
//! was started for (`-xen-domid`), so that one backend process per guest
//! sees neither the other guests' devices nor their events.
//!
//! Call order: [`Bus::start`] once, then [`Bus::poll`] (or
//! [`Bus::handle`] with each event of the connection) for ever.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::time::Duration;

use xenstore::WatchEvent;
use xenstore_wire::DomId;

use crate::conn::Conn;
use crate::device::{Device, DeviceCtx, Outcome};
use crate::driver::{AsBackend, AsFrontend, Backend, Frontend, Hooks};
use crate::enumerate::{self, Probe, Scope, Start};
use crate::error::Error;
use crate::paths;
use crate::state::XenbusState;
use crate::switch;
use crate::transitions::Role;

type Factory = Box<dyn FnMut(&Device) -> Box<dyn Hooks>>;

struct Slot {
    device: Device,
    driver: Box<dyn Hooks>,
}

/// The devices of one type and role in one domain, over connection `C`.
pub struct Bus<C> {
    conn: C,
    role: Role,
    devtype: String,
    domid: DomId,
    root: String,
    /// What the bus watches and lists: the root, or one frontend
    /// domain's directory below it.
    watched: String,
    /// Backends: close a device the toolstack asks to close when no
    /// frontend will answer ([`Bus::closing_unanswered`]).
    close_unanswered: bool,
    token: String,
    factory: Factory,
    devices: BTreeMap<String, Slot>,
}

impl<C> std::fmt::Debug for Bus<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("root", &self.root).field("devices", &self.devices.keys()).finish()
    }
}

impl<C: Conn> Bus<C> {
    /// A frontend bus of domain `domid` for `devtype`; `new_driver` makes
    /// the driver of each probed device.
    pub fn frontend<F: Frontend + 'static>(
        conn: C,
        domid: DomId,
        devtype: &str,
        mut new_driver: impl FnMut(&Device) -> F + 'static,
    ) -> Bus<C> {
        let factory: Factory = Box::new(move |dev| Box::new(AsFrontend(new_driver(dev))));
        Bus::with(conn, Role::Frontend, domid, devtype, factory)
    }

    /// A backend bus of domain `domid` for `devtype`.
    pub fn backend<B: Backend + 'static>(
        conn: C,
        domid: DomId,
        devtype: &str,
        mut new_driver: impl FnMut(&Device) -> B + 'static,
    ) -> Bus<C> {
        let factory: Factory = Box::new(move |dev| Box::new(AsBackend(new_driver(dev))));
        Bus::with(conn, Role::Backend, domid, devtype, factory)
    }

    fn with(conn: C, role: Role, domid: DomId, devtype: &str, factory: Factory) -> Bus<C> {
        let root = paths::bus_root(role, domid, devtype);
        let token = format!("xenbus-bus:{root}");
        let watched = root.clone();
        Bus {
            conn,
            role,
            devtype: devtype.to_owned(),
            domid,
            root,
            watched,
            close_unanswered: false,
            token,
            factory,
            devices: BTreeMap::new(),
        }
    }

    /// Narrows a backend bus to the devices of frontend domain `frontend`:
    /// it watches and lists `backend/<type>/<frontend>` only. Call before
    /// [`Bus::start`]. A frontend bus is left as it is (its devices are
    /// all its own domain's).
    pub fn serving_frontend(mut self, frontend: DomId) -> Bus<C> {
        if self.role == Role::Backend {
            self.watched = paths::child(&self.root, &frontend.to_string());
        }
        self
    }

    /// The connection.
    pub fn conn(&self) -> &C {
        &self.conn
    }

    /// The directory this bus enumerates.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Makes a backend bus close a device at once when the toolstack
    /// writes its `state` Closing (libxl's detach) and the frontend is not
    /// active, so will never answer
    /// ([`crate::handshake::backend_state_written`]), as QEMU's xen-bus
    /// does for its backends. Without it (Linux's backends), such a detach
    /// waits for the frontend and times out. Call before [`Bus::start`].
    pub fn closing_unanswered(mut self) -> Bus<C> {
        self.close_unanswered = self.role == Role::Backend;
        self
    }

    /// The directory this bus watches and lists: the root, or the one
    /// frontend domain's directory below it ([`Bus::serving_frontend`]).
    pub fn watched(&self) -> &str {
        &self.watched
    }

    /// Watches the root, or the one frontend domain's directory (its
    /// first event scans it).
    pub fn start(&mut self) -> Result<(), Error> {
        self.conn.watch(&self.watched, &self.token)?;
        Ok(())
    }

    /// The connection's watch doorbell ([`Conn::doorbell`]), once
    /// [`Bus::start`]ed: a descriptor to wait on beside the devices' own.
    pub fn doorbell(&self) -> Option<OwnedFd> {
        self.conn.doorbell()
    }

    /// The device at `dir`, if the bus has it.
    pub fn device(&self, dir: &str) -> Option<&Device> {
        self.devices.get(dir).map(|slot| &slot.device)
    }

    /// The directories of the devices the bus has.
    pub fn devices(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(String::as_str)
    }

    /// Handles every event already queued, then waits at most `timeout`
    /// for more (`None`: does not wait). Returns how many were handled.
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<usize, Error> {
        let mut handled = 0;
        let mut wait = timeout;
        while let Some(event) = self.conn.next_event(wait.take()) {
            self.handle(&event)?;
            handled += 1;
        }
        Ok(handled)
    }

    /// Handles one watch event. Device failures are reported (fatal
    /// device errors) and logged, not returned; a failure to scan the
    /// bus is returned.
    pub fn handle(&mut self, event: &WatchEvent) -> Result<(), Error> {
        if *event.token == *self.token.as_bytes() {
            if xenstore_wire::path::depth_below(&event.path, &self.watched).is_none() {
                // Not ours: another frontend domain's (a narrowed bus).
                return Ok(());
            }
            return match enumerate::scope(self.role, &self.root, &event.path) {
                Scope::Device { dir, at_dir } => self.look_at(&dir, at_dir, &event.path),
                Scope::Above { top } => self.scan_below(&top),
                Scope::Outside => Ok(()),
            };
        }
        let token = String::from_utf8_lossy(&event.token);
        // The token names its device (see `Device::watch_otherend`); the
        // device checks the rest.
        let Some(dir) = Device::dir_of_token(&token).map(str::to_owned) else { return Ok(()) };
        let Some(slot) = self.devices.get_mut(&dir) else { return Ok(()) };
        match slot.device.otherend_event(&self.conn, slot.driver.as_mut(), &event.path, &token) {
            Ok(Outcome::Unregister) => self.drop_device(&dir),
            Ok(_) => {}
            Err(Error::Gone { .. }) => self.drop_device(&dir),
            Err(err) => tracing::warn!(device = dir, %err, "device failed"),
        }
        Ok(())
    }

    /// An event at or inside the device directory `dir` (`at_dir`: at the
    /// directory itself): only that directory is looked at. A device the
    /// bus has ignores events inside it (its own writes, the toolstack's
    /// keys); an event at its directory is a removal unless the directory
    /// is still there. A device the bus does not have is probed (a missing
    /// or stateless directory is not taken, and is looked at again when
    /// its `state` is written).
    ///
    /// A backend bus [`Bus::closing_unanswered`] also looks at a device's
    /// own `state` when it is written: the toolstack's detach writes
    /// Closing there.
    fn look_at(&mut self, dir: &str, at_dir: bool, path: &str) -> Result<(), Error> {
        let Some(slot) = self.devices.get_mut(dir) else { return self.probe(dir) };
        if at_dir && !self.conn.store().exists(dir)? {
            self.drop_device(dir);
        } else if self.close_unanswered && path == paths::child(dir, "state") {
            match slot.device.own_state_written(&self.conn, slot.driver.as_mut()) {
                Ok(Outcome::Unregister) | Err(Error::Gone { .. }) => self.drop_device(dir),
                Ok(_) => {}
                Err(err) => tracing::warn!(device = dir, %err, "device failed"),
            }
        }
        Ok(())
    }

    /// Lists the root (or the one frontend domain's directory): probes
    /// new devices, removes vanished ones.
    pub fn scan(&mut self) -> Result<(), Error> {
        let watched = self.watched.clone();
        self.scan_below(&watched)
    }

    /// Lists the device directories at or below `top` (the root, or a
    /// directory between it and the devices): probes the new ones, removes
    /// the devices below `top` that are no longer listed.
    fn scan_below(&mut self, top: &str) -> Result<(), Error> {
        let found: BTreeSet<String> = self.list(top)?.into_iter().collect();
        for dir in enumerate::vanished(&self.devices, top, &found) {
            self.drop_device(&dir);
        }
        for dir in found {
            if !self.devices.contains_key(&dir) {
                self.probe(&dir)?;
            }
        }
        Ok(())
    }

    /// The device directories at or below `top` (a missing `top` has none).
    fn list(&self, top: &str) -> Result<Vec<String>, Error> {
        let mut dirs = vec![top.to_owned()];
        for _ in 0..enumerate::levels_to_list(self.role, &self.root, top) {
            let mut next = Vec::new();
            for dir in dirs {
                match self.conn.store().directory(&dir) {
                    Ok(names) => next.extend(names.iter().map(|n| paths::child(&dir, n))),
                    Err(err) if err.code() == Some(xenstore::ErrorCode::ENOENT) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            dirs = next;
        }
        Ok(dirs)
    }

    fn probe(&mut self, dir: &str) -> Result<(), Error> {
        let state = match switch::read_state(self.conn.store(), dir) {
            Ok(state) => state,
            Err(Error::BadState { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        if !self.wants(dir, state) {
            return Ok(());
        }
        let mut device = Device::new(self.role, &self.devtype, dir, self.domid, state);
        let mut driver = (self.factory)(&device);
        let started = device
            .watch_otherend(&self.conn)
            .and_then(|()| driver.probe(&DeviceCtx { conn: &self.conn, dev: &device }));
        if let Err(err) = started {
            // Linux: a failed probe reports the error and closes the device.
            switch::report_error(&self.conn, &device.home(), dir, &err);
            let _ = switch::switch_state(&self.conn, dir, XenbusState::Closed);
            return Ok(());
        }
        let result = match enumerate::start(self.role, state) {
            Start::Wait => Ok(()),
            Start::InitWait => device.set_state(&self.conn, driver.as_mut(), XenbusState::InitWait),
            Start::TakeOver => device.take_over(&self.conn, driver.as_mut()),
        };
        if let Err(err) = result {
            tracing::warn!(device = dir, %err, "backend could not start the handshake");
        }
        tracing::info!(device = dir, %state, "probed");
        self.devices.insert(dir.to_owned(), Slot { device, driver });
        Ok(())
    }

    /// See [`enumerate::probe`]; an unreadable `online` is not online.
    fn wants(&self, dir: &str, state: XenbusState) -> bool {
        match enumerate::probe(self.role, state) {
            Probe::Take => true,
            Probe::IfOnline => {
                self.conn.store().read(&paths::child(dir, "online")).is_ok_and(|v| enumerate::is_online(&v))
            }
            Probe::Skip => false,
        }
    }

    /// The driver asks for another state for its device (closing it, a
    /// reconnect): the walk with hooks; failures are fatal to the device.
    pub fn set_state(&mut self, dir: &str, target: XenbusState) -> Result<(), Error> {
        let Some(slot) = self.devices.get_mut(dir) else { return Err(Error::Gone { device: dir.to_owned() }) };
        slot.device.set_state(&self.conn, slot.driver.as_mut(), target)
    }

    fn drop_device(&mut self, dir: &str) {
        if let Some(mut slot) = self.devices.remove(dir) {
            slot.device.disconnect(&self.conn, slot.driver.as_mut());
            slot.driver.remove(&DeviceCtx { conn: &self.conn, dev: &slot.device });
            if let Some(other) = slot.device.otherend() {
                let _ = self.conn.unwatch(&other.state_node(), slot.device.token());
            }
            tracing::info!(device = dir, "removed");
        }
    }
}
