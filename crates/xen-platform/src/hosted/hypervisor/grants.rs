//! One domain's grant table, as the hypervisor keeps it.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::{DomId, GrantRef};

/// The most grants one domain may hold (Linux's default gnttab has 32
/// frames of 512 v1 entries).
pub(super) const MAX_GRANTS: usize = 32 * 512;

/// The first reference handed out; Linux reserves the first eight.
const FIRST_REF: GrantRef = 8;

/// One granted page.
#[derive(Debug)]
pub(super) struct Grant {
    /// The only domain that may map it.
    pub(super) remote: DomId,
    /// Whether `remote` may map it writable.
    pub(super) writable: bool,
    /// The memfd holding it.
    pub(super) file: Arc<OwnedFd>,
    /// Its page in `file`.
    pub(super) page: u64,
}

/// A domain's grants by reference.
#[derive(Debug, Default)]
pub(super) struct GrantTable {
    grants: BTreeMap<GrantRef, Grant>,
    next: GrantRef,
}

impl GrantTable {
    /// Room for `count` more grants?
    pub(super) fn has_room(&self, count: usize) -> bool {
        self.grants.len().saturating_add(count) <= MAX_GRANTS
    }

    /// Records `grant` under a fresh reference (not reused until the
    /// counter wraps).
    pub(super) fn insert(&mut self, grant: Grant) -> GrantRef {
        loop {
            let candidate = self.next.max(FIRST_REF);
            self.next = candidate.checked_add(1).unwrap_or(FIRST_REF);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.grants.entry(candidate) {
                slot.insert(grant);
                return candidate;
            }
        }
    }

    /// The grant of `gref`.
    pub(super) fn get(&self, gref: GrantRef) -> Option<&Grant> {
        self.grants.get(&gref)
    }

    /// Ends the grant of `gref`.
    pub(super) fn remove(&mut self, gref: GrantRef) -> Option<Grant> {
        self.grants.remove(&gref)
    }
}
