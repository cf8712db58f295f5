//! In-memory twins of every platform trait, for tests that run xenstored's
//! engine, its rings and their clients in one process (feature
//! `test-utils`).
//!
//! A [`TestHypervisor`] is one in-process hypervisor: a cheap `Clone`
//! handle on shared state (`Arc<Mutex<..>>`) from which a test takes, for
//! dom0 and for any number of guest domains, the implementations of
//! [`EventChannels`](crate::EventChannels), [`ForeignMemory`], [`Grants`], [`DomainStates`],
//! [`Toolstack`] and [`Dom0Store`]. Nothing runs on its own: every effect
//! happens inside the call that causes it, so a test decides the order of
//! everything.
//!
//! What is real: each event-channel handle has its own eventfd, readable
//! while one of its ports is pending, so it can be polled like
//! `/dev/xen/evtchn`; each guest's xenstore page is a memfd that the guest
//! and dom0 map separately, so the ring crate's `MappedServer` and
//! `MappedGuest` (and the client library's `SharedRing`) work over it as
//! over a real page. What is not: guests are not processes
//! ([`DomainConfig::program`] is ignored), and nothing is checked for
//! privilege except binding a virq (dom0 only); foreign mapping and the
//! toolstack are dom0's by construction.
//!
//! # Call pattern (a stepped world)
//!
//! ```
//! # use xen_platform::testing::TestHypervisor;
//! # use xen_platform::{DomainConfig, EventChannels, ForeignMemory, Toolstack, Virq};
//! # fn main() -> std::io::Result<()> {
//! let hv = TestHypervisor::new();
//! // The daemon's platform: dom0's handles.
//! let mut events = hv.event_channels(0)?;
//! let mut memory = hv.foreign_memory();
//! let _states = hv.domain_states();
//! let dom_exc = events.bind_virq(Virq::DomExc)?;
//!
//! // The toolstack makes a guest (paused) ...
//! let config = DomainConfig { name: "guest".into(), program: vec![], env: vec![], cwd: None, netns: false, fuse: false };
//! let new = hv.toolstack().create(&config)?;
//! // ... the guest side takes its page and its port ...
//! let guest = hv.guest(new.domid)?;
//! // (`SharedRing::new(guest.store_page, Box::new(guest.events), guest.store_port)`)
//! // ... and the daemon introduces it (INTRODUCE domid gfn port).
//! let page = memory.map_foreign(new.domid, new.store_gfn, 1)?;
//! let port = events.bind_interdomain(new.domid, new.store_port)?;
//!
//! // Stepping: each party does what it can without blocking, then looks at
//! // its handle's pending ports, until a round makes no progress (with a
//! // bound on rounds). `take_pending` never blocks.
//! guest.events.notify(guest.store_port)?;
//! let mut pending = Vec::new();
//! events.take_pending(&mut pending)?;
//! assert!(pending.contains(&port));
//!
//! // Domain deaths raise VIRQ_DOM_EXC on dom0's bound port.
//! hv.toolstack().destroy(new.domid)?;
//! pending.clear();
//! events.take_pending(&mut pending)?;
//! assert_eq!(pending, [dom_exc]);
//! # drop(page);
//! # Ok(())
//! # }
//! ```
//!
//! A new port from [`EventChannels::bind_interdomain`](crate::EventChannels::bind_interdomain) starts pending, as
//! on Xen (whatever the peer signalled before is not lost); the first
//! `take_pending` after a bind reports it.
//!
//! Faults a test can inject: [`TestHypervisor::fail_next_map_foreign`],
//! [`TestHypervisor::fail_next_bind_interdomain`],
//! [`TestHypervisor::fail_next_into_parts`] and
//! [`TestHypervisor::break_port`] (sending through a port fails with
//! `EPIPE` until [`TestHypervisor::repair_port`]).
//!
//! Handles can be taken apart and adopted as in a live update
//! ([`EventChannels::into_parts`](crate::EventChannels::into_parts), [`TestHypervisor::adopt_event_channels`]).
//!
//! Errors are `io::Error`s carrying Xen's errnos: `ESRCH` for a domain
//! that does not exist, `EINVAL` for a port or frame that is not there or
//! not offered, `EPERM` for a grant not made to the caller or a virq from
//! a guest, `EBUSY` for a port held by another handle, `EEXIST` for a
//! taken name.

mod events;
mod world;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustix::io::Errno;

pub use events::TestEventChannels;
use world::World;

use crate::{
    Dom0Store, DomId, DomainChanges, DomainConfig, DomainInfo, DomainState, DomainStates, EventChannelParts,
    ForeignMemory, GrantRef, GrantedPages, Grants, MappedPages, NewDomain, Port, ShutdownReason, Toolstack,
};

