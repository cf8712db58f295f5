//! Quota charging: every check of a request against a quota is in this
//! file, so each quota kind's charging is found here. The kinds, their
//! values and errors are [`crate::quota`]'s; GET_QUOTA and SET_QUOTA are
//! `quota_requests.rs`'s. `xenstore.txt` leaves quotas to the
//! implementation; these are the C daemon's. Privileged callers are never
//! charged.
//!
//! | quota | charged by | amount |
//! |---|---|---|
//! | `nodes` | WRITE, MKDIR creating nodes | nodes the domain owns (in a transaction, plus its net change) plus those created |
//! | `node-size` | WRITE | the value's charged size ([`Node::charged_size`]) |
//! | `permissions` | SET_PERMS, on nodes and on special paths | entries in the list |
//! | `path-max` | every request naming a path | the path's length below the domain's home |
//! | `watches` | WATCH | the connection's watches, plus the new one |
//! | `transactions` | TRANSACTION_START | the connection's open transactions, plus the new one |
//! | `transaction-nodes` | every node a transaction looks at | nodes it has looked at; the limit is set at TRANSACTION_START, enforced by `tx.rs` |
//! | `outstanding` | (the daemon, per connection) | requests in flight |
//!
//! Two hard limits apply to every caller, privileged ones included, and
//! are charged here with their quotas: open transactions per connection
//! ([`crate::Config::max_transactions_per_conn`]) and nodes per
//! transaction ([`crate::Config::max_transaction_nodes`]).

use xenstore_wire::{path, ErrorCode, PermList};

use crate::ctx::Ctx;
use crate::node::Node;
use crate::permissions::Caller;
use crate::quota::{QuotaExceeded, QuotaKind, Quotas};
use crate::{ConnId, Engine};

/// What `kind` would be exceeded by, if `amount` exceeds its quota for an
/// unprivileged caller.
fn check(caller: Caller, quotas: &Quotas, kind: QuotaKind, amount: usize) -> Result<(), QuotaExceeded> {
    if !caller.privileged && quotas.exceeded(kind, amount) {
        return Err(QuotaExceeded { kind, domid: caller.domid, limit: quotas.get(kind) });
    }
    Ok(())
}

/// The `nodes` count inside a transaction: the nodes the domain owns in
/// the live store plus the transaction's net change (never below 0).
pub(crate) fn owned_in_tx(owned: usize, node_delta: i64) -> usize {
    let owned_in_tx = i64::try_from(owned).unwrap_or(i64::MAX).saturating_add(node_delta);
    usize::try_from(owned_in_tx).unwrap_or(0)
}

impl Ctx<'_> {
    fn hit(&self, kind: QuotaKind) -> QuotaExceeded {
        QuotaExceeded { kind, domid: self.caller.domid, limit: self.quotas.get(kind) }
    }

    /// Fails with the quota's error if `amount` exceeds it for an
    /// unprivileged caller, and records which quota it was.
    fn charge(&mut self, kind: QuotaKind, amount: usize) -> Result<(), ErrorCode> {
        if let Err(hit) = check(self.caller, &self.quotas, kind, amount) {
            self.quota_hit = Some(hit);
            return Err(kind.error());
        }
        Ok(())
    }

    /// `node-size`: WRITE of `value`.
    pub(crate) fn charge_node_size(&mut self, value: &[u8]) -> Result<(), ErrorCode> {
        self.charge(QuotaKind::NodeSize, Node::charged_size(value))
    }

    /// `nodes`: creating `created` nodes owned by the caller's domain.
    pub(crate) fn charge_nodes(&mut self, created: usize) -> Result<(), ErrorCode> {
        self.charge(QuotaKind::Nodes, self.owned_now + created)
    }

    /// `permissions`: SET_PERMS on a node with `perms`.
    pub(crate) fn charge_permissions(&mut self, perms: &PermList) -> Result<(), ErrorCode> {
        self.charge(QuotaKind::Permissions, perms.entries().len())
    }

    /// `transaction-nodes`: `result` is a transaction's record of a node
    /// it looked at, which fails when the transaction has looked at too
    /// many; names the quota if so.
    pub(crate) fn note_tx_quota(&mut self, result: Result<(), ErrorCode>) -> Result<(), ErrorCode> {
        if result.is_err() {
            self.quota_hit = Some(self.hit(QuotaKind::TransactionNodes));
        }
        result
    }
}

impl Engine {
    /// `path-max`: a request path, made absolute. Measured below the
    /// caller's home when it is there, whole otherwise; special paths are
    /// not charged.
    pub(crate) fn charge_path_length(&self, caller: Caller, canonical: &str) -> Result<(), QuotaExceeded> {
        if !caller.privileged && !canonical.starts_with('@') {
            let quotas = self.quotas_of(caller.domid);
            let home = path::domain_home(caller.domid);
            let measured = match canonical.strip_prefix(home.as_str()) {
                Some(rest) if rest.starts_with('/') => rest.len() - 1,
                _ => canonical.len(),
            };
            check(caller, &quotas, QuotaKind::PathLength, measured)?;
        }
        Ok(())
    }

    /// `watches`: WATCH on `conn`.
    pub(crate) fn charge_watch(&self, conn: ConnId, caller: Caller) -> Result<(), QuotaExceeded> {
        let count = self.conns.get(&conn).map_or(0, |c| c.watches.len());
        check(caller, &self.quotas_of(caller.domid), QuotaKind::Watches, count + 1)
    }

    /// `transactions`, and the hard limit on open transactions per
    /// connection (reported as the same quota, with the hard limit):
    /// TRANSACTION_START on `conn`.
    pub(crate) fn charge_transaction(&self, conn: ConnId, caller: Caller) -> Result<(), QuotaExceeded> {
        let quotas = self.quotas_of(caller.domid);
        let open = self.conns.get(&conn).map_or(0, |c| c.txs.len());
        let over_quota = !caller.privileged && quotas.exceeded(QuotaKind::Transactions, open + 1);
        if over_quota || open >= self.config.max_transactions_per_conn as usize {
            let limit =
                if over_quota { quotas.get(QuotaKind::Transactions) } else { self.config.max_transactions_per_conn };
            return Err(QuotaExceeded { kind: QuotaKind::Transactions, domid: caller.domid, limit });
        }
        Ok(())
    }

    /// `transaction-nodes`, and the hard limit on nodes per transaction:
    /// the limit a new transaction gets (0: none), the smaller of the two.
    pub(crate) fn transaction_node_limit(&self, caller: Caller) -> u32 {
        let hard = self.config.max_transaction_nodes;
        let quota = if caller.privileged { 0 } else { self.quotas_of(caller.domid).get(QuotaKind::TransactionNodes) };
        match (quota, hard) {
            (0, h) => h,
            (q, 0) => q,
            (q, h) => q.min(h),
        }
    }

    /// `permissions`: SET_PERMS on a special path with `perms`.
    pub(crate) fn charge_special_perms(&self, caller: Caller, perms: &PermList) -> Result<(), QuotaExceeded> {
        check(caller, &self.quotas_of(caller.domid), QuotaKind::Permissions, perms.entries().len())
    }
}
