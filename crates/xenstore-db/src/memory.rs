//! The `memory` quota's accounting: what each thing a domain makes the
//! store hold costs, and who pays.
//!
//! The C daemon charges a domain for every byte it makes the daemon hold
//! (`domain_memory_add`) and bounds it at 2.5 MiB; without that bound one
//! guest inside every count quota (nodes, watches, transactions) pinned
//! tens of megabytes through long names, long watch tokens and
//! transaction records. Charged here, per domain, kept as a running total
//! ([`crate::domain::Domain::memory`]) so a request's check is O(1):
//!
//! | held | charged to | cost |
//! |---|---|---|
//! | a live node | its owner | [`node`]: bookkeeping, leaf name, value, permission entries |
//! | a watch | its connection's domain | [`watch`]: bookkeeping, path, token |
//! | a transaction | its connection's domain | [`TX`], plus its copies of the nodes it wrote ([`node`]), each node it looked at or removed ([`seen`]) and each change it will fire ([`CHANGE`]) |
//!
//! The daemon adds what it queues for the domain's connections (replies
//! and events) when it decides whether to read the domain's ring.
//!
//! Costs are estimates from the types' sizes, not allocator truth; what
//! matters is that every byte a guest chooses (a name, a value, a token, a
//! path a transaction records) is charged, and each fixed cost at least
//! roughly. The running totals are derived state: [`Engine::recount_memory`]
//! computes them from scratch, for the consistency check and after an
//! import (the state stream does not carry them).

use std::collections::BTreeMap;
use std::mem::size_of;
use std::sync::Arc;

use xenstore_wire::{path, DomId};

use crate::event::Change;
use crate::node::{Name, Node, NodeRef};
use crate::small::SmallBytes;
use crate::tx::{Seen, Transaction};
use crate::watch::Watch;
use crate::Engine;

/// Size of a reference-counted allocation's header (two counters).
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// A node's fixed cost: the node with its reference count (one
/// allocation: `triomphe`'s `Arc` has no weak count) and its entry in the
/// parent's list (leaf name and pointer). A value or name of up to
/// [`crate::small::INLINE_MAX`] bytes lives inside these; a longer one is
/// charged its own allocation ([`SmallBytes::heap_bytes`]).
///
/// 80 bytes on a 64-bit target (8 + 48 + 24), where glibc's malloc
/// serves the node's 56 from a 64-byte chunk. Not charged: the allocator's
/// rounding, and the 32-byte header of a children list (a directory's,
/// or a leaf's whose list generation no longer equals its `meta_gen`, see
/// [`Node`]), because a node's charge must not change when its children
/// do (the running totals are only adjusted for the node a request
/// writes); each child's slot in that list is charged to the child.
pub(crate) const NODE: usize = size_of::<usize>() + size_of::<Node>() + size_of::<(Name, NodeRef)>();

/// A watch's fixed cost: the record and its two index entries.
pub(crate) const WATCH: usize = size_of::<Watch>() + 2 * ARC_HEADER + 4 * size_of::<u64>();

/// A transaction's fixed cost.
pub(crate) const TX: usize = size_of::<Transaction>() + ARC_HEADER;

/// A change a transaction will fire at commit, besides its permissions.
pub(crate) const CHANGE: usize = size_of::<Change>() + 2 * size_of::<Arc<str>>();

/// The cost of a live node (or a transaction's copy) under a leaf name
/// of `name_len` bytes. The full path is stored nowhere, so not charged;
/// each level of a deep path is a node and pays its own name.
pub(crate) fn node(name_len: usize, node: &Node) -> usize {
    NODE + SmallBytes::heap_bytes(name_len)
        + SmallBytes::heap_bytes(node.value.len())
        + std::mem::size_of_val(node.perms.entries())
}

/// The cost of the node at `p`.
pub(crate) fn node_at(p: &str, n: &Node) -> usize {
    node(path::basename(p).len(), n)
}

/// The cost of a registered watch.
pub(crate) fn watch(w: &Watch) -> usize {
    WATCH + w.path.len() + w.token.len()
}

/// The cost of one path a transaction records (a node it looked at, or
/// removed): the full path is stored there.
pub(crate) fn seen(p: &str) -> usize {
    size_of::<Seen>() + ARC_HEADER + 2 * size_of::<Arc<str>>() + p.len()
}

impl Transaction {
    /// What a transaction holds, computed from its records (an imported
    /// transaction's charge). A running transaction keeps its own total in
    /// `memory`, which charges a node rewritten in it once per version.
    pub(crate) fn memory_of_records(&self) -> usize {
        let seen_bytes: usize = self.seen.keys().chain(self.removed.iter()).map(|p| seen(p)).sum();
        let written: usize = self.written.iter().filter_map(|p| self.work.get(p).map(|n| node_at(p, n))).sum();
        TX + seen_bytes + written + self.changes.len() * CHANGE
    }
}

impl Engine {
    /// Bytes the store holds for a domain now (0 for one it does not
    /// know): the `memory` quota's count, without the daemon's queues.
    pub fn memory(&self, domid: DomId) -> usize {
        self.memory_total(domid)
    }

    /// Every domain's memory computed from scratch (a walk of the whole
    /// store): the running totals must equal it.
    pub(crate) fn recount_memory(&self) -> BTreeMap<DomId, usize> {
        let mut out: BTreeMap<DomId, usize> = BTreeMap::new();
        for (p, n) in self.tree.iter() {
            *out.entry(n.perms.owner()).or_default() += node_at(&p, n);
        }
        let domid_of = |conn| self.conns.get(&conn).map(|c| c.caller.domid);
        for w in self.watches.by_id.values() {
            if let Some(d) = domid_of(w.conn) {
                *out.entry(d).or_default() += watch(w);
            }
        }
        for tx in self.txs.values() {
            if let Some(d) = domid_of(tx.conn) {
                *out.entry(d).or_default() += tx.memory;
            }
        }
        out
    }

    /// Sets every domain's running total from [`Engine::recount_memory`].
    pub(crate) fn set_memory_from_recount(&mut self) {
        let counted = self.recount_memory();
        for (domid, d) in &mut self.domains {
            d.memory = counted.get(domid).copied().unwrap_or(0);
        }
        self.orphaned_memory =
            counted.into_iter().filter(|(domid, m)| *m > 0 && !self.domains.contains_key(domid)).collect();
    }

    /// The running total for `domid`, with or without its record.
    pub(crate) fn memory_total(&self, domid: DomId) -> usize {
        self.domains.get(&domid).map_or_else(|| self.orphaned_memory.get(&domid).copied().unwrap_or(0), |d| d.memory)
    }

    /// A domain holds `bytes` more. A connection can outlive its domain's
    /// record (a socket client of a removed domain): the record comes
    /// back, as for its connecting, so the bytes are counted somewhere.
    pub(crate) fn hold_memory(&mut self, domid: DomId, bytes: usize) {
        if bytes > 0 {
            self.ensure_domain(domid).memory += bytes;
        }
    }

    /// A domain holds `bytes` less.
    pub(crate) fn release_memory(&mut self, domid: DomId, bytes: usize) {
        if let Some(d) = self.domains.get_mut(&domid) {
            d.memory = d.memory.saturating_sub(bytes);
        } else if let Some(m) = self.orphaned_memory.get_mut(&domid) {
            *m = m.saturating_sub(bytes);
            if *m == 0 {
                self.orphaned_memory.remove(&domid);
            }
        }
    }
}
