//! The handshake: what each end does when the other end's state changes.
//! Pure: the inputs are the own (cached) state, the peer's state and, for
//! a backend, whether the toolstack still wants the device (`online`); the
//! output is a short list of [`Action`]s that [`crate::device`] carries out.
//!
//! The rows are the Linux drivers' (XEN-NOTES A.3), merged so that one
//! framework serves netfront-style (`Initialising → Connected`) and
//! blkfront-style (`Initialising → Initialised → Connected`) frontends:
//!
//! | peer | frontend | backend |
//! |---|---|---|
//! | InitWait | own Initialising: go to the published state (publishing); own Closed/Unknown: reconnect to it; otherwise the backend restarted: close, then reconnect | – |
//! | Initialising | – | go to InitWait (also the reconnect from Closed) |
//! | Initialised, Connected | peer Connected: publish first if still Initialising, tell the driver (a repeated Connected means "re-read my details"), go to Connected | own Initialising/InitWait: connect, go to Connected; own Reconfigured and peer Connected: back to Connected |
//! | Closing | go to Closed (`xenbus_frontend_closed`) | go to Closing |
//! | Closed | as Closing unless already Closed ("missed the backend's CLOSING") | go to Closed; unregister unless `online`; a backend that closed to restart (`reopen`) goes on to InitWait; one still in InitWait stays there (the frontend may reconnect) |
//! | Unknown (gone) | go to Closed if live | go to Closed and unregister |
//! | Reconfiguring | – | own Connected: go to Reconfigured (the driver re-reads its settings in `otherend_changed`) |
//! | Reconfigured | own Reconfiguring: back to Connected | – |
//!
//! Where the driver hooks run is a property of the step, not of the row
//! (see [`step_hook`]), as in netback's `set_backend_state`. [`plan`]
//! expands a reaction into the exact sequence of hook calls and state
//! writes; the sync [`crate::Device`] and the async device both just
//! carry out plans.

use crate::state::XenbusState::{self, *};
use crate::transitions::{shortest_path, IllegalTransition, Role};

/// One thing to do in answer to a peer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Walk the shortest legal path to this state, running each step's hook.
    Goto(XenbusState),
    /// Call the driver's "peer connected" hook (a frontend reads the
    /// backend's details: blkfront's `blkfront_connect`).
    PeerConnected,
    /// Drop the device from the bus (the backend's `device_unregister`).
    Unregister,
}

/// A driver hook that belongs to a single step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Start the device: a frontend publishes its rings and event channels
    /// (leaving Initialising); a backend maps them (entering Connected).
    Connect,
    /// Stop it: leaving a state in which it was started.
    Disconnect,
}

/// One output of the state machine, in the order it must happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call this driver hook (`Disconnect` only if the device is connected).
    Hook(Hook),
    /// Call the driver's "peer connected" hook.
    PeerConnected,
    /// Write this state (`xenbus_switch_state`).
    Write(XenbusState),
    /// Drop the device from the bus.
    Unregister,
}

/// Expands `actions`, starting in state `own`, into steps: each `Goto`
/// becomes the shortest legal path, each single step preceded by its hook.
/// Every `Goto` is checked before any step is returned, so an illegal
/// target runs nothing.
pub fn plan(role: Role, own: XenbusState, actions: &[Action]) -> Result<Vec<Step>, IllegalTransition> {
    let mut steps = Vec::new();
    let mut at = own;
    for action in actions {
        match *action {
            Action::Goto(target) => {
                for next in shortest_path(role, at, target)? {
                    steps.extend(step_hook(role, at, next).map(Step::Hook));
                    steps.push(Step::Write(next));
                    at = next;
                }
            }
            Action::PeerConnected => steps.push(Step::PeerConnected),
            Action::Unregister => steps.push(Step::Unregister),
        }
    }
    Ok(steps)
}

