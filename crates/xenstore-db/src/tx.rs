//! Transactions: snapshot isolation with per-node conflict detection.
//!
//! `TRANSACTION_START` clones the live tree (O(1): the tree is persistent)
//! into `base` and `work`. Operations in the transaction run against `work`
//! and record, for every node they look at, the generations that node had in
//! `base` (absent counts as a state): `meta` when they depended on its value,
//! permissions or existence, `list` when they depended on its children.
//!
//! **The conflict rule.** `TRANSACTION_END T` fails with `EAGAIN` exactly
//! when some recorded node's live generation differs from the one recorded,
//! i.e. a node the transaction read or wrote was changed by someone else
//! since the snapshot the transaction saw. Creating or removing a child
//! changes only the parent's `list` generation, so two transactions that
//! create different children of one directory do not conflict unless one of
//! them listed the directory. This is finer than both reference daemons
//! (which conflict on any change to a touched node, children lists included,
//! or, for oxenstored, on any commit at all without its replay).
//!
//! **Why it is safe.** At commit every recorded observation still holds in
//! the live store, so every value, permission, existence and children list
//! the transaction's requests saw is what the live store holds at the commit
//! point; the commit applies its writes atomically there. The transaction
//! is therefore equivalent to running all its requests at the commit point
//! (serializable). Writes always observe what they overwrite (the permission
//! check reads the node, or its nearest ancestor when creating), so two
//! transactions writing one node cannot both commit from the same snapshot.
//! A missing node's answer (ENOENT or EACCES) depends on every missing level
//! above it, so all of them are recorded, up to the nearest existing
//! ancestor. Applying merges children lists: names the transaction created
//! are appended to the live list in its order, names it removed are
//! dropped, and names others created meanwhile stay; a node it removed and
//! created again is a new node and goes where the transaction put it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use xenstore_wire::ErrorCode;

use crate::event::Change;
use crate::tree::Tree;
use crate::ConnId;

/// What a transaction saw of one node in its snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// `Some(meta_gen or None if absent)` once value/perms/existence mattered.
    pub meta: Option<Option<u64>>,
    /// `Some(list_gen or None if absent)` once the children list mattered.
    pub list: Option<Option<u64>>,
}

/// An open transaction.
#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    /// The connection that opened it.
    pub conn: ConnId,
    /// The live tree when it started.
    pub base: Tree,
    /// Its own view, `base` plus its writes.
    pub work: Tree,
    /// What it saw, per node.
    pub seen: BTreeMap<Arc<str>, Seen>,
    /// Nodes it wrote (created, changed or removed), first write first.
    pub written: Vec<Arc<str>>,
    /// Nodes it removed at some point: one it then created again is a new
    /// node (new place in its parent's list), not an update.
    pub removed: BTreeSet<Arc<str>>,
    /// Watch events to fire if it commits.
    pub changes: Vec<Change>,
    /// Net change of the caller's owned-node count.
    pub node_delta: i64,
    /// Limit on `seen.len()` (0: none).
    pub node_limit: u32,
    /// A quota refused a request inside it: its commit fails (`ENOMEM`,
    /// as C's `fail_transaction`) and applies nothing.
    pub failed: bool,
    /// Bytes it holds, charged to its connection's domain (`memory.rs`).
    pub memory: usize,
}

impl Transaction {
    /// A transaction over a snapshot of `live`.
    pub fn new(conn: ConnId, live: &Tree, node_limit: u32) -> Transaction {
        Transaction {
            conn,
            base: live.clone(),
            work: live.clone(),
            seen: BTreeMap::new(),
            written: Vec::new(),
            removed: BTreeSet::new(),
            changes: Vec::new(),
            node_delta: 0,
            node_limit,
            failed: false,
            memory: crate::memory::TX,
        }
    }

    fn entry(&mut self, path: &str) -> Result<&mut Seen, ErrorCode> {
        if !self.seen.contains_key(path) {
            if self.node_limit != 0 && self.seen.len() >= self.node_limit as usize {
                return Err(ErrorCode::ENOSPC);
            }
            self.seen.insert(Arc::from(path), Seen::default());
        }
        self.seen.get_mut(path).ok_or(ErrorCode::EIO)
    }

    /// Records that the request depended on the node's value, permissions
    /// or existence. `ENOSPC` when the transaction touches too many nodes.
    pub fn observe_meta(&mut self, path: &str) -> Result<(), ErrorCode> {
        let gen = self.base.get(path).map(|n| n.meta_gen());
        let seen = self.entry(path)?;
        seen.meta.get_or_insert(gen);
        Ok(())
    }

    /// Records that the request depended on the node's children list.
    pub fn observe_list(&mut self, path: &str) -> Result<(), ErrorCode> {
        let gen = self.base.get(path).map(|n| n.list_gen());
        let seen = self.entry(path)?;
        seen.list.get_or_insert(gen);
        Ok(())
    }

    /// Records a write of `path`.
    pub fn mark_written(&mut self, path: &Arc<str>) {
        // Linear in the write set, which is bounded by `node_limit`.
        if !self.written.iter().any(|p| p == path) {
            self.written.push(path.clone());
        }
    }

    /// Whether everything seen still holds in `live` (the conflict rule).
    pub fn validate(&self, live: &Tree) -> bool {
        self.seen.iter().all(|(path, seen)| {
            let node = live.get(path);
            let meta_ok = seen.meta.is_none_or(|gen| gen == node.map(|n| n.meta_gen()));
            let list_ok = seen.list.is_none_or(|gen| gen == node.map(|n| n.list_gen()));
            meta_ok && list_ok
        })
    }
}
