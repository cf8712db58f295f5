//! A process's hosted event channels: eventfds the hypervisor hands out,
//! watched through one epoll descriptor.
//!
//! Binding goes through the hypervisor (it decides who may bind what);
//! signalling does not: [`Notifier`]s write the peer's eventfd directly,
//! so a notification costs one `write`.
//!
//! Nothing here ever reads a port's descriptor: every port is watched
//! edge-triggered, and each signal is a new edge. The eventfd a process
//! polls is also held by its peer, which writes it, and a file's
//! `O_NONBLOCK` and counter are shared by every holder: a guest could
//! make dom0's eventfd blocking and empty it between dom0's poll and
//! dom0's `read`, which would then never return. A guest does not get
//! its own eventfd at all, only an edge-triggered epoll set holding it
//! (the hypervisor's `guarded`), so that dom0's `write`s to it cannot be
//! made to block either. Never read, a counter grows by one a signal:
//! it would take 2^64 of them to fill.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::event::epoll;
use rustix::io::Errno;

use super::client::Host;
use super::protocol::{invalid, Request, Response};
use crate::{Binding, BoundPort, DomId, EventChannelParts, EventChannels, IntoPartsError, Notifier, Port, Virq};

/// A hosted event-channel handle (`/dev/xen/evtchn` opened once).
///
/// Its descriptor is an epoll set holding the eventfd of every port it
/// bound; dropping it unbinds them all.
///
/// # Adoption
///
/// The hypervisor knows a port's holder by the connection that bound it,
/// and the port's state lives in its eventfds, so a handle travels as
/// descriptors ([`EventChannels::into_parts`]): first a duplicate of the
/// hypervisor connection, then for each port in [`EventChannelParts`]'
/// order its poll eventfd and, unless it is a virq, its notify eventfd.
/// [`HostedEventChannels::adopt`] rebuilds a handle from them (with a
/// new epoll set, so its [`AsFd`] descriptor is a new one). While any copy
/// of the connection stays open, the hypervisor keeps the ports bound.
pub struct HostedEventChannels {
    host: Host,
    epoll: OwnedFd,
    ports: HashMap<Port, LocalPort>,
}

/// The descriptors of one bound port.
struct LocalPort {
    /// Readable (non-zero counter) while the port is pending.
    poll: OwnedFd,
    /// Signals the peer; `None` for a virq.
    notify: Option<Arc<OwnedFd>>,
    /// How it was bound; [`Binding::Claimed`] ports are released, not
    /// closed, when the handle goes.
    binding: Binding,
    /// Handed to the caller ([`EventChannels::poll_directly`]): out of
    /// the handle's epoll set.
    direct: bool,
}

impl HostedEventChannels {
    /// A handle with nothing bound.
    pub(crate) fn new(host: Host) -> io::Result<HostedEventChannels> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(HostedEventChannels { host, epoll, ports: HashMap::new() })
    }

    /// Rebuilds a handle of domain `domid` from the parts another handle
    /// was taken apart into (see the type's documentation for their
    /// order). Its ports keep their pending events and peers. `EINVAL` if
    /// the descriptors do not match the ports.
    pub fn adopt(domid: DomId, parts: EventChannelParts) -> io::Result<HostedEventChannels> {
        let EventChannelParts { fds, ports } = parts;
        let mut fds = fds.into_iter();
        let conn = fds.next().ok_or(Errno::INVAL)?;
        let mut handle = HostedEventChannels::new(Host::from_connection(conn, domid))?;
        for BoundPort { port, binding } in ports {
            let poll = fds.next().ok_or(Errno::INVAL)?;
            let notify = match binding {
                Binding::Virq(_) => None,
                _ => Some(Arc::new(fds.next().ok_or(Errno::INVAL)?)),
            };
            handle.register(port, LocalPort { poll, notify, binding, direct: false })?;
        }
        if fds.next().is_some() {
            return Err(Errno::INVAL.into());
        }
        Ok(handle)
    }

    /// Hosted only: takes over `port` of this domain, which was allocated
    /// for it by someone else and is held by nobody (the toolstack's
    /// xenstore port of a new guest is claimed this way at start).
    /// `EBUSY` if held, `EINVAL` if there is no such port.
    pub fn claim(&mut self, port: Port) -> io::Result<Port> {
        self.bind(&Request::Claim { port }, Binding::Claimed)
    }

    /// Adds a port to the handle and its epoll set.
    fn register(&mut self, port: Port, local: LocalPort) -> io::Result<()> {
        if self.ports.contains_key(&port) {
            return Err(invalid("hypervisor bound a port twice"));
        }
        watch(&self.epoll, port, &local.poll)?;
        self.ports.insert(port, local);
        Ok(())
    }

    /// Sends a binding request and registers what comes back.
    fn bind(&mut self, request: &Request, binding: Binding) -> io::Result<Port> {
        let (response, fds) = self.host.request(request)?;
        let mut fds = fds.into_iter();
        let (port, poll, notify) = match (response, fds.next(), fds.next(), fds.next()) {
            (Response::Port { port }, Some(poll), Some(notify), None) => (port, poll, Some(Arc::new(notify))),
            (Response::Virq { port }, Some(poll), None, None) => (port, poll, None),
            _ => return Err(invalid("unexpected reply to a bind")),
        };
        self.register(port, LocalPort { poll, notify, binding, direct: false })?;
        Ok(port)
    }
}