/// What the frontend does when the backend is in `peer`. `published` is
/// the state the frontend announces its rings with: `Initialised`
/// (blkfront) or `Connected` (netfront).
pub fn frontend_reacts(own: XenbusState, peer: XenbusState, published: XenbusState) -> Vec<Action> {
    match (peer, own) {
        (InitWait, Initialising | Closed | Unknown) => vec![Action::Goto(published)],
        (InitWait, Initialised | Connected | Reconfiguring | Closing) => {
            vec![Action::Goto(Closed), Action::Goto(published)]
        }
        (Connected, Initialising) => vec![Action::Goto(published), Action::PeerConnected, Action::Goto(Connected)],
        (Connected, Initialised | Connected) => vec![Action::PeerConnected, Action::Goto(Connected)],
        (Closing, Closed | Unknown) | (Closed, Closed | Unknown) => vec![],
        (Closing | Closed, Initialising | Initialised | Connected | Reconfiguring | Closing) => {
            vec![Action::Goto(Closed)]
        }
        (Unknown, Initialised | Connected | Reconfiguring | Closing) => vec![Action::Goto(Closed)],
        (Reconfigured, Reconfiguring) => vec![Action::Goto(Connected)],
        _ => vec![],
    }
}

/// What the backend does when the frontend is in `peer`; `online` is the
/// backend directory's `online` node. `reopen` is set while a backend that
/// took over a live device (a restarted backend process) waits for the
/// frontend to close: the frontend's published details belong to the old
/// backend, so it must close and publish again, and the backend goes on
/// to InitWait once it has closed.
pub fn backend_reacts(own: XenbusState, peer: XenbusState, online: bool, reopen: bool) -> Vec<Action> {
    match peer {
        Initialised | Connected if reopen => vec![],
        Closed if online && reopen => vec![Action::Goto(Closed), Action::Goto(InitWait)],
        // Still waiting for a frontend: a closed one may come back.
        Closed if online && matches!(own, Initialising | InitWait) => vec![],
        Initialising => vec![Action::Goto(InitWait)],
        Initialised | Connected if matches!(own, Initialising | InitWait) => vec![Action::Goto(Connected)],
        // netback's XDP round trip: answer Reconfiguring, and be connected
        // again once the frontend is.
        Reconfiguring if own == Connected => vec![Action::Goto(Reconfigured)],
        Connected if own == Reconfigured => vec![Action::Goto(Connected)],
        Closing if !matches!(own, Closing | Closed) => vec![Action::Goto(Closing)],
        Closed if online => vec![Action::Goto(Closed)],
        Closed | Unknown => vec![Action::Goto(Closed), Action::Unregister],
        _ => vec![],
    }
}

/// What a backend does when its own `state` node is found to read
/// `written` (by the toolstack: libxl's detach writes Closing there, with
/// `online` 0, and waits for Closed) while it is in `own` and the
/// frontend in `peer`. A frontend that is active answers the Closing
/// itself, which drives the rest ([`backend_reacts`]); one that is not
/// (Initialising, Closed, Unknown or gone: never started, or done) never
/// will, so the backend closes at once and, not online, leaves, as QEMU's
/// xen-bus does (`xen_device_backend_changed`). Linux's backends do not
/// (libxl's detach then times out), so a sync bus applies this only when
/// asked (`Bus::closing_unanswered`); the async bus does not watch a
/// device's own state.
pub fn backend_state_written(own: XenbusState, written: XenbusState, peer: XenbusState, online: bool) -> Vec<Action> {
    let frontend_active = matches!(peer, InitWait | Initialised | Connected | Closing);
    match (own, written) {
        (Closing | Closed, _) => vec![],
        (_, Closing) if !frontend_active && online => vec![Action::Goto(Closed)],
        (_, Closing) if !frontend_active => vec![Action::Goto(Closed), Action::Unregister],
        _ => vec![],
    }
}

/// What `role` reacts to `peer` with.
pub fn reacts(
    role: Role,
    own: XenbusState,
    peer: XenbusState,
    published: XenbusState,
    online: bool,
    reopen: bool,
) -> Vec<Action> {
    match role {
        Role::Frontend => frontend_reacts(own, peer, published),
        Role::Backend => backend_reacts(own, peer, online, reopen),
    }
}

