//! Which state changes each end may make, and the shortest legal way from
//! one state to another.
//!
//! The tables are the ones Linux's drivers follow (XEN-NOTES A.3). The
//! backend's is netback's `set_backend_state` table, which blkback's
//! switches also fit; the frontend's is the union of netfront's and
//! blkfront's. The walker is netback's idea made general: a driver names
//! the state it wants and the framework takes the shortest chain of legal
//! single steps to it, running the driver's hook for each step. netback
//! `BUG()`s on a pair its table lacks; here that is an
//! [`IllegalTransition`] the caller reports as a fatal device error.
//!
//! A state to itself is no step (Linux's `xenbus_switch_state` is a no-op
//! then). The one change outside the tables is the escape to `Closing` of
//! a fatal error (`xenbus_dev_fatal` switches to it from anywhere); see
//! [`crate::device`].

use std::collections::VecDeque;
use std::fmt;

use crate::state::XenbusState;
use crate::state::XenbusState::*;

/// Which end of a device a driver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The guest's end: `device/<type>/<id>`, publishes rings and event channels.
    Frontend,
    /// The serving end: `backend/<type>/<fe>/<id>`, maps what the frontend published.
    Backend,
}

impl Role {
    /// The other end's role.
    pub fn peer(self) -> Role {
        match self {
            Role::Frontend => Role::Backend,
            Role::Backend => Role::Frontend,
        }
    }
}

/// netback's table, plus the reconfiguration round trip (netback answers a
/// frontend's `Reconfiguring` with `Reconfigured`, and is connected again
/// afterwards).
const BACKEND: &[(XenbusState, XenbusState)] = &[
    (Unknown, Initialising),
    (Initialising, InitWait),
    (Initialising, Closed),
    (InitWait, Connected),
    (InitWait, Closing),
    (Connected, Closing),
    (Connected, Reconfigured),
    (Reconfigured, Connected),
    (Reconfigured, Closing),
    (Closing, Closed),
    (Closed, InitWait),
    (Closed, Closing),
];

/// netfront (`Initialising → Connected`) and blkfront (`Initialising →
/// Initialised → Connected`). `xenbus_frontend_closed` goes to `Closed`
/// from any live state when the backend closes, so those steps are direct;
/// a frontend that closes on its own goes through `Closing` and waits.
/// `Closed → Initialising` is the reconnect.
const FRONTEND: &[(XenbusState, XenbusState)] = &[
    (Unknown, Initialising),
    (Initialising, Initialised),
    (Initialising, Connected),
    (Initialising, Closing),
    (Initialising, Closed),
    (Initialised, Connected),
    (Initialised, Closing),
    (Initialised, Closed),
    (Connected, Closing),
    (Connected, Closed),
    (Connected, Reconfiguring),
    (Reconfiguring, Connected),
    (Reconfiguring, Closing),
    (Reconfiguring, Closed),
    (Closing, Closed),
    (Closed, Initialising),
];

/// The legal single steps of `role`.
pub fn table(role: Role) -> &'static [(XenbusState, XenbusState)] {
    match role {
        Role::Frontend => FRONTEND,
        Role::Backend => BACKEND,
    }
}

/// Whether `role` may go from `from` to `to` in one step.
pub fn is_legal(role: Role, from: XenbusState, to: XenbusState) -> bool {
    table(role).contains(&(from, to))
}

/// A state change the tables do not allow (no chain of legal steps leads
/// there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The end that asked.
    pub role: Role,
    /// Where it is.
    pub from: XenbusState,
    /// Where it asked to go.
    pub to: XenbusState,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Frontend => "frontend",
            Role::Backend => "backend",
        };
        write!(f, "illegal {role} transition from {} to {}", self.from, self.to)
    }
}

impl std::error::Error for IllegalTransition {}

/// The states after `from` on the shortest legal path to `to` (empty when
/// `from == to`). Ties go to the step listed first in the table, so the
/// path is always the same.
pub fn shortest_path(role: Role, from: XenbusState, to: XenbusState) -> Result<Vec<XenbusState>, IllegalTransition> {
    if from == to {
        return Ok(Vec::new());
    }
    let mut came_from: [Option<XenbusState>; 9] = [None; 9];
    let mut queue = VecDeque::from([from]);
    while let Some(state) = queue.pop_front() {
        for &(_, next) in table(role).iter().filter(|(a, _)| *a == state) {
            let slot = &mut came_from[usize::from(next.number())];
            if next == from || slot.is_some() {
                continue;
            }
            *slot = Some(state);
            if next == to {
                return Ok(unwind(&came_from, from, to));
            }
            queue.push_back(next);
        }
    }
    Err(IllegalTransition { role, from, to })
}

