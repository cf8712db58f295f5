//! The tree as a persistent ordered map from absolute path to node.
//!
//! Keys are whole paths, so a node is found with one map lookup, and the
//! strict descendants of `P` are exactly the keys in `[P/, P0)` (see
//! [`xenstore_wire::path::descendants_range`]). The map is persistent
//! (`imbl::OrdMap`): cloning the tree is O(1) and shares every node, which
//! is what makes `TRANSACTION_START` O(1) whatever the store size.

use std::sync::Arc;

use imbl::OrdMap;
use xenstore_wire::path;

use crate::node::{Name, Node};

/// A whole store (the live one, or a transaction's view).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: OrdMap<Arc<str>, Arc<Node>>,
}

impl Tree {
    /// A tree holding only `root`.
    pub fn with_root(root: Node) -> Tree {
        let mut nodes = OrdMap::new();
        nodes.insert(Arc::from("/"), Arc::new(root));
        Tree { nodes }
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Arc<Node>> {
        self.nodes.get(path)
    }

    /// The node and the shared key for `path`.
    pub fn get_key_value(&self, path: &str) -> Option<(&Arc<str>, &Arc<Node>)> {
        self.nodes.get_key_value(path)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty (never true for a store: `/` always exists).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The closest existing ancestor of `path` (not `path` itself).
    pub fn nearest_ancestor<'a>(&self, mut p: &'a str) -> Option<(&'a str, &Arc<Node>)> {
        while let Some(parent) = path::parent(p) {
            if let Some(node) = self.nodes.get(parent) {
                return Some((parent, node));
            }
            p = parent;
        }
        None
    }

    /// Replaces the node at an existing `path`, keeping its key.
    pub fn replace(&mut self, path: &str, node: Node) {
        if let Some(slot) = self.nodes.get_mut(path) {
            *slot = Arc::new(node);
        }
    }

    /// Inserts a new node at `path` and appends its name to its parent's
    /// children, stamping the parent's `list_gen`. The parent must exist.
    pub fn create(&mut self, path: &str, node: Node, gen: u64) -> Arc<str> {
        let key: Arc<str> = Arc::from(path);
        if let Some(parent) = path::parent(path) {
            if let Some(slot) = self.nodes.get_mut(parent) {
                let parent_node = Arc::make_mut(slot);
                parent_node.children.push(Name::from(path::basename(path)));
                parent_node.list_gen = gen;
            }
        }
        self.nodes.insert(key.clone(), Arc::new(node));
        key
    }

    /// Removes `path` and every node below it, unlinking it from its parent
    /// (stamping the parent's `list_gen`). Returns the removed nodes, top
    /// first then descendants in key order.
    pub fn remove_subtree(&mut self, path: &str, gen: u64) -> Vec<(Arc<str>, Arc<Node>)> {
        let mut removed = Vec::new();
        let Some((key, node)) = self.nodes.remove_with_key(path) else {
            return removed;
        };
        removed.push((key, node));
        let (lo, hi) = path::descendants_range(path);
        let below: Vec<Arc<str>> = self
            .nodes
            .range::<_, str>((std::ops::Bound::Included(lo.as_str()), std::ops::Bound::Excluded(hi.as_str())))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            if let Some((k, n)) = self.nodes.remove_with_key(&*k) {
                removed.push((k, n));
            }
        }
        if let Some(parent) = path::parent(path) {
            if let Some(slot) = self.nodes.get_mut(parent) {
                let parent_node = Arc::make_mut(slot);
                let name = path::basename(path);
                parent_node.children.remove(name);
                parent_node.list_gen = gen;
            }
        }
        removed
    }

    /// Paths strictly below `path`, in key order.
    pub fn descendants(&self, path: &str) -> impl Iterator<Item = (&Arc<str>, &Arc<Node>)> {
        let (lo, hi) = path::descendants_range(path);
        self.nodes.range::<_, str>((std::ops::Bound::Included(lo.as_str()), std::ops::Bound::Excluded(hi.as_str())))
    }

    /// Every node, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Node>)> {
        self.nodes.iter()
    }
}
