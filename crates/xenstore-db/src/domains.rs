//! Domains (`xenstore.txt`, "Domain management and xenstored
//! communications"): INTRODUCE (and rolling it back when the driver cannot
//! attach the ring), RELEASE, RESUME, SET_TARGET, GET_FEATURE and
//! SET_FEATURE; a domain's shutdown and removal; and the owned-node counts
//! that the `nodes` quota and domain removal read.

use std::sync::Arc;

use xenstore_wire::{path, DomId, ErrorCode, Reply};

use crate::applied::Applied;
use crate::ctx::{Charge, Mutation};
use crate::domain::RingAddress;
use crate::effect::{Effect, Rollback};
use crate::event::Change;
use crate::memory;
use crate::permissions::{privileged_only, Caller};
use crate::{ConnId, Engine, Outcome};

impl Engine {
    /// Keeps the domains' owned-node counts in step with the live tree.
    /// Dom0's nodes are not counted (it has no `nodes` quota; its usage is
    /// what no other domain owns).
    pub(crate) fn apply_mutations(&mut self, mutations: Vec<Mutation>) {
        for m in mutations {
            if let Some(before) = m.before {
                if let Some(d) = self.domains.get_mut(&before.owner) {
                    if before.owner != 0 {
                        d.owned = d.owned.saturating_sub(1);
                    }
                    d.memory = d.memory.saturating_sub(before.bytes);
                }
            }
            if let Some(after) = m.after {
                let d = self.ensure_domain(after.owner);
                if after.owner != 0 {
                    d.owned += 1;
                }
                d.memory += after.bytes;
            }
        }
    }

