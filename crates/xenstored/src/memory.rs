//! The `memory` quota's daemon half: a domain whose store memory plus the
//! output queued for it reaches its quota is not read until it falls
//! below (the C daemon's `domain_can_read`, "Xenstore interface to domain
//! stalled").
//!
//! The engine refuses a request that would take a domain over its quota
//! (ENOMEM); what the daemon queues for the domain (replies, events) is
//! not the engine's to see, so this rule covers it: the guest's next
//! request waits instead of being refused, and its replies drain the
//! queue. A stalled ring is rechecked at every loop iteration (only the
//! stalled ones, few and usually none), since what frees its memory may be
//! another connection's request (dom0 removing its nodes).
//!
//! Logging: one line when a domain stalls and one when it recovers, and
//! not more often than once per [`LOG_INTERVAL`] per domain, however
//! often it comes and goes.

use std::time::{Duration, Instant};

use tracing::{info, warn};
use xenstore_db::{ConnId, QuotaKind};

use crate::conn::Transport;
use crate::server::Server;

/// Least time between two stall or recovery lines for one connection.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A connection's state under the rule.
#[derive(Debug, Default)]
pub(crate) struct MemoryStall {
    /// Reading is stalled for the quota.
    pub(crate) stalled: bool,
    /// When a line was last written for it.
    logged: Option<Instant>,
    /// Whether the last line written said "stalled".
    logged_stalled: bool,
}

impl Server {
    /// Bytes held for the domain behind ring `id`, and its quota, when
    /// the rule applies to it (an unprivileged domain's ring, a quota set).
    fn memory_use(&self, id: ConnId) -> Option<(usize, usize)> {
        let caller = self.engine.caller(id).filter(|c| !c.privileged)?;
        let conn = self.conns.get(&id)?;
        if !matches!(conn.transport, Transport::Ring(_)) {
            return None;
        }
        let limit = self.engine.quotas_of(caller.domid).get(QuotaKind::Memory) as usize;
        (limit != 0).then(|| (self.engine.memory(caller.domid) + conn.outbox.queued_bytes(), limit))
    }

    /// Whether ring `id` may be read now under the rule; updates its
    /// stall state and logs a change (rate-limited).
    pub(crate) fn memory_allows_reading(&mut self, id: ConnId) -> bool {
        let over = self.memory_use(id).is_some_and(|(used, limit)| used >= limit);
        let domid = self.engine.caller(id).map_or(0, |c| c.domid);
        let Some(conn) = self.conns.get_mut(&id) else { return true };
        let state = &mut conn.memory;
        if state.stalled != over {
            state.stalled = over;
            let now = Instant::now();
            let quiet = state.logged.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL);
            if !quiet && state.logged_stalled != over {
                state.logged = Some(now);
                state.logged_stalled = over;
                if over {
                    warn!(domid, conn = id, "domain exceeds its memory quota: its ring is not read until it falls");
                } else {
                    info!(domid, conn = id, "domain below its memory quota again: its ring is read");
                }
            }
            if over {
                self.stalled.insert(id);
            } else {
                self.stalled.remove(&id);
            }
        }
        !over
    }

    /// Whether an event of `len` bytes for ring `id` would take its
    /// domain over the quota: then it is dropped (counted with the
    /// connection's other dropped events), as the C daemon's
    /// `domain_memory_add_chk` on a watch event. Events for a guest are
    /// caused by others, so its memory bounds them, not only time.
    pub(crate) fn memory_refuses_event(&mut self, id: ConnId, len: usize) -> bool {
        let over = self.memory_use(id).is_some_and(|(used, limit)| used + len > limit);
        if over {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.outbox.count_dropped();
            }
        }
        over
    }

    /// Serves again the stalled rings whose memory has fallen.
    pub(crate) fn recheck_stalled(&mut self) {
        if self.stalled.is_empty() {
            return;
        }
        let ids: Vec<ConnId> = self.stalled.iter().copied().collect();
        for id in ids {
            if !self.conns.contains_key(&id) {
                self.stalled.remove(&id);
            } else if self.memory_allows_reading(id) {
                self.again.push(id);
            }
        }
    }
}
