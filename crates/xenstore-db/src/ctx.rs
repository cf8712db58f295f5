//! The context a node operation runs in ([`Ctx`]): the caller, the tree
//! (live, or a transaction's view, [`Store`]) and what the operation
//! produces. The operations themselves are `node_ops.rs`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use xenstore_wire::{DomId, ErrorCode};

use crate::applied::Applied;
use crate::domain::Domain;
use crate::event::Change;
use crate::permissions::Caller;
use crate::quota::{QuotaExceeded, Quotas};
use crate::tree::Tree;
use crate::tx::Transaction;

/// A live node's charge to its owner: who owns it, and what it costs the
/// `memory` quota (`memory.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Charge {
    pub owner: DomId,
    pub bytes: usize,
}

/// A change to a live node's owner or cost, applied to the domains'
/// owned-node counts and memory once the change reaches the live tree:
/// `before` is released and `after` charged (no `before` for a node
/// created, no `after` for one removed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mutation {
    pub before: Option<Charge>,
    pub after: Option<Charge>,
}

impl Mutation {
    /// A node was created.
    pub(crate) fn created(owner: DomId, bytes: usize) -> Mutation {
        Mutation { before: None, after: Some(Charge { owner, bytes }) }
    }

    /// A node was removed.
    pub(crate) fn removed(owner: DomId, bytes: usize) -> Mutation {
        Mutation { before: Some(Charge { owner, bytes }), after: None }
    }

    /// A node's owner or cost changed.
    pub(crate) fn changed(before: Charge, after: Charge) -> Mutation {
        Mutation { before: Some(before), after: Some(after) }
    }
}

/// The tree a request runs against.
pub(crate) enum Store<'a> {
    /// The live store.
    Live(&'a mut Tree),
    /// A transaction's view (its `work` tree), with its records.
    Tx(&'a mut Transaction),
}

/// Everything one request against the tree needs.
pub(crate) struct Ctx<'a> {
    pub caller: Caller,
    pub target: Option<DomId>,
    pub quotas: Quotas,
    pub domains: &'a BTreeMap<DomId, Domain>,
    pub store: Store<'a>,
    pub gen: &'a mut u64,
    pub empty: Arc<[u8]>,
    /// Nodes the caller's domain owns now (plus the transaction's delta).
    pub owned_now: usize,
    /// Bytes the caller's domain may still make the store hold (`None`:
    /// no `memory` quota applies).
    pub memory_room: Option<usize>,
    /// What a transaction request added to (or, negative, freed from) the
    /// transaction's memory.
    pub tx_memory: i64,
    pub changes: Vec<Change>,
    pub mutations: Vec<Mutation>,
    pub quota_hit: Option<QuotaExceeded>,
    /// What it changed, for the outcome (dropped in a transaction).
    pub applied: Vec<Applied>,
}

impl Ctx<'_> {
    pub(crate) fn tree(&self) -> &Tree {
        match &self.store {
            Store::Live(tree) => tree,
            Store::Tx(tx) => &tx.work,
        }
    }

    pub(crate) fn tree_mut(&mut self) -> &mut Tree {
        match &mut self.store {
            Store::Live(tree) => tree,
            Store::Tx(tx) => &mut tx.work,
        }
    }

    pub(crate) fn tx_mut(&mut self) -> Option<&mut Transaction> {
        match &mut self.store {
            Store::Live(_) => None,
            Store::Tx(tx) => Some(tx),
        }
    }

    pub(crate) fn next_gen(&mut self) -> u64 {
        *self.gen += 1;
        *self.gen
    }

    pub(crate) fn observe_meta(&mut self, p: &str) -> Result<(), ErrorCode> {
        self.charge_seen(p)?;
        let result = self.tx_mut().map_or(Ok(()), |tx| tx.observe_meta(p));
        self.note_tx_quota(result)
    }

    pub(crate) fn observe_list(&mut self, p: &str) -> Result<(), ErrorCode> {
        self.charge_seen(p)?;
        let result = self.tx_mut().map_or(Ok(()), |tx| tx.observe_list(p));
        self.note_tx_quota(result)
    }

    /// Whether the transaction (if any) wrote `p` already: its copy of
    /// the node is then replaced, not added.
    pub(crate) fn written_in_tx(&self, p: &str) -> bool {
        match &self.store {
            Store::Live(_) => false,
            Store::Tx(tx) => tx.written.iter().any(|w| &**w == p),
        }
    }

    /// Records what a node's change costs (after its charge was checked):
    /// on the live tree, a [`Mutation`] for the owners' counts; in a
    /// transaction, the transaction's copy, charged to the caller.
    pub(crate) fn record_node(&mut self, p: &str, old: Option<Charge>, new: Option<Charge>) {
        if matches!(self.store, Store::Live(_)) {
            self.mutations.push(Mutation { before: old, after: new });
            return;
        }
        let freed = if self.written_in_tx(p) { old.map_or(0, |c| c.bytes) } else { 0 };
        let added = new.map_or(0, |c| c.bytes);
        self.tx_memory += i64::try_from(added).unwrap_or(i64::MAX) - i64::try_from(freed).unwrap_or(i64::MAX);
    }

    /// Records a change a transaction will fire (its cost).
    pub(crate) fn record_change(&mut self, change: Change) {
        if matches!(self.store, Store::Tx(_)) {
            self.tx_memory += i64::try_from(crate::memory::CHANGE).unwrap_or(i64::MAX);
        }
        self.changes.push(change);
    }

    pub(crate) fn mark_written(&mut self, key: &Arc<str>) {
        if let Some(tx) = self.tx_mut() {
            tx.mark_written(key);
        }
    }
}
