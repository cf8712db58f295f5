//! The event loop: one thread, `epoll` through mio, around the engine.
//!
//! Each readable connection is drained into its [`Decoder`]; every complete
//! request goes to the engine at once (pipelined requests are answered in
//! order); the outcome's events go to the watching connections' outboxes,
//! the reply to the caller's. Outboxes are flushed once per loop iteration,
//! many messages per `writev`. A framing error closes only that connection.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use tracing::{debug, info, warn};
use xenstore_db::{Caller, Config, ConnId, Delivery, Engine, Outcome};

use crate::dirty::Dirty;
use xenstore_wire::{Decoder, ErrorCode, Op, Packet, Request};

use crate::outbox::{Limits, Outbox};
use crate::rings::{Platform, Rings};
use crate::trace::Trace;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(usize::MAX);
/// The event-channel handle (every ring, and VIRQ_DOM_EXC).
pub(crate) const EVTCHN: Token = Token(usize::MAX - 2);
const READ_CHUNK: usize = 64 * 1024;
/// Connections flushed per loop iteration before new requests are read.
const FLUSH_BUDGET: usize = 64;

/// One client connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: UnixStream,
    decoder: Decoder,
    pub(crate) outbox: Outbox,
    /// Interest includes WRITABLE (output is waiting on a full socket).
    want_write: bool,
    /// Reading is paused until the outbox drains (backpressure).
    paused: bool,
    /// The socket took no more at the last write: wait for WRITABLE rather
    /// than retry on every new message (a client that never reads would
    /// otherwise cost a failing `writev` per event).
    blocked: bool,
}

/// The daemon's state.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    socket_path: PathBuf,
    pub(crate) engine: Engine,
    pub(crate) conns: HashMap<ConnId, Connection>,
    /// Read end of the signal pipe, kept open while registered.
    _signals: UnixStream,
    pub(crate) trace: Trace,
    pub(crate) limits: Limits,
    pub(crate) soft_quotas: xenstore_db::Quotas,
    pub(crate) dirty: Dirty,
    /// Domains' rings, when a platform to serve them was given.
    pub(crate) rings: Option<Rings>,
    /// Connections whose reading was unpaused: read at the next iteration
    /// (not at once, so one busy client cannot starve the others).
    resume: Vec<ConnId>,
    read_buf: Vec<u8>,
    stop: bool,
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
    /// Soft quotas (logged when exceeded).
    pub soft_quotas: xenstore_db::Quotas,
}

impl Server {
    /// Serves domains' rings through `platform` from now on: binds
    /// VIRQ_DOM_EXC and polls the event-channel handle. Without a
    /// platform, INTRODUCE only records the domain in the store.
    pub fn serve_domains(&mut self, platform: Platform) -> Result<()> {
        let rings = Rings::new(platform).context("binding VIRQ_DOM_EXC")?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&rings.platform.events.as_fd());
        self.poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd), EVTCHN, Interest::READABLE)
            .context("polling the event-channel handle")?;
        self.rings = Some(rings);
        Ok(())
    }
}

