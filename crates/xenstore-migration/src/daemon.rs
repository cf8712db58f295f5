//! The whole daemon state as a migration stream: what a live update hands
//! to the re-executed daemon, and what Xen's C `xenstored` hands us when it
//! live-updates into our daemon.
//!
//! # What is carried where
//!
//! [`to_stream`] writes the standard Xen records first, so that a Xen
//! reader (C `xenstored`'s `lu_read_state`, which skips unknown record
//! types) gets a coherent store:
//!
//! - `GLOBAL_DATA` when [`DaemonState::global`] is set;
//! - `GLOBAL_QUOTA_DATA`: the engine's global quotas as per-domain
//!   defaults (the engine has no global-only quotas);
//! - per connection with a transport, in [`DaemonState::conns`] order:
//!   `CONNECTION_DATA` (stream ids 1, 2, ... in that order; the ring's
//!   `domid`/`tdomid`/`evtchn` as the [`ConnTransport`] gives them, not
//!   cross-checked with the engine's domains: the driver knows its rings,
//!   and [`DOMID_INVALID`] is the `tdomid` of an untargeted one), then its
//!   watches as `WATCH_DATA_EXTENDED` (the path as the client gave it: a
//!   relative watch's path is relative to `/local/domain/<domid>` of the
//!   connection's caller; [`DEPTH_UNLIMITED`] for no depth limit), then
//!   its open transactions as `TRANSACTION_DATA`. Pending-transaction
//!   `NODE_DATA` records are **not** written: C ignores transactions on
//!   read anyway, and ours travel whole in extension records;
//! - `NODE_DATA` for every committed node, depth first from `/`, children
//!   in creation order (so a reader recovers `DIRECTORY` order from record
//!   order), then `@introduceDomain` and `@releaseDomain` with the special
//!   paths' permissions and an empty value;
//! - `DOMAIN_DATA` per known domain (features and all quota values).
//!
//! Everything else goes into vendor records in the `"XS"` range
//! ([`EXTENSION_FIRST`]..=[`EXTENSION_LAST`]); Xen's specification reserves
//! the types above 8 for itself and its reader skips unknown types. Their
//! bodies are `postcard` encodings of `serde` structures (see
//! [`Record::Extension`] for the framing):
//!
//! - [`EXT_ENGINE`] (`0x58530001`, once): the full `Config`, the generation
//!   counter and next ids; each committed node's `meta_gen`/`list_gen` in
//!   `NODE_DATA` order; each engine connection (its `ConnId`, `Caller`,
//!   watch and transaction lists, and its stream id when it has a
//!   transport); each watch record's engine id, in record order; the
//!   watches of connections without a transport (they have no Xen record);
//!   per `DOMAIN_DATA` record, the domain's `since_gen`, owned count,
//!   target, ring address, `release_fired` and ring connection.
//! - [`EXT_TRANSACTION`] (`0x58530002`, one per open transaction): the
//!   whole `TransactionState` (base and work trees, seen, written, removed,
//!   changes, node delta, limit, failure).
//! - [`EXT_DAEMON`] (`0x58530003`, at most once): [`DaemonState::daemon`],
//!   opaque here: what the driving daemon hands over besides (xenstored:
//!   its event-channel handle's descriptors and bindings).
//!
//! **Format stability:** postcard is not self-describing, so the bodies
//! are exactly the field lists of these structures and of `xenstore_db`'s
//! state types (`Config`, `Quotas` as its array of values, ...). Any change
//! to one of them changes the format: a new binary must then use new
//! record types (the next free ones in the range) and keep reading these,
//! or a live update from the old binary fails with
//! [`ErrorKind::BadExtension`].
//!
//! A watch's `relative` flag is not stored: it is the path's form in its
//! Xen record (relative paths do not start with `/` or `@`).
//!
//! # Reading
//!
//! [`from_stream`] with our extension records gives back exactly the state
//! written (engine lists in the order [`xenstore_db::Engine::export`] gives
//! them: nodes by path, watches by id). The extension must agree with the
//! Xen records (same node count and order, connection set, watch count,
//! transactions, domains, quotas); a contradiction is refused with
//! [`ErrorKind::ExtensionMismatch`], and unknown extension types in our
//! range are refused too (they would carry state we would lose).
//!
//! Without extension records (a stream from C `xenstored` or another tool),
//! a consistent state is derived:
//! - the generation is the number of nodes, and every node's generations
//!   and every domain's `since_gen` 0 (so no permission is stale);
//! - children order is record order; a node before its parent is refused;
//! - socket connections run as [`Caller::DOM0`], ring connections as
//!   `Caller::guest(domid)` (dom0's ring as `DOM0`); engine ids 1, 2, ...
//!   in record order; a guest's first ring connection is its domain's
//!   ring, a second one (C never writes one) is just a guest connection;
//! - watches get ids in record order; a path not starting with `/` or `@`
//!   is relative to the connection's domain home;
//! - `TRANSACTION_DATA` and pending nodes are dropped, as C drops them on
//!   read (the clients see their transactions fail with `EAGAIN`/`ENOENT`);
//! - a guest's ring connection introduces its domain with the record's
//!   event channel and guest frame 0: C maps the ring by grant reference,
//!   not by frame, so the stream has none; `tdomid` becomes its target;
//! - quotas are `DOMAIN_DATA` values over `GLOBAL_QUOTA_DATA` over the
//!   defaults; owned counts are counted from node owners; owners and
//!   targets that no record introduces become known, unintroduced domains;
//! - missing special-path permissions get the engine's defaults.
//!
//! Either way, [`from_stream`] returns a state only after
//! [`xenstore_db::Engine::import`] accepted it (which costs one import; the
//! refusal is [`ErrorKind::Import`]), so nothing is ever half-loaded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use xenstore_db::domain::RingAddress;
use xenstore_db::state::{
    ConnState, DomainState, EngineState, NodeState, SpecialPermsState, TransactionState, WatchState,
};
use xenstore_db::watch::WatchId;
use xenstore_db::{Caller, Config, ConnId, Engine, Quotas};
use xenstore_wire::Perm as DbPerm;

