//! The stepped test world (feature `test-utils`): the daemon's [`Server`]
//! serving domains through the platform's in-memory twins
//! ([`xen_platform::testing`]), dom0 clients on socket pairs and guests on
//! their own shared rings, all in one process and one thread.
//!
//! Nothing runs by itself. [`World::run`] steps every party in turn (the
//! server's loop iteration with a zero timeout, then each client moving
//! the bytes it can) until a round makes no progress, and panics past a
//! bound on rounds: a test sees exactly what the protocol produced, in
//! milliseconds, with no processes, sleeps or timeouts. Each client is a
//! [`xenstore::ClientCore`], the client library's sans-IO core, so requests
//! and replies are framed and matched as a real client does it.
//!
//! ```
//! # use xenstored::testing::World;
//! # use xenstore::Op;
//! let mut world = World::new();
//! let dom0 = world.dom0();
//! let guest = world.create_guest("guest");
//! world.introduce(guest).unwrap();
//! world.call(dom0, Op::Write, b"/local/domain/1/data\0hello").unwrap();
//! world.call(dom0, Op::SetPerms, b"/local/domain/1/data\0n0\0r1\0").unwrap();
//! assert_eq!(world.call(guest, Op::Read, b"data\0").unwrap(), b"hello");
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mio::Events;
use xen_platform::testing::{TestEventChannels, TestHypervisor};
use xen_platform::{DomId, DomainConfig, EventChannels, MappedPages, Notifier, Port, ShutdownReason, Toolstack};
use xenstore::{ClientCore, Event, Op, SubscriptionId, WatchEvent};
use xenstore_db::Config;
use xenstore_ring::MappedGuest;

use crate::{Limits, Platform, Server};

/// Rounds [`World::run`] may take before it decides the world is stuck.
pub const MAX_ROUNDS: usize = 10_000;

/// Names one client of the world (a dom0 socket or a guest's ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(usize);

/// What a reply carried: its payload, or the client library's error (the
/// daemon's error code inside [`xenstore::Error`]).
pub type ReplyResult = Result<Vec<u8>, xenstore::Error>;

/// The guest end of a ring, signalling the daemon through the twin.
type GuestRing = MappedGuest<MappedPages, Box<dyn FnMut() + Send>>;

/// How a client reaches the daemon.
enum Link {
    Socket(UnixStream),
    Ring { domid: DomId, store_port: Port, ring: GuestRing, events: TestEventChannels },
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Socket(_) => f.write_str("Socket"),
            Link::Ring { domid, .. } => write!(f, "Ring(domain {domid})"),
        }
    }
}

#[derive(Debug)]
struct Client {
    core: ClientCore,
    link: Link,
    /// Framed requests not yet taken by the link.
    out: Vec<u8>,
    replies: BTreeMap<u32, ReplyResult>,
    events: Vec<WatchEvent>,
    /// The one subscription every watch token of this client routes to.
    watches: SubscriptionId,
    /// The daemon closed the socket.
    closed: bool,
    /// It reads nothing (a client that stopped reading, or pauses).
    deaf: bool,
}

/// The world: a server, a hypervisor twin, and clients.
#[derive(Debug)]
pub struct World {
    /// The daemon under test.
    pub server: Server,
    /// The platform's twin: the toolstack and fault injection.
    pub hv: TestHypervisor,
    events: Events,
    clients: Vec<Client>,
    /// The dom0 client the world's own toolstack requests go through.
    toolstack: Option<ClientId>,
}

impl Default for World {
    fn default() -> World {
        World::new()
    }
}

impl World {
    /// A world with the engine's and the daemon's default settings.
    pub fn new() -> World {
        World::with(Config::default(), Limits::default())
    }

    /// A world with these settings.
    pub fn with(config: Config, limits: Limits) -> World {
        World::build(config, limits, false)
    }

