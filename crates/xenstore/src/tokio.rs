//! The async client (feature `tokio`), over the same
//! [`ClientCore`](crate::ClientCore) as the blocking one.
//!
//! [`AsyncClient::connect`] spawns two tasks on the current tokio runtime:
//! a writer that owns the socket's write half and writes whole messages
//! from a queue (so a cancelled request can never leave half a message on
//! the stream), and a reader that feeds the core and completes waiting
//! requests and watch streams. Requests are futures; any number may be in
//! flight at once, from any task. Dropping a request future abandons it:
//! its reply is consumed and dropped when it comes.
//!
//! [`AsyncClient::with_transport`] runs the same client over a blocking
//! [`Transport`] (a hosted guest's ring), with threads in place of the two
//! tasks.

mod over_transport;

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use ::tokio::net::UnixStream;
use ::tokio::sync::{mpsc, oneshot};
use ::tokio::task::JoinHandle;
use xenstore_wire::{DomId, Op, PermList, Reply, Request, WatchEvent};

use crate::core::{decode_reply, DirectoryListing, SubscriptionId};
use crate::error::Error;
use crate::hub::{Hub, Outcome, Sink, Waiter};
use crate::store;
use crate::sync::Options;
use crate::transport::{self, Transport};

impl Waiter for oneshot::Sender<Outcome> {
    fn complete(self, outcome: Outcome) {
        let _ = self.send(outcome);
    }
}

impl Sink for mpsc::UnboundedSender<WatchEvent> {
    fn deliver(&self, event: WatchEvent) {
        let _ = self.send(event);
    }
}

type AsyncHub = Hub<oneshot::Sender<Outcome>, mpsc::UnboundedSender<WatchEvent>>;

struct Inner {
    hub: Mutex<AsyncHub>,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    options: Options,
    /// The blocking transport, when threads drive one (shut down when the
    /// client is dropped, to end the reader thread).
    transport: Option<Arc<dyn Transport>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Inner {
    fn hub(&self) -> MutexGuard<'_, AsyncHub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn call(&self, tx_id: u32, request: &Request<'_>) -> Result<Reply, Error> {
        let payload = self.call_with(|hub, out, waiter| hub.begin(tx_id, request, out, waiter)).await?;
        decode_reply(request.op(), &payload)
    }

    async fn call_raw(&self, tx_id: u32, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.call_with(|hub, out, waiter| hub.begin_raw(op, tx_id, payload, out, waiter)).await
    }

    async fn call_with(
        &self,
        begin: impl FnOnce(&mut AsyncHub, &mut Vec<u8>, oneshot::Sender<Outcome>) -> Result<u32, Error>,
    ) -> Result<Vec<u8>, Error> {
        let (waiter, reply) = oneshot::channel();
        let mut out = Vec::new();
        let req_id = begin(&mut self.hub(), &mut out, waiter)?;
        let mut guard = Abandon { inner: self, req_id: Some(req_id) };
        if self.outgoing.send(out).is_err() {
            return Err(Error::closed());
        }
        let outcome = reply.await.unwrap_or_else(|_| Err(Error::closed()));
        guard.req_id = None;
        outcome
    }

    fn send_detached(&self, tx_id: u32, request: &Request<'_>) {
        let mut out = Vec::new();
        if self.hub().begin_detached(tx_id, request, &mut out).is_ok() {
            let _ = self.outgoing.send(out);
        }
    }

    fn close(&self, err: Error) {
        self.hub().close(err);
    }

    fn shutdown_transport(&self) {
        if let Some(transport) = &self.transport {
            transport.shutdown();
        }
    }
}

/// Aborts (without waiting) a transaction still open when dropped.
struct AbortOnDrop<'a> {
    inner: &'a Inner,
    id: Option<u32>,
}

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.inner.send_detached(id, &Request::TransactionEnd { commit: false });
        }
    }
}

/// Forgets a request whose future is dropped before its reply came.
struct Abandon<'a> {
    inner: &'a Inner,
    req_id: Option<u32>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(req_id) = self.req_id {
            self.inner.hub().forget(req_id);
        }
    }
}