use crate::db::{quotas_from_stream, quotas_to_stream};
use crate::{
    read, write, ConnSpec, Connection, DomainData, Error, ErrorKind, GlobalData, GlobalQuota, Location, Node, Record,
    Stream, Transaction, Watch, DEPTH_UNLIMITED,
};

#[cfg(doc)]
use crate::{EXTENSION_FIRST, EXTENSION_LAST};

/// Extension record type: the engine's extras (once).
pub const EXT_ENGINE: u32 = 0x5853_0001;
/// Extension record type: one whole open transaction.
pub const EXT_TRANSACTION: u32 = 0x5853_0002;
/// Extension record type: the daemon's own (not the engine's) state, an
/// opaque body its driver defines ([`DaemonState::daemon`]); at most once.
pub const EXT_DAEMON: u32 = 0x5853_0003;
/// `tdomid` of a ring connection without a target.
pub const DOMID_INVALID: u16 = 0x7ff4;

/// The whole daemon state a live update hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonState {
    /// The store engine's state.
    pub engine: EngineState,
    /// Listening socket and event-channel descriptors (GLOBAL_DATA), if any.
    pub global: Option<GlobalData>,
    /// The transport of each connection that has one, any order.
    pub conns: Vec<ConnTransport>,
    /// What the daemon driving the engine hands over besides (xenstored:
    /// its event-channel handle's descriptors and bindings), opaque here;
    /// carried in an [`EXT_DAEMON`] record.
    pub daemon: Option<Vec<u8>>,
}

