//! The tree as nested persistent nodes: each node holds its children.
//!
//! A node is found by walking its path from the root one leaf name at a
//! time ([`crate::children`]), so no node carries a full-path key and each
//! leaf name is stored once. Nodes are shared through `Arc` and changed by
//! copying the path from the root down (in place when nothing else shares
//! it): cloning the tree is one reference count, which is what makes
//! `TRANSACTION_START` O(1) whatever the store size, and a change costs
//! O(depth) node copies plus O(log n) in a directory with many children.
//!
//! Whole-store walks (the consistency check, a domain removal that must
//! search for nodes it still owns) build paths as they go and sort them, so
//! callers see byte order as with a path-keyed map. Dropping a node drops
//! its subtree recursively; depth is bounded by the path length limit.

use std::sync::Arc;

use xenstore_wire::path;

use crate::node::{Name, Node, NodeRef};

/// A whole store (the live one, or a transaction's view).
#[derive(Debug, Clone)]
pub struct Tree {
    pub(crate) root: NodeRef,
    pub(crate) len: usize,
}

/// The leaf names of a canonical absolute path, root first (none for `/`).
/// A plain byte scan: names are short, and this is every lookup's loop.
fn components(p: &str) -> Components<'_> {
    Components { rest: p.strip_prefix('/').unwrap_or(p) }
}

/// Iterator of [`components`].
struct Components<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Components<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.bytes().position(|b| b == b'/').unwrap_or(self.rest.len());
        let name = self.rest.get(..end).unwrap_or_default();
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        Some(name)
    }
}

