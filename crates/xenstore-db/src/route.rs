//! Matching changes against watches (who may see an event is
//! `permissions.rs`'s `can_see` and `can_see_special`).

use xenstore_wire::{path, WatchEvent};

use crate::event::{Change, Delivery};
use crate::watch::WatchId;
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
        let mut hit = |id: WatchId, w: &crate::watch::Watch, path: String| {
            let event = WatchEvent { path, token: w.token.clone() };
            hits.push((w.conn, id, Delivery { conn: w.conn, event }));
        };
        match change {
            Change::Node { path: p, perms } => {
                for (id, w) in self.watches.matching(p) {
                    if self.can_see(w.conn, perms) {
                        hit(id, w, w.deliver_path(p));
                    }
                }
            }
            Change::Removed { path: p, perms, below } => {
                for (id, w) in self.watches.matching(p) {
                    if self.can_see(w.conn, perms) {
                        hit(id, w, w.deliver_path(p));
                    }
                }
                for (id, w) in self.watches.below(p) {
                    let Ok(i) = below.binary_search_by(|(k, _)| (**k).cmp(&*w.path)) else {
                        continue;
                    };
                    let Some((_, node_perms)) = below.get(i) else {
                        continue;
                    };
                    if self.can_see(w.conn, node_perms) {
                        hit(id, w, w.deliver_path(&w.path));
                    }
                }
            }
            Change::Special { name, domid } => {
                let perms = self.special_perms.get(name);
                let allowed = |conn: ConnId| self.can_see_special(conn, perms);
                for (id, w) in self.watches.at(name) {
                    if allowed(w.conn) {
                        hit(id, w, if w.depth == Some(1) { format!("{name}/{domid}") } else { (*name).to_owned() });
                    }
                }
                if *name == path::RELEASE_DOMAIN {
                    let single = format!("{name}/{domid}");
                    for (id, w) in self.watches.at(&single) {
                        if allowed(w.conn) {
                            hit(id, w, single.clone());
                        }
                    }
                }
            }
        }
        hits.sort_by_key(|(conn, id, _)| (*conn, *id));
        out.extend(hits.into_iter().map(|(_, _, d)| d));
    }
}