/// The transport of one engine connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnTransport {
    /// The engine's id of the connection.
    pub conn: ConnId,
    /// A ring (domid, tdomid, evtchn) or a socket descriptor.
    pub spec: ConnSpec,
    /// Read but not yet handled (a partial request), at most 65535 octets.
    pub in_data: Vec<u8>,
    /// How many octets at the start of `out_data` are a partial response.
    pub out_resp_len: u16,
    /// Queued output not yet written.
    pub out_data: Vec<u8>,
}

/// The body of [`EXT_ENGINE`].
#[derive(Debug, Serialize, Deserialize)]
struct Extras {
    config: Config,
    generation: u64,
    next_conn: ConnId,
    next_tx: u32,
    next_watch: WatchId,
    /// `(meta_gen, list_gen)` per committed `NODE_DATA`, in record order.
    node_gens: Vec<(u64, u64)>,
    /// Every engine connection, in the engine's order.
    conns: Vec<ConnExtra>,
    /// The engine id of each watch record, in record order.
    watch_ids: Vec<WatchId>,
    /// Watches of connections without a transport.
    hidden_watches: Vec<WatchState>,
    /// Per `DOMAIN_DATA` record, in record order.
    domains: Vec<DomainExtra>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ConnExtra {
    id: ConnId,
    caller: Caller,
    /// Its `CONNECTION_DATA` id, when it has a transport.
    stream_id: Option<u32>,
    watches: Vec<WatchId>,
    transactions: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DomainExtra {
    since_gen: u64,
    owned: usize,
    target: Option<u16>,
    introduced: Option<RingAddress>,
    release_fired: bool,
    ring_conn: Option<ConnId>,
}

fn unrepresentable(what: String) -> Error {
    Error { at: Location::default(), kind: ErrorKind::Unrepresentable(what) }
}

fn mismatch(what: impl Into<String>) -> Error {
    Error { at: Location::default(), kind: ErrorKind::ExtensionMismatch(what.into()) }
}

fn inconsistent(what: impl Into<String>) -> Error {
    Error { at: Location::default(), kind: ErrorKind::Inconsistent(what.into()) }
}

/// The home of a domain, which relative paths are below.
fn home(domid: u16) -> String {
    format!("/local/domain/{domid}")
}

/// The stream of a daemon state (see the module docs).
pub fn to_stream(state: &DaemonState) -> Result<Stream, Error> {
    let e = &state.engine;
    let mut records = Vec::new();
    if let Some(g) = state.global {
        records.push(Record::Global(g));
    }
    records.push(Record::GlobalQuota(GlobalQuota::from(&e.config)));

    let callers: HashMap<ConnId, Caller> = e.conns.iter().map(|c| (c.id, c.caller)).collect();
    let mut stream_ids: HashMap<ConnId, u32> = HashMap::new();
    for (i, t) in state.conns.iter().enumerate() {
        if !callers.contains_key(&t.conn) {
            return Err(unrepresentable(format!("transport for unknown connection {}", t.conn)));
        }
        let id = u32::try_from(i + 1).map_err(|_| unrepresentable("too many connections".into()))?;
        if stream_ids.insert(t.conn, id).is_some() {
            return Err(unrepresentable(format!("two transports for connection {}", t.conn)));
        }
    }
    let mut watch_ids = Vec::new();
    let mut hidden_watches = Vec::new();
    for t in &state.conns {
        let conn_id = stream_ids[&t.conn];
        records.push(Record::Connection(Connection {
            id: conn_id,
            spec: t.spec,
            in_data: t.in_data.clone(),
            out_resp_len: t.out_resp_len,
            out_data: t.out_data.clone(),
            unique_id: None,
        }));
        for w in e.watches.iter().filter(|w| w.conn == t.conn) {
            records.push(Record::Watch(watch_record(w, conn_id, callers[&t.conn])?));
            watch_ids.push(w.id);
        }
        for tx in e.transactions.iter().filter(|tx| tx.conn == t.conn) {
            records.push(Record::Transaction(Transaction { conn_id, tx_id: tx.id }));
        }
    }
    for w in &e.watches {
        if !callers.contains_key(&w.conn) {
            return Err(unrepresentable(format!("watch {} of unknown connection {}", w.id, w.conn)));
        }
        if !stream_ids.contains_key(&w.conn) {
            hidden_watches.push(w.clone());
        }
    }

    let node_gens = push_nodes(&mut records, &e.nodes)?;
    for s in &e.special_perms {
        records.push(Record::Node(Node {
            pending: None,
            path: s.name.clone(),
            value: Vec::new(),
            perms: s.perms.iter().copied().map(Into::into).collect(),
        }));
    }
    let mut domains = Vec::new();
    for d in &e.domains {
        records.push(Record::Domain(DomainData::from(d)));
        domains.push(DomainExtra {
            since_gen: d.since_gen,
            owned: d.owned,
            target: d.target,
            introduced: d.introduced,
            release_fired: d.release_fired,
            ring_conn: d.ring_conn,
        });
    }
    let extras = Extras {
        config: e.config.clone(),
        generation: e.generation,
        next_conn: e.next_conn,
        next_tx: e.next_tx,
        next_watch: e.next_watch,
        node_gens,
        conns: e
            .conns
            .iter()
            .map(|c| ConnExtra {
                id: c.id,
                caller: c.caller,
                stream_id: stream_ids.get(&c.id).copied(),
                watches: c.watches.clone(),
                transactions: c.transactions.clone(),
            })
            .collect(),
        watch_ids,
        hidden_watches,
        domains,
    };
    records.push(Record::Extension { kind: EXT_ENGINE, body: to_postcard(&extras)? });
    if let Some(body) = &state.daemon {
        records.push(Record::Extension { kind: EXT_DAEMON, body: body.clone() });
    }
    for tx in &e.transactions {
        records.push(Record::Extension { kind: EXT_TRANSACTION, body: to_postcard(tx)? });
    }
    Stream::new(records)
}

fn to_postcard<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(value).map_err(|e| unrepresentable(format!("extension encoding: {e}")))
}

fn from_postcard<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error {
            at: Location::default(),
            kind: ErrorKind::BadExtension(format!("{} octets after the value", rest.len())),
        }),
        Err(e) => Err(Error { at: Location::default(), kind: ErrorKind::BadExtension(e.to_string()) }),
    }
}

