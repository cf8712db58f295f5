//! The engine: the whole store state and the one entry point for requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use xenstore_wire::{features, path};
use xenstore_wire::{Access, DomId, ErrorCode, PermList, Reply, Request};

use crate::applied::Applied;
use crate::ctx::{Ctx, Store};
use crate::domain::Domain;
use crate::effect::Effect;
use crate::event::Delivery;
use crate::existence::Exists;
use crate::node::Node;
use crate::permissions::Caller;
use crate::quota::{QuotaExceeded, Quotas};
use crate::quota_charge;
use crate::tree::Tree;
use crate::tx::Transaction;
use crate::watch::{WatchId, Watches};

/// Identifies a connection (a socket client or a domain's ring).
pub type ConnId = u64;

/// Settings fixed when the engine is created.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Global quotas: the values for domains without their own.
    pub quotas: Quotas,
    /// Keep a removed domain's nodes (given to dom0) instead of deleting them.
    pub keep_orphans: bool,
    /// Ring features this store supports and advertises by default.
    pub features: u32,
    /// Open transactions per connection for every caller, privileged ones
    /// included (quotas spare dom0, this does not): a leaking client cannot
    /// pin unbounded snapshots.
    pub max_transactions_per_conn: u32,
    /// Distinct nodes one transaction may touch, for every caller.
    pub max_transaction_nodes: u32,
    /// Warning levels (`quota-soft`): kept and reported for CONTROL,
    /// never enforced.
    pub soft_quotas: Quotas,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quotas: Quotas::default(),
            keep_orphans: false,
            features: features::RECONNECTION | features::ERROR | features::WATCH_DEPTH | features::DOMID_ANY,
            max_transactions_per_conn: 256,
            max_transaction_nodes: 65536,
            soft_quotas: Quotas::unlimited(),
        }
    }
}

/// What a request produced.
///
/// The driver first carries out `effects`, in order (if one fails it calls
/// [`Engine::effect_failed`] and sends that outcome instead of this one);
/// a driver that keeps a journal then appends the `applied` list of the
/// outcome it sends, so the change is durable before anyone hears of it;
/// then it sends `events` (each on its connection; some may be the
/// caller's own, and the C daemon sends those before the reply), then the
/// reply to the caller, then `after_reply` (a new watch's initial event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reply, or the error to send.
    pub reply: Result<Reply, ErrorCode>,
    /// Watch events caused by the request.
    pub events: Vec<Delivery>,
    /// The event a new watch fires at once, to the caller, after the reply.
    pub after_reply: Option<Delivery>,
    /// Which quota refused the request, for the daemon's log.
    pub quota: Option<QuotaExceeded>,
    /// What the driver must do outside the store, before anything is sent.
    pub effects: Vec<Effect>,
    /// The changes applied to the persistent state, in order, for a
    /// journal written before the reply (see [`crate::applied`]).
    pub applied: Vec<Applied>,
}

impl Outcome {
    /// A successful reply with no events.
    pub fn ok(reply: Reply) -> Outcome {
        Outcome {
            reply: Ok(reply),
            events: Vec::new(),
            after_reply: None,
            quota: None,
            effects: Vec::new(),
            applied: Vec::new(),
        }
    }

