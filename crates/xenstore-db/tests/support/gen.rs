//! Random runs against one engine: requests of every kind from dom0 and
//! guests (in and out of transactions), and what the daemon does around
//! them (connections coming and going, domains shutting down and being
//! removed). A [`Driver`] plays a run on an engine and records what each
//! step gave, so two engines fed the same run can be compared step by step.
//!
//! Paths, tokens, domains and quota values come from small sets so that
//! steps meet: nodes are written and then read, watched, removed and
//! re-permissioned by others, transactions conflict, quotas are reached.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use xenstore_db::{Caller, Config, ConnId, Engine, Outcome, QuotaKind};
use xenstore_wire::{Access, DomId, ErrorCode, Perm, PermList, Reply, Request};

/// One step of a run.
#[derive(Debug, Clone)]
pub enum Step {
    /// A request from the `who`-th connection (modulo their number).
    Request { who: usize, tx: TxPick, action: Action },
    /// A new connection.
    Connect(Caller),
    /// The `who`-th connection goes away.
    Disconnect(usize),
    /// The `who`-th connection's ring is reset.
    Reset(usize),
    /// A domain shuts down.
    Shutdown(DomId),
    /// A domain is gone.
    RemoveDomain(DomId),
    /// dom0 introduces a domain whose ring cannot be attached: one the
    /// other steps name too, or one they do not.
    IntroduceFails(DomId),
}

/// Which transaction id a request carries.
#[derive(Debug, Clone, Copy)]
pub enum TxPick {
    /// None (0).
    None,
    /// One of those the sender started and has not ended (0 if none).
    Own(usize),
    /// Any id ever handed out, whoever started it (0 if none).
    Any(usize),
}

/// A request, owning its fields.
#[derive(Debug, Clone)]
pub enum Action {
    Read(String),
    Directory(String),
    DirectoryPart(String, u32),
    GetPerms(String),
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    SetPerms(String, Vec<Perm>),
    Watch(String, Vec<u8>, Option<u32>),
    Unwatch(String, Vec<u8>),
    ResetWatches,
    TxStart,
    TxEnd(bool),
    Introduce(DomId, u64, u32),
    Release(DomId),
    Resume(DomId),
    IsIntroduced(DomId),
    SetTarget(DomId, DomId),
    GetFeature(Option<DomId>),
    SetFeature(DomId, u32),
    GetQuota(Option<DomId>, String),
    SetQuota(Option<DomId>, String, u32),
    Check,
}

impl Action {
    /// The request, borrowing from the action.
    pub fn request(&self) -> Request<'_> {
        match self {
            Action::Read(p) => Request::Read(p),
            Action::Directory(p) => Request::Directory(p),
            Action::DirectoryPart(p, offset) => Request::DirectoryPart { path: p, offset: *offset },
            Action::GetPerms(p) => Request::GetPerms(p),
            Action::Write(p, v) => Request::Write { path: p, value: v },
            Action::Mkdir(p) => Request::Mkdir(p),
            Action::Rm(p) => Request::Rm(p),
            Action::SetPerms(p, perms) => {
                Request::SetPerms { path: p, perms: PermList::new(perms.clone()).expect("generated non-empty") }
            }
            Action::Watch(p, token, depth) => Request::Watch { path: p, token, depth: *depth },
            Action::Unwatch(p, token) => Request::Unwatch { path: p, token },
            Action::ResetWatches => Request::ResetWatches,
            Action::TxStart => Request::TransactionStart,
            Action::TxEnd(commit) => Request::TransactionEnd { commit: *commit },
            Action::Introduce(domid, gfn, port) => Request::Introduce { domid: *domid, gfn: *gfn, port: *port },
            Action::Release(domid) => Request::Release(*domid),
            Action::Resume(domid) => Request::Resume(*domid),
            Action::IsIntroduced(domid) => Request::IsDomainIntroduced(*domid),
            Action::SetTarget(domid, target) => Request::SetTarget { domid: *domid, target: *target },
            Action::GetFeature(domid) => Request::GetFeature(*domid),
            Action::SetFeature(domid, value) => Request::SetFeature { domid: *domid, value: *value },
            Action::GetQuota(domid, quota) => Request::GetQuota { domid: *domid, quota: Some(quota) },
            Action::SetQuota(domid, quota, value) => Request::SetQuota { domid: *domid, quota, value: *value },
            Action::Check => Request::Control(b"check\0"),
        }
    }
}

