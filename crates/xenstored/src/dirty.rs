//! The connections with output to send, in the order they got it.
//!
//! The loop flushes a bounded number of them per iteration (oldest first)
//! and then looks for new requests again. When one write fires a watch on
//! a thousand connections, the requests that arrive meanwhile are served
//! before the last of those thousand is written to, and their events join
//! the ones still queued: one `writev` then carries several events, instead
//! of one system call per event per connection.

use std::collections::VecDeque;

use rustc_hash::FxHashSet;

use xenstore_db::ConnId;

/// A FIFO set of connection ids.
#[derive(Debug, Default)]
pub struct Dirty {
    order: VecDeque<ConnId>,
    members: FxHashSet<ConnId>,
}

impl Dirty {
    /// Marks `id` as having output (no-op if it already has).
    pub fn insert(&mut self, id: ConnId) {
        if self.members.insert(id) {
            self.order.push_back(id);
        }
    }

    /// Forgets `id` (closed or detached).
    pub fn remove(&mut self, id: &ConnId) {
        if self.members.remove(id) {
            self.order.retain(|c| c != id);
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The oldest `max` ids, removed.
    pub fn take(&mut self, max: usize) -> Vec<ConnId> {
        let n = max.min(self.order.len());
        let taken: Vec<ConnId> = self.order.drain(..n).collect();
        for id in &taken {
            self.members.remove(id);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_first_without_duplicates() {
        let mut d = Dirty::default();
        for id in [3, 1, 3, 2, 1] {
            d.insert(id);
        }
        assert_eq!(d.take(2), [3, 1]);
        d.insert(3);
        assert_eq!(d.take(10), [2, 3]);
        assert!(d.is_empty());
    }

    #[test]
    fn removed_ids_are_not_taken() {
        let mut d = Dirty::default();
        for id in [1, 2, 3] {
            d.insert(id);
        }
        d.remove(&2);
        d.remove(&9);
        assert_eq!(d.take(10), [1, 3]);
        d.insert(2);
        assert_eq!(d.take(10), [2]);
    }
}
