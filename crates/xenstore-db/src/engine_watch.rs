//! WATCH, UNWATCH and the permissions of the special watch paths.

use std::sync::Arc;

use xenstore_wire::{path, ErrorCode, PermList, Reply, WatchEvent};

use crate::access::{rights, Caller};
use crate::event::Delivery;
use crate::quota::{QuotaExceeded, QuotaKind};
use crate::watch::Watch;
use crate::{ConnId, Engine, Outcome};

impl Engine {
    /// WATCH (`xenstore.txt`, "Watches"): registers and fires once at once.
    pub(crate) fn watch(&mut self, conn: ConnId, caller: Caller, p: &str, token: &[u8], depth: Option<u32>) -> Outcome {
        let special = p.starts_with('@');
        if special && depth.is_some_and(|d| d != 1) {
            return Outcome::error(ErrorCode::EINVAL);
        }
        let canonical = match self.canonical(caller, p) {
            Ok(c) => c,
            Err((e, quota)) => return Outcome { quota, ..Outcome::error(e) },
        };
        let count = self.conns.get(&conn).map_or(0, |c| c.watches.len());
        let quotas = self.quotas_of(caller.domid);
        if !caller.privileged && quotas.exceeded(QuotaKind::Watches, count + 1) {
            let hit =
                QuotaExceeded { kind: QuotaKind::Watches, domid: caller.domid, limit: quotas.get(QuotaKind::Watches) };
            return Outcome { quota: Some(hit), ..Outcome::error(ErrorCode::E2BIG) };
        }
        let relative = !special && path::check(p.as_bytes(), false) == Ok(path::PathKind::Relative);
        let token: Arc<[u8]> = Arc::from(token);
        let watch = Watch {
            conn,
            path: Arc::from(&*canonical),
            token: token.clone(),
            depth,
            relative_prefix: relative.then(|| path::domain_home(caller.domid).len() + 1),
        };
        let Some(id) = self.watches.add(watch) else {
            return Outcome::error(ErrorCode::EEXIST);
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.watches.push(id);
        }
        let initial = Delivery { conn, event: WatchEvent { path: p.to_owned(), token } };
        Outcome { after_reply: Some(initial), ..Outcome::ok(Reply::Ok) }
    }

    /// UNWATCH.
    pub(crate) fn unwatch(&mut self, conn: ConnId, caller: Caller, p: &str, token: &[u8]) -> Outcome {
        let canonical = path::canonicalize(p, caller.domid);
        match self.watches.remove(conn, &canonical, token) {
            Some(id) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.watches.retain(|w| *w != id);
                }
                Outcome::ok(Reply::Ok)
            }
            None => Outcome::error(ErrorCode::ENOENT),
        }
    }

    fn special_name(p: &str) -> Option<&'static str> {
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
        if !caller.privileged && self.quotas_of(caller.domid).exceeded(QuotaKind::Permissions, perms.entries().len()) {
            return Outcome::error(ErrorCode::ENOSPC);
        }
        self.special_perms.insert(name, perms.clone());
        Outcome::ok(Reply::Ok)
    }
}
