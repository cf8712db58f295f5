//! One node of the store.

use std::borrow::Borrow;
use std::sync::Arc;

use xenstore_wire::PermList;

use crate::children::Children;
use crate::small::SmallBytes;

/// A shared node. `triomphe`'s `Arc` has no weak count: 8 bytes less per
/// node than `std`'s, which is what brings a node with its header to the
/// allocator's 80-byte class (see `memory.rs`).
pub type NodeRef = triomphe::Arc<Node>;

/// A node's value: inline when short (most are), else shared.
pub type Value = SmallBytes;

/// A child's leaf name, stored once, in its parent's children list: inline
/// when short (most are), so a child costs its parent's list 24 bytes and
/// no allocation of its own.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(SmallBytes);

impl Name {
    /// The name as text (always UTF-8: built from a `str`).
    #[inline]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// The name's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name(SmallBytes::new(name.as_bytes()))
    }
}

impl From<&Name> for Arc<str> {
    fn from(name: &Name) -> Arc<str> {
        Arc::from(name.as_str())
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A node: value, permissions, its children (nodes and names, in creation
/// order), generations.
///
/// Nodes are immutable once shared between the live store and transaction
/// snapshots through [`NodeRef`]; a change to a shared node copies it (its
/// children list is shared, not copied, until it changes too).
#[derive(Debug, Clone)]
pub struct Node {
    /// The value: any bytes, nul included.
    pub value: Value,
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
    pub fn new(value: &[u8], perms: PermList, gen: u64) -> Node {
        Node { value: Value::new(value), perms, children: Children::default(), meta_gen: gen, list_gen: gen }
    }

    /// Size charged against the `node-size` quota: the value's bytes.
    pub fn charged_size(value: &[u8]) -> usize {
        value.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_with_its_count_fits_the_allocators_80_byte_class() {
        // glibc's malloc serves a request of up to 72 bytes from an 80-byte
        // chunk; `memory::NODE` charges what is measured here.
        assert!(std::mem::size_of::<Node>() + std::mem::size_of::<usize>() <= 72);
        assert_eq!(std::mem::size_of::<(Name, NodeRef)>(), 24);
    }

    #[test]
    fn a_name_reads_back_as_text_short_or_long() {
        for name in ["", "state", "feature-persistent", "platform-feature-multiprocessor-suspend"] {
            let n = Name::from(name);
            assert_eq!(n.as_str(), name);
            assert_eq!(Arc::<str>::from(&n).as_ref(), name);
            assert_eq!(n.to_string(), name);
        }
    }
}
