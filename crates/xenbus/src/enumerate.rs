//! The bus's decisions, without I/O: what a watch event on the bus root
//! concerns, which devices are probed, how a backend starts a probed
//! device, which held devices vanished from a listing.
//!
//! The sync [`crate::Bus`] and the async `xenbus::tokio::AsyncBus` (feature
//! `tokio`) both ask these functions, so the two enumerate by the same
//! rules and differ only in how they read the store.

use std::collections::{BTreeMap, BTreeSet};

use xenstore_wire::path::{depth_below, descendants_range};

use crate::paths;
use crate::state::XenbusState;
use crate::transitions::Role;

/// What an event on the bus root is about. The point of telling these
/// apart: an event at or inside a device looks at that one directory, so
/// its cost does not grow with the number of devices; only an event above
/// the device level lists, and only below that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// At or inside the device directory `dir`; `at_dir` when the event
    /// names the directory itself (a removal, or its creation), not a node
    /// inside it.
    Device {
        /// The device directory.
        dir: String,
        /// The event's path is `dir` itself.
        at_dir: bool,
    },
    /// Above the device level (the root, or a frontend domain's directory
    /// of a backend bus): the device directories below `top` are listed.
    Above {
        /// Where the listing starts.
        top: String,
    },
    /// Not below the root at all.
    Outside,
}

/// What the root event at `path` concerns, for a bus of `role` at `root`.
pub fn scope(role: Role, root: &str, path: &str) -> Scope {
    let device_depth = paths::device_depth(role);
    match depth_below(path, root) {
        Some(depth) if depth >= device_depth => match device_dir_of(role, root, path) {
            Some(dir) => Scope::Device { dir, at_dir: depth == device_depth },
            None => Scope::Outside,
        },
        Some(_) => Scope::Above { top: path.to_owned() },
        None => Scope::Outside,
    }
}

/// The device directory a path below the root lies in: the root and the
/// first device-depth components below it.
pub fn device_dir_of(role: Role, root: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix(root)?;
    let depth = paths::device_depth(role);
    let components: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).take(depth).collect();
    (components.len() == depth).then(|| format!("{root}/{}", components.join("/")))
}

/// How many levels of directories lie between `top` (the root or a
/// directory between it and the devices) and the device directories: the
/// number of listings, one level after the other, that find the devices.
pub fn levels_to_list(role: Role, root: &str, top: &str) -> usize {
    paths::device_depth(role).saturating_sub(depth_below(top, root).unwrap_or(0))
}

/// Whether a device found in `state` is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A new device: take it.
    Take,
    /// A backend's live device: take it if its `online` node is `1` (see
    /// [`is_online`]); that is a backend process restarting.
    IfOnline,
    /// Not taken: as in Linux, a device that is not new "is going away
    /// after switching to Closed".
    Skip,
}

/// Which devices a bus of `role` probes: any whose own `state` is
/// `Initialising`; a backend also takes over a device that is neither
/// closing nor closed, if it is `online`.
pub fn probe(role: Role, state: XenbusState) -> Probe {
    use XenbusState::*;
    match (role, state) {
        (_, Initialising) => Probe::Take,
        (Role::Backend, InitWait | Initialised | Connected | Reconfiguring | Reconfigured) => Probe::IfOnline,
        _ => Probe::Skip,
    }
}

/// The text of an `online` node that means online (`1`, spaces around
/// allowed, as libxl may write a newline).
pub fn is_online(value: &[u8]) -> bool {
    value.trim_ascii() == b"1"
}

/// What a probed device's end does first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A frontend waits for its backend (whose first state starts it).
    Wait,
    /// A backend announces itself: `InitWait`.
    InitWait,
    /// A backend takes over a connected device: the frontend's published
    /// rings belong to the old backend process, so the new one closes the
    /// device, waits for the frontend to close, and goes back to
    /// `InitWait`, which makes the frontend reconnect.
    TakeOver,
}

/// How an end of `role` starts a device it probed in `state`.
pub fn start(role: Role, state: XenbusState) -> Start {
    match (role, state) {
        (Role::Frontend, _) => Start::Wait,
        (Role::Backend, XenbusState::Connected | XenbusState::Reconfigured) => Start::TakeOver,
        (Role::Backend, _) => Start::InitWait,
    }
}