impl EventChannels for HostedEventChannels {
    fn alloc_unbound(&mut self, remote: DomId) -> io::Result<Port> {
        self.bind(&Request::AllocUnbound { remote }, Binding::Unbound { remote })
    }

    fn bind_interdomain(&mut self, remote: DomId, remote_port: Port) -> io::Result<Port> {
        self.bind(&Request::BindInterdomain { remote, remote_port }, Binding::Interdomain { remote, remote_port })
    }

    fn bind_virq(&mut self, virq: Virq) -> io::Result<Port> {
        self.bind(&Request::BindVirq { virq }, Binding::Virq(virq))
    }

    fn unbind(&mut self, port: Port) -> io::Result<()> {
        let local = self.ports.remove(&port).ok_or(Errno::INVAL)?;
        if !local.direct {
            let _ = epoll::delete(&self.epoll, &local.poll);
        }
        self.host.request_done(&Request::Unbind { port })
    }

    fn notifier(&self, port: Port) -> io::Result<Notifier> {
        let local = self.ports.get(&port).ok_or(Errno::INVAL)?;
        let fd = local.notify.clone().ok_or(Errno::INVAL)?;
        Ok(Notifier::new(move || signal(fd.as_fd())))
    }

    fn poll_directly(&mut self, port: Port) -> io::Result<Option<OwnedFd>> {
        let local = self.ports.get_mut(&port).ok_or(Errno::INVAL)?;
        let fd = local.poll.try_clone()?;
        if !local.direct {
            epoll::delete(&self.epoll, &local.poll)?;
            local.direct = true;
        }
        Ok(Some(fd))
    }

    fn poll_through_handle(&mut self, port: Port) -> io::Result<()> {
        let local = self.ports.get_mut(&port).ok_or(Errno::INVAL)?;
        if local.direct {
            watch(&self.epoll, port, &local.poll)?;
            local.direct = false;
        }
        Ok(())
    }

    fn bindings(&self) -> Vec<BoundPort> {
        let mut ports: Vec<BoundPort> =
            self.ports.iter().map(|(&port, local)| BoundPort { port, binding: local.binding }).collect();
        ports.sort_by_key(|bound| bound.port);
        ports
    }

    fn into_parts(mut self: Box<Self>) -> Result<EventChannelParts, IntoPartsError> {
        let ports = self.bindings();
        // Every duplicate first, nothing changed: a failure gives the
        // handle back whole.
        let duplicates = || -> io::Result<Vec<OwnedFd>> {
            let mut fds = vec![self.host.dup_connection()?];
            for bound in &ports {
                let local = &self.ports[&bound.port];
                fds.push(local.poll.try_clone()?);
                if let Some(notify) = &local.notify {
                    fds.push(notify.try_clone()?);
                }
            }
            Ok(fds)
        };
        let fds = match duplicates() {
            Ok(fds) => fds,
            Err(error) => return Err(IntoPartsError { handle: self, error }),
        };
        // Nothing to unbind on drop: the ports go with the parts.
        self.ports.clear();
        Ok(EventChannelParts { fds, ports })
    }

    fn take_pending(&mut self, out: &mut Vec<Port>) -> io::Result<()> {
        // On the stack: this runs once per ring round trip on both ends.
        let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 64];
        loop {
            let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
            let events = match epoll::wait(&self.epoll, &mut buf, Some(&zero)) {
                Ok((events, _)) => events,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for event in events.iter() {
                let Ok(port) = Port::try_from(event.data.u64()) else { continue };
                // Edge-triggered: taking the event is all the re-arming
                // there is (nothing is read: see the module's docs).
                if self.ports.contains_key(&port) {
                    out.push(port);
                }
            }
            // A full buffer may mean more are ready.
            if events.len() < 64 {
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
        for (&port, local) in &self.ports {
            let request =
                if local.binding == Binding::Claimed { Request::Release { port } } else { Request::Unbind { port } };
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

/// Watches a port's descriptor in `set`, edge-triggered.
fn watch(set: &OwnedFd, port: Port, poll: &OwnedFd) -> io::Result<()> {
    let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
    Ok(epoll::add(set, poll, epoll::EventData::new_u64(u64::from(port)), flags)?)
}
