//! Who is asking, and what a permission list grants them.
//!
//! The rules are the C daemon's (`perm_for_conn`): a privileged caller has
//! everything; the owner (first entry), or a domain whose target owns the
//! node, has everything; otherwise the first later entry naming the caller
//! or its target decides; otherwise the owner entry's letter is the default.
//! Entries naming a domain that did not exist, in its current incarnation,
//! when the node was last written grant nothing (a new domain reusing a
//! domid inherits nothing) and are not reported.

use xenstore_wire::{Access, DomId, Perm, PermList};

/// The identity a request runs with.
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
    let is_me = |d: DomId| d == caller.domid || Some(d) == target;
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
