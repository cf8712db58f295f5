//! Turning an [`EngineState`] back into an [`Engine`], refusing any state
//! no engine could have been in.
//!
//! The state comes from another process (a live update), possibly through
//! a file or a stream: it is checked, not trusted, because the engine's
//! code relies on its invariants (a node's parent exists and lists it, each
//! watch and transaction belongs to one connection that lists it, counts
//! match what they count, no id will be handed out twice, no generation is
//! from the future). Each refusal is an [`ImportError`] saying what is
//! wrong and where.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use xenstore_wire::path::{self, PathKind};
use xenstore_wire::{DomId, Perm, PermList};

use crate::access::Caller;
use crate::domain::Domain;
use crate::event::Change;
use crate::state::{ChangeState, ConnState, DomainState, EngineState, TransactionState, WatchState};
use crate::tree::Tree;
use crate::tx::{Seen, Transaction};
use crate::watch::{Watch, WatchId, Watches};
use crate::{state_tree, ConnId, Engine};

/// Which view of the store a node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreView {
    /// The live store.
    Live,
    /// The snapshot a transaction started from.
    Base(u32),
    /// A transaction's own view.
    Work(u32),
}

impl std::fmt::Display for StoreView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreView::Live => write!(f, "live store"),
            StoreView::Base(tx) => write!(f, "transaction {tx} base"),
            StoreView::Work(tx) => write!(f, "transaction {tx} work"),
        }
    }
}