fn unwind(came_from: &[Option<XenbusState>; 9], from: XenbusState, to: XenbusState) -> Vec<XenbusState> {
    let mut path = vec![to];
    let mut at = to;
    while let Some(prev) = came_from[usize::from(at.number())] {
        if prev == from {
            break;
        }
        path.push(prev);
        at = prev;
    }
    path.reverse();
    path
}

/// Walks the shortest legal path from `from` to `to`, calling
/// `step(from, to)` for each single step in order; stops at the first
/// error. The whole path is checked before the first step, so an illegal
/// target runs nothing.
pub fn walk<E: From<IllegalTransition>>(
    role: Role,
    from: XenbusState,
    to: XenbusState,
    mut step: impl FnMut(XenbusState, XenbusState) -> Result<(), E>,
) -> Result<(), E> {
    let mut at = from;
    for next in shortest_path(role, from, to)? {
        step(at, next)?;
        at = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_pairs() -> impl Iterator<Item = (XenbusState, XenbusState)> {
        XenbusState::ALL.into_iter().flat_map(|a| XenbusState::ALL.into_iter().map(move |b| (a, b)))
    }

    #[test]
    fn every_listed_backend_step_is_legal_and_nothing_else() {
        let legal = [
            (Unknown, Initialising),
            (Initialising, InitWait),
            (Initialising, Closed),
            (InitWait, Connected),
            (InitWait, Closing),
            (Connected, Closing),
            (Connected, Reconfigured),
            (Reconfigured, Connected),
            (Reconfigured, Closing),
            (Closing, Closed),
            (Closed, InitWait),
            (Closed, Closing),
        ];
        for (a, b) in all_pairs() {
            assert_eq!(is_legal(Role::Backend, a, b), legal.contains(&(a, b)), "backend {a} -> {b}");
        }
    }

    #[test]
    fn every_listed_frontend_step_is_legal_and_nothing_else() {
        let legal = [
            (Unknown, Initialising),
            (Initialising, Initialised),
            (Initialising, Connected),
            (Initialising, Closing),
            (Initialising, Closed),
            (Initialised, Connected),
            (Initialised, Closing),
            (Initialised, Closed),
            (Connected, Closing),
            (Connected, Closed),
            (Connected, Reconfiguring),
            (Reconfiguring, Connected),
            (Reconfiguring, Closing),
            (Reconfiguring, Closed),
            (Closing, Closed),
            (Closed, Initialising),
        ];
        for (a, b) in all_pairs() {
            assert_eq!(is_legal(Role::Frontend, a, b), legal.contains(&(a, b)), "frontend {a} -> {b}");
        }
    }

    /// netback's `set_backend_state` table, row by row: the path each
    /// (current, target) pair takes.
    #[test]
    fn backend_paths_match_netbacks_set_backend_state() {
        let rows: &[(XenbusState, XenbusState, &[XenbusState])] = &[
            (Initialising, InitWait, &[InitWait]),
            (Initialising, Connected, &[InitWait, Connected]),
            (Initialising, Closing, &[InitWait, Closing]),
            (Initialising, Closed, &[Closed]),
            (InitWait, Connected, &[Connected]),
            (InitWait, Closing, &[Closing]),
            (InitWait, Closed, &[Closing, Closed]),
            (Connected, InitWait, &[Closing, Closed, InitWait]),
            (Connected, Closing, &[Closing]),
            (Connected, Closed, &[Closing, Closed]),
            (Closing, InitWait, &[Closed, InitWait]),
            (Closing, Connected, &[Closed, InitWait, Connected]),
            (Closing, Closed, &[Closed]),
            (Closed, InitWait, &[InitWait]),
            (Closed, Connected, &[InitWait, Connected]),
            (Closed, Closing, &[Closing]),
        ];
        for (from, to, path) in rows {
            assert_eq!(shortest_path(Role::Backend, *from, *to).unwrap(), *path, "{from} -> {to}");
        }
    }

    #[test]
    fn frontend_paths_follow_the_linux_drivers() {
        let rows: &[(XenbusState, XenbusState, &[XenbusState])] = &[
            (Initialising, Connected, &[Connected]),
            (Initialising, Initialised, &[Initialised]),
            (Connected, Closed, &[Closed]),
            (Closed, Initialised, &[Initialising, Initialised]),
            (Closed, Connected, &[Initialising, Connected]),
            (Connected, Initialising, &[Closed, Initialising]),
            (Reconfiguring, Connected, &[Connected]),
        ];
        for (from, to, path) in rows {
            assert_eq!(shortest_path(Role::Frontend, *from, *to).unwrap(), *path, "{from} -> {to}");
        }
    }

    #[test]
    fn a_state_to_itself_is_no_step() {
        for role in [Role::Frontend, Role::Backend] {
            for s in XenbusState::ALL {
                assert_eq!(shortest_path(role, s, s), Ok(vec![]));
            }
        }
    }

    #[test]
    fn unreachable_targets_are_typed_errors_for_each_role() {
        let rows = [
            (Role::Backend, Connected, Unknown),
            (Role::Backend, Connected, Initialised),
            (Role::Backend, Closed, Reconfiguring),
            (Role::Backend, InitWait, Initialising),
            (Role::Frontend, Connected, InitWait),
            (Role::Frontend, Connected, Reconfigured),
            (Role::Frontend, Closed, Unknown),
        ];
        for (role, from, to) in rows {
            assert_eq!(shortest_path(role, from, to), Err(IllegalTransition { role, from, to }));
        }
    }

    #[test]
    fn walk_runs_each_step_in_order_and_nothing_for_an_illegal_target() {
        let mut steps = Vec::new();
        walk::<IllegalTransition>(Role::Backend, Connected, InitWait, |a, b| {
            steps.push((a, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(steps, [(Connected, Closing), (Closing, Closed), (Closed, InitWait)]);
        steps.clear();
        let err = walk::<IllegalTransition>(Role::Backend, Connected, Unknown, |a, b| {
            steps.push((a, b));
            Ok(())
        });
        assert!(err.is_err());
        assert!(steps.is_empty());
    }

    #[test]
    fn walk_stops_at_the_first_failing_step() {
        #[derive(Debug)]
        struct Stop;
        impl From<IllegalTransition> for Stop {
            fn from(_: IllegalTransition) -> Stop {
                Stop
            }
        }
        let mut steps = 0;
        let result = walk(Role::Backend, Closing, Connected, |_, b| {
            steps += 1;
            if b == InitWait {
                Err(Stop)
            } else {
                Ok(())
            }
        });
        assert!(result.is_err());
        assert_eq!(steps, 2);
    }

    fn state() -> impl Strategy<Value = XenbusState> {
        (0u8..9).prop_map(|n| XenbusState::from_number(n).unwrap())
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Frontend), Just(Role::Backend)]
    }

    /// Plain reachability by repeated expansion, independent of the BFS.
    fn reachable(role: Role, from: XenbusState, to: XenbusState) -> Option<usize> {
        let mut frontier = vec![from];
        for distance in 0..=9 {
            if frontier.contains(&to) {
                return Some(distance);
            }
            let mut next = frontier.clone();
            for (a, b) in table(role) {
                if frontier.contains(a) && !next.contains(b) {
                    next.push(*b);
                }
            }
            frontier = next;
        }
        None
    }

    proptest! {
        #[test]
        fn walker_takes_only_legal_steps_and_reaches_reachable_targets(
            role in role(), from in state(), to in state()
        ) {
            let mut steps = Vec::new();
            let result = walk::<IllegalTransition>(role, from, to, |a, b| {
                steps.push((a, b));
                Ok(())
            });
            let mut at = from;
            for (a, b) in steps {
                prop_assert_eq!(a, at);
                prop_assert!(is_legal(role, a, b), "{} -> {} is not legal", a, b);
                at = b;
            }
            match reachable(role, from, to) {
                Some(distance) => {
                    prop_assert!(result.is_ok());
                    prop_assert_eq!(at, to);
                    prop_assert_eq!(shortest_path(role, from, to).unwrap().len(), distance);
                }
                None => {
                    prop_assert_eq!(result, Err(IllegalTransition { role, from, to }));
                    prop_assert_eq!(at, from);
                }
            }
        }
    }
}
