//! The bookkeeping both front ends share around a [`ClientCore`]: who waits
//! for which `req_id`, which channel each subscription feeds, and failing
//! everyone when the connection ends. Generic over the channel types (std
//! channels for the blocking client, tokio ones for the async client). No
//! I/O; the front end holds a `Hub` under a mutex and never blocks while
//! holding it (every delivery is a non-blocking send).

use std::collections::HashMap;

use xenstore_wire::{Op, Request, WatchEvent};

use crate::core::{ClientCore, Event, SubscriptionId};
use crate::error::Error;

/// The result a waiting caller receives: the reply payload, or the error.
pub(crate) type Outcome = Result<Vec<u8>, Error>;

/// One caller waiting for one reply.
pub(crate) trait Waiter {
    /// Hands over the outcome (never blocks; a gone receiver is fine).
    fn complete(self, outcome: Outcome);
}

/// Where a subscription's events go.
pub(crate) trait Sink {
    /// Hands over an event (never blocks; a gone receiver is fine).
    fn deliver(&self, event: WatchEvent);
}

/// A watch the daemon has (or is being asked for), to register again
/// after the connection is reset.
#[derive(Debug, Clone)]
struct Registration {
    subscription: SubscriptionId,
    path: String,
    token: Vec<u8>,
    depth: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct Hub<W, S> {
    core: ClientCore,
    waiters: HashMap<u32, W>,
    sinks: HashMap<SubscriptionId, S>,
    closed: Option<Error>,
    /// How many times the connection was reset ([`Hub::reset`]): a request
    /// framed in an earlier epoch must not be written, and a transaction
    /// started in one is gone.
    epoch: u64,
    registrations: Vec<Registration>,
}

impl<W: Waiter, S: Sink> Hub<W, S> {
    pub(crate) fn new() -> Self {
        Hub {
            core: ClientCore::new(),
            waiters: HashMap::new(),
            sinks: HashMap::new(),
            closed: None,
            epoch: 0,
            registrations: Vec::new(),
        }
    }

