//! The twin's state: domains, their ports and grants, and the event
//! handles, behind one mutex that every twin object shares.
//!
//! Each operation here mirrors the hypercall it stands for and fails with
//! the errno Xen (or the hosted hypervisor) would give.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::io::Errno;

use crate::{Binding, DomId, DomainState, GrantRef, Port, Virq, PAGE_SIZE};

/// What the operations return.
pub(super) type Outcome<T> = Result<T, Errno>;

/// Identifies an event-channel handle for the life of the twin.
pub(super) type HandleId = u64;

/// Xen's first reserved domid (DOMID_FIRST_RESERVED); ids stay below it.
const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// Everything the twin knows.
#[derive(Debug)]
pub(super) struct World {
    pub(super) domains: BTreeMap<DomId, Domain>,
    pub(super) next_domid: DomId,
    pub(super) handles: HashMap<HandleId, Handle>,
    next_handle: HandleId,
    /// Dom0's ports bound to VIRQ_DOM_EXC.
    dom_exc: BTreeSet<Port>,
    pub(super) faults: Faults,
    /// The changed-domain query's set (one consumer, as Xen's flag per
    /// domain): each changed domid and whether one with that id was
    /// destroyed; `None` until a full look starts tracking.
    pub(super) changed: Option<BTreeMap<DomId, bool>>,
    /// How many times every domain was listed for the daemon (states()
    /// or a full look), for tests that it does not list on every
    /// VIRQ_DOM_EXC.
    pub(super) full_looks: usize,
}

/// Failures a test asked for.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// The next `map_foreign` fails with this errno.
    pub(super) map_foreign: Option<Errno>,
    /// The next `bind_interdomain` fails with this errno.
    pub(super) bind_interdomain: Option<Errno>,
    /// The next `into_parts` fails with this errno (a descriptor that
    /// cannot be duplicated).
    pub(super) into_parts: Option<Errno>,
}

/// One domain.
#[derive(Debug)]
pub(super) struct Domain {
    pub(super) name: String,
    pub(super) state: DomainState,
    /// Its xenstore page; none for dom0.
    pub(super) store_page: Option<Arc<OwnedFd>>,
    /// Its xenstore port (offered to dom0); 0 for dom0.
    pub(super) store_port: Port,
    ports: BTreeMap<Port, PortEntry>,
    free_ports: BTreeSet<Port>,
    next_port: Port,
    pub(super) grants: BTreeMap<GrantRef, Grant>,
    next_gref: GrantRef,
}

/// One port of a domain.
#[derive(Debug)]
pub(super) struct PortEntry {
    /// The handle that has it bound, if any.
    pub(super) holder: Option<HandleId>,
    /// Taken by a claim (a guest's store port): released, not closed,
    /// when the holder goes.
    pub(super) claimed: bool,
    pub(super) kind: Kind,
    /// The pending bit.
    pending: bool,
    /// A test broke it: sending through it fails.
    pub(super) broken: bool,
}

/// What a port is connected to (`ECS_*` in Xen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Offered to `remote`, not connected.
    Unbound { remote: DomId },
    /// Connected to `remote`'s `remote_port`.
    Interdomain { remote: DomId, remote_port: Port },
    /// A virtual interrupt.
    Virq(Virq),
}

/// One event-channel handle.
#[derive(Debug)]
pub(super) struct Handle {
    pub(super) domid: DomId,
    /// Readable (non-zero counter) while `pending` is not empty.
    pub(super) wake: Arc<OwnedFd>,
    /// Held ports whose pending bit is set.
    pub(super) pending: BTreeSet<Port>,
    /// Taken apart for adoption: its ports wait for a new handle.
    pub(super) detached: bool,
}

/// One granted page.
#[derive(Debug)]
pub(super) struct Grant {
    pub(super) remote: DomId,
    pub(super) writable: bool,
    pub(super) file: Arc<OwnedFd>,
    pub(super) page: u64,
}

impl Domain {
    fn new(name: &str, state: DomainState) -> Domain {
        Domain {
            name: name.to_owned(),
            state,
            store_page: None,
            store_port: 0,
            ports: BTreeMap::new(),
            free_ports: BTreeSet::new(),
            // Port 0 is reserved, as on Xen.
            next_port: 1,
            grants: BTreeMap::new(),
            next_gref: 1,
        }
    }