    /// A world whose dom0 has its own xenstore ring, which the daemon
    /// serves as a privileged connection (a xenstored in dom0 on Xen);
    /// returns the client on dom0's kernel side of that ring.
    pub fn with_dom0_ring() -> (World, ClientId) {
        let mut world = World::build(Config::default(), Limits::default(), true);
        let client = world.ring_client(0);
        (world, client)
    }

    fn build(config: Config, limits: Limits, dom0_ring: bool) -> World {
        let hv = TestHypervisor::new();
        if dom0_ring {
            hv.give_dom0_a_store_ring().expect("giving dom0 a store ring");
        }
        let mut server = Server::in_process(config, limits).expect("creating the in-process server");
        let platform = Platform {
            events: Box::new(hv.event_channels(0).expect("dom0's event channels")),
            memory: Box::new(hv.foreign_memory()),
            domains: Box::new(hv.domain_states()),
            dom0_store: Box::new(hv.dom0_store()),
            adopt_events: crate::cannot_adopt_events,
        };
        server.serve_domains(platform).expect("serving domains through the twin");
        World { server, hv, events: Events::with_capacity(256), clients: Vec::new(), toolstack: None }
    }

    /// A new dom0 client on a socket (privileged).
    pub fn dom0(&mut self) -> ClientId {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        ours.set_nonblocking(true).expect("non-blocking client socket");
        self.server.adopt_socket(theirs).expect("adopting the socket");
        self.add(Link::Socket(ours))
    }

    /// Creates a domain through the toolstack twin and connects a client
    /// to its ring (the domain is not introduced yet: see
    /// [`World::introduce`]).
    pub fn create_guest(&mut self, name: &str) -> ClientId {
        let config = DomainConfig {
            name: name.into(),
            program: Vec::new(),
            env: Vec::new(),
            cwd: None,
            netns: false,
            fuse: false,
        };
        let new = self.hv.toolstack().create(&config).expect("creating a domain");
        self.ring_client(new.domid)
    }

    /// A client on the kernel side of `domid`'s store ring.
    fn ring_client(&mut self, domid: DomId) -> ClientId {
        let guest = self.hv.guest(domid).expect("the guest's page and port");
        let notifier: Notifier = guest.events.notifier(guest.store_port).expect("the guest's notifier");
        let notify: Box<dyn FnMut() + Send> = Box::new(move || {
            let _ = notifier.notify();
        });
        let ring = MappedGuest::new(guest.store_page, notify);
        self.add(Link::Ring { domid, store_port: guest.store_port, ring, events: guest.events })
    }

    fn add(&mut self, link: Link) -> ClientId {
        let mut core = ClientCore::new();
        let watches = core.subscribe(b"");
        self.clients.push(Client {
            core,
            link,
            out: Vec::new(),
            replies: BTreeMap::new(),
            events: Vec::new(),
            watches,
            closed: false,
            deaf: false,
        });
        ClientId(self.clients.len() - 1)
    }

    /// The domain of a guest client.
    pub fn domid(&self, guest: ClientId) -> DomId {
        match &self.clients[guest.0].link {
            Link::Ring { domid, .. } => *domid,
            Link::Socket(_) => 0,
        }
    }

    /// A guest's store port (its end, the `port` of INTRODUCE).
    pub fn store_port(&self, guest: ClientId) -> Port {
        match &self.clients[guest.0].link {
            Link::Ring { store_port, .. } => *store_port,
            Link::Socket(_) => panic!("{guest:?} is not a guest"),
        }
    }

    /// INTRODUCEs a guest's domain (its store frame and port), as a
    /// toolstack would, and runs the world; returns the reply.
    pub fn introduce(&mut self, guest: ClientId) -> ReplyResult {
        let Link::Ring { domid, store_port, .. } = self.clients[guest.0].link else {
            panic!("{guest:?} is not a guest");
        };
        let gfn = xen_platform::testing::STORE_GFN;
        let toolstack = self.toolstack_client();
        self.call(toolstack, Op::Introduce, format!("{domid}\0{gfn}\0{store_port}\0").as_bytes())
    }

