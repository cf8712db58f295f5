//! The blocking client.
//!
//! A [`Client`] owns one connection and one background reader thread. A
//! caller frames its request under a short lock, writes it from its own
//! thread, and sleeps on a channel until the reader thread delivers the
//! reply with its `req_id`; so any number of threads can have requests in
//! flight on one connection. Watch events go, by token, to the channel
//! behind each [`Watch`] handle.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use xenstore_wire::{DomId, Op, Reply, Request, WatchEvent};

use crate::core::{decode_reply, SubscriptionId};
use crate::error::Error;
use crate::hub::{Hub, Outcome, Sink, Waiter};
use crate::store::{self, Store};
use crate::transport::{self, Transport, UnixSocket};
use crate::DEFAULT_TRANSACTION_RETRIES;

/// Settings of a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// How many times [`Client::transaction`] starts over after `EAGAIN`
    /// before it gives up and returns that `EAGAIN`.
    pub transaction_retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { transaction_retries: DEFAULT_TRANSACTION_RETRIES }
    }
}

impl Options {
    /// Sets [`Options::transaction_retries`].
    pub fn transaction_retries(mut self, retries: u32) -> Self {
        self.transaction_retries = retries;
        self
    }
}

impl Waiter for SyncSender<Outcome> {
    fn complete(self, outcome: Outcome) {
        // A capacity-1 channel that only this reply uses: never blocks.
        let _ = self.try_send(outcome);
    }
}

impl Sink for Sender<WatchEvent> {
    fn deliver(&self, event: WatchEvent) {
        let _ = self.send(event);
    }
}

type SyncHub = Hub<SyncSender<Outcome>, Sender<WatchEvent>>;

struct Inner {
    hub: Mutex<SyncHub>,
    /// Serializes writers so that messages never interleave.
    write_lock: Mutex<()>,
    transport: Box<dyn Transport>,
    options: Options,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").field("transport", &self.transport).field("options", &self.options).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave the hub half-updated in a way that
    // matters more than losing the connection; keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn hub(&self) -> MutexGuard<'_, SyncHub> {
        lock(&self.hub)
    }

    /// Writes framed bytes. A failed write may have left half a message on
    /// the stream, so the connection is closed for everyone.
    fn send(&self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        let result = {
            let _writer = lock(&self.write_lock);
            self.transport.write_all(bytes)
        };
        result.map_err(|err| {
            self.transport.shutdown();
            let err = Error::Io(err);
            self.hub().close(err.duplicate());
            err
        })
    }

    /// Sends one request in transaction `tx_id` and waits for its reply.
    fn call(&self, tx_id: u32, request: &Request<'_>) -> Result<Reply, Error> {
        let payload = self.call_with(|hub, out, waiter| hub.begin(tx_id, request, out, waiter))?;
        decode_reply(request.op(), &payload)
    }

    fn call_raw(&self, tx_id: u32, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.call_with(|hub, out, waiter| hub.begin_raw(op, tx_id, payload, out, waiter))
    }

    fn call_with(
        &self,
        begin: impl FnOnce(&mut SyncHub, &mut Vec<u8>, SyncSender<Outcome>) -> Result<u32, Error>,
    ) -> Result<Vec<u8>, Error> {
        let (waiter, reply) = mpsc::sync_channel(1);
        let mut out = Vec::new();
        let req_id = begin(&mut self.hub(), &mut out, waiter)?;
        if let Err(err) = self.send(&out) {
            self.hub().forget(req_id);
            return Err(err);
        }
        reply.recv().unwrap_or_else(|_| Err(Error::closed()))
    }

    /// Sends a request nobody waits for (from a destructor); errors are
    /// dropped, since the connection closing has the same effect.
    fn send_detached(&self, tx_id: u32, request: &Request<'_>) {
        let mut out = Vec::new();
        if self.hub().begin_detached(tx_id, request, &mut out).is_ok() {
            let _ = self.send(&out);
        }
    }

    /// The reader thread: feeds the hub until the connection ends.
    fn read_loop(&self, mut reader: Box<dyn Read + Send>) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break self.hub().close(Error::closed()),
                Ok(n) => {
                    if self.hub().receive(buf.get(..n).unwrap_or_default()).is_err() {
                        // The hub closed itself; drop the connection too.
                        break self.transport.shutdown();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => break self.hub().close(Error::Io(err)),
            }
        }
    }
}