/// Why an [`EngineState`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportError {
    /// A view of the store has no `/`.
    MissingRoot {
        /// The view.
        view: StoreView,
    },
    /// A node's path is not a canonical absolute path.
    InvalidPath {
        /// The view.
        view: StoreView,
        /// The path.
        path: String,
    },
    /// Two nodes of one view have the same path.
    DuplicatePath {
        /// The view.
        view: StoreView,
        /// The path.
        path: String,
    },
    /// A node's permission list is empty (it must name at least the owner).
    InvalidPerms {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
    },
    /// A node's `meta_gen` or `list_gen` is above the generation counter.
    GenerationAhead {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
        /// The generation.
        gen: u64,
    },
    /// A node's parent is not in the view.
    ParentMissing {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
    },
    /// A node's parent does not list it among its children.
    NotListed {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
    },
    /// A node lists a child name that is empty or holds a `/`.
    InvalidChildName {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
        /// The name.
        child: String,
    },
    /// A node lists a child that is not in the view.
    MissingChild {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
        /// The child's leaf name.
        child: String,
    },
    /// A node lists a child twice.
    DuplicateChild {
        /// The view.
        view: StoreView,
        /// The node.
        path: String,
        /// The child's leaf name.
        child: String,
    },
    /// A live node's owner is not a known domain.
    UnknownOwner {
        /// The node.
        path: String,
        /// Its owner.
        owner: DomId,
    },
    /// A domain's owned-node count is not the number of live nodes it owns
    /// (0 for dom0, whose nodes are not counted).
    OwnedCountMismatch {
        /// The domain.
        domid: DomId,
        /// The count it carries.
        counted: usize,
        /// The nodes it owns.
        owns: usize,
    },
    /// Dom0 is not among the domains (the engine always knows it).
    MissingDom0,
    /// Two domains have the same id.
    DuplicateDomain {
        /// The id.
        domid: DomId,
    },
    /// A domain's `since_gen` is above the generation counter.
    DomainGenerationAhead {
        /// The domain.
        domid: DomId,
        /// Its `since_gen`.
        since_gen: u64,
    },
    /// A domain's target (SET_TARGET) is not a known domain.
    UnknownTarget {
        /// The domain.
        domid: DomId,
        /// Its target.
        target: DomId,
    },
    /// A domain's ring connection does not exist or does not run as the
    /// domain, unprivileged.
    RingConnectionInvalid {
        /// The domain.
        domid: DomId,
        /// Its ring connection.
        conn: ConnId,
    },
    /// Two connections have the same id.
    DuplicateConnection {
        /// The id.
        conn: ConnId,
    },
    /// A connection's id is at or above the next connection id.
    ConnectionIdAhead {
        /// The id.
        conn: ConnId,
    },
    /// Two watches have the same id.
    DuplicateWatchId {
        /// The id.
        watch: WatchId,
    },
    /// A watch's id is at or above the next watch id.
    WatchIdAhead {
        /// The id.
        watch: WatchId,
    },
    /// A watch's connection does not exist.
    WatchConnectionMissing {
        /// The watch.
        watch: WatchId,
        /// Its connection.
        conn: ConnId,
    },
    /// A watch's path is neither canonical absolute nor special (`@...`).
    InvalidWatchPath {
        /// The watch.
        watch: WatchId,
    },
    /// A relative watch's path is not below its connection's domain home.
    RelativeWatchOutsideHome {
        /// The watch.
        watch: WatchId,
    },
    /// A watch has the connection, path and token of an earlier one.
    DuplicateWatch {
        /// The later watch.
        watch: WatchId,
    },
    /// A connection lists a watch that does not exist, belongs to another
    /// connection, or is listed twice.
    WatchNotOwned {
        /// The connection.
        conn: ConnId,
        /// The watch it lists.
        watch: WatchId,
    },
    /// A watch is not listed by its connection.
    WatchNotListed {
        /// The watch.
        watch: WatchId,
        /// Its connection.
        conn: ConnId,
    },
    /// A transaction has id 0, which means "no transaction".
    ZeroTransactionId,
    /// Two transactions have the same id.
    DuplicateTransaction {
        /// The id.
        tx: u32,
    },
    /// A transaction's connection does not exist.
    TransactionConnectionMissing {
        /// The transaction.
        tx: u32,
        /// Its connection.
        conn: ConnId,
    },
    /// A connection lists a transaction that does not exist, belongs to
    /// another connection, or is listed twice.
    TransactionNotOwned {
        /// The connection.
        conn: ConnId,
        /// The transaction it lists.
        tx: u32,
    },
    /// A transaction is not listed by its connection.
    TransactionNotListed {
        /// The transaction.
        tx: u32,
        /// Its connection.
        conn: ConnId,
    },
    /// A path a transaction records (seen, written, removed, or in a
    /// change) is not a canonical absolute path.
    InvalidTxPath {
        /// The transaction.
        tx: u32,
        /// The path.
        path: String,
    },
    /// A transaction records a path twice in its seen, written or removed
    /// set.
    DuplicateTxPath {
        /// The transaction.
        tx: u32,
        /// The path.
        path: String,
    },
    /// A generation a transaction saw is above the generation counter.
    TxGenerationAhead {
        /// The transaction.
        tx: u32,
        /// The node.
        path: String,
        /// The generation.
        gen: u64,
    },
    /// A transaction's pending change is malformed: an empty permission
    /// list, a removed descendant not strictly below the removed node or
    /// out of path order, or an unknown special path.
    InvalidChange {
        /// The transaction.
        tx: u32,
        /// The change's path.
        path: String,
    },
    /// Special permissions are given for a path other than
    /// `@introduceDomain` and `@releaseDomain`.
    UnknownSpecialPath {
        /// The path.
        name: String,
    },
    /// A special path's permissions are given twice.
    DuplicateSpecialPerms {
        /// The path.
        name: String,
    },
    /// A special path's permissions are missing.
    MissingSpecialPerms {
        /// The path.
        name: String,
    },
    /// A special path's permission list is empty.
    InvalidSpecialPerms {
        /// The path.
        name: String,
    },
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ImportError as E;
        match self {
            E::MissingRoot { view } => write!(f, "{view}: no root node"),
            E::InvalidPath { view, path } => write!(f, "{view}: invalid node path {path:?}"),
            E::DuplicatePath { view, path } => write!(f, "{view}: node {path} given twice"),
            E::InvalidPerms { view, path } => write!(f, "{view}: node {path} has no permissions"),
            E::GenerationAhead { view, path, gen } => {
                write!(f, "{view}: node {path} has generation {gen}, above the counter")
            }
            E::ParentMissing { view, path } => write!(f, "{view}: node {path} has no parent"),
            E::NotListed { view, path } => write!(f, "{view}: node {path} is not listed by its parent"),
            E::InvalidChildName { view, path, child } => {
                write!(f, "{view}: node {path} lists invalid child name {child:?}")
            }
            E::MissingChild { view, path, child } => write!(f, "{view}: node {path} lists missing child {child}"),
            E::DuplicateChild { view, path, child } => write!(f, "{view}: node {path} lists child {child} twice"),
            E::UnknownOwner { path, owner } => write!(f, "node {path}: owner {owner} is not a known domain"),
            E::OwnedCountMismatch { domid, counted, owns } => {
                write!(f, "domain {domid} counts {counted} owned nodes, owns {owns}")
            }
            E::MissingDom0 => write!(f, "domain 0 is missing"),
            E::DuplicateDomain { domid } => write!(f, "domain {domid} given twice"),
            E::DomainGenerationAhead { domid, since_gen } => {
                write!(f, "domain {domid} known since generation {since_gen}, above the counter")
            }
            E::UnknownTarget { domid, target } => write!(f, "domain {domid} targets unknown domain {target}"),
            E::RingConnectionInvalid { domid, conn } => {
                write!(f, "domain {domid}: ring connection {conn} is missing or runs as another caller")
            }
            E::DuplicateConnection { conn } => write!(f, "connection {conn} given twice"),
            E::ConnectionIdAhead { conn } => write!(f, "connection {conn} is at or above the next connection id"),
            E::DuplicateWatchId { watch } => write!(f, "watch {watch} given twice"),
            E::WatchIdAhead { watch } => write!(f, "watch {watch} is at or above the next watch id"),
            E::WatchConnectionMissing { watch, conn } => write!(f, "watch {watch}: connection {conn} does not exist"),
            E::InvalidWatchPath { watch } => write!(f, "watch {watch}: invalid path"),
            E::RelativeWatchOutsideHome { watch } => {
                write!(f, "watch {watch}: relative, but not below its domain's home")
            }
            E::DuplicateWatch { watch } => write!(f, "watch {watch}: same connection, path and token as another"),
            E::WatchNotOwned { conn, watch } => {
                write!(f, "connection {conn} lists watch {watch}, which is missing, another's or listed twice")
            }
            E::WatchNotListed { watch, conn } => write!(f, "watch {watch} is not listed by connection {conn}"),
            E::ZeroTransactionId => write!(f, "a transaction has id 0"),
            E::DuplicateTransaction { tx } => write!(f, "transaction {tx} given twice"),
            E::TransactionConnectionMissing { tx, conn } => {
                write!(f, "transaction {tx}: connection {conn} does not exist")
            }
            E::TransactionNotOwned { conn, tx } => {
                write!(f, "connection {conn} lists transaction {tx}, which is missing, another's or listed twice")
            }
            E::TransactionNotListed { tx, conn } => {
                write!(f, "transaction {tx} is not listed by connection {conn}")
            }
            E::InvalidTxPath { tx, path } => write!(f, "transaction {tx}: invalid path {path:?}"),
            E::DuplicateTxPath { tx, path } => write!(f, "transaction {tx}: path {path} recorded twice"),
            E::TxGenerationAhead { tx, path, gen } => {
                write!(f, "transaction {tx}: saw {path} at generation {gen}, above the counter")
            }
            E::InvalidChange { tx, path } => write!(f, "transaction {tx}: malformed change at {path}"),
            E::UnknownSpecialPath { name } => write!(f, "permissions for unknown special path {name:?}"),
            E::DuplicateSpecialPerms { name } => write!(f, "permissions for {name} given twice"),
            E::MissingSpecialPerms { name } => write!(f, "permissions for {name} missing"),
            E::InvalidSpecialPerms { name } => write!(f, "permissions for {name} are empty"),
        }
    }
}

