//! Logging refused requests (EACCES, EPERM, a quota) so that an
//! administrator can see who is refused what, without letting a guest
//! flood the log: one line per cause (domain, operation, error, path),
//! and at most [`LINES_PER_SECOND`] such lines, the rest counted and
//! reported with the next line that is written.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Instant;

use rustc_hash::FxHashSet;
use tracing::info;
use xen_platform::RateLimit;
use xenstore_db::QuotaExceeded;
use xenstore_wire::{DomId, ErrorCode};

/// Causes remembered before the memory is cleared (bounded whatever a
/// guest sends; a cleared cause may be logged once more).
const MAX_CAUSES: usize = 4096;

/// Refusal lines written per second at most.
const LINES_PER_SECOND: u32 = 20;

/// The causes already logged and the rate limit.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// Causes by a keyed hash: a guest cannot make two causes collide on
    /// purpose to hide one.
    seen: FxHashSet<u64>,
    hasher: RandomState,
    limit: RateLimit,
}

impl Default for Refusals {
    fn default() -> Refusals {
        Refusals { seen: FxHashSet::default(), hasher: RandomState::new(), limit: RateLimit::new(LINES_PER_SECOND) }
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum Cause<'a> {
    /// An error for want of permission.
    Error(ErrorCode),
    /// A quota.
    Quota(&'a QuotaExceeded),
}

impl Refusals {
    /// Logs a refusal of `op` on `path` by `domid`, unless that cause was
    /// logged already or the rate limit is reached.
    pub(crate) fn note(&mut self, domid: DomId, op: &str, path: &[u8], cause: Cause<'_>) {
        let key = match &cause {
            Cause::Error(e) => self.hasher.hash_one((domid, op, e.name(), path)),
            // A quota is one cause per domain, whatever the path.
            Cause::Quota(hit) => self.hasher.hash_one((domid, hit.kind.name())),
        };
        if self.seen.len() >= MAX_CAUSES {
            self.seen.clear();
        }
        if !self.seen.insert(key) {
            return;
        }
        let Some(suppressed) = self.limit.admit(Instant::now()) else { return };
        let path = String::from_utf8_lossy(&path[..path.len().min(256)]).into_owned();
        match cause {
            Cause::Error(e) => info!(domid, op, path, suppressed, "request refused: {}", e.name()),
            Cause::Quota(hit) => info!(domid, op, path, suppressed, "request refused: {hit}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore_db::QuotaKind;

    #[test]
    fn each_cause_is_remembered_once_and_memory_stays_bounded() {
        let mut r = Refusals::default();
        r.note(3, "READ", b"/x", Cause::Error(ErrorCode::EACCES));
        r.note(3, "READ", b"/x", Cause::Error(ErrorCode::EACCES));
        assert_eq!(r.seen.len(), 1);
        let hit = QuotaExceeded { kind: QuotaKind::Nodes, domid: 3, limit: 10 };
        r.note(3, "WRITE", b"/y", Cause::Quota(&hit));
        r.note(3, "WRITE", b"/z", Cause::Quota(&hit));
        assert_eq!(r.seen.len(), 2, "a quota is one cause per domain");
        for i in 0..10_000u32 {
            r.note(4, "READ", format!("/p/{i}").as_bytes(), Cause::Error(ErrorCode::EACCES));
        }
        assert!(r.seen.len() <= MAX_CAUSES);
        assert_eq!(r.limit.admit(Instant::now()), None, "the second's lines are used up");
    }
}