/// The Xen record of a watch of a connection running as `caller`.
fn watch_record(w: &WatchState, conn_id: u32, caller: Caller) -> Result<Watch, Error> {
    let path = if w.relative {
        let home = home(caller.domid);
        match w.path.strip_prefix(&home).and_then(|p| p.strip_prefix('/')) {
            Some(rel) if !rel.is_empty() => rel.to_owned(),
            _ => return Err(unrepresentable(format!("relative watch {} outside its home", w.id))),
        }
    } else {
        w.path.clone()
    };
    let depth = match w.depth {
        None => DEPTH_UNLIMITED,
        Some(d) => u16::try_from(d)
            .ok()
            .filter(|&d| d != DEPTH_UNLIMITED)
            .ok_or_else(|| unrepresentable(format!("watch {} depth {d}", w.id)))?,
    };
    Ok(Watch { conn_id, path, token: w.token.clone(), depth: Some(depth) })
}

/// `NODE_DATA` for every node, depth first from `/`, children in their
/// order; the generations in the same order.
fn push_nodes(records: &mut Vec<Record>, nodes: &[NodeState]) -> Result<Vec<(u64, u64)>, Error> {
    let by_path: HashMap<&str, &NodeState> = nodes.iter().map(|n| (n.path.as_str(), n)).collect();
    let mut gens = Vec::with_capacity(nodes.len());
    let mut stack = vec!["/".to_owned()];
    while let Some(path) = stack.pop() {
        let Some(n) = by_path.get(path.as_str()) else {
            return Err(unrepresentable(format!("node {path} listed but missing")));
        };
        records.push(Record::Node(Node::from(*n)));
        gens.push((n.meta_gen, n.list_gen));
        let prefix = if path == "/" { "" } else { path.as_str() };
        stack.extend(n.children.iter().rev().map(|c| format!("{prefix}/{c}")));
        if gens.len() > nodes.len() {
            return Err(unrepresentable("a node is listed twice".into()));
        }
    }
    if gens.len() != nodes.len() {
        return Err(unrepresentable("nodes not reachable from /".into()));
    }
    Ok(gens)
}