    /// INTRODUCE: records the domain, registers its ring's connection and
    /// asks the driver to attach the ring ([`Effect::AttachRing`]); fires
    /// `@introduceDomain`. A repeat with the same ring is OK and does
    /// nothing; with another ring it is EINVAL.
    pub(crate) fn introduce(&mut self, caller: Caller, domid: DomId, gfn: u64, port: u32) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        if domid == 0 {
            return Outcome::error(ErrorCode::EINVAL);
        }
        let ring = RingAddress { gfn, port };
        let rollback = Rollback { made_known: !self.domains.contains_key(&domid), gen_before: self.gen };
        match self.ensure_domain(domid).introduced {
            Some(existing) if existing == ring => return Outcome::ok(Reply::Ok),
            Some(_) => return Outcome::error(ErrorCode::EINVAL),
            None => {}
        }
        let conn = self.connect(Caller::guest(domid));
        let domain = self.ensure_domain(domid);
        domain.introduced = Some(ring);
        domain.release_fired = false;
        domain.ring_conn = Some(conn);
        let features = domain.features;
        let events = self.route_all(&[Change::Special { name: path::INTRODUCE_DOMAIN, domid }]);
        let attach = Effect::AttachRing { domid, gfn, port, conn, features, rollback };
        let applied = vec![Applied::Introduced { domid, gfn, port }];
        Outcome { events, effects: vec![attach], applied, ..Outcome::ok(Reply::Ok) }
    }

    /// The driver could not carry out `effect`: undoes the request that
    /// asked for it and returns the outcome to send instead (the original
    /// one's events and reply are not sent). Call it at once, before any
    /// other request reaches the engine.
    ///
    /// A failed [`Effect::AttachRing`] (the page cannot be mapped, the
    /// channel cannot be bound) rolls the INTRODUCE back: the domain is not
    /// introduced, its connection is gone, and a domain the INTRODUCE made
    /// known is forgotten again; the caller gets EINVAL, as from the C
    /// daemon. Other effects cannot be undone and get EIO.
    pub fn effect_failed(&mut self, effect: &Effect) -> Outcome {
        // The domains that became known before the request are listed
        // with the next outcome instead.
        let known = std::mem::take(&mut self.known_before_request);
        self.newly_known.splice(0..0, known);
        let Effect::AttachRing { domid, conn, rollback, .. } = *effect else {
            return Outcome::error(ErrorCode::EIO);
        };
        self.disconnect(conn);
        if conn + 1 == self.next_conn {
            self.next_conn = conn;
        }
        if rollback.made_known {
            if let Some(left) = self.domains.remove(&domid).map(|d| d.memory).filter(|m| *m > 0) {
                self.orphaned_memory.insert(domid, left);
            }
            self.gen = rollback.gen_before;
        } else if let Some(domain) = self.domains.get_mut(&domid) {
            domain.introduced = None;
            domain.ring_conn = None;
        }
        Outcome::error(ErrorCode::EINVAL)
    }

    /// The introduced domains with their ring's address and connection,
    /// in id order: what a daemon attaches again after recovering the
    /// store from a journal.
    pub fn introduced_rings(&self) -> Vec<(DomId, RingAddress, ConnId)> {
        self.domains.iter().filter_map(|(&d, dom)| Some((d, dom.introduced?, dom.ring_conn?))).collect()
    }

    /// Domains the store knows without their having been introduced (a
    /// permission entry or SET_QUOTA named them while they existed), in
    /// id order: the driver forgets those the hypervisor no longer has
    /// ([`Engine::forget_domain`]).
    pub fn unintroduced_domains(&self) -> Vec<DomId> {
        let mut ids: Vec<DomId> =
            self.domains.iter().filter(|(&d, dom)| d != 0 && dom.introduced.is_none()).map(|(&d, _)| d).collect();
        ids.sort_unstable();
        ids
    }

    /// A domain the store knew but that was never introduced has gone: as
    /// [`Engine::remove_domain`] (its nodes go, grants naming it go stale,
    /// so a new domain with its id inherits none: XSA-417), without
    /// `@releaseDomain`, which is for introduced domains (C's
    /// `domain_cleanup` frees such a domain silently). Nothing for an
    /// introduced or unknown domain.
    pub fn forget_domain(&mut self, domid: DomId) -> Outcome {
        match self.domains.get_mut(&domid) {
            Some(d) if d.introduced.is_none() && domid != 0 => d.release_fired = true,
            _ => return Outcome::ok(Reply::Ok),
        }
        self.remove_domain(domid)
    }

    /// RELEASE: forget the domain, as if it had died.
    pub(crate) fn release(&mut self, caller: Caller, domid: DomId) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        if domid == 0 {
            return Outcome::error(ErrorCode::EINVAL);
        }
        if self.domains.get(&domid).is_none_or(|d| d.introduced.is_none()) {
            return Outcome::error(ErrorCode::ENOENT);
        }
        self.remove_domain(domid)
    }

    /// RESUME: `@releaseDomain` fires again at the next shutdown.
    pub(crate) fn resume(&mut self, caller: Caller, domid: DomId) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        match self.domains.get_mut(&domid) {
            Some(d) if d.introduced.is_some() => {
                d.release_fired = false;
                Outcome { applied: vec![Applied::Resumed { domid }], ..Outcome::ok(Reply::Ok) }
            }
            _ => Outcome::error(ErrorCode::ENOENT),
        }
    }

    /// SET_TARGET: `domid` acts for `target` from now on.
    pub(crate) fn set_target(&mut self, caller: Caller, domid: DomId, target: DomId) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        self.ensure_domain(target);
        self.ensure_domain(domid).target = Some(target);
        self.any_target = true;
        Outcome { applied: vec![Applied::Target { domid, target }], ..Outcome::ok(Reply::Ok) }
    }

    /// GET_FEATURE: without a domain, the caller's own features (any
    /// caller, as Xen 4.22); with one, that domain's (privileged only).
    pub(crate) fn get_feature(&self, caller: Caller, domid: Option<DomId>) -> Outcome {
        match domid {
            // Any caller may ask for its own features (Xen 4.22).
            None => Outcome::ok(Reply::Number(u64::from(self.domain_features(caller.domid)))),
            Some(_) if !caller.privileged => Outcome::error(ErrorCode::EACCES),
            // Known, or existing (checked by the caller): a domain not yet
            // known has the store's features.
            Some(d) => Outcome::ok(Reply::Number(u64::from(self.domain_features(d)))),
        }
    }

    /// SET_FEATURE: only bits this store supports, only before INTRODUCE.
    pub(crate) fn set_feature(&mut self, caller: Caller, domid: DomId, value: u32) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        if value & !self.config.features != 0 {
            return Outcome::error(ErrorCode::EINVAL);
        }
        let domain = self.ensure_domain(domid);
        if domain.introduced.is_some() {
            return Outcome::error(ErrorCode::EBUSY);
        }
        domain.features = value;
        Outcome { applied: vec![Applied::Features { domid, value }], ..Outcome::ok(Reply::Ok) }
    }

    /// The domain has shut down or crashed: fire `@releaseDomain` once
    /// (until RESUME). Its nodes stay until [`Engine::remove_domain`]. The
    /// outcome carries only events; its reply is not sent.
    pub fn domain_shutdown(&mut self, domid: DomId) -> Outcome {
        match self.domains.get_mut(&domid) {
            Some(d) if d.introduced.is_some() && !d.release_fired => d.release_fired = true,
            _ => return Outcome::ok(Reply::Ok),
        }
        let events = self.route_all(&[Change::Special { name: path::RELEASE_DOMAIN, domid }]);
        let mut outcome = Outcome { events, applied: vec![Applied::ReleaseFired { domid }], ..Outcome::ok(Reply::Ok) };
        self.list_newly_known(&mut outcome);
        outcome
    }

    /// The domain is gone (destroyed, or RELEASE): fire `@releaseDomain` if
    /// not yet fired, remove every node it owns with the events that causes
    /// (or give them to dom0 with keep-orphans), and forget it, so that a
    /// later domain with the same id inherits none of its permissions.
    /// Its ring's connection goes too ([`Effect::DetachRing`] tells the
    /// driver); other connections running as the domain stay until the
    /// driver disconnects them. The outcome's reply is not sent.
    pub fn remove_domain(&mut self, domid: DomId) -> Outcome {
        if domid == 0 {
            return Outcome::ok(Reply::Ok);
        }
        let Some(domain) = self.domains.get(&domid) else {
            return Outcome::ok(Reply::Ok);
        };
        let ring_conn = domain.ring_conn;
        let mut changes = Vec::new();
        if !domain.release_fired {
            changes.push(Change::Special { name: path::RELEASE_DOMAIN, domid });
        }
        // Usually nothing: a toolstack removes the domain's home first. Only
        // when it still owns nodes does this walk the whole store, and then
        // in path order, as the owned sets it replaces did.
        let owned: Vec<Arc<str>> =
            if domain.owned == 0 { Vec::new() } else { self.tree.find(|n| n.perms.owner() == domid) };
        let mut mutations = Vec::new();
        let mut applied = Vec::new();
        for key in owned {
            let Some(node) = self.tree.get(&key).cloned() else {
                continue;
            };
            self.gen += 1;
            // `/` cannot be removed: it goes to dom0, as with keep-orphans.
            if self.config.keep_orphans || &*key == "/" {
                let perms = node.perms.with_owner(0);
                let updated = node.with_meta(None, perms.clone(), self.gen);
                let before = Charge { owner: domid, bytes: memory::node_at(&key, &node) };
                let after = Charge { owner: 0, bytes: memory::node_at(&key, &updated) };
                self.tree.replace(&key, updated);
                mutations.push(Mutation::changed(before, after));
                applied.push(Applied::SetPerms { path: key, perms });
                continue;
            }
            let removed = self.tree.remove_subtree(&key, self.gen);
            let mut below = Vec::new();
            for (k, n) in removed.iter().skip(1) {
                below.push((k.clone(), self.peek_perms(n)));
            }
            let top_perms = self.peek_perms(&node);
            let via =
                path::parent(&key).and_then(|p| self.tree.get(p)).map(|n| self.peek_perms(n)).into_iter().collect();
            for (k, n) in removed {
                mutations.push(Mutation::removed(n.perms.owner(), memory::node_at(&k, &n)));
            }
            applied.push(Applied::Remove { path: key.clone() });
            changes.push(Change::Removed { path: key, perms: top_perms, via, below });
        }
        self.apply_mutations(mutations);
        let mut effects = Vec::new();
        if let Some(conn) = ring_conn {
            // Gone before the events are routed: a dead domain's watches
            // do not fire for its own removal.
            self.disconnect(conn);
            effects.push(Effect::DetachRing { domid, conn });
        }
        let events = self.route_all(&changes);
        if let Some(left) = self.domains.remove(&domid).map(|d| d.memory).filter(|m| *m > 0) {
            self.orphaned_memory.insert(domid, left);
        }
        // A walk of every domain, so only once some domain has had a
        // target: a destroy among 10,000 domains costs one otherwise.
        if self.any_target {
            for d in self.domains.values_mut() {
                if d.target == Some(domid) {
                    d.target = None;
                }
            }
        }
        applied.push(Applied::DomainRemoved { domid });
        let mut outcome = Outcome { events, effects, applied, ..Outcome::ok(Reply::Ok) };
        self.list_newly_known(&mut outcome);
        outcome
    }
}
