//! The event loop's side of domain rings: INTRODUCE and RELEASE, serving
//! pending rings, flushing their output, and domain deaths.

use tracing::{debug, info, warn};
use xen_platform::DomainState;
use xenstore_db::{Caller, ConnId, Outcome};
use xenstore_ring::{Incoming, ERROR_COMM, ERROR_RINGIDX};
use xenstore_wire::{ErrorCode, Request};

use crate::outbox::Outbox;
use crate::rings::{DomainRing, RingSink};
use crate::server::Server;

/// Requests served from one ring per wake-up before the others get a turn.
const RING_BUDGET: usize = 64;

impl Server {
    /// A domain's ring connection, if `conn` is one.
    pub(crate) fn ring_mut(&mut self, conn: ConnId) -> Option<&mut DomainRing> {
        self.rings.as_mut()?.by_conn.get_mut(&conn)
    }

    /// INTRODUCE: map the page and bind the channel, then let the engine
    /// record the domain (and fire `@introduceDomain`). Returns the
    /// outcome and, when a ring was attached, its connection.
    pub(crate) fn introduce(&mut self, id: ConnId, tx_id: u32, request: &Request<'_>) -> (Outcome, Option<ConnId>) {
        let Request::Introduce { domid, gfn, port } = *request else {
            return (Outcome::error(ErrorCode::EINVAL), None);
        };
        let privileged = self.engine.caller(id).is_some_and(|c| c.privileged);
        let Some(rings) = self.rings.as_mut() else {
            // No platform: the store side only.
            return (self.engine.handle(id, tx_id, request), None);
        };
        if !privileged || domid == 0 || self.engine.introduced(domid).is_some() {
            // The engine answers: EACCES, EINVAL, or OK for a repeat.
            return (self.engine.handle(id, tx_id, request), None);
        }
        let ring = match rings.attach(domid, gfn, port) {
            Ok(ring) => ring,
            Err(e) => {
                warn!(domid, gfn, port, "INTRODUCE: cannot map the ring or bind the channel: {e}");
                return (Outcome::error(ErrorCode::EINVAL), None);
            }
        };
        let outcome = self.engine.handle(id, tx_id, request);
        let Some(rings) = self.rings.as_mut() else { return (outcome, None) };
        if outcome.reply.is_err() {
            let _ = rings.platform.events.unbind(ring.port);
            return (outcome, None);
        }
        let mut ring = ring;
        ring.server.set_features(self.engine.domain_features(domid));
        let conn = self.engine.connect(Caller { domid, privileged: false });
        info!(domid, conn, port = ring.port, "domain introduced");
        rings.insert(conn, ring);
        (outcome, Some(conn))
    }

    /// Stops serving a domain's ring and forgets its connection (RELEASE,
    /// or the domain is gone).
    pub(crate) fn detach_ring(&mut self, domid: u16) {
        let Some(conn) = self.rings.as_mut().and_then(|r| r.remove_domain(domid)) else { return };
        self.engine.disconnect(conn);
        self.dirty.remove(&conn);
        debug!(domid, conn, "ring released");
    }