async fn write_loop(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Vec<u8>>, mut writer: OwnedWriteHalf) {
    while let Some(bytes) = rx.recv().await {
        if let Err(err) = writer.write_all(&bytes).await {
            inner.close(Error::Io(err));
            break;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(inner: Arc<Inner>, mut reader: OwnedReadHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break inner.close(Error::closed()),
            Ok(n) => {
                if inner.hub().receive(buf.get(..n).unwrap_or_default()).is_err() {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => break inner.close(Error::Io(err)),
        }
    }
}

/// An async connection to `xenstored`. Cheap to share: every method takes
/// `&self`. Dropping it closes the connection (requests in flight fail,
/// watch streams end).
#[derive(Debug)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

macro_rules! node_ops {
    ($tx:expr) => {
        /// Sends one typed request and waits for its reply.
        pub async fn request(&self, request: &Request<'_>) -> Result<Reply, Error> {
            self.inner.call($tx(self), request).await
        }

        /// Sends a caller-built payload; returns the reply's payload.
        pub async fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error> {
            self.inner.call_raw($tx(self), op, payload).await
        }

        /// `READ`: the node's value.
        pub async fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
            match self.request(&Request::Read(path)).await? {
                Reply::Read(value) => Ok(value.to_vec()),
                _ => Err(store::malformed(Op::Read)),
            }
        }

        /// `WRITE`: sets the value, creating the node and missing parents.
        pub async fn write(&self, path: &str, value: &[u8]) -> Result<(), Error> {
            store::expect_ok(Op::Write, self.request(&Request::Write { path, value }).await?)
        }

        /// `MKDIR`: creates the node (empty) and missing parents.
        pub async fn mkdir(&self, path: &str) -> Result<(), Error> {
            store::expect_ok(Op::Mkdir, self.request(&Request::Mkdir(path)).await?)
        }

        /// `RM`: removes the node and everything below it.
        pub async fn rm(&self, path: &str) -> Result<(), Error> {
            store::expect_ok(Op::Rm, self.request(&Request::Rm(path)).await?)
        }

        /// `DIRECTORY`, falling back to `DIRECTORY_PART` for lists over
        /// one payload (see [`DirectoryListing`]).
        pub async fn directory(&self, path: &str) -> Result<Vec<String>, Error> {
            let mut listing = DirectoryListing::new(path);
            loop {
                let reply = self.request(&listing.request()).await;
                if let Some(names) = listing.on_reply(reply)? {
                    return Ok(names);
                }
            }
        }

        /// `GET_PERMS`: the node's permissions, owner first.
        pub async fn get_perms(&self, path: &str) -> Result<PermList, Error> {
            match self.request(&Request::GetPerms(path)).await? {
                Reply::GetPerms(perms) => Ok(perms),
                _ => Err(store::malformed(Op::GetPerms)),
            }
        }

        /// `SET_PERMS`: replaces the node's permissions.
        pub async fn set_perms(&self, path: &str, perms: &PermList) -> Result<(), Error> {
            store::expect_ok(Op::SetPerms, self.request(&Request::SetPerms { path, perms: perms.clone() }).await?)
        }
    };
}

impl AsyncClient {
    /// Connects to the daemon's socket (`XENSTORED_PATH`, else
    /// `$XENSTORED_RUNDIR/socket`; the xenbus device is not supported by
    /// the async client); inside a hosted guest, over the guest's ring
    /// (see [`transport::hosted`]).
    pub async fn open() -> Result<AsyncClient, Error> {
        if transport::hosted::in_hosted_guest() {
            // Connecting waits for the ring's reset: keep it off the runtime.
            let connected = ::tokio::task::spawn_blocking(transport::hosted::connect_guest_ring)
                .await
                .map_err(|err| Error::Io(io::Error::other(err)))?;
            return AsyncClient::with_transport(connected?, Options::default());
        }
        AsyncClient::connect(transport::daemon_socket_path()).await
    }

    /// Runs the client over a blocking transport, with a reader and a
    /// writer thread in place of tasks (no runtime needed to start it).
    pub fn with_transport(transport: Box<dyn Transport>, options: Options) -> Result<AsyncClient, Error> {
        over_transport::start(transport, options)
    }

    /// Connects to the Unix socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<AsyncClient, Error> {
        let stream = UnixStream::connect(path.as_ref()).await?;
        Ok(AsyncClient::from_stream(stream, Options::default()))
    }

    /// Runs the client over a connected stream; spawns its reader and
    /// writer tasks on the current runtime (panics outside one).
    pub fn from_stream(stream: UnixStream, options: Options) -> AsyncClient {
        let (reader, writer) = stream.into_split();
        let (outgoing, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            hub: Mutex::new(Hub::new()),
            outgoing,
            tasks: Mutex::new(Vec::new()),
            options,
            transport: None,
        });
        let tasks = vec![
            ::tokio::spawn(write_loop(Arc::clone(&inner), rx, writer)),
            ::tokio::spawn(read_loop(Arc::clone(&inner), reader)),
        ];
        *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
        AsyncClient { inner }
    }

    node_ops!(|_: &Self| 0);

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.hub().is_closed()
    }

    /// `TRANSACTION_START`: a transaction; dropping it uncommitted aborts it.
    pub async fn transaction_start(&self) -> Result<AsyncTransaction, Error> {
        let id = store::expect_tx_id(self.inner.call(0, &Request::TransactionStart).await?)?;
        Ok(AsyncTransaction { inner: Arc::clone(&self.inner), id, finished: false, abort_on_drop: true })
    }

    /// Runs `body` in a transaction and commits it, starting over on
    /// `EAGAIN` at most [`Options::transaction_retries`] times (then that
    /// `EAGAIN` is returned). Any other error aborts and is returned. The
    /// helper commits: `body` must not end the transaction itself.
    pub async fn transaction<T, F, Fut>(&self, mut body: F) -> Result<T, Error>
    where
        F: FnMut(AsyncTransaction) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            let mut tx = self.transaction_start().await?;
            tx.abort_on_drop = false;
            let id = tx.id;
            // If this future is dropped before the transaction ends, abort
            // it rather than leave it open on the daemon.
            let mut open = AbortOnDrop { inner: &self.inner, id: Some(id) };
            let result = match body(tx).await {
                Ok(value) => self.end(id, true).await.map(|()| value),
                Err(err) => {
                    let _ = self.end(id, false).await;
                    Err(err)
                }
            };
            open.id = None;
            match result {
                Err(err) if err.is_eagain() && attempt < self.inner.options.transaction_retries => attempt += 1,
                other => return other,
            }
        }
    }

    async fn end(&self, id: u32, commit: bool) -> Result<(), Error> {
        store::expect_ok(Op::TransactionEnd, self.inner.call(id, &Request::TransactionEnd { commit }).await?)
    }

    /// `WATCH`: registers a watch; its events are a [`Stream`](futures_core::Stream).
    pub async fn watch(&self, path: &str, token: impl AsRef<[u8]>) -> Result<AsyncWatch, Error> {
        let token = token.as_ref();
        store::check_token(token)?;
        let (sink, events) = mpsc::unbounded_channel();
        let subscription = self.inner.hub().subscribe(token, sink);
        let mut watch = AsyncWatch { inner: Arc::clone(&self.inner), subscription, events, registered: Vec::new() };
        let reply = self.inner.call(0, &Request::Watch { path, token, depth: None }).await?;
        watch.registered.push((path.to_owned(), token.to_vec()));
        store::expect_ok(Op::Watch, reply)?;
        Ok(watch)
    }

    /// `GET_DOMAIN_PATH`.
    pub async fn get_domain_path(&self, domid: DomId) -> Result<String, Error> {
        store::expect_domain_path(self.inner.call(0, &Request::GetDomainPath(domid)).await?)
    }

    /// `IS_DOMAIN_INTRODUCED`.
    pub async fn is_domain_introduced(&self, domid: DomId) -> Result<bool, Error> {
        store::expect_bool(self.inner.call(0, &Request::IsDomainIntroduced(domid)).await?)
    }

    /// `INTRODUCE`.
    pub async fn introduce(&self, domid: DomId, gfn: u64, port: u32) -> Result<(), Error> {
        store::expect_ok(Op::Introduce, self.inner.call(0, &Request::Introduce { domid, gfn, port }).await?)
    }

    /// `RELEASE`.
    pub async fn release(&self, domid: DomId) -> Result<(), Error> {
        store::expect_ok(Op::Release, self.inner.call(0, &Request::Release(domid)).await?)
    }

    /// `RESUME`.
    pub async fn resume(&self, domid: DomId) -> Result<(), Error> {
        store::expect_ok(Op::Resume, self.inner.call(0, &Request::Resume(domid)).await?)
    }

    /// `SET_TARGET`: `domid` may act for `target`.
    pub async fn set_target(&self, domid: DomId, target: DomId) -> Result<(), Error> {
        store::expect_ok(Op::SetTarget, self.inner.call(0, &Request::SetTarget { domid, target }).await?)
    }

    /// `CONTROL`: `args` is the command and its parameters.
    pub async fn control(&self, args: &[&[u8]]) -> Result<Vec<u8>, Error> {
        let payload = store::control_payload(args);
        store::expect_text(self.inner.call(0, &Request::Control(&payload)).await?)
    }
}

