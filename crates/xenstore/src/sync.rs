//! The blocking client.
//!
//! A [`Client`] owns one connection. A caller frames its request under a
//! short lock and writes it from its own thread; its reply comes back by
//! `req_id` on a channel of its own. So any number of threads can have
//! requests in flight on one connection. Watch events go, by token, to the
//! channel behind each [`Watch`] handle.
//!
//! # Who reads
//!
//! The connection's read end is held by one thread at a time:
//!
//! - a caller waiting for its reply takes it if nobody has it, reads
//!   (delivering whatever else comes to its owner) until its own reply is
//!   in, and puts it back. A program that makes one call at a time thus
//!   reads its replies itself: a round trip wakes the daemon and then the
//!   caller, and nobody else. (A reader thread that handed each reply on
//!   cost one more wake-up per call: over a hosted guest's ring, a third
//!   of the round trip.)
//! - a background thread, started with the client, takes it whenever the
//!   read end is free and somebody needs a reader: callers still wait
//!   once the one that read for them has its reply, or a watch exists
//!   (events come unasked). It puts it back when nobody does.
//!
//! A caller that finds the end taken waits on its channel: whoever reads
//! either delivers its reply or, on leaving, sees it waiting and wakes the
//! background thread. Leaving and looking happen under the read end's
//! lock, and a caller registers its reply before it looks for the end, so
//! no caller is left with nobody reading for it. Without a watch, nobody
//! reads an idle connection: a daemon that hangs up is noticed (and
//! [`Client::is_closed`] turns true) at the next request.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
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

/// Where a watch handle's events go: its channel, and, once the handle
/// asked for one ([`Watch::doorbell`]), an eventfd rung after each event.
#[derive(Debug)]
pub(crate) struct EventSink {
    events: Sender<WatchEvent>,
    doorbell: Arc<OnceLock<OwnedFd>>,
}

impl Sink for EventSink {
    fn deliver(&self, event: WatchEvent) {
        let _ = self.events.send(event);
        if let Some(bell) = self.doorbell.get() {
            ring(bell);
        }
    }
}

/// Adds one to the eventfd `bell`: readable until drained. A full
/// counter (never, at one per event) is readable already.
fn ring(bell: &OwnedFd) {
    let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
}

type SyncHub = Hub<SyncSender<Outcome>, EventSink>;

/// The reply on `reply`, if it has come (or the connection's end).
fn arrived(reply: &Receiver<Outcome>) -> Option<Outcome> {
    match reply.try_recv() {
        Ok(outcome) => Some(outcome),
        Err(TryRecvError::Disconnected) => Some(Err(Error::closed())),
        Err(TryRecvError::Empty) => None,
    }
}

struct Inner {
    hub: Mutex<SyncHub>,
    /// Serializes writers so that messages never interleave.
    write_lock: Mutex<()>,
    transport: Box<dyn Transport>,
    options: Options,
    /// The read end, while nobody reads (see "Who reads"). Locked before
    /// the hub when both are.
    reading: Mutex<Reading>,
    /// Wakes the background reader: the read end came back while somebody
    /// needs a reader, or the client was dropped.
    wanted: Condvar,
}

/// The read end's slot.
struct Reading {
    end: Option<ReadEnd>,
    /// The client was dropped: the background reader reads the end of the
    /// connection, if watch handles still wait for it, and stops.
    dropped: bool,
}

/// The connection's read end and the buffer it reads into.
struct ReadEnd {
    reader: Box<dyn Read + Send>,
    buf: Vec<u8>,
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