/// A blocking connection to `xenstored`, safe to share between threads
/// (`&self` methods; wrap it in an `Arc` or use scoped threads). Node
/// operations come from the [`Store`] trait. Dropping the client closes
/// the connection: requests still waiting fail, watch iterators end.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects the way libxenstore's `xs_open` does (see
    /// [`transport::connect_default`]).
    pub fn open() -> Result<Client, Error> {
        Client::with_transport(transport::connect_default()?, Options::default())
    }

    /// Connects to the daemon's Unix socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        Client::with_transport(Box::new(UnixSocket::connect(path.as_ref())?), Options::default())
    }

    /// Runs the client over any transport, and starts its reader thread.
    pub fn with_transport(transport: Box<dyn Transport>, options: Options) -> Result<Client, Error> {
        let reader = transport.reader()?;
        let inner = Arc::new(Inner { hub: Mutex::new(Hub::new()), write_lock: Mutex::new(()), transport, options });
        let for_reader = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("xenstore-reader".into())
            .spawn(move || for_reader.read_loop(reader))
            .map_err(Error::Io)?;
        Ok(Client { inner })
    }

    /// This connection's settings.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Whether the connection has ended (every request now fails).
    pub fn is_closed(&self) -> bool {
        self.inner.hub().is_closed()
    }

    /// `TRANSACTION_START |`: a transaction; use it through [`Store`],
    /// then [`Transaction::commit`] it. Dropping it aborts it.
    pub fn transaction_start(&self) -> Result<Transaction<'_>, Error> {
        let id = store::expect_tx_id(self.inner.call(0, &Request::TransactionStart)?)?;
        Ok(Transaction { client: self, id, finished: false })
    }

    /// Runs `body` in a transaction and commits it; on `EAGAIN` (a conflict
    /// at commit, or inside `body`) starts over, at most
    /// [`Options::transaction_retries`] times, then returns that `EAGAIN`.
    /// Any other error from `body` aborts the transaction and is returned.
    pub fn transaction<T>(&self, body: impl FnMut(&Transaction<'_>) -> Result<T, Error>) -> Result<T, Error> {
        self.transaction_with_retries(self.inner.options.transaction_retries, body)
    }

    /// [`Client::transaction`] with an explicit bound on retries.
    pub fn transaction_with_retries<T>(
        &self,
        retries: u32,
        mut body: impl FnMut(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut attempt = 0;
        loop {
            let tx = self.transaction_start()?;
            let result = match body(&tx) {
                Ok(value) => tx.commit().map(|()| value),
                Err(err) => {
                    // The body's error is the one that matters.
                    let _ = tx.abort();
                    Err(err)
                }
            };
            match result {
                Err(err) if err.is_eagain() && attempt < retries => attempt += 1,
                other => return other,
            }
        }
    }

    /// `WATCH <path>|<token>|`: registers a watch and returns its events.
    /// The daemon fires it once at once. Dropping the handle unregisters it.
    pub fn watch(&self, path: &str, token: impl AsRef<[u8]>) -> Result<Watch, Error> {
        self.watch_inner(path, token.as_ref(), None)
    }

    /// A watch that fires only for changes at most `depth` levels below
    /// `path` (the `WATCH` depth extension).
    pub fn watch_with_depth(&self, path: &str, token: impl AsRef<[u8]>, depth: u32) -> Result<Watch, Error> {
        self.watch_inner(path, token.as_ref(), Some(depth))
    }

    fn watch_inner(&self, path: &str, token: &[u8], depth: Option<u32>) -> Result<Watch, Error> {
        store::check_token(token)?;
        let (sink, events) = mpsc::channel();
        // Subscribe first: the first event may overtake the WATCH reply.
        let subscription = self.inner.hub().subscribe(token, sink);
        // On failure the handle is dropped: it unsubscribes, and having
        // nothing registered it sends no UNWATCH.
        let mut watch = Watch { inner: Arc::clone(&self.inner), subscription, events, registered: Vec::new() };
        let reply = self.inner.call(0, &Request::Watch { path, token, depth })?;
        watch.registered.push((path.to_owned(), token.to_vec()));
        store::expect_ok(Op::Watch, reply)?;
        Ok(watch)
    }

    /// `GET_DOMAIN_PATH <domid>|`: where the domain's nodes live.
    pub fn get_domain_path(&self, domid: DomId) -> Result<String, Error> {
        store::expect_domain_path(self.inner.call(0, &Request::GetDomainPath(domid))?)
    }

    /// `IS_DOMAIN_INTRODUCED <domid>|`.
    pub fn is_domain_introduced(&self, domid: DomId) -> Result<bool, Error> {
        store::expect_bool(self.inner.call(0, &Request::IsDomainIntroduced(domid))?)
    }

    /// `INTRODUCE <domid>|<gfn>|<evtchn>|`: the daemon starts serving the
    /// domain's ring page `gfn`, signalled through event channel `port`.
    pub fn introduce(&self, domid: DomId, gfn: u64, port: u32) -> Result<(), Error> {
        store::expect_ok(Op::Introduce, self.inner.call(0, &Request::Introduce { domid, gfn, port })?)
    }

    /// `RELEASE <domid>|`: the daemon stops serving the domain.
    pub fn release(&self, domid: DomId) -> Result<(), Error> {
        store::expect_ok(Op::Release, self.inner.call(0, &Request::Release(domid))?)
    }

    /// `RESUME <domid>|`.
    pub fn resume(&self, domid: DomId) -> Result<(), Error> {
        store::expect_ok(Op::Resume, self.inner.call(0, &Request::Resume(domid))?)
    }

    /// `SET_TARGET <domid>|<tdomid>|`: `domid` may act for `target`.
    pub fn set_target(&self, domid: DomId, target: DomId) -> Result<(), Error> {
        store::expect_ok(Op::SetTarget, self.inner.call(0, &Request::SetTarget { domid, target })?)
    }

    /// `CONTROL <command>|[<parameters>|]*`: `args` is the command and its
    /// parameters (any bytes but nul); returns the daemon's text without
    /// its terminator.
    pub fn control(&self, args: &[&[u8]]) -> Result<Vec<u8>, Error> {
        let payload = store::control_payload(args);
        store::expect_text(self.inner.call(0, &Request::Control(&payload))?)
    }
}

impl Store for Client {
    fn request(&self, request: &Request<'_>) -> Result<Reply, Error> {
        self.inner.call(0, request)
    }

    fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.inner.call_raw(0, op, payload)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.transport.shutdown();
    }
}