/// A one-line summary of one of our extension records, for dumps; `None`
/// for a type we do not define or a body that does not decode.
#[must_use]
pub fn summarize_extension(kind: u32, body: &[u8]) -> Option<String> {
    match kind {
        EXT_ENGINE => {
            let x: Extras = from_postcard(body).ok()?;
            Some(format!(
                "engine extras: generation={} next-conn={} next-tx={} next-watch={} node-gens={} conns={} \
                 watch-ids={} hidden-watches={} domains={}",
                x.generation,
                x.next_conn,
                x.next_tx,
                x.next_watch,
                x.node_gens.len(),
                x.conns.len(),
                x.watch_ids.len(),
                x.hidden_watches.len(),
                x.domains.len()
            ))
        }
        EXT_DAEMON => Some(format!("daemon extras: {} octets", body.len())),
        EXT_TRANSACTION => {
            let t: TransactionState = from_postcard(body).ok()?;
            Some(format!(
                "transaction id={} conn={} base-nodes={} work-nodes={} seen={} written={} removed={} changes={} \
                 node-delta={} failed={}",
                t.id,
                t.conn,
                t.base.len(),
                t.work.len(),
                t.seen.len(),
                t.written.len(),
                t.removed.len(),
                t.changes.len(),
                t.node_delta,
                t.failed
            ))
        }
        _ => None,
    }
}

/// [`to_stream`] then [`write()`] (version 2, little-endian).
pub fn encode(state: &DaemonState) -> Result<Vec<u8>, Error> {
    Ok(write(&to_stream(state)?))
}

/// [`read`] then [`from_stream`].
pub fn decode(bytes: &[u8]) -> Result<DaemonState, Error> {
    from_stream(&read(bytes)?)
}

/// The records of a stream, sorted by kind.
#[derive(Default)]
struct Parts<'a> {
    global: Option<GlobalData>,
    quota: Option<&'a GlobalQuota>,
    conns: Vec<&'a Connection>,
    watches: Vec<&'a Watch>,
    txs: Vec<Transaction>,
    nodes: Vec<&'a Node>,
    specials: Vec<&'a Node>,
    domains: Vec<&'a DomainData>,
    engine: Option<&'a [u8]>,
    tx_bodies: Vec<&'a [u8]>,
    daemon: Option<&'a [u8]>,
}

/// The daemon state a stream describes (see the module docs): exact with
/// our extension records, derived without; always accepted by
/// [`Engine::import`].
pub fn from_stream(stream: &Stream) -> Result<DaemonState, Error> {
    let mut p = Parts::default();
    for (index, r) in stream.records().iter().enumerate() {
        match r {
            Record::Global(g) => p.global = Some(*g),
            Record::GlobalQuota(q) => p.quota = Some(q),
            Record::Connection(c) => p.conns.push(c),
            Record::Watch(w) => p.watches.push(w),
            Record::Transaction(t) => p.txs.push(*t),
            Record::Node(n) if n.pending.is_some() => {}
            Record::Node(n) if n.path.starts_with('@') => p.specials.push(n),
            Record::Node(n) => p.nodes.push(n),
            Record::Domain(d) => p.domains.push(d),
            Record::Extension { kind: EXT_ENGINE, body } => {
                if p.engine.replace(body).is_some() {
                    return Err(mismatch("two engine extension records"));
                }
            }
            Record::Extension { kind: EXT_TRANSACTION, body } => p.tx_bodies.push(body),
            Record::Extension { kind: EXT_DAEMON, body } => {
                if p.daemon.replace(body).is_some() {
                    return Err(mismatch("two daemon extension records"));
                }
            }
            Record::Extension { kind, .. } => {
                return Err(Error {
                    at: Location { offset: None, record: Some(index) },
                    kind: ErrorKind::BadExtension(format!("unknown extension record type {kind:#x}")),
                })
            }
        }
    }
    let state = match p.engine {
        Some(body) => with_extras(&p, from_postcard(body)?)?,
        None if !p.tx_bodies.is_empty() || p.daemon.is_some() => {
            return Err(mismatch("transaction or daemon extension without the engine one"))
        }
        None => derived(&p)?,
    };
    if let Err(e) = Engine::import(state.engine.clone()) {
        return Err(Error { at: Location::default(), kind: ErrorKind::Import(e) });
    }
    Ok(state)
}

