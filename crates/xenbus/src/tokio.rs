//! The async flavour (feature `tokio`), over
//! [`xenstore::tokio::AsyncClient`].
//!
//! The rules are the same pure ones ([`crate::handshake`],
//! [`crate::transitions`], [`crate::otherend`]); only the I/O differs.
//! Instead of calling driver hooks, an [`AsyncDevice`] hands them out: its
//! [`AsyncDevice::next`] writes states itself and returns each
//! [`HookCall`] the driver must make, in order, so a driver is a plain
//! loop of async code with no trait to implement:
//!
//! ```no_run
//! # async fn demo(client: std::sync::Arc<xenstore::tokio::AsyncClient>) -> Result<(), xenbus::Error> {
//! use xenbus::tokio::{AsyncDevice, HookCall};
//! use xenbus::{Role, XenbusState};
//!
//! let dir = "/local/domain/3/device/vif/0";
//! let mut dev = AsyncDevice::open(client.clone(), Role::Frontend, dir, 3, XenbusState::Connected).await?;
//! loop {
//!     match dev.next().await? {
//!         HookCall::Connect => client.write(&format!("{dir}/ring-ref"), b"8").await?,
//!         HookCall::PeerConnected | HookCall::Disconnect => {}
//!         HookCall::Unregister => break,
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! A hook that fails is reported with [`AsyncDevice::fail`] (the error
//! node, then `Closing`).
//!
//! Enumeration is [`AsyncBus`]: its [`AsyncBus::next`] yields a
//! [`BusEvent::Added`] for each device to drive and a
//! [`BusEvent::Removed`] for each whose directory went, by the sync
//! [`crate::Bus`]'s rules ([`crate::enumerate`]); the driver runs each
//! added device as an `AsyncDevice` in a task of its own, started with
//! [`AsyncDevice::start`] (see [`AsyncBus`] for the pattern).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use xenstore::tokio::{AsyncClient, AsyncWatch};
use xenstore::ErrorCode;
use xenstore_wire::DomId;

use crate::enumerate::{self, Start};
use crate::error::Error;
use crate::handshake::{self, Action, Hook, Step};
use crate::otherend::OtherEnd;
use crate::paths;
use crate::state::XenbusState;
use crate::switch::Switched;
use crate::transitions::Role;

pub use crate::tokio_bus::{AsyncBus, BusEvent};

/// Reads `<dir>/state` (missing or unreadable: `Unknown`, as
/// [`crate::switch::read_state`]).
pub async fn read_state(client: &AsyncClient, dir: &str) -> Result<XenbusState, Error> {
    let path = paths::child(dir, "state");
    match client.read(&path).await {
        Ok(value) => XenbusState::parse(&value).map_err(|error| Error::BadState { path, error }),
        Err(err) if matches!(err.code(), Some(ErrorCode::ENOENT | ErrorCode::EACCES)) => Ok(XenbusState::Unknown),
        Err(err) => Err(err.into()),
    }
}

/// `xenbus_switch_state`, async: one transaction that writes nothing if
/// the `state` node is gone (see [`crate::switch::switch_state`]).
pub async fn switch_state(client: &AsyncClient, dir: &str, state: XenbusState) -> Result<Switched, Error> {
    let node = paths::child(dir, "state");
    let outcome = client
        .transaction(|tx| {
            let node = node.clone();
            async move {
                match tx.read(&node).await {
                    Ok(_) => {}
                    Err(err) if err.code() == Some(ErrorCode::ENOENT) => return Ok(Switched::Gone),
                    Err(err) => return Err(err),
                }
                tx.write(&node, &state.to_node_value()).await?;
                Ok(Switched::Written)
            }
        })
        .await?;
    Ok(outcome)
}

/// Waits at most `timeout` for `<dir>/state` to read `wanted`.
pub async fn wait_for_state(
    client: &AsyncClient,
    dir: &str,
    wanted: XenbusState,
    timeout: Duration,
) -> Result<(), Error> {
    let node = paths::child(dir, "state");
    let mut watch = client.watch(&node, format!("xenbus-wait:{node}")).await?;
    let start = std::time::Instant::now();
    loop {
        let last = read_state(client, dir).await.ok();
        if last == Some(wanted) {
            return Ok(());
        }
        let waited = start.elapsed();
        let left = timeout.saturating_sub(waited);
        if left.is_zero() || ::tokio::time::timeout(left, watch.next()).await.is_err() {
            return Err(Error::Timeout { path: node, wanted, last, waited: start.elapsed() });
        }
    }
}

/// A hook the driver of an [`AsyncDevice`] must run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookCall {
    /// Start the device (a frontend publishes, a backend maps).
    Connect,
    /// A frontend reads the backend's details (again, on a repeated Connected).
    PeerConnected,
    /// Stop the device (only after a `Connect`).
    Disconnect,
    /// The backend is done with the device.
    Unregister,
}

