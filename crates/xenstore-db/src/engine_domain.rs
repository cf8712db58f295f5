//! Domain management requests, quotas, and domain removal.

use std::collections::BTreeMap;
use std::sync::Arc;

use xenstore_wire::{path, DomId, ErrorCode, Reply};

use crate::access::Caller;
use crate::ctx::Mutation;
use crate::domain::RingAddress;
use crate::effect::Effect;
use crate::event::Change;
use crate::quota::QuotaKind;
use crate::{Engine, Outcome};

impl Engine {
    /// Keeps the domains' owned-node counts in step with the live tree.
    /// Dom0's nodes are not counted (it has no `nodes` quota; its usage is
    /// what no other domain owns).
    pub(crate) fn apply_mutations(&mut self, mutations: Vec<Mutation>) {
        for m in mutations {
            let (from, to) = match m {
                Mutation::Created { owner } => (0, owner),
                Mutation::Removed { owner } => (owner, 0),
                Mutation::Chowned { from, to } => (from, to),
            };
            if from != 0 {
                if let Some(d) = self.domains.get_mut(&from) {
                    d.owned = d.owned.saturating_sub(1);
                }
            }
            if to != 0 {
                self.ensure_domain(to).owned += 1;
            }
        }
    }

    /// INTRODUCE: records the domain, registers its ring's connection and
    /// asks the driver to attach the ring ([`Effect::AttachRing`]); fires
    /// `@introduceDomain`. A repeat with the same ring is OK and does
    /// nothing; with another ring it is EINVAL.
    pub(crate) fn introduce(&mut self, caller: Caller, domid: DomId, gfn: u64, port: u32) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        if domid == 0 {
            return Outcome::error(ErrorCode::EINVAL);
        }
        let ring = RingAddress { gfn, port };
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
        let attach = Effect::AttachRing { domid, gfn, port, conn, features };
        Outcome { events, effects: vec![attach], ..Outcome::ok(Reply::Ok) }
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
        let Effect::AttachRing { domid, conn, .. } = *effect else {
            return Outcome::error(ErrorCode::EIO);
        };
        self.disconnect(conn);
        if conn + 1 == self.next_conn {
            self.next_conn = conn;
        }
        if let Some(domain) = self.domains.get_mut(&domid) {
            domain.introduced = None;
            domain.ring_conn = None;
            // Made known by this INTRODUCE (nothing has moved the
            // generation since): forget it, as if never named.
            if domain.since_gen == self.gen {
                self.domains.remove(&domid);
                self.gen -= 1;
            }
        }
        Outcome::error(ErrorCode::EINVAL)
    }

    /// RELEASE: forget the domain, as if it had died.
    pub(crate) fn release(&mut self, caller: Caller, domid: DomId) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
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
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        match self.domains.get_mut(&domid) {
            Some(d) if d.introduced.is_some() => {
                d.release_fired = false;
                Outcome::ok(Reply::Ok)
            }
            _ => Outcome::error(ErrorCode::ENOENT),
        }
    }

    /// SET_TARGET: `domid` acts for `target` from now on.
    pub(crate) fn set_target(&mut self, caller: Caller, domid: DomId, target: DomId) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        self.ensure_domain(target);
        self.ensure_domain(domid).target = Some(target);
        Outcome::ok(Reply::Ok)
    }

    /// GET_FEATURE.
    pub(crate) fn get_feature(&self, caller: Caller, domid: Option<DomId>) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        match domid {
            None => Outcome::ok(Reply::Number(u64::from(self.config.features))),
            Some(d) => match self.domains.get(&d) {
                Some(dom) => Outcome::ok(Reply::Number(u64::from(dom.features))),
                None => Outcome::error(ErrorCode::ENOENT),
            },
        }
    }

    /// SET_FEATURE: only bits this store supports, only before INTRODUCE.
    pub(crate) fn set_feature(&mut self, caller: Caller, domid: DomId, value: u32) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        if value & !self.config.features != 0 {
            return Outcome::error(ErrorCode::EINVAL);
        }
        let domain = self.ensure_domain(domid);
        if domain.introduced.is_some() {
            return Outcome::error(ErrorCode::EBUSY);
        }
        domain.features = value;
        Outcome::ok(Reply::Ok)
    }

    /// GET_QUOTA.
    pub(crate) fn get_quota(&self, caller: Caller, domid: Option<DomId>, quota: Option<&str>) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        let Some(name) = quota else {
            return Outcome::ok(Reply::Names(QuotaKind::ALL.iter().map(|q| q.name().to_owned()).collect()));
        };
        let Some(kind) = QuotaKind::from_name(name) else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        let quotas = match domid {
            None => self.config.quotas,
            Some(d) => match self.domains.get(&d) {
                Some(dom) => dom.quotas,
                None => return Outcome::error(ErrorCode::ENOENT),
            },
        };
        Outcome::ok(Reply::Number(u64::from(quotas.get(kind))))
    }

    /// SET_QUOTA. The global value is what domains get when first known;
    /// a domain's own value changes only that domain.
    pub(crate) fn set_quota(&mut self, caller: Caller, domid: Option<DomId>, quota: &str, value: u32) -> Outcome {
        if !caller.privileged {
            return Outcome::error(ErrorCode::EACCES);
        }
        let Some(kind) = QuotaKind::from_name(quota) else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        match domid {
            None => self.config.quotas.set(kind, value),
            Some(d) => match self.domains.get_mut(&d) {
                Some(dom) => dom.quotas.set(kind, value),
                None => return Outcome::error(ErrorCode::ENOENT),
            },
        }
        Outcome::ok(Reply::Ok)
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
        Outcome { events, ..Outcome::ok(Reply::Ok) }
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
        for key in owned {
            let Some(node) = self.tree.get(&key).cloned() else {
                continue;
            };
            self.gen += 1;
            // `/` cannot be removed: it goes to dom0, as with keep-orphans.
            if self.config.keep_orphans || &*key == "/" {
                let perms = node.perms.with_owner(0);
                let updated = crate::node::Node { perms: perms.clone(), meta_gen: self.gen, ..(*node).clone() };
                self.tree.replace(&key, updated);
                mutations.push(Mutation::Chowned { from: domid, to: 0 });
                continue;
            }
            let removed = self.tree.remove_subtree(&key, self.gen);
            let mut below = Vec::new();
            for (k, n) in removed.iter().skip(1) {
                below.push((k.clone(), self.peek_perms(n)));
            }
            let top_perms = self.peek_perms(&node);
            for (_, n) in removed {
                mutations.push(Mutation::Removed { owner: n.perms.owner() });
            }
            changes.push(Change::Removed { path: key, perms: top_perms, below });
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
        self.domains.remove(&domid);
        for d in self.domains.values_mut() {
            if d.target == Some(domid) {
                d.target = None;
            }
        }
        Outcome { events, effects, ..Outcome::ok(Reply::Ok) }
    }

    /// A node's permissions without entries that no longer count.
    pub(crate) fn peek_perms(&self, node: &crate::node::Node) -> xenstore_wire::PermList {
        crate::access::without_stale(&node.perms, |e| crate::ctx::entry_valid(&self.domains, e, node.meta_gen))
    }

    /// Checks the store's invariants: every node's parent exists and lists
    /// it once; every listed child exists; every domain's owned-node count
    /// is the number of nodes it owns, and every owner is a known domain.
    pub fn check(&self) -> Result<(), String> {
        let mut owned: BTreeMap<DomId, usize> = BTreeMap::new();
        for (key, node) in self.tree.iter() {
            if let Some(parent) = path::parent(&key) {
                let Some(p) = self.tree.get(parent) else {
                    return Err(format!("{key}: parent missing"));
                };
                let name = path::basename(&key);
                if p.children.iter().filter(|c| &***c == name).count() != 1 {
                    return Err(format!("{key}: not listed once by its parent"));
                }
            }
            for child in node.children.iter() {
                if self.tree.get(&path::join(&key, child)).is_none() {
                    return Err(format!("{key}: lists missing child {child}"));
                }
            }
            let owner = node.perms.owner();
            if owner != 0 {
                if !self.domains.contains_key(&owner) {
                    return Err(format!("{key}: owner {owner} is not a known domain"));
                }
                *owned.entry(owner).or_default() += 1;
            }
        }
        for (domid, d) in &self.domains {
            let actual = owned.get(domid).copied().unwrap_or(0);
            if *domid != 0 && d.owned != actual {
                return Err(format!("domain {domid} counts {} owned nodes, owns {actual}", d.owned));
            }
        }
        Ok(())
    }
}
