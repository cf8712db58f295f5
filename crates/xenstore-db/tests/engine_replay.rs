//! `Engine::replay` rebuilds the live store and the domain records.
//!
//! For random runs (dom0 and guest callers, writes creating parents, RM,
//! SET_PERMS, transactions committed, aborted and conflicting, SET_QUOTA,
//! SET_TARGET, SET_FEATURE, INTRODUCE and its failure, RELEASE, RESUME,
//! shutdown and removal of domains), every outcome's `applied` list is
//! replayed onto a copy of the starting engine: the replayed engine has the
//! same nodes (paths, values, stored and effective permissions, children
//! in order), the same domain records (owned counts, quotas, targets, ring
//! addresses, release flags, features), the same special permissions and
//! settings. Generations and connection ids are not compared: a replay
//! hands them out afresh. Bad entries are refused, never a panic.

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use support::gen::{self, Driver, Observed};
use xenstore_db::state::{DomainState, NodeState};
use xenstore_db::{Applied, Engine, ReplayError};
use xenstore_wire::{Access, Perm, PermList, Request};

/// What must survive a replay.
#[derive(Debug, PartialEq, Eq)]
struct Persistent {
    nodes: Vec<(NodeState, Option<Vec<Perm>>)>,
    domains: Vec<DomainState>,
    special: Vec<(String, Vec<Perm>)>,
    config: xenstore_db::Config,
}

fn persistent(engine: &Engine) -> Persistent {
    let state = engine.export();
    Persistent {
        nodes: state
            .nodes
            .into_iter()
            .map(|n| {
                let effective = engine.peek(&n.path).map(|(_, p)| p.entries().to_vec());
                (NodeState { meta_gen: 0, list_gen: 0, ..n }, effective)
            })
            .collect(),
        domains: state
            .domains
            .into_iter()
            .map(|d| DomainState { since_gen: 0, ring_conn: d.ring_conn.map(|_| 0), ..d })
            .collect(),
        special: state.special_perms.into_iter().map(|s| (s.name, s.perms)).collect(),
        config: state.config,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn replaying_every_outcome_rebuilds_nodes_and_domains(steps in gen::steps(120)) {
        let mut engine = Engine::new(gen::small_quotas());
        let mut driver = Driver::start(&mut engine);
        let mut replayed = engine.clone();
        for (i, step) in steps.iter().enumerate() {
            let mut outcomes = match driver.step(&mut engine, step) {
                Observed::Outcome(_, outcome) | Observed::Domain(outcome) => vec![outcome],
                _ => Vec::new(),
            };
            // A read lists the domains that became known since (a failed
            // INTRODUCE leaves those before it pending).
            outcomes.push(engine.handle(driver.conns[0], 0, &Request::Read("/")));
            for applied in outcomes.iter().flat_map(|o| &o.applied) {
                let replay = replayed.replay(applied);
                prop_assert!(replay.is_ok(), "step {}: {:?}: {:?}", i, step, replay);
            }
            prop_assert_eq!(persistent(&replayed), persistent(&engine), "after step {}: {:?}", i, step);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_compacted_journal_rebuilds_the_state_with_effective_permissions(steps in gen::steps(120)) {
        let mut engine = Engine::new(gen::small_quotas());
        let mut driver = Driver::start(&mut engine);
        for step in &steps {
            driver.step(&mut engine, step);
        }
        let mut rebuilt = Engine::new(gen::small_quotas());
        for applied in engine.compacted() {
            let replay = rebuilt.replay(&applied);
            prop_assert!(replay.is_ok(), "{:?}: {:?}", applied, replay);
        }
        prop_assert_eq!(effective(&rebuilt), effective(&engine));
    }
}

/// [`persistent`], with each node's stored permissions left out (a
/// compacted journal keeps only the entries that still count).
fn effective(engine: &Engine) -> Persistent {
    let mut p = persistent(engine);
    for (node, _) in &mut p.nodes {
        node.perms.clear();
    }
    p
}

#[test]
fn write_under_a_missing_parent_is_refused() {
    let mut engine = Engine::default();
    let write = Applied::Write {
        path: Arc::from("/a/b"),
        value: Arc::from(&b"v"[..]),
        perms: PermList::owned_by(0, Access::None),
    };
    assert_eq!(engine.replay(&write), Err(ReplayError::MissingParent("/a/b".into())));
    assert!(engine.peek("/a/b").is_none());
}

#[test]
fn non_canonical_paths_and_missing_nodes_are_refused() {
    let mut engine = Engine::default();
    for p in ["", "a", "/a/", "//a", "/a b"] {
        let rm = Applied::Remove { path: Arc::from(p) };
        assert_eq!(engine.replay(&rm), Err(ReplayError::BadPath(p.into())), "{p:?}");
    }
    assert_eq!(engine.replay(&Applied::Remove { path: Arc::from("/") }), Err(ReplayError::RootRemoval));
    let rm = Applied::Remove { path: Arc::from("/nope") };
    assert_eq!(engine.replay(&rm), Err(ReplayError::MissingNode("/nope".into())));
    let perms = Applied::SetPerms { path: Arc::from("/nope"), perms: PermList::owned_by(0, Access::None) };
    assert_eq!(engine.replay(&perms), Err(ReplayError::MissingNode("/nope".into())));
}

#[test]
fn a_change_to_an_unknown_domain_is_refused() {
    let mut engine = Engine::default();
    assert_eq!(engine.replay(&Applied::DomainRemoved { domid: 7 }), Err(ReplayError::UnknownDomain(7)));
    assert_eq!(engine.replay(&Applied::ReleaseFired { domid: 7 }), Err(ReplayError::UnknownDomain(7)));
}
