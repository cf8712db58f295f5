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

    /// Its length in bytes, without the UTF-8 check `as_str` makes (a
    /// DIRECTORY_PART of 10,000 children measures every name for every
    /// part: through `Deref<Target = str>` that check made listing them
    /// 1.5× slower).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.as_bytes().len()
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
///
/// Two generations, kept in 8 bytes of the node: `meta_gen` here, and
/// `list_gen` with the children list, or, for a node with no children
/// whose list generation equals `meta_gen` (every leaf until its value or
/// permissions change), nowhere. The setters keep that exact: changing
/// `meta_gen` of such a node first gives it an empty list holding the old
/// generation.
#[derive(Debug, Clone)]
pub struct Node {
    /// The value: any bytes, nul included.
    pub value: Value,
    /// Permissions, owner first.
    pub perms: PermList,
    /// The children under their leaf names, in the order they were
    /// created, and `list_gen` when it is not `meta_gen`. Change the list
    /// through it, then stamp [`Node::set_list_gen`].
    pub children: Children,
    meta_gen: u64,
}

impl Node {
    /// A childless node.
    pub fn new(value: &[u8], perms: PermList, gen: u64) -> Node {
        Node { value: Value::new(value), perms, children: Children::default(), meta_gen: gen }
    }

    /// A node from all its parts (an imported one).
    pub fn from_parts(value: Value, perms: PermList, children: Children, meta_gen: u64, list_gen: u64) -> Node {
        let mut node = Node { value, perms, children, meta_gen };
        node.set_list_gen(list_gen);
        node
    }

    /// Generation of the last change to value or permissions (or creation).
    /// Transactions validate against it; stale permission entries are
    /// judged against it.
    pub fn meta_gen(&self) -> u64 {
        self.meta_gen
    }

    /// Generation of the last change to the children list (or creation).
    /// `DIRECTORY_PART` reports it so a reader can detect a change.
    pub fn list_gen(&self) -> u64 {
        self.children.gen().unwrap_or(self.meta_gen)
    }

    /// A copy with a new value (if given) and permissions, changed at
    /// `gen`: what WRITE and SET_PERMS make of an existing node.
    pub fn with_meta(&self, value: Option<Value>, perms: PermList, gen: u64) -> Node {
        let mut node = Node { value: value.unwrap_or_else(|| self.value.clone()), perms, ..self.clone() };
        node.set_meta_gen(gen);
        node
    }

    /// Stamps a change to value or permissions.
    pub fn set_meta_gen(&mut self, gen: u64) {
        if self.children.gen().is_none() && gen != self.meta_gen {
            self.children.set_gen(self.meta_gen);
        }
        self.meta_gen = gen;
    }

    /// Stamps a change to the children list.
    pub fn set_list_gen(&mut self, gen: u64) {
        if gen == self.meta_gen && self.children.is_empty() {
            self.children.clear_if_empty();
        } else {
            self.children.set_gen(gen);
        }
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
    fn a_node_with_its_count_fits_the_allocators_64_byte_class() {
        // glibc's malloc serves a request of up to 56 bytes from a 64-byte
        // chunk; `memory::NODE` charges what is measured here.
        assert!(std::mem::size_of::<Node>() + std::mem::size_of::<usize>() <= 56);
        assert_eq!(std::mem::size_of::<(Name, NodeRef)>(), 24);
    }

    #[test]
    fn list_gen_survives_meta_changes_and_costs_nothing_while_equal() {
        let mut n = Node::new(b"", PermList::owned_by(0, xenstore_wire::Access::None), 5);
        assert_eq!((n.meta_gen(), n.list_gen(), n.children.gen()), (5, 5, None));
        n.set_meta_gen(7);
        assert_eq!((n.meta_gen(), n.list_gen()), (7, 5));
        n.set_list_gen(7);
        assert_eq!((n.list_gen(), n.children.gen()), (7, None));
        let mut parent = Node::new(b"", PermList::owned_by(0, xenstore_wire::Access::None), 1);
        parent.children.push(Name::from("a"), NodeRef::new(n.clone()));
        parent.set_list_gen(8);
        parent.set_meta_gen(9);
        assert_eq!((parent.meta_gen(), parent.list_gen()), (9, 8));
        assert!(parent.children.remove("a").is_some());
        parent.set_list_gen(10);
        assert_eq!((parent.list_gen(), parent.children.len()), (10, 0));
        let imported = Node::from_parts(n.value.clone(), n.perms.clone(), Children::default(), 3, 2);
        assert_eq!((imported.meta_gen(), imported.list_gen()), (3, 2));
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