/// One device end, driven by awaiting [`AsyncDevice::next`].
#[derive(Debug)]
pub struct AsyncDevice {
    client: Arc<AsyncClient>,
    role: Role,
    dir: String,
    home: String,
    published: XenbusState,
    state: XenbusState,
    otherend: OtherEnd,
    watch: AsyncWatch,
    pending: VecDeque<Step>,
    connected: bool,
    last_peer: Option<XenbusState>,
    /// A backend taking over a live device: back to `InitWait` once the
    /// frontend has closed (see [`handshake::backend_reacts`]).
    reopen: bool,
}

impl AsyncDevice {
    /// Opens the device at `dir` (of domain `domid`): reads its state and
    /// its other end, and watches the other end's `state`. `published` is
    /// a frontend's announcing state (`Initialised` or `Connected`).
    pub async fn open(
        client: Arc<AsyncClient>,
        role: Role,
        dir: &str,
        domid: DomId,
        published: XenbusState,
    ) -> Result<AsyncDevice, Error> {
        let state = read_state(&client, dir).await?;
        let otherend = read_otherend(&client, role, dir).await?;
        let watch = watch_ends(&client, &otherend, dir).await?;
        Ok(AsyncDevice {
            client,
            role,
            dir: dir.to_owned(),
            home: paths::home(domid),
            published,
            state,
            otherend,
            watch,
            pending: VecDeque::new(),
            connected: false,
            last_peer: None,
            reopen: false,
        })
    }

    /// The state this end last wrote.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The device directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The other end.
    pub fn otherend(&self) -> &OtherEnd {
        &self.otherend
    }

    /// What a bus does with a device it probes ([`crate::enumerate::start`]),
    /// to be called once after [`AsyncDevice::open`] by the driver of a
    /// device an [`AsyncBus`] added: a backend announces `InitWait`, or
    /// takes over a device it finds connected (its process restarted: it
    /// closes the device and reopens it once the frontend has closed); a
    /// frontend waits for its backend.
    pub async fn start(&mut self) -> Result<(), Error> {
        match enumerate::start(self.role, self.state) {
            Start::Wait => Ok(()),
            Start::InitWait => self.set_state(XenbusState::InitWait).await,
            Start::TakeOver => {
                self.reopen = true;
                self.set_state(XenbusState::Closing).await
            }
        }
    }

    /// Asks for another state: the walk is queued and carried out by
    /// [`AsyncDevice::next`]; a target the tables do not allow is fatal.
    pub async fn set_state(&mut self, target: XenbusState) -> Result<(), Error> {
        self.last_peer = None;
        match handshake::plan(self.role, self.last_planned_state(), &[Action::Goto(target)]) {
            Ok(steps) => {
                self.pending.extend(steps);
                Ok(())
            }
            Err(illegal) => {
                let err = Error::Illegal(illegal);
                self.fail(&err).await;
                Err(err)
            }
        }
    }

    /// `xenbus_dev_fatal`: writes the error node, drops what was queued,
    /// and queues a `Disconnect` (if connected) and the switch to `Closing`.
    pub async fn fail(&mut self, err: &Error) {
        report_error(&self.client, &self.home, &self.dir, err).await;
        self.pending.clear();
        if self.connected {
            self.pending.push_back(Step::Hook(Hook::Disconnect));
        }
        self.pending.push_back(Step::Write(XenbusState::Closing));
    }

    /// The state the queued steps end in.
    fn last_planned_state(&self) -> XenbusState {
        self.pending
            .iter()
            .rev()
            .find_map(|s| if let Step::Write(w) = s { Some(*w) } else { None })
            .unwrap_or(self.state)
    }