    /// The dom0 client the world's toolstack requests use.
    pub fn toolstack_client(&mut self) -> ClientId {
        match self.toolstack {
            Some(id) => id,
            None => {
                let id = self.dom0();
                self.toolstack = Some(id);
                id
            }
        }
    }

    /// Queues a request (the payload as on the wire); returns its id.
    pub fn send(&mut self, who: ClientId, op: Op, tx_id: u32, payload: &[u8]) -> u32 {
        let client = &mut self.clients[who.0];
        client.core.start_raw(op, tx_id, payload, &mut client.out).expect("a well-formed request")
    }

    /// The reply to request `req_id`, if it has come.
    pub fn reply(&mut self, who: ClientId, req_id: u32) -> Option<ReplyResult> {
        self.clients[who.0].replies.remove(&req_id)
    }

    /// Sends a request outside any transaction, runs the world, and
    /// returns the reply (panics if none came: the world went idle first).
    pub fn call(&mut self, who: ClientId, op: Op, payload: &[u8]) -> ReplyResult {
        self.call_in(who, 0, op, payload)
    }

    /// [`World::call`] in transaction `tx_id`.
    pub fn call_in(&mut self, who: ClientId, tx_id: u32, op: Op, payload: &[u8]) -> ReplyResult {
        let req_id = self.send(who, op, tx_id, payload);
        self.run();
        self.reply(who, req_id)
            .unwrap_or_else(|| panic!("{who:?}: no reply to {op:?} {:?}", String::from_utf8_lossy(payload)))
    }

    /// Registers a watch (its events are kept for [`World::take_events`]).
    pub fn watch(&mut self, who: ClientId, path: &str, token: &str) -> ReplyResult {
        let client = &mut self.clients[who.0];
        client.core.add_route(client.watches, token.as_bytes());
        self.call(who, Op::Watch, format!("{path}\0{token}\0").as_bytes())
    }

    /// The watch events a client received since the last call.
    pub fn take_events(&mut self, who: ClientId) -> Vec<WatchEvent> {
        std::mem::take(&mut self.clients[who.0].events)
    }

    /// Stops (`false`) or resumes (`true`) reading what the daemon sends
    /// this client: a guest that stopped reading its replies, a watcher
    /// that pauses. It still writes its requests.
    pub fn set_reading(&mut self, who: ClientId, reading: bool) {
        self.clients[who.0].deaf = !reading;
    }

    /// Whether the daemon closed this socket client.
    pub fn closed(&self, who: ClientId) -> bool {
        self.clients[who.0].closed
    }

    /// Bytes for the link exactly as given (a misbehaving client: garbage,
    /// an oversize header), after anything already queued.
    pub fn send_raw(&mut self, who: ClientId, bytes: &[u8]) {
        self.clients[who.0].out.extend_from_slice(bytes);
    }

    /// A guest's end of its ring (to corrupt indices, read the error
    /// indicator, ask for a reconnection).
    pub fn ring(&mut self, guest: ClientId) -> &mut GuestRingHandle {
        match &mut self.clients[guest.0].link {
            Link::Ring { ring, .. } => ring,
            Link::Socket(_) => panic!("{guest:?} is not a guest"),
        }
    }

    /// A guest signals the daemon on its store port without writing (after
    /// corrupting its ring by hand, say).
    pub fn kick(&mut self, guest: ClientId) {
        let Link::Ring { events, store_port, .. } = &self.clients[guest.0].link else {
            panic!("{guest:?} is not a guest");
        };
        events.notify(*store_port).expect("signalling the daemon");
    }

    /// A guest resets its ring (the reconnection protocol) and starts a
    /// fresh client core: requests in flight are forgotten, as by a guest
    /// kernel's xenbus after a reconnection.
    pub fn reconnect(&mut self, guest: ClientId) {
        let client = &mut self.clients[guest.0];
        let Link::Ring { ring, .. } = &mut client.link else { panic!("{guest:?} is not a guest") };
        ring.request_reconnect();
        client.core = ClientCore::new();
        client.watches = client.core.subscribe(b"");
        client.out.clear();
        client.replies.clear();
        client.events.clear();
    }

