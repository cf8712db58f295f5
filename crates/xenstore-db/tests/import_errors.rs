//! Import refuses inconsistent state, naming what is wrong.
//!
//! One table: each row takes a valid export (nodes owned by a guest, watches
//! absolute and relative, two open transactions with reads, writes and a
//! removal), corrupts one thing, and gives the error import must return.

mod support;

use support::World;
use xenstore_db::state::{ChangeState, EngineState, NodeState, SeenState};
use xenstore_db::{Engine, ImportError, StoreView};
use xenstore_wire::{Access, Op, Perm};

/// The valid state the rows corrupt, and the ids in it.
struct Fixture {
    state: EngineState,
    d1: u64,
    d2: u64,
    d1_tx: u32,
    d1_watch: u64,
}

fn fixture() -> Fixture {
    let mut w = World::new();
    w.write("dom0", "/a/b", "v");
    w.ok("dom0", Op::Mkdir, b"/local/domain/1\0");
    w.set_perms("dom0", "/local/domain/1", &["n1"]);
    w.write("d1", "/local/domain/1/x", "mine");
    w.watch("dom0", "/a", "abs");
    w.watch("d1", "x", "rel");
    let d1_tx = w.tx_start("d1");
    assert!(w.reply("d1", d1_tx, Op::Write, b"x/y\0in-tx").is_ok());
    w.ok("dom0", Op::Introduce, b"5\x001\x002\x00");
    let t0 = w.tx_start("dom0");
    assert!(w.reply("dom0", t0, Op::Rm, b"/a\0").is_ok());
    let state = w.engine.export();
    let d1_watch = state.watches.iter().find(|w| w.relative).map(|w| w.id).expect("relative watch");
    Fixture { d1: w.conn("d1"), d2: w.conn("d2"), state, d1_tx, d1_watch }
}

#[test]
fn fixture_imports_and_exports_the_same() {
    let state = fixture().state;
    let engine = Engine::import(state.clone()).expect("valid");
    assert_eq!(engine.check(), Ok(()));
    assert_eq!(engine.export(), state);
}

/// Corrupts a valid state.
type Corrupt = Box<dyn Fn(&mut EngineState, &Fixture)>;
/// The error import must give for it.
type Expected = Box<dyn Fn(&Fixture) -> ImportError>;

fn s(x: &str) -> String {
    x.to_owned()
}

fn node<'a>(nodes: &'a mut [NodeState], path: &str) -> &'a mut NodeState {
    nodes.iter_mut().find(|n| n.path == path).expect("fixture node")
}

