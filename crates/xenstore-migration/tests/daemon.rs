//! The daemon state through a stream: exact with our extension records,
//! derived without them (a C daemon's stream), refused when they disagree;
//! whatever `from_stream` returns, the engine imports.

mod common;
#[path = "../../xenstore-db/tests/support/mod.rs"]
mod support;

use common::{rec, stream, F};
use proptest::prelude::*;
use support::gen::{self, Driver, Step};
use xenstore_db::state::EngineState;
use xenstore_db::{Caller, Engine};
use xenstore_migration::daemon::{DOMID_INVALID, EXT_ENGINE};
use xenstore_migration::{
    decode, encode, from_stream, read, to_stream, write_with, ConnSpec, ConnTransport, DaemonState, Endian, ErrorKind,
    GlobalData, Header, Record, Stream, Version,
};
use xenstore_wire::{Reply, Request};

/// An engine after a random run.
fn engine_after(steps: &[Step]) -> Engine {
    let mut engine = Engine::new(gen::small_quotas());
    let mut driver = Driver::start(&mut engine);
    for step in steps {
        driver.step(&mut engine, step);
    }
    engine
}

/// The daemon state of an engine: a socket for each privileged
/// connection, a ring for each guest one (with its domain's target and
/// port), except the last connection, which has no transport.
fn daemon_state(engine: &Engine) -> DaemonState {
    let state = engine.export();
    let mut conns = Vec::new();
    let n = state.conns.len();
    for (i, c) in state.conns.iter().enumerate().take(n.saturating_sub(1)) {
        let spec = if c.caller.privileged {
            ConnSpec::Socket { fd: 10 + i32::try_from(i).unwrap() }
        } else {
            let d = state.domains.iter().find(|d| d.domid == c.caller.domid);
            ConnSpec::Ring {
                domid: c.caller.domid,
                tdomid: d.and_then(|d| d.target).unwrap_or(DOMID_INVALID),
                evtchn: d.and_then(|d| d.introduced).map_or(0, |r| r.port),
            }
        };
        let in_data = if i % 2 == 0 { vec![1, 2, 3] } else { Vec::new() };
        conns.push(ConnTransport { conn: c.id, spec, in_data, out_resp_len: 2, out_data: vec![9; 5] });
    }
    DaemonState {
        engine: state,
        global: Some(GlobalData { rw_socket_fd: 3, evtchn_fd: 4 }),
        conns,
        daemon: Some(vec![1, 2, 3]),
    }
}

/// What a few reads answer.
fn reads(engine: &mut Engine, state: &EngineState) -> Vec<Result<Reply, xenstore_wire::ErrorCode>> {
    let conn = state.conns.iter().find(|c| c.caller == Caller::DOM0).map(|c| c.id);
    let Some(conn) = conn else { return Vec::new() };
    let mut out = Vec::new();
    for n in state.nodes.iter().take(8) {
        for request in [Request::Read(&n.path), Request::Directory(&n.path), Request::GetPerms(&n.path)] {
            out.push(engine.handle(conn, 0, &request).reply);
        }
    }
    out
}

fn without_extensions(s: &Stream) -> Stream {
    let records = s.records().iter().filter(|r| !matches!(r, Record::Extension { .. })).cloned().collect();
    Stream::new(records).unwrap()
}

/// A node as the Xen records see it: path, value, permissions, children.
type VisibleNode = (String, Vec<u8>, Vec<xenstore_wire::Perm>, Vec<String>);
/// A watch as the Xen records see it: transport, path, token, depth, relative.
type VisibleWatch = (String, String, Vec<u8>, Option<u32>, bool);

/// Nodes as the Xen records see them.
fn visible_nodes(e: &EngineState) -> Vec<VisibleNode> {
    e.nodes.iter().map(|n| (n.path.clone(), n.value.clone(), n.perms.clone(), n.children.clone())).collect()
}

