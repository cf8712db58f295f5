//! The event loop: one thread, `epoll` through mio, around the engine.
//!
//! The request path, each layer crossed once:
//!
//! 1. **poll**: a socket is readable, or the event-channel handle says
//!    which rings have news;
//! 2. **connection read** ([`Connection::receive`]): bytes become requests
//!    (the socket's decoder, or the ring layer's);
//! 3. **engine** ([`Engine::handle`]): a request and its caller's identity
//!    go in; the reply, the watch events and the effects come out;
//! 4. **effects** ([`Server::carry_out`]): attach or detach a domain's
//!    ring, a daemon-only CONTROL command; a failure is reported back to
//!    the engine once, which undoes the request;
//! 5. **journal** (with `--persist`, [`crate::persist`]): the outcome's
//!    applied changes join the iteration's group;
//! 6. **flush**: events and replies are queued on their connections'
//!    outboxes and written once per loop iteration, many messages per
//!    write, oldest connections first ([`Dirty`]).
//!
//! With a journal, nothing is written to any connection while changes
//! wait in the group: a connection whose input drained is flushed at once
//! only if the group is empty (a read-only request's reply, when nothing
//! unsynced precedes it anywhere), else it waits for the end of the
//! iteration, where [`Server::commit`] writes the group as one record and
//! syncs it once (group commit) before [`Server::flush_dirty`] writes.
//!
//! Sockets and rings are one [`Connection`] type with one flow-control
//! rule (see [`crate::conn`]). A framing error cuts off only that
//! connection.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use rustc_hash::FxHashMap;
use tracing::{debug, info, warn};
use xenstore_db::{Caller, Config, ConnId, Delivery, Engine, Outcome};
use xenstore_wire::{DomId, ErrorCode, Op, Packet, Request, HEADER_LEN};

use crate::conn::{Connection, Received, Transport, TURN_BUDGET, TURN_TIME};
use crate::dirty::Dirty;
use crate::metrics::{self, Metrics};
use crate::outbox::Limits;
use crate::peers::Peers;
use crate::refusals::{Cause, Refusals};
use crate::rings::{Platform, Rings};
use crate::socket::{self, SocketConn};
use crate::stats::Counters;
use crate::trace::Trace;

pub(crate) const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(usize::MAX);
/// SIGHUP: reopen the log and trace files.
const HANGUP: Token = Token(usize::MAX - 1);
/// The event-channel handle (every ring, and VIRQ_DOM_EXC).
pub(crate) const EVTCHN: Token = Token(usize::MAX - 2);
const READ_CHUNK: usize = 64 * 1024;
/// Connections accepted per loop iteration before the others are served:
/// one, so that a client connecting in a loop (64 KiB of garbage each)
/// costs the others one connection's handling per iteration (measured:
/// a quiet client's READ p50 went from starved to 10x idle, with 4 it was
/// 31x); a legitimate burst is still accepted within milliseconds.
const ACCEPT_BUDGET: usize = 1;
/// Queued bytes at which a connection whose turn ran out is flushed
/// before its input drains.
const EARLY_FLUSH: usize = 4096;
/// Connections flushed per loop iteration before new requests are read.
const FLUSH_BUDGET: usize = 64;
/// How often accepting is retried while descriptors are short.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The daemon's state.
#[derive(Debug)]
pub struct Server {
    pub(crate) poll: Poll,
    /// The listening socket and its path (none in process: see
    /// [`Server::in_process`]).
    pub(crate) listener: Option<(UnixListener, PathBuf)>,
    pub(crate) engine: Engine,
    /// Every connection, socket or ring, by the engine's id for it.
    pub(crate) conns: FxHashMap<ConnId, Connection>,
    /// Read end of the signal pipe, kept open while registered.
    _signals: Option<UnixStream>,
    /// Read end of the SIGHUP pipe.
    hangup: Option<UnixStream>,
    /// What else SIGHUP reopens (the binary's log file).
    on_hangup: Option<HangupHook>,
    pub(crate) trace: Trace,
    pub(crate) limits: Limits,
    pub(crate) dirty: Dirty,
    /// Refusals already logged, and their rate limit.
    refusals: Refusals,
    /// The check on each accepted connection's peer.
    peers: Peers,
    /// The platform and the rings' index, when domains are served.
    pub(crate) rings: Option<Rings>,
    /// Connections to serve again at the next iteration (their turn's
    /// budget ran out, or their reading was unpaused), after the others.
    pub(crate) again: Vec<ConnId>,
    /// Rings not read for their domain's memory quota ([`crate::memory`]).
    pub(crate) stalled: rustc_hash::FxHashSet<ConnId>,
    /// Every guest's write credit ([`crate::write_rate`]).
    pub(crate) write_rate: crate::write_rate::WriteRate,
    /// Rings not read for the write rate limit, and until when.
    pub(crate) rate_held: Vec<(Instant, ConnId)>,
    /// The opt-in Prometheus listener and its scrapers.
    pub(crate) metrics: Option<Metrics>,
    /// Counters of the socket connections that have closed, by domain
    /// (a domain's go when it does).
    pub(crate) departed: FxHashMap<DomId, Counters>,
    /// When the daemon started (uptime, in the statistics).
    pub(crate) started: Instant,
    /// Accepting failed for want of descriptors: the listener is
    /// edge-triggered, so its backlog would never be announced again;
    /// accepting is retried every loop iteration (and the loop wakes at
    /// least every [`ACCEPT_RETRY`]) until it works.
    accept_stalled: bool,
    /// The last accept stopped at its budget: more may be waiting.
    pub(crate) accept_more: bool,
    /// The rate limit of the lines saying a connection was cut off.
    cutoff_log: xen_platform::RateLimit,
    read_buf: Vec<u8>,
    /// Scratch for the requests of one receive.
    packets: Vec<Packet>,
    stop: bool,
    /// The journal (`--persist`).
    pub(crate) persist: Option<crate::persist::Persist>,
    /// The journal failed: the loop ends with this error.
    fatal: Option<anyhow::Error>,
    /// The live-update session, if one is open.
    pub(crate) live_update: Option<crate::live_update::Session>,
    /// When each connection with open transactions started its first
    /// (live update's timeout rule).
    pub(crate) tx_started: FxHashMap<ConnId, Instant>,
    /// Contended connections' transaction starts, taking turns
    /// ([`crate::tx_gate`]).
    pub(crate) gate: crate::tx_gate::TxGate,
    /// The rings' platform while a live update has their event-channel
    /// handle apart.
    pub(crate) detached: Option<crate::live_update::handover::Detached>,
    /// Where and how the daemon was started, for a live update.
    pub(crate) exec: crate::live_update::handover::ExecContext,
}

