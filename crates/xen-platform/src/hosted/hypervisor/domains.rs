//! Domains and their lifecycle: create (a paused process), pause and
//! unpause (SIGSTOP, SIGCONT), shutdown, noticing a guest's exit through
//! its pidfd, destroy, list. Every change into shutdown or out of
//! existence raises VIRQ_DOM_EXC.

use std::os::fd::{AsFd, OwnedFd};

use rustix::event::epoll;
use rustix::io::Errno;
use rustix::process::{pidfd_send_signal, waitid, Signal, WaitId, WaitIdOptions};

use super::grants::GrantTable;
use super::helper::kill_all_of;
use super::memory::memfd;
use super::ports::PortTable;
use super::spawn::{spawn_paused, Spawned};
use super::{done, Answer, ConnId, State, KIND_CHILD};
use crate::hosted::protocol::Response;
use crate::hosted::STORE_GFN;
use crate::{DomId, DomainChanges, DomainConfig, DomainInfo, DomainState, NewDomain, ShutdownReason};

/// Xen's first reserved domid (DOMID_FIRST_RESERVED); ids wrap below it.
const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// One domain.
#[derive(Debug)]
pub(super) struct Domain {
    name: String,
    state: DomainState,
    /// The guest's process until it has been reaped; none for dom0.
    process: Option<OwnedFd>,
    /// That process's pid, reported by [`State::list`] while `process`
    /// is held.
    pid: Option<u32>,
    /// Its xenstore page (frame [`STORE_GFN`]); none for dom0.
    pub(super) store_page: Option<OwnedFd>,
    /// Its xenstore port, offered to dom0.
    pub(super) store_port: crate::Port,
    pub(super) ports: PortTable,
    pub(super) grants: GrantTable,
    /// The connection the hypervisor made for the guest at spawn.
    pub(super) guest_conn: Option<ConnId>,
    /// Whether it was ever unpaused: a guest stopped before its exec since
    /// creation cannot have started other processes.
    ran: bool,
}

impl Domain {
    /// Dom0: the hypervisor's own clients, always running.
    pub(super) fn dom0() -> Domain {
        Domain {
            name: "Domain-0".to_owned(),
            state: DomainState::Running,
            process: None,
            pid: None,
            store_page: None,
            store_port: 0,
            ports: PortTable::default(),
            grants: GrantTable::default(),
            guest_conn: None,
            ran: true,
        }
    }

    /// What listing says of it, as domain `domid`.
    fn info(&self, domid: DomId) -> DomainInfo {
        DomainInfo { domid, name: self.name.clone(), state: self.state, pid: self.process.as_ref().and(self.pid) }
    }

    /// Sends `signal` to the guest's process, if it still has one.
    fn signal(&self, signal: Signal) -> Result<(), (Errno, &'static str)> {
        match &self.process {
            Some(pidfd) => pidfd_send_signal(pidfd, signal).map_err(|e| (e, "signalling the guest")),
            None => Ok(()),
        }
    }
}

impl State {
    /// XEN_DOMCTL_createdomain plus the toolstack's build: a domain with a
    /// store page and a store port for dom0, its program started paused.
    pub(super) fn create(&mut self, config: &DomainConfig) -> Answer {
        // Names are unique among live domains, as with xl; checked here so
        // that a toolstack need not list every domain to create one.
        if self.names.contains(&config.name) {
            return Err((Errno::EXIST, "a domain with this name exists"));
        }
        let domid = self.alloc_domid().ok_or((Errno::NOSPC, "out of domids"))?;
        let mut domain = Domain::dom0();
        domain.name.clone_from(&config.name);
        domain.state = DomainState::Paused;
        domain.ran = false;
        domain.store_page = Some(memfd("xsim-store", 1)?);
        self.names.insert(config.name.clone());
        self.domains.insert(domid, domain);
        let built = self.build(domid, config);
        if built.is_err() {
            self.remove_domain(domid);
        }
        built
    }