    /// The current epoch (see [`Hub::reset`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fails with [`Error::Restarted`] unless the epoch is still `epoch`.
    pub(crate) fn check_epoch(&self, epoch: u64) -> Result<(), Error> {
        self.check_open()?;
        if self.epoch == epoch {
            Ok(())
        } else {
            Err(Error::Restarted)
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.closed {
            Some(err) => Err(err.duplicate()),
            None => Ok(()),
        }
    }

    /// Frames `request` into `out` and records `waiter` for its reply.
    pub(crate) fn begin(
        &mut self,
        tx_id: u32,
        request: &Request<'_>,
        out: &mut Vec<u8>,
        waiter: W,
    ) -> Result<u32, Error> {
        self.check_open()?;
        let id = self.core.start(tx_id, request, out)?;
        self.waiters.insert(id, waiter);
        Ok(id)
    }

    /// [`Hub::begin`] with a caller-built payload.
    pub(crate) fn begin_raw(
        &mut self,
        op: Op,
        tx_id: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
        waiter: W,
    ) -> Result<u32, Error> {
        self.check_open()?;
        let id = self.core.start_raw(op, tx_id, payload, out)?;
        self.waiters.insert(id, waiter);
        Ok(id)
    }

    /// Frames a request whose reply nobody will wait for (an `UNWATCH` or
    /// transaction abort sent from a destructor).
    pub(crate) fn begin_detached(&mut self, tx_id: u32, request: &Request<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        self.check_open()?;
        let id = self.core.start(tx_id, request, out)?;
        self.core.abandon(id);
        Ok(())
    }

    /// The caller of `req_id` gave up (its bytes could not be written, or
    /// its future was dropped).
    pub(crate) fn forget(&mut self, req_id: u32) {
        self.waiters.remove(&req_id);
        self.core.abandon(req_id);
    }

    pub(crate) fn subscribe(&mut self, token: &[u8], sink: S) -> SubscriptionId {
        let id = self.core.subscribe(token);
        self.sinks.insert(id, sink);
        id
    }

    pub(crate) fn add_route(&mut self, subscription: SubscriptionId, token: &[u8]) {
        self.core.add_route(subscription, token);
    }

    pub(crate) fn remove_route(&mut self, subscription: SubscriptionId, token: &[u8]) {
        self.core.remove_route(subscription, token);
    }

    pub(crate) fn unsubscribe(&mut self, subscription: SubscriptionId) {
        self.core.unsubscribe(subscription);
        self.sinks.remove(&subscription);
        self.registrations.retain(|r| r.subscription != subscription);
    }

    /// Remembers that `subscription` watches `path` with `token`, so that
    /// [`Hub::reset`] registers it again. Recorded before the `WATCH` is
    /// sent, so a reset while it is in flight cannot miss it.
    pub(crate) fn register(&mut self, subscription: SubscriptionId, path: &str, token: &[u8], depth: Option<u32>) {
        let registration = Registration { subscription, path: path.to_owned(), token: token.to_vec(), depth };
        self.registrations.push(registration);
    }

    /// Undoes one [`Hub::register`].
    pub(crate) fn unregister(&mut self, subscription: SubscriptionId, path: &str, token: &[u8]) {
        let found = self
            .registrations
            .iter()
            .position(|r| r.subscription == subscription && r.path == path && r.token.as_slice() == token);
        if let Some(i) = found {
            self.registrations.remove(i);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether somebody must read the connection: a reply is due (one a
    /// caller waits for, or one nobody does, which must still be read off
    /// the connection), or a subscription waits for events. Never once
    /// closed.
    pub(crate) fn needs_reader(&self) -> bool {
        self.closed.is_none() && (self.core.awaiting_replies() || !self.sinks.is_empty())
    }

    /// Feeds received bytes and delivers what they complete. A fatal
    /// protocol error closes the hub (the caller must then shut the
    /// connection down) and is returned.
    pub(crate) fn receive(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let result = self.core.receive(bytes);
        self.dispatch();
        if let Err(err) = result {
            let err = Error::Protocol(err);
            self.close(err.duplicate());
            return Err(err);
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Reply { req_id, result } => {
                    if let Some(waiter) = self.waiters.remove(&req_id) {
                        waiter.complete(result);
                    }
                }
                Event::Watch { subscription, event } => {
                    if let Some(sink) = self.sinks.get(&subscription) {
                        sink.deliver(event);
                    }
                }
            }
        }
    }

    /// The connection was reset underneath (the daemon forgot this
    /// client's requests, watches and transactions): every waiting caller
    /// gets [`Error::Restarted`], the epoch moves on, and the `WATCH` of
    /// every registration is framed into `out` (replies dropped), to be
    /// the first bytes written to the new connection. Subscriptions stay.
    pub(crate) fn reset(&mut self, out: &mut Vec<u8>) {
        if self.closed.is_some() {
            return;
        }
        self.core.reset();
        for (_, waiter) in self.waiters.drain() {
            waiter.complete(Err(Error::Restarted));
        }
        self.epoch += 1;
        for r in &self.registrations {
            let request = Request::Watch { path: &r.path, token: &r.token, depth: r.depth };
            // Cannot fail: the same request was framed once already.
            if let Ok(id) = self.core.start(0, &request, out) {
                self.core.abandon(id);
            }
        }
    }

    /// The connection is gone: every waiting caller gets `err`, every
    /// subscription's channel is closed (its iterator or stream ends), and
    /// every later request fails with `err`.
    pub(crate) fn close(&mut self, err: Error) {
        if self.closed.is_some() {
            return;
        }
        self.core.close();
        for (_, waiter) in self.waiters.drain() {
            waiter.complete(Err(err.duplicate()));
        }
        self.sinks.clear();
        self.closed = Some(err);
    }
}