    /// Adds a port at the lowest free number.
    fn insert_port(&mut self, holder: Option<HandleId>, kind: Kind) -> Port {
        let port = match self.free_ports.pop_first() {
            Some(port) => port,
            None => {
                self.next_port += 1;
                self.next_port - 1
            }
        };
        self.ports.insert(port, PortEntry { holder, claimed: false, kind, pending: false, broken: false });
        port
    }

    pub(super) fn port(&self, port: Port) -> Option<&PortEntry> {
        self.ports.get(&port)
    }

    pub(super) fn port_mut(&mut self, port: Port) -> Option<&mut PortEntry> {
        self.ports.get_mut(&port)
    }

    /// Allocates grant references for `count` pages of `file`.
    pub(super) fn insert_grants(
        &mut self,
        remote: DomId,
        writable: bool,
        file: &Arc<OwnedFd>,
        count: usize,
    ) -> Vec<GrantRef> {
        (0..count as u64)
            .map(|page| {
                let gref = self.next_gref;
                self.next_gref += 1;
                self.grants.insert(gref, Grant { remote, writable, file: Arc::clone(file), page });
                gref
            })
            .collect()
    }
}

impl World {
    /// Dom0 alone, running.
    pub(super) fn new() -> World {
        World {
            domains: BTreeMap::from([(0, Domain::new("Domain-0", DomainState::Running))]),
            next_domid: 1,
            handles: HashMap::new(),
            next_handle: 1,
            dom_exc: BTreeSet::new(),
            faults: Faults::default(),
            changed: None,
            full_looks: 0,
        }
    }

    pub(super) fn domain(&self, domid: DomId) -> Outcome<&Domain> {
        self.domains.get(&domid).ok_or(Errno::SRCH)
    }

    pub(super) fn domain_mut(&mut self, domid: DomId) -> Outcome<&mut Domain> {
        self.domains.get_mut(&domid).ok_or(Errno::SRCH)
    }

    /// A new handle of `domid` with nothing bound.
    pub(super) fn open_handle(&mut self, domid: DomId) -> Outcome<(HandleId, Arc<OwnedFd>)> {
        self.domain(domid)?;
        let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        Ok((self.add_handle(domid, Arc::clone(&wake)), wake))
    }

    pub(super) fn add_handle(&mut self, domid: DomId, wake: Arc<OwnedFd>) -> HandleId {
        let id = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(id, Handle { domid, wake, pending: BTreeSet::new(), detached: false });
        id
    }

    /// The domain of a live handle.
    fn handle_domain(&self, handle: HandleId) -> Outcome<DomId> {
        let domid = self.handles.get(&handle).ok_or(Errno::BADF)?.domid;
        self.domain(domid)?;
        Ok(domid)
    }

    /// EVTCHNOP_alloc_unbound, bound on `handle`.
    pub(super) fn alloc_unbound(&mut self, handle: HandleId, remote: DomId) -> Outcome<Port> {
        let domid = self.handle_domain(handle)?;
        self.domain(remote)?;
        Ok(self.domain_mut(domid)?.insert_port(Some(handle), Kind::Unbound { remote }))
    }

    /// EVTCHNOP_bind_interdomain, bound on `handle`. Like Xen, the new
    /// port starts pending, so that whatever the peer signalled while
    /// nobody was bound is not lost.
    pub(super) fn bind_interdomain(&mut self, handle: HandleId, remote: DomId, remote_port: Port) -> Outcome<Port> {
        if let Some(errno) = self.faults.bind_interdomain.take() {
            return Err(errno);
        }
        let domid = self.handle_domain(handle)?;
        match self.domain(remote)?.port(remote_port).map(|entry| entry.kind) {
            Some(Kind::Unbound { remote: offered_to }) if offered_to == domid => {}
            _ => return Err(Errno::INVAL),
        }
        let port = self.domain_mut(domid)?.insert_port(Some(handle), Kind::Interdomain { remote, remote_port });
        if let Some(entry) = self.domain_mut(remote)?.port_mut(remote_port) {
            entry.kind = Kind::Interdomain { remote: domid, remote_port: port };
        }
        self.raise(domid, port);
        Ok(port)
    }

