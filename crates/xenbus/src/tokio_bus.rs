//! Async bus enumeration: the sync [`crate::Bus`]'s rules over
//! [`AsyncClient`], with the devices handed out instead of driven.
//!
//! An [`AsyncBus`] watches its root (`device/<type>` for frontends,
//! `backend/<type>` for backends, under the domain's home) and its
//! [`AsyncBus::next`] yields [`BusEvent::Added`] for each device it probes
//! and [`BusEvent::Removed`] for each whose directory vanished. The
//! decisions are [`crate::enumerate`]'s, the same the sync bus asks: which
//! devices are probed (a frontend's or backend's `Initialising` device; a
//! backend also takes an `online` device neither closing nor closed, its
//! process restarting), an event at or inside a device directory looks at
//! that one directory, only an event above the device level lists (below
//! that point only), and what vanished is a set lookup. So an attach costs
//! the same with a thousand devices as with one.
//!
//! The pattern of use is on [`AsyncBus`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use xenstore::tokio::{AsyncClient, AsyncWatch};
use xenstore::{ErrorCode, WatchEvent};
use xenstore_wire::DomId;

use crate::enumerate::{self, Probe, Scope};
use crate::error::Error;
use crate::otherend::OtherEnd;
use crate::paths;
use crate::state::XenbusState;
use crate::tokio::{closed, read_otherend, read_state, report_error, switch_state};
use crate::transitions::Role;

/// What [`AsyncBus::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A device to drive: open an [`AsyncDevice`](crate::tokio::AsyncDevice) at `dir` and call its
    /// [`AsyncDevice::start`](crate::tokio::AsyncDevice::start).
    Added {
        /// The device directory.
        dir: String,
        /// Its own state when probed (`Initialising`, or a live state a
        /// restarted backend takes over).
        state: XenbusState,
        /// Its other end, as read when probed.
        otherend: OtherEnd,
    },
    /// The device directory is gone: end the device's task.
    Removed {
        /// The device directory.
        dir: String,
    },
}

/// The devices of one type and role in one domain, enumerated by awaiting
/// [`AsyncBus::next`].
///
/// The bus owns no drivers: each added device is an [`AsyncDevice`](crate::tokio::AsyncDevice) that
/// its own task drives, which starts with [`AsyncDevice::start`](crate::tokio::AsyncDevice::start) (a
/// backend's `InitWait`, or its take-over of a connected device). One task
/// per device, ended on `Removed`:
///
/// ```no_run
/// # async fn demo(client: std::sync::Arc<xenstore::tokio::AsyncClient>) -> Result<(), xenbus::Error> {
/// use std::collections::HashMap;
/// use xenbus::tokio::{AsyncBus, AsyncDevice, BusEvent, HookCall};
/// use xenbus::{Error, Role, XenbusState};
///
/// let mut bus = AsyncBus::open(client.clone(), Role::Backend, 0, "vif").await?;
/// let mut tasks = HashMap::new();
/// loop {
///     match bus.next().await? {
///         BusEvent::Added { dir, .. } => {
///             let (client, key) = (client.clone(), dir.clone());
///             let task = tokio::spawn(async move {
///                 let mut dev = AsyncDevice::open(client, Role::Backend, &dir, 0, XenbusState::Connected).await?;
///                 dev.start().await?;
///                 loop {
///                     match dev.next().await? {
///                         HookCall::Connect => { /* map the frontend's rings */ }
///                         HookCall::Disconnect => { /* unmap them */ }
///                         HookCall::PeerConnected => {}
///                         HookCall::Unregister => return Ok::<(), Error>(()),
///                     }
///                 }
///             });
///             tasks.insert(key, task);
///         }
///         BusEvent::Removed { dir } => {
///             if let Some(task) = tasks.remove(&dir) {
///                 task.abort();
///             }
///         }
///     }
/// }
/// # }
/// ```
///
/// A backend device whose task ended (`Unregister`) usually has its
/// directories removed by the toolstack next, which is its `Removed`. One
/// whose directory stays is still held: [`AsyncBus::forget`] lets a state
/// written there again probe it anew, as the sync bus drops a device on
/// `Unregister`.
#[derive(Debug)]
pub struct AsyncBus {
    client: Arc<AsyncClient>,
    role: Role,
    /// The home of the domain the bus runs in (where a failed probe's
    /// error node goes).
    home: String,
    root: String,
    watch: AsyncWatch,
    /// The devices added and not yet removed (a map for
    /// [`enumerate::vanished`]'s range lookup).
    devices: BTreeMap<String, ()>,
    ready: VecDeque<BusEvent>,
    /// The root event being handled: kept until handled, so that a
    /// `next` dropped half-way (a `select!`) handles it again, not never.
    current: Option<WatchEvent>,
}

