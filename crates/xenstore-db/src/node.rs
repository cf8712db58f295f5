//! One node of the store.

use std::sync::Arc;

use xenstore_wire::PermList;

use crate::children::Children;

/// A child's leaf name, stored once, in its parent's children list (and
/// shared with `DIRECTORY` replies).
pub type Name = Arc<str>;

/// A node: value, permissions, its children (nodes and names, in creation
/// order), generations.
///
/// Nodes are immutable once shared between the live store and transaction
/// snapshots through `Arc`; a change to a shared node copies it (its
/// children list is shared, not copied, until it changes too).
#[derive(Debug, Clone)]
pub struct Node {
    /// The value: any bytes, nul included.
    pub value: Arc<[u8]>,
    /// Permissions, owner first.
    pub perms: PermList,
    /// The children under their leaf names, in the order they were created.
    pub children: Children,
    /// Generation of the last change to value or permissions (or creation).
    /// Transactions validate against it; stale permission entries are
    /// judged against it.
    pub meta_gen: u64,
    /// Generation of the last change to the children list (or creation).
    /// `DIRECTORY_PART` reports it so a reader can detect a change.
    pub list_gen: u64,
}

impl Node {
    /// A childless node.
    pub fn new(value: Arc<[u8]>, perms: PermList, gen: u64) -> Node {
        Node { value, perms, children: Children::Empty, meta_gen: gen, list_gen: gen }
    }

    /// Size charged against the `node-size` quota: the value's bytes.
    pub fn charged_size(value: &[u8]) -> usize {
        value.len()
    }
}
