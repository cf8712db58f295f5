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

/// A change to node ownership, applied to the domains' owned-node counts
/// once the change reaches the live tree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mutation {
    /// A node was created, owned by `owner`.
    Created { owner: DomId },
    /// A node owned by `owner` was removed.
    Removed { owner: DomId },
    /// A node's owner changed.
    Chowned { from: DomId, to: DomId },
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
        let result = self.tx_mut().map_or(Ok(()), |tx| tx.observe_meta(p));
        self.note_tx_quota(result)
    }

    pub(crate) fn observe_list(&mut self, p: &str) -> Result<(), ErrorCode> {
        let result = self.tx_mut().map_or(Ok(()), |tx| tx.observe_list(p));
        self.note_tx_quota(result)
    }

    pub(crate) fn mark_written(&mut self, key: &Arc<str>) {
        if let Some(tx) = self.tx_mut() {
            tx.mark_written(key);
        }
    }
}