    /// Shuts a domain down (it exists until destroyed); VIRQ_DOM_EXC fires.
    pub fn shutdown(&mut self, guest: ClientId, reason: ShutdownReason) {
        let domid = self.domid(guest);
        self.hv.toolstack().shutdown(domid, reason).expect("shutting the domain down");
    }

    /// A socket client goes away (the daemon sees end of file), and the
    /// world runs.
    pub fn close(&mut self, who: ClientId) {
        let client = &mut self.clients[who.0];
        let Link::Socket(stream) = &client.link else { panic!("{who:?} is not a socket client") };
        let _ = stream.shutdown(std::net::Shutdown::Both);
        client.closed = true;
        self.run();
    }

    /// Destroys a domain; VIRQ_DOM_EXC fires.
    pub fn destroy(&mut self, guest: ClientId) {
        let domid = self.domid(guest);
        self.hv.toolstack().destroy(domid).expect("destroying the domain");
    }

    /// Sets how long the transaction gate's turn and wait may last
    /// (`crate::tx_gate`), so that a test can see a start wait without
    /// racing the real clock.
    pub fn set_tx_gate_times(&mut self, hold_max: Duration, wait_max: Duration) {
        self.server.gate.hold_max = hold_max;
        self.server.gate.wait_max = wait_max;
    }

    /// Steps the server and every client until a round makes no progress;
    /// returns the rounds taken. Panics after [`MAX_ROUNDS`].
    /// A connection held by a timer (the write rate limit) is waited for,
    /// in real time: the daemon's clock is not the world's to step.
    pub fn run(&mut self) -> usize {
        for round in 0..MAX_ROUNDS {
            if !self.round() {
                match self.server.next_timer() {
                    Some(wait) => std::thread::sleep(wait),
                    None => return round,
                }
            }
        }
        panic!("the world is still busy after {MAX_ROUNDS} rounds");
    }

    /// One round: one server loop iteration, then each client moves what
    /// it can. Returns whether anything happened.
    pub fn round(&mut self) -> bool {
        let ready = self.server.step(&mut self.events, Some(Duration::ZERO)).expect("a server step");
        let mut progress = ready > 0 || self.server.has_work();
        for client in &mut self.clients {
            progress |= client.pump();
        }
        progress
    }
}

/// The guest's ring end, as [`World::ring`] hands it out.
pub type GuestRingHandle = GuestRing;

impl Client {
    /// Writes queued requests and reads what came; returns whether any
    /// byte moved.
    fn pump(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let mut moved = false;
        match &mut self.link {
            Link::Socket(stream) => {
                if self.closed {
                    return false;
                }
                while !self.out.is_empty() {
                    match stream.write(&self.out) {
                        Ok(n) => {
                            self.out.drain(..n);
                            moved |= n > 0;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.closed = true;
                            return true;
                        }
                    }
                }
                while !self.deaf {
                    match stream.read(&mut buf) {
                        Ok(0) => {
                            self.closed = true;
                            return true;
                        }
                        Ok(n) => {
                            moved = true;
                            let _ = self.core.receive(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.closed = true;
                            return true;
                        }
                    }
                }
            }
            Link::Ring { ring, events, .. } => {
                let mut pending = Vec::new();
                let _ = events.take_pending(&mut pending);
                if !self.out.is_empty() {
                    if let Ok(n) = ring.write(&self.out) {
                        self.out.drain(..n);
                        moved |= n > 0;
                    }
                }
                while let Ok(n) = if self.deaf { Ok(0) } else { ring.read(&mut buf) } {
                    if n == 0 {
                        break;
                    }
                    moved = true;
                    let _ = self.core.receive(&buf[..n]);
                }
            }
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Reply { req_id, result } => {
                    self.replies.insert(req_id, result);
                }
                Event::Watch { event, .. } => self.events.push(event),
            }
        }
        moved
    }
}
