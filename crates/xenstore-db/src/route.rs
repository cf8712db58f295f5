//! Matching changes against watches (who may see an event is
//! `permissions.rs`'s `can_see_any` and `can_see_special`: as in C's
//! `watch_permitted`, the node's permissions, its parent's, or for a
//! permission change its old ones).

use std::sync::Arc;

use xenstore_wire::{path, DomId, PermList, WatchEvent};

use crate::event::{Change, Delivery};
use crate::watch::{Watch, WatchId};
use crate::{ConnId, Engine};

impl Engine {
    /// Deliveries for a list of changes, in order.
    pub(crate) fn route_all(&self, changes: &[Change]) -> Vec<Delivery> {
        let mut out = Vec::new();
        for change in changes {
            self.route(change, &mut out);
        }
        out
    }

    /// Appends the deliveries one change causes, ordered by connection and
    /// then by watch registration, as the C daemon walks them.
    fn route(&self, change: &Change, out: &mut Vec<Delivery>) {
        let mut hits: Vec<(ConnId, WatchId, Delivery)> = Vec::new();
        let mut hit = |id: WatchId, w: &Watch, path: String| {
            let event = WatchEvent { path, token: w.token.clone() };
            hits.push((w.conn, id, Delivery { conn: w.conn, event }));
        };
        match change {
            Change::Node { path: p, perms, via } => self.route_node(p, perms, via, &mut hit),
            Change::Removed { path: p, perms, via, below } => {
                self.route_node(p, perms, via, &mut hit);
                self.route_below(p, perms, below, &mut hit);
            }
            Change::Special { name, domid } => self.route_special(name, *domid, &mut hit),
        }
        hits.sort_by_key(|(conn, id, _)| (*conn, *id));
        out.extend(hits.into_iter().map(|(_, _, d)| d));
    }

    /// Watches on the node or above it, seen by whoever may read the node,
    /// its parent, or (a permission change) the node as it was.
    fn route_node(&self, p: &str, perms: &PermList, via: &[PermList], hit: &mut impl FnMut(WatchId, &Watch, String)) {
        for (id, w) in self.watches.matching(p) {
            if self.can_see_any(w.conn, std::iter::once(perms).chain(via)) {
                hit(id, w, w.deliver_path(p));
            }
        }
    }

    /// Watches strictly below a removed node, on a node that existed: each
    /// fires with its own path, seen by whoever may read that node or its
    /// parent (the removed node, or another node removed with it).
    fn route_below(
        &self,
        p: &str,
        perms: &PermList,
        below: &[(Arc<str>, PermList)],
        hit: &mut impl FnMut(WatchId, &Watch, String),
    ) {
        let find = |q: &str| below.binary_search_by(|(k, _)| (**k).cmp(q)).ok().map(|i| &below[i].1);
        for (id, w) in self.watches.below(p) {
            let Some(node_perms) = find(&w.path) else {
                continue;
            };
            let parent = path::parent(&w.path).and_then(|q| if q == p { Some(perms) } else { find(q) });
            if self.can_see_any(w.conn, std::iter::once(node_perms).chain(parent)) {
                hit(id, w, w.deliver_path(&w.path));
            }
        }
    }

    /// `@introduceDomain` / `@releaseDomain` (and `@releaseDomain/<domid>`
    /// for depth-1 watchers), seen by the privileged and by those the
    /// special path's permissions let read it.
    fn route_special(&self, name: &'static str, domid: DomId, hit: &mut impl FnMut(WatchId, &Watch, String)) {
        let perms = self.special_perms.get(name);
        let allowed = |conn: ConnId| self.can_see_special(conn, perms);
        for (id, w) in self.watches.at(name) {
            if allowed(w.conn) {
                hit(id, w, if w.depth == Some(1) { format!("{name}/{domid}") } else { name.to_owned() });
            }
        }
        if name == path::RELEASE_DOMAIN {
            let single = format!("{name}/{domid}");
            for (id, w) in self.watches.at(&single) {
                if allowed(w.conn) {
                    hit(id, w, single.clone());
                }
            }
        }
    }
}