/// What the embedding program does on SIGHUP besides reopening the
/// trace file.
struct HangupHook(Box<dyn FnMut() + Send>);

impl std::fmt::Debug for HangupHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HangupHook")
    }
}

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub socket: PathBuf,
    /// The engine's settings.
    pub config: Config,
    /// Output bounds per connection.
    pub limits: Limits,
    /// Trace file, if any.
    pub trace_file: Option<PathBuf>,
}

impl Server {
    /// Keeps the store in `dir` from now on (`--persist`): rebuilds the
    /// engine from what is there (the engine's settings are the start of an
    /// empty store's), and journals every change before it is
    /// acknowledged. Call before any connection exists and before
    /// [`Server::serve_domains`], which attaches the recovered domains'
    /// rings again.
    pub fn persist(&mut self, dir: &Path, snapshot_bytes: u64) -> Result<crate::persist::Recovery> {
        anyhow::ensure!(self.conns.is_empty(), "persistence must be set up before any connection");
        let (mut persist, engine, report) = crate::persist::Persist::open(dir, self.engine.config())?;
        persist.snapshot_bytes = snapshot_bytes;
        self.engine = engine;
        self.persist = Some(persist);
        Ok(report)
    }

    /// Keeps the store in `dir` from now on, after a live update: the
    /// engine came from the daemon before (which synced its journal before
    /// handing over), so the directory starts again from a snapshot of it.
    pub fn persist_handed_over(&mut self, dir: &Path, snapshot_bytes: u64) -> Result<()> {
        let (mut persist, _, _) = crate::persist::Persist::open(dir, self.engine.config())?;
        persist.snapshot_bytes = snapshot_bytes;
        persist.snapshot(&self.engine)?;
        self.persist = Some(persist);
        Ok(())
    }

