//! One device end: its directory, its cached state, its other end, and
//! the I/O that carries out the handshake's actions.
//!
//! Call order (the [`crate::Bus`] keeps it, and owns the driver that the
//! hooks go to): [`Device::new`], then [`Device::watch_otherend`], then
//! the other-end handler for each watch event of the device's token
//! ([`crate::Bus::handle`]); a walk to another state whenever the driver
//! itself wants one (closing, a reconnect: [`crate::Bus::set_state`]).
//!
//! A failure while reacting (a hook's error, an unreadable peer state, a
//! target the tables do not allow) is Linux's `xenbus_dev_fatal`: logged,
//! written as `"<errno> <message>"` to `error/<device>/error` under the
//! writer's home, and the device switches to `Closing` (bypassing the
//! tables, as Linux does; the driver's `disconnect` runs if it was
//! connected). A device whose directory was removed is [`Error::Gone`]:
//! nothing is written for it.

use std::str::FromStr;

use xenstore_wire::DomId;

use crate::conn::Conn;
use crate::driver::{Flow, Hooks};
use crate::error::Error;
use crate::gather;
use crate::handshake::{self, Action, Hook, Step};
use crate::otherend::OtherEnd;
use crate::paths;
use crate::state::XenbusState;
use crate::switch::{self, Switched};
use crate::transitions::Role;

/// Other-end watch tokens are `xenbus:<device dir>:<generation>`: the bus
/// finds the device from the token, the generation retires old registrations.
const TOKEN_PREFIX: &str = "xenbus:";

/// One end of one device.
#[derive(Debug, Clone)]
pub struct Device {
    role: Role,
    devtype: String,
    dir: String,
    domid: DomId,
    state: XenbusState,
    otherend: Option<OtherEnd>,
    token: String,
    generation: u64,
    connected: bool,
    reopen: bool,
    last_peer: Option<XenbusState>,
}

/// What an other-end event led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The reaction ran (possibly doing nothing).
    Reacted,
    /// The event was about an old other end, or an old registration.
    Stale,
    /// The backend is done with the device (closed, `online` 0, or the
    /// frontend vanished): drop it from the bus.
    Unregister,
}

impl Device {
    /// A device of `role` at directory `dir` (absolute), seen by domain
    /// `domid`, with the state its node holds now.
    pub fn new(role: Role, devtype: &str, dir: &str, domid: DomId, state: XenbusState) -> Device {
        Device {
            role,
            devtype: devtype.to_owned(),
            dir: dir.to_owned(),
            domid,
            state,
            otherend: None,
            token: String::new(),
            generation: 0,
            connected: false,
            reopen: false,
            last_peer: None,
        }
    }

    /// The device's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The device type (`vif`, `vbd`, ...).
    pub fn devtype(&self) -> &str {
        &self.devtype
    }

    /// The device directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The state this end last wrote (Linux's `dev->state`).
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The other end, once [`Device::watch_otherend`] found it.
    pub fn otherend(&self) -> Option<&OtherEnd> {
        self.otherend.as_ref()
    }

    /// Whether the driver's `connect` ran and its `disconnect` has not.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The watch token of the current other-end registration.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The device directory an other-end watch token names.
    pub fn dir_of_token(token: &str) -> Option<&str> {
        token.strip_prefix(TOKEN_PREFIX)?.rsplit_once(':').map(|(dir, _)| dir)
    }

    /// The home of the domain this end runs in.
    pub fn home(&self) -> String {
        paths::home(self.domid)
    }

    /// Reads the other end and watches its `state` (the watch fires once
    /// at once, which starts the handshake). A changed other end replaces
    /// the old registration.
    pub fn watch_otherend(&mut self, conn: &dyn Conn) -> Result<(), Error> {
        let other = OtherEnd::read(conn.store(), self.role, &self.dir)?;
        if self.otherend.as_ref() == Some(&other) {
            return Ok(());
        }
        if let Some(old) = self.otherend.take() {
            let _ = conn.unwatch(&old.state_node(), &self.token);
        }
        self.generation += 1;
        self.last_peer = None;
        self.token = format!("{TOKEN_PREFIX}{}:{}", self.dir, self.generation);
        conn.watch(&other.state_node(), &self.token)?;
        self.otherend = Some(other);
        Ok(())
    }