/// An open transaction. Node operations come from [`Store`]; changes are
/// seen by others only after [`Transaction::commit`]. Dropping it without
/// committing aborts it.
#[derive(Debug)]
pub struct Transaction<'c> {
    client: &'c Client,
    id: u32,
    finished: bool,
}

impl Transaction<'_> {
    /// The daemon's id for this transaction.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `TRANSACTION_END T|`. `EAGAIN` means another change conflicted:
    /// nothing was applied; run the whole transaction again.
    pub fn commit(mut self) -> Result<(), Error> {
        self.end(true)
    }

    /// `TRANSACTION_END F|`: drops every change.
    pub fn abort(mut self) -> Result<(), Error> {
        self.end(false)
    }

    fn end(&mut self, commit: bool) -> Result<(), Error> {
        self.finished = true;
        store::expect_ok(Op::TransactionEnd, self.client.inner.call(self.id, &Request::TransactionEnd { commit })?)
    }
}

impl Store for Transaction<'_> {
    fn request(&self, request: &Request<'_>) -> Result<Reply, Error> {
        self.client.inner.call(self.id, request)
    }

    fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.client.inner.call_raw(self.id, op, payload)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.inner.send_detached(self.id, &Request::TransactionEnd { commit: false });
        }
    }
}

/// The events of one or more watches, in the order the daemon sent them.
/// An iterator that blocks for the next event and ends when the connection
/// does. Dropping it unregisters its watches (`UNWATCH`, without waiting
/// for the answer); [`Watch::unwatch`] does the same and waits.
///
/// Events are routed by token: if two handles register the same token, each
/// receives the events carrying it.
#[derive(Debug)]
pub struct Watch {
    inner: Arc<Inner>,
    subscription: SubscriptionId,
    events: Receiver<WatchEvent>,
    registered: Vec<(String, Vec<u8>)>,
}

