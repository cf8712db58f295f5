//! The node operations (`xenstore.txt`, "Database read, write and
//! permissions operations"): READ, DIRECTORY, DIRECTORY_PART, GET_PERMS,
//! WRITE, MKDIR, RM and SET_PERMS, run against either the live tree or a
//! transaction's view. One implementation serves both: in a transaction
//! every lookup is also recorded for the commit-time conflict check.

use std::sync::Arc;

use xenstore_wire::path;
use xenstore_wire::{ErrorCode, PermList, Reply, PAYLOAD_MAX};

use crate::applied::Applied;
use crate::ctx::{Charge, Ctx, Store};
use crate::event::Change;
use crate::memory;
use crate::node::{Node, NodeRef, Value};
use crate::permissions::{created_perms, owner_change_allowed, without_unfeatured_any, Need};

impl Ctx<'_> {
    /// Finds a node the caller may access as `need`. A missing node is
    /// `ENOENT` or `EACCES` by [`Need::missing_error`] on its nearest
    /// existing ancestor.
    pub fn lookup(&mut self, p: &str, need: Need) -> Result<NodeRef, ErrorCode> {
        self.observe_meta(p)?;
        if let Some(node) = self.tree().get(p).cloned() {
            return if need.granted(self.rights_on(&node)) { Ok(node) } else { Err(ErrorCode::EACCES) };
        }
        let Some((ancestor, node)) = self.tree().nearest_ancestor(p).map(|(a, n)| (a, n.clone())) else {
            return Err(ErrorCode::ENOENT);
        };
        // The answer (ENOENT or EACCES) depends on every missing level
        // staying missing, not only on the ancestor: a node created in
        // between would change it.
        let mut level = p;
        while let Some(parent) = path::parent(level).filter(|parent| *parent != ancestor) {
            self.observe_meta(parent)?;
            level = parent;
        }
        self.observe_meta(ancestor)?;
        Err(need.missing_error(self.rights_on(&node)))
    }

    /// READ.
    pub fn read(&mut self, p: &str) -> Result<Reply, ErrorCode> {
        let node = self.lookup(p, Need::Read)?;
        Ok(Reply::Read(node.value.to_arc()))
    }

    /// DIRECTORY.
    pub fn directory(&mut self, p: &str) -> Result<Reply, ErrorCode> {
        let node = self.lookup(p, Need::Read)?;
        self.observe_list(p)?;
        // Refuse an oversize listing before building it.
        if node.children.iter().map(|c| c.len() + 1).sum::<usize>() > PAYLOAD_MAX {
            return Err(ErrorCode::E2BIG);
        }
        Ok(Reply::Directory(node.children.iter().map(Arc::from).collect()))
    }

    /// DIRECTORY_PART: children from a byte offset into the nul-separated
    /// list, as many whole names as fit, with the C daemon's end marker.
    pub fn directory_part(&mut self, p: &str, offset: u32) -> Result<Reply, ErrorCode> {
        let node = self.lookup(p, Need::Read)?;
        self.observe_list(p)?;
        let generation = node.list_gen();
        let gen_len = generation.to_string().len() + 1;
        let max = PAYLOAD_MAX - gen_len - 1;
        let offset = offset as usize;
        let mut names = Vec::new();
        let mut pos = 0usize;
        let mut complete = true;
        for child in node.children.iter() {
            let entry_len = child.len() + 1;
            let end = pos + entry_len;
            if end <= offset {
                pos = end;
                continue;
            }
            // Possibly mid-name when the client asked for such an offset.
            let start_in = offset.saturating_sub(pos);
            let piece = child.as_bytes().get(start_in..).unwrap_or_default();
            if names.len() + piece.len() + 1 > max {
                complete = false;
                break;
            }
            names.extend_from_slice(piece);
            names.push(0);
            pos = end;
        }
        Ok(Reply::DirectoryPart { generation, names, complete })
    }

    /// GET_PERMS.
    pub fn get_perms(&mut self, p: &str) -> Result<Reply, ErrorCode> {
        let node = self.lookup(p, Need::Read)?;
        Ok(Reply::GetPerms(self.effective_perms(&node)))
    }

    /// WRITE: replaces the value, or creates the node and missing parents.
    pub fn write(&mut self, p: &str, value: &[u8]) -> Result<Reply, ErrorCode> {
        self.charge_node_size(value)?;
        match self.lookup(p, Need::Write) {
            Ok(node) => {
                let gen = self.next_gen();
                let perms = self.effective_perms(&node);
                let value: Arc<[u8]> = Arc::from(value);
                let updated = node.with_meta(Some(Value::new(&value)), perms.clone(), gen);
                let old = Charge { owner: node.perms.owner(), bytes: memory::node_at(p, &node) };
                let new = Charge { owner: updated.perms.owner(), bytes: memory::node_at(p, &updated) };
                self.charge_node(p, Some(old), Some(new))?;
                self.tree_mut().replace(p, updated);
                self.record_node(p, Some(old), Some(new));
                let key = self.key(p);
                self.mark_written(&key);
                self.applied.push(Applied::Write { path: key.clone(), value, perms: perms.clone() });
                let via = self.parent_perms(p).into_iter().collect();
                self.record_change(Change::Node { path: key, perms, via });
            }
            Err(ErrorCode::ENOENT) => {
                let value = if value.is_empty() { self.empty.clone() } else { Arc::from(value) };
                self.create(p, value)?;
            }
            Err(e) => return Err(e),
        }
        Ok(Reply::Ok)
    }

    /// MKDIR: creates the node and missing parents; an existing node is
    /// left alone (and fires nothing).
    pub fn mkdir(&mut self, p: &str) -> Result<Reply, ErrorCode> {
        match self.lookup(p, Need::Write) {
            Ok(_) => Ok(Reply::Ok),
            Err(ErrorCode::ENOENT) => {
                let empty = self.empty.clone();
                self.create(p, empty)?;
                Ok(Reply::Ok)
            }
            Err(e) => Err(e),
        }
    }

    fn key(&self, p: &str) -> Arc<str> {
        Arc::from(p)
    }

    /// Creates `p` (which must be missing, with write access on its nearest
    /// ancestor already checked) and its missing parents. One event, for `p`.
    fn create(&mut self, p: &str, value: Arc<[u8]>) -> Result<(), ErrorCode> {
        let mut missing = vec![p];
        let mut cur = p;
        while let Some(parent) = path::parent(cur) {
            if self.tree().get(parent).is_some() {
                break;
            }
            self.observe_meta(parent)?;
            missing.push(parent);
            cur = parent;
        }
        self.charge_nodes(missing.len())?;
        self.charge_created(&missing, value.len())?;
        let mut perms_out = None;
        for (i, level) in missing.iter().rev().enumerate() {
            let parent_path = path::parent(level).ok_or(ErrorCode::EINVAL)?;
            let parent = self.tree().get(parent_path).cloned().ok_or(ErrorCode::ENOENT)?;
            let inherited = self.effective_perms(&parent);
            let perms = created_perms(self.caller, inherited);
            let owner = perms.owner();
            let gen = self.next_gen();
            let is_last = i + 1 == missing.len();
            let node_value = if is_last { value.clone() } else { self.empty.clone() };
            let node = Node::new(&node_value, perms.clone(), gen);
            self.record_node(level, None, Some(Charge { owner, bytes: memory::node_at(level, &node) }));
            let key = self.tree_mut().create(level, node, gen);
            self.mark_written(&key);
            self.applied.push(Applied::Write { path: key.clone(), value: node_value, perms: perms.clone() });
            if owner == self.caller.domid {
                self.owned_now += 1;
                if let Some(tx) = self.tx_mut() {
                    tx.node_delta += 1;
                }
            }
            if is_last {
                perms_out = Some((key, perms));
            }
        }
        if let Some((key, perms)) = perms_out {
            let via = self.parent_perms(p).into_iter().collect();
            self.record_change(Change::Node { path: key, perms, via });
        }
        Ok(())
    }

    /// `memory`: creating the `missing` levels (deepest first), the last
    /// with a value of `value_len` bytes, checked before any is created.
    /// Each level inherits the permissions of the one above, so the
    /// topmost's stand for all.
    fn charge_created(&mut self, missing: &[&str], value_len: usize) -> Result<(), ErrorCode> {
        let Some(top) = missing.last() else { return Ok(()) };
        let parent = path::parent(top).and_then(|pp| self.tree().get(pp).cloned()).ok_or(ErrorCode::ENOENT)?;
        let perms = created_perms(self.caller, self.effective_perms(&parent));
        let per_perms = std::mem::size_of_val(perms.entries());
        let nodes: usize = missing.iter().map(|l| memory::NODE + path::basename(l).len() + per_perms).sum();
        let due = match self.store {
            Store::Live(_) if perms.owner() != self.caller.domid => 0,
            Store::Live(_) => nodes + value_len,
            Store::Tx(_) => nodes + value_len + memory::CHANGE,
        };
        self.charge_memory(due)
    }

    /// RM: removes the node and its subtree. A missing node is fine if its
    /// parent exists; removing `/` is `EACCES` for a guest (it may not
    /// write `/`) and `EINVAL` for a privileged caller, as in C.
    pub fn rm(&mut self, p: &str) -> Result<Reply, ErrorCode> {
        match self.lookup(p, Need::Write) {
            // After the permission check, as C: a guest is refused first.
            Ok(_) if p == "/" => Err(ErrorCode::EINVAL),
            Ok(node) => {
                let perms = self.effective_perms(&node);
                let via = self.parent_perms(p).into_iter().collect();
                if matches!(self.store, Store::Tx(_)) {
                    let below: Vec<Arc<str>> = self.tree().descendants(p).into_iter().map(|(k, _)| k).collect();
                    self.observe_list(p)?;
                    for k in &below {
                        self.observe_meta(k)?;
                        self.observe_list(k)?;
                    }
                }
                if matches!(self.store, Store::Tx(_)) {
                    // The transaction records every removed path and the
                    // removal's event lists them.
                    let below: usize =
                        self.tree().descendants(p).iter().map(|(k, _)| memory::seen(k) + memory::CHANGE).sum();
                    self.charge_memory(memory::seen(p) + memory::CHANGE + below)?;
                }
                let gen = self.next_gen();
                let removed = self.tree_mut().remove_subtree(p, gen);
                let mut tx_removed_bytes = 0;
                let mut below = Vec::with_capacity(removed.len().saturating_sub(1));
                let mut top = None;
                for (key, n) in removed {
                    self.record_node(
                        &key,
                        Some(Charge { owner: n.perms.owner(), bytes: memory::node_at(&key, &n) }),
                        None,
                    );
                    self.mark_written(&key);
                    if let Some(tx) = self.tx_mut() {
                        if tx.removed.insert(key.clone()) {
                            tx_removed_bytes += memory::seen(&key) + memory::CHANGE;
                        }
                    }
                    let owner = n.perms.owner();
                    let mine = owner == self.caller.domid;
                    if let Some(tx) = self.tx_mut().filter(|_| mine) {
                        tx.node_delta -= 1;
                    }
                    if top.is_none() {
                        top = Some(key);
                    } else {
                        let perms = self.effective_perms(&n);
                        below.push((key, perms));
                    }
                }
                self.tx_memory += i64::try_from(tx_removed_bytes).unwrap_or(i64::MAX);
                if let Some(path) = top {
                    self.applied.push(Applied::Remove { path: path.clone() });
                    self.changes.push(Change::Removed { path, perms, via, below });
                }
                Ok(Reply::Ok)
            }
            Err(ErrorCode::ENOENT) => {
                let parent = path::parent(p).ok_or(ErrorCode::EINVAL)?;
                self.observe_meta(parent)?;
                if self.tree().get(parent).is_some() {
                    Ok(Reply::Ok)
                } else {
                    Err(ErrorCode::ENOENT)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// SET_PERMS on a node.
    pub fn set_perms(&mut self, p: &str, perms: &PermList) -> Result<Reply, ErrorCode> {
        self.charge_permissions(perms)?;
        let writer_features = self.domains.get(&self.caller.domid).map_or(0, |d| d.features);
        let perms = &without_unfeatured_any(perms, writer_features);
        let node = self.lookup(p, Need::Owner)?;
        let old_perms = self.effective_perms(&node);
        let old_owner = node.perms.owner();
        owner_change_allowed(self.caller, old_owner, perms.owner())?;
        let gen = self.next_gen();
        let updated = node.with_meta(None, perms.clone(), gen);
        let old = Charge { owner: old_owner, bytes: memory::node_at(p, &node) };
        let new = Charge { owner: perms.owner(), bytes: memory::node_at(p, &updated) };
        self.charge_node(p, Some(old), Some(new))?;
        self.tree_mut().replace(p, updated);
        self.record_node(p, Some(old), Some(new));
        let key = self.key(p);
        self.mark_written(&key);
        self.applied.push(Applied::SetPerms { path: key.clone(), perms: perms.clone() });
        let mut via: Vec<PermList> = self.parent_perms(p).into_iter().collect();
        via.push(old_perms);
        self.record_change(Change::Node { path: key, perms: perms.clone(), via });
        Ok(Reply::Ok)
    }

    /// The effective permissions of `p`'s parent (none for `/`): who may
    /// read it may see events on `p` too.
    fn parent_perms(&self, p: &str) -> Option<PermList> {
        let parent = self.tree().get(path::parent(p)?)?;
        Some(self.effective_perms(parent))
    }
}
