//! Event-channel operations (the EVTCHNOP_* hypercalls) and VIRQ_DOM_EXC.
//!
//! A channel is two non-blocking eventfds made when one end is allocated:
//! the allocating domain polls one and signals the other; whoever binds
//! the offered port gets them the other way round. The hypervisor keeps
//! both so a port that goes back to unbound can be bound again onto the
//! same descriptors.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use super::ports::{PortEntry, PortKind};
use super::{done, dup, Answer, ConnId, State};
use crate::hosted::evtchn::signal;
use crate::hosted::protocol::Response;
use crate::{DomId, Port, Virq};

impl State {
    /// EVTCHNOP_alloc_unbound, bound locally on `conn`.
    pub(super) fn alloc_unbound(&mut self, conn: ConnId, caller: DomId, remote: DomId) -> Answer {
        if !self.domains.contains_key(&remote) {
            return Err((Errno::SRCH, "no such remote domain"));
        }
        let port = self.offer_port(caller, remote, Some(conn))?;
        self.port_answer(caller, port)
    }

    /// Makes a fresh channel end in `owner`, offered to `remote`, held by
    /// `holder`.
    pub(super) fn offer_port(
        &mut self,
        owner: DomId,
        remote: DomId,
        holder: Option<ConnId>,
    ) -> Result<Port, (Errno, &'static str)> {
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        let (poll, notify) = match (eventfd(0, flags), eventfd(0, flags)) {
            (Ok(poll), Ok(notify)) => (Arc::new(poll), Arc::new(notify)),
            _ => return Err((Errno::NOMEM, "out of descriptors")),
        };
        let domain = self.domains.get_mut(&owner).ok_or((Errno::SRCH, "no such domain"))?;
        let kind = PortKind::Interdomain { remote, peer: None, poll, notify };
        domain.ports.insert(PortEntry { holder, claimed: false, kind }).ok_or((Errno::NOSPC, "out of ports"))
    }

