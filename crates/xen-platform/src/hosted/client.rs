//! A process's side of the hosted hypervisor: one connection, shared by
//! every handle the process makes from it.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::io::{fcntl_setfd, Errno, FdFlags};
use rustix::net::{socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::evtchn::HostedEventChannels;
use super::memory::{HostedForeignMemory, HostedGrants};
use super::protocol::{encode, invalid, recv_record, send_record, Assembler, Received, Request, Response};
use super::toolstack::{HostedDom0Store, HostedToolstack};
use super::{GuestStart, ENV_DOMID, ENV_HYPERVISOR_FD};
use crate::{DomId, MappedPages, ShutdownReason};

/// One process's connection to the hosted hypervisor.
///
/// Cheap to clone: clones share the connection, one request at a time.
/// Whoever connected to `hypervisor.sock` is dom0; a guest's connection is
/// the socket the hypervisor gave it at spawn.
#[derive(Debug, Clone)]
pub struct Host {
    conn: Arc<Mutex<OwnedFd>>,
    domid: DomId,
}

/// Set once a process has adopted its inherited hypervisor socket, so no
/// second [`Host::from_guest_env`] takes ownership of the same descriptor.
static GUEST_FD_TAKEN: AtomicBool = AtomicBool::new(false);

impl Host {
    /// Connects to the hypervisor socket (see
    /// [`hypervisor_socket`](super::hypervisor_socket)) as dom0.
    pub fn connect(socket_path: &Path) -> io::Result<Host> {
        let fd = socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(socket_path)?)?;
        Ok(Host { conn: Arc::new(Mutex::new(fd)), domid: 0 })
    }

    /// In a guest process the hypervisor spawned: adopts the inherited
    /// socket named by `XSIM_HYPERVISOR_FD`, asks for the start
    /// information and maps the xenstore page. Works once per process
    /// (`EBUSY` after).
    pub fn from_guest_env() -> io::Result<(Host, GuestStart)> {
        let raw: RawFd = env_number(ENV_HYPERVISOR_FD)?;
        let env_domid: DomId = env_number(ENV_DOMID)?;
        if raw < 0 {
            return Err(invalid("negative hypervisor fd"));
        }
        if GUEST_FD_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(Errno::BUSY.into());
        }
        // Make sure the number names a socket before owning it: a wrong
        // environment must not make us close some unrelated file later.
        // SAFETY: the borrow lasts for this call only; fstat on a closed
        // or foreign number fails harmlessly.
        let stat = rustix::fs::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) })?;
        if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_socket() {
            return Err(invalid("XSIM_HYPERVISOR_FD is not a socket"));
        }
        // SAFETY: the hypervisor spawned this process with `raw` open and
        // meant for us; the flag above lets only one caller adopt it, and
        // nothing else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Our own children must not inherit the domain's identity.
        fcntl_setfd(&fd, FdFlags::CLOEXEC)?;
        let shared = Host { conn: Arc::new(Mutex::new(fd)), domid: env_domid };
        // The inherited socket is the guest's, shared with every process
        // it starts: take a private one and leave the shared one alone.
        let (response, mut own) = shared.request(&Request::OwnConnection)?;
        if response != Response::Done || own.len() != 1 {
            return Err(invalid("unexpected reply to OwnConnection"));
        }
        let host = Host { conn: Arc::new(Mutex::new(own.remove(0))), domid: env_domid };
        drop(shared);
        let (response, mut fds) = host.request(&Request::GuestStart)?;
        let Response::Start { domid, store_port } = response else {
            return Err(invalid("unexpected reply to GuestStart"));
        };
        if domid != env_domid || fds.len() != 1 {
            return Err(invalid("inconsistent start information"));
        }
        let page = fds.remove(0);
        let store_page = MappedPages::map(page.as_fd(), 0, 1, true)?;
        Ok((host, GuestStart { domid, store_page, store_port }))
    }

    /// A host over an existing connection of domain `domid` (an adopted
    /// event-channel handle's).
    pub(crate) fn from_connection(conn: OwnedFd, domid: DomId) -> Host {
        Host { conn: Arc::new(Mutex::new(conn)), domid }
    }

    /// A duplicate of the connection's socket: the same connection, as far
    /// as the hypervisor can tell.
    pub(crate) fn dup_connection(&self) -> io::Result<OwnedFd> {
        let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        conn.try_clone()
    }

    /// This process's domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// SCHEDOP_shutdown: marks the calling guest shut down for `reason`
    /// (VIRQ_DOM_EXC fires). The process should exit soon after; the
    /// reason stands whatever its exit status.
    pub fn shutdown_self(&self, reason: ShutdownReason) -> io::Result<()> {
        self.request_done(&Request::ShutdownSelf { reason })
    }

    /// A new event-channel handle of this domain.
    pub fn event_channels(&self) -> io::Result<HostedEventChannels> {
        HostedEventChannels::new(self.clone())
    }

    /// Foreign mapping (dom0 only; guests get `EPERM` on use).
    pub fn foreign_memory(&self) -> HostedForeignMemory {
        HostedForeignMemory::new(self.clone())
    }

    /// Granting and mapping granted pages.
    pub fn grants(&self) -> HostedGrants {
        HostedGrants::new(self.clone())
    }

    /// The toolstack's domain operations (dom0 only; guests get `EPERM` on
    /// use).
    pub fn toolstack(&self) -> HostedToolstack {
        HostedToolstack::new(self.clone())
    }

    /// Domain states, for the daemon (dom0 only; guests get `EPERM` on
    /// use). The same requests as the toolstack's listing.
    pub fn domain_states(&self) -> HostedToolstack {
        HostedToolstack::new(self.clone())
    }

    /// Xen Share: making shares (dom0 only; guests get `EPERM`) and
    /// attaching those this domain is a member of.
    pub fn shares(&self) -> super::HostedShares {
        super::HostedShares::new(self.clone())
    }

    /// Dom0's xenstore ring: hosted, there is none.
    pub fn dom0_store(&self) -> HostedDom0Store {
        HostedDom0Store
    }

    /// Sends `request`, returns the response and the descriptors it
    /// carried; an error response becomes an `io::Error` with its errno.
    pub(crate) fn request(&self, request: &Request) -> io::Result<(Response, Vec<OwnedFd>)> {
        let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for record in encode(request, Vec::new())? {
            send_record(conn.as_fd(), &record, false)?;
        }
        let mut assembler = Assembler::default();
        let (json, fds) = loop {
            match recv_record(conn.as_fd(), false)? {
                Received::Record { last, payload, fds } => {
                    if let Some(message) = assembler.push(last, &payload, fds)? {
                        break message;
                    }
                }
                Received::Closed => return Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
                Received::Empty => continue,
            }
        };
        drop(conn);
        match serde_json::from_slice(&json).map_err(|_| invalid("unparsable reply"))? {
            // The errno is what callers match on, as with Xen's ioctls;
            // the hypervisor's text is for its own log.
            Response::Error { errno, .. } => Err(io::Error::from_raw_os_error(errno)),
            response => Ok((response, fds)),
        }
    }

    /// [`Host::request`] for requests answered with [`Response::Done`].
    pub(crate) fn request_done(&self, request: &Request) -> io::Result<()> {
        match self.request(request)?.0 {
            Response::Done => Ok(()),
            _ => Err(invalid("unexpected reply")),
        }
    }
}

/// Parses a number from the environment variable `name`.
fn env_number<T: std::str::FromStr>(name: &str) -> io::Result<T> {
    let value = std::env::var(name).map_err(|_| io::Error::new(io::ErrorKind::NotFound, format!("{name} not set")))?;
    value.parse().map_err(|_| invalid(&format!("{name} is not a number")))
}