/// The gfn of every twin guest's xenstore page (as hosted: Xen's x86 HVM
/// magic xenstore pfn).
pub const STORE_GFN: u64 = 0xfeffc;

/// One in-process hypervisor; clones share it.
#[derive(Debug, Clone)]
pub struct TestHypervisor {
    world: Arc<Mutex<World>>,
}

/// What a guest needs to talk to xenstored over its ring: the hosted
/// equivalent is `Host::from_guest_env` and `HostedEventChannels::claim`.
#[derive(Debug)]
pub struct TestGuest {
    /// The guest's domid.
    pub domid: DomId,
    /// Its xenstore page, mapped on the guest's side.
    pub store_page: MappedPages,
    /// Its xenstore port, held (claimed) by `events`.
    pub store_port: Port,
    /// A handle of the guest's with `store_port` on it.
    pub events: TestEventChannels,
}

impl Default for TestHypervisor {
    fn default() -> TestHypervisor {
        TestHypervisor::new()
    }
}

impl TestHypervisor {
    /// A hypervisor with dom0 ("Domain-0", running) and no guests.
    pub fn new() -> TestHypervisor {
        TestHypervisor { world: Arc::new(Mutex::new(World::new())) }
    }

    /// A new event-channel handle of domain `domid`, nothing bound
    /// (`ESRCH` if there is no such domain).
    pub fn event_channels(&self, domid: DomId) -> io::Result<TestEventChannels> {
        let (id, wake) = self.lock().open_handle(domid)?;
        Ok(TestEventChannels::new(self.clone(), domid, id, wake))
    }

    /// Rebuilds a handle of `domid` from the parts of one taken apart with
    /// [`EventChannels::into_parts`](crate::EventChannels::into_parts) (one descriptor: the handle's
    /// eventfd). Its ports keep their peers and pending events. `EINVAL`
    /// if the parts do not match the twin's ports, `EBUSY` if a port is
    /// held by a live handle.
    pub fn adopt_event_channels(&self, domid: DomId, parts: EventChannelParts) -> io::Result<TestEventChannels> {
        let EventChannelParts { fds, ports } = parts;
        let [wake]: [OwnedFd; 1] = fds.try_into().map_err(|_| Errno::INVAL)?;
        let wake = Arc::new(wake);
        let id = self.lock().adopt(domid, Arc::clone(&wake), &ports)?;
        Ok(TestEventChannels::new(self.clone(), domid, id, wake))
    }

    /// Dom0's foreign mapping.
    pub fn foreign_memory(&self) -> TestForeignMemory {
        TestForeignMemory { hv: self.clone() }
    }

    /// Grants of domain `domid`.
    pub fn grants(&self, domid: DomId) -> TestGrants {
        TestGrants { hv: self.clone(), domid }
    }

    /// Domain states, as the daemon reads them.
    pub fn domain_states(&self) -> TestToolstack {
        TestToolstack { hv: self.clone() }
    }

    /// The toolstack's domain operations.
    pub fn toolstack(&self) -> TestToolstack {
        TestToolstack { hv: self.clone() }
    }

    /// Dom0's xenstore ring, as the daemon finds it: none unless
    /// [`TestHypervisor::give_dom0_a_store_ring`] made one.
    pub fn dom0_store(&self) -> TestDom0Store {
        TestDom0Store { hv: self.clone() }
    }

    /// Gives dom0 a xenstore page and a store port offered to itself, as
    /// a dom0 kernel does for a xenstored running in dom0; its kernel side
    /// is then [`TestHypervisor::guest`]`(0)`. `EEXIST` if dom0 has one.
    pub fn give_dom0_a_store_ring(&self) -> io::Result<()> {
        self.lock().give_dom0_store()?;
        Ok(())
    }

    /// The guest side of domain `domid` (dom0's kernel side, if dom0 has
    /// a store ring): its store page, mapped, and a new handle holding its
    /// store port. `ESRCH` for an unknown domain, `EINVAL` for a domain
    /// without a store page, `EBUSY` if another handle holds the port.
    pub fn guest(&self, domid: DomId) -> io::Result<TestGuest> {
        let (page, store_port) = {
            let world = self.lock();
            let domain = world.domain(domid)?;
            (domain.store_page.clone().ok_or(Errno::INVAL)?, domain.store_port)
        };
        let store_page = MappedPages::map(page.as_fd(), 0, 1, true)?;
        let mut events = self.event_channels(domid)?;
        events.claim(store_port)?;
        Ok(TestGuest { domid, store_page, store_port, events })
    }

    /// The next [`ForeignMemory::map_foreign`] fails with `errno` (a raw
    /// OS error number).
    pub fn fail_next_map_foreign(&self, errno: i32) {
        self.lock().faults.map_foreign = Some(Errno::from_raw_os_error(errno));
    }

