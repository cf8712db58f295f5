//! Which domains changed state since a client last asked: Xen 4.21's
//! `XEN_DOMCTL_get_domain_state` with `DOMID_INVALID`, which its
//! xenstored calls on VIRQ_DOM_EXC instead of listing every domain.
//!
//! Xen keeps one "changed" flag per domain for its single consumer; the
//! hosted hypervisor keeps a set per dom0 connection that asked, so that
//! a second daemon (a test's, a live update's before the old one is gone)
//! takes nothing from the first. Each set holds at most one entry per
//! domid, so it is bounded by the domid space, whatever the churn.

use std::collections::{BTreeMap, HashMap};

use super::ConnId;
use crate::DomId;

/// The per-connection sets of changed domains.
#[derive(Debug, Default)]
pub(super) struct ChangeLog {
    /// By subscribed connection: each changed domid, and whether a domain
    /// with that id was destroyed since the connection last asked.
    by_conn: HashMap<ConnId, BTreeMap<DomId, bool>>,
}

impl ChangeLog {
    /// Starts (or restarts) tracking for `conn` with nothing changed: the
    /// caller is being given every domain.
    pub(super) fn subscribe(&mut self, conn: ConnId) {
        self.by_conn.insert(conn, BTreeMap::new());
    }

    /// Domain `domid` changed state (shut down, or `gone`) for every
    /// subscriber.
    pub(super) fn record(&mut self, domid: DomId, gone: bool) {
        for changed in self.by_conn.values_mut() {
            *changed.entry(domid).or_insert(false) |= gone;
        }
    }

    /// What changed for `conn` since it last asked, emptied; `None` if it
    /// never subscribed.
    pub(super) fn take(&mut self, conn: ConnId) -> Option<BTreeMap<DomId, bool>> {
        self.by_conn.get_mut(&conn).map(std::mem::take)
    }

    /// The connection closed: its set goes.
    pub(super) fn connection_gone(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_before_subscribe_is_not_kept() {
        let mut log = ChangeLog::default();
        log.record(3, true);
        log.subscribe(1);
        assert_eq!(log.take(1), Some(BTreeMap::new()));
    }

    #[test]
    fn take_returns_each_domid_once_and_empties() {
        let mut log = ChangeLog::default();
        log.subscribe(1);
        log.record(5, false);
        log.record(2, true);
        log.record(5, false);
        assert_eq!(log.take(1), Some(BTreeMap::from([(2, true), (5, false)])));
        assert_eq!(log.take(1), Some(BTreeMap::new()));
    }

    #[test]
    fn gone_sticks_until_taken() {
        let mut log = ChangeLog::default();
        log.subscribe(1);
        log.record(4, true);
        log.record(4, false);
        assert_eq!(log.take(1), Some(BTreeMap::from([(4, true)])));
    }

    #[test]
    fn unsubscribed_or_closed_connection_gets_none() {
        let mut log = ChangeLog::default();
        assert_eq!(log.take(7), None);
        log.subscribe(7);
        log.connection_gone(7);
        assert_eq!(log.take(7), None);
    }

    #[test]
    fn subscribers_are_independent() {
        let mut log = ChangeLog::default();
        log.subscribe(1);
        log.subscribe(2);
        log.record(9, false);
        assert_eq!(log.take(1), Some(BTreeMap::from([(9, false)])));
        assert_eq!(log.take(2), Some(BTreeMap::from([(9, false)])));
    }
}