/// The committed nodes of the records, by path, with children in record
/// order; `gens` gives each record's generations.
fn build_nodes(records: &[&Node], gens: impl Fn(usize) -> (u64, u64)) -> Result<Vec<NodeState>, Error> {
    let mut nodes: BTreeMap<String, NodeState> = BTreeMap::new();
    for (i, n) in records.iter().enumerate() {
        let (meta_gen, list_gen) = gens(i);
        if n.path != "/" {
            let (parent, leaf) = match n.path.rsplit_once('/') {
                Some(("", leaf)) => ("/", leaf),
                Some((parent, leaf)) => (parent, leaf),
                None => return Err(inconsistent(format!("node path {} is not absolute", n.path))),
            };
            let Some(parent) = nodes.get_mut(parent) else {
                return Err(inconsistent(format!("node {} comes before its parent", n.path)));
            };
            parent.children.push(leaf.to_owned());
        }
        let node = NodeState {
            path: n.path.clone(),
            value: n.value.clone(),
            perms: n.perms.iter().copied().map(DbPerm::from).collect(),
            meta_gen,
            list_gen,
            children: Vec::new(),
        };
        if nodes.insert(n.path.clone(), node).is_some() {
            return Err(inconsistent(format!("node {} appears twice", n.path)));
        }
    }
    Ok(nodes.into_values().collect())
}

/// The special paths' permissions from their records, in the engine's
/// order (the one [`Engine::export`] gives), the engine's defaults for
/// those without a record.
fn specials(p: &Parts<'_>) -> Result<Vec<SpecialPermsState>, Error> {
    let mut out = Engine::new(Config::default()).export().special_perms;
    let mut seen = BTreeSet::new();
    for n in &p.specials {
        if !seen.insert(n.path.as_str()) {
            return Err(inconsistent(format!("{} appears twice", n.path)));
        }
        let perms = n.perms.iter().copied().map(DbPerm::from).collect();
        match out.iter_mut().find(|s| s.name == n.path) {
            Some(s) => s.perms = perms,
            None => return Err(inconsistent(format!("unknown special path {}", n.path))),
        }
    }
    Ok(out)
}

fn transport(c: &Connection, conn: ConnId) -> ConnTransport {
    ConnTransport {
        conn,
        spec: c.spec,
        in_data: c.in_data.clone(),
        out_resp_len: c.out_resp_len,
        out_data: c.out_data.clone(),
    }
}

/// The Xen watch record as the engine's watch of `conn` running as
/// `caller`.
fn watch_state(w: &Watch, id: WatchId, conn: ConnId, caller: Caller) -> WatchState {
    let relative = !(w.path.starts_with('/') || w.path.starts_with('@'));
    let path = if relative { format!("{}/{}", home(caller.domid), w.path) } else { w.path.clone() };
    let depth = match w.depth {
        None | Some(DEPTH_UNLIMITED) => None,
        Some(d) => Some(u32::from(d)),
    };
    WatchState { id, conn, path, token: w.token.clone(), depth, relative }
}