    /// An error reply with no events.
    pub fn error(e: ErrorCode) -> Outcome {
        Outcome {
            reply: Err(e),
            events: Vec::new(),
            after_reply: None,
            quota: None,
            effects: Vec::new(),
            applied: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) caller: Caller,
    pub(crate) watches: Vec<WatchId>,
    pub(crate) txs: Vec<u32>,
}

/// The store engine: nodes, permissions, transactions, watches, quotas and
/// domains, with no I/O and no clock.
///
/// Call order: [`Engine::connect`] for each socket client with its
/// identity (a domain's ring connection is registered by INTRODUCE and
/// named in its [`Effect::AttachRing`]); [`Engine::handle`] for each parsed
/// request, then carry out the [`Outcome`]'s effects (reporting a failure
/// once with [`Engine::effect_failed`], before anything else reaches the
/// engine), journal its `applied` list, and send it as it says;
/// [`Engine::reset`] when a ring reconnects or is stopped;
/// [`Engine::domain_shutdown`] when a domain stops running and
/// [`Engine::remove_domain`] when it is gone, handling their outcomes the
/// same way; [`Engine::disconnect`] when a socket client goes away;
/// [`Engine::export`] and [`Engine::import`] between two requests, to hand
/// the state to another process. The engine never calls back into its
/// driver, and the same inputs always give the same outputs.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) tree: Tree,
    pub(crate) gen: u64,
    pub(crate) config: Config,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) next_conn: ConnId,
    pub(crate) txs: BTreeMap<u32, Transaction>,
    pub(crate) next_tx: u32,
    pub(crate) domains: BTreeMap<DomId, Domain>,
    pub(crate) watches: Watches,
    pub(crate) special_perms: BTreeMap<&'static str, PermList>,
    pub(crate) empty: Arc<[u8]>,
    /// Memory still held by connections of domains whose record is gone
    /// (`memory.rs`), given back to the record if it returns.
    pub(crate) orphaned_memory: BTreeMap<DomId, usize>,
    /// Domains that became known since the last outcome, for its
    /// [`Applied::Known`] entries (listed before the request's changes).
    pub(crate) newly_known: Vec<DomId>,
    /// Those of the last request's [`Applied::Known`] entries that came
    /// before it, when it asked for effects: [`Engine::effect_failed`]
    /// makes them pending again (the failed outcome lists nothing).
    pub(crate) known_before_request: Vec<DomId>,
    /// Whether any domain was ever given a target (SET_TARGET, or the
    /// stream or journal said so): until then a domain's removal has no
    /// target to clear and need not look at every domain. Never reset, so
    /// it can only make that look happen when it is not needed.
    pub(crate) any_target: bool,
}

/// `@releaseDomain`'s permissions at start: dom0's, readable by every
/// domain (`n0`, `r` DOMID_ANY).
fn release_domain_perms() -> PermList {
    let entries = vec![
        xenstore_wire::Perm { domid: 0, access: Access::None },
        xenstore_wire::Perm { domid: xenstore_wire::DOMID_ANY, access: Access::Read },
    ];
    PermList::new(entries).unwrap_or_else(|| PermList::owned_by(0, Access::None))
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Config::default())
    }
}

impl Engine {
    /// A store holding `/`, `/tool` and `/tool/xenstored`, owned by dom0 with
    /// no access for others, as the C daemon starts.
    pub fn new(config: Config) -> Engine {
        let empty: Arc<[u8]> = Arc::from(&b""[..]);
        let root_perms = PermList::owned_by(0, Access::None);
        let mut engine = Engine {
            tree: Tree::with_root(Node::new(b"", root_perms.clone(), 1)),
            gen: 1,
            conns: BTreeMap::new(),
            next_conn: 1,
            txs: BTreeMap::new(),
            next_tx: 1,
            domains: BTreeMap::new(),
            any_target: false,
            watches: Watches::default(),
            // As Xen 4.22's `setup_structure`: every domain may watch
            // `@releaseDomain` (DOMID_ANY may read it); `@introduceDomain`
            // is dom0's.
            special_perms: [
                (path::INTRODUCE_DOMAIN, root_perms.clone()),
                (path::RELEASE_DOMAIN, release_domain_perms()),
            ]
            .into_iter()
            .collect(),
            empty,
            config,
            orphaned_memory: BTreeMap::new(),
            newly_known: Vec::new(),
            known_before_request: Vec::new(),
        };
        engine.ensure_domain(0);
        engine.newly_known.clear();
        for p in ["/tool", "/tool/xenstored"] {
            engine.gen += 1;
            let gen = engine.gen;
            engine.tree.create(p, Node::new(b"", root_perms.clone(), gen), gen);
        }
        engine.set_memory_from_recount();
        engine
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Registers a client with its identity.
    pub fn connect(&mut self, caller: Caller) -> ConnId {
        self.ensure_domain(caller.domid);
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, Conn { caller, watches: Vec::new(), txs: Vec::new() });
        id
    }