    /// EVTCHNOP_bind_interdomain: `remote_port` of `remote` must be
    /// offered to `caller` and not connected.
    pub(super) fn bind_interdomain(&mut self, conn: ConnId, caller: DomId, remote: DomId, remote_port: Port) -> Answer {
        let theirs = self.domains.get(&remote).ok_or((Errno::SRCH, "no such remote domain"))?;
        let entry = theirs.ports.get(remote_port).ok_or((Errno::INVAL, "no such remote port"))?;
        let (poll, notify) = match &entry.kind {
            PortKind::Interdomain { remote: offered_to, peer: None, poll, notify } if *offered_to == caller => {
                // Our end polls what theirs signals and the other way round.
                (Arc::clone(notify), Arc::clone(poll))
            }
            _ => return Err((Errno::INVAL, "remote port not offered to caller or already bound")),
        };
        let ours = self.domains.get_mut(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        let kind = PortKind::Interdomain { remote, peer: Some(remote_port), poll, notify };
        let port = ours
            .ports
            .insert(PortEntry { holder: Some(conn), claimed: false, kind })
            .ok_or((Errno::NOSPC, "out of ports"))?;
        self.set_peer(remote, remote_port, Some(port));
        self.port_answer(caller, port)
    }

    /// EVTCHNOP_bind_virq; dom0 only (VIRQ_DOM_EXC is global).
    pub(super) fn bind_virq(&mut self, conn: ConnId, caller: DomId, virq: Virq) -> Answer {
        if caller != 0 {
            return Err((Errno::PERM, "global virq needs privilege"));
        }
        match virq {
            Virq::DomExc => {}
        }
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|_| (Errno::NOMEM, "eventfd"))?;
        let fd = Arc::new(fd);
        let domain = self.domains.get_mut(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        let kind = PortKind::Virq { fd: Arc::clone(&fd) };
        let port = domain
            .ports
            .insert(PortEntry { holder: Some(conn), claimed: false, kind })
            .ok_or((Errno::NOSPC, "out of ports"))?;
        self.virq_subscribers.insert((caller, port), Arc::clone(&fd));
        Ok((Response::Virq { port }, vec![dup(&fd)?]))
    }

    /// Hosted only: `conn` takes a port of its own domain that nobody
    /// holds, or that it holds already (processes of one guest share the
    /// inherited connection: a successor takes over from a process that
    /// died without releasing).
    pub(super) fn claim(&mut self, conn: ConnId, caller: DomId, port: Port) -> Answer {
        let domain = self.domains.get_mut(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        let entry = domain.ports.get_mut(port).ok_or((Errno::INVAL, "no such port"))?;
        if entry.holder.is_some_and(|holder| holder != conn) {
            return Err((Errno::BUSY, "port already held"));
        }
        entry.holder = Some(conn);
        entry.claimed = true;
        self.port_answer(caller, port)
    }

    /// Hosted only: `conn` stops holding a claimed port, which stays (and
    /// stays connected) for the next claim.
    pub(super) fn release(&mut self, conn: ConnId, caller: DomId, port: Port) -> Answer {
        let domain = self.domains.get_mut(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        match domain.ports.get_mut(port) {
            Some(entry) if entry.holder == Some(conn) => entry.holder = None,
            _ => return Err((Errno::INVAL, "port not held here")),
        }
        done()
    }

    /// EVTCHNOP_close, for a port `conn` holds.
    pub(super) fn unbind(&mut self, conn: ConnId, caller: DomId, port: Port) -> Answer {
        let domain = self.domains.get(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        match domain.ports.get(port) {
            Some(entry) if entry.holder == Some(conn) => {}
            _ => return Err((Errno::INVAL, "port not bound here")),
        }
        self.close_port(caller, port);
        done()
    }

    /// Releases every port `conn` (of `domid`) holds: its process closed
    /// the connection or died.
    pub(super) fn release_ports_of(&mut self, conn: ConnId, domid: DomId) {
        let Some(domain) = self.domains.get(&domid) else { return };
        let held: Vec<(Port, bool)> = domain
            .ports
            .iter()
            .filter(|(_, entry)| entry.holder == Some(conn))
            .map(|(port, entry)| (port, entry.claimed))
            .collect();
        for (port, claimed) in held {
            if claimed {
                if let Some(entry) = self.domains.get_mut(&domid).and_then(|d| d.ports.get_mut(port)) {
                    entry.holder = None;
                }
            } else {
                self.close_port(domid, port);
            }
        }
    }

    /// Removes a port; its peer, if any, goes back to offered (unbound for
    /// the same remote) with the channel's descriptors, ready to be bound
    /// again.
    pub(super) fn close_port(&mut self, domid: DomId, port: Port) {
        let Some(entry) = self.domains.get_mut(&domid).and_then(|d| d.ports.remove(port)) else { return };
        match entry.kind {
            PortKind::Interdomain { remote, peer: Some(peer), .. } => self.set_peer(remote, peer, None),
            PortKind::Interdomain { peer: None, .. } => {}
            PortKind::Virq { .. } => {
                self.virq_subscribers.remove(&(domid, port));
            }
        }
    }

    /// Raises VIRQ_DOM_EXC on every subscriber.
    pub(super) fn fire_dom_exc(&self) {
        for fd in self.virq_subscribers.values() {
            let _ = signal(std::os::fd::AsFd::as_fd(&**fd));
        }
    }

    /// Points `port` of `domid` at `peer` (or back to unbound).
    fn set_peer(&mut self, domid: DomId, port: Port, new_peer: Option<Port>) {
        if let Some(entry) = self.domains.get_mut(&domid).and_then(|d| d.ports.get_mut(port)) {
            if let PortKind::Interdomain { peer, .. } = &mut entry.kind {
                *peer = new_peer;
            }
        }
    }

    /// The reply for a port bound locally: its poll and notify eventfds.
    fn port_answer(&self, domid: DomId, port: Port) -> Answer {
        let entry = self.domains.get(&domid).and_then(|d| d.ports.get(port)).ok_or((Errno::INVAL, "no such port"))?;
        match &entry.kind {
            PortKind::Interdomain { poll, notify, .. } => {
                let poll = if domid == 0 { dup(poll)? } else { guarded(poll)? };
                let fds: Vec<OwnedFd> = vec![poll, dup(notify)?];
                Ok((Response::Port { port }, fds))
            }
            PortKind::Virq { fd, .. } => Ok((Response::Virq { port }, vec![dup(fd)?])),
        }
    }
}

/// What a guest polls its end of a channel with: an epoll set holding the
/// end's eventfd, edge-triggered, never the eventfd itself.
///
/// The eventfd is what the peer writes to notify the guest (xenstored, a
/// backend), and an open file's `O_NONBLOCK` belongs to the file, shared
/// by every holder: a guest holding the eventfd could make it blocking and
/// fill its counter to the maximum, and the peer's next notification, a
/// `write` of 1, would never return (xenstored blocked in it for every
/// domain). Through the set the guest can only wait: an epoll set takes no
/// `write`, and its `O_NONBLOCK` governs nothing of the eventfd's. Each
/// signal is a new edge for the set and for any set polling it, so nobody
/// reads the eventfd (see `hosted/evtchn.rs`).
pub(super) fn guarded(poll: &OwnedFd) -> Result<OwnedFd, (Errno, &'static str)> {
    use rustix::event::epoll;
    let set = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| (e, "creating a poll set"))?;
    watch_edges(&set, poll)?;
    Ok(set)
}

/// Adds `fd` to a set made by [`guarded`], edge-triggered: each signal of
/// it is a new edge for the set.
pub(super) fn watch_edges(set: &OwnedFd, fd: &OwnedFd) -> Result<(), (Errno, &'static str)> {
    use rustix::event::epoll;
    let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
    epoll::add(set, fd, epoll::EventData::new_u64(0), flags).map_err(|e| (e, "filling a poll set"))
}