    /// Serves domains' rings through `platform` from now on: binds
    /// VIRQ_DOM_EXC, serves dom0's own ring if the platform has one (a
    /// privileged connection, as the C daemon's `dom0_init`, notifying
    /// dom0's port once as it does), and polls the event-channel handle.
    /// Without a platform, INTRODUCE only records the domain in the store.
    pub fn serve_domains(&mut self, platform: Platform) -> Result<()> {
        let registry = self.poll.registry().try_clone().context("sharing the poll with the rings")?;
        let mut rings = Rings::new(platform, registry).context("binding VIRQ_DOM_EXC")?;
        if let Some((pages, port)) = rings.platform.dom0_store.dom0_ring().context("finding dom0's xenstore ring")? {
            let conn = self.engine.connect(Caller::DOM0);
            let features = self.engine.config().features;
            let ring = rings.attach_dom0(pages, port, conn, features).context("binding dom0's xenstore port")?;
            info!(conn, port = ring.port, "serving dom0's xenstore ring");
            // Dom0's kernel starts probing its backends (xenbus's
            // `wake_waiting` sets `xenstored_ready`) at the first event on
            // this port: without it netback and blkback never register.
            if let Err(e) = ring.announce() {
                warn!(port = ring.port, "cannot notify dom0's xenstore port: {e}");
            }
            self.conns.insert(conn, Connection::new(Transport::Ring(ring)));
            self.again.push(conn);
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&rings.platform.events.as_fd());
        self.poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd), EVTCHN, Interest::READABLE)
            .context("polling the event-channel handle")?;
        self.rings = Some(rings);
        self.reattach_recovered_rings();
        Ok(())
    }

    /// Binds the socket (replacing a stale one) and prepares the loop.
    /// SIGTERM and SIGINT end [`Server::run`] cleanly.
    pub fn bind(settings: Settings) -> Result<Server> {
        let mut server = Server::new(settings.config, settings.limits, settings.trace_file.as_deref())?;
        server.listen(&settings.socket)?;
        server.handle_signals()?;
        Ok(server)
    }

    /// Where and how the daemon was started (its run directory, working
    /// directory and arguments), which a live update executes the new
    /// binary with.
    pub fn set_exec_context(&mut self, exec: crate::live_update::handover::ExecContext) {
        self.exec = exec;
    }

    /// The listening socket's descriptor, if there is one.
    pub(crate) fn listener_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.listener.as_ref().map(|(l, _)| l.as_fd())
    }

    /// Binds the listening socket at `socket`.
    pub(crate) fn listen(&mut self, socket: &Path) -> Result<()> {
        // The socket's own directory is made if missing (the default,
        // /var/run/xenstored, as the C daemon makes its run directory), but
        // not a whole tree: a typo in --socket is an error, not new
        // directories.
        if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir(dir).with_context(|| format!("creating the socket's directory {}", dir.display()))?;
        }
        remove_stale_socket(socket)?;
        let mut listener = UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
        // Socket connections are privileged: only the owner may connect.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        self.poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some((listener, socket.to_path_buf()));
        Ok(())
    }

    /// SIGTERM and SIGINT end the loop; SIGHUP reopens the logs.
    pub(crate) fn handle_signals(&mut self) -> Result<()> {
        let (signal_read, signal_write) = std::os::unix::net::UnixStream::pair()?;
        signal_read.set_nonblocking(true)?;
        signal_write.set_nonblocking(true)?;
        let signal_write_clone = signal_write.try_clone()?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, signal_write)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, signal_write_clone)?;
        let mut signals = UnixStream::from_std(signal_read);
        self.poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        self._signals = Some(signals);

        // SIGHUP reopens the log and trace files (logrotate), as the C
        // daemon's does; it no longer ends the process.
        let (hangup_read, hangup_write) = std::os::unix::net::UnixStream::pair()?;
        hangup_read.set_nonblocking(true)?;
        hangup_write.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, hangup_write)?;
        let mut hangup = UnixStream::from_std(hangup_read);
        self.poll.registry().register(&mut hangup, HANGUP, Interest::READABLE)?;
        self.hangup = Some(hangup);
        Ok(())
    }

    /// A server with no listening socket and no signal handling, for a
    /// process that drives it itself ([`Server::step`]) and hands it its
    /// connections ([`Server::adopt_socket`]): the stepped test world.
    pub fn in_process(config: Config, limits: Limits) -> Result<Server> {
        Server::new(config, limits, None)
    }

    pub(crate) fn new(config: Config, limits: Limits, trace_file: Option<&Path>) -> Result<Server> {
        Ok(Server {
            poll: Poll::new().context("creating the poll instance")?,
            listener: None,
            engine: Engine::new(config),
            conns: FxHashMap::default(),
            _signals: None,
            hangup: None,
            on_hangup: None,
            trace: Trace::open(trace_file).context("opening the trace file")?,
            limits,
            dirty: Dirty::default(),
            refusals: Refusals::default(),
            peers: Peers::default(),
            rings: None,
            again: Vec::new(),
            stalled: Default::default(),
            write_rate: Default::default(),
            rate_held: Vec::new(),
            metrics: None,
            departed: FxHashMap::default(),
            started: Instant::now(),
            accept_stalled: false,
            accept_more: false,
            cutoff_log: xen_platform::RateLimit::new(10),
            read_buf: vec![0; READ_CHUNK],
            packets: Vec::new(),
            stop: false,
            persist: None,
            fatal: None,
            live_update: None,
            tx_started: FxHashMap::default(),
            gate: crate::tx_gate::TxGate::default(),
            detached: None,
            exec: Default::default(),
        })
    }

    /// Runs until SIGTERM or SIGINT, then removes the socket.
    pub fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let timeout = if self.has_work() { Some(std::time::Duration::ZERO) } else { self.next_timer() };
            self.step(&mut events, timeout)?;
        }
        info!("shutting down");
        if let Some(p) = &mut self.persist {
            p.sync()?;
            let s = p.stats;
            info!(
                syncs = s.syncs,
                requests = s.requests,
                bytes = s.bytes,
                mean_us =
                    u64::try_from(s.time.as_micros().checked_div(u128::from(s.syncs)).unwrap_or(0)).unwrap_or(u64::MAX),
                max_us = u64::try_from(s.max.as_micros()).unwrap_or(u64::MAX),
                snapshots = s.snapshots,
                "journal"
            );
        }
        if let Some((_, path)) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
        if let Some(path) = self.metrics.as_ref().and_then(Metrics::socket_path) {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// How long until something is due that no readiness event will
    /// announce: a connection held by the write rate limit may be read,
    /// or accepting is retried while descriptors are short. `None`: nothing.
    pub fn next_timer(&self) -> Option<std::time::Duration> {
        let retry = self.accept_stalled.then_some(ACCEPT_RETRY);
        let retry = match (retry, self.live_update_waiting().then_some(crate::live_update::RECHECK)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let retry = match (retry, self.rate_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let gate = self.gate.next_deadline().map(|at| at.saturating_duration_since(Instant::now()));
        match (retry, gate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether work is waiting that no readiness event will announce:
    /// output to flush, or connections to serve again.
    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty() || !self.again.is_empty() || self.accept_more
    }

    /// One loop iteration: waits up to `timeout` (`None`: until something
    /// happens) for readiness, serves what is ready and what waited for
    /// its turn, and flushes. Returns how many readiness events there were.
    pub fn step(&mut self, events: &mut Events, timeout: Option<std::time::Duration>) -> Result<usize> {
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e).context("polling");
        }
        let mut ready = 0;
        for event in events.iter() {
            ready += 1;
            match event.token() {
                LISTENER => self.accept(),
                SIGNALS => self.stop = true,
                HANGUP => self.reopen_logs(),
                EVTCHN => self.event_channels(),
                metrics::LISTENER => self.metrics_ready(metrics::LISTENER),
                token if metrics::is_client(token) => self.metrics_ready(token),
                Token(t) => {
                    let id = t as ConnId;
                    if event.is_writable() {
                        if let Some(Transport::Socket(socket)) = self.conns.get_mut(&id).map(|c| &mut c.transport) {
                            socket.blocked = false;
                        }
                        self.dirty.insert(id);
                    }
                    if (event.is_read_closed() || event.is_error()) && self.gate.is_waiting(id) {
                        // Not read while its request waits, so its end
                        // would be seen only at its turn.
                        debug!(conn = id, "closed while its transaction's first request waited");
                        self.close(id);
                    } else if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.serve(id);
                    }
                }
            }
        }
        if self.accept_stalled || self.accept_more {
            self.accept();
        }
        self.recheck_stalled();
        self.recheck_rate_held();
        for id in std::mem::take(&mut self.again) {
            self.serve(id);
        }
        self.gate_turns();
        // The journal first: a live update hands over a synced store.
        self.commit();
        if self.live_update_waiting() {
            // After the requests: a TRANSACTION_END just handled may be
            // what it waited for. Before the flush: every reply already
            // queued travels in the state.
            self.live_update_due();
        }
        self.flush_dirty();
        if let Some(e) = self.fatal.take() {
            self.stop = true;
            return Err(e);
        }
        Ok(ready)
    }

    /// Group commit: writes and syncs the journal's group (every change
    /// this iteration applied), then takes a snapshot if the journal is
    /// due one. A failure stops the daemon ([`Server::step`] returns it):
    /// what it would acknowledge could not be kept, and nothing unsynced
    /// is ever written to a connection.
    pub(crate) fn commit(&mut self) {
        let Some(p) = self.persist.as_mut() else { return };
        let result = p.sync().and_then(|()| if p.snapshot_due() { p.snapshot(&self.engine) } else { Ok(()) });
        if let Err(e) = result {
            tracing::error!("journal: {e:#}; stopping: no change can be acknowledged any more");
            self.fatal.get_or_insert(e);
        }
    }

    /// Whether changes wait in the journal's group: no connection may be
    /// written to until [`Server::commit`].
    pub(crate) fn journal_pending(&self) -> bool {
        self.persist.as_ref().is_some_and(|p| p.pending())
    }

    /// Adds an outcome's applied changes to the journal's group.
    pub(crate) fn journal(&mut self, applied: &[xenstore_db::Applied]) {
        if let Some(p) = self.persist.as_mut() {
            p.append(applied);
        }
    }

    /// Serves a connected socket as a new privileged (dom0) connection,
    /// as if accepted on the listening socket.
    pub fn adopt_socket(&mut self, stream: std::os::unix::net::UnixStream) -> Result<ConnId> {
        stream.set_nonblocking(true).context("making the socket non-blocking")?;
        self.add_socket(UnixStream::from_std(stream)).context("polling the new connection")
    }

    /// Registers a socket connection with the engine (dom0) and the poll.
    fn add_socket(&mut self, mut stream: UnixStream) -> io::Result<ConnId> {
        let id = self.engine.connect(Caller::DOM0);
        if let Err(e) = self.poll.registry().register(&mut stream, socket::token(id), Interest::READABLE) {
            self.engine.disconnect(id);
            return Err(e);
        }
        debug!(conn = id, "connected");
        self.conns.insert(id, Connection::new(Transport::Socket(SocketConn::new(stream))));
        Ok(id)
    }

    /// Sets what SIGHUP does besides reopening the trace file.
    pub fn on_hangup(&mut self, hook: Box<dyn FnMut() + Send>) {
        self.on_hangup = Some(HangupHook(hook));
    }

    /// SIGHUP: reopens the trace file and runs the embedder's hook.
    fn reopen_logs(&mut self) {
        if let Some(pipe) = self.hangup.as_mut() {
            let mut drain = [0u8; 64];
            while matches!(io::Read::read(pipe, &mut drain), Ok(n) if n > 0) {}
        }
        if let Err(e) = self.trace.reopen() {
            warn!("SIGHUP: cannot reopen the trace file: {e}");
        }
        if let Some(HangupHook(hook)) = self.on_hangup.as_mut() {
            hook();
        }
        info!("SIGHUP: log and trace files reopened");
    }

    /// The engine (for the stepped world's checks and for tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Bytes of replies and events queued for a domain's connections
    /// (its ring; dom0: its sockets too), what the daemon holds for it
    /// besides the store.
    pub fn queued_for(&self, domid: DomId) -> usize {
        self.conns
            .iter()
            .filter(|(id, _)| self.engine.caller(**id).is_some_and(|c| c.domid == domid))
            .map(|(_, c)| c.outbox.queued_bytes())
            .sum()
    }

    fn accept(&mut self) {
        // At most ACCEPT_BUDGET per iteration, so a connect flood cannot
        // keep the loop accepting while the connected wait; the rest are
        // accepted at the next iteration (the listener is edge-triggered:
        // `accept_more` remembers them).
        self.accept_more = false;
        for _ in 0..ACCEPT_BUDGET {
            let Some((listener, _)) = &self.listener else { return };
            match listener.accept() {
                Ok((stream, _)) => {
                    // Not dom0 (a hosted guest): closed unserved.
                    if !self.peers.admit(&stream) {
                        continue;
                    }
                    if self.accept_stalled {
                        self.accept_stalled = false;
                        info!("accepting connections again");
                    }
                    if let Err(e) = self.add_socket(stream) {
                        warn!("cannot register a new connection: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_stalled = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error().map(nix::errno::Errno::from_raw),
                        Some(nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)
                    ) =>
                {
                    // EMFILE, ENFILE: one line when it starts, not one per
                    // retry.
                    if !self.accept_stalled {
                        warn!("accept failed, retrying while descriptors are short: {e}");
                        self.accept_stalled = true;
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
        self.accept_more = true;
    }

    /// One turn of a connection: handles what it received, for up to
    /// [`TURN_TIME`] or [`TURN_BUDGET`] requests, unless its reading is
    /// paused.
    pub(crate) fn serve(&mut self, id: ConnId) {
        let mut served = 0;
        // A request the transaction gate let through goes first, in its
        // transaction moved to now; while one waits there, nothing more is
        // read.
        if let Some(packet) = self.gate.take_start(id) {
            self.engine.restart_untouched_transaction(id, packet.header.tx_id);
            self.handle(id, packet);
            served += 1;
        }
        if self.gate.is_waiting(id) {
            return;
        }
        let started = Instant::now();
        loop {
            let Some(conn) = self.conns.get_mut(&id) else { return };
            if !conn.readable() {
                // Its output may have room now (a ring's guest notifies
                // when it has read).
                self.dirty.insert(id);
                return;
            }
            // A reconnection is honoured whatever the memory: it frees the
            // queue and the transactions.
            // The same for the write rate limit: a guest in debt waits.
            // Either way its replies still go out (which is what frees its
            // memory).
            if !conn.reconnect_requested() && (!self.memory_allows_reading(id) || !self.write_rate_allows_reading(id)) {
                self.dirty.insert(id);
                return;
            }
            // The `outstanding` quota: no more requests than replies it may
            // leave untaken (a reconnection is still honoured).
            let room = self.outstanding_room(id);
            let Some(conn) = self.conns.get_mut(&id) else { return };
            if room == 0 && !conn.reconnect_requested() {
                conn.held_outstanding = true;
                self.dirty.insert(id);
                return;
            }
            let mut packets = std::mem::take(&mut self.packets);
            // One request at a time: the clock is looked at after each.
            let received = conn.receive(&mut self.read_buf, &mut packets, 1);
            served += packets.len();
            let mut waits = false;
            for packet in packets.drain(..) {
                match self.through_gate(id, packet) {
                    Some(packet) => self.handle(id, packet),
                    None => waits = true,
                }
            }
            self.packets = packets;
            if waits {
                // Its earlier replies still go out.
                self.dirty.insert(id);
                return;
            }
            match received {
                Received::More => {}
                Received::Drained => {
                    // The replies go out now rather than at the end of the
                    // loop iteration, so the client can send its next
                    // request while the other connections are served;
                    // with changes waiting for the journal's sync, at the
                    // end of the iteration with the group.
                    if self.journal_pending() {
                        self.dirty.insert(id);
                    } else {
                        self.flush(id);
                    }
                    // The pause rule holds however the turn ended, on what
                    // the flush could not write: a ring drains after every
                    // ring-full and a socket after a short read, and a
                    // client that reads no replies would otherwise grow its
                    // queue by a turn's replies every turn (XSA-416).
                    let limits = self.limits;
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.pause_if_full(&limits);
                    }
                    return;
                }
                Received::Closed(why) => {
                    debug!(conn = id, "{why}");
                    self.close(id);
                    return;
                }
                Received::Violation(why) => {
                    self.cut_off(id, &why);
                    return;
                }
                Received::Reconnected => {
                    debug!(conn = id, "ring reconnected: watches and transactions dropped");
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.reconnected();
                    }
                    self.engine.reset(id);
                    self.tx_started.remove(&id);
                    self.gate.forget(id, Instant::now());
                }
            }
            let limits = self.limits;
            let Some(conn) = self.conns.get_mut(&id) else { return };
            let paused = conn.pause_if_full(&limits);
            if paused || served >= TURN_BUDGET || started.elapsed() >= TURN_TIME {
                // A client sending faster than one turn takes gets its
                // replies when its input drains or a turn leaves
                // EARLY_FLUSH bytes queued, not a write per turn: a turn
                // is about one request, and a write per request doubled
                // what a pipelining client cost the others.
                if paused || !conn.readable() || conn.outbox.queued_bytes() >= EARLY_FLUSH {
                    self.dirty.insert(id);
                }
                if conn.readable() {
                    self.again.push(id);
                }
                return;
            }
        }
    }

    /// A request on its way to the engine: back, or held by the
    /// transaction gate when it is the first request of a contended
    /// connection's transaction and must wait its turn (never while a
    /// live update waits: it must not hand over a request nobody
    /// answered). A request let through moves its untouched transaction
    /// to the store as it is now.
    fn through_gate(&mut self, id: ConnId, packet: Packet) -> Option<Packet> {
        let tx_id = packet.header.tx_id;
        if tx_id == 0 || !self.gate.awaits(id, tx_id) || self.live_update_waiting() {
            return Some(packet);
        }
        let packet = self.gate.first_request(id, packet, Instant::now())?;
        self.engine.restart_untouched_transaction(id, tx_id);
        Some(packet)
    }

    /// After a TRANSACTION_START or TRANSACTION_END of `id` with `reply`:
    /// a contended connection's new transaction will wait its turn, a
    /// failed commit makes its connection contended, an ended turn passes
    /// on.
    fn gate_notes(&mut self, id: ConnId, reply: &Result<xenstore_wire::Reply, ErrorCode>) {
        let eagain = matches!(reply, Err(ErrorCode::EAGAIN));
        let open = self.engine.transactions_of(id);
        let now = Instant::now();
        if let (Ok(xenstore_wire::Reply::TransactionStart(tx_id)), 1) = (reply, open) {
            self.gate.started(id, *tx_id, now);
        }
        self.gate.after(id, open, eagain, now);
    }

    /// The transaction gate's turns: what waited its longest goes, and
    /// every start let through is handled and its connection served on.
    fn gate_turns(&mut self) {
        if self.gate.next_deadline().is_some() {
            self.gate.expire(Instant::now());
        }
        if self.live_update_waiting() {
            self.gate.open();
        }
        loop {
            let admitted = self.gate.take_admitted();
            if admitted.is_empty() {
                return;
            }
            for id in admitted {
                self.serve(id);
            }
        }
    }

    /// One request: the engine answers, the effects are carried out, the
    /// events and the reply are queued.
    pub(crate) fn handle(&mut self, id: ConnId, packet: Packet) {
        let header = packet.header;
        self.trace.message("IN", id, &header, &packet.payload);
        let mut outcome = match Request::parse(header.op, &packet.payload) {
            Ok(request) => {
                let rings = &mut self.rings;
                let mut exists = |domid| crate::rings::hypervisor_has(rings.as_mut(), domid);
                self.engine.handle_with(id, header.tx_id, &request, &mut exists)
            }
            Err(e) => Outcome::error(e),
        };
        // A live-update step is the daemon's, with the request's header
        // (a start is answered later).
        let mut deferred = false;
        if let Some(step) = take_live_update(&mut outcome) {
            match self.live_update_step(id, &header, step) {
                Some(text) => outcome.reply = Ok(xenstore_wire::Reply::Text(text)),
                None => deferred = true,
            }
        }
        self.carry_out(&mut outcome);
        self.journal(&outcome.applied);
        let op = Op::from_u32(header.op);
        self.note_transactions(id, op);
        if matches!(op, Some(Op::TransactionStart | Op::TransactionEnd)) {
            self.gate_notes(id, &outcome.reply);
        }
        self.charge_writes(id, header.tx_id, header.op, outcome.applied.len());
        let refused = match (&outcome.reply, &outcome.quota) {
            (_, Some(hit)) => Some(Cause::Quota(hit)),
            (Err(e @ (ErrorCode::EACCES | ErrorCode::EPERM)), None) => Some(Cause::Error(*e)),
            _ => None,
        };
        let refused_quota = matches!(refused, Some(Cause::Quota(_)));
        let refused_access = matches!(refused, Some(Cause::Error(_)));
        if let Some(cause) = refused {
            let domid = self.engine.caller(id).map_or(0, |c| c.domid);
            let name = op.map_or("UNKNOWN", Op::name);
            let path = packet.payload.split(|&b| b == 0).next().unwrap_or_default();
            self.refusals.note(domid, name, path, cause);
        }
        // One look at the clock for all of a request's events.
        let now = if outcome.events.is_empty() && outcome.after_reply.is_none() { None } else { Some(Instant::now()) };
        for delivery in outcome.events {
            self.deliver(delivery, now.unwrap_or_else(Instant::now));
        }
        let mut bytes = Vec::new();
        match (&outcome.reply, op) {
            (Ok(reply), Some(op)) => reply.encode(op, header.req_id, header.tx_id, &mut bytes),
            (Err(e), _) => e.encode_reply(header.req_id, header.tx_id, &mut bytes),
            (Ok(_), None) => ErrorCode::ENOSYS.encode_reply(header.req_id, header.tx_id, &mut bytes),
        }
        if deferred {
            bytes.clear();
        } else {
            self.trace.outgoing(id, &bytes);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            let c = &mut conn.counters;
            c.requests += 1;
            c.bytes_in += (HEADER_LEN + packet.payload.len()) as u64;
            c.bytes_out += bytes.len() as u64;
            c.refused_quota += u64::from(refused_quota);
            c.refused_access += u64::from(refused_access);
            // Flushed by `serve`: at once when the connection's input is
            // drained, else once a turn leaves enough queued.
            if !bytes.is_empty() {
                conn.outbox.push_reply(bytes);
            }
        }
        if let Some(delivery) = outcome.after_reply {
            self.deliver(delivery, now.unwrap_or_else(Instant::now));
        }
    }

    /// Queues a watch event on its connection, as of `now`.
    pub(crate) fn deliver(&mut self, delivery: Delivery, now: Instant) {
        // The exact size: one allocation per event, no growing.
        let mut bytes = Vec::with_capacity(HEADER_LEN + delivery.event.path.len() + delivery.event.token.len() + 2);
        if !delivery.event.encode(&mut bytes) {
            warn!(conn = delivery.conn, path = %delivery.event.path, "watch event over the payload limit dropped");
            return;
        }
        self.trace.outgoing(delivery.conn, &bytes);
        if self.memory_refuses_event(delivery.conn, bytes.len()) {
            return;
        }
        let Some(conn) = self.conns.get_mut(&delivery.conn) else { return };
        conn.counters.events += 1;
        conn.counters.bytes_out += bytes.len() as u64;
        conn.outbox.push_event(bytes, &self.limits, now);
        self.dirty.insert(delivery.conn);
    }

    /// Flushes the [`FLUSH_BUDGET`] connections that have waited longest;
    /// the rest wait for the next iteration (see [`Dirty`]).
    fn flush_dirty(&mut self) {
        for id in self.dirty.take(FLUSH_BUDGET) {
            self.flush(id);
        }
    }

    /// Writes what the connection's transport takes; serves it again once
    /// its backlog has drained.
    fn flush(&mut self, id: ConnId) {
        // Nothing leaves before the changes it may tell of are durable.
        if self.journal_pending() {
            self.dirty.insert(id);
            return;
        }
        let Some(conn) = self.conns.get_mut(&id) else { return };
        match conn.flush(id, self.poll.registry(), &self.limits) {
            // Edge-triggered: data may already be waiting; read it at the
            // next iteration.
            Ok(true) => self.again.push(id),
            Ok(false) => {}
            Err(why) => return self.cut_off(id, &why),
        }
        // Held for the `outstanding` quota: the requests it already wrote
        // announce nothing more, so it is read again once there is room.
        if self.conns.get(&id).is_some_and(|c| c.held_outstanding) && self.outstanding_room(id) > 0 {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.held_outstanding = false;
            }
            self.again.push(id);
        }
    }

    /// A connection broke the protocol, or its transport failed: a socket
    /// is closed (the replies already queued go out first), a ring is
    /// stopped with its error indicator set until the guest reconnects;
    /// either way its watches and transactions are gone.
    fn cut_off(&mut self, id: ConnId, why: &str) {
        // Rate-limited: a client that connects in a loop to send garbage
        // must not write the log at its pace (ten lines a second, the
        // rest counted into the next line).
        let more = self.cutoff_log.admit(Instant::now()).map(|n| {
            if n > 0 {
                format!(" ({n} more not logged)")
            } else {
                String::new()
            }
        });
        let Some(conn) = self.conns.get_mut(&id) else { return };
        match conn.domid() {
            None => {
                if let Some(more) = &more {
                    warn!(conn = id, "protocol violation, closing the connection: {why}{more}");
                }
                self.trace.note(&format!("conn {id} closed: {why}"));
                // Its last replies go only if nothing waits for the
                // journal's sync; else the client never sees them.
                if !self.persist.as_ref().is_some_and(|p| p.pending()) {
                    let _ = conn.flush(id, self.poll.registry(), &self.limits);
                }
                self.close(id);
            }
            Some(domid) => {
                if let Some(more) = &more {
                    warn!(domid, conn = id, "ring stopped: {why}{more}");
                }
                self.trace.note(&format!("conn {id} (domain {domid}) ring stopped: {why}"));
                conn.stop();
                self.engine.reset(id);
                self.gate.forget(id, Instant::now());
            }
        }
    }

    /// Forgets a socket connection.
    fn close(&mut self, id: ConnId) {
        if let Some(Connection { transport: Transport::Socket(mut socket), counters, .. }) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut socket.stream);
            let domid = self.engine.caller(id).map_or(0, |c| c.domid);
            *self.departed.entry(domid).or_default() += counters;
        }
        self.engine.disconnect(id);
        self.dirty.remove(&id);
        self.live_update_forget(id);
        self.gate.forget(id, Instant::now());
    }

    /// The socket path being served (none in process).
    pub fn socket_path(&self) -> Option<&Path> {
        self.listener.as_ref().map(|(_, path)| path.as_path())
    }
}

/// Takes a `live-update` step out of the outcome's effects.
fn take_live_update(outcome: &mut Outcome) -> Option<xenstore_db::LiveUpdate> {
    let at = outcome
        .effects
        .iter()
        .position(|e| matches!(e, xenstore_db::Effect::Daemon(xenstore_db::DaemonCommand::LiveUpdate(_))))?;
    match outcome.effects.remove(at) {
        xenstore_db::Effect::Daemon(xenstore_db::DaemonCommand::LiveUpdate(step)) => Some(step),
        _ => None,
    }
}

fn remove_stale_socket(path: &Path) -> Result<()> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => anyhow::bail!("{} is in use by a running daemon", path.display()),
        Err(_) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing stale {}", path.display())),
        },
    }
}