    /// EVTCHNOP_bind_virq, bound on `handle`; dom0 only.
    pub(super) fn bind_virq(&mut self, handle: HandleId, virq: Virq) -> Outcome<Port> {
        let domid = self.handle_domain(handle)?;
        if domid != 0 {
            return Err(Errno::PERM);
        }
        let port = self.domain_mut(domid)?.insert_port(Some(handle), Kind::Virq(virq));
        match virq {
            Virq::DomExc => self.dom_exc.insert(port),
        };
        Ok(port)
    }

    /// Hosted's claim: `handle` takes a port of its own domain that
    /// nobody holds.
    pub(super) fn claim(&mut self, handle: HandleId, port: Port) -> Outcome<Port> {
        let domid = self.handle_domain(handle)?;
        let entry = self.domain_mut(domid)?.port_mut(port).ok_or(Errno::INVAL)?;
        if entry.holder.is_some() {
            return Err(Errno::BUSY);
        }
        entry.holder = Some(handle);
        entry.claimed = true;
        let pending = entry.pending;
        if pending {
            self.raise(domid, port);
        }
        Ok(port)
    }

    /// EVTCHNOP_close of a port `handle` holds.
    pub(super) fn unbind(&mut self, handle: HandleId, port: Port) -> Outcome<()> {
        let domid = self.handle_domain(handle)?;
        match self.domain(domid)?.port(port) {
            Some(entry) if entry.holder == Some(handle) => {}
            _ => return Err(Errno::INVAL),
        }
        self.close_port(domid, port);
        Ok(())
    }

    /// The binding of a port `handle` holds, checked.
    pub(super) fn held(&self, handle: HandleId, port: Port) -> Outcome<(DomId, &PortEntry)> {
        let domid = self.handle_domain(handle)?;
        match self.domain(domid)?.port(port) {
            Some(entry) if entry.holder == Some(handle) => Ok((domid, entry)),
            _ => Err(Errno::INVAL),
        }
    }

    /// EVTCHNOP_send through `port` of `domid`.
    pub(super) fn send(&mut self, domid: DomId, port: Port) -> Outcome<()> {
        let entry = self.domain(domid)?.port(port).ok_or(Errno::INVAL)?;
        if entry.broken {
            return Err(Errno::PIPE);
        }
        match entry.kind {
            Kind::Interdomain { remote, remote_port } => {
                self.raise(remote, remote_port);
                Ok(())
            }
            // Xen drops a send on a port nobody is connected to.
            Kind::Unbound { .. } => Ok(()),
            Kind::Virq(_) => Err(Errno::INVAL),
        }
    }

    /// Sets a port's pending bit and wakes its holder.
    pub(super) fn raise(&mut self, domid: DomId, port: Port) {
        let Some(entry) = self.domains.get_mut(&domid).and_then(|d| d.ports.get_mut(&port)) else { return };
        entry.pending = true;
        let Some(holder) = entry.holder else { return };
        if let Some(handle) = self.handles.get_mut(&holder) {
            handle.pending.insert(port);
            signal(&handle.wake);
        }
    }

    /// Takes `handle`'s pending ports (clearing their bits) and lowers
    /// its descriptor.
    pub(super) fn take_pending(&mut self, handle: HandleId, out: &mut Vec<Port>) -> Outcome<()> {
        let entry = self.handles.get_mut(&handle).ok_or(Errno::BADF)?;
        let mut counter = [0u8; 8];
        match rustix::io::read(entry.wake.as_fd(), &mut counter) {
            Ok(_) | Err(Errno::AGAIN) => {}
            Err(e) => return Err(e),
        }
        let ports = std::mem::take(&mut entry.pending);
        let domid = entry.domid;
        for port in ports {
            if let Some(entry) = self.domains.get_mut(&domid).and_then(|d| d.ports.get_mut(&port)) {
                entry.pending = false;
            }
            out.push(port);
        }
        Ok(())
    }