impl std::error::Error for ImportError {}

impl TryFrom<EngineState> for Engine {
    type Error = ImportError;

    fn try_from(state: EngineState) -> Result<Engine, ImportError> {
        Engine::import(state)
    }
}

impl Engine {
    /// An engine in the state [`Engine::export`] gave, if that state is
    /// consistent (see [`ImportError`] for every check). The imported engine
    /// answers every later request as the exporting one would have.
    pub fn import(state: EngineState) -> Result<Engine, ImportError> {
        let gen = state.generation;
        let domains = import_domains(&state.domains, gen)?;
        let tree = state_tree::build(&state.nodes, StoreView::Live, gen, None)?;
        check_owners(&state, &domains)?;
        let mut conns = import_conns(&state.conns, state.next_conn)?;
        for (domid, d) in &domains {
            if let Some(conn) = d.ring_conn.filter(|c| conns.get(c).is_none_or(|c| c.caller != Caller::guest(*domid))) {
                return Err(ImportError::RingConnectionInvalid { domid: *domid, conn });
            }
        }
        let watches = import_watches(&state, &mut conns)?;
        let mut txs = BTreeMap::new();
        for tx in &state.transactions {
            if tx.id == 0 {
                return Err(ImportError::ZeroTransactionId);
            }
            if !conns.contains_key(&tx.conn) {
                return Err(ImportError::TransactionConnectionMissing { tx: tx.id, conn: tx.conn });
            }
            let imported = import_transaction(tx, gen, &tree)?;
            if txs.insert(tx.id, imported).is_some() {
                return Err(ImportError::DuplicateTransaction { tx: tx.id });
            }
        }
        let mut claimed = BTreeSet::new();
        for c in &state.conns {
            let Some(conn) = conns.get_mut(&c.id) else { continue };
            for tx in &c.transactions {
                if !claimed.insert(*tx) || txs.get(tx).is_none_or(|t: &Transaction| t.conn != c.id) {
                    return Err(ImportError::TransactionNotOwned { conn: c.id, tx: *tx });
                }
                conn.txs.push(*tx);
            }
        }
        for (id, tx) in &txs {
            if !claimed.contains(id) {
                return Err(ImportError::TransactionNotListed { tx: *id, conn: tx.conn });
            }
        }
        let special_perms = import_special_perms(&state)?;
        let any_target = domains.values().any(|d| d.target.is_some());
        let mut engine = Engine {
            tree,
            gen,
            config: state.config,
            conns,
            next_conn: state.next_conn,
            txs,
            next_tx: state.next_tx,
            domains,
            any_target,
            watches,
            special_perms,
            empty: Arc::from(&b""[..]),
            orphaned_memory: BTreeMap::new(),
            newly_known: Vec::new(),
            known_before_request: Vec::new(),
        };
        // Memory totals are derived, not carried by the stream.
        engine.set_memory_from_recount();
        Ok(engine)
    }
}

