//! TRANSACTION_START and TRANSACTION_END: opening, validating and applying.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use xenstore_wire::{path, ErrorCode, Reply};

use crate::applied::Applied;
use crate::ctx::{Charge, Mutation};
use crate::event::Change;
use crate::memory;
use crate::node::Node;
use crate::permissions::Caller;
use crate::tx::Transaction;
use crate::{ConnId, Engine, Outcome};

impl Engine {
    /// TRANSACTION_START: O(1) whatever the store size.
    pub(crate) fn transaction_start(&mut self, conn: ConnId, caller: Caller, tx_id: u32) -> Outcome {
        if tx_id != 0 {
            return Outcome::error(ErrorCode::EBUSY);
        }
        if let Err(hit) = self.charge_transaction(conn, caller) {
            return Outcome { quota: Some(hit), ..Outcome::error(ErrorCode::ENOSPC) };
        }
        if let Err(hit) = self.charge_memory(caller, memory::TX) {
            return Outcome { quota: Some(hit), ..Outcome::error(ErrorCode::ENOMEM) };
        }
        let id = self.allocate_tx_id();
        let node_limit = self.transaction_node_limit(caller);
        let tx = Transaction::new(conn, &self.tree, node_limit);
        self.hold_memory(caller.domid, tx.memory);
        self.txs.insert(id, tx);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.txs.push(id);
        }
        Outcome::ok(Reply::TransactionStart(id))
    }

    /// Moves transaction `tx_id` of `conn` to the live store as it is
    /// now, if it has done nothing yet (seen, written and changed
    /// nothing): as if it had started now, which nothing in it can tell
    /// apart. The daemon's transaction gate starts a contended
    /// connection's transaction at once and holds its first request until
    /// its turn; this makes the turn, not the start, the transaction's
    /// point in time, so that it sees the commit it waited for. Returns
    /// whether it moved.
    pub fn restart_untouched_transaction(&mut self, conn: ConnId, tx_id: u32) -> bool {
        let Some(tx) = self.txs.get_mut(&tx_id) else { return false };
        let untouched = tx.seen.is_empty()
            && tx.written.is_empty()
            && tx.removed.is_empty()
            && tx.changes.is_empty()
            && tx.node_delta == 0
            && !tx.failed;
        if tx.conn != conn || !untouched {
            return false;
        }
        tx.base = self.tree.clone();
        tx.work = self.tree.clone();
        true
    }

    fn allocate_tx_id(&mut self) -> u32 {
        loop {
            let id = self.next_tx;
            self.next_tx = self.next_tx.wrapping_add(1);
            if id != 0 && !self.txs.contains_key(&id) {
                return id;
            }
        }
    }

    /// TRANSACTION_END: abort, or commit if nothing it depended on changed.
    pub(crate) fn transaction_end(&mut self, conn: ConnId, tx_id: u32, commit: bool) -> Outcome {
        match self.txs.get(&tx_id) {
            Some(tx) if tx.conn == conn => {}
            _ => return Outcome::error(ErrorCode::ENOENT),
        }
        let Some(tx) = self.txs.remove(&tx_id) else {
            return Outcome::error(ErrorCode::ENOENT);
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.txs.retain(|t| *t != tx_id);
        }
        if let Some(domid) = self.caller(conn).map(|c| c.domid) {
            self.release_memory(domid, tx.memory);
        }
        if !commit {
            return Outcome::ok(Reply::Ok);
        }
        if tx.failed {
            return Outcome::error(ErrorCode::ENOMEM);
        }
        if !tx.validate(&self.tree) {
            return Outcome::error(ErrorCode::EAGAIN);
        }
        let (changes, applied) = self.apply(tx);
        let events = self.route_all(&changes);
        Outcome { events, applied, ..Outcome::ok(Reply::Ok) }
    }

    /// Applies a validated transaction's writes to the live tree and returns
    /// its changes (watch events), recorded when they happened, and what it
    /// applied, in order.
    fn apply(&mut self, tx: Transaction) -> (Vec<Change>, Vec<Applied>) {
        let Transaction { work, written, removed, changes, base, seen, .. } = tx;
        // Release the snapshot first: while it shares the live tree's nodes,
        // every write below would copy its path instead of changing it in
        // place (a third of a commit's cost, measured).
        drop(base);
        drop(seen);
        // Domains named by new permissions must be known before the nodes
        // are stamped, or their entries would be judged stale.
        let named: BTreeSet<_> = written
            .iter()
            .filter_map(|p| work.get(p))
            .flat_map(|n| n.perms.entries().iter().map(|e| e.domid))
            .collect();
        for domid in named {
            self.ensure_domain(domid);
        }
        let mut mutations = Vec::new();
        let mut applied = Vec::new();
        let mut created: Vec<&Arc<str>> = Vec::new();
        // Removals first: names the transaction removed leave the live lists.
        // A node it removed and created again is removed here and created
        // below, so it takes the place the transaction gave it.
        for p in &written {
            let gone = work.get(p).is_none() || removed.contains(p);
            if gone && self.tree.get(p).is_some() {
                self.gen += 1;
                for (k, node) in self.tree.remove_subtree(p, self.gen) {
                    mutations.push(Mutation::removed(node.perms.owner(), memory::node_at(&k, &node)));
                }
                applied.push(Applied::Remove { path: p.clone() });
            }
        }
        for p in &written {
            let Some(new) = work.get(p) else { continue };
            match self.tree.get(p).cloned() {
                Some(old) => {
                    self.gen += 1;
                    let updated = old.with_meta(Some(new.value.clone()), new.perms.clone(), self.gen);
                    let before = Charge { owner: old.perms.owner(), bytes: memory::node_at(p, &old) };
                    let after = Charge { owner: updated.perms.owner(), bytes: memory::node_at(p, &updated) };
                    mutations.push(Mutation::changed(before, after));
                    self.tree.replace(p, updated);
                    let (value, perms) = (new.value.to_arc(), new.perms.clone());
                    applied.push(Applied::Write { path: p.clone(), value, perms });
                }
                None => created.push(p),
            }
        }
        // Creations parent first, and siblings in the order the transaction
        // created them (their order at the end of its own children list).
        created.sort_by_key(|p| p.bytes().filter(|b| *b == b'/').count());
        let mut by_parent: BTreeMap<&str, Vec<&Arc<str>>> = BTreeMap::new();
        let mut parents_in_order: Vec<&str> = Vec::new();
        for p in &created {
            let parent = path::parent(p).unwrap_or("/");
            if !by_parent.contains_key(parent) {
                parents_in_order.push(parent);
            }
            by_parent.entry(parent).or_default().push(p);
        }
        for parent in parents_in_order {
            let Some(kids) = by_parent.get(parent) else {
                continue;
            };
            let ordered = work.get(parent).map(|n| {
                let wanted: BTreeSet<&str> = kids.iter().map(|k| path::basename(k)).collect();
                let mut found: Vec<String> = n
                    .children
                    .iter()
                    .rev()
                    .filter(|c| wanted.contains(&***c))
                    .take(wanted.len())
                    .map(|c| path::join(parent, c))
                    .collect();
                found.reverse();
                found
            });
            for child in ordered.unwrap_or_default() {
                let Some(new) = work.get(&child) else {
                    continue;
                };
                self.gen += 1;
                let node = Node::new(&new.value, new.perms.clone(), self.gen);
                let owner = node.perms.owner();
                let bytes = memory::node_at(&child, &node);
                let (value, perms) = (node.value.to_arc(), node.perms.clone());
                let path = self.tree.create(&child, node, self.gen);
                applied.push(Applied::Write { path, value, perms });
                mutations.push(Mutation::created(owner, bytes));
            }
        }
        self.apply_mutations(mutations);
        (changes, applied)
    }
}
