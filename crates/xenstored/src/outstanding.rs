//! The `outstanding` quota (C's `quota_req_outstanding`, 20; XSA-326): a
//! guest may have at most that many requests answered but not yet handed
//! to it. Past it, its ring is not read until it takes its replies.
//!
//! Requests are answered as soon as they are read, so "outstanding" here
//! is the replies waiting in the connection's outbox: a guest that keeps
//! writing requests without reading what comes back stops being read
//! after the quota, rather than after the byte bound of [`crate::outbox`]
//! (which small replies take long to reach). A turn reads at most as
//! many requests as there is room for.

use xenstore_db::{ConnId, QuotaKind};

use crate::conn::Transport;
use crate::server::Server;

impl Server {
    /// How many more requests ring `id` may have answered before its
    /// guest takes its replies: unbounded for dom0, sockets, and a quota
    /// of 0.
    pub(crate) fn outstanding_room(&self, id: ConnId) -> usize {
        let Some(caller) = self.engine.caller(id).filter(|c| !c.privileged) else { return usize::MAX };
        let Some(conn) = self.conns.get(&id).filter(|c| matches!(c.transport, Transport::Ring(_))) else {
            return usize::MAX;
        };
        match self.engine.quotas_of(caller.domid).get(QuotaKind::Outstanding) as usize {
            0 => usize::MAX,
            quota => quota.saturating_sub(conn.outbox.queued_replies()),
        }
    }
}