fn import_domains(states: &[DomainState], gen: u64) -> Result<BTreeMap<DomId, Domain>, ImportError> {
    let mut domains = BTreeMap::new();
    for d in states {
        if d.since_gen > gen {
            return Err(ImportError::DomainGenerationAhead { domid: d.domid, since_gen: d.since_gen });
        }
        let domain = Domain {
            since_gen: d.since_gen,
            owned: d.owned,
            memory: 0,
            quotas: d.quotas,
            target: d.target,
            introduced: d.introduced,
            release_fired: d.release_fired,
            features: d.features,
            ring_conn: d.ring_conn,
        };
        if domains.insert(d.domid, domain).is_some() {
            return Err(ImportError::DuplicateDomain { domid: d.domid });
        }
    }
    if !domains.contains_key(&0) {
        return Err(ImportError::MissingDom0);
    }
    for (domid, d) in &domains {
        if let Some(target) = d.target.filter(|t| !domains.contains_key(t)) {
            return Err(ImportError::UnknownTarget { domid: *domid, target });
        }
    }
    Ok(domains)
}

/// Every live node's owner is known, and each domain's count is right.
fn check_owners(state: &EngineState, domains: &BTreeMap<DomId, Domain>) -> Result<(), ImportError> {
    let mut owns: BTreeMap<DomId, usize> = BTreeMap::new();
    for node in &state.nodes {
        let owner = node.perms.first().map_or(0, |p| p.domid);
        if !domains.contains_key(&owner) {
            return Err(ImportError::UnknownOwner { path: node.path.clone(), owner });
        }
        if owner != 0 {
            *owns.entry(owner).or_default() += 1;
        }
    }
    for (domid, d) in domains {
        let actual = owns.get(domid).copied().unwrap_or(0);
        if d.owned != actual {
            return Err(ImportError::OwnedCountMismatch { domid: *domid, counted: d.owned, owns: actual });
        }
    }
    Ok(())
}

