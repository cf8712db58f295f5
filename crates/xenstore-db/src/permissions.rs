//! Permissions (`xenstore.txt`, "Permissions"): who is asking, and what
//! they may do. Every permission rule of the store is here:
//!
//! - what a permission list grants a caller ([`rights`]);
//! - which entries still count ([`without_stale`], `entry_valid`) and the
//!   effective list a node reports (`effective_perms`, `peek_perms`);
//! - the access a request needs on its node (`Need`), and whether a missing
//!   node is `ENOENT` or `EACCES` (`Need::missing_error`);
//! - the requests only a privileged caller may send (`privileged_only`);
//! - a new node's permissions (`created_perms`) and who may change a
//!   node's owner (`owner_change_allowed`);
//! - who may see a watch event (`can_see`, `can_see_special`);
//! - the permissions of the special paths `@introduceDomain` and
//!   `@releaseDomain` (`special_get_perms`, `special_set_perms`).
//!
//! The rules are the C daemon's (`perm_for_conn`): a privileged caller has
//! everything; the owner (first entry), or a domain whose target owns the
//! node, has everything; otherwise the first later entry naming the caller
//! or its target decides; otherwise the owner entry's letter is the default.
//! Entries naming a domain that did not exist, in its current incarnation,
//! when the node was last written grant nothing (a new domain reusing a
//! domid inherits nothing) and are not reported. An entry naming
//! `DOMID_ANY` (Xen 4.22) matches every domain; it is kept only when the
//! writer's domain has the DOMID_ANY feature (`domid_any_allowed`).

use std::collections::BTreeMap;

use xenstore_wire::{path, Access, DomId, ErrorCode, Perm, PermList, Reply, DOMID_ANY};

use crate::applied::Applied;
use crate::ctx::Ctx;
use crate::domain::Domain;
use crate::node::Node;
use crate::{ConnId, Engine, Outcome};

/// The identity a request runs with.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The calling domain (0 for dom0 and for local sockets).
    pub domid: DomId,
    /// Whether permission checks and quotas are skipped (dom0, sockets).
    pub privileged: bool,
}

impl Caller {
    /// A privileged dom0 caller (a local socket connection).
    pub const DOM0: Caller = Caller { domid: 0, privileged: true };

    /// An unprivileged guest.
    pub fn guest(domid: DomId) -> Caller {
        Caller { domid, privileged: false }
    }
}

/// What a caller may do to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    /// May read value, children, permissions.
    pub read: bool,
    /// May write value, create children, remove.
    pub write: bool,
    /// May change permissions.
    pub owner: bool,
}

impl Rights {
    const ALL: Rights = Rights { read: true, write: true, owner: true };

    fn from_access(access: Access) -> Rights {
        Rights { read: access.can_read(), write: access.can_write(), owner: false }
    }
}

/// Computes a caller's rights on a node.
///
/// `target` is the domain the caller acts for (SET_TARGET), and `valid`
/// says whether a non-owner entry still counts (see the module docs).
pub fn rights(caller: Caller, target: Option<DomId>, perms: &PermList, valid: impl Fn(&Perm) -> bool) -> Rights {
    if caller.privileged {
        return Rights::ALL;
    }
    let owner = perms.owner_entry();
    // DOMID_ANY names every domain (C's `perm_allows_conn`), the owner
    // entry included.
    let is_me = |d: DomId| d == caller.domid || Some(d) == target || d == DOMID_ANY;
    if is_me(owner.domid) {
        return Rights::ALL;
    }
    for entry in perms.entries().iter().skip(1) {
        if is_me(entry.domid) && valid(entry) {
            return Rights::from_access(entry.access);
        }
    }
    Rights::from_access(owner.access)
}

/// The list without entries that no longer count (never the owner's).
pub fn without_stale(perms: &PermList, valid: impl Fn(&Perm) -> bool) -> PermList {
    let entries = perms.entries();
    if entries.iter().skip(1).all(&valid) {
        return perms.clone();
    }
    let kept: Vec<Perm> = entries.iter().enumerate().filter(|(i, p)| *i == 0 || valid(p)).map(|(_, p)| *p).collect();
    PermList::new(kept).unwrap_or_else(|| perms.clone())
}

/// The access a request needs on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Write,
    Owner,
}

impl Need {
    pub(crate) fn granted(self, r: Rights) -> bool {
        match self {
            Need::Read => r.read,
            Need::Write => r.write,
            Need::Owner => r.write && r.owner,
        }
    }

    /// The error for a missing node whose nearest existing ancestor gives
    /// the caller `on_ancestor`: `ENOENT` only if the caller could have
    /// seen it is missing (it may read the ancestor, or for a write or
    /// owner need write it), `EACCES` otherwise, so errors leak nothing.
    pub(crate) fn missing_error(self, on_ancestor: Rights) -> ErrorCode {
        let granted = match self {
            Need::Read => on_ancestor.read,
            Need::Write | Need::Owner => on_ancestor.write,
        };
        if granted {
            ErrorCode::ENOENT
        } else {
            ErrorCode::EACCES
        }
    }
}

/// Requests only a privileged caller may send (INTRODUCE, RELEASE, RESUME,
/// SET_TARGET, IS_DOMAIN_INTRODUCED, GET/SET_FEATURE, GET/SET_QUOTA,
/// CONTROL): `EACCES` for anyone else.
pub(crate) fn privileged_only(caller: Caller) -> Result<(), ErrorCode> {
    if caller.privileged {
        Ok(())
    } else {
        Err(ErrorCode::EACCES)
    }
}