    /// The next [`EventChannels::bind_interdomain`](crate::EventChannels::bind_interdomain) (on any handle) fails
    /// with `errno` (a raw OS error number).
    pub fn fail_next_bind_interdomain(&self, errno: i32) {
        self.lock().faults.bind_interdomain = Some(Errno::from_raw_os_error(errno));
    }

    /// The next [`EventChannels::into_parts`](crate::EventChannels::into_parts) (on any handle) fails with
    /// `errno`, as duplicating a descriptor does when the process has run
    /// out of them; the handle comes back whole in the error.
    pub fn fail_next_into_parts(&self, errno: i32) {
        self.lock().faults.into_parts = Some(Errno::from_raw_os_error(errno));
    }

    /// Breaks `port` of `domid`: every notification sent through it
    /// (including by notifiers made before) fails with `EPIPE`. `EINVAL`
    /// if there is no such port.
    pub fn break_port(&self, domid: DomId, port: Port) -> io::Result<()> {
        self.set_broken(domid, port, true)
    }

    /// Undoes [`TestHypervisor::break_port`].
    pub fn repair_port(&self, domid: DomId, port: Port) -> io::Result<()> {
        self.set_broken(domid, port, false)
    }

    fn set_broken(&self, domid: DomId, port: Port, broken: bool) -> io::Result<()> {
        let mut world = self.lock();
        world.domain_mut(domid)?.port_mut(port).ok_or(Errno::INVAL)?.broken = broken;
        Ok(())
    }

    /// The next domain created gets `domid` if it is free (Xen reuses a
    /// dead domain's id; the twin otherwise counts upwards), for tests of
    /// what a new domain must not inherit from an old one with its id.
    pub fn reuse_domid_next(&self, domid: DomId) {
        self.lock().next_domid = domid;
    }

    /// How many times the daemon was given every domain (`states`, or a
    /// full look of `changed_states`).
    pub fn full_looks(&self) -> usize {
        self.lock().full_looks
    }

    /// Raises VIRQ_DOM_EXC without a change of state (a spurious one,
    /// which the daemon must tolerate).
    pub fn fire_dom_exc(&self) {
        self.lock().fire_dom_exc();
    }

    /// Locks the state, ignoring poisoning (a test that panicked while
    /// holding it fails anyway).
    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dom0's foreign mapping in the twin: each guest's store page, at
/// [`STORE_GFN`], one page.
#[derive(Debug, Clone)]
pub struct TestForeignMemory {
    hv: TestHypervisor,
}

impl ForeignMemory for TestForeignMemory {
    fn map_foreign(&mut self, domid: DomId, gfn: u64, count: usize) -> io::Result<MappedPages> {
        let page = {
            let mut world = self.hv.lock();
            if let Some(errno) = world.faults.map_foreign.take() {
                return Err(errno.into());
            }
            let page = world.domain(domid)?.store_page.clone().ok_or(Errno::INVAL)?;
            if gfn != STORE_GFN || count != 1 {
                return Err(Errno::INVAL.into());
            }
            page
        };
        MappedPages::map(page.as_fd(), 0, 1, true)
    }
}

/// One domain's grants in the twin.
#[derive(Debug, Clone)]
pub struct TestGrants {
    hv: TestHypervisor,
    domid: DomId,
}

impl Grants for TestGrants {
    fn grant_pages(&mut self, remote: DomId, count: usize, writable: bool) -> io::Result<GrantedPages> {
        if count == 0 {
            return Err(Errno::INVAL.into());
        }
        let file = Arc::new(world::memfd("twin-grant", count)?);
        let refs = {
            let mut world = self.hv.lock();
            world.domain(remote)?;
            world.domain_mut(self.domid)?.insert_grants(remote, writable, &file, count)
        };
        let pages = MappedPages::map(file.as_fd(), 0, count, true)?;
        let (hv, domid, ended) = (self.hv.clone(), self.domid, refs.clone());
        let end = move || {
            let mut world = hv.lock();
            if let Ok(domain) = world.domain_mut(domid) {
                for gref in &ended {
                    domain.grants.remove(gref);
                }
            }
        };
        Ok(GrantedPages::new(pages, refs, Some(Box::new(end))))
    }

