//! WATCH and UNWATCH (`xenstore.txt`, "Watches"). Who may see an event
//! is `permissions.rs`'s rule; routing events to watches is `route.rs`'s.

use std::sync::Arc;

use xenstore_wire::{path, ErrorCode, Reply, WatchEvent};

use crate::event::Delivery;
use crate::memory;
use crate::permissions::Caller;
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
        if let Err(hit) = self.charge_watch(conn, caller) {
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
        let cost = memory::watch(&watch);
        if let Err(hit) = self.charge_memory(caller, cost) {
            return Outcome { quota: Some(hit), ..Outcome::error(ErrorCode::ENOMEM) };
        }
        let Some(id) = self.watches.add(watch) else {
            return Outcome::error(ErrorCode::EEXIST);
        };
        self.hold_memory(caller.domid, cost);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.watches.push(id);
        }
        let initial = Delivery { conn, event: WatchEvent { path: p.to_owned(), token } };
        Outcome { after_reply: Some(initial), ..Outcome::ok(Reply::Ok) }
    }

    /// UNWATCH.
    pub(crate) fn unwatch(&mut self, conn: ConnId, caller: Caller, p: &str, token: &[u8]) -> Outcome {
        let canonical = path::canonicalize(p, caller.domid);
        let cost = self.watches.find(conn, &canonical, token).map_or(0, memory::watch);
        match self.watches.remove(conn, &canonical, token) {
            Some(id) => {
                self.release_memory(caller.domid, cost);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.watches.retain(|w| *w != id);
                }
                Outcome::ok(Reply::Ok)
            }
            None => Outcome::error(ErrorCode::ENOENT),
        }
    }
}