/// A new node's permissions: its parent's effective list, owned by the
/// creator when unprivileged (a privileged creator keeps the parent's
/// owner).
pub(crate) fn created_perms(caller: Caller, parent_effective: PermList) -> PermList {
    if caller.privileged {
        parent_effective
    } else {
        parent_effective.with_owner(caller.domid)
    }
}

/// Whether a SET_PERMS list's `DOMID_ANY` entries count: only when the
/// writing domain's features include DOMID_ANY (C marks them ignored
/// otherwise; the toolstack never gives a guest's node one).
pub(crate) fn without_unfeatured_any(perms: &PermList, writer_features: u32) -> PermList {
    if writer_features & xenstore_wire::features::DOMID_ANY != 0 {
        return perms.clone();
    }
    without_stale(perms, |p| p.domid != DOMID_ANY)
}

/// SET_PERMS may change a node's owner only for a privileged caller:
/// `EPERM` otherwise.
pub(crate) fn owner_change_allowed(caller: Caller, from: DomId, to: DomId) -> Result<(), ErrorCode> {
    if !caller.privileged && to != from {
        return Err(ErrorCode::EPERM);
    }
    Ok(())
}

/// Whether a permission entry still counts on a node last written at
/// `node_gen`: dom0 always; others only if the domain's current incarnation
/// was known by then.
pub(crate) fn entry_valid(domains: &BTreeMap<DomId, Domain>, perm: &Perm, node_gen: u64) -> bool {
    perm.domid == 0 || perm.domid == DOMID_ANY || domains.get(&perm.domid).is_some_and(|d| d.since_gen <= node_gen)
}

impl Ctx<'_> {
    /// The node's permissions without entries that no longer count.
    pub fn effective_perms(&self, node: &Node) -> PermList {
        without_stale(&node.perms, |p| entry_valid(self.domains, p, node.meta_gen()))
    }

    pub(crate) fn rights_on(&self, node: &Node) -> Rights {
        rights(self.caller, self.target, &node.perms, |p| entry_valid(self.domains, p, node.meta_gen()))
    }
}

impl Engine {
    /// A node's permissions without entries that no longer count.
    pub(crate) fn peek_perms(&self, node: &Node) -> PermList {
        without_stale(&node.perms, |e| entry_valid(&self.domains, e, node.meta_gen()))
    }

    /// Whether the connection may see an event on a node with `perms`.
    pub(crate) fn can_see(&self, conn: ConnId, perms: &PermList) -> bool {
        self.can_see_any(conn, std::iter::once(perms))
    }

    /// Whether the connection may read under any of `lists` (a node, its
    /// parent, its permissions before a change: C's `watch_permitted`).
    pub(crate) fn can_see_any<'a>(&self, conn: ConnId, mut lists: impl Iterator<Item = &'a PermList>) -> bool {
        let Some(caller) = self.caller(conn) else {
            return false;
        };
        let target = self.domains.get(&caller.domid).and_then(|d| d.target);
        // The lists were made effective when the change was recorded.
        lists.any(|perms| rights(caller, target, perms, |_| true).read)
    }

    /// Whether the connection may see an event on `@introduceDomain` or
    /// `@releaseDomain`, whose list is `perms`: a privileged caller always,
    /// others as [`Engine::can_see`] says.
    pub(crate) fn can_see_special(&self, conn: ConnId, perms: Option<&PermList>) -> bool {
        self.caller(conn).is_some_and(|c| c.privileged) || perms.is_some_and(|p| self.can_see(conn, p))
    }

    /// The special path `p` names, if any.
    pub(crate) fn special_name(p: &str) -> Option<&'static str> {
        [path::INTRODUCE_DOMAIN, path::RELEASE_DOMAIN].into_iter().find(|n| *n == p)
    }

    /// GET_PERMS on `@introduceDomain` / `@releaseDomain`.
    pub(crate) fn special_get_perms(&self, caller: Caller, p: &str) -> Outcome {
        let Some(perms) = Self::special_name(p).and_then(|n| self.special_perms.get(n)) else {
            return Outcome::error(ErrorCode::ENOENT);
        };
        let target = self.domains.get(&caller.domid).and_then(|d| d.target);
        if !rights(caller, target, perms, |_| true).read {
            return Outcome::error(ErrorCode::EACCES);
        }
        Outcome::ok(Reply::GetPerms(perms.clone()))
    }

    /// SET_PERMS on `@introduceDomain` / `@releaseDomain`: lets the listed
    /// domains receive those events. Only the owner (dom0) may.
    pub(crate) fn special_set_perms(&mut self, caller: Caller, p: &str, perms: &PermList) -> Outcome {
        let Some(name) = Self::special_name(p) else {
            return Outcome::error(ErrorCode::ENOENT);
        };
        let target = self.domains.get(&caller.domid).and_then(|d| d.target);
        let current = self.special_perms.get(name).cloned();
        let allowed = current.is_some_and(|c| rights(caller, target, &c, |_| true).owner);
        if !allowed {
            return Outcome::error(ErrorCode::EACCES);
        }
        // The outcome does not name the quota here (node SET_PERMS does).
        if self.charge_special_perms(caller, perms).is_err() {
            return Outcome::error(ErrorCode::ENOSPC);
        }
        self.special_perms.insert(name, perms.clone());
        Outcome { applied: vec![Applied::SpecialPerms { name, perms: perms.clone() }], ..Outcome::ok(Reply::Ok) }
    }
}
