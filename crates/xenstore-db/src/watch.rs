//! Registered watches, indexed by path.
//!
//! Matching an event at `P` looks up `P` and each of its ancestors in the
//! index (O(depth), whatever the number of watches); the watches strictly
//! below a removed node are one range scan. Nothing scans all watches.

use std::collections::BTreeMap;
use std::sync::Arc;

use xenstore_wire::path;

use crate::ConnId;

/// One registered watch.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The connection that registered it.
    pub conn: ConnId,
    /// Canonical (absolute or special) watched path.
    pub path: Arc<str>,
    /// Token echoed in events.
    pub token: Arc<[u8]>,
    /// Levels below `path` that still match; `None` for all.
    pub depth: Option<u32>,
    /// For a relative watch, the length of the `/local/domain/<id>/` prefix
    /// to strip from event paths.
    pub relative_prefix: Option<usize>,
}

impl Watch {
    /// The path as the watcher should see it for an event at `event_path`.
    pub fn deliver_path(&self, event_path: &str) -> String {
        match self.relative_prefix {
            Some(n) => event_path.get(n..).unwrap_or(event_path).to_owned(),
            None => event_path.to_owned(),
        }
    }

    /// Whether an event at `event_path` (at or below the watch) is within
    /// the watch's depth.
    pub fn depth_ok(&self, event_path: &str) -> bool {
        match self.depth {
            None => true,
            Some(max) => path::depth_below(event_path, &self.path).is_some_and(|d| d <= max as usize),
        }
    }
}

/// Identifies a watch; increasing in registration order.
pub type WatchId = u64;

/// All watches of all connections.
#[derive(Debug, Default, Clone)]
pub struct Watches {
    pub(crate) next_id: WatchId,
    pub(crate) by_id: BTreeMap<WatchId, Watch>,
    pub(crate) by_path: BTreeMap<Arc<str>, Vec<WatchId>>,
}

impl Watches {
    /// Registers a watch; `None` if the connection already has one with
    /// this path and token.
    pub fn add(&mut self, watch: Watch) -> Option<WatchId> {
        let ids = self.by_path.entry(watch.path.clone()).or_default();
        if ids.iter().any(|id| self.by_id.get(id).is_some_and(|w| w.conn == watch.conn && w.token == watch.token)) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        ids.push(id);
        self.by_id.insert(id, watch);
        Some(id)
    }

    /// Removes the connection's watch with this path and token.
    pub fn remove(&mut self, conn: ConnId, path: &str, token: &[u8]) -> Option<WatchId> {
        let ids = self.by_path.get(path)?;
        let id = *ids.iter().find(|id| self.by_id.get(id).is_some_and(|w| w.conn == conn && *w.token == *token))?;
        self.remove_id(id);
        Some(id)
    }

    /// The watch `conn` registered on `path` with `token`.
    pub fn find(&self, conn: ConnId, path: &str, token: &[u8]) -> Option<&Watch> {
        self.by_path
            .get(path)?
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .find(|w| w.conn == conn && *w.token == *token)
    }

    /// Removes a watch by id.
    pub fn remove_id(&mut self, id: WatchId) {
        if let Some(watch) = self.by_id.remove(&id) {
            if let Some(ids) = self.by_path.get_mut(&watch.path) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_path.remove(&watch.path);
                }
            }
        }
    }

    /// A watch by id.
    pub fn get(&self, id: WatchId) -> Option<&Watch> {
        self.by_id.get(&id)
    }

    /// Number of watches.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Watches registered exactly at `path`.
    pub fn at(&self, path: &str) -> impl Iterator<Item = (WatchId, &Watch)> {
        self.by_path.get(path).into_iter().flatten().filter_map(|id| self.by_id.get(id).map(|w| (*id, w)))
    }

    /// Watches whose path is `event_path` or an ancestor of it, within depth.
    pub fn matching<'a>(&'a self, event_path: &'a str) -> impl Iterator<Item = (WatchId, &'a Watch)> + 'a {
        let mut next = Some(event_path);
        std::iter::from_fn(move || {
            let current = next?;
            next = path::parent(current);
            Some(current)
        })
        .flat_map(move |p| self.at(p))
        .filter(move |(_, w)| w.depth_ok(event_path))
    }

    /// Watches strictly below `path`.
    pub fn below<'a>(&'a self, path: &str) -> impl Iterator<Item = (WatchId, &'a Watch)> + 'a {
        let (lo, hi) = path::descendants_range(path);
        self.by_path
            .range::<str, _>((std::ops::Bound::Included(lo.as_str()), std::ops::Bound::Excluded(hi.as_str())))
            .flat_map(|(_, ids)| ids.iter())
            .filter_map(|id| self.by_id.get(id).map(|w| (*id, w)))
            .collect::<Vec<_>>()
            .into_iter()
    }
}