impl AsyncBus {
    /// Watches the bus root of `role` for `devtype` in domain `domid`; the
    /// watch's first event lists the root.
    pub async fn open(client: Arc<AsyncClient>, role: Role, domid: DomId, devtype: &str) -> Result<AsyncBus, Error> {
        let root = paths::bus_root(role, domid, devtype);
        let watch = client.watch(&root, format!("xenbus-bus:{root}")).await?;
        Ok(AsyncBus {
            client,
            role,
            home: paths::home(domid),
            root,
            watch,
            devices: BTreeMap::new(),
            ready: VecDeque::new(),
            current: None,
        })
    }

    /// The directory this bus enumerates.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The directories of the devices added and not removed.
    pub fn devices(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(String::as_str)
    }

    /// Forgets a device whose driver is done with it although its
    /// directory stays: an event there probes it again. Returns whether
    /// the bus held it.
    pub fn forget(&mut self, dir: &str) -> bool {
        self.devices.remove(dir).is_some()
    }

    /// The next device added or removed. Cancel safe: a call dropped
    /// before it returns loses no event (the one being handled is handled
    /// again, repeating some reads). A failure to read the bus is
    /// returned, and the event that met it is not retried.
    pub async fn next(&mut self) -> Result<BusEvent, Error> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            let path = match &self.current {
                Some(event) => event.path.clone(),
                None => {
                    let event = self.watch.next().await.ok_or_else(|| Error::Xs(closed()))?;
                    let path = event.path.clone();
                    self.current = Some(event);
                    path
                }
            };
            let handled = self.handle(&path).await;
            self.current = None;
            handled?;
        }
    }

    async fn handle(&mut self, path: &str) -> Result<(), Error> {
        match enumerate::scope(self.role, &self.root, path) {
            Scope::Device { dir, at_dir } => self.look_at(&dir, at_dir).await,
            Scope::Above { top } => self.scan_below(&top).await,
            Scope::Outside => Ok(()),
        }
    }

    /// An event at or inside one device directory: a device not held is
    /// probed; a held one is removed if the event is at its directory and
    /// the directory is gone (events inside it are its own writes).
    async fn look_at(&mut self, dir: &str, at_dir: bool) -> Result<(), Error> {
        if !self.devices.contains_key(dir) {
            return self.probe(dir).await;
        }
        if at_dir && !self.exists(dir).await? {
            self.remove(dir);
        }
        Ok(())
    }

    /// Lists the device directories below `top`: removes the held ones not
    /// listed, probes the listed ones not held.
    async fn scan_below(&mut self, top: &str) -> Result<(), Error> {
        let found: BTreeSet<String> = self.list(top).await?.into_iter().collect();
        for dir in enumerate::vanished(&self.devices, top, &found) {
            self.remove(&dir);
        }
        for dir in found {
            if !self.devices.contains_key(&dir) {
                self.probe(&dir).await?;
            }
        }
        Ok(())
    }

    /// The device directories at or below `top` (a missing `top` has none).
    async fn list(&self, top: &str) -> Result<Vec<String>, Error> {
        let mut dirs = vec![top.to_owned()];
        for _ in 0..enumerate::levels_to_list(self.role, &self.root, top) {
            let mut next = Vec::new();
            for dir in dirs {
                match self.client.directory(&dir).await {
                    Ok(names) => next.extend(names.iter().map(|n| paths::child(&dir, n))),
                    Err(err) if err.code() == Some(ErrorCode::ENOENT) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            dirs = next;
        }
        Ok(dirs)
    }

    /// Takes the device at `dir` if [`enumerate::probe`] says so and its
    /// other end reads; a device whose other end does not is reported and
    /// closed, as the sync bus's failed probe.
    async fn probe(&mut self, dir: &str) -> Result<(), Error> {
        let state = match read_state(&self.client, dir).await {
            Ok(state) => state,
            Err(Error::BadState { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        let wanted = match enumerate::probe(self.role, state) {
            Probe::Take => true,
            Probe::IfOnline => {
                self.client.read(&paths::child(dir, "online")).await.is_ok_and(|v| enumerate::is_online(&v))
            }
            Probe::Skip => false,
        };
        if !wanted {
            return Ok(());
        }
        match read_otherend(&self.client, self.role, dir).await {
            Ok(otherend) => {
                tracing::info!(device = dir, %state, "probed");
                self.devices.insert(dir.to_owned(), ());
                self.ready.push_back(BusEvent::Added { dir: dir.to_owned(), state, otherend });
            }
            Err(err) => {
                report_error(&self.client, &self.home, dir, &err).await;
                let _ = switch_state(&self.client, dir, XenbusState::Closed).await;
            }
        }
        Ok(())
    }

    fn remove(&mut self, dir: &str) {
        if self.devices.remove(dir).is_some() {
            tracing::info!(device = dir, "removed");
            self.ready.push_back(BusEvent::Removed { dir: dir.to_owned() });
        }
    }

    async fn exists(&self, dir: &str) -> Result<bool, Error> {
        match self.client.read(dir).await {
            Ok(_) => Ok(true),
            Err(err) if err.code() == Some(ErrorCode::ENOENT) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}