    /// Writes framed bytes, unless the connection was reset since they
    /// were framed in `epoch` (their request already failed with
    /// [`Error::Restarted`]). A failed write may have left half a message
    /// on the stream, so the connection is closed for everyone, unless the
    /// transport can resume it: then whoever reads next resets it, which
    /// fails the request with [`Error::Restarted`].
    fn send(&self, bytes: &[u8], epoch: u64) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        let result = {
            let _writer = lock(&self.write_lock);
            if self.hub().epoch() != epoch {
                return Ok(());
            }
            self.transport.write_all(bytes)
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) if self.transport.can_resume(&err) => Ok(()),
            Err(err) => {
                self.transport.shutdown();
                let err = Error::Io(err);
                self.hub().close(err.duplicate());
                Err(err)
            }
        }
    }

    /// Sends one request in transaction `tx_id` and waits for its reply.
    fn call(&self, tx_id: u32, request: &Request<'_>) -> Result<Reply, Error> {
        self.call_in(tx_id, None, request)
    }

    /// [`Inner::call`], failing with [`Error::Restarted`] without sending
    /// anything if the connection was reset since `epoch` (the epoch of the
    /// transaction `tx_id`).
    fn call_in(&self, tx_id: u32, epoch: Option<u64>, request: &Request<'_>) -> Result<Reply, Error> {
        let (payload, _) = self.call_with(epoch, |hub, out, waiter| hub.begin(tx_id, request, out, waiter))?;
        decode_reply(request.op(), &payload)
    }

    fn call_raw(&self, tx_id: u32, epoch: Option<u64>, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let (payload, _) = self.call_with(epoch, |hub, out, waiter| hub.begin_raw(op, tx_id, payload, out, waiter))?;
        Ok(payload)
    }

    /// Frames a request (checking `epoch` first), sends it, and waits for
    /// the reply; returns it with the epoch the request was sent in.
    fn call_with(
        &self,
        epoch: Option<u64>,
        begin: impl FnOnce(&mut SyncHub, &mut Vec<u8>, SyncSender<Outcome>) -> Result<u32, Error>,
    ) -> Result<(Vec<u8>, u64), Error> {
        let (waiter, reply) = mpsc::sync_channel(1);
        let mut out = Vec::new();
        let (req_id, sent_in) = {
            let mut hub = self.hub();
            if let Some(epoch) = epoch {
                hub.check_epoch(epoch)?;
            }
            (begin(&mut hub, &mut out, waiter)?, hub.epoch())
        };
        if let Err(err) = self.send(&out, sent_in) {
            self.hub().forget(req_id);
            return Err(err);
        }
        let payload = self.wait_reply(&reply)?;
        Ok((payload, sent_in))
    }

    /// Waits for the reply `reply` will carry, reading the connection
    /// while nobody else does (see "Who reads").
    fn wait_reply(&self, reply: &Receiver<Outcome>) -> Outcome {
        // Routed already, by whoever read last.
        if let Some(outcome) = arrived(reply) {
            return outcome;
        }
        let Some(mut end) = lock(&self.reading).end.take() else {
            // Whoever reads delivers it, or wakes the background reader.
            return reply.recv().unwrap_or_else(|_| Err(Error::closed()));
        };
        let outcome = loop {
            if let Some(outcome) = arrived(reply) {
                break outcome;
            }
            if !self.read_once(&mut end) {
                // The hub is closed: it failed every waiter, this one too.
                break reply.recv().unwrap_or_else(|_| Err(Error::closed()));
            }
        };
        self.put_back(end);
        outcome
    }

    /// Returns the read end to its slot, and wakes the background reader
    /// if somebody still needs one.
    fn put_back(&self, end: ReadEnd) {
        let mut reading = lock(&self.reading);
        reading.end = Some(end);
        if reading.dropped || self.hub().needs_reader() {
            self.wanted.notify_one();
        }
    }

    /// One read of the connection, fed to the hub; resumes the connection
    /// when the transport can. `false` once the connection has ended (the
    /// hub is closed).
    fn read_once(&self, end: &mut ReadEnd) -> bool {
        match end.reader.read(&mut end.buf) {
            Ok(0) => {
                self.hub().close(Error::closed());
                false
            }
            Ok(n) => {
                if self.hub().receive(end.buf.get(..n).unwrap_or_default()).is_err() {
                    // The hub closed itself; drop the connection too.
                    self.transport.shutdown();
                    return false;
                }
                true
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => true,
            Err(err) if self.transport.can_resume(&err) => match self.resume() {
                Ok(()) => true,
                Err(err) => {
                    self.transport.shutdown();
                    self.hub().close(Error::Io(err));
                    false
                }
            },
            Err(err) => {
                self.hub().close(Error::Io(err));
                false
            }
        }
    }

    /// Sends a request nobody waits for (from a destructor); errors are
    /// dropped, since the connection closing has the same effect. Nothing
    /// is sent if the connection was reset since `epoch`.
    fn send_detached(&self, tx_id: u32, epoch: Option<u64>, request: &Request<'_>) {
        let mut out = Vec::new();
        let sent_in = {
            let mut hub = self.hub();
            if epoch.is_some_and(|epoch| hub.check_epoch(epoch).is_err()) {
                return;
            }
            if hub.begin_detached(tx_id, request, &mut out).is_err() {
                return;
            }
            hub.epoch()
        };
        let _ = self.send(&out, sent_in);
        // Its reply must be read off the connection even though nobody
        // waits for it: else unread replies pile up until the daemon stops
        // reading this client, and the next write waits for ever.
        self.wake_reader();
    }

    /// Wakes the background reader if the read end is free and somebody
    /// needs a reader.
    fn wake_reader(&self) {
        let reading = lock(&self.reading);
        if reading.end.is_some() && self.hub().needs_reader() {
            self.wanted.notify_one();
        }
    }

    /// A `WATCH` that failed with [`Error::Restarted`] may have been
    /// registered again by the reset (it is recorded before it is sent):
    /// unregisters it, so that the daemon keeps no watch nobody routes.
    fn unwatch_lost(&self, err: &Error, path: &str, token: &[u8]) {
        if err.is_restarted() {
            self.send_detached(0, None, &Request::Unwatch { path, token });
        }
    }

    /// The background reader: reads while somebody needs a reader and
    /// no caller reads for itself, until the connection ends or the
    /// client is dropped.
    fn background(&self) {
        loop {
            let mut end = {
                let mut reading = lock(&self.reading);
                loop {
                    if reading.dropped || self.hub().needs_reader() {
                        if let Some(end) = reading.end.take() {
                            break end;
                        }
                    }
                    if reading.dropped && self.hub().is_closed() {
                        return;
                    }
                    reading = self.wanted.wait(reading).unwrap_or_else(PoisonError::into_inner);
                }
            };
            loop {
                if !self.read_once(&mut end) {
                    // Nothing more will come; later reads say so again.
                    lock(&self.reading).end = Some(end);
                    return;
                }
                let mut reading = lock(&self.reading);
                if !reading.dropped && !self.hub().needs_reader() {
                    reading.end = Some(end);
                    break;
                }
            }
        }
    }

    /// Resets the connection (whoever reads, after an error the
    /// transport can resume from): with writers held off, the transport
    /// reconnects, every request in flight fails with
    /// [`Error::Restarted`], and every watch is registered again, first
    /// thing on the new connection.
    fn resume(&self) -> io::Result<()> {
        let _writer = lock(&self.write_lock);
        self.transport.resume()?;
        let mut out = Vec::new();
        self.hub().reset(&mut out);
        if out.is_empty() {
            return Ok(());
        }
        match self.transport.write_all(&out) {
            // Failed again already: the next read sees it and resumes again.
            Err(err) if !self.transport.can_resume(&err) => Err(err),
            _ => Ok(()),
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

    /// Connects to the daemon's Unix socket at `path`. A daemon restart
    /// closes the socket: every request then fails with [`Error::Io`], and
    /// connecting again (and watching again) is the caller's business.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        Client::with_transport(Box::new(UnixSocket::connect(path.as_ref())?), Options::default())
    }

    /// Runs the client over any transport, and starts its background
    /// reader thread (see "Who reads" in the module's documentation).
    pub fn with_transport(transport: Box<dyn Transport>, options: Options) -> Result<Client, Error> {
        let reader = transport.reader()?;
        let end = ReadEnd { reader, buf: vec![0u8; 16 * 1024] };
        let inner = Arc::new(Inner {
            hub: Mutex::new(Hub::new()),
            write_lock: Mutex::new(()),
            transport,
            options,
            reading: Mutex::new(Reading { end: Some(end), dropped: false }),
            wanted: Condvar::new(),
        });
        let for_reader = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("xenstore-reader".into())
            .spawn(move || for_reader.background())
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
        let request = Request::TransactionStart;
        let (payload, epoch) = self.inner.call_with(None, |hub, out, waiter| hub.begin(0, &request, out, waiter))?;
        let id = store::expect_tx_id(decode_reply(request.op(), &payload)?)?;
        Ok(Transaction { client: self, id, epoch, finished: false })
    }

    /// Runs `body` in a transaction and commits it; on `EAGAIN` (a conflict
    /// at commit, or inside `body`) starts over, at most
    /// [`Options::transaction_retries`] times, then returns that `EAGAIN`.
    /// Any other error from `body` aborts the transaction and is returned.
    ///
    /// A transaction the connection was resumed under ([`Error::Restarted`]
    /// from `TRANSACTION_START` or from `body`, or a body that finished in
    /// an earlier connection) also starts over, within the same bound:
    /// nothing of it was committed. Only a commit in flight when the
    /// connection was resumed fails with [`Error::Restarted`] (the old
    /// daemon may have committed it).
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
            let (result, may_retry) = match self.transaction_start() {
                Ok(tx) => match body(&tx) {
                    Ok(_) if tx.is_stale() => (Err(Error::Restarted), true),
                    Ok(value) => {
                        let result = tx.commit().map(|()| value);
                        // A commit cut off by a resumption is in doubt.
                        let retry = result.as_ref().is_err_and(Error::is_eagain);
                        (result, retry)
                    }
                    Err(err) => {
                        // The body's error is the one that matters.
                        let _ = tx.abort();
                        let retry = err.is_eagain() || err.is_restarted();
                        (Err(err), retry)
                    }
                },
                Err(err) => {
                    let retry = err.is_restarted();
                    (Err(err), retry)
                }
            };
            match result {
                Err(_) if may_retry && attempt < retries => attempt += 1,
                other => return other,
            }
        }
    }

    /// `WATCH <path>|<token>|`: registers a watch and returns its events.
    /// The daemon fires it once at once. Dropping the handle unregisters it.
    ///
    /// Over a guest's ring, the client registers the watch again whenever
    /// it resumes the connection (see the crate documentation, "Across a
    /// daemon restart"); the daemon fires it then too, so a resumption
    /// looks like a spurious event (which the protocol allows anyway).
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
        let (events_in, events) = mpsc::channel();
        let doorbell = Arc::new(OnceLock::new());
        let sink = EventSink { events: events_in, doorbell: Arc::clone(&doorbell) };
        // Subscribe first: the first event may overtake the WATCH reply.
        let subscription = {
            let mut hub = self.inner.hub();
            let subscription = hub.subscribe(token, sink);
            hub.register(subscription, path, token, depth);
            subscription
        };
        // On failure the handle is dropped: it unsubscribes, and having
        // nothing registered it sends no UNWATCH (but see `unwatch_lost`).
        let mut watch =
            Watch { inner: Arc::clone(&self.inner), subscription, events, doorbell, registered: Vec::new() };
        let reply = self.inner.call(0, &Request::Watch { path, token, depth }).inspect_err(|err| {
            self.inner.unwatch_lost(err, path, token);
        })?;
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
        self.inner.call_raw(0, None, op, payload)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.transport.shutdown();
        lock(&self.inner.reading).dropped = true;
        self.inner.wanted.notify_one();
    }
}