fn with_extras(p: &Parts<'_>, x: Extras) -> Result<DaemonState, Error> {
    let mut transports = Vec::new();
    if x.node_gens.len() != p.nodes.len() {
        return Err(mismatch(format!(
            "{} node generations for {} NODE_DATA records",
            x.node_gens.len(),
            p.nodes.len()
        )));
    }
    let nodes = build_nodes(&p.nodes, |i| x.node_gens[i])?;
    match p.quota {
        Some(q) if q.per_domain == quotas_to_stream(&x.config.quotas) && q.global.is_empty() => {}
        _ => return Err(mismatch("GLOBAL_QUOTA_DATA differs from the configuration")),
    }

    // Connections: every CONNECTION_DATA claimed by exactly one engine
    // connection.
    let by_stream: HashMap<u32, &Connection> = p.conns.iter().map(|c| (c.id, *c)).collect();
    let mut engine_of: HashMap<u32, (ConnId, Caller)> = HashMap::new();
    let mut conns = Vec::new();
    for c in &x.conns {
        if let Some(s) = c.stream_id {
            if !by_stream.contains_key(&s) {
                return Err(mismatch(format!("connection {} names no CONNECTION_DATA {s}", c.id)));
            }
            if engine_of.insert(s, (c.id, c.caller)).is_some() {
                return Err(mismatch(format!("CONNECTION_DATA {s} claimed twice")));
            }
        }
        conns.push(ConnState {
            id: c.id,
            caller: c.caller,
            watches: c.watches.clone(),
            transactions: c.transactions.clone(),
        });
    }
    for c in &p.conns {
        let Some(&(id, _)) = engine_of.get(&c.id) else {
            return Err(mismatch(format!("CONNECTION_DATA {} belongs to no engine connection", c.id)));
        };
        transports.push(transport(c, id));
    }

    if x.watch_ids.len() != p.watches.len() {
        return Err(mismatch(format!("{} watch ids for {} watch records", x.watch_ids.len(), p.watches.len())));
    }
    let mut watches = Vec::new();
    for (w, &id) in p.watches.iter().zip(&x.watch_ids) {
        let (conn, caller) = engine_of[&w.conn_id];
        watches.push(watch_state(w, id, conn, caller));
    }
    for w in &x.hidden_watches {
        if x.conns.iter().any(|c| c.id == w.conn && c.stream_id.is_some()) {
            return Err(mismatch(format!("watch {} of a connection with a transport has no record", w.id)));
        }
        watches.push(w.clone());
    }
    watches.sort_by_key(|w| w.id);

    let mut transactions = Vec::new();
    for body in &p.tx_bodies {
        transactions.push(from_postcard::<TransactionState>(body)?);
    }
    let recorded: BTreeSet<(ConnId, u32)> = p.txs.iter().map(|t| (engine_of[&t.conn_id].0, t.tx_id)).collect();
    let carried: BTreeSet<(ConnId, u32)> = transactions
        .iter()
        .filter(|t| x.conns.iter().any(|c| c.id == t.conn && c.stream_id.is_some()))
        .map(|t| (t.conn, t.id))
        .collect();
    if recorded != carried || recorded.len() != p.txs.len() {
        return Err(mismatch("TRANSACTION_DATA records differ from the carried transactions"));
    }

    if x.domains.len() != p.domains.len() {
        return Err(mismatch(format!("{} domain extras for {} DOMAIN_DATA records", x.domains.len(), p.domains.len())));
    }
    let domains = p
        .domains
        .iter()
        .zip(x.domains)
        .map(|(d, e)| DomainState {
            domid: d.domid,
            since_gen: e.since_gen,
            owned: e.owned,
            quotas: quotas_from_stream(&d.quotas, x.config.quotas),
            target: e.target,
            introduced: e.introduced,
            release_fired: e.release_fired,
            features: d.features,
            ring_conn: e.ring_conn,
        })
        .collect();

    Ok(DaemonState {
        engine: EngineState {
            config: x.config,
            generation: x.generation,
            next_conn: x.next_conn,
            next_tx: x.next_tx,
            next_watch: x.next_watch,
            nodes,
            domains,
            conns,
            watches,
            transactions,
            special_perms: specials(p)?,
        },
        global: p.global,
        conns: transports,
        daemon: p.daemon.map(<[u8]>::to_vec),
    })
}

