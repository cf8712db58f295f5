//! The seam between the framework and a XenStore connection.
//!
//! Everything above this trait (switching state, gathering keys, the bus,
//! the toolstack helpers) is written against [`Conn`], so it runs the same
//! over the blocking [`xenstore::Client`] ([`SyncConn`]) and over a test
//! harness that steps a whole world in one thread. The trait is object
//! safe: devices and driver hooks see `&dyn Conn`.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use xenstore::{Client, Request, Store, Watch, WatchEvent};

/// A XenStore connection as the framework uses it: node operations,
/// transactions retried on `EAGAIN`, and watches whose events arrive on
/// one queue.
pub trait Conn {
    /// Node operations outside any transaction.
    fn store(&self) -> &dyn Store;

    /// Runs `body` in a transaction and commits it; on `EAGAIN` (from the
    /// commit or inside `body`) starts over, a bounded number of times.
    /// Any other error aborts the transaction and is returned.
    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
    ) -> Result<(), xenstore::Error>;

    /// Registers a watch; its events (the first one at once) come out of
    /// [`Conn::next_event`].
    fn watch(&self, path: &str, token: &str) -> Result<(), xenstore::Error>;

    /// Unregisters a watch.
    fn unwatch(&self, path: &str, token: &str) -> Result<(), xenstore::Error>;

    /// The next watch event: waits at most `timeout` (`None`: does not
    /// wait, only takes what is already here).
    fn next_event(&self, timeout: Option<Duration>) -> Option<WatchEvent>;

    /// A descriptor that polls readable when a watch event may be
    /// waiting, for a program that waits on other descriptors too (a
    /// device's event channels): it then sees xenstore's changes at once
    /// instead of at its next tick. `None` before the first watch, or
    /// where the connection has none (a stepped test world).
    fn doorbell(&self) -> Option<OwnedFd> {
        None
    }
}

/// Runs `body` in a transaction of `conn` and returns its value (the typed
/// form of [`Conn::transaction`]).
pub fn transaction<T>(
    conn: &dyn Conn,
    mut body: impl FnMut(&dyn Store) -> Result<T, xenstore::Error>,
) -> Result<T, xenstore::Error> {
    let mut out = None;
    conn.transaction(&mut |tx| {
        out = Some(body(tx)?);
        Ok(())
    })?;
    // A committed transaction ran its body to the end, which set `out`.
    out.ok_or(xenstore::Error::Xs(xenstore::ErrorCode::EIO))
}

/// [`Conn`] over the blocking client: every watch delivers into one
/// [`Watch`] handle, so events keep the daemon's order.
#[derive(Debug)]
pub struct SyncConn {
    client: Client,
    watch: Mutex<Option<Watch>>,
}

impl SyncConn {
    /// Wraps a connected client.
    pub fn new(client: Client) -> SyncConn {
        SyncConn { client, watch: Mutex::new(None) }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Conn for SyncConn {
    fn store(&self) -> &dyn Store {
        &self.client
    }

    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
    ) -> Result<(), xenstore::Error> {
        self.client.transaction(|tx| body(tx))
    }

    fn watch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        let mut slot = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(watch) => watch.add(path, token),
            None => {
                *slot = Some(self.client.watch(path, token)?);
                Ok(())
            }
        }
    }

    fn unwatch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        // Through the handle, so that its route and registration go too (a
        // long-lived toolstack connection watches once per attach).
        let mut slot = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(watch) => watch.remove(path, token),
            None => self.client.request(&Request::Unwatch { path, token: token.as_bytes() }).map(drop),
        }
    }

    fn next_event(&self, timeout: Option<Duration>) -> Option<WatchEvent> {
        let slot = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        match (slot.as_ref(), timeout) {
            (Some(watch), Some(timeout)) => watch.recv_timeout(timeout).ok(),
            (Some(watch), None) => watch.try_recv().ok(),
            (None, Some(timeout)) => {
                drop(slot);
                std::thread::sleep(timeout);
                None
            }
            (None, None) => None,
        }
    }

    fn doorbell(&self) -> Option<OwnedFd> {
        let slot = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().and_then(|watch| watch.doorbell().ok())
    }
}