/// An open transaction. Node operations come from [`Store`]; changes are
/// seen by others only after [`Transaction::commit`]. Dropping it without
/// committing aborts it.
///
/// If the client resumes its connection (a guest's ring, after a daemon
/// restart), the daemon forgets the transaction: every later request in it
/// fails with [`Error::Restarted`] without being sent (its id may belong
/// to a new transaction by then).
#[derive(Debug)]
pub struct Transaction<'c> {
    client: &'c Client,
    id: u32,
    /// The connection's epoch when the transaction started.
    epoch: u64,
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
        let request = Request::TransactionEnd { commit };
        store::expect_ok(Op::TransactionEnd, self.client.inner.call_in(self.id, Some(self.epoch), &request)?)
    }

    /// Whether the connection was resumed since the transaction started
    /// (the daemon no longer has it).
    fn is_stale(&self) -> bool {
        self.client.inner.hub().epoch() != self.epoch
    }
}

impl Store for Transaction<'_> {
    fn request(&self, request: &Request<'_>) -> Result<Reply, Error> {
        self.client.inner.call_in(self.id, Some(self.epoch), request)
    }

    fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.client.inner.call_raw(self.id, Some(self.epoch), op, payload)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.inner.send_detached(self.id, Some(self.epoch), &Request::TransactionEnd { commit: false });
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
    /// The eventfd rung after each event, made when first asked for.
    doorbell: Arc<OnceLock<OwnedFd>>,
    registered: Vec<(String, Vec<u8>)>,
}

