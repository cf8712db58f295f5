//! The hosted hypervisor: one single-threaded loop over an epoll set of
//! the listening socket, client connections, guest pidfds and a stop
//! eventfd (which SIGTERM/SIGINT also write).
//!
//! Every request is answered from [`State`], whose operations live in
//! the neighbouring files by subject: [`evtchn`], [`memory`], [`domains`],
//! [`shares`] (Xen Share).
//! How guests are kept apart from dom0 and each other is [`isolation`];
//! every connection to the listening socket is checked to come from dom0
//! ([`crate::hosted::peer`]).
//! Nothing a client sends can panic the loop: bad messages get an error
//! reply, broken framing closes that connection.

mod changes;
mod confine;
mod conn;
mod domains;
mod evtchn;
mod grants;
mod helper;
mod isolation;
mod landlock;
mod memory;
mod namespaces;
mod ports;
mod shares;
mod signals;
mod spawn;
mod spawner;
mod uid_range;

pub use isolation::{Confinement, Isolation};
pub use uid_range::GUEST_UID_BASE;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustix::event::{epoll, eventfd, EventfdFlags};
use rustix::io::Errno;
use rustix::net::{accept_with, bind, listen, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use self::conn::{Connection, Incoming};
use self::domains::Domain;
use self::uid_range::UidRange;
use super::peer::{check_dom0_peer, RefusalLog};
use super::protocol::{encode, Request, Response};
use crate::{DomId, Port};

/// Identifies a client connection for the life of the hypervisor.
type ConnId = u64;

/// What the handlers return: a response with its descriptors, or an
/// errno with a reason.
type Answer = Result<(Response, Vec<OwnedFd>), (Errno, &'static str)>;

/// Epoll tokens: the kind in the top byte, an id below.
const TOKEN_LISTENER: u64 = 0;
const TOKEN_STOP: u64 = 1;
const KIND_CONN: u64 = 2 << 56;
const KIND_CHILD: u64 = 3 << 56;
const ID_MASK: u64 = (1 << 56) - 1;

/// The hypervisor process's state and loop.
#[derive(Debug)]
pub struct Hypervisor {
    state: State,
    stop: Arc<OwnedFd>,
}

/// Ends a running [`Hypervisor::serve`] from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle {
    fd: Arc<OwnedFd>,
}

impl StopHandle {
    /// Asks the loop to destroy every domain and return.
    pub fn stop(&self) {
        let _ = super::evtchn::signal(self.fd.as_fd());
    }
}

impl Hypervisor {
    /// Binds `<state_dir>/hypervisor.sock` (consoles go to
    /// `<state_dir>/console/<domid>.log`); guests will be confined as
    /// `confinement` says, which this process must be able to do. A stale
    /// socket is replaced; a live one (another hypervisor answers) is
    /// `EADDRINUSE`. The socket is its owner's alone (mode 0600).
    pub fn bind(state_dir: &Path, confinement: Confinement) -> io::Result<Hypervisor> {
        confinement.check().map_err(io::Error::other)?;
        let uids = match confinement.isolation {
            Isolation::Uid => Some(UidRange::claim()?),
            _ => None,
        };
        let console_dir = state_dir.join("console");
        fs::create_dir_all(&console_dir)?;
        let socket_path = super::hypervisor_socket(state_dir);
        let addr = SocketAddrUnix::new(socket_path.as_path())?;
        let listener = socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        if socket_path.exists() {
            let probe = socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
            if rustix::net::connect(&probe, &addr).is_ok() {
                return Err(Errno::ADDRINUSE.into());
            }
            fs::remove_file(&socket_path)?;
        }
        bind(&listener, &addr)?;
        fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o600))?;
        listen(&listener, 64)?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let stop = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        epoll::add(&epoll, &listener, epoll::EventData::new_u64(TOKEN_LISTENER), epoll::EventFlags::IN)?;
        epoll::add(&epoll, &*stop, epoll::EventData::new_u64(TOKEN_STOP), epoll::EventFlags::IN)?;
        let state = State {
            epoll,
            listener,
            socket_path,
            console_dir,
            conns: HashMap::new(),
            conns_of: HashMap::new(),
            next_conn: 1,
            domains: BTreeMap::from([(0, Domain::dom0())]),
            names: HashSet::from(["Domain-0".to_owned()]),
            next_domid: 1,
            virq_subscribers: BTreeMap::new(),
            confinement,
            uids,
            refusals: RefusalLog::default(),
            shares: shares::ShareTable::default(),
            changes: changes::ChangeLog::default(),
            spawner: spawner::Spawner::start()?,
        };
        Ok(Hypervisor { state, stop })
    }

    /// A handle that ends [`Hypervisor::serve`] (for tests and embedders
    /// running the loop in a thread).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { fd: Arc::clone(&self.stop) }
    }

    /// How guests are confined.
    pub fn confinement(&self) -> Confinement {
        self.state.confinement
    }

    /// Serves until SIGTERM/SIGINT or [`Hypervisor::stop_handle`] is used;
    /// destroys every domain on the way out. The process becomes
    /// non-dumpable first: a guest of the same user could otherwise open
    /// its `/proc/PID/fd`, every domain's pages among them.
    pub fn serve(mut self) -> io::Result<()> {
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
        eprintln!("xsim hypervisor: guest isolation: {}", self.state.confinement);
        if let Some(uids) = &self.state.uids {
            eprintln!("xsim hypervisor: guest uids and gids: {} + domid", uids.base());
        }
        let _signals = signals::Registration::new(Arc::clone(&self.stop))?;
        let result = self.run();
        self.state.destroy_all();
        result
    }

    /// The loop proper.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            match epoll::wait(&self.state.epoll, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            for event in &events {
                let token = event.data.u64();
                match token & !ID_MASK {
                    _ if token == TOKEN_STOP => return Ok(()),
                    _ if token == TOKEN_LISTENER => self.state.accept_all(),
                    KIND_CONN => self.state.conn_ready(token & ID_MASK),
                    KIND_CHILD => {
                        if let Ok(domid) = DomId::try_from(token & ID_MASK) {
                            self.state.child_exited(domid);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Drop for Hypervisor {
    fn drop(&mut self) {
        // A hypervisor dropped without serving (or after) leaves no guest
        // behind.
        self.state.destroy_all();
        let _ = fs::remove_file(&self.state.socket_path);
    }
}

/// Everything the hypervisor knows.
#[derive(Debug)]
struct State {
    epoll: OwnedFd,
    listener: OwnedFd,
    socket_path: PathBuf,
    console_dir: PathBuf,
    conns: HashMap<ConnId, Connection>,
    /// Each domain's connections, so that destroying one does not look at
    /// every connection.
    conns_of: HashMap<DomId, BTreeSet<ConnId>>,
    next_conn: ConnId,
    /// Every domain, dom0 included.
    domains: BTreeMap<DomId, Domain>,
    /// Their names, unique among live domains, so that creating one does
    /// not look at every domain.
    names: HashSet<String>,
    next_domid: DomId,
    /// Ports bound to VIRQ_DOM_EXC, by domain and port.
    virq_subscribers: BTreeMap<(DomId, Port), Arc<OwnedFd>>,
    /// How guests are confined.
    confinement: Confinement,
    /// The uids of guests, under a uid per guest.
    uids: Option<UidRange>,
    /// Refused connections, for the log's rate limit.
    refusals: RefusalLog,
    /// Xen Share's shares.
    shares: shares::ShareTable,
    /// The domains that changed state, for each connection that asks.
    changes: changes::ChangeLog,
    /// Where guests are forked from (a thread with few descriptors).
    spawner: spawner::Spawner,
}

impl State {
    /// Accepts every pending dom0 connection; one whose peer is not dom0
    /// (a guest) is closed at once, and logged within a rate.
    fn accept_all(&mut self) {
        loop {
            match accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(socket) => match check_dom0_peer(socket.as_fd()) {
                    Ok(()) => {
                        let _ = self.add_conn(socket, 0);
                    }
                    Err(refusal) => {
                        if let Some(line) = self.refusals.line("the hypervisor", &refusal, Instant::now()) {
                            eprintln!("xsim hypervisor: {line}");
                        }
                    }
                },
                Err(Errno::INTR) => continue,
                // EAGAIN: done. Anything else (EMFILE...): try again on
                // the next wakeup rather than dying.
                Err(_) => return,
            }
        }
    }

    /// A new connection of `caller`'s domain: ours is served here, the
    /// other end goes back to the process that asked.
    fn own_connection(&mut self, caller: DomId) -> Answer {
        let (ours, theirs) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .map_err(|e| (e, "socketpair"))?;
        rustix::fs::fcntl_setfl(&ours, rustix::fs::OFlags::NONBLOCK).map_err(|e| (e, "nonblocking"))?;
        self.add_conn(ours, caller).map_err(|_| (Errno::NOMEM, "serving the connection"))?;
        Ok((Response::Done, vec![theirs]))
    }

    /// Starts serving `socket` (non-blocking) for `domid`.
    fn add_conn(&mut self, socket: OwnedFd, domid: DomId) -> io::Result<ConnId> {
        let id = self.next_conn;
        self.next_conn += 1;
        epoll::add(&self.epoll, &socket, epoll::EventData::new_u64(KIND_CONN | id), epoll::EventFlags::IN)?;
        self.conns.insert(id, Connection::new(socket, domid));
        self.conns_of.entry(domid).or_default().insert(id);
        Ok(id)
    }

    /// Serves a connection epoll reported: sends what is queued, then
    /// reads and answers one request at a time.
    fn conn_ready(&mut self, id: ConnId) {
        if self.serve_conn(id).is_err() {
            self.close_conn(id);
        }
    }

    fn serve_conn(&mut self, id: ConnId) -> io::Result<()> {
        loop {
            let conn = self.conns.get_mut(&id).ok_or(Errno::BADF)?;
            if !conn.flush()? {
                return self.watch(id, epoll::EventFlags::OUT);
            }
            let (json, _unasked_fds) = match conn.read()? {
                Incoming::Message(json, fds) => (json, fds),
                Incoming::Nothing => return self.watch(id, epoll::EventFlags::IN),
                Incoming::Closed => return Err(Errno::CONNRESET.into()),
            };
            let domid = conn.domid;
            let answer = match serde_json::from_slice::<Request>(&json) {
                Ok(request) => self.dispatch(id, domid, request),
                Err(_) => Err((Errno::INVAL, "malformed request")),
            };
            let (response, fds) = answer.unwrap_or_else(|(errno, why)| (Response::error(errno, why), Vec::new()));
            let records = encode(&response, fds)?;
            // The request may have closed this very connection (a guest
            // destroyed... by dom0 only, but be safe).
            let Some(conn) = self.conns.get_mut(&id) else { return Ok(()) };
            conn.queue(records);
        }
    }

    /// Sets what epoll watches a connection for.
    fn watch(&mut self, id: ConnId, flags: epoll::EventFlags) -> io::Result<()> {
        let conn = self.conns.get(&id).ok_or(Errno::BADF)?;
        epoll::modify(&self.epoll, &conn.socket, epoll::EventData::new_u64(KIND_CONN | id), flags)?;
        Ok(())
    }

    /// Drops a connection and releases the ports it held.
    fn close_conn(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.remove(&id) {
            let _ = epoll::delete(&self.epoll, &conn.socket);
            if let Some(ids) = self.conns_of.get_mut(&conn.domid) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.conns_of.remove(&conn.domid);
                }
            }
            self.release_ports_of(id, conn.domid);
            self.shares.connection_gone(id);
            self.changes.connection_gone(id);
            if let Some(domain) = self.domains.get_mut(&conn.domid) {
                if domain.guest_conn == Some(id) {
                    domain.guest_conn = None;
                }
            }
        }
    }

    /// Answers one request from connection `conn` of domain `caller`.
    fn dispatch(&mut self, conn: ConnId, caller: DomId, request: Request) -> Answer {
        match request {
            Request::GuestStart => self.guest_start(caller),
            Request::ShutdownSelf { reason } => self.shutdown_self(caller, reason),
            Request::AllocUnbound { remote } => self.alloc_unbound(conn, caller, remote),
            Request::BindInterdomain { remote, remote_port } => {
                self.bind_interdomain(conn, caller, remote, remote_port)
            }
            Request::BindVirq { virq } => self.bind_virq(conn, caller, virq),
            Request::Claim { port } => self.claim(conn, caller, port),
            Request::Unbind { port } => self.unbind(conn, caller, port),
            Request::Release { port } => self.release(conn, caller, port),
            Request::OwnConnection => self.own_connection(caller),
            Request::MapForeign { domid, gfn, count } => self.map_foreign(caller, domid, gfn, count),
            Request::GrantPages { remote, count, writable } => self.grant_pages(caller, remote, count, writable),
            Request::EndGrants { refs } => self.end_grants(caller, &refs),
            Request::MapGrants { remote, refs, writable } => self.map_grants(caller, remote, &refs, writable),
            Request::Create { config } => self.privileged(caller)?.create(&config),
            Request::Unpause { domid } => self.privileged(caller)?.unpause(domid),
            Request::Pause { domid } => self.privileged(caller)?.pause(domid),
            Request::Shutdown { domid, reason } => self.privileged(caller)?.shutdown(domid, reason),
            Request::Destroy { domid } => self.privileged(caller)?.destroy(domid),
            Request::List => self.privileged(caller)?.list(),
            Request::Info { domid } => self.privileged(caller)?.info(domid),
            Request::ChangedDomains { fresh } => self.privileged(caller)?.changed_domains(conn, fresh),
            Request::ShareCreate { pages, members } => self.share_create(caller, pages, &members),
            Request::ShareAdd { share, domid } => self.share_add(caller, share, domid),
            Request::ShareRemove { share, domid } => self.share_remove(caller, share, domid),
            Request::ShareDestroy { share } => self.share_destroy(caller, share),
            Request::ShareAttach { share } => self.share_attach(caller, share),
            Request::ShareRegister { share, generation, key, segments } => {
                self.share_register(conn, caller, (share, generation), key, segments)
            }
            Request::ShareTransfer { share, generation, key, segments } => {
                self.share_transfer(caller, (share, generation), key, &segments)
            }
            Request::ShareTransferMany { share, generation, transfers } => {
                self.share_transfer_many(caller, (share, generation), &transfers)
            }
            Request::ShareCompleted { share, generation } => self.share_completed(conn, caller, (share, generation)),
            Request::VdeviceShare { domid } => self.vdevice_share(caller, domid),
            Request::ShareUnregister { share } => self.share_unregister(conn, caller, share),
        }
    }

    /// `self` if `caller` is dom0, `EPERM` otherwise.
    fn privileged(&mut self, caller: DomId) -> Result<&mut State, (Errno, &'static str)> {
        if caller == 0 {
            Ok(self)
        } else {
            Err((Errno::PERM, "privileged operation"))
        }
    }
}

/// A descriptor to send, duplicated from one the hypervisor keeps.
fn dup(fd: &OwnedFd) -> Result<OwnedFd, (Errno, &'static str)> {
    fd.try_clone().map_err(|_| (Errno::NOMEM, "out of descriptors"))
}

/// The answer for requests that return nothing.
fn done() -> Answer {
    Ok((Response::Done, Vec::new()))
}