/// What one step gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A request's outcome, with the transaction id it was sent in.
    Outcome(u32, Outcome),
    /// What a domain's shutdown or removal did.
    Domain(Outcome),
    /// A new connection's id.
    Connected(ConnId),
    /// Nothing to see.
    Nothing,
}

/// Plays runs on an engine: the connections it opened and the
/// transaction ids it was given.
#[derive(Debug, Clone)]
pub struct Driver {
    /// Open connections, in the order they were opened.
    pub conns: Vec<ConnId>,
    /// Every transaction id handed out, with the connection it went to.
    pub txs: Vec<(ConnId, u32)>,
    /// Those not known to be closed.
    pub open: Vec<(ConnId, u32)>,
}

impl Driver {
    /// Connects dom0 (privileged) and guests 1, 2 and 3.
    pub fn start(engine: &mut Engine) -> Driver {
        let callers = [Caller::DOM0, Caller::guest(1), Caller::guest(2), Caller::guest(3)];
        Driver { conns: callers.iter().map(|c| engine.connect(*c)).collect(), txs: Vec::new(), open: Vec::new() }
    }

    /// Plays one step.
    pub fn step(&mut self, engine: &mut Engine, step: &Step) -> Observed {
        let pick = |who: usize| self.conns.get(who % self.conns.len().max(1)).copied();
        match step {
            Step::Request { who, tx, action } => {
                let Some(conn) = pick(*who) else { return Observed::Nothing };
                let tx_id = self.tx_id(conn, *tx);
                let outcome = engine.handle(conn, tx_id, &action.request());
                match (&outcome.reply, action) {
                    (Ok(Reply::TransactionStart(id)), _) => {
                        self.txs.push((conn, *id));
                        self.open.push((conn, *id));
                    }
                    (Ok(_) | Err(ErrorCode::EAGAIN), Action::TxEnd(_)) => self.open.retain(|t| *t != (conn, tx_id)),
                    (_, Action::ResetWatches) => self.open.retain(|(c, _)| *c != conn),
                    _ => {}
                }
                Observed::Outcome(tx_id, outcome)
            }
            Step::Connect(caller) => {
                let conn = engine.connect(*caller);
                self.conns.push(conn);
                Observed::Connected(conn)
            }
            Step::Disconnect(who) => {
                // dom0's first connection stays, so runs keep a privileged caller.
                if self.conns.len() > 1 {
                    let i = 1 + who % (self.conns.len() - 1);
                    let conn = self.conns.remove(i);
                    self.open.retain(|(c, _)| *c != conn);
                    engine.disconnect(conn);
                }
                Observed::Nothing
            }
            Step::Reset(who) => {
                if let Some(conn) = pick(*who) {
                    self.open.retain(|(c, _)| *c != conn);
                    engine.reset(conn);
                }
                Observed::Nothing
            }
            Step::Shutdown(domid) => Observed::Domain(engine.domain_shutdown(*domid)),
            Step::RemoveDomain(domid) => Observed::Domain(engine.remove_domain(*domid)),
            Step::IntroduceFails(domid) => {
                let Some(dom0) = self.conns.first().copied() else { return Observed::Nothing };
                let mut outcome = engine.handle(dom0, 0, &Request::Introduce { domid: *domid, gfn: 9, port: 9 });
                if let Some(attach) = outcome.effects.first().cloned() {
                    outcome = engine.effect_failed(&attach);
                }
                Observed::Outcome(0, outcome)
            }
        }
    }

    fn tx_id(&self, conn: ConnId, pick: TxPick) -> u32 {
        match pick {
            TxPick::None => 0,
            TxPick::Own(i) => {
                let own: Vec<u32> = self.open.iter().filter(|(c, _)| *c == conn).map(|(_, t)| *t).collect();
                own.get(i % own.len().max(1)).copied().unwrap_or(0)
            }
            TxPick::Any(i) => self.txs.get(i % self.txs.len().max(1)).map_or(0, |(_, t)| *t),
        }
    }
}

/// A run of up to `max` steps.
pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    vec(step(), 0..max)
}

/// One step: mostly requests.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => (0..8usize, tx_pick(), action()).prop_map(|(who, tx, action)| Step::Request { who, tx, action }),
        // Ends of the sender's own transactions, mostly commits.
        6 => (0..8usize, 0..4usize, proptest::bool::weighted(0.8))
            .prop_map(|(who, i, commit)| Step::Request { who, tx: TxPick::Own(i), action: Action::TxEnd(commit) }),
        1 => caller().prop_map(Step::Connect),
        1 => (0..8usize).prop_map(Step::Disconnect),
        1 => (0..8usize).prop_map(Step::Reset),
        1 => domid().prop_map(Step::Shutdown),
        1 => domid().prop_map(Step::RemoveDomain),
        1 => prop_oneof![domid(), 7..9u16].prop_map(Step::IntroduceFails),
    ]
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![Just(Caller::DOM0), domid().prop_map(Caller::guest)]
}