    /// The event-channel handle is readable: serve each pending port.
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
            let virq = rings.virq_port;
            let mut exception = false;
            let conns: Vec<ConnId> = pending
                .iter()
                .filter_map(|p| {
                    if *p == virq {
                        exception = true;
                    }
                    rings.by_port.get(p).copied()
                })
                .collect();
            rings.pending = pending;
            for conn in conns {
                self.serve_ring(conn);
            }
            if exception {
                self.domain_exceptions();
            }
        }
    }

    /// Serves rings that used up their budget last time.
    pub(crate) fn serve_more_rings(&mut self) {
        let Some(rings) = self.rings.as_mut() else { return };
        for conn in std::mem::take(&mut rings.more) {
            self.serve_ring(conn);
        }
    }

    /// Handles what a ring holds, up to [`RING_BUDGET`] requests.
    pub(crate) fn serve_ring(&mut self, conn: ConnId) {
        for _ in 0..RING_BUDGET {
            let pause_above = self.limits.pause_reading_above;
            let Some(ring) = self.ring_mut(conn) else { return };
            if ring.paused {
                break;
            }
            let domid = ring.domid;
            match ring.server.poll() {
                Ok(Some(Incoming::Packet(packet))) => {
                    self.handle(conn, packet);
                    let Some(ring) = self.ring_mut(conn) else { return };
                    if ring.outbox.queued_bytes() > pause_above {
                        ring.paused = true;
                        break;
                    }
                }
                Ok(Some(Incoming::Reconnected)) => {
                    info!(domid, conn, "ring reconnected: watches and transactions dropped");
                    ring.outbox = Outbox::default();
                    ring.stopped = false;
                    ring.paused = false;
                    self.engine.reset(conn);
                }
                Ok(None) => {
                    self.dirty.insert(conn);
                    return;
                }
                Err(e) => {
                    if !ring.stopped {
                        self.stop_ring(conn, &e.to_string());
                    }
                    // The error indicator's notification goes out at the flush.
                    self.dirty.insert(conn);
                    return;
                }
            }
        }
        // Budget used up (or paused): the others get their turn first.
        self.dirty.insert(conn);
        if let Some(rings) = self.rings.as_mut() {
            if rings.by_conn.get(&conn).is_some_and(|r| !r.paused) {
                rings.more.push(conn);
            }
        }
    }

    /// The ring's error indicator is set (by the ring layer, or here):
    /// nothing more is served on it until the guest reconnects; its
    /// watches and transactions are gone.
    fn stop_ring(&mut self, conn: ConnId, why: &str) {
        let Some(domid) = self.ring_mut(conn).map(|r| r.domid) else { return };
        warn!(domid, conn, "ring stopped: {why}");
        self.trace.note(&format!("conn {conn} (domain {domid}) ring stopped: {why}"));
        let Some(ring) = self.ring_mut(conn) else { return };
        ring.stopped = true;
        ring.outbox = Outbox::default();
        self.engine.reset(conn);
    }

    /// Writes a ring's queued output as space allows, then sends the
    /// guest the one notification this iteration owes it.
    pub(crate) fn flush_ring(&mut self, conn: ConnId) {
        self.write_ring(conn);
        let Some(ring) = self.ring_mut(conn) else { return };
        ring.kick();
        if ring.channel_broken() && !ring.stopped {
            ring.server.set_error(ERROR_COMM);
            self.stop_ring(conn, "the event channel is broken");
            // The error indicator is set; try to tell the guest anyway.
            if let Some(ring) = self.ring_mut(conn) {
                ring.kick();
            }
        }
    }

    fn write_ring(&mut self, conn: ConnId) {
        let resume_below = self.limits.pause_reading_above / 2;
        let Some(ring) = self.ring_mut(conn) else { return };
        if ring.stopped {
            return;
        }
        let result = ring.outbox.flush_to(&mut RingSink(&mut ring.server));
        let (dropped, _) = ring.outbox.take_counters();
        if dropped > 0 {
            warn!(domid = ring.domid, dropped, "domain is not reading: oldest queued watch events dropped");
        }
        if let Err(e) = result {
            ring.server.set_error(ERROR_RINGIDX);
            self.stop_ring(conn, &format!("writing the response queue: {e}"));
            return;
        }
        if ring.paused && ring.outbox.queued_bytes() <= resume_below {
            ring.paused = false;
            if let Some(rings) = self.rings.as_mut() {
                rings.more.push(conn);
            }
        }
    }

    /// VIRQ_DOM_EXC: some domain shut down or went away. Fire
    /// `@releaseDomain` for introduced domains that shut down; remove
    /// those that are gone (connection, watches, transactions, nodes).
    pub(crate) fn domain_exceptions(&mut self) {
        let Some(rings) = self.rings.as_mut() else { return };
        let list = match rings.platform.domains.states() {
            Ok(list) => list,
            Err(e) => {
                warn!("VIRQ_DOM_EXC: cannot list domains: {e}");
                return;
            }
        };
        let states: std::collections::HashMap<u16, DomainState> = list.into_iter().collect();
        let mut introduced: Vec<u16> = rings.by_domid.keys().copied().collect();
        introduced.sort_unstable();
        for domid in introduced {
            let deliveries = match states.get(&domid) {
                None | Some(DomainState::Dying) => {
                    info!(domid, "domain gone: removing its connection and nodes");
                    self.detach_ring(domid);
                    self.engine.remove_domain(domid)
                }
                Some(DomainState::Shutdown(reason)) => {
                    let deliveries = self.engine.domain_shutdown(domid);
                    if !deliveries.is_empty() {
                        info!(domid, reason = reason.name(), "domain shut down");
                    }
                    deliveries
                }
                Some(_) => Vec::new(),
            };
            for delivery in deliveries {
                self.deliver(delivery);
            }
        }
    }
}