    /// Carries out queued state writes and returns the next hook to run;
    /// when nothing is queued, waits for the other end to change and plans
    /// the reaction. [`Error::Gone`] once the device directory is removed
    /// (noticed by a write, or by a watch on the directory).
    pub async fn next(&mut self) -> Result<HookCall, Error> {
        loop {
            match self.pending.pop_front() {
                Some(Step::Write(state)) => {
                    let switched = switch_state(&self.client, &self.dir, state).await?;
                    self.state = state;
                    if state == XenbusState::InitWait {
                        self.reopen = false;
                    }
                    if switched == Switched::Gone {
                        self.pending.clear();
                        return Err(Error::Gone { device: self.dir.clone() });
                    }
                }
                Some(Step::Hook(Hook::Connect)) => {
                    self.connected = true;
                    return Ok(HookCall::Connect);
                }
                Some(Step::Hook(Hook::Disconnect)) => {
                    if std::mem::take(&mut self.connected) {
                        return Ok(HookCall::Disconnect);
                    }
                }
                Some(Step::PeerConnected) => return Ok(HookCall::PeerConnected),
                Some(Step::Unregister) => return Ok(HookCall::Unregister),
                None => self.wait_for_peer().await?,
            }
        }
    }

    /// Waits for a current other-end event and queues the reaction's plan.
    async fn wait_for_peer(&mut self) -> Result<(), Error> {
        let event = self.watch.next().await.ok_or_else(|| Error::Xs(closed()))?;
        if xenstore_wire::path::is_at_or_below(&event.path, &self.dir) {
            // Our own directory changed: only its removal matters.
            return match self.client.read(&self.dir).await {
                Ok(_) => Ok(()),
                Err(err) if err.code() == Some(ErrorCode::ENOENT) => Err(Error::Gone { device: self.dir.clone() }),
                Err(err) => Err(err.into()),
            };
        }
        if event.path != self.otherend.state_node() && event.path != self.otherend.dir {
            return Ok(());
        }
        let peer = match read_otherend(&self.client, self.role, &self.dir).await {
            Ok(other) if other != self.otherend => {
                self.watch = watch_ends(&self.client, &other, &self.dir).await?;
                self.otherend = other;
                self.last_peer = None;
                return Ok(());
            }
            Ok(_) => read_state(&self.client, &self.otherend.dir).await,
            Err(Error::NoOtherEnd { .. }) => Ok(XenbusState::Unknown),
            Err(err) => Err(err),
        };
        let peer = match peer {
            Ok(peer) => peer,
            Err(err) => {
                self.fail(&err).await;
                return Ok(());
            }
        };
        if self.last_peer.replace(peer) == Some(peer) && peer != XenbusState::Connected {
            return Ok(());
        }
        let online = self.role == Role::Backend && self.online().await?;
        let actions = handshake::reacts(self.role, self.state, peer, self.published, online, self.reopen);
        match handshake::plan(self.role, self.state, &actions) {
            Ok(steps) => self.pending.extend(steps),
            Err(illegal) => self.fail(&Error::Illegal(illegal)).await,
        }
        Ok(())
    }

    async fn online(&self) -> Result<bool, Error> {
        match self.client.read(&paths::child(&self.dir, "online")).await {
            Ok(value) => Ok(value.trim_ascii() == b"1"),
            Err(err) if err.code() == Some(ErrorCode::ENOENT) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// One watch stream for the other end's `state` and for the own directory
/// (whose removal ends the device, as the bus's enumeration does).
async fn watch_ends(client: &AsyncClient, other: &OtherEnd, dir: &str) -> Result<AsyncWatch, Error> {
    let mut watch = client.watch(&other.state_node(), format!("xenbus:{dir}")).await?;
    watch.add(dir, format!("xenbus-self:{dir}")).await?;
    Ok(watch)
}

/// Reads the other end of the device at `dir` (its directory must exist).
pub(crate) async fn read_otherend(client: &AsyncClient, role: Role, dir: &str) -> Result<OtherEnd, Error> {
    let (key_path, id_path) = OtherEnd::nodes(role, dir);
    let other = OtherEnd::parse(dir, client.read(&key_path).await, &id_path, client.read(&id_path).await)?;
    match client.read(&other.dir).await {
        Ok(_) => Ok(other),
        Err(err) if matches!(err.code(), Some(ErrorCode::ENOENT | ErrorCode::EACCES)) => {
            Err(Error::NoOtherEnd { device: dir.to_owned() })
        }
        Err(err) => Err(err.into()),
    }
}

/// `xenbus_dev_fatal`'s report, async (see [`crate::switch::report_error`]).
pub(crate) async fn report_error(client: &AsyncClient, home: &str, dir: &str, err: &Error) {
    let node = paths::error_node(home, dir);
    tracing::error!(device = dir, errno = err.errno(), %err, "xenbus device error");
    if let Err(again) = client.write(&node, format!("{} {err}", err.errno()).as_bytes()).await {
        tracing::warn!(node, %again, "could not write the device error node");
    }
}

pub(crate) fn closed() -> xenstore::Error {
    xenstore::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, "connection to xenstored closed"))
}
