//! A node's children: each child node under its leaf name, in creation
//! order, compact when small.
//!
//! The tree is nested (see [`crate::tree`]): a directory holds its
//! children's nodes, so a leaf name is stored once, here, and no node has a
//! full-path key. Most nodes have no children and most directories a
//! handful, so a list is nothing at all when empty and one shared slice of
//! `(name, node)` pairs when small (24 bytes a child with its name inline
//! when short, see [`crate::small`]; copied on change: at
//! most [`SMALL_MAX`] pairs, found by a linear scan that compares lengths
//! before bytes). Past that it becomes a persistent map of names by
//! creation number for the order and a persistent map for lookups (each
//! node with its creation number), so that adding or removing a domain
//! under `/local/domain` with thousands of siblings costs O(log n), not a
//! copy of the list or a scan for its place in the order.

use imbl::OrdMap;

use crate::node::{Name, NodeRef};

/// Lists up to this long are a plain slice.
pub const SMALL_MAX: usize = 32;

/// The children of one node and the generation of their list: nothing
/// when there are none and the generation is the node's own (see
/// [`crate::node::Node::list_gen`]), else one shared list.
///
/// Eight bytes in the node: a node is the store's most numerous thing,
/// and most have no children, so the list, its variants and its
/// generation live behind the one pointer (an enum of the variants inline
/// would be 24 bytes and the generation 8 more, pushing every node into
/// the allocator's next size class).
#[derive(Debug, Clone, Default)]
pub struct Children(Option<triomphe::Arc<List>>);

/// A children list, possibly empty (then kept only for its generation).
#[derive(Debug, Clone)]
struct List {
    /// Generation of the last change to the list.
    gen: u64,
    entries: Entries,
}

/// The children themselves.
#[derive(Debug, Clone)]
enum Entries {
    /// Up to [`SMALL_MAX`] children, in creation order.
    Small(Box<[(Name, NodeRef)]>),
    /// More (boxed to keep the small case small).
    Large(Box<Large>),
}

/// A long children list: the names by creation number (creation order),
/// and the nodes by name with their creation numbers.
#[derive(Debug, Clone)]
pub struct Large {
    order: OrdMap<u64, Name>,
    nodes: OrdMap<Name, (u64, NodeRef)>,
    /// The next creation number.
    next: u64,
}

impl Large {
    /// Appends a child not listed yet.
    fn push(&mut self, name: Name, node: NodeRef) {
        let number = self.next;
        self.next += 1;
        self.order.insert(number, name.clone());
        self.nodes.insert(name, (number, node));
    }
}

impl Children {
    fn entries(&self) -> Option<&Entries> {
        self.0.as_deref().map(|list| &list.entries)
    }

    /// The list's own generation; `None` when it has none (no children,
    /// and the generation is the node's).
    pub(crate) fn gen(&self) -> Option<u64> {
        self.0.as_deref().map(|list| list.gen)
    }

    /// Sets the list's generation, keeping an empty list for it if need be.
    pub(crate) fn set_gen(&mut self, gen: u64) {
        match &mut self.0 {
            Some(list) => triomphe::Arc::make_mut(list).gen = gen,
            None => self.0 = Some(triomphe::Arc::new(List { gen, entries: Entries::Small(Box::new([])) })),
        }
    }

    /// Drops an empty list (its generation with it).
    pub(crate) fn clear_if_empty(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        match self.entries() {
            None => 0,
            Some(Entries::Small(pairs)) => pairs.len(),
            Some(Entries::Large(large)) => large.order.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names in creation order.
    pub fn iter(&self) -> Iter<'_> {
        match self.entries() {
            None => Iter::Slice([].iter()),
            Some(Entries::Small(pairs)) => Iter::Slice(pairs.iter()),
            Some(Entries::Large(large)) => Iter::Large(large.order.values()),
        }
    }

    /// Every child with its name, in no particular order (for walks).
    pub fn nodes(&self) -> Box<dyn Iterator<Item = (&Name, &NodeRef)> + '_> {
        match self.entries() {
            None => Box::new(std::iter::empty()),
            Some(Entries::Small(pairs)) => Box::new(pairs.iter().map(|(n, c)| (n, c))),
            Some(Entries::Large(large)) => Box::new(large.nodes.iter().map(|(n, (_, c))| (n, c))),
        }
    }

