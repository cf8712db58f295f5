//! Replaying a journal: [`Engine::replay`] applies one [`Applied`] entry to
//! the live store as the request that produced it did.
//!
//! A daemon that journals every outcome's `applied` list rebuilds its store
//! after a crash by replaying the entries, in order, onto the state they
//! started from (a fresh engine, or an imported snapshot). Each entry costs
//! what the original change cost to the tree: O(depth) node copies and
//! O(log n) in a directory (a domain's removal also clears the targets
//! naming it, as the original did). Generations are handed out afresh, one
//! per change as the original did, so the order of node stamps and domains
//! becoming known (which decides stale permission entries) is the
//! original's; the numbers themselves may differ.
//!
//! The journal is data from disk: an entry that does not fit the store
//! (a write under a missing parent, a removal of a missing node, a path
//! that is not canonical) is refused with a [`ReplayError`], never a panic,
//! and leaves the store unchanged.

use std::fmt;
use std::sync::Arc;

use xenstore_wire::{path, DomId};

use crate::applied::Applied;
use crate::ctx::{Charge, Mutation};
use crate::domain::RingAddress;
use crate::memory;
use crate::node::{Node, NodeRef, Value};
use crate::permissions::Caller;
use crate::quota::QuotaKind;
use crate::Engine;