impl Watch {
    /// Also watches `path` with `token`, delivering into this handle (so
    /// events of several watches keep their relative order).
    pub fn add(&mut self, path: &str, token: impl AsRef<[u8]>) -> Result<(), Error> {
        let token = token.as_ref();
        store::check_token(token)?;
        {
            let mut hub = self.inner.hub();
            hub.add_route(self.subscription, token);
            hub.register(self.subscription, path, token, None);
        }
        let result = self.inner.call(0, &Request::Watch { path, token, depth: None });
        if let Err(err) = &result {
            self.inner.unwatch_lost(err, path, token);
        }
        store::settle_watch(result, &mut self.registered, path, token, || {
            let mut hub = self.inner.hub();
            hub.remove_route(self.subscription, token);
            hub.unregister(self.subscription, path, token);
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
        {
            let mut hub = self.inner.hub();
            if !shared {
                hub.remove_route(self.subscription, token);
            }
            hub.unregister(self.subscription, path, token);
        }
        let result = self.inner.call(0, &Request::Unwatch { path, token });
        match result.and_then(|reply| store::expect_ok(Op::Unwatch, reply)) {
            // A resumed connection has no watches but those registered
            // again, and this one no longer is: it is gone.
            Ok(()) | Err(Error::Restarted) => {}
            Err(err) => {
                let mut hub = self.inner.hub();
                if !shared {
                    hub.add_route(self.subscription, token);
                }
                hub.register(self.subscription, path, token, None);
                return Err(err);
            }
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

    /// The next event if one is already here. With a doorbell, drains it
    /// first: an event that arrives after this call rings it again.
    pub fn try_recv(&self) -> Result<WatchEvent, TryRecvError> {
        if let Some(bell) = self.doorbell.get() {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(bell, &mut count);
        }
        self.events.try_recv()
    }

    /// A descriptor that polls readable while an event may be waiting: a
    /// program that also waits on other descriptors (event channels, a
    /// ring) waits on it too, and is woken by xenstore's events at once
    /// rather than when it next looks. An eventfd made on the first call,
    /// rung after each event and drained by [`Watch::try_recv`]; each call
    /// returns a duplicate, the caller's to keep, readable at once in case
    /// events came before.
    pub fn doorbell(&self) -> io::Result<OwnedFd> {
        if self.doorbell.get().is_none() {
            let fd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )?;
            let _ = self.doorbell.set(fd);
        }
        let bell = self.doorbell.get().ok_or_else(|| io::Error::other("no doorbell"))?;
        ring(bell);
        bell.try_clone()
    }

    /// Unregisters every watch of this handle and waits for the daemon to
    /// confirm; returns the first error.
    pub fn unwatch(mut self) -> Result<(), Error> {
        self.inner.hub().unsubscribe(self.subscription);
        let mut first_err = None;
        for (path, token) in std::mem::take(&mut self.registered) {
            let result = self.inner.call(0, &Request::Unwatch { path: &path, token: &token });
            match result.and_then(|reply| store::expect_ok(Op::Unwatch, reply)) {
                // Gone with the old connection, and not registered again.
                Ok(()) | Err(Error::Restarted) => {}
                Err(err) => {
                    first_err.get_or_insert(err);
                }
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
            self.inner.send_detached(0, None, &Request::Unwatch { path: &path, token: &token });
        }
    }
}