    /// The part of [`State::create`] after the domain exists.
    fn build(&mut self, domid: DomId, config: &DomainConfig) -> Answer {
        let store_port = self.offer_port(domid, 0, None)?;
        let log = self.console_dir.join(format!("{domid}.log"));
        let uid = self.guest_uid(domid);
        let confinement = self.confinement;
        let spawned = if config.netns || config.fuse {
            // Rare (root only, a few domains): forked from the loop, with
            // the namespaces' descriptors handed over.
            let spawn = |handed| spawn_paused(config, domid, &log, &confinement, uid, handed);
            let owner = uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
            super::namespaces::in_new_namespaces(domid, owner, config.netns, config.fuse, spawn).inspect_err(|e| {
                eprintln!("xsim hypervisor: domain {domid}'s namespaces: {e}");
            })
        } else {
            self.spawner.spawn(config, domid, log, confinement, uid)
        };
        let Spawned { pidfd, socket, pid } =
            spawned.map_err(|e| (Errno::from_io_error(&e).unwrap_or(Errno::INVAL), "starting the guest program"))?;
        let token = epoll::EventData::new_u64(KIND_CHILD | u64::from(domid));
        let watched = epoll::add(&self.epoll, &pidfd, token, epoll::EventFlags::IN);
        let domain = self.domains.get_mut(&domid).ok_or((Errno::SRCH, "domain vanished"))?;
        // Held by the domain from here on, so a failure below kills it.
        domain.process = Some(pidfd);
        domain.pid = Some(pid);
        domain.store_port = store_port;
        watched.map_err(|e| (e, "watching the guest"))?;
        let conn = self.add_conn(socket, domid).map_err(|_| (Errno::NOMEM, "registering the guest"))?;
        if let Some(domain) = self.domains.get_mut(&domid) {
            domain.guest_conn = Some(conn);
        }
        Ok((Response::Created { domain: NewDomain { domid, store_gfn: STORE_GFN, store_port } }, Vec::new()))
    }

    /// The uid guest `domid` runs as, under a uid per guest.
    fn guest_uid(&self, domid: DomId) -> Option<u32> {
        self.uids.as_ref().map(|uids| uids.uid(domid))
    }