/// The connections, with empty watch and transaction lists (filled once
/// those are checked).
fn import_conns(states: &[ConnState], next: ConnId) -> Result<BTreeMap<ConnId, crate::engine::Conn>, ImportError> {
    let mut conns = BTreeMap::new();
    for c in states {
        if c.id >= next {
            return Err(ImportError::ConnectionIdAhead { conn: c.id });
        }
        let conn = crate::engine::Conn { caller: c.caller, watches: Vec::new(), txs: Vec::new() };
        if conns.insert(c.id, conn).is_some() {
            return Err(ImportError::DuplicateConnection { conn: c.id });
        }
    }
    Ok(conns)
}

/// The watches, indexed as [`Watches::add`] would have, and each
/// connection's list of them.
fn import_watches(
    state: &EngineState,
    conns: &mut BTreeMap<ConnId, crate::engine::Conn>,
) -> Result<Watches, ImportError> {
    let mut by_id = BTreeMap::new();
    let mut registered = BTreeSet::new();
    for w in &state.watches {
        let watch = import_watch(w, state.next_watch, conns)?;
        if !registered.insert((w.conn, w.path.as_str(), w.token.as_slice())) {
            return Err(ImportError::DuplicateWatch { watch: w.id });
        }
        if by_id.insert(w.id, watch).is_some() {
            return Err(ImportError::DuplicateWatchId { watch: w.id });
        }
    }
    let mut claimed = BTreeSet::new();
    for c in &state.conns {
        let Some(conn) = conns.get_mut(&c.id) else { continue };
        for id in &c.watches {
            if !claimed.insert(*id) || by_id.get(id).is_none_or(|w: &Watch| w.conn != c.id) {
                return Err(ImportError::WatchNotOwned { conn: c.id, watch: *id });
            }
            conn.watches.push(*id);
        }
    }
    let mut by_path: BTreeMap<Arc<str>, Vec<WatchId>> = BTreeMap::new();
    for (id, w) in &by_id {
        if !claimed.contains(id) {
            return Err(ImportError::WatchNotListed { watch: *id, conn: w.conn });
        }
        // Ids were handed out increasing, so id order is registration order.
        by_path.entry(w.path.clone()).or_default().push(*id);
    }
    Ok(Watches { next_id: state.next_watch, by_id, by_path })
}

fn import_watch(
    w: &WatchState,
    next: WatchId,
    conns: &BTreeMap<ConnId, crate::engine::Conn>,
) -> Result<Watch, ImportError> {
    if w.id >= next {
        return Err(ImportError::WatchIdAhead { watch: w.id });
    }
    let Some(conn) = conns.get(&w.conn) else {
        return Err(ImportError::WatchConnectionMissing { watch: w.id, conn: w.conn });
    };
    if !matches!(path::check(w.path.as_bytes(), true), Ok(PathKind::Absolute | PathKind::Special)) {
        return Err(ImportError::InvalidWatchPath { watch: w.id });
    }
    let relative_prefix = if w.relative {
        let home = path::domain_home(conn.caller.domid);
        if !path::is_at_or_below(&w.path, &home) || w.path == home {
            return Err(ImportError::RelativeWatchOutsideHome { watch: w.id });
        }
        Some(home.len() + 1)
    } else {
        None
    };
    Ok(Watch {
        conn: w.conn,
        path: Arc::from(w.path.as_str()),
        token: Arc::from(w.token.as_slice()),
        depth: w.depth,
        relative_prefix,
    })
}