impl Drop for AsyncClient {
    fn drop(&mut self) {
        for task in self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
        self.inner.shutdown_transport();
        self.inner.close(Error::closed());
    }
}

/// An open transaction of an [`AsyncClient`]. Dropping it without
/// [`AsyncTransaction::commit`] aborts it (except inside
/// [`AsyncClient::transaction`], which ends it itself).
#[derive(Debug)]
pub struct AsyncTransaction {
    inner: Arc<Inner>,
    id: u32,
    finished: bool,
    abort_on_drop: bool,
}

impl AsyncTransaction {
    node_ops!(|tx: &Self| tx.id);

    /// The daemon's id for this transaction.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `TRANSACTION_END T`; `EAGAIN` means: run it again.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.end(true).await
    }

    /// `TRANSACTION_END F`.
    pub async fn abort(mut self) -> Result<(), Error> {
        self.end(false).await
    }

    async fn end(&mut self, commit: bool) -> Result<(), Error> {
        self.finished = true;
        store::expect_ok(Op::TransactionEnd, self.inner.call(self.id, &Request::TransactionEnd { commit }).await?)
    }
}

impl Drop for AsyncTransaction {
    fn drop(&mut self) {
        if !self.finished && self.abort_on_drop {
            self.inner.send_detached(self.id, &Request::TransactionEnd { commit: false });
        }
    }
}