    fn map_grants(&mut self, remote: DomId, refs: &[GrantRef], writable: bool) -> io::Result<MappedPages> {
        if refs.is_empty() {
            return Err(Errno::INVAL.into());
        }
        let pages: Vec<(Arc<OwnedFd>, u64)> = {
            let world = self.hv.lock();
            let granter = world.domain(remote)?;
            refs.iter()
                .map(|gref| {
                    let grant = granter.grants.get(gref).ok_or(Errno::INVAL)?;
                    if grant.remote != self.domid || (writable && !grant.writable) {
                        return Err(Errno::PERM);
                    }
                    Ok((Arc::clone(&grant.file), grant.page))
                })
                .collect::<Result<_, Errno>>()?
        };
        let segments: Vec<(BorrowedFd<'_>, u64, usize)> =
            pages.iter().map(|(file, page)| (file.as_fd(), *page, 1)).collect();
        MappedPages::map_segments(&segments, writable)
    }
}

/// Domain lifecycle and states in the twin.
#[derive(Debug, Clone)]
pub struct TestToolstack {
    hv: TestHypervisor,
}

impl DomainStates for TestToolstack {
    fn states(&mut self) -> io::Result<Vec<(DomId, DomainState)>> {
        let mut world = self.hv.lock();
        world.full_looks += 1;
        Ok(world.domains.iter().map(|(&domid, d)| (domid, d.state)).collect())
    }

    /// As the hosted hypervisor, with one set for the whole twin (Xen's
    /// single consumer).
    fn changed_states(&mut self, fresh: bool) -> io::Result<DomainChanges> {
        let changed = {
            let mut world = self.hv.lock();
            let taken = world.changed.replace(BTreeMap::new());
            match taken {
                Some(changed) if !fresh => changed,
                _ => {
                    drop(world);
                    return Ok(DomainChanges::Everything(self.states()?));
                }
            }
        };
        let world = self.hv.lock();
        Ok(DomainChanges::Changed(DomainChanges::list_changed(changed, |domid| {
            world.domains.get(&domid).map(|d| d.state)
        })))
    }
}

impl Toolstack for TestToolstack {
    /// Creates a paused guest (its program is not run): a store page at
    /// [`STORE_GFN`] and a store port offered to dom0, held by nobody
    /// until [`TestHypervisor::guest`] claims it.
    fn create(&mut self, config: &DomainConfig) -> io::Result<NewDomain> {
        let (domid, store_port) = self.hv.lock().create(&config.name)?;
        Ok(NewDomain { domid, store_gfn: STORE_GFN, store_port })
    }

    fn unpause(&mut self, domid: DomId) -> io::Result<()> {
        self.run_state(domid, DomainState::Running)
    }

    fn pause(&mut self, domid: DomId) -> io::Result<()> {
        self.run_state(domid, DomainState::Paused)
    }

    /// Marks the guest shut down and raises VIRQ_DOM_EXC.
    fn shutdown(&mut self, domid: DomId, reason: ShutdownReason) -> io::Result<()> {
        if domid == 0 {
            return Err(Errno::INVAL.into());
        }
        let mut world = self.hv.lock();
        world.domain_mut(domid)?.state = DomainState::Shutdown(reason);
        world.domain_changed(domid, false);
        world.fire_dom_exc();
        Ok(())
    }

    /// Removes the guest (its ports close, its peers' ports go back to
    /// unbound) and raises VIRQ_DOM_EXC.
    fn destroy(&mut self, domid: DomId) -> io::Result<()> {
        Ok(self.hv.lock().destroy(domid)?)
    }

    fn list(&mut self) -> io::Result<Vec<DomainInfo>> {
        let world = self.hv.lock();
        Ok(world
            .domains
            .iter()
            .map(|(&domid, d)| DomainInfo { domid, name: d.name.clone(), state: d.state, pid: None })
            .collect())
    }
}

impl TestToolstack {
    /// Pause or unpause: only between paused and running.
    fn run_state(&mut self, domid: DomId, to: DomainState) -> io::Result<()> {
        if domid == 0 {
            return Err(Errno::INVAL.into());
        }
        let mut world = self.hv.lock();
        let domain = world.domain_mut(domid)?;
        match domain.state {
            DomainState::Paused | DomainState::Running => {
                domain.state = to;
                Ok(())
            }
            _ => Err(Errno::INVAL.into()),
        }
    }
}

/// Dom0's own xenstore ring as the daemon finds it: `None` unless
/// [`TestHypervisor::give_dom0_a_store_ring`] made one.
#[derive(Debug, Clone)]
pub struct TestDom0Store {
    hv: TestHypervisor,
}

impl Dom0Store for TestDom0Store {
    fn dom0_ring(&mut self) -> io::Result<Option<(MappedPages, Port)>> {
        let (page, port) = {
            let world = self.hv.lock();
            let dom0 = world.domain(0)?;
            match &dom0.store_page {
                Some(page) => (page.clone(), dom0.store_port),
                None => return Ok(None),
            }
        };
        Ok(Some((MappedPages::map(page.as_fd(), 0, 1, true)?, port)))
    }
}

#[cfg(test)]
mod tests;