/// The hook that runs before the step `from → to` is written.
pub fn step_hook(role: Role, from: XenbusState, to: XenbusState) -> Option<Hook> {
    let started = |s| match role {
        Role::Frontend => matches!(s, Initialised | Connected | Reconfiguring),
        Role::Backend => matches!(s, Connected | Reconfigured),
    };
    let connects = match role {
        Role::Frontend => from == Initialising && matches!(to, Initialised | Connected),
        Role::Backend => to == Connected && from != Reconfigured,
    };
    if connects {
        Some(Hook::Connect)
    } else if started(from) && matches!(to, Closing | Closed) {
        Some(Hook::Disconnect)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transitions::shortest_path;

    #[test]
    fn frontend_publishes_on_initwait_with_its_published_state() {
        assert_eq!(frontend_reacts(Initialising, InitWait, Connected), [Action::Goto(Connected)]);
        assert_eq!(frontend_reacts(Initialising, InitWait, Initialised), [Action::Goto(Initialised)]);
    }

    #[test]
    fn blkfront_style_frontend_connects_after_the_backend_does() {
        assert_eq!(
            frontend_reacts(Initialised, Connected, Initialised),
            [Action::PeerConnected, Action::Goto(Connected)]
        );
        // Connected before it saw InitWait: publish first (blkfront's talk_to_blkback).
        assert_eq!(
            frontend_reacts(Initialising, Connected, Initialised),
            [Action::Goto(Initialised), Action::PeerConnected, Action::Goto(Connected)]
        );
    }

    #[test]
    fn repeated_backend_connected_rereads_the_details() {
        assert_eq!(
            frontend_reacts(Connected, Connected, Initialised),
            [Action::PeerConnected, Action::Goto(Connected)]
        );
    }

    #[test]
    fn frontend_closes_when_the_backend_closes_or_vanishes() {
        for own in [Initialising, Initialised, Connected, Closing] {
            assert_eq!(frontend_reacts(own, Closing, Connected), [Action::Goto(Closed)], "{own}");
            assert_eq!(frontend_reacts(own, Closed, Connected), [Action::Goto(Closed)], "{own}");
        }
        assert!(frontend_reacts(Closed, Closed, Connected).is_empty());
        assert!(frontend_reacts(Closed, Closing, Connected).is_empty());
        assert_eq!(frontend_reacts(Connected, Unknown, Connected), [Action::Goto(Closed)]);
        assert!(frontend_reacts(Initialising, Unknown, Connected).is_empty());
    }

    #[test]
    fn frontend_reconnects_when_a_restarted_backend_waits_again() {
        assert_eq!(frontend_reacts(Closed, InitWait, Connected), [Action::Goto(Connected)]);
        assert_eq!(frontend_reacts(Connected, InitWait, Connected), [Action::Goto(Closed), Action::Goto(Connected)]);
    }

    #[test]
    fn frontend_ignores_the_states_linux_ignores() {
        for peer in [Initialising, Initialised, Reconfiguring] {
            assert!(frontend_reacts(Connected, peer, Connected).is_empty(), "{peer}");
        }
        assert!(frontend_reacts(Closing, Connected, Connected).is_empty());
    }

    #[test]
    fn backend_follows_netback_and_blkback() {
        assert_eq!(backend_reacts(Closed, Initialising, true, false), [Action::Goto(InitWait)]);
        assert_eq!(backend_reacts(InitWait, Initialised, true, false), [Action::Goto(Connected)]);
        assert_eq!(backend_reacts(InitWait, Connected, true, false), [Action::Goto(Connected)]);
        assert!(backend_reacts(Connected, Connected, true, false).is_empty());
        assert!(backend_reacts(Closed, Connected, true, false).is_empty());
        assert_eq!(backend_reacts(Connected, Closing, true, false), [Action::Goto(Closing)]);
        assert_eq!(backend_reacts(Connected, Closed, true, false), [Action::Goto(Closed)]);
        assert_eq!(backend_reacts(Connected, Closed, false, false), [Action::Goto(Closed), Action::Unregister]);
        assert!(backend_reacts(InitWait, Closed, true, false).is_empty());
        assert_eq!(backend_reacts(InitWait, Closed, false, false), [Action::Goto(Closed), Action::Unregister]);
        assert_eq!(backend_reacts(Connected, Unknown, true, false), [Action::Goto(Closed), Action::Unregister]);
    }

    #[test]
    fn a_backend_told_to_close_closes_at_once_only_if_no_frontend_will_answer() {
        for peer in [Initialising, Closed, Unknown] {
            assert_eq!(
                backend_state_written(InitWait, Closing, peer, false),
                [Action::Goto(Closed), Action::Unregister]
            );
            assert_eq!(backend_state_written(InitWait, Closing, peer, true), [Action::Goto(Closed)]);
        }
        for peer in [InitWait, Initialised, Connected, Closing] {
            assert!(backend_state_written(Connected, Closing, peer, false).is_empty(), "{peer} answers itself");
        }
        assert!(backend_state_written(Closing, Closing, Initialising, false).is_empty(), "already closing");
        assert!(backend_state_written(InitWait, InitWait, Initialising, false).is_empty(), "its own write");
    }

    #[test]
    fn backend_answers_a_reconfiguration_and_reconnects_after_it() {
        assert_eq!(backend_reacts(Connected, Reconfiguring, true, false), [Action::Goto(Reconfigured)]);
        assert_eq!(backend_reacts(Reconfigured, Connected, true, false), [Action::Goto(Connected)]);
        assert!(backend_reacts(InitWait, Reconfiguring, true, false).is_empty());
        assert_eq!(frontend_reacts(Reconfiguring, Reconfigured, Connected), [Action::Goto(Connected)]);
    }

    #[test]
    fn a_backend_that_took_over_a_live_device_waits_for_the_frontend_to_close_then_reopens() {
        assert!(backend_reacts(Closing, Connected, true, true).is_empty());
        assert!(backend_reacts(Closing, Initialised, true, true).is_empty());
        assert_eq!(backend_reacts(Closing, Closed, true, true), [Action::Goto(Closed), Action::Goto(InitWait)]);
        assert_eq!(backend_reacts(Closing, Initialising, true, true), [Action::Goto(InitWait)]);
        assert_eq!(backend_reacts(Closing, Closed, false, true), [Action::Goto(Closed), Action::Unregister]);
    }

    #[test]
    fn every_goto_a_reaction_asks_for_is_reachable() {
        for role in [Role::Frontend, Role::Backend] {
            let states = crate::transitions::table(role).iter().flat_map(|(a, b)| [*a, *b]);
            for own in states {
                for peer in XenbusState::ALL {
                    for published in [Initialised, Connected] {
                        let mut at = own;
                        for action in reacts(role, own, peer, published, true, false) {
                            if let Action::Goto(target) = action {
                                assert!(
                                    shortest_path(role, at, target).is_ok(),
                                    "{role:?} {own} on {peer}: {at} -> {target}"
                                );
                                at = target;
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn plan_expands_gotos_into_hooked_single_steps() {
        let actions = backend_reacts(Closing, Closed, true, true);
        assert_eq!(plan(Role::Backend, Closing, &actions), Ok(vec![Step::Write(Closed), Step::Write(InitWait)]));
        let actions = frontend_reacts(Initialising, Connected, Initialised);
        assert_eq!(
            plan(Role::Frontend, Initialising, &actions),
            Ok(vec![Step::Hook(Hook::Connect), Step::Write(Initialised), Step::PeerConnected, Step::Write(Connected)])
        );
        let actions = backend_reacts(Connected, Closed, false, false);
        assert_eq!(
            plan(Role::Backend, Connected, &actions),
            Ok(vec![Step::Hook(Hook::Disconnect), Step::Write(Closing), Step::Write(Closed), Step::Unregister])
        );
    }

    #[test]
    fn plan_with_an_unreachable_goto_is_an_error_and_no_steps() {
        let actions = [Action::Goto(Closed), Action::Goto(Reconfigured)];
        let err = plan(Role::Frontend, Connected, &actions).unwrap_err();
        assert_eq!(err, IllegalTransition { role: Role::Frontend, from: Closed, to: Reconfigured });
    }

    #[test]
    fn hooks_run_on_the_steps_that_start_and_stop_the_device() {
        assert_eq!(step_hook(Role::Backend, InitWait, Connected), Some(Hook::Connect));
        assert_eq!(step_hook(Role::Backend, Connected, Closing), Some(Hook::Disconnect));
        assert_eq!(step_hook(Role::Backend, Closing, Closed), None);
        assert_eq!(step_hook(Role::Backend, Reconfigured, Connected), None);
        assert_eq!(step_hook(Role::Frontend, Initialising, Initialised), Some(Hook::Connect));
        assert_eq!(step_hook(Role::Frontend, Initialising, Connected), Some(Hook::Connect));
        assert_eq!(step_hook(Role::Frontend, Initialised, Connected), None);
        assert_eq!(step_hook(Role::Frontend, Connected, Closed), Some(Hook::Disconnect));
        assert_eq!(step_hook(Role::Frontend, Initialised, Closing), Some(Hook::Disconnect));
        assert_eq!(step_hook(Role::Frontend, Initialising, Closed), None);
    }
}