fn tx_pick() -> impl Strategy<Value = TxPick> {
    prop_oneof![
        4 => Just(TxPick::None),
        4 => (0..4usize).prop_map(TxPick::Own),
        1 => (0..8usize).prop_map(TxPick::Any),
    ]
}

/// Guests 1 to 4 (0 now and then).
pub fn domid() -> impl Strategy<Value = DomId> {
    prop_oneof![9 => 1..5u16, 1 => Just(0u16)]
}

/// Node paths: absolute ones shared by everyone, guests' homes, relative.
pub fn path() -> impl Strategy<Value = String> {
    select(vec![
        "/",
        "/a",
        "/a/b",
        "/a/b/c",
        "/a/d",
        "/b",
        "/tool",
        "/local/domain/1",
        "/local/domain/1/x",
        "/local/domain/1/x/y",
        "/local/domain/2",
        "/local/domain/2/x",
        "x",
        "x/y",
        "z",
    ])
    .prop_map(str::to_owned)
}

fn watch_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => path(),
        1 => select(vec!["@introduceDomain", "@releaseDomain", "@releaseDomain/1"]).prop_map(str::to_owned),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    select(vec![&b""[..], b"v", b"value-2", b"n\0ul"]).prop_map(<[u8]>::to_vec)
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    select(vec![&b"t1"[..], b"t2", b"t3"]).prop_map(<[u8]>::to_vec)
}

fn perms() -> impl Strategy<Value = Vec<Perm>> {
    let access = select(vec![Access::None, Access::Read, Access::Write, Access::Both]);
    vec((0..5u16, access).prop_map(|(domid, access)| Perm { domid, access }), 1..4)
}

fn quota_name() -> impl Strategy<Value = String> {
    select(vec!["nodes", "watches", "transactions", "node-size", "permissions", "transaction-nodes", "bogus"])
        .prop_map(str::to_owned)
}

/// One request.
pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => path().prop_map(Action::Read),
        2 => path().prop_map(Action::Directory),
        1 => (path(), 0..6u32).prop_map(|(p, offset)| Action::DirectoryPart(p, offset)),
        2 => watch_path().prop_map(Action::GetPerms),
        8 => (path(), value()).prop_map(|(p, v)| Action::Write(p, v)),
        2 => path().prop_map(Action::Mkdir),
        3 => path().prop_map(Action::Rm),
        3 => (watch_path(), perms()).prop_map(|(p, perms)| Action::SetPerms(p, perms)),
        3 => (watch_path(), token(), proptest::option::of(0..3u32))
            .prop_map(|(p, t, depth)| Action::Watch(p, t, depth)),
        1 => (watch_path(), token()).prop_map(|(p, t)| Action::Unwatch(p, t)),
        1 => Just(Action::ResetWatches),
        4 => Just(Action::TxStart),
        4 => any::<bool>().prop_map(Action::TxEnd),
        2 => (domid(), 1..3u64, 1..3u32).prop_map(|(d, gfn, port)| Action::Introduce(d, gfn, port)),
        1 => domid().prop_map(Action::Release),
        1 => domid().prop_map(Action::Resume),
        1 => domid().prop_map(Action::IsIntroduced),
        1 => (domid(), domid()).prop_map(|(d, t)| Action::SetTarget(d, t)),
        1 => proptest::option::of(domid()).prop_map(Action::GetFeature),
        1 => (domid(), 0..8u32).prop_map(|(d, v)| Action::SetFeature(d, v)),
        1 => (proptest::option::of(domid()), quota_name()).prop_map(|(d, q)| Action::GetQuota(d, q)),
        2 => (proptest::option::of(domid()), quota_name(), 0..6u32)
            .prop_map(|(d, q, v)| Action::SetQuota(d, q, v)),
        1 => Just(Action::Check),
    ]
}

/// Quotas low enough for short runs to reach them.
pub fn small_quotas() -> Config {
    let mut config = Config::default();
    for (kind, value) in [
        (QuotaKind::Nodes, 6),
        (QuotaKind::Watches, 3),
        (QuotaKind::Transactions, 2),
        (QuotaKind::TransactionNodes, 8),
        (QuotaKind::Permissions, 2),
    ] {
        config.quotas.set(kind, value);
    }
    config
}
