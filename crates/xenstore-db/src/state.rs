//! The engine's whole state as plain data, for a live update.
//!
//! A live update hands the store to a re-executed daemon. [`Engine::export`]
//! copies everything the engine holds into an [`EngineState`]: pub structs
//! of plain values (no `Arc`-shared trees, no private fields), which a
//! serializer (Xen's migration stream, or anything else) can write field by
//! field. [`Engine::import`] (or `Engine::try_from`) takes one back and
//! refuses it, with an [`ImportError`] naming what is wrong, unless it is a
//! state some engine could have been in: the new process does not trust
//! bytes it did not produce. As with virtio-queue's `QueueState`, the data
//! is dumb and the checks live in one place, the conversion back.
//!
//! Nothing is derived on export: the generation counter, the next ids, each
//! node's generations, each domain's owned-node count and each
//! transaction's records are carried as they are, so that the imported
//! engine answers every later request exactly as the original would have
//! (permission staleness, `EAGAIN` verdicts, `DIRECTORY` order, quota
//! counts, the ids it hands out, the order watches fire in).
//!
//! **Transactions carry their trees in full.** An open transaction's
//! `base` (the store when it started) and `work` (its own view) are node
//! lists like the live store's, so each open transaction costs O(store) in
//! the exported state. That is acceptable for a live update: it happens
//! rarely, by the administrator's choice, transactions are short-lived and
//! bounded per connection, and the daemon may also wait for them to end
//! first. On import, every subtree of `base` equal to the live one (and of
//! `work` equal to `base`) is shared again, so the imported engine's memory
//! is like the original's.

use std::sync::Arc;

use xenstore_wire::{DomId, Perm};

use crate::access::Caller;
use crate::domain::RingAddress;
use crate::event::Change;
use crate::quota::Quotas;
use crate::tree::Tree;
use crate::watch::WatchId;
use crate::{Config, ConnId, Engine};

#[cfg(doc)]
use crate::ImportError;

/// Everything an [`Engine`] holds.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineState {
    /// The settings, with the global quotas as SET_QUOTA left them.
    pub config: Config,
    /// The generation counter: every generation below is at most this.
    pub generation: u64,
    /// The id the next connection gets; every connection's id is below it.
    pub next_conn: ConnId,
    /// Where the next transaction id is looked for. Transaction ids wrap
    /// around (skipping 0 and ids in use), so they are not bounded by it.
    pub next_tx: u32,
    /// The id the next watch gets; every watch's id is below it.
    pub next_watch: WatchId,
    /// The live store.
    pub nodes: Vec<NodeState>,
    /// The known domains.
    pub domains: Vec<DomainState>,
    /// The connections.
    pub conns: Vec<ConnState>,
    /// The watches of all connections.
    pub watches: Vec<WatchState>,
    /// The open transactions.
    pub transactions: Vec<TransactionState>,
    /// The permissions of `@introduceDomain` and `@releaseDomain`.
    pub special_perms: Vec<SpecialPermsState>,
}

/// One node of a store (the live one, or a transaction's view).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Its canonical absolute path.
    pub path: String,
    /// Its value.
    pub value: Vec<u8>,
    /// Its permissions as stored, owner first, stale entries included (they
    /// are judged against `meta_gen` when used).
    pub perms: Vec<Perm>,
    /// Generation of the last change to value or permissions.
    pub meta_gen: u64,
    /// Generation of the last change to the children list.
    pub list_gen: u64,
    /// Leaf names of its children, in the order they were created.
    pub children: Vec<String>,
}

/// One known domain.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainState {
    /// Its id.
    pub domid: DomId,
    /// Generation at which this incarnation became known.
    pub since_gen: u64,
    /// How many live nodes it owns (0 for dom0, whose nodes are not counted).
    pub owned: usize,
    /// Its quotas.
    pub quotas: Quotas,
    /// The domain it acts for (SET_TARGET).
    pub target: Option<DomId>,
    /// Its ring, once introduced.
    pub introduced: Option<RingAddress>,
    /// Whether `@releaseDomain` already fired for its shutdown.
    pub release_fired: bool,
    /// Ring feature bits to advertise.
    pub features: u32,
    /// The connection its ring is served as, once introduced.
    pub ring_conn: Option<ConnId>,
}

/// One connection.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnState {
    /// Its id.
    pub id: ConnId,
    /// The identity it runs with.
    pub caller: Caller,
    /// Its watches, in registration order.
    pub watches: Vec<WatchId>,
    /// Its open transactions, in the order they started.
    pub transactions: Vec<u32>,
}

/// One registered watch.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchState {
    /// Its id: watches fire in id order on each connection.
    pub id: WatchId,
    /// The connection that registered it.
    pub conn: ConnId,
    /// The watched path, canonical (absolute, or special `@...`).
    pub path: String,
    /// The token echoed in its events.
    pub token: Vec<u8>,
    /// Levels below `path` that still match; `None` for all.
    pub depth: Option<u32>,
    /// Whether it was registered with a relative path, so its events are
    /// reported relative to the connection's domain home.
    pub relative: bool,
}

/// One open transaction.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionState {
    /// Its id.
    pub id: u32,
    /// The connection that opened it.
    pub conn: ConnId,
    /// The live store when it started, in full.
    pub base: Vec<NodeState>,
    /// Its own view (`base` plus its writes), in full.
    pub work: Vec<NodeState>,
    /// What it saw of each node it depended on (the conflict check).
    pub seen: Vec<SeenState>,
    /// Nodes it wrote, first write first.
    pub written: Vec<String>,
    /// Nodes it removed at some point.
    pub removed: Vec<String>,
    /// The watch events it fires if it commits, in order.
    pub changes: Vec<ChangeState>,
    /// Net change of its caller's owned-node count.
    pub node_delta: i64,
    /// Limit on the nodes it may depend on (0: none).
    pub node_limit: u32,
    /// A quota refused a request inside it: its commit fails.
    pub failed: bool,
}

