//! Carrying out what the engine asks for outside the store, and telling it
//! what the platform reports: rings attached and detached, daemon-only
//! CONTROL commands, domains that shut down or died.

use std::collections::HashMap;

use tracing::{info, warn};
use xen_platform::{DomainChanges, DomainState};
use xenstore_db::{ConnId, Effect, Outcome};
use xenstore_wire::{DomId, Reply};

use crate::conn::{Connection, Transport};
use crate::server::Server;

impl Server {
    /// Carries out the outcome's effects in order. A ring that cannot be
    /// attached is reported to the engine, whose answer replaces the
    /// outcome (the INTRODUCE is rolled back). In place: an outcome is
    /// not small, and most have no effects.
    pub(crate) fn carry_out(&mut self, outcome: &mut Outcome) {
        for effect in std::mem::take(&mut outcome.effects) {
            match effect {
                Effect::AttachRing { domid, gfn, port, conn, features, .. } => {
                    if let Err(e) = self.attach_ring(domid, gfn, port, conn, features) {
                        warn!(domid, gfn, port, "INTRODUCE: cannot map the ring or bind the channel: {e}");
                        *outcome = self.engine.effect_failed(&effect);
                        return;
                    }
                }
                Effect::DetachRing { domid, conn } => self.detach_ring(domid, conn),
                Effect::Daemon(command) => outcome.reply = Ok(Reply::Text(self.daemon_command(command))),
                other => warn!("the engine asked for an effect this daemon does not know: {other:?}"),
            }
        }
    }

    /// Maps the domain's page, binds its channel, and serves the ring as
    /// connection `conn` (at once: the guest may have written requests
    /// before it was introduced).
    fn attach_ring(&mut self, domid: DomId, gfn: u64, port: u32, conn: ConnId, features: u32) -> std::io::Result<()> {
        let Some(rings) = self.rings.as_mut() else {
            warn!(domid, "no platform to serve domains: the domain is recorded but its ring is not served");
            return Ok(());
        };
        let ring = rings.attach(domid, gfn, port, conn, features)?;
        info!(domid, conn, port = ring.port, "domain introduced");
        self.write_rate.add(domid, std::time::Instant::now());
        self.conns.insert(conn, Connection::new(Transport::Ring(ring)));
        self.again.push(conn);
        Ok(())
    }

    /// After recovery (`--persist`): attaches the ring of every domain the
    /// recovered store says is introduced, as its INTRODUCE did, and sets
    /// its error indicator (`XENSTORE_ERROR_COMM`) with a notification:
    /// requests the guest had in flight when the daemon died may be lost,
    /// so its client reconnects (`XENSTORE_RECONNECT`), which clears the
    /// indicator. A ring that cannot be attached is logged; its domain is
    /// removed by [`Server::domain_exceptions`] if it is gone.
    pub(crate) fn reattach_recovered_rings(&mut self) {
        if self.persist.is_none() {
            return;
        }
        let Some(rings) = self.rings.as_mut() else { return };
        let states: HashMap<DomId, DomainState> = match rings.platform.domains.states() {
            Ok(states) => states.into_iter().collect(),
            Err(e) => {
                warn!("after recovery: cannot list domains: {e}");
                return;
            }
        };
        for (domid, ring, conn) in self.engine.introduced_rings() {
            if matches!(states.get(&domid), None | Some(DomainState::Dying)) {
                info!(domid, "domain gone while the daemon was down: removing its connection and nodes");
                let mut outcome = self.engine.remove_domain(domid);
                self.carry_out(&mut outcome);
                self.journal(&outcome.applied);
                // Its watchers' connections are gone with the old daemon.
                continue;
            }
            let features = self.engine.domain_features(domid);
            if self.conns.contains_key(&conn) {
                continue;
            }
            // The dead daemon's ports are released when the hypervisor
            // sees its connection close, which may be a moment after it
            // died: a few tries before giving up.
            let mut attached = self.attach_ring(domid, ring.gfn, ring.port, conn, features);
            for _ in 0..20 {
                if attached.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                attached = self.attach_ring(domid, ring.gfn, ring.port, conn, features);
            }
            match attached {
                Ok(()) => {
                    if let Some(Transport::Ring(r)) = self.conns.get_mut(&conn).map(|c| &mut c.transport) {
                        r.signal_restart();
                    }
                    info!(domid, conn, "recovered domain's ring attached; asked the guest to reconnect");
                }
                Err(e) => warn!(domid, "recovered domain's ring cannot be attached: {e}"),
            }
        }
        self.domain_exceptions();
    }

    /// Stops serving a domain's ring (the engine has forgotten `conn`).
    fn detach_ring(&mut self, domid: DomId, conn: ConnId) {
        if let Some(Connection { transport: Transport::Ring(ring), .. }) = self.conns.remove(&conn) {
            if let Some(rings) = self.rings.as_mut() {
                rings.detach(&ring);
            }
            info!(domid, conn, "ring released");
            self.write_rate.remove(domid);
        }
        self.departed.remove(&domid);
        self.dirty.remove(&conn);
        self.gate.forget(conn, std::time::Instant::now());
    }

