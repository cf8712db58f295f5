//! Checking a node list and building a tree from it (for import).
//!
//! The same checks serve the live store and each transaction's views: the
//! root exists, paths are valid and unique, permission lists are not empty,
//! generations are not ahead of the counter, and parent and children links
//! agree both ways, so the tree built is the one the list describes.
//!
//! Building goes deepest nodes first, so each node's children are built
//! before it, with no recursion. A node equal to the one at its path in
//! another tree (same fields, and the very same children) is taken from
//! there instead: a transaction's views share what they have in common with
//! the live store, as they did in the engine that exported them.

use std::collections::{HashMap, HashSet};

use xenstore_wire::path::{self, PathKind};
use xenstore_wire::PermList;

use crate::children::Children;
use crate::node::{Name, Node, NodeRef, Value};
use crate::state::NodeState;
use crate::state_import::{ImportError, StoreView};
use crate::tree::Tree;

/// Checks `nodes` (one view of the store) and builds its tree, sharing
/// unchanged nodes with `share`.
pub(crate) fn build(
    nodes: &[NodeState],
    view: StoreView,
    generation: u64,
    share: Option<&Tree>,
) -> Result<Tree, ImportError> {
    check(nodes, view, generation)?;
    let mut order: Vec<&NodeState> = nodes.iter().collect();
    order.sort_by_key(|n| std::cmp::Reverse(depth(&n.path)));
    let mut built: HashMap<&str, NodeRef> = HashMap::with_capacity(nodes.len());
    for state in order {
        let mut children = Children::default();
        for name in &state.children {
            let child_path = path::join(&state.path, name);
            let child = built.remove(child_path.as_str()).ok_or_else(|| ImportError::MissingChild {
                view,
                path: state.path.clone(),
                child: name.clone(),
            })?;
            children.push(Name::from(name.as_str()), child);
        }
        let perms = PermList::new(state.perms.clone())
            .ok_or_else(|| ImportError::InvalidPerms { view, path: state.path.clone() })?;
        let value = Value::new(&state.value);
        let node = Node::from_parts(value, perms, children, state.meta_gen, state.list_gen);
        let node = match share.and_then(|tree| tree.get(&state.path)) {
            Some(there) if same(there, &node) => there.clone(),
            _ => NodeRef::new(node),
        };
        built.insert(state.path.as_str(), node);
    }
    let root = built.remove("/").ok_or(ImportError::MissingRoot { view })?;
    Ok(Tree { root, len: nodes.len() })
}

/// The checks of [`build`].
fn check(nodes: &[NodeState], view: StoreView, generation: u64) -> Result<(), ImportError> {
    let mut paths: HashSet<&str> = HashSet::with_capacity(nodes.len());
    for node in nodes {
        let at = || node.path.clone();
        if path::check(node.path.as_bytes(), false) != Ok(PathKind::Absolute) {
            return Err(ImportError::InvalidPath { view, path: at() });
        }
        if !paths.insert(node.path.as_str()) {
            return Err(ImportError::DuplicatePath { view, path: at() });
        }
        if node.perms.is_empty() {
            return Err(ImportError::InvalidPerms { view, path: at() });
        }
        if let Some(gen) = [node.meta_gen, node.list_gen].into_iter().find(|g| *g > generation) {
            return Err(ImportError::GenerationAhead { view, path: at(), gen });
        }
    }
    if !paths.contains("/") {
        return Err(ImportError::MissingRoot { view });
    }
    let mut listed: HashSet<String> = HashSet::with_capacity(nodes.len());
    for node in nodes {
        for name in &node.children {
            let bad = |make: fn(StoreView, String, String) -> ImportError| make(view, node.path.clone(), name.clone());
            if name.is_empty() || name.contains('/') {
                return Err(bad(|view, path, child| ImportError::InvalidChildName { view, path, child }));
            }
            let child = path::join(&node.path, name);
            if !paths.contains(child.as_str()) {
                return Err(bad(|view, path, child| ImportError::MissingChild { view, path, child }));
            }
            if !listed.insert(child) {
                return Err(bad(|view, path, child| ImportError::DuplicateChild { view, path, child }));
            }
        }
    }
    for node in nodes {
        let Some(parent) = path::parent(&node.path) else { continue };
        if !paths.contains(parent) {
            return Err(ImportError::ParentMissing { view, path: node.path.clone() });
        }
        if !listed.contains(&node.path) {
            return Err(ImportError::NotListed { view, path: node.path.clone() });
        }
    }
    Ok(())
}

/// Levels below the root (0 for `/`).
fn depth(p: &str) -> usize {
    p.bytes().filter(|b| *b == b'/').count() - usize::from(p == "/")
}

/// Whether `there` can stand for `node`: the same fields and the very same
/// children, in the same order.
fn same(there: &Node, node: &Node) -> bool {
    there.meta_gen() == node.meta_gen()
        && there.list_gen() == node.list_gen()
        && there.perms == node.perms
        && there.value == node.value
        && there.children.len() == node.children.len()
        && there.children.iter().zip(node.children.iter()).all(|(a, b)| a == b)
        && there
            .children
            .nodes()
            .all(|(name, child)| node.children.get(name).is_some_and(|c| NodeRef::ptr_eq(c, child)))
}

#[cfg(test)]
mod tests {
    use xenstore_wire::Request;

    use super::*;
    use crate::{Caller, Engine};

    #[test]
    fn build_shares_unchanged_subtrees_with_the_given_tree() {
        let mut engine = Engine::default();
        let dom0 = engine.connect(Caller::DOM0);
        engine.handle(dom0, 0, &Request::Write { path: "/a/b", value: b"v" });
        let tx = match engine.handle(dom0, 0, &Request::TransactionStart).reply {
            Ok(xenstore_wire::Reply::TransactionStart(id)) => id,
            other => panic!("{other:?}"),
        };
        engine.handle(dom0, tx, &Request::Write { path: "/c", value: b"w" });
        let state = engine.export();
        let gen = state.generation;
        let live = build(&state.nodes, StoreView::Live, gen, None).expect("live");
        let t = &state.transactions[0];
        let base = build(&t.base, StoreView::Base(tx), gen, Some(&live)).expect("base");
        let work = build(&t.work, StoreView::Work(tx), gen, Some(&base)).expect("work");
        let same = |a: &Tree, b: &Tree, p: &str| a.get(p).zip(b.get(p)).is_some_and(|(x, y)| NodeRef::ptr_eq(x, y));
        assert!(same(&live, &base, "/"), "nothing changed since the snapshot");
        assert!(same(&base, &work, "/a"), "untouched by the transaction");
        assert!(!same(&base, &work, "/"), "the transaction added /c");
        assert_eq!(work.len(), live.len() + 1);
    }
}