/// The devices held below `top` that a listing of `top` did not find: a
/// set lookup per held device below `top`, none for the others.
pub fn vanished<V>(held: &BTreeMap<String, V>, top: &str, found: &BTreeSet<String>) -> Vec<String> {
    let (lo, hi) = descendants_range(top);
    held.range(lo..hi).map(|(dir, _)| dir).filter(|dir| !found.contains(*dir)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FE_ROOT: &str = "/local/domain/3/device/vif";
    const BE_ROOT: &str = "/local/domain/0/backend/vif";

    fn device(dir: &str, at_dir: bool) -> Scope {
        Scope::Device { dir: dir.to_owned(), at_dir }
    }

    #[test]
    fn scope_of_frontend_events() {
        let dev = "/local/domain/3/device/vif/0";
        assert_eq!(scope(Role::Frontend, FE_ROOT, FE_ROOT), Scope::Above { top: FE_ROOT.to_owned() });
        assert_eq!(scope(Role::Frontend, FE_ROOT, dev), device(dev, true));
        assert_eq!(scope(Role::Frontend, FE_ROOT, &format!("{dev}/state")), device(dev, false));
        assert_eq!(scope(Role::Frontend, FE_ROOT, "/local/domain/3/device/vbd/0"), Scope::Outside);
    }

    #[test]
    fn scope_of_backend_events() {
        let domain = format!("{BE_ROOT}/3");
        let dev = format!("{BE_ROOT}/3/0");
        assert_eq!(scope(Role::Backend, BE_ROOT, &domain), Scope::Above { top: domain.clone() });
        assert_eq!(scope(Role::Backend, BE_ROOT, &dev), device(&dev, true));
        assert_eq!(scope(Role::Backend, BE_ROOT, &format!("{dev}/online")), device(&dev, false));
        assert_eq!(levels_to_list(Role::Backend, BE_ROOT, BE_ROOT), 2);
        assert_eq!(levels_to_list(Role::Backend, BE_ROOT, &domain), 1);
    }

    #[test]
    fn probe_table() {
        use XenbusState::*;
        let rows = [
            (Role::Frontend, Initialising, Probe::Take),
            (Role::Frontend, InitWait, Probe::Skip),
            (Role::Frontend, Connected, Probe::Skip),
            (Role::Frontend, Closed, Probe::Skip),
            (Role::Backend, Initialising, Probe::Take),
            (Role::Backend, InitWait, Probe::IfOnline),
            (Role::Backend, Connected, Probe::IfOnline),
            (Role::Backend, Reconfigured, Probe::IfOnline),
            (Role::Backend, Closing, Probe::Skip),
            (Role::Backend, Closed, Probe::Skip),
            (Role::Backend, Unknown, Probe::Skip),
        ];
        for (role, state, expected) in rows {
            assert_eq!(probe(role, state), expected, "{role:?} {state}");
        }
    }

    #[test]
    fn a_backend_takes_over_only_a_connected_device() {
        assert_eq!(start(Role::Backend, XenbusState::Connected), Start::TakeOver);
        assert_eq!(start(Role::Backend, XenbusState::Reconfigured), Start::TakeOver);
        assert_eq!(start(Role::Backend, XenbusState::Initialising), Start::InitWait);
        assert_eq!(start(Role::Backend, XenbusState::Initialised), Start::InitWait);
        assert_eq!(start(Role::Frontend, XenbusState::Initialising), Start::Wait);
    }

    #[test]
    fn vanished_looks_only_below_top() {
        let held: BTreeMap<String, ()> =
            [format!("{BE_ROOT}/3/0"), format!("{BE_ROOT}/3/1"), format!("{BE_ROOT}/4/0")].map(|d| (d, ())).into();
        let found: BTreeSet<String> = [format!("{BE_ROOT}/3/1")].into();
        assert_eq!(vanished(&held, &format!("{BE_ROOT}/3"), &found), [format!("{BE_ROOT}/3/0")]);
        assert!(is_online(b"1\n") && !is_online(b"0"));
    }
}