    /// The event-channel handle is readable: serve each pending ring, and
    /// look at the domains if VIRQ_DOM_EXC fired.
    pub(crate) fn event_channels(&mut self) {
        loop {
            let Some(rings) = self.rings.as_mut() else { return };
            let mut pending = std::mem::take(&mut rings.pending);
            pending.clear();
            if let Err(e) = rings.platform.events.take_pending(&mut pending) {
                warn!("reading pending event channels: {e}");
            }
            if pending.is_empty() {
                rings.pending = pending;
                return;
            }
            // VIRQ_DOM_EXC's port, or one no ring has: after a live update
            // from the C daemon the virq's port is unknown (its stream
            // does not say, and binding it again fails while the handle
            // still has it), so a port nobody owns counts as the virq.
            let exception = pending.iter().any(|p| *p == rings.virq_port || !rings.by_port.contains_key(p));
            let conns: Vec<ConnId> = pending.iter().filter_map(|p| rings.by_port.get(p).copied()).collect();
            rings.pending = pending;
            for conn in conns {
                self.serve(conn);
            }
            if exception {
                self.domain_exceptions();
            }
        }
    }

    /// VIRQ_DOM_EXC: some domain shut down or went away. The engine fires
    /// `@releaseDomain` for introduced domains that shut down, and removes
    /// those that are gone (connection, watches, transactions, nodes).
    ///
    /// The platform is asked which domains changed since the last time
    /// (Xen 4.21's changed-domain query), so that this costs the domains
    /// that changed, not every domain; a platform that cannot say lists
    /// them all, and so does the first look after a start.
    pub(crate) fn domain_exceptions(&mut self) {
        let Some(rings) = self.rings.as_mut() else { return };
        let fresh = std::mem::take(&mut rings.fresh_look);
        let changes = match rings.platform.domains.changed_states(fresh) {
            Ok(changes) => changes,
            Err(e) => {
                warn!("VIRQ_DOM_EXC: cannot ask which domains changed: {e}");
                // The answer may have been taken and lost: look at every
                // domain next time.
                rings.fresh_look = true;
                return;
            }
        };
        match changes {
            DomainChanges::Everything(states) => self.every_domain_state(&states.into_iter().collect()),
            DomainChanges::Changed(changes) => {
                for (domid, state) in changes {
                    self.domain_changed(domid, state);
                }
            }
        }
    }

    /// Every domain's state (a full look): each domain the daemon knows is
    /// checked against it; one missing is gone.
    fn every_domain_state(&mut self, states: &HashMap<DomId, DomainState>) {
        let Some(rings) = self.rings.as_ref() else { return };
        let mut introduced: Vec<DomId> = rings.by_domid.keys().copied().collect();
        introduced.sort_unstable();
        for domid in introduced {
            self.domain_changed(domid, states.get(&domid).copied());
        }
        // Domains the store knew without an INTRODUCE (a permission entry
        // named them): forgotten once gone, or a new domain with the id
        // would inherit their grants (XSA-417).
        for domid in self.engine.unintroduced_domains() {
            if matches!(states.get(&domid), None | Some(DomainState::Dying)) {
                self.domain_changed(domid, None);
            }
        }
    }

    /// Domain `domid` is now in `state` (`None`: gone). An introduced
    /// domain that shut down fires `@releaseDomain` (once); one that is
    /// gone is removed; a domain the store knew without an INTRODUCE is
    /// forgotten once gone; anything else needs nothing.
    fn domain_changed(&mut self, domid: DomId, state: Option<DomainState>) {
        let introduced = self.rings.as_ref().is_some_and(|rings| rings.by_domid.contains_key(&domid));
        let mut outcome = match state {
            None | Some(DomainState::Dying) if introduced => {
                info!(domid, "domain gone: removing its connection and nodes");
                self.engine.remove_domain(domid)
            }
            None | Some(DomainState::Dying) => {
                // Nothing for a domain the store does not know, or one
                // introduced without a ring this daemon serves.
                let outcome = self.engine.forget_domain(domid);
                if !outcome.applied.is_empty() || !outcome.events.is_empty() {
                    info!(domid, "domain gone before it was introduced: forgetting it");
                }
                outcome
            }
            Some(DomainState::Shutdown(reason)) if introduced => {
                let outcome = self.engine.domain_shutdown(domid);
                if !outcome.events.is_empty() {
                    info!(domid, reason = reason.name(), "domain shut down");
                }
                outcome
            }
            Some(_) => return,
        };
        self.carry_out(&mut outcome);
        self.journal(&outcome.applied);
        let now = std::time::Instant::now();
        for delivery in outcome.events {
            self.deliver(delivery, now);
        }
    }
}