/// The events of one or more watches: a [`Stream`](futures_core::Stream)
/// that ends with the connection. Dropping it unregisters its watches.
#[derive(Debug)]
pub struct AsyncWatch {
    inner: Arc<Inner>,
    subscription: SubscriptionId,
    events: mpsc::UnboundedReceiver<WatchEvent>,
    registered: Vec<(String, Vec<u8>)>,
}

impl AsyncWatch {
    /// The next event; `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().await
    }

    /// Also watches `path` with `token`, delivering into this stream.
    pub async fn add(&mut self, path: &str, token: impl AsRef<[u8]>) -> Result<(), Error> {
        let token = token.as_ref();
        store::check_token(token)?;
        self.inner.hub().add_route(self.subscription, token);
        let result = self.inner.call(0, &Request::Watch { path, token, depth: None }).await;
        store::settle_watch(result, &mut self.registered, path, token, || {
            self.inner.hub().remove_route(self.subscription, token)
        })
    }

    /// Unregisters every watch of this stream and waits for the daemon.
    pub async fn unwatch(mut self) -> Result<(), Error> {
        self.inner.hub().unsubscribe(self.subscription);
        let mut first_err = None;
        for (path, token) in std::mem::take(&mut self.registered) {
            let result = self.inner.call(0, &Request::Unwatch { path: &path, token: &token }).await;
            if let Err(err) = result.and_then(|reply| store::expect_ok(Op::Unwatch, reply)) {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl futures_core::Stream for AsyncWatch {
    type Item = WatchEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.get_mut().events.poll_recv(cx)
    }
}

impl Drop for AsyncWatch {
    fn drop(&mut self) {
        self.inner.hub().unsubscribe(self.subscription);
        for (path, token) in std::mem::take(&mut self.registered) {
            self.inner.send_detached(0, &Request::Unwatch { path: &path, token: &token });
        }
    }
}