/// What a transaction saw of one node in its snapshot.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenState {
    /// The node's path.
    pub path: String,
    /// `Some(meta_gen)`, or `Some(None)` if the node was absent, once its
    /// value, permissions or existence mattered; `None` if they did not.
    pub meta: Option<Option<u64>>,
    /// The same for its children list (`list_gen`).
    pub list: Option<Option<u64>>,
}

/// A change a transaction made, with the permissions it had then (which
/// decide who may see its event).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeState {
    /// A node was created, written, or had its permissions changed.
    Node {
        /// Its path.
        path: String,
        /// Its permissions afterwards.
        perms: Vec<Perm>,
        /// Other lists that let a watcher see it (its parent's; for a
        /// permission change, its own before).
        via: Vec<Vec<Perm>>,
    },
    /// A subtree was removed.
    Removed {
        /// The removed node's path.
        path: String,
        /// Its permissions before removal.
        perms: Vec<Perm>,
        /// Its parent's permissions.
        via: Vec<Vec<Perm>>,
        /// Its descendants with their permissions, in path order.
        below: Vec<(String, Vec<Perm>)>,
    },
    /// `@introduceDomain` or `@releaseDomain` fired for a domain.
    Special {
        /// `@introduceDomain` or `@releaseDomain`.
        name: String,
        /// The domain concerned.
        domid: DomId,
    },
}

/// The permissions of one special watch path.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialPermsState {
    /// `@introduceDomain` or `@releaseDomain`.
    pub name: String,
    /// Who may receive its events, owner first.
    pub perms: Vec<Perm>,
}

impl Engine {
    /// Everything the engine holds, as plain data (see [`crate::state`]).
    /// Costs O(store) per open transaction on top of the live store's.
    pub fn export(&self) -> EngineState {
        EngineState {
            config: self.config.clone(),
            generation: self.gen,
            next_conn: self.next_conn,
            next_tx: self.next_tx,
            next_watch: self.watches.next_id,
            nodes: export_tree(&self.tree),
            domains: self
                .domains
                .iter()
                .map(|(domid, d)| DomainState {
                    domid: *domid,
                    since_gen: d.since_gen,
                    owned: d.owned,
                    quotas: d.quotas,
                    target: d.target,
                    introduced: d.introduced,
                    release_fired: d.release_fired,
                    features: d.features,
                    ring_conn: d.ring_conn,
                })
                .collect(),
            conns: self
                .conns
                .iter()
                .map(|(id, c)| ConnState {
                    id: *id,
                    caller: c.caller,
                    watches: c.watches.clone(),
                    transactions: c.txs.clone(),
                })
                .collect(),
            watches: self
                .watches
                .by_id
                .iter()
                .map(|(id, w)| WatchState {
                    id: *id,
                    conn: w.conn,
                    path: w.path.to_string(),
                    token: w.token.to_vec(),
                    depth: w.depth,
                    relative: w.relative_prefix.is_some(),
                })
                .collect(),
            transactions: self
                .txs
                .iter()
                .map(|(id, tx)| TransactionState {
                    id: *id,
                    conn: tx.conn,
                    base: export_tree(&tx.base),
                    work: export_tree(&tx.work),
                    seen: tx
                        .seen
                        .iter()
                        .map(|(path, seen)| SeenState { path: path.to_string(), meta: seen.meta, list: seen.list })
                        .collect(),
                    written: tx.written.iter().map(|p| p.to_string()).collect(),
                    removed: tx.removed.iter().map(|p| p.to_string()).collect(),
                    changes: tx.changes.iter().map(export_change).collect(),
                    node_delta: tx.node_delta,
                    node_limit: tx.node_limit,
                    failed: tx.failed,
                })
                .collect(),
            special_perms: self
                .special_perms
                .iter()
                .map(|(name, perms)| SpecialPermsState { name: (*name).to_owned(), perms: perms.entries().to_vec() })
                .collect(),
        }
    }
}

/// Every node of a tree, in path order.
fn export_tree(tree: &Tree) -> Vec<NodeState> {
    tree.iter()
        .map(|(path, node)| NodeState {
            path,
            value: node.value.to_vec(),
            perms: node.perms.entries().to_vec(),
            meta_gen: node.meta_gen(),
            list_gen: node.list_gen(),
            children: node.children.iter().map(|c| c.to_string()).collect(),
        })
        .collect()
}

fn export_change(change: &Change) -> ChangeState {
    let path_of = |p: &Arc<str>| p.to_string();
    match change {
        Change::Node { path, perms, via } => ChangeState::Node {
            path: path_of(path),
            perms: perms.entries().to_vec(),
            via: via.iter().map(|l| l.entries().to_vec()).collect(),
        },
        Change::Removed { path, perms, via, below } => ChangeState::Removed {
            path: path_of(path),
            perms: perms.entries().to_vec(),
            via: via.iter().map(|l| l.entries().to_vec()).collect(),
            below: below.iter().map(|(p, perms)| (path_of(p), perms.entries().to_vec())).collect(),
        },
        Change::Special { name, domid } => ChangeState::Special { name: (*name).to_owned(), domid: *domid },
    }
}