    /// Handles a watch event of the other end: checks it is current, reads
    /// the peer's state, lets the driver see it, and runs the reaction.
    pub(crate) fn otherend_event(
        &mut self,
        conn: &dyn Conn,
        driver: &mut dyn Hooks,
        path: &str,
        token: &str,
    ) -> Result<Outcome, Error> {
        let Some(current) = self.otherend.clone() else { return Ok(Outcome::Stale) };
        if !current.is_current(path, token, &self.token) {
            tracing::debug!(device = self.dir, path, token, "stale other-end event ignored");
            return Ok(Outcome::Stale);
        }
        let peer = match OtherEnd::read(conn.store(), self.role, &self.dir) {
            Ok(other) if other != current => {
                // The device now names another other end: follow it; its
                // first event will drive the handshake.
                self.watch_otherend(conn)?;
                return Ok(Outcome::Stale);
            }
            Ok(_) => switch::read_state(conn.store(), &current.dir),
            Err(Error::NoOtherEnd { .. }) => Ok(XenbusState::Unknown),
            Err(err) => Err(err),
        };
        let result = peer.and_then(|peer| self.react(conn, driver, peer));
        result.map_err(|err| self.fail(conn, driver, err))
    }

    /// Runs the reaction to `peer`, once per change of the peer's state:
    /// the peer's writes each fire an event but each event reads the
    /// current state, so one state is often seen several times, and
    /// acting on it again would undo what the first reaction did (a
    /// frontend that reconnected to an `InitWait` would take a second
    /// `InitWait` for a backend restart). A repeated `Connected` is the
    /// exception: it asks to re-read the details. [`Device::set_state`]
    /// forgets the last peer state, since the own state changed.
    fn react(&mut self, conn: &dyn Conn, driver: &mut dyn Hooks, peer: XenbusState) -> Result<Outcome, Error> {
        if self.last_peer.replace(peer) == Some(peer) && peer != XenbusState::Connected {
            return Ok(Outcome::Reacted);
        }
        tracing::debug!(device = self.dir, own = %self.state, %peer, "other end changed");
        if driver.otherend_changed(&DeviceCtx { conn, dev: self }, peer)? == Flow::Handled {
            return Ok(Outcome::Reacted);
        }
        let online = self.role == Role::Backend && self.online(conn)?;
        let published = driver.published_state();
        let actions = handshake::reacts(self.role, self.state, peer, published, online, self.reopen);
        self.execute(conn, driver, &actions)
    }

    /// Carries out a reaction's plan (see [`handshake::plan`]).
    fn execute(&mut self, conn: &dyn Conn, driver: &mut dyn Hooks, actions: &[Action]) -> Result<Outcome, Error> {
        for step in handshake::plan(self.role, self.state, actions)? {
            match step {
                Step::Hook(Hook::Connect) => {
                    driver.connect(&DeviceCtx { conn, dev: self })?;
                    self.connected = true;
                }
                Step::Hook(Hook::Disconnect) => self.disconnect(conn, driver),
                Step::PeerConnected => driver.peer_connected(&DeviceCtx { conn, dev: self })?,
                Step::Write(state) => self.switch(conn, state)?,
                Step::Unregister => return Ok(Outcome::Unregister),
            }
        }
        Ok(Outcome::Reacted)
    }

    /// A backend's own `state` node was written, by itself or by the
    /// toolstack: see [`handshake::backend_state_written`] (libxl's
    /// detach, with a frontend that will not answer). Only for a bus
    /// that asked for it (`Bus::closing_unanswered`).
    pub(crate) fn own_state_written(&mut self, conn: &dyn Conn, driver: &mut dyn Hooks) -> Result<Outcome, Error> {
        if self.role != Role::Backend || matches!(self.state, XenbusState::Closing | XenbusState::Closed) {
            return Ok(Outcome::Reacted);
        }
        let written = switch::read_state(conn.store(), &self.dir)?;
        if written == self.state {
            return Ok(Outcome::Reacted);
        }
        let peer = match self.otherend.as_ref() {
            Some(other) => switch::read_state(conn.store(), &other.dir).unwrap_or(XenbusState::Unknown),
            None => XenbusState::Unknown,
        };
        let online = self.online(conn)?;
        let actions = handshake::backend_state_written(self.state, written, peer, online);
        if !actions.is_empty() {
            tracing::info!(device = self.dir, %written, %peer, "told to close with no active frontend: closing");
        }
        self.last_peer = None;
        self.execute(conn, driver, &actions).map_err(|err| self.fail(conn, driver, err))
    }