/// The state of a stream without our extension records.
fn derived(p: &Parts<'_>) -> Result<DaemonState, Error> {
    let generation = u64::try_from(p.nodes.len()).unwrap_or(u64::MAX);
    let nodes = build_nodes(&p.nodes, |_| (0, 0))?;
    let mut config = Config::default();
    if let Some(q) = p.quota {
        config.quotas = quotas_from_stream(&q.per_domain, config.quotas);
    }
    let new_domain = |domid: u16, quotas: Quotas| DomainState {
        domid,
        since_gen: 0,
        owned: 0,
        quotas,
        target: None,
        introduced: None,
        release_fired: false,
        features: config.features,
        ring_conn: None,
    };
    let mut domains: BTreeMap<u16, DomainState> = BTreeMap::new();
    for d in &p.domains {
        let mut state = new_domain(d.domid, quotas_from_stream(&d.quotas, config.quotas));
        state.features = d.features;
        domains.insert(d.domid, state);
    }
    domains.entry(0).or_insert_with(|| new_domain(0, config.quotas));

    let mut conns = Vec::new();
    let mut transports = Vec::new();
    let mut engine_of: HashMap<u32, (ConnId, Caller)> = HashMap::new();
    for (i, c) in p.conns.iter().enumerate() {
        let id = ConnId::try_from(i + 1).unwrap_or(ConnId::MAX);
        let caller = match c.spec {
            ConnSpec::Socket { .. } | ConnSpec::Ring { domid: 0, .. } => Caller::DOM0,
            ConnSpec::Ring { domid, .. } => Caller::guest(domid),
        };
        if let ConnSpec::Ring { domid, tdomid, evtchn } = c.spec {
            if domid != 0 {
                let d = domains.entry(domid).or_insert_with(|| new_domain(domid, config.quotas));
                // A second ring connection of a domain (not something C
                // writes) runs as the guest but does not replace the first.
                if d.ring_conn.is_none() {
                    d.ring_conn = Some(id);
                    d.introduced = Some(RingAddress { gfn: 0, port: evtchn });
                }
                if tdomid != DOMID_INVALID {
                    d.target = Some(tdomid);
                    domains.entry(tdomid).or_insert_with(|| new_domain(tdomid, config.quotas));
                }
            }
        }
        engine_of.insert(c.id, (id, caller));
        conns.push(ConnState { id, caller, watches: Vec::new(), transactions: Vec::new() });
        transports.push(transport(c, id));
    }
    let mut watches = Vec::new();
    for (i, w) in p.watches.iter().enumerate() {
        let id = WatchId::try_from(i + 1).unwrap_or(WatchId::MAX);
        let (conn, caller) = engine_of[&w.conn_id];
        if let Some(c) = conns.iter_mut().find(|c| c.id == conn) {
            c.watches.push(id);
        }
        watches.push(watch_state(w, id, conn, caller));
    }
    for n in &nodes {
        if let Some(owner) = n.perms.first().map(|p| p.domid) {
            let d = domains.entry(owner).or_insert_with(|| new_domain(owner, config.quotas));
            if owner != 0 {
                d.owned += 1;
            }
        }
    }
    let special_perms = specials(p)?;
    let next_conn = ConnId::try_from(conns.len() + 1).unwrap_or(ConnId::MAX);
    let next_watch = WatchId::try_from(watches.len() + 1).unwrap_or(WatchId::MAX);
    Ok(DaemonState {
        engine: EngineState {
            config,
            generation,
            next_conn,
            next_tx: 1,
            next_watch,
            nodes,
            domains: domains.into_values().collect(),
            conns,
            watches,
            transactions: Vec::new(),
            special_perms,
        },
        global: p.global,
        conns: transports,
        daemon: None,
    })
}
