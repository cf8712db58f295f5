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
//! | `memory` | WRITE, MKDIR, SET_PERMS, RM in a transaction, every node a transaction looks at, WATCH, TRANSACTION_START | bytes the domain makes the store hold (`memory.rs`); the daemon also stops reading a ring above it |
//!
//! Two hard limits apply to every caller, privileged ones included, and
//! are charged here with their quotas: open transactions per connection
//! ([`crate::Config::max_transactions_per_conn`]) and nodes per
//! transaction ([`crate::Config::max_transaction_nodes`]).

use xenstore_wire::{path, ErrorCode, PermList};

use crate::ctx::{Charge, Ctx, Store};
use crate::memory;
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

    /// `memory`: the caller's domain is to hold `bytes` more. Checked
    /// before anything changes, so a refused request leaves nothing.
    pub(crate) fn charge_memory(&mut self, bytes: usize) -> Result<(), ErrorCode> {
        if let Some(room) = self.memory_room {
            if bytes > room {
                self.quota_hit = Some(self.hit(QuotaKind::Memory));
                return Err(QuotaKind::Memory.error());
            }
            self.memory_room = Some(room - bytes);
        }
        Ok(())
    }

    /// `memory`: what changing a node from `old` to `new` costs the
    /// caller (plus, in a transaction, the change it will fire): on the
    /// live tree the growth of a node it owns; in a transaction its new
    /// copy, less the copy it replaces.
    pub(crate) fn charge_node(&mut self, p: &str, old: Option<Charge>, new: Option<Charge>) -> Result<(), ErrorCode> {
        let due = if matches!(self.store, Store::Live(_)) {
            let mine = |c: Option<Charge>| c.filter(|c| c.owner == self.caller.domid).map_or(0, |c| c.bytes);
            mine(new).saturating_sub(mine(old))
        } else {
            let replaced = if self.written_in_tx(p) { old.map_or(0, |c| c.bytes) } else { 0 };
            (new.map_or(0, |c| c.bytes) + memory::CHANGE).saturating_sub(replaced)
        };
        self.charge_memory(due)
    }

    /// `memory`: a transaction records a path it had not seen yet.
    pub(crate) fn charge_seen(&mut self, p: &str) -> Result<(), ErrorCode> {
        let new = match &self.store {
            Store::Tx(tx) => !tx.seen.contains_key(p),
            Store::Live(_) => false,
        };
        if new {
            let bytes = memory::seen(p);
            self.charge_memory(bytes)?;
            self.tx_memory += i64::try_from(bytes).unwrap_or(i64::MAX);
        }
        Ok(())
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

    /// `memory`: the room a request of `caller` has (`None`: unlimited,
    /// for a privileged caller or a quota of 0).
    pub(crate) fn memory_room(&self, caller: Caller) -> Option<usize> {
        let limit = self.quotas_of(caller.domid).get(QuotaKind::Memory);
        (!caller.privileged && limit != 0).then(|| (limit as usize).saturating_sub(self.memory(caller.domid)))
    }

    /// `memory`: `caller`'s domain is to hold `bytes` more (a watch, a
    /// transaction).
    pub(crate) fn charge_memory(&self, caller: Caller, bytes: usize) -> Result<(), QuotaExceeded> {
        match self.memory_room(caller) {
            Some(room) if bytes > room => Err(QuotaExceeded {
                kind: QuotaKind::Memory,
                domid: caller.domid,
                limit: self.quotas_of(caller.domid).get(QuotaKind::Memory),
            }),
            _ => Ok(()),
        }
    }

    /// `permissions`: SET_PERMS on a special path with `perms`.
    pub(crate) fn charge_special_perms(&self, caller: Caller, perms: &PermList) -> Result<(), QuotaExceeded> {
        check(caller, &self.quotas_of(caller.domid), QuotaKind::Permissions, perms.entries().len())
    }
}