impl Watch {
    /// Also watches `path` with `token`, delivering into this handle (so
    /// events of several watches keep their relative order).
    pub fn add(&mut self, path: &str, token: impl AsRef<[u8]>) -> Result<(), Error> {
        let token = token.as_ref();
        store::check_token(token)?;
        self.inner.hub().add_route(self.subscription, token);
        let result = self.inner.call(0, &Request::Watch { path, token, depth: None });
        store::settle_watch(result, &mut self.registered, path, token, || {
            self.inner.hub().remove_route(self.subscription, token)
        })
    }

    /// Stops watching `path` with `token` (one registration of this handle;
    /// its other watches go on) and waits for the daemon to confirm. The
    /// token's events stop reaching this handle unless another of its
    /// registrations carries the same token.
    pub fn remove(&mut self, path: &str, token: impl AsRef<[u8]>) -> Result<(), Error> {
        let token = token.as_ref();
        let shared = self.registered.iter().filter(|(_, t)| t.as_slice() == token).count() > 1;
        // The route goes first: events the daemon sends before it has the
        // UNWATCH are for a watch being removed (put back if it fails).
        if !shared {
            self.inner.hub().remove_route(self.subscription, token);
        }
        let result = self.inner.call(0, &Request::Unwatch { path, token });
        if let Err(err) = result.and_then(|reply| store::expect_ok(Op::Unwatch, reply)) {
            if !shared {
                self.inner.hub().add_route(self.subscription, token);
            }
            return Err(err);
        }
        if let Some(i) = self.registered.iter().position(|(p, t)| p == path && t.as_slice() == token) {
            self.registered.remove(i);
        }
        Ok(())
    }

    /// The `(path, token)` pairs registered through this handle.
    pub fn registrations(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.registered.iter().map(|(p, t)| (p.as_str(), t.as_slice()))
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<WatchEvent, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }

    /// The next event if one is already here.
    pub fn try_recv(&self) -> Result<WatchEvent, TryRecvError> {
        self.events.try_recv()
    }

    /// Unregisters every watch of this handle and waits for the daemon to
    /// confirm; returns the first error.
    pub fn unwatch(mut self) -> Result<(), Error> {
        self.inner.hub().unsubscribe(self.subscription);
        let mut first_err = None;
        for (path, token) in std::mem::take(&mut self.registered) {
            let result = self.inner.call(0, &Request::Unwatch { path: &path, token: &token });
            if let Err(err) = result.and_then(|reply| store::expect_ok(Op::Unwatch, reply)) {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Iterator for Watch {
    type Item = WatchEvent;

    fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.inner.hub().unsubscribe(self.subscription);
        for (path, token) in std::mem::take(&mut self.registered) {
            self.inner.send_detached(0, &Request::Unwatch { path: &path, token: &token });
        }
    }
}