fn rows() -> Vec<(&'static str, Corrupt, Expected)> {
    use ImportError as E;
    use StoreView::Live;
    vec![
        (
            "root missing",
            Box::new(|st: &mut EngineState, _: &Fixture| st.nodes.retain(|n| n.path != "/")),
            Box::new(|_| E::MissingRoot { view: Live }),
        ),
        (
            "relative node path",
            Box::new(|st, _| node(&mut st.nodes, "/a/b").path = s("a/b")),
            Box::new(|_| E::InvalidPath { view: Live, path: s("a/b") }),
        ),
        (
            "node given twice",
            Box::new(|st, _| {
                let copy = node(&mut st.nodes, "/a/b").clone();
                st.nodes.push(copy);
            }),
            Box::new(|_| E::DuplicatePath { view: Live, path: s("/a/b") }),
        ),
        (
            "empty permissions",
            Box::new(|st, _| node(&mut st.nodes, "/a").perms.clear()),
            Box::new(|_| E::InvalidPerms { view: Live, path: s("/a") }),
        ),
        (
            "node generation ahead",
            Box::new(|st, _| {
                let gen = st.generation + 1;
                node(&mut st.nodes, "/a").list_gen = gen;
            }),
            Box::new(|f| E::GenerationAhead { view: Live, path: s("/a"), gen: f.state.generation + 1 }),
        ),
        (
            "parent missing",
            Box::new(|st, _| {
                let mut orphan = node(&mut st.nodes, "/a/b").clone();
                orphan.path = s("/q/r");
                st.nodes.push(orphan);
            }),
            Box::new(|_| E::ParentMissing { view: Live, path: s("/q/r") }),
        ),
        (
            "parent does not list node",
            Box::new(|st, _| node(&mut st.nodes, "/a").children.clear()),
            Box::new(|_| E::NotListed { view: Live, path: s("/a/b") }),
        ),
        (
            "child name with a slash",
            Box::new(|st, _| node(&mut st.nodes, "/").children.push(s("a/b"))),
            Box::new(|_| E::InvalidChildName { view: Live, path: s("/"), child: s("a/b") }),
        ),
        (
            "listed child missing",
            Box::new(|st, _| node(&mut st.nodes, "/a").children.push(s("zz"))),
            Box::new(|_| E::MissingChild { view: Live, path: s("/a"), child: s("zz") }),
        ),
        (
            "child listed twice",
            Box::new(|st, _| node(&mut st.nodes, "/a").children.push(s("b"))),
            Box::new(|_| E::DuplicateChild { view: Live, path: s("/a"), child: s("b") }),
        ),
        (
            "transaction view inconsistent",
            Box::new(|st, f| {
                let tx = st.transactions.iter_mut().find(|t| t.id == f.d1_tx).expect("tx");
                node(&mut tx.work, "/local/domain/1/x").children.push(s("gone"));
            }),
            Box::new(|f| E::MissingChild {
                view: StoreView::Work(f.d1_tx),
                path: s("/local/domain/1/x"),
                child: s("gone"),
            }),
        ),
        (
            "owner unknown",
            Box::new(|st, _| node(&mut st.nodes, "/a").perms[0].domid = 9),
            Box::new(|_| E::UnknownOwner { path: s("/a"), owner: 9 }),
        ),
        (
            "owned count wrong",
            Box::new(|st, _| st.domains.iter_mut().filter(|d| d.domid == 1).for_each(|d| d.owned += 1)),
            Box::new(|_| E::OwnedCountMismatch { domid: 1, counted: 3, owns: 2 }),
        ),
        ("dom0 missing", Box::new(|st, _| st.domains.retain(|d| d.domid != 0)), Box::new(|_| E::MissingDom0)),
        (
            "domain given twice",
            Box::new(|st, _| {
                let copy = st.domains.iter().find(|d| d.domid == 1).cloned().expect("domain 1");
                st.domains.push(copy);
            }),
            Box::new(|_| E::DuplicateDomain { domid: 1 }),
        ),
        (
            "domain generation ahead",
            Box::new(|st, _| {
                let gen = st.generation + 1;
                st.domains.iter_mut().filter(|d| d.domid == 1).for_each(|d| d.since_gen = gen);
            }),
            Box::new(|f| E::DomainGenerationAhead { domid: 1, since_gen: f.state.generation + 1 }),
        ),
        (
            "target unknown",
            Box::new(|st, _| st.domains.iter_mut().filter(|d| d.domid == 1).for_each(|d| d.target = Some(9))),
            Box::new(|_| E::UnknownTarget { domid: 1, target: 9 }),
        ),
        (
            "ring connection missing",
            Box::new(|st, _| st.domains.iter_mut().filter(|d| d.domid == 5).for_each(|d| d.ring_conn = Some(99))),
            Box::new(|_| E::RingConnectionInvalid { domid: 5, conn: 99 }),
        ),
        (
            "ring connection of another domain",
            Box::new(|st, f| st.domains.iter_mut().filter(|d| d.domid == 5).for_each(|d| d.ring_conn = Some(f.d2))),
            Box::new(|f| E::RingConnectionInvalid { domid: 5, conn: f.d2 }),
        ),
        (
            "connection given twice",
            Box::new(|st, f| {
                let mut copy = st.conns.iter().find(|c| c.id == f.d2).cloned().expect("d2");
                copy.watches.clear();
                copy.transactions.clear();
                st.conns.push(copy);
            }),
            Box::new(|f| E::DuplicateConnection { conn: f.d2 }),
        ),
        (
            "connection id ahead",
            Box::new(|st, f| {
                let next = st.next_conn;
                st.conns.iter_mut().filter(|c| c.id == f.d2).for_each(|c| c.id = next);
            }),
            Box::new(|f| E::ConnectionIdAhead { conn: f.state.next_conn }),
        ),
        (
            "watch id given twice",
            Box::new(|st, f| {
                let mut copy = st.watches.iter().find(|w| w.id == f.d1_watch).cloned().expect("watch");
                copy.token = b"other".to_vec();
                st.watches.push(copy);
            }),
            Box::new(|f| E::DuplicateWatchId { watch: f.d1_watch }),
        ),
        ("watch id ahead", Box::new(|st, _| st.next_watch = 1), Box::new(|_| E::WatchIdAhead { watch: 1 })),
        (
            "watch connection missing",
            Box::new(|st, f| st.watches.iter_mut().filter(|w| w.id == f.d1_watch).for_each(|w| w.conn = 99)),
            Box::new(|f| E::WatchConnectionMissing { watch: f.d1_watch, conn: 99 }),
        ),
        (
            "watch path relative",
            Box::new(|st, f| st.watches.iter_mut().filter(|w| w.id == f.d1_watch).for_each(|w| w.path = s("x"))),
            Box::new(|f| E::InvalidWatchPath { watch: f.d1_watch }),
        ),
        (
            "relative watch outside home",
            Box::new(|st, f| st.watches.iter_mut().filter(|w| w.id == f.d1_watch).for_each(|w| w.path = s("/a"))),
            Box::new(|f| E::RelativeWatchOutsideHome { watch: f.d1_watch }),
        ),
        (
            "watch registered twice",
            Box::new(|st, f| {
                let mut copy = st.watches.iter().find(|w| w.id == f.d1_watch).cloned().expect("watch");
                copy.id = st.next_watch;
                st.next_watch += 1;
                st.watches.push(copy);
            }),
            Box::new(|f| E::DuplicateWatch { watch: f.state.next_watch }),
        ),
        (
            "connection lists another's watch",
            Box::new(|st, f| st.conns.iter_mut().filter(|c| c.id == f.d2).for_each(|c| c.watches.push(f.d1_watch))),
            Box::new(|f| E::WatchNotOwned { conn: f.d2, watch: f.d1_watch }),
        ),
        (
            "watch not listed",
            Box::new(|st, f| st.conns.iter_mut().filter(|c| c.id == f.d1).for_each(|c| c.watches.clear())),
            Box::new(|f| E::WatchNotListed { watch: f.d1_watch, conn: f.d1 }),
        ),
        (
            "transaction id 0",
            Box::new(|st, f| st.transactions.iter_mut().filter(|t| t.id == f.d1_tx).for_each(|t| t.id = 0)),
            Box::new(|_| E::ZeroTransactionId),
        ),
        (
            "transaction given twice",
            Box::new(|st, f| {
                let copy = st.transactions.iter().find(|t| t.id == f.d1_tx).cloned().expect("tx");
                st.transactions.push(copy);
            }),
            Box::new(|f| E::DuplicateTransaction { tx: f.d1_tx }),
        ),
        (
            "transaction connection missing",
            Box::new(|st, f| st.transactions.iter_mut().filter(|t| t.id == f.d1_tx).for_each(|t| t.conn = 99)),
            Box::new(|f| E::TransactionConnectionMissing { tx: f.d1_tx, conn: 99 }),
        ),
        (
            "connection lists another's transaction",
            Box::new(|st, f| st.conns.iter_mut().filter(|c| c.id == f.d2).for_each(|c| c.transactions.push(f.d1_tx))),
            Box::new(|f| E::TransactionNotOwned { conn: f.d2, tx: f.d1_tx }),
        ),
        (
            "transaction not listed",
            Box::new(|st, f| st.conns.iter_mut().filter(|c| c.id == f.d1).for_each(|c| c.transactions.clear())),
            Box::new(|f| E::TransactionNotListed { tx: f.d1_tx, conn: f.d1 }),
        ),
        (
            "seen path invalid",
            Box::new(|st, f| {
                let seen = SeenState { path: s("bad//path"), meta: Some(None), list: None };
                st.transactions.iter_mut().filter(|t| t.id == f.d1_tx).for_each(|t| t.seen.push(seen.clone()));
            }),
            Box::new(|f| E::InvalidTxPath { tx: f.d1_tx, path: s("bad//path") }),
        ),
        (
            "written path twice",
            Box::new(|st, f| {
                let tx = st.transactions.iter_mut().find(|t| t.id == f.d1_tx).expect("tx");
                let first = tx.written[0].clone();
                tx.written.push(first);
            }),
            Box::new(|f| E::DuplicateTxPath { tx: f.d1_tx, path: s("/local/domain/1/x/y") }),
        ),
        (
            "seen generation ahead",
            Box::new(|st, f| {
                let seen = SeenState { path: s("/zz"), meta: None, list: Some(Some(st.generation + 1)) };
                st.transactions.iter_mut().filter(|t| t.id == f.d1_tx).for_each(|t| t.seen.push(seen.clone()));
            }),
            Box::new(|f| E::TxGenerationAhead { tx: f.d1_tx, path: s("/zz"), gen: f.state.generation + 1 }),
        ),
        (
            "change without permissions",
            Box::new(|st, f| {
                let tx = st.transactions.iter_mut().find(|t| t.id == f.d1_tx).expect("tx");
                tx.changes =
                    vec![ChangeState::Node { path: s("/local/domain/1/x/y"), perms: Vec::new(), via: Vec::new() }];
            }),
            Box::new(|f| E::InvalidChange { tx: f.d1_tx, path: s("/local/domain/1/x/y") }),
        ),
        (
            "removed descendant not below",
            Box::new(|st, f| {
                let perms = vec![Perm { domid: 0, access: Access::None }];
                let tx = st.transactions.iter_mut().find(|t| t.id == f.d1_tx).expect("tx");
                tx.changes = vec![ChangeState::Removed {
                    path: s("/a"),
                    perms: perms.clone(),
                    via: Vec::new(),
                    below: vec![(s("/b"), perms)],
                }];
            }),
            Box::new(|f| E::InvalidChange { tx: f.d1_tx, path: s("/a") }),
        ),
        (
            "special path unknown",
            Box::new(|st, _| st.special_perms[0].name = s("@bogus")),
            Box::new(|_| E::UnknownSpecialPath { name: s("@bogus") }),
        ),
        (
            "special permissions twice",
            Box::new(|st, _| {
                let copy = st.special_perms[0].clone();
                st.special_perms.push(copy);
            }),
            Box::new(|f| E::DuplicateSpecialPerms { name: f.state.special_perms[0].name.clone() }),
        ),
        (
            "special permissions missing",
            Box::new(|st, _| st.special_perms.retain(|p| p.name != "@releaseDomain")),
            Box::new(|_| E::MissingSpecialPerms { name: s("@releaseDomain") }),
        ),
        (
            "special permissions empty",
            Box::new(|st, _| st.special_perms[0].perms.clear()),
            Box::new(|f| E::InvalidSpecialPerms { name: f.state.special_perms[0].name.clone() }),
        ),
    ]
}

#[test]
fn import_each_corruption_returns_its_error() {
    let f = fixture();
    for (what, corrupt, expected) in rows() {
        let mut state = f.state.clone();
        corrupt(&mut state, &f);
        let got = Engine::import(state).err();
        let want = expected(&f);
        assert_eq!(got.as_ref(), Some(&want), "{what}");
        assert!(!want.to_string().is_empty(), "{what}: Display");
    }
}