impl Server {
    /// Binds the socket (replacing a stale one) and prepares the loop.
    /// SIGTERM and SIGINT end [`Server::run`] cleanly.
    pub fn bind(settings: Settings) -> Result<Server> {
        let poll = Poll::new().context("creating the poll instance")?;
        if let Some(dir) = settings.socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        remove_stale_socket(&settings.socket)?;
        let mut listener =
            UnixListener::bind(&settings.socket).with_context(|| format!("binding {}", settings.socket.display()))?;
        // Socket connections are privileged: only the owner may connect.
        std::fs::set_permissions(&settings.socket, std::fs::Permissions::from_mode(0o600))?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;

        let (signal_read, signal_write) = std::os::unix::net::UnixStream::pair()?;
        signal_read.set_nonblocking(true)?;
        signal_write.set_nonblocking(true)?;
        let signal_write_clone = signal_write.try_clone()?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, signal_write)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, signal_write_clone)?;
        let mut signals = UnixStream::from_std(signal_read);
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;

        Ok(Server {
            poll,
            listener,
            socket_path: settings.socket,
            engine: Engine::new(settings.config),
            conns: HashMap::new(),
            _signals: signals,
            trace: Trace::open(settings.trace_file.as_deref()).context("opening the trace file")?,
            limits: settings.limits,
            soft_quotas: settings.soft_quotas,
            dirty: Dirty::default(),
            rings: None,
            resume: Vec::new(),
            read_buf: vec![0; READ_CHUNK],
            stop: false,
        })
    }

    /// Runs until SIGTERM or SIGINT, then removes the socket.
    pub fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let more_rings = self.rings.as_ref().is_some_and(|r| !r.more.is_empty());
            let pending = !self.dirty.is_empty() || !self.resume.is_empty() || more_rings;
            let timeout = pending.then_some(std::time::Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("polling");
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => self.stop = true,
                    EVTCHN => self.event_channels(),
                    Token(t) => {
                        let id = t as ConnId;
                        if event.is_writable() {
                            if let Some(conn) = self.conns.get_mut(&id) {
                                conn.blocked = false;
                            }
                            self.dirty.insert(id);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(id);
                        }
                    }
                }
            }
            for id in std::mem::take(&mut self.resume) {
                self.read(id);
            }
            self.serve_more_rings();
            self.flush_dirty();
        }
        info!("shutting down");
        let _ = std::fs::remove_file(&self.socket_path);
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let id = self.engine.connect(Caller::DOM0);
                    let token = Token(usize::try_from(id).unwrap_or(usize::MAX - 1));
                    if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        warn!("cannot register a new connection: {e}");
                        self.engine.disconnect(id);
                        continue;
                    }
                    debug!(conn = id, "connected");
                    self.conns.insert(
                        id,
                        Connection {
                            stream,
                            decoder: Decoder::new(),
                            outbox: Outbox::default(),
                            want_write: false,
                            paused: false,
                            blocked: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads and handles everything available, unless paused.
    fn read(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else { return };
            if conn.paused {
                return;
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    debug!(conn = id, "closed by peer");
                    self.close(id);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(conn = id, "read failed: {e}");
                    self.close(id);
                    return;
                }
            };
            let mut input = self.read_buf.get(..n).unwrap_or_default();
            let mut packets = Vec::new();
            let mut violation = None;
            while !input.is_empty() {
                match conn.decoder.decode(&mut input) {
                    Ok(Some(packet)) => packets.push(packet),
                    Ok(None) => break,
                    Err(e) => {
                        violation = Some(e);
                        break;
                    }
                }
            }
            for packet in packets {
                self.handle(id, packet);
            }
            if let Some(e) = violation {
                warn!(conn = id, "protocol violation, closing the connection: {e}");
                self.trace.note(&format!("conn {id} closed: {e}"));
                // Replies already queued for earlier requests still go out.
                self.flush(id);
                self.close(id);
                return;
            }
            if let Some(conn) = self.conns.get_mut(&id) {
                if conn.outbox.queued_bytes() > self.limits.pause_reading_above {
                    conn.paused = true;
                    self.dirty.insert(id);
                    return;
                }
            }
            if n < self.read_buf.len() {
                // A short read drained the socket: edge-triggered polling
                // reports any later data, so a read that would only say
                // EAGAIN is saved. The replies go out now rather than at
                // the end of the loop iteration, so the client can send
                // its next request while the other connections are served.
                self.flush(id);
                return;
            }
        }
    }

    pub(crate) fn handle(&mut self, id: ConnId, packet: Packet) {
        let header = packet.header;
        self.trace.message("IN", id, &header, &packet.payload);
        let mut attached = None;
        let outcome = match Request::parse(header.op, &packet.payload) {
            Ok(Request::Control(payload)) => self.control(id, payload),
            Ok(request @ Request::Introduce { .. }) => {
                let (outcome, ring) = self.introduce(id, header.tx_id, &request);
                attached = ring;
                outcome
            }
            Ok(request @ Request::Release(domid)) => {
                let outcome = self.engine.handle(id, header.tx_id, &request);
                if outcome.reply.is_ok() {
                    self.detach_ring(domid);
                }
                outcome
            }
            Ok(request) => self.engine.handle(id, header.tx_id, &request),
            Err(e) => Outcome::error(e),
        };
        if let Some(hit) = outcome.quota {
            info!(conn = id, "request refused: {hit}");
        }
        for delivery in outcome.events {
            self.deliver(delivery);
        }
        let mut bytes = Vec::new();
        match (&outcome.reply, Op::from_u32(header.op)) {
            (Ok(reply), Some(op)) => reply.encode(op, header.req_id, header.tx_id, &mut bytes),
            (Err(e), _) => e.encode_reply(header.req_id, header.tx_id, &mut bytes),
            (Ok(_), None) => ErrorCode::ENOSYS.encode_reply(header.req_id, header.tx_id, &mut bytes),
        }
        self.trace.outgoing(id, &bytes);
        if let Some(outbox) = self.outbox_mut(id) {
            outbox.push_reply(bytes);
            self.dirty.insert(id);
        }
        if let Some(delivery) = outcome.after_reply {
            self.deliver(delivery);
        }
        if let Some(conn) = attached {
            // The guest may have written requests before it was introduced.
            self.serve_ring(conn);
        }
    }

    /// The output queue of a socket or ring connection.
    pub(crate) fn outbox_mut(&mut self, id: ConnId) -> Option<&mut Outbox> {
        if let Some(conn) = self.conns.get_mut(&id) {
            return Some(&mut conn.outbox);
        }
        self.rings.as_mut()?.by_conn.get_mut(&id).map(|r| &mut r.outbox)
    }

    pub(crate) fn deliver(&mut self, delivery: Delivery) {
        let mut bytes = Vec::new();
        if !delivery.event.encode(&mut bytes) {
            warn!(conn = delivery.conn, path = %delivery.event.path, "watch event over the payload limit dropped");
            return;
        }
        self.trace.outgoing(delivery.conn, &bytes);
        let limits = self.limits;
        let Some(outbox) = self.outbox_mut(delivery.conn) else { return };
        outbox.push_event(bytes, &limits);
        self.dirty.insert(delivery.conn);
    }

    /// Flushes the [`FLUSH_BUDGET`] connections that have waited longest;
    /// the rest wait for the next iteration (see [`Dirty`]).
    fn flush_dirty(&mut self) {
        for id in self.dirty.take(FLUSH_BUDGET) {
            self.flush(id);
        }
    }

    /// Writes what the socket takes; arms WRITABLE if output remains;
    /// resumes reading once the backlog has drained.
    fn flush(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            self.flush_ring(id);
            return;
        };
        if !conn.blocked {
            if let Err(e) = conn.outbox.flush_to(&mut conn.stream) {
                debug!(conn = id, "write failed: {e}");
                self.close(id);
                return;
            }
            conn.blocked = !conn.outbox.is_empty();
        }
        let (dropped, coalesced) = conn.outbox.take_counters();
        if dropped > 0 {
            warn!(conn = id, dropped, "client is not reading: oldest queued watch events dropped");
        }
        if coalesced > 0 {
            debug!(conn = id, coalesced, "identical pending watch events coalesced");
        }
        let want_write = !conn.outbox.is_empty();
        if want_write != conn.want_write {
            let token = Token(usize::try_from(id).unwrap_or(usize::MAX - 1));
            let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if self.poll.registry().reregister(&mut conn.stream, token, interest).is_err() {
                self.close(id);
                return;
            }
            conn.want_write = want_write;
        }
        if conn.paused && conn.outbox.queued_bytes() <= self.limits.pause_reading_above / 2 {
            conn.paused = false;
            // Edge-triggered: data may already be waiting; read it at the
            // next iteration.
            self.resume.push(id);
        }
    }

    fn close(&mut self, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.engine.disconnect(id);
        self.dirty.remove(&id);
    }

    /// The socket path being served.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
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