    /// Forgets a client: its watches and open transactions go with it.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.reset_conn(conn);
        self.conns.remove(&conn);
    }

    /// The identity a connection runs with.
    pub fn caller(&self, conn: ConnId) -> Option<Caller> {
        self.conns.get(&conn).map(|c| c.caller)
    }

    /// Drops a client's watches and open transactions but keeps the
    /// client (a ring reconnection, or a ring stopped for an error).
    pub fn reset(&mut self, conn: ConnId) {
        self.reset_conn(conn);
    }

    /// The ring address of an introduced domain (`None` if not
    /// introduced), as INTRODUCE gave it.
    pub fn introduced(&self, domid: DomId) -> Option<(u64, u32)> {
        self.domains.get(&domid).and_then(|d| d.introduced).map(|r| (r.gfn, r.port))
    }

    /// The ring features to advertise to a domain: SET_FEATURE's value, or
    /// the store's own.
    pub fn domain_features(&self, domid: DomId) -> u32 {
        self.domains.get(&domid).map_or(self.config.features, |d| d.features)
    }

    fn reset_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let domid = c.caller.domid;
        let (watches, txs) = (std::mem::take(&mut c.watches), std::mem::take(&mut c.txs));
        let mut freed = 0;
        for id in watches {
            freed += self.watches.get(id).map_or(0, crate::memory::watch);
            self.watches.remove_id(id);
        }
        for tx in txs {
            freed += self.txs.remove(&tx).map_or(0, |t| t.memory);
        }
        self.release_memory(domid, freed);
    }

    pub(crate) fn ensure_domain(&mut self, domid: DomId) -> &mut Domain {
        let gen = &mut self.gen;
        let quotas = self.config.quotas;
        let features = self.config.features;
        let orphaned = &mut self.orphaned_memory;
        let newly_known = &mut self.newly_known;
        self.domains.entry(domid).or_insert_with(|| {
            *gen += 1;
            newly_known.push(domid);
            let mut domain = Domain::new(*gen, quotas, features);
            domain.memory = orphaned.remove(&domid).unwrap_or(0);
            domain
        })
    }

    /// The quotas that apply to a domain.
    pub fn quotas_of(&self, domid: DomId) -> Quotas {
        self.domains.get(&domid).map(|d| d.quotas).unwrap_or(self.config.quotas)
    }

    /// Number of nodes in the live store.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }

    /// Number of nodes a domain owns (dom0's are not counted).
    pub fn owned_count(&self, domid: DomId) -> usize {
        self.domains.get(&domid).map_or(0, |d| d.owned)
    }

    /// Number of registered watches.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// Number of open transactions.
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    /// Open transactions of one connection (0 for an unknown one).
    pub fn transactions_of(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.txs.len())
    }

    /// A live node's value and effective permissions, bypassing permission
    /// checks (for the daemon's own use and for tests).
    pub fn peek(&self, p: &str) -> Option<(Arc<[u8]>, PermList)> {
        let node = self.tree.get(p)?;
        Some((node.value.to_arc(), self.peek_perms(node)))
    }

    /// A live node's children, bypassing permission checks.
    pub fn peek_children(&self, p: &str) -> Option<Vec<Arc<str>>> {
        Some(self.tree.get(p)?.children.iter().map(Arc::from).collect())
    }

    /// Every live path in byte order, bypassing permission checks. Builds
    /// every path (nodes store only their leaf names): for tests and dumps.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.tree.iter().map(|(k, _)| k)
    }

    /// Handles one request from `conn` in transaction `tx_id` (0: none),
    /// every domain it names taken to exist (see [`Engine::handle_with`]).
    pub fn handle(&mut self, conn: ConnId, tx_id: u32, request: &Request<'_>) -> Outcome {
        self.handle_with(conn, tx_id, request, &mut |_| true)
    }

    /// [`Engine::handle`], with `exists` answering whether the hypervisor
    /// has a domain the request names and the store does not know (see
    /// `existence.rs`).
    pub fn handle_with(&mut self, conn: ConnId, tx_id: u32, request: &Request<'_>, exists: Exists<'_>) -> Outcome {
        // Domains known before the request stay listed if an effect of it
        // fails ([`Engine::effect_failed`] drops only the request's own).
        let before = std::mem::take(&mut self.newly_known);
        let mut outcome = self.dispatch(conn, tx_id, request, exists);
        self.newly_known.splice(0..0, before.iter().copied());
        // Kept only while an effect may still fail.
        self.known_before_request = if outcome.effects.is_empty() { Vec::new() } else { before };
        self.list_newly_known(&mut outcome);
        // No reply over the payload limit is ever produced.
        if outcome.reply.as_ref().is_ok_and(|r| r.payload_len() > xenstore_wire::PAYLOAD_MAX) {
            outcome.reply = Err(ErrorCode::E2BIG);
        }
        outcome
    }

    /// Puts the domains that became known since the last outcome at the
    /// front of `outcome`'s applied list. Every place that makes a domain
    /// known does so before it stamps a node naming it (so a replay judges
    /// permission entries stale exactly as the original did); the one
    /// exception, a created node's owner, is never judged stale.
    pub(crate) fn list_newly_known(&mut self, outcome: &mut Outcome) {
        if self.newly_known.is_empty() {
            return;
        }
        let mut applied: Vec<Applied> = self.newly_known.drain(..).map(|domid| Applied::Known { domid }).collect();
        applied.append(&mut outcome.applied);
        outcome.applied = applied;
    }

    fn dispatch(&mut self, conn: ConnId, tx_id: u32, request: &Request<'_>, exists: Exists<'_>) -> Outcome {
        let Some(caller) = self.caller(conn) else {
            return Outcome::error(ErrorCode::EIO);
        };
        // A transaction id must name one of the caller's open transactions,
        // whatever the request (C looks it up before dispatching); WATCH
        // and UNWATCH ignore it (C's XS_FLAG_NOTID).
        let ignores_tx = matches!(request, Request::Watch { .. } | Request::Unwatch { .. });
        if tx_id != 0 && !ignores_tx && self.txs.get(&tx_id).is_none_or(|tx| tx.conn != conn) {
            return Outcome::error(ErrorCode::ENOENT);
        }
        match request {
            Request::Read(p) => self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.read(p)),
            Request::Directory(p) => self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.directory(p)),
            Request::DirectoryPart { path: p, offset } => {
                let offset = *offset;
                self.node_op(conn, caller, tx_id, p, move |ctx, p| ctx.directory_part(p, offset))
            }
            Request::GetPerms(p) if p.starts_with('@') => self.special_get_perms(caller, p),
            Request::GetPerms(p) => self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.get_perms(p)),
            Request::Write { path: p, value } => self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.write(p, value)),
            Request::Mkdir(p) => self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.mkdir(p)),
            Request::Rm(p) => self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.rm(p)),
            Request::SetPerms { path: p, perms } if p.starts_with('@') => self.special_set_perms(caller, p, perms),
            Request::SetPerms { path: p, perms } => {
                // Known from now on, inside a transaction too (as the C
                // daemon allocates the domain at SET_PERMS): otherwise the
                // entry would count as stale for the rest of the
                // transaction, and children created there would not inherit
                // it (a toolstack writes a new domain's directory this way).
                if let Err(e) = self.admit_perm_domains(perms, exists) {
                    return Outcome::error(e);
                }
                self.node_op(conn, caller, tx_id, p, |ctx, p| ctx.set_perms(p, perms))
            }
            Request::Watch { path: p, token, depth } => self.watch(conn, caller, p, token, *depth),
            Request::Unwatch { path: p, token } => self.unwatch(conn, caller, p, token),
            Request::ResetWatches => {
                self.reset_conn(conn);
                Outcome::ok(Reply::Ok)
            }
            Request::TransactionStart => self.transaction_start(conn, caller, tx_id),
            Request::TransactionEnd { commit } => self.transaction_end(conn, tx_id, *commit),
            Request::Control(payload) => self.control(caller, payload),
            Request::GetDomainPath(domid) => Outcome::ok(Reply::DomainPath(path::domain_home(*domid))),
            Request::IsDomainIntroduced(domid) => {
                // A toolstack's question (C 4.17+ marks it `XS_FLAG_PRIV`):
                // a guest may not learn which other domains exist.
                if let Err(e) = crate::permissions::privileged_only(caller) {
                    return Outcome::error(e);
                }
                // DOMID_SELF is the caller, which is: C answers T.
                let introduced = *domid == 0
                    || *domid == xenstore_wire::DOMID_SELF
                    || self.domains.get(domid).is_some_and(|d| d.introduced.is_some());
                Outcome::ok(Reply::Bool(introduced))
            }
            Request::Introduce { domid, gfn, port } => self.introduce(caller, *domid, *gfn, *port),
            Request::Release(domid) => self.release(caller, *domid),
            Request::Resume(domid) => self.resume(caller, *domid),
            Request::SetTarget { domid, target } => {
                if caller.privileged && !(self.domain_exists(*domid, exists) && self.domain_exists(*target, exists)) {
                    return Outcome::error(ErrorCode::ENOENT);
                }
                self.set_target(caller, *domid, *target)
            }
            Request::GetFeature(Some(domid)) if caller.privileged && !self.domain_exists(*domid, exists) => {
                Outcome::error(ErrorCode::ENOENT)
            }
            Request::GetFeature(domid) => self.get_feature(caller, *domid),
            Request::SetFeature { domid, .. } if caller.privileged && !self.domain_exists(*domid, exists) => {
                Outcome::error(ErrorCode::ENOENT)
            }
            Request::SetFeature { domid, value } => self.set_feature(caller, *domid, *value),
            Request::GetQuota { domid, quota } => self.get_quota(caller, *domid, *quota),
            Request::SetQuota { domid, quota, value } => self.set_quota(caller, *domid, quota, *value),
        }
    }

    /// Makes a request path absolute and applies the path-length quota.
    pub(crate) fn canonical<'p>(
        &self,
        caller: Caller,
        p: &'p str,
    ) -> Result<std::borrow::Cow<'p, str>, (ErrorCode, Option<QuotaExceeded>)> {
        let canonical = path::canonicalize(p, caller.domid);
        if let Err(hit) = self.charge_path_length(caller, &canonical) {
            return Err((ErrorCode::EINVAL, Some(hit)));
        }
        if canonical.len() > xenstore_wire::ABS_PATH_MAX {
            return Err((ErrorCode::EINVAL, None));
        }
        Ok(canonical)
    }

    fn node_op(
        &mut self,
        conn: ConnId,
        caller: Caller,
        tx_id: u32,
        p: &str,
        op: impl FnOnce(&mut Ctx<'_>, &str) -> Result<Reply, ErrorCode>,
    ) -> Outcome {
        let canonical = match self.canonical(caller, p) {
            Ok(c) => c,
            Err((e, quota)) => return Outcome { quota, ..Outcome::error(e) },
        };
        if canonical.starts_with('@') {
            return Outcome::error(ErrorCode::EINVAL);
        }
        let quotas = self.quotas_of(caller.domid);
        let target = self.domains.get(&caller.domid).and_then(|d| d.target);
        let mut owned = self.owned_count(caller.domid);
        let memory_room = self.memory_room(caller);
        let Engine { tree, gen, txs, domains, empty, .. } = self;
        let store = if tx_id == 0 {
            Store::Live(tree)
        } else {
            match txs.get_mut(&tx_id) {
                Some(tx) if tx.conn == conn => {
                    owned = quota_charge::owned_in_tx(owned, tx.node_delta);
                    Store::Tx(tx)
                }
                _ => return Outcome::error(ErrorCode::ENOENT),
            }
        };
        let mut ctx = Ctx {
            caller,
            target,
            quotas,
            domains,
            store,
            gen,
            empty: empty.clone(),
            owned_now: owned,
            memory_room,
            tx_memory: 0,
            changes: Vec::new(),
            mutations: Vec::new(),
            quota_hit: None,
            applied: Vec::new(),
        };
        let reply = op(&mut ctx, &canonical);
        let Ctx { changes, mutations, quota_hit, store, applied, tx_memory, .. } = ctx;
        let (events, applied) = match store {
            // A transaction's changes wait for its commit; a quota refusal
            // inside it fails the whole transaction (C's `fail_transaction`).
            Store::Tx(tx) => {
                tx.failed |= quota_hit.is_some();
                tx.changes.extend(changes);
                let before = tx.memory;
                tx.memory =
                    usize::try_from(i64::try_from(before).unwrap_or(i64::MAX).saturating_add(tx_memory)).unwrap_or(0);
                let after = tx.memory;
                self.release_memory(caller.domid, before);
                self.hold_memory(caller.domid, after);
                (Vec::new(), Vec::new())
            }
            Store::Live(_) => {
                self.apply_mutations(mutations);
                (self.route_all(&changes), applied)
            }
        };
        Outcome { reply, events, quota: quota_hit, applied, ..Outcome::ok(Reply::Ok) }
    }
}