    /// Removes a port; its peer goes back to offered to this domain.
    pub(super) fn close_port(&mut self, domid: DomId, port: Port) {
        let Some(domain) = self.domains.get_mut(&domid) else { return };
        let Some(entry) = domain.ports.remove(&port) else { return };
        domain.free_ports.insert(port);
        if let Some(handle) = entry.holder.and_then(|holder| self.handles.get_mut(&holder)) {
            handle.pending.remove(&port);
        }
        match entry.kind {
            Kind::Interdomain { remote, remote_port } => {
                if let Some(peer) = self.domains.get_mut(&remote).and_then(|d| d.ports.get_mut(&remote_port)) {
                    peer.kind = Kind::Unbound { remote: domid };
                }
            }
            Kind::Unbound { .. } => {}
            Kind::Virq(Virq::DomExc) => {
                if domid == 0 {
                    self.dom_exc.remove(&port);
                }
            }
        }
    }

    /// A handle is gone: closes what it bound, releases what it claimed.
    pub(super) fn close_handle(&mut self, handle: HandleId) {
        let Some(entry) = self.handles.remove(&handle) else { return };
        let Some(domain) = self.domains.get_mut(&entry.domid) else { return };
        let held: Vec<(Port, bool)> = domain
            .ports
            .iter()
            .filter(|(_, port)| port.holder == Some(handle))
            .map(|(&port, entry)| (port, entry.claimed))
            .collect();
        for (port, claimed) in held {
            if claimed {
                if let Some(entry) = self.domains.get_mut(&entry.domid).and_then(|d| d.ports.get_mut(&port)) {
                    entry.holder = None;
                }
            } else {
                self.close_port(entry.domid, port);
            }
        }
    }

    /// Marks `handle` taken apart: its ports stay bound to it and keep
    /// collecting events (and waking its descriptor) until adopted.
    pub(super) fn detach(&mut self, handle: HandleId) {
        if let Some(entry) = self.handles.get_mut(&handle) {
            entry.detached = true;
        }
    }

    /// A new handle of `domid` over `wake` taking `ports` from the
    /// detached handle(s) holding them, pending events included.
    pub(super) fn adopt(&mut self, domid: DomId, wake: Arc<OwnedFd>, ports: &[crate::BoundPort]) -> Outcome<HandleId> {
        let domain = self.domain(domid)?;
        let mut previous = BTreeSet::new();
        for bound in ports {
            let entry = domain.port(bound.port).ok_or(Errno::INVAL)?;
            if entry.binding() != bound.binding {
                return Err(Errno::INVAL);
            }
            match entry.holder.and_then(|holder| self.handles.get(&holder).map(|h| (holder, h))) {
                Some((holder, handle)) if handle.detached && handle.domid == domid => previous.insert(holder),
                Some(_) => return Err(Errno::BUSY),
                // Held by nobody (a claimed port released meanwhile).
                None => false,
            };
        }
        let id = self.add_handle(domid, wake);
        for bound in ports {
            if let Some(entry) = self.domains.get_mut(&domid).and_then(|d| d.ports.get_mut(&bound.port)) {
                entry.holder = Some(id);
                if entry.pending {
                    self.raise(domid, bound.port);
                }
            }
        }
        // A detached handle whose ports were all adopted is gone; ports
        // left on one (not in the parts) stay until it is adopted again.
        for holder in previous {
            let still_holds = self.domains[&domid].ports.values().any(|entry| entry.holder == Some(holder));
            if !still_holds {
                self.handles.remove(&holder);
            }
        }
        Ok(id)
    }

    /// The bindings of the ports `handle` holds, in port order.
    pub(super) fn bindings(&self, handle: HandleId) -> Vec<crate::BoundPort> {
        let Some(domid) = self.handles.get(&handle).map(|h| h.domid) else { return Vec::new() };
        let Some(domain) = self.domains.get(&domid) else { return Vec::new() };
        domain
            .ports
            .iter()
            .filter(|(_, entry)| entry.holder == Some(handle))
            .map(|(&port, entry)| crate::BoundPort { port, binding: entry.binding() })
            .collect()
    }