    fn online(&self, conn: &dyn Conn) -> Result<bool, Error> {
        match conn.store().read(&paths::child(&self.dir, "online")) {
            Ok(value) => Ok(value.trim_ascii() == b"1"),
            Err(err) if err.code() == Some(xenstore::ErrorCode::ENOENT) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The driver asks for another state (a frontend closing its device,
    /// a reconnect): walks there with the hooks; a failure is fatal.
    pub(crate) fn set_state(
        &mut self,
        conn: &dyn Conn,
        driver: &mut dyn Hooks,
        target: XenbusState,
    ) -> Result<(), Error> {
        self.last_peer = None;
        match self.execute(conn, driver, &[Action::Goto(target)]) {
            Ok(_) => Ok(()),
            Err(err) => Err(self.fail(conn, driver, err)),
        }
    }

    pub(crate) fn disconnect(&mut self, conn: &dyn Conn, driver: &mut dyn Hooks) {
        if std::mem::take(&mut self.connected) {
            driver.disconnect(&DeviceCtx { conn, dev: self });
        }
    }

    /// A backend taking over a live device (its process restarted): close
    /// it, and reopen it once the frontend has closed (see
    /// [`handshake::backend_reacts`]).
    pub(crate) fn take_over(&mut self, conn: &dyn Conn, driver: &mut dyn Hooks) -> Result<(), Error> {
        self.reopen = true;
        self.set_state(conn, driver, XenbusState::Closing)
    }

    /// One `xenbus_switch_state`. The cached state follows even when the
    /// directory is gone, as in Linux; the walk stops there.
    fn switch(&mut self, conn: &dyn Conn, state: XenbusState) -> Result<(), Error> {
        let switched = switch::switch_state(conn, &self.dir, state)?;
        self.state = state;
        if state == XenbusState::InitWait {
            self.reopen = false;
        }
        match switched {
            Switched::Written => Ok(()),
            Switched::Gone => Err(Error::Gone { device: self.dir.clone() }),
        }
    }

    /// `xenbus_dev_fatal`: report, then `Closing` (unless the device is gone).
    pub(crate) fn fail(&mut self, conn: &dyn Conn, driver: &mut dyn Hooks, err: Error) -> Error {
        if matches!(err, Error::Gone { .. }) {
            tracing::debug!(device = self.dir, "device directory gone; nothing written");
            return err;
        }
        switch::report_error(conn, &self.home(), &self.dir, &err);
        self.disconnect(conn, driver);
        if let Err(again) = self.switch(conn, XenbusState::Closing) {
            tracing::warn!(device = self.dir, %again, "could not switch to Closing after a fatal error");
        }
        err
    }
}

/// What a driver hook sees: the device and the connection, with helpers
/// for the usual reads and writes.
#[derive(Clone, Copy)]
pub struct DeviceCtx<'a> {
    /// The connection.
    pub conn: &'a dyn Conn,
    /// The device.
    pub dev: &'a Device,
}

impl std::fmt::Debug for DeviceCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCtx").field("dev", &self.dev).finish_non_exhaustive()
    }
}

impl DeviceCtx<'_> {
    /// The other end's directory (a device in a hook always has one).
    pub fn otherend_dir(&self) -> &str {
        self.dev.otherend.as_ref().map_or("", |o| o.dir.as_str())
    }

    /// The other end's domain.
    pub fn otherend_id(&self) -> DomId {
        self.dev.otherend.as_ref().map_or(0, |o| o.domid)
    }

    /// Reads and parses `<own dir>/<key>`.
    pub fn read<T: FromStr>(&self, key: &str) -> Result<T, Error> {
        gather::read_value(self.conn.store(), &paths::child(self.dev.dir(), key))
    }

    /// Reads and parses `<other end>/<key>`.
    pub fn read_otherend<T: FromStr>(&self, key: &str) -> Result<T, Error> {
        gather::read_value(self.conn.store(), &paths::child(self.otherend_dir(), key))
    }

    /// Reads and parses several keys of the other end in one transaction.
    pub fn gather_otherend<T: FromStr, const N: usize>(&self, keys: [&str; N]) -> Result<[T; N], Error> {
        gather::gather(self.conn, self.otherend_dir(), keys)
    }

    /// Writes several keys of the own directory in one transaction.
    pub fn publish(&self, pairs: &[(&str, &dyn std::fmt::Display)]) -> Result<(), Error> {
        gather::scatter(self.conn, self.dev.dir(), pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_device_directory() {
        assert_eq!(Device::dir_of_token("xenbus:/local/domain/1/device/vif/0:3"), Some("/local/domain/1/device/vif/0"));
        assert_eq!(Device::dir_of_token("xenbus-bus:/local/domain/1/device/vif"), None);
        assert_eq!(Device::dir_of_token("other"), None);
    }
}
