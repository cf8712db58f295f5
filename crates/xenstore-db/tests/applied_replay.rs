//! Outcomes name the changes they applied: replaying them is the store.
//!
//! A journal written from [`Outcome::applied`] must be enough to rebuild the
//! store. For random runs (every request kind, transactions committed,
//! aborted and conflicting, domains introduced, released, removed), the
//! `applied` lists of all outcomes, replayed in order onto a plain map from
//! path to value and permissions, give exactly the engine's live nodes
//! after every step; the special paths' permissions likewise. Failed
//! requests, and requests inside a transaction, list nothing.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use support::gen::{self, Action, Driver, Observed, Step};
use support::World;
use xenstore_db::{Applied, Engine, Outcome};
use xenstore_wire::{Op, Perm};

/// Path to (value, permissions as stored).
type Nodes = BTreeMap<String, (Vec<u8>, Vec<Perm>)>;

/// What a journal replay rebuilds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Replayed {
    nodes: Nodes,
    special: BTreeMap<String, Vec<Perm>>,
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replaying_applied_lists_rebuilds_the_live_store(steps in gen::steps(80)) {
        let mut engine = Engine::new(gen::small_quotas());
        let mut replayed = state_of(&engine);
        let mut driver = Driver::start(&mut engine);
        for (i, step) in steps.iter().enumerate() {
            let observed = driver.step(&mut engine, step);
            let outcome = match &observed {
                Observed::Outcome(tx, outcome) => {
                    let in_tx = *tx != 0 && matches!(step, Step::Request { action, .. } if on_a_node(action));
                    if outcome.reply.is_err() || in_tx {
                        let own: Vec<&Applied> =
                            outcome.applied.iter().filter(|a| !matches!(a, Applied::Known { .. })).collect();
                        prop_assert_eq!(own, Vec::<&Applied>::new(), "step {}: {:?}", i, step);
                    }
                    outcome
                }
                Observed::Domain(outcome) => outcome,
                _ => continue,
            };
            replay(&mut replayed, outcome)?;
            prop_assert_eq!(&replayed, &state_of(&engine), "after step {}: {:?}", i, step);
        }
    }
}

#[test]
fn commit_lists_transaction_writes_in_application_order() {
    let mut w = World::new();
    w.write("dom0", "/gone/child", "x");
    let t = w.tx_start("dom0");
    for (op, payload) in [(Op::Write, &b"/new/leaf\0v"[..]), (Op::Rm, b"/gone\0"), (Op::SetPerms, b"/tool\0r0\0")] {
        let out = w.send("dom0", t, op, payload);
        assert!(out.reply.is_ok() && out.applied.is_empty(), "{op}: {out:?}");
    }
    let out = w.send("dom0", t, Op::TransactionEnd, b"T\0");
    let paths: Vec<(&str, &str)> = own(&out.applied)
        .into_iter()
        .map(|a| match a {
            Applied::Write { path, .. } => ("write", &**path),
            Applied::Remove { path } => ("remove", &**path),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(paths, [("remove", "/gone"), ("write", "/tool"), ("write", "/new"), ("write", "/new/leaf")]);
}

#[test]
fn write_creating_parents_lists_each_node_created() {
    let mut w = World::new();
    let out = w.send("dom0", 0, Op::Write, b"/p/q\0v");
    let paths: Vec<&str> = own(&out.applied)
        .into_iter()
        .map(|a| match a {
            Applied::Write { path, .. } => &**path,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(paths, ["/p", "/p/q"]);
}

#[test]
fn set_quota_lists_the_value_set() {
    let mut w = World::new();
    let out = w.send("dom0", 0, Op::SetQuota, b"nodes\x0042\x00");
    let want = Applied::GlobalQuota { kind: xenstore_db::QuotaKind::Nodes, value: 42 };
    assert_eq!(own(&out.applied), vec![&want]);
}

/// The entries a request lists of its own: without the domains that
/// became known before it (the world's guests' connections).
fn own(applied: &[Applied]) -> Vec<&Applied> {
    applied.iter().filter(|a| !matches!(a, Applied::Known { .. })).collect()
}

/// Whether the request works on a node, so runs inside its transaction
/// (other requests act on the live state whatever transaction they name).
fn on_a_node(action: &Action) -> bool {
    match action {
        Action::Read(p) | Action::Directory(p) | Action::DirectoryPart(p, _) | Action::Mkdir(p) | Action::Rm(p) => {
            !p.starts_with('@')
        }
        Action::GetPerms(p) | Action::Write(p, _) | Action::SetPerms(p, _) => !p.starts_with('@'),
        _ => false,
    }
}

/// Applies one outcome's list; node changes must name nodes that exist.
fn replay(state: &mut Replayed, outcome: &Outcome) -> Result<(), TestCaseError> {
    for applied in &outcome.applied {
        match applied {
            Applied::Write { path, value, perms } => {
                state.nodes.insert(path.to_string(), (value.to_vec(), perms.entries().to_vec()));
            }
            Applied::SetPerms { path, perms } => {
                let Some(node) = state.nodes.get_mut(&**path) else {
                    return Err(TestCaseError::fail(format!("SetPerms of missing {path}")));
                };
                node.1 = perms.entries().to_vec();
            }
            Applied::Remove { path } => {
                prop_assert!(state.nodes.contains_key(&**path), "Remove of missing {}", path);
                let below = format!("{path}/");
                state.nodes.retain(|p, _| p != &**path && !p.starts_with(&below));
            }
            Applied::SpecialPerms { name, perms } => {
                state.special.insert((*name).to_owned(), perms.entries().to_vec());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The engine's live nodes and special permissions, from its export.
fn state_of(engine: &Engine) -> Replayed {
    let state = engine.export();
    Replayed {
        nodes: state.nodes.into_iter().map(|n| (n.path, (n.value, n.perms))).collect(),
        special: state.special_perms.into_iter().map(|s| (s.name, s.perms)).collect(),
    }
}