    /// The next free domid after the last one given, wrapping below
    /// DOMID_FIRST_RESERVED.
    fn alloc_domid(&mut self) -> Option<DomId> {
        for _ in 1..DOMID_FIRST_RESERVED {
            let candidate = self.next_domid;
            self.next_domid = if candidate + 1 >= DOMID_FIRST_RESERVED { 1 } else { candidate + 1 };
            if !self.domains.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// The guest domain `domid` (not dom0).
    fn guest(&mut self, domid: DomId) -> Result<&mut Domain, (Errno, &'static str)> {
        if domid == 0 {
            return Err((Errno::INVAL, "not on dom0"));
        }
        self.domains.get_mut(&domid).ok_or((Errno::SRCH, "no such domain"))
    }

    /// XEN_DOMCTL_unpausedomain. Unpausing a running domain does nothing.
    pub(super) fn unpause(&mut self, domid: DomId) -> Answer {
        let domain = self.guest(domid)?;
        match domain.state {
            DomainState::Paused => {
                domain.signal(Signal::CONT)?;
                domain.state = DomainState::Running;
                domain.ran = true;
                done()
            }
            DomainState::Running => done(),
            _ => Err((Errno::INVAL, "domain is shut down")),
        }
    }

    /// XEN_DOMCTL_pausedomain. Pausing a paused domain does nothing.
    pub(super) fn pause(&mut self, domid: DomId) -> Answer {
        let domain = self.guest(domid)?;
        match domain.state {
            DomainState::Running => {
                domain.signal(Signal::STOP)?;
                domain.state = DomainState::Paused;
                done()
            }
            DomainState::Paused => done(),
            _ => Err((Errno::INVAL, "domain is shut down")),
        }
    }

    /// Shuts a domain down for `reason`: its process is killed, it stays
    /// listed until destroyed.
    pub(super) fn shutdown(&mut self, domid: DomId, reason: ShutdownReason) -> Answer {
        let domain = self.guest(domid)?;
        // Dead already (ESRCH) is as good as killed.
        let _ = domain.signal(Signal::KILL);
        self.mark_shutdown(domid, reason);
        done()
    }

    /// Records the first shutdown of a domain and raises VIRQ_DOM_EXC.
    pub(super) fn mark_shutdown(&mut self, domid: DomId, reason: ShutdownReason) {
        if let Some(domain) = self.domains.get_mut(&domid) {
            if !domain.state.is_shutdown_or_dying() {
                domain.state = DomainState::Shutdown(reason);
                self.changes.record(domid, false);
                self.fire_dom_exc();
            }
        }
    }

    /// A guest's pidfd polled readable: reap it; a guest that ended on
    /// its own powered off (exit 0) or crashed (anything else), unless it
    /// said otherwise first.
    pub(super) fn child_exited(&mut self, domid: DomId) {
        let Some(domain) = self.domains.get_mut(&domid) else { return };
        let Some(pidfd) = &domain.process else { return };
        let status = match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
            Ok(Some(status)) => status,
            Ok(None) | Err(Errno::INTR) => return,
            // ECHILD: someone else reaped it; it is gone all the same.
            Err(_) => return self.process_gone(domid, ShutdownReason::Crash),
        };
        let reason = if status.exit_status() == Some(0) { ShutdownReason::Poweroff } else { ShutdownReason::Crash };
        self.process_gone(domid, reason);
    }

    /// Forgets a reaped process and marks the domain shut down.
    fn process_gone(&mut self, domid: DomId, reason: ShutdownReason) {
        if let Some(pidfd) = self.domains.get_mut(&domid).and_then(|d| d.process.take()) {
            let _ = epoll::delete(&self.epoll, &pidfd);
        }
        self.mark_shutdown(domid, reason);
    }

    /// XEN_DOMCTL_destroydomain: kills and reaps the process, frees the
    /// domain's ports, pages and grants, raises VIRQ_DOM_EXC.
    pub(super) fn destroy(&mut self, domid: DomId) -> Answer {
        self.guest(domid)?;
        self.remove_domain(domid);
        self.changes.record(domid, true);
        self.fire_dom_exc();
        done()
    }

    /// Tears a domain down without telling anyone: its process, every
    /// process left of its user (under a uid per guest), its ports, and
    /// every connection that speaks for it (those its processes opened
    /// with `OwnConnection` too, or a leftover process could act for the
    /// next domain given this id).
    fn remove_domain(&mut self, domid: DomId) {
        let Some(domain) = self.domains.get_mut(&domid) else { return };
        domain.state = DomainState::Dying;
        if let Some(pidfd) = domain.process.take() {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = epoll::delete(&self.epoll, &pidfd);
            // SIGKILL cannot be caught: this wait is short.
            while let Err(Errno::INTR) = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {}
        }
        // Killing what is left walks every process of the machine (and
        // forks a copy of this process): only for a guest that ran, since
        // one stopped before its exec has started nothing.
        let ran = domain.ran;
        if let Some(uid) = self.guest_uid(domid).filter(|_| ran) {
            if let Err(e) = kill_all_of(uid) {
                eprintln!("xsim hypervisor: cannot kill what is left of domain {domid}'s processes: {e}");
            }
        }
        let Some(domain) = self.domains.get_mut(&domid) else { return };
        let ports: Vec<crate::Port> = domain.ports.iter().map(|(port, _)| port).collect();
        domain.guest_conn = None;
        for port in ports {
            self.close_port(domid, port);
        }
        if let Some(domain) = self.domains.remove(&domid) {
            self.names.remove(&domain.name);
        }
        self.shares.domain_gone(domid);
        for conn in self.conns_of.remove(&domid).unwrap_or_default() {
            self.close_conn(conn);
        }
    }

    /// Destroys every guest (the hypervisor is going away).
    pub(super) fn destroy_all(&mut self) {
        let guests: Vec<DomId> = self.domains.keys().copied().filter(|&domid| domid != 0).collect();
        for domid in guests {
            self.remove_domain(domid);
            self.changes.record(domid, true);
        }
        if !self.domains.is_empty() {
            self.fire_dom_exc();
        }
    }

    /// XEN_SYSCTL_getdomaininfolist: every domain, dom0 first.
    pub(super) fn list(&mut self) -> Answer {
        let domains = self.domains.iter().map(|(&domid, domain)| domain.info(domid)).collect();
        Ok((Response::Domains { domains }, Vec::new()))
    }

    /// XEN_DOMCTL_getdomaininfo: one domain, if it exists.
    pub(super) fn info(&mut self, domid: DomId) -> Answer {
        let domain = self.domains.get(&domid).map(|domain| domain.info(domid));
        Ok((Response::Info { domain }, Vec::new()))
    }

    /// XEN_DOMCTL_get_domain_state's changed-domain query for connection
    /// `conn`: what changed since it last asked; every domain (as
    /// [`State::list`]) when `fresh` or on its first question, tracking
    /// from then on.
    pub(super) fn changed_domains(&mut self, conn: ConnId, fresh: bool) -> Answer {
        let changed = match self.changes.take(conn) {
            Some(changed) if !fresh => changed,
            _ => {
                self.changes.subscribe(conn);
                return self.list();
            }
        };
        let changes = DomainChanges::list_changed(changed, |domid| self.domains.get(&domid).map(|d| d.state));
        Ok((Response::Changed { changes }, Vec::new()))
    }
}