    /// The child called `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&NodeRef> {
        match self.entries()? {
            Entries::Small(pairs) => pairs.iter().find(|(n, _)| same(n.as_bytes(), name.as_bytes())).map(|(_, c)| c),
            Entries::Large(large) => large.nodes.get(name.as_bytes()).map(|(_, c)| c),
        }
    }

    /// The child called `name`, for replacing; copies this list first if
    /// it is shared (with a transaction's snapshot).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut NodeRef> {
        // Look before copying: a miss must not copy a shared list.
        self.get(name)?;
        let list = self.0.as_mut()?;
        match &mut triomphe::Arc::make_mut(list).entries {
            Entries::Small(pairs) => {
                pairs.iter_mut().find(|(n, _)| same(n.as_bytes(), name.as_bytes())).map(|(_, c)| c)
            }
            Entries::Large(large) => large.nodes.get_mut(name.as_bytes()).map(|(_, c)| c),
        }
    }

    /// Appends a child; its name must not be listed yet. The caller sets
    /// the generation ([`crate::node::Node::set_list_gen`]).
    pub fn push(&mut self, name: Name, node: NodeRef) {
        let Some(list) = self.0.as_mut() else {
            let entries = Entries::Small(Box::new([(name, node)]));
            self.0 = Some(triomphe::Arc::new(List { gen: 0, entries }));
            return;
        };
        let entries = &mut triomphe::Arc::make_mut(list).entries;
        match entries {
            Entries::Small(pairs) if pairs.len() < SMALL_MAX => {
                let mut grown = std::mem::take(pairs).into_vec();
                grown.reserve_exact(1);
                grown.push((name, node));
                *pairs = grown.into_boxed_slice();
            }
            Entries::Small(pairs) => {
                let mut large = Large { order: OrdMap::new(), nodes: OrdMap::new(), next: 0 };
                for (n, c) in std::mem::take(pairs).into_vec().into_iter().chain([(name, node)]) {
                    large.push(n, c);
                }
                *entries = Entries::Large(Box::new(large));
            }
            Entries::Large(large) => large.push(name, node),
        }
    }

    /// Removes the child called `name` and returns its node. An emptied
    /// list stays, for its generation, until the caller sets that.
    pub fn remove(&mut self, name: &str) -> Option<NodeRef> {
        self.get(name)?;
        let list = self.0.as_mut()?;
        match &mut triomphe::Arc::make_mut(list).entries {
            Entries::Small(pairs) => {
                let i = pairs.iter().position(|(n, _)| n.as_bytes() == name.as_bytes())?;
                let mut kept = std::mem::take(pairs).into_vec();
                let (_, node) = kept.remove(i);
                *pairs = kept.into_boxed_slice();
                Some(node)
            }
            Entries::Large(large) => {
                let (number, node) = large.nodes.remove(name.as_bytes())?;
                large.order.remove(&number);
                Some(node)
            }
        }
    }
}