/// Watches of connections with a transport, by the transport.
fn visible_watches(d: &DaemonState) -> Vec<VisibleWatch> {
    let mut out: Vec<_> = d
        .engine
        .watches
        .iter()
        .filter_map(|w| {
            let t = d.conns.iter().find(|t| t.conn == w.conn)?;
            Some((format!("{:?}", t.spec), w.path.clone(), w.token.clone(), w.depth, w.relative))
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_encode_is_the_state_and_imports(steps in gen::steps(80)) {
        let mut original = engine_after(&steps);
        let state = daemon_state(&original);
        let back = decode(&encode(&state).unwrap()).unwrap();
        prop_assert_eq!(&back, &state);
        let mut imported = Engine::import(back.engine.clone()).unwrap();
        prop_assert_eq!(imported.export(), state.engine.clone());
        prop_assert_eq!(reads(&mut imported, &state.engine), reads(&mut original, &state.engine));
    }

    #[test]
    fn big_endian_and_v2_round_trip(steps in gen::steps(60)) {
        let state = daemon_state(&engine_after(&steps));
        let s = to_stream(&state).unwrap();
        let bytes = write_with(&s, Header { version: Version::V2, endian: Endian::Big }).unwrap();
        prop_assert_eq!(&read(&bytes).unwrap(), &s);
        prop_assert_eq!(from_stream(&read(&bytes).unwrap()).unwrap(), state);
    }

    #[test]
    fn without_extensions_derives_the_same_store(steps in gen::steps(80)) {
        let state = daemon_state(&engine_after(&steps));
        let foreign = without_extensions(&to_stream(&state).unwrap());
        let derived = from_stream(&foreign).unwrap();
        prop_assert!(Engine::import(derived.engine.clone()).is_ok());
        prop_assert_eq!(visible_nodes(&derived.engine), visible_nodes(&state.engine));
        prop_assert_eq!(&derived.engine.special_perms, &state.engine.special_perms);
        prop_assert_eq!(visible_watches(&derived), visible_watches(&state));
        prop_assert!(derived.engine.transactions.is_empty());
        prop_assert_eq!(derived.conns.len(), state.conns.len());
        prop_assert_eq!(derived.engine.config.quotas, state.engine.config.quotas);
    }
}

#[test]
fn c_like_stream_loads() {
    let big = false;
    let node = |path: &str, owner: u16, value: &[u8]| {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        let owner = owner.to_le_bytes();
        let perm = [b'b', 0, owner[0], owner[1]];
        rec(
            big,
            5,
            &[
                F::W(0),
                F::W(0),
                F::H(u16::try_from(p.len()).unwrap()),
                F::H(u16::try_from(value.len()).unwrap()),
                F::H(0),
                F::H(1),
                F::B(&perm),
                F::B(&p),
                F::B(value),
            ],
        )
    };
    let ring =
        rec(big, 2, &[F::W(1), F::H(0), F::H(0), F::H(5), F::H(DOMID_INVALID), F::W(17), F::H(0), F::H(0), F::W(0)]);
    let socket = rec(big, 2, &[F::W(2), F::H(1), F::H(0), F::W(9), F::W(0), F::H(0), F::H(0), F::W(0)]);
    let watch = rec(big, 8, &[F::W(1), F::H(5), F::H(4), F::H(2), F::H(0), F::B(b"data\0tok\0")]);
    let tx = rec(big, 4, &[F::W(2), F::W(7)]);
    let bytes = stream(
        2,
        big,
        &[
            ring,
            socket,
            watch,
            tx,
            node("/", 0, b""),
            node("/local", 0, b""),
            node("/local/domain", 0, b""),
            node("/local/domain/5", 5, b""),
            node("/local/domain/5/zz", 5, b"1"),
            node("/local/domain/5/aa", 5, b"2"),
        ],
    );
    let state = decode(&bytes).unwrap();
    let e = &state.engine;
    let home = e.nodes.iter().find(|n| n.path == "/local/domain/5").unwrap();
    assert_eq!(home.children, ["zz", "aa"]);
    let d5 = e.domains.iter().find(|d| d.domid == 5).unwrap();
    assert_eq!(d5.owned, 3);
    assert_eq!(d5.introduced.map(|r| (r.gfn, r.port)), Some((0, 17)));
    assert_eq!(e.watches.len(), 1);
    assert_eq!(e.watches[0].path, "/local/domain/5/data");
    assert!(e.watches[0].relative);
    assert_eq!(e.watches[0].depth, Some(2));
    assert!(e.transactions.is_empty());
    assert_eq!(e.conns[1].caller, Caller::DOM0);
    assert_eq!(e.conns[0].caller, Caller::guest(5));
    assert!(Engine::import(e.clone()).is_ok());
}

#[test]
fn node_before_its_parent_is_refused() {
    let s = Stream::new(vec![Record::Node(xenstore_migration::Node {
        pending: None,
        path: "/a/b".into(),
        value: Vec::new(),
        perms: vec![xenstore_migration::Perm { kind: xenstore_migration::PermKind::None, stale: false, domid: 0 }],
    })])
    .unwrap();
    assert!(matches!(from_stream(&s).unwrap_err().kind, ErrorKind::Inconsistent(_)));
}

/// A state with nodes, watches, an open transaction and a domain.
fn rich_state() -> DaemonState {
    use support::gen::{Action, TxPick};
    let req = |who, tx, action| Step::Request { who, tx, action };
    let steps = vec![
        req(0, TxPick::None, Action::Write("/a".into(), b"x".to_vec())),
        req(0, TxPick::None, Action::Introduce(1, 5, 6)),
        req(0, TxPick::None, Action::Watch("/a".into(), b"t".to_vec(), None)),
        req(1, TxPick::None, Action::Watch("/b".into(), b"u".to_vec(), Some(1))),
        req(0, TxPick::None, Action::TxStart),
    ];
    let state = daemon_state(&engine_after(&steps));
    assert!(!state.engine.transactions.is_empty() && state.engine.watches.len() >= 2);
    state
}

fn edited(state: &DaemonState, edit: impl FnOnce(&mut Vec<Record>)) -> ErrorKind {
    let mut records = to_stream(state).unwrap().into_records();
    edit(&mut records);
    from_stream(&Stream::new(records).unwrap()).unwrap_err().kind
}

#[test]
fn extension_contradicting_the_records_is_refused() {
    let state = rich_state();
    let first = |records: &[Record], f: fn(&Record) -> bool| records.iter().position(f).unwrap();
    let kind = edited(&state, |r| {
        let i = first(r, |r| matches!(r, Record::Node(n) if n.path == "/a"));
        r.remove(i);
    });
    assert!(matches!(kind, ErrorKind::ExtensionMismatch(_)), "{kind:?}");
    let kind = edited(&state, |r| {
        let i = first(r, |r| matches!(r, Record::Watch(_)));
        r.remove(i);
    });
    assert!(matches!(kind, ErrorKind::ExtensionMismatch(_)), "{kind:?}");
    let kind = edited(&state, |r| {
        let i = first(r, |r| matches!(r, Record::Transaction(_)));
        r.remove(i);
    });
    assert!(matches!(kind, ErrorKind::ExtensionMismatch(_)), "{kind:?}");
    let kind = edited(&state, |r| {
        let i = first(r, |r| matches!(r, Record::Domain(_)));
        r.remove(i);
    });
    assert!(matches!(kind, ErrorKind::ExtensionMismatch(_)), "{kind:?}");
    let kind = edited(&state, |r| {
        let i = first(r, |r| matches!(r, Record::GlobalQuota(_)));
        if let Record::GlobalQuota(q) = &mut r[i] {
            q.per_domain[0].value += 1;
        }
    });
    assert!(matches!(kind, ErrorKind::ExtensionMismatch(_)), "{kind:?}");
    let kind = edited(&state, |r| {
        let extra = r.iter().find(|r| matches!(r, Record::Extension { kind: EXT_ENGINE, .. })).unwrap().clone();
        r.push(extra);
    });
    assert!(matches!(kind, ErrorKind::ExtensionMismatch(_)), "{kind:?}");
}

#[test]
fn corrupt_extension_body_is_refused() {
    let state = rich_state();
    let kind = edited(&state, |r| {
        for rec in r.iter_mut() {
            if let Record::Extension { kind: EXT_ENGINE, body } = rec {
                body.truncate(body.len() / 2);
            }
        }
    });
    assert!(matches!(kind, ErrorKind::BadExtension(_)), "{kind:?}");
    let kind = edited(&state, |r| r.push(Record::Extension { kind: 0x5853_0999, body: vec![] }));
    assert!(matches!(kind, ErrorKind::BadExtension(_)), "{kind:?}");
}

#[test]
fn extension_making_an_invalid_engine_is_refused_by_import() {
    let mut state = rich_state();
    state.engine.generation = 0;
    let kind = from_stream(&to_stream(&state).unwrap()).unwrap_err().kind;
    assert!(matches!(kind, ErrorKind::Import(_)), "{kind:?}");
}

#[test]
fn foreign_extension_range_is_refused_by_stream_new() {
    let err = Stream::new(vec![Record::Extension { kind: 9, body: vec![] }]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotExtensionKind(9));
}

/// Seeds for the `migration_load` fuzz target, each checked to decode
/// back to its state (ours) or to load (its Xen records alone); written to
/// `XS_SEED_DIR` when set: `XS_SEED_DIR=fuzz/corpus/migration_load cargo
/// test -p xenstore-migration --test daemon fuzz_seeds`.
#[test]
fn fuzz_seeds_decode_to_their_states() {
    use proptest::strategy::ValueTree;
    let dir = std::env::var_os("XS_SEED_DIR").map(std::path::PathBuf::from);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for i in 0..64 {
        let steps = gen::steps(30).new_tree(&mut runner).unwrap().current();
        let state = daemon_state(&engine_after(&steps));
        let bytes = encode(&state).unwrap();
        assert_eq!(decode(&bytes).unwrap(), state, "seed {i}");
        let foreign = xenstore_migration::write(&without_extensions(&to_stream(&state).unwrap()));
        assert!(decode(&foreign).is_ok(), "foreign seed {i}");
        if let Some(dir) = &dir {
            std::fs::write(dir.join(format!("seed-{i}")), &bytes).unwrap();
            std::fs::write(dir.join(format!("foreign-{i}")), foreign).unwrap();
        }
    }
}

/// Fuzz finding: special paths in the other order came back in record
/// order, not the engine's, so the imported engine exported differently.
#[test]
fn special_paths_in_any_order_load_in_the_engines_order() {
    let perm = |domid| xenstore_migration::Perm { kind: xenstore_migration::PermKind::None, stale: false, domid };
    let node = |path: &str, perms| {
        Record::Node(xenstore_migration::Node { pending: None, path: path.into(), value: Vec::new(), perms })
    };
    let s = Stream::new(vec![
        node("/", vec![perm(0)]),
        node("@releaseDomain", vec![perm(0), perm(7)]),
        node("@introduceDomain", vec![perm(0)]),
    ])
    .unwrap();
    let state = from_stream(&s).unwrap();
    let engine = Engine::import(state.engine.clone()).unwrap();
    assert_eq!(engine.export(), state.engine);
    let twice = Stream::new(vec![
        node("/", vec![perm(0)]),
        node("@releaseDomain", vec![perm(0)]),
        node("@releaseDomain", vec![perm(0)]),
    ])
    .unwrap();
    assert!(matches!(from_stream(&twice).unwrap_err().kind, ErrorKind::Inconsistent(_)));
}

/// Without extensions, a domain's quotas are its DOMAIN_DATA values over
/// GLOBAL_QUOTA_DATA over the defaults; unknown names are ignored.
#[test]
fn foreign_quotas_layer_domain_over_global_over_defaults() {
    use xenstore_db::QuotaKind;
    use xenstore_migration::{DomainData, GlobalQuota, Node, Perm, PermKind, Quota};
    let q = |name: &str, value| Quota { name: name.into(), value };
    let root = Node {
        pending: None,
        path: "/".into(),
        value: Vec::new(),
        perms: vec![Perm { kind: PermKind::None, stale: false, domid: 0 }],
    };
    let s = Stream::new(vec![
        Record::GlobalQuota(GlobalQuota {
            per_domain: vec![q("nodes", 11), q("watches", 12)],
            global: vec![q("bogus", 1)],
        }),
        Record::Node(root),
        Record::Domain(DomainData { domid: 4, features: 0, quotas: vec![q("nodes", 21), q("no-such", 9)] }),
    ])
    .unwrap();
    let e = from_stream(&s).unwrap().engine;
    assert_eq!(e.config.quotas.get(QuotaKind::Nodes), 11);
    let d4 = e.domains.iter().find(|d| d.domid == 4).unwrap();
    assert_eq!(d4.quotas.get(QuotaKind::Nodes), 21);
    assert_eq!(d4.quotas.get(QuotaKind::Watches), 12);
    let defaults = xenstore_db::Config::default().quotas;
    assert_eq!(d4.quotas.get(QuotaKind::Transactions), defaults.get(QuotaKind::Transactions));
}

#[test]
fn features_survive_a_stream_whose_domain_records_say_zero_and_contradictions_are_refused() {
    // A version 1 stream has no room for DOMAIN_DATA's features: ours
    // writes 0 there and keeps them in the extension.
    let mut state = rich_state();
    for d in &mut state.engine.domains {
        d.features = 0x5;
    }
    let zeroed = |records: &mut Vec<Record>, value: u32| {
        for r in records.iter_mut() {
            if let Record::Domain(d) = r {
                d.features = value;
            }
        }
    };
    let mut records = to_stream(&state).unwrap().into_records();
    zeroed(&mut records, 0);
    assert_eq!(from_stream(&Stream::new(records).unwrap()).unwrap(), state);
    assert!(matches!(edited(&state, |r| zeroed(r, 0x3)), ErrorKind::ExtensionMismatch(_)));
}
