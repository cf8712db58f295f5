//! A process's hosted event channels: eventfds the hypervisor hands out,
//! watched through one epoll descriptor.
//!
//! Binding goes through the hypervisor (it decides who may bind what);
//! signalling does not: [`Notifier`]s write the peer's eventfd directly,
//! so a notification costs one `write`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::event::epoll;
use rustix::io::Errno;

use super::client::Host;
use super::protocol::{invalid, Request, Response};
use crate::{DomId, EventChannels, Notifier, Port, Virq};

/// A hosted event-channel handle (`/dev/xen/evtchn` opened once).
///
/// Its descriptor is an epoll set holding the eventfd of every port it
/// bound; dropping it unbinds them all.
pub struct HostedEventChannels {
    host: Host,
    epoll: OwnedFd,
    ports: HashMap<Port, LocalPort>,
    /// Ports taken with [`HostedEventChannels::claim`]: released, not
    /// closed, when the handle goes.
    claimed: std::collections::HashSet<Port>,
}

/// The descriptors of one bound port.
struct LocalPort {
    /// Readable (non-zero counter) while the port is pending.
    poll: OwnedFd,
    /// Signals the peer; `None` for a virq.
    notify: Option<Arc<OwnedFd>>,
}

impl HostedEventChannels {
    /// A handle with nothing bound.
    pub(crate) fn new(host: Host) -> io::Result<HostedEventChannels> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(HostedEventChannels { host, epoll, ports: HashMap::new(), claimed: Default::default() })
    }

    /// Hosted only: takes over `port` of this domain, which was allocated
    /// for it by someone else and is held by nobody (the toolstack's
    /// xenstore port of a new guest is claimed this way at start).
    /// `EBUSY` if held, `EINVAL` if there is no such port.
    pub fn claim(&mut self, port: Port) -> io::Result<Port> {
        let port = self.bind(&Request::Claim { port })?;
        self.claimed.insert(port);
        Ok(port)
    }

    /// Sends a binding request and registers what comes back.
    fn bind(&mut self, request: &Request) -> io::Result<Port> {
        let (response, fds) = self.host.request(request)?;
        let mut fds = fds.into_iter();
        let (port, poll, notify) = match (response, fds.next(), fds.next(), fds.next()) {
            (Response::Port { port }, Some(poll), Some(notify), None) => (port, poll, Some(Arc::new(notify))),
            (Response::Virq { port }, Some(poll), None, None) => (port, poll, None),
            _ => return Err(invalid("unexpected reply to a bind")),
        };
        if self.ports.contains_key(&port) {
            return Err(invalid("hypervisor bound a port twice"));
        }
        epoll::add(&self.epoll, &poll, epoll::EventData::new_u64(u64::from(port)), epoll::EventFlags::IN)?;
        self.ports.insert(port, LocalPort { poll, notify });
        Ok(port)
    }
}

impl EventChannels for HostedEventChannels {
    fn alloc_unbound(&mut self, remote: DomId) -> io::Result<Port> {
        self.bind(&Request::AllocUnbound { remote })
    }

    fn bind_interdomain(&mut self, remote: DomId, remote_port: Port) -> io::Result<Port> {
        self.bind(&Request::BindInterdomain { remote, remote_port })
    }

    fn bind_virq(&mut self, virq: Virq) -> io::Result<Port> {
        self.bind(&Request::BindVirq { virq })
    }

    fn unbind(&mut self, port: Port) -> io::Result<()> {
        let local = self.ports.remove(&port).ok_or(Errno::INVAL)?;
        self.claimed.remove(&port);
        let _ = epoll::delete(&self.epoll, &local.poll);
        self.host.request_done(&Request::Unbind { port })
    }

    fn notifier(&self, port: Port) -> io::Result<Notifier> {
        let local = self.ports.get(&port).ok_or(Errno::INVAL)?;
        let fd = local.notify.clone().ok_or(Errno::INVAL)?;
        Ok(Notifier::new(move || signal(fd.as_fd())))
    }

    fn take_pending(&mut self, out: &mut Vec<Port>) -> io::Result<()> {
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
            match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), Some(&zero)) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            for event in &events {
                let Ok(port) = Port::try_from(event.data.u64()) else { continue };
                if let Some(local) = self.ports.get(&port) {
                    drain(local.poll.as_fd());
                    out.push(port);
                }
            }
            // A full buffer may mean more are ready.
            if events.len() < events.capacity() {
                return Ok(());
            }
        }
    }
}

impl AsFd for HostedEventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl Drop for HostedEventChannels {
    fn drop(&mut self) {
        for port in self.ports.keys() {
            let port = *port;
            let request =
                if self.claimed.contains(&port) { Request::Release { port } } else { Request::Unbind { port } };
            let _ = self.host.request_done(&request);
        }
    }
}

impl fmt::Debug for HostedEventChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ports: Vec<&Port> = self.ports.keys().collect();
        ports.sort();
        f.debug_struct("HostedEventChannels").field("domid", &self.host.domid()).field("ports", &ports).finish()
    }
}

/// Makes an eventfd pending. A full counter is already pending: an event
/// channel is a level, so `EAGAIN` is success.
pub(crate) fn signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match rustix::io::write(fd, &1u64.to_ne_bytes()) {
            Ok(_) | Err(Errno::AGAIN) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Clears a non-blocking eventfd.
fn drain(fd: BorrowedFd<'_>) {
    let mut counter = [0u8; 8];
    while let Err(Errno::INTR) = rustix::io::read(fd, &mut counter) {}
}