/// Whether two leaf names are equal: the length first,
/// then a byte loop, which beats a `memcmp` call on names this short.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Iterator over the names of [`Children`], both ways.
pub enum Iter<'a> {
    /// Over an empty or small list.
    Slice(std::slice::Iter<'a, (Name, NodeRef)>),
    /// Over a large list.
    Large(imbl::ordmap::Values<'a, u64, Name, imbl::shared_ptr::DefaultSharedPtr>),
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("children::Iter").field("remaining", &self.size_hint().0).finish()
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Name;

    fn next(&mut self) -> Option<&'a Name> {
        match self {
            Iter::Slice(it) => it.next().map(|(n, _)| n),
            Iter::Large(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Slice(it) => it.size_hint(),
            Iter::Large(it) => it.size_hint(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Slice(it) => it.next_back().map(|(n, _)| n),
            Iter::Large(it) => it.next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Node;

    fn names(c: &Children) -> Vec<String> {
        c.iter().map(|n| n.to_string()).collect()
    }

    fn leaf(tag: u64) -> NodeRef {
        NodeRef::new(Node::new(b"", xenstore_wire::PermList::owned_by(0, xenstore_wire::Access::None), tag))
    }

    #[test]
    fn order_is_kept_across_the_small_to_large_switch() {
        let mut c = Children::default();
        let all: Vec<String> = (0..SMALL_MAX * 3).map(|i| format!("n{i}")).collect();
        for (i, n) in all.iter().enumerate() {
            c.push(Name::from(n.as_str()), leaf(i as u64));
            assert_eq!(c.len(), i + 1);
            assert_eq!(matches!(c.entries(), Some(Entries::Large(_))), i + 1 > SMALL_MAX);
        }
        assert_eq!(names(&c), all);
        let back: Vec<String> = c.iter().rev().map(|n| n.to_string()).collect();
        assert_eq!(back, all.iter().rev().cloned().collect::<Vec<_>>());
        for (i, n) in all.iter().enumerate() {
            assert_eq!(c.get(n).map(|node| node.meta_gen()), Some(i as u64), "{n}");
        }
        assert_eq!(c.nodes().count(), all.len());
    }

    #[test]
    fn a_large_list_removed_from_and_added_to_lists_in_creation_order_both_ways() {
        let mut c = Children::default();
        for i in 0..SMALL_MAX * 2 {
            c.push(Name::from(format!("n{i}").as_str()), leaf(i as u64));
        }
        assert!(c.remove("n3").is_some());
        assert!(c.remove(&format!("n{}", SMALL_MAX * 2 - 1)).is_some());
        c.push(Name::from("n3"), leaf(3));
        let mut want: Vec<String> = (0..SMALL_MAX * 2 - 1).filter(|&i| i != 3).map(|i| format!("n{i}")).collect();
        want.push("n3".to_owned());
        assert_eq!(names(&c), want);
        let backwards: Vec<String> = c.iter().rev().map(|n| n.to_string()).collect();
        want.reverse();
        assert_eq!(backwards, want);
        assert_eq!(c.get("n3").map(|n| n.meta_gen()), Some(3));
        assert_eq!(c.len(), SMALL_MAX * 2 - 1);
    }

    #[test]
    fn remove_keeps_the_others_in_order_and_returns_the_node() {
        for size in [1, 3, SMALL_MAX, SMALL_MAX + 5] {
            let mut c = Children::default();
            for i in 0..size {
                c.push(Name::from(format!("n{i}").as_str()), leaf(i as u64));
            }
            assert!(c.remove("absent").is_none());
            let gone = c.remove(&format!("n{}", size / 2)).map(|n| n.meta_gen());
            assert_eq!(gone, Some((size / 2) as u64));
            let want: Vec<String> = (0..size).filter(|i| *i != size / 2).map(|i| format!("n{i}")).collect();
            assert_eq!(names(&c), want, "size {size}");
            assert!(c.get(&format!("n{}", size / 2)).is_none());
        }
        let mut one = Children::default();
        one.push(Name::from("x"), leaf(0));
        assert!(one.remove("x").is_some());
        assert!(one.is_empty());
        one.clear_if_empty();
        assert!(one.gen().is_none());
    }

    #[test]
    fn clones_share_and_diverge() {
        for size in [1, SMALL_MAX + 1] {
            let mut a = Children::default();
            for i in 0..size {
                a.push(Name::from(format!("n{i}").as_str()), leaf(0));
            }
            let b = a.clone();
            a.push(Name::from("y"), leaf(0));
            if let Some(slot) = a.get_mut("n0") {
                *slot = leaf(7);
            }
            assert_eq!(a.len(), size + 1);
            assert_eq!(b.len(), size);
            assert_eq!(a.get("n0").map(|n| n.meta_gen()), Some(7));
            assert_eq!(b.get("n0").map(|n| n.meta_gen()), Some(0));
        }
    }
}