impl Tree {
    /// A tree holding only `root`.
    pub fn with_root(root: Node) -> Tree {
        Tree { root: NodeRef::new(root), len: 1 }
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&NodeRef> {
        let mut node = &self.root;
        for name in components(path) {
            node = node.children.get(name)?;
        }
        Some(node)
    }

    /// The slot of the node at `path`, copying every shared node above it.
    fn get_mut(&mut self, path: &str) -> Option<&mut NodeRef> {
        let mut slot = &mut self.root;
        for name in components(path) {
            slot = NodeRef::make_mut(slot).children.get_mut(name)?;
        }
        Some(slot)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree is empty (never true: `/` always exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The closest existing ancestor of `path` (not `path` itself).
    pub fn nearest_ancestor<'a>(&self, p: &'a str) -> Option<(&'a str, &NodeRef)> {
        let parent = path::parent(p)?;
        let mut found = ("/", &self.root);
        let mut end = 0;
        for name in components(parent) {
            let Some(child) = found.1.children.get(name) else { break };
            end += 1 + name.len();
            found = (p.get(..end).unwrap_or("/"), child);
        }
        Some(found)
    }

    /// Replaces the node at an existing `path` (a node built from the one
    /// there, children included).
    pub fn replace(&mut self, path: &str, node: Node) {
        if let Some(slot) = self.get_mut(path) {
            *slot = NodeRef::new(node);
        }
    }

    /// Inserts a new node at `path` and appends it to its parent's
    /// children, stamping the parent's `list_gen`. The parent must exist.
    /// Returns the path, shared by the events and records that name it.
    pub fn create(&mut self, p: &str, node: Node, gen: u64) -> Arc<str> {
        if let Some(slot) = path::parent(p).and_then(|parent| self.get_mut(parent)) {
            let parent = NodeRef::make_mut(slot);
            parent.children.push(Name::from(path::basename(p)), NodeRef::new(node));
            parent.set_list_gen(gen);
            self.len += 1;
        }
        Arc::from(p)
    }

    /// Removes `path` and every node below it, unlinking it from its parent
    /// (stamping the parent's `list_gen`). Returns the removed nodes, top
    /// first then descendants in path order.
    pub fn remove_subtree(&mut self, p: &str, gen: u64) -> Vec<(Arc<str>, NodeRef)> {
        let Some(slot) = path::parent(p).and_then(|parent| self.get_mut(parent)) else {
            return Vec::new();
        };
        if slot.children.get(path::basename(p)).is_none() {
            return Vec::new();
        }
        let parent = NodeRef::make_mut(slot);
        let Some(top) = parent.children.remove(path::basename(p)) else {
            return Vec::new();
        };
        parent.set_list_gen(gen);
        let mut removed = vec![(Arc::from(p), top.clone())];
        removed.extend(below(p, &top).into_iter().map(|(k, n)| (Arc::from(k), n.clone())));
        self.len -= removed.len();
        removed
    }

    /// Paths strictly below `path`, in path order.
    pub fn descendants(&self, p: &str) -> Vec<(Arc<str>, NodeRef)> {
        self.get(p)
            .map_or_else(Vec::new, |node| below(p, node).into_iter().map(|(k, n)| (Arc::from(k), n.clone())).collect())
    }

    /// Every node, in path order (builds every path: for checks and tests).
    pub fn iter(&self) -> impl Iterator<Item = (String, &NodeRef)> {
        let mut all = vec![("/".to_owned(), &self.root)];
        all.extend(below("/", &self.root));
        all.into_iter()
    }

    /// Paths of the nodes for which `pred` holds, in path order. Builds a
    /// path only for those.
    pub fn find(&self, pred: impl Fn(&Node) -> bool) -> Vec<Arc<str>> {
        let mut found = Vec::new();
        if pred(&self.root) {
            found.push(Arc::from("/"));
        }
        let mut stack: Vec<(String, &NodeRef)> = vec![(String::new(), &self.root)];
        while let Some((prefix, node)) = stack.pop() {
            for (name, child) in node.children.nodes() {
                let p = format!("{prefix}/{name}");
                if pred(child) {
                    found.push(Arc::from(p.as_str()));
                }
                if !child.children.is_empty() {
                    stack.push((p, child));
                }
            }
        }
        found.sort_unstable();
        found
    }
}

/// Every node strictly below `node` (which is at `p`), with its path, in
/// path order. An explicit stack, so depth costs no call stack.
fn below<'a>(p: &str, node: &'a NodeRef) -> Vec<(String, &'a NodeRef)> {
    let mut out = Vec::new();
    let mut stack = vec![(if p == "/" { String::new() } else { p.to_owned() }, node)];
    while let Some((prefix, node)) = stack.pop() {
        for (name, child) in node.children.nodes() {
            let p = format!("{prefix}/{name}");
            if !child.children.is_empty() {
                stack.push((p.clone(), child));
            }
            out.push((p, child));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use xenstore_wire::{Access, PermList};

    use super::*;

    fn node(gen: u64) -> Node {
        Node::new(b"", PermList::owned_by(0, Access::None), gen)
    }

    fn tree_of(paths: &[&str]) -> Tree {
        let mut t = Tree::with_root(node(0));
        for (i, p) in paths.iter().enumerate() {
            t.create(p, node(i as u64 + 1), i as u64 + 1);
        }
        t
    }

    #[test]
    fn walks_and_removals_are_in_path_order_like_a_path_keyed_map() {
        let mut t = tree_of(&["/a", "/a/one", "/a/one/two", "/a-z", "/b", "/a/one-x"]);
        assert_eq!(t.len(), 7);
        let all: Vec<String> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(all, ["/", "/a", "/a-z", "/a/one", "/a/one-x", "/a/one/two", "/b"]);
        assert_eq!(
            &*t.find(|n| n.meta_gen() % 2 == 0).into_iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["/", "/a-z", "/a/one", "/a/one-x"]
        );
        let removed: Vec<String> = t.remove_subtree("/a", 9).into_iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(removed, ["/a", "/a/one", "/a/one-x", "/a/one/two"]);
        assert_eq!(t.len(), 3);
        assert!(t.get("/a/one").is_none());
        assert_eq!(t.get("/").map(|n| n.list_gen()), Some(9));
        assert!(t.remove_subtree("/a", 10).is_empty());
    }

    #[test]
    fn nearest_ancestor_is_the_deepest_existing_proper_prefix() {
        let t = tree_of(&["/a", "/a/b"]);
        assert_eq!(t.nearest_ancestor("/a/b/c/d").map(|(p, _)| p), Some("/a/b"));
        assert_eq!(t.nearest_ancestor("/a/b").map(|(p, _)| p), Some("/a"));
        assert_eq!(t.nearest_ancestor("/x/y").map(|(p, _)| p), Some("/"));
        assert_eq!(t.nearest_ancestor("/a").map(|(p, _)| p), Some("/"));
        assert!(t.nearest_ancestor("/").is_none());
    }

    #[test]
    fn a_clone_is_a_snapshot_that_later_changes_do_not_reach() {
        let mut live = tree_of(&["/a", "/a/b"]);
        let snapshot = live.clone();
        live.replace("/a/b", node(42));
        live.create("/a/c", node(43), 43);
        live.remove_subtree("/a/b", 44);
        assert_eq!(snapshot.get("/a/b").map(|n| n.meta_gen()), Some(2));
        assert!(snapshot.get("/a/c").is_none());
        assert_eq!(snapshot.len(), 3);
        assert_eq!(live.get("/a/c").map(|n| n.meta_gen()), Some(43));
        assert_eq!(live.get("/a").map(|n| n.children.len()), Some(1));
    }
}