    /// A domid for a new domain.
    pub(super) fn alloc_domid(&mut self) -> Outcome<DomId> {
        for _ in 1..DOMID_FIRST_RESERVED {
            let domid = self.next_domid;
            self.next_domid = if domid + 1 >= DOMID_FIRST_RESERVED { 1 } else { domid + 1 };
            if !self.domains.contains_key(&domid) {
                return Ok(domid);
            }
        }
        Err(Errno::NOSPC)
    }

    /// Gives dom0 a xenstore page and a store port offered to itself, held
    /// by nobody: what a dom0 kernel's xenbus sets up for a xenstored in
    /// dom0 (`/proc/xen/xsd_kva`, `/proc/xen/xsd_port`).
    pub(super) fn give_dom0_store(&mut self) -> Outcome<Port> {
        let dom0 = self.domain_mut(0)?;
        if dom0.store_page.is_some() {
            return Err(Errno::EXIST);
        }
        dom0.store_page = Some(Arc::new(memfd("twin-dom0-store", 1)?));
        dom0.store_port = dom0.insert_port(None, Kind::Unbound { remote: 0 });
        Ok(dom0.store_port)
    }

    /// A new paused guest with a store page and a store port offered to
    /// dom0, held by nobody.
    pub(super) fn create(&mut self, name: &str) -> Outcome<(DomId, Port)> {
        if self.domains.values().any(|d| d.name == name) {
            return Err(Errno::EXIST);
        }
        let domid = self.alloc_domid()?;
        let mut domain = Domain::new(name, DomainState::Paused);
        domain.store_page = Some(Arc::new(memfd("twin-store", 1)?));
        domain.store_port = domain.insert_port(None, Kind::Unbound { remote: 0 });
        let port = domain.store_port;
        self.domains.insert(domid, domain);
        Ok((domid, port))
    }

    /// Destroys a guest: its ports close (peers go back to unbound), its
    /// grants end, it leaves the list; VIRQ_DOM_EXC fires.
    pub(super) fn destroy(&mut self, domid: DomId) -> Outcome<()> {
        if domid == 0 {
            return Err(Errno::INVAL);
        }
        let ports: Vec<Port> = self.domain(domid)?.ports.keys().copied().collect();
        for port in ports {
            self.close_port(domid, port);
        }
        self.domains.remove(&domid);
        self.domain_changed(domid, true);
        self.fire_dom_exc();
        Ok(())
    }

    /// Notes a change of `domid`'s state (`gone`: destroyed) for the
    /// changed-domain query.
    pub(super) fn domain_changed(&mut self, domid: DomId, gone: bool) {
        if let Some(changed) = &mut self.changed {
            *changed.entry(domid).or_insert(false) |= gone;
        }
    }

    /// Raises VIRQ_DOM_EXC on every dom0 port bound to it.
    pub(super) fn fire_dom_exc(&mut self) {
        let ports: Vec<Port> = self.dom_exc.iter().copied().collect();
        for port in ports {
            self.raise(0, port);
        }
    }
}

impl PortEntry {
    /// The public form of what it is connected to.
    pub(super) fn binding(&self) -> Binding {
        if self.claimed {
            return Binding::Claimed;
        }
        match self.kind {
            Kind::Unbound { remote } => Binding::Unbound { remote },
            Kind::Interdomain { remote, remote_port } => Binding::Interdomain { remote, remote_port },
            Kind::Virq(virq) => Binding::Virq(virq),
        }
    }
}

/// A memfd of `pages` zeroed pages.
pub(super) fn memfd(name: &str, pages: usize) -> Outcome<OwnedFd> {
    let fd = memfd_create(name, MemfdFlags::CLOEXEC)?;
    let len = pages.checked_mul(PAGE_SIZE).and_then(|len| u64::try_from(len).ok()).ok_or(Errno::INVAL)?;
    ftruncate(&fd, len)?;
    Ok(fd)
}

/// Makes an eventfd readable; a full counter already is.
fn signal(fd: &OwnedFd) {
    loop {
        match rustix::io::write(fd, &1u64.to_ne_bytes()) {
            Err(Errno::INTR) => continue,
            _ => return,
        }
    }
}