/// Why a journal entry could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The path is not a canonical absolute node path.
    BadPath(String),
    /// A write creates a node whose parent does not exist.
    MissingParent(String),
    /// A permission change or removal names a node that does not exist.
    MissingNode(String),
    /// A removal names `/`, which is never removed.
    RootRemoval,
    /// A domain's record is changed but the domain is not known.
    UnknownDomain(DomId),
    /// A special path that is neither `@introduceDomain` nor
    /// `@releaseDomain`.
    BadSpecialPath(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::BadPath(p) => write!(f, "not a canonical node path: {p:?}"),
            ReplayError::MissingParent(p) => write!(f, "write of {p:?} whose parent does not exist"),
            ReplayError::MissingNode(p) => write!(f, "change to {p:?}, which does not exist"),
            ReplayError::RootRemoval => write!(f, "removal of /"),
            ReplayError::UnknownDomain(d) => write!(f, "change to domain {d}, which is not known"),
            ReplayError::BadSpecialPath(p) => write!(f, "unknown special path {p:?}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Whether `p` is a canonical absolute node path: `/`, or `/`-separated
/// non-empty names of path bytes.
fn canonical(p: &str) -> Result<(), ReplayError> {
    let ok = p == "/"
        || (p.starts_with('/')
            && !p.ends_with('/')
            && !p.contains("//")
            && p.len() <= xenstore_wire::ABS_PATH_MAX
            && p.bytes().all(|b| b == b'/' || path::is_path_byte(b)));
    if ok {
        Ok(())
    } else {
        Err(ReplayError::BadPath(p.to_owned()))
    }
}

impl Engine {
    /// Applies one journal entry to the live store, as the request that
    /// produced it did: node values, permissions, children order, owned
    /// counts and the domain records (see [`crate::replay`]). Watches are
    /// not fired and no effect is asked for: a replay rebuilds state, the
    /// driver attaches the rings of the introduced domains afterwards.
    pub fn replay(&mut self, change: &Applied) -> Result<(), ReplayError> {
        match change {
            Applied::Write { path: p, value, perms } => {
                canonical(p)?;
                if let Some(old) = self.tree.get(p).cloned() {
                    self.gen += 1;
                    let updated = old.with_meta(Some(Value::new(value)), perms.clone(), self.gen);
                    let before = Charge { owner: old.perms.owner(), bytes: memory::node_at(p, &old) };
                    let after = Charge { owner: perms.owner(), bytes: memory::node_at(p, &updated) };
                    self.tree.replace(p, updated);
                    self.apply_mutations(vec![Mutation::changed(before, after)]);
                } else {
                    if path::parent(p).and_then(|parent| self.tree.get(parent)).is_none() {
                        return Err(ReplayError::MissingParent(p.to_string()));
                    }
                    self.gen += 1;
                    let node = Node::new(value, perms.clone(), self.gen);
                    let bytes = memory::node_at(p, &node);
                    self.tree.create(p, node, self.gen);
                    self.apply_mutations(vec![Mutation::created(perms.owner(), bytes)]);
                }
            }
            Applied::SetPerms { path: p, perms } => {
                canonical(p)?;
                let Some(old) = self.tree.get(p).cloned() else {
                    return Err(ReplayError::MissingNode(p.to_string()));
                };
                self.gen += 1;
                let updated = old.with_meta(None, perms.clone(), self.gen);
                let before = Charge { owner: old.perms.owner(), bytes: memory::node_at(p, &old) };
                let after = Charge { owner: perms.owner(), bytes: memory::node_at(p, &updated) };
                self.tree.replace(p, updated);
                self.apply_mutations(vec![Mutation::changed(before, after)]);
            }
            Applied::Remove { path: p } => {
                canonical(p)?;
                if &**p == "/" {
                    return Err(ReplayError::RootRemoval);
                }
                if self.tree.get(p).is_none() {
                    return Err(ReplayError::MissingNode(p.to_string()));
                }
                self.gen += 1;
                let removed = self.tree.remove_subtree(p, self.gen);
                let mutations =
                    removed.iter().map(|(k, n)| Mutation::removed(n.perms.owner(), memory::node_at(k, n))).collect();
                self.apply_mutations(mutations);
            }
            Applied::SpecialPerms { name, perms } => {
                let Some(name) = Self::special_name(name) else {
                    return Err(ReplayError::BadSpecialPath((*name).to_owned()));
                };
                self.special_perms.insert(name, perms.clone());
            }
            Applied::Target { domid, target } => {
                self.ensure_domain(*target);
                self.ensure_domain(*domid).target = Some(*target);
                self.any_target = true;
            }
            Applied::GlobalQuota { kind, value } => self.config.quotas.set(*kind, *value),
            Applied::SoftQuota { kind, value } => self.config.soft_quotas.set(*kind, *value),
            Applied::DomainQuota { domid, kind, value } => self.known_mut(*domid)?.quotas.set(*kind, *value),
            Applied::Features { domid, value } => self.ensure_domain(*domid).features = *value,
            Applied::Introduced { domid, gfn, port } => {
                let old_conn = self.ensure_domain(*domid).ring_conn;
                if let Some(conn) = old_conn {
                    self.disconnect(conn);
                }
                let conn = self.connect(Caller::guest(*domid));
                let domain = self.ensure_domain(*domid);
                domain.introduced = Some(RingAddress { gfn: *gfn, port: *port });
                domain.release_fired = false;
                domain.ring_conn = Some(conn);
            }
            Applied::ReleaseFired { domid } => self.known_mut(*domid)?.release_fired = true,
            Applied::Resumed { domid } => self.known_mut(*domid)?.release_fired = false,
            Applied::DomainRemoved { domid } => {
                if *domid == 0 {
                    return Ok(());
                }
                let Some(domain) = self.domains.remove(domid) else {
                    return Err(ReplayError::UnknownDomain(*domid));
                };
                if let Some(conn) = domain.ring_conn {
                    self.disconnect(conn);
                }
                if domain.memory > 0 {
                    self.orphaned_memory.insert(*domid, domain.memory);
                }
                if self.any_target {
                    for d in self.domains.values_mut() {
                        if d.target == Some(*domid) {
                            d.target = None;
                        }
                    }
                }
            }
            Applied::Known { domid } => {
                self.ensure_domain(*domid);
            }
        }
        // A replay makes its own domains known: they are the entries'.
        self.newly_known.clear();
        Ok(())
    }

    /// The persistent state as journal entries which, replayed in order
    /// onto `Engine::new` with the same settings, rebuild it: a snapshot
    /// in the journal's own terms (a compacted journal). No connections,
    /// watches or transactions; O(store).
    ///
    /// Order: `/tool` (which a new engine has) is removed; the global and
    /// soft quotas; the special paths' permissions; every domain made
    /// known, in the order it became known, then its record (quotas,
    /// target, features, ring, release flag); then every node, parents
    /// first and children in their list's order, each with its
    /// *effective* permissions. Every entry still valid now stays valid
    /// (its domain is known before the node is stamped) and the stale ones
    /// are dropped, which is what they meant: a stale entry never counts
    /// again.
    pub fn compacted(&self) -> Vec<Applied> {
        let mut out = vec![Applied::Remove { path: Arc::from("/tool") }];
        for kind in QuotaKind::ALL {
            out.push(Applied::GlobalQuota { kind, value: self.config.quotas.get(kind) });
            out.push(Applied::SoftQuota { kind, value: self.config.soft_quotas.get(kind) });
        }
        for (name, perms) in &self.special_perms {
            out.push(Applied::SpecialPerms { name, perms: perms.clone() });
        }
        let mut domains: Vec<(&DomId, &crate::domain::Domain)> = self.domains.iter().collect();
        domains.sort_by_key(|(id, d)| (d.since_gen, **id));
        out.extend(domains.iter().map(|(domid, _)| Applied::Known { domid: **domid }));
        for (&domid, d) in domains {
            for kind in QuotaKind::ALL {
                out.push(Applied::DomainQuota { domid, kind, value: d.quotas.get(kind) });
            }
            if let Some(target) = d.target {
                out.push(Applied::Target { domid, target });
            }
            out.push(Applied::Features { domid, value: d.features });
            if let Some(ring) = d.introduced {
                out.push(Applied::Introduced { domid, gfn: ring.gfn, port: ring.port });
            }
            if d.release_fired {
                out.push(Applied::ReleaseFired { domid });
            }
        }
        // Depth first, parents before children, siblings in list order.
        let mut stack: Vec<(Arc<str>, &NodeRef)> = vec![(Arc::from("/"), &self.tree.root)];
        while let Some((p, node)) = stack.pop() {
            let perms = self.peek_perms(node);
            out.push(Applied::Write { path: p.clone(), value: node.value.to_arc(), perms });
            let kids: Vec<_> = node.children.nodes().collect();
            for (name, child) in kids.into_iter().rev() {
                stack.push((Arc::from(path::join(&p, name)), child));
            }
        }
        out
    }

    fn known_mut(&mut self, domid: DomId) -> Result<&mut crate::domain::Domain, ReplayError> {
        self.domains.get_mut(&domid).ok_or(ReplayError::UnknownDomain(domid))
    }
}
