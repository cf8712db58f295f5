//! Changes to the store, before they are matched against watches.

use std::sync::Arc;

use xenstore_wire::{DomId, PermList, WatchEvent};

use crate::ConnId;

/// Something that happened to the store and may fire watches. Permissions
/// are captured when it happens, so watchers who could not read the node
/// then are not told (XSA-115). As in C's `watch_permitted`, a watcher may
/// see an event when it may read the node, its parent, or (for a
/// permission change) the node as it was: `via` holds those other lists.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A node was created, written, or had its permissions changed.
    Node {
        /// Its path.
        path: Arc<str>,
        /// Its permissions afterwards.
        perms: PermList,
        /// Its parent's permissions, and for SET_PERMS its own before.
        via: Vec<PermList>,
    },
    /// A subtree was removed.
    Removed {
        /// The removed node's path.
        path: Arc<str>,
        /// Its permissions before removal.
        perms: PermList,
        /// Its parent's permissions.
        via: Vec<PermList>,
        /// Its descendants with their permissions, in path order: a watch on
        /// one of them fires with its own path, seen by whoever may read
        /// it or its parent (the removed node or another descendant).
        below: Vec<(Arc<str>, PermList)>,
    },
    /// `@introduceDomain` or `@releaseDomain` for a domain.
    Special {
        /// `@introduceDomain` or `@releaseDomain`.
        name: &'static str,
        /// The domain concerned.
        domid: DomId,
    },
}

/// A watch event to send on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The connection whose watch fired.
    pub conn: ConnId,
    /// The event to send there.
    pub event: WatchEvent,
}