fn import_transaction(tx: &TransactionState, gen: u64, live: &Tree) -> Result<Transaction, ImportError> {
    let id = tx.id;
    let base = state_tree::build(&tx.base, StoreView::Base(id), gen, Some(live))?;
    let work = state_tree::build(&tx.work, StoreView::Work(id), gen, Some(&base))?;
    let mut seen = BTreeMap::new();
    for s in &tx.seen {
        let path = tx_path(id, &s.path)?;
        if let Some(g) = [s.meta, s.list].into_iter().flatten().flatten().find(|g| *g > gen) {
            return Err(ImportError::TxGenerationAhead { tx: id, path: s.path.clone(), gen: g });
        }
        if seen.insert(path, Seen { meta: s.meta, list: s.list }).is_some() {
            return Err(ImportError::DuplicateTxPath { tx: id, path: s.path.clone() });
        }
    }
    let mut written = Vec::with_capacity(tx.written.len());
    let mut unique = BTreeSet::new();
    for p in &tx.written {
        if !unique.insert(p.as_str()) {
            return Err(ImportError::DuplicateTxPath { tx: id, path: p.clone() });
        }
        written.push(tx_path(id, p)?);
    }
    let mut removed = BTreeSet::new();
    for p in &tx.removed {
        if !removed.insert(tx_path(id, p)?) {
            return Err(ImportError::DuplicateTxPath { tx: id, path: p.clone() });
        }
    }
    let changes = tx.changes.iter().map(|c| import_change(id, c)).collect::<Result<_, _>>()?;
    Ok(Transaction {
        conn: tx.conn,
        base,
        work,
        seen,
        written,
        removed,
        changes,
        node_delta: tx.node_delta,
        node_limit: tx.node_limit,
        failed: tx.failed,
        memory: 0,
    })
    .map(|mut t| {
        t.memory = t.memory_of_records();
        t
    })
}

/// A path a transaction records, checked.
fn tx_path(tx: u32, p: &str) -> Result<Arc<str>, ImportError> {
    if path::check(p.as_bytes(), false) != Ok(PathKind::Absolute) {
        return Err(ImportError::InvalidTxPath { tx, path: p.to_owned() });
    }
    Ok(Arc::from(p))
}

fn import_change(tx: u32, change: &ChangeState) -> Result<Change, ImportError> {
    let invalid = |p: &str| ImportError::InvalidChange { tx, path: p.to_owned() };
    let perms = |p: &str, entries: &[Perm]| PermList::new(entries.to_vec()).ok_or_else(|| invalid(p));
    match change {
        ChangeState::Node { path: p, perms: entries, via } => {
            let via = via.iter().map(|l| perms(p, l)).collect::<Result<_, _>>()?;
            Ok(Change::Node { path: tx_path(tx, p)?, perms: perms(p, entries)?, via })
        }
        ChangeState::Removed { path: p, perms: entries, via, below } => {
            let via = via.iter().map(|l| perms(p, l)).collect::<Result<_, _>>()?;
            let top = tx_path(tx, p)?;
            let mut kept: Vec<(Arc<str>, PermList)> = Vec::with_capacity(below.len());
            for (q, entries) in below {
                let q_path = tx_path(tx, q)?;
                let in_order = kept.last().is_none_or(|(prev, _)| **prev < *q_path);
                if !in_order || !path::is_at_or_below(q, p) || q == p {
                    return Err(invalid(p));
                }
                kept.push((q_path, perms(q, entries)?));
            }
            Ok(Change::Removed { path: top, perms: perms(p, entries)?, via, below: kept })
        }
        ChangeState::Special { name, domid } => {
            let name = special_name(name).ok_or_else(|| invalid(name))?;
            Ok(Change::Special { name, domid: *domid })
        }
    }
}

fn special_name(name: &str) -> Option<&'static str> {
    [path::INTRODUCE_DOMAIN, path::RELEASE_DOMAIN].into_iter().find(|n| *n == name)
}

fn import_special_perms(state: &EngineState) -> Result<BTreeMap<&'static str, PermList>, ImportError> {
    let mut perms = BTreeMap::new();
    for s in &state.special_perms {
        let Some(name) = special_name(&s.name) else {
            return Err(ImportError::UnknownSpecialPath { name: s.name.clone() });
        };
        let list = PermList::new(s.perms.clone()).ok_or(ImportError::InvalidSpecialPerms { name: s.name.clone() })?;
        if perms.insert(name, list).is_some() {
            return Err(ImportError::DuplicateSpecialPerms { name: s.name.clone() });
        }
    }
    if let Some(name) = [path::INTRODUCE_DOMAIN, path::RELEASE_DOMAIN].into_iter().find(|n| !perms.contains_key(n)) {
        return Err(ImportError::MissingSpecialPerms { name: name.to_owned() });
    }
    Ok(perms)
}
