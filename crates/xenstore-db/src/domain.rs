//! What the store knows about each domain.

use xenstore_wire::DomId;

use crate::quota::Quotas;
use crate::ConnId;

/// A domain as the store sees it: known from the first time something
/// names it (a connection, a permission entry, INTRODUCE) until it is
/// removed.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Generation at which this incarnation became known. Permission entries
    /// naming the domain on nodes last written before it are stale.
    pub since_gen: u64,
    /// How many nodes it owns: the `nodes` quota's count, and whether
    /// removing the domain must look for nodes to delete. A count, not a
    /// set of paths: a set held one entry per node of the store, and a
    /// toolstack removes a domain's home before the domain, so the search
    /// is usually skipped.
    pub owned: usize,
    /// Bytes the store holds for it: the `memory` quota's count, a running
    /// total of what `memory.rs` charges (derived: recounted on import).
    pub memory: usize,
    /// Its quotas (starting as the global ones).
    pub quotas: Quotas,
    /// The domain it acts for (SET_TARGET).
    pub target: Option<DomId>,
    /// Whether INTRODUCE was accepted and RELEASE not yet.
    pub introduced: Option<RingAddress>,
    /// Whether `@releaseDomain` already fired for its shutdown (RESUME
    /// re-arms it).
    pub release_fired: bool,
    /// Ring feature bits to advertise (SET_FEATURE before INTRODUCE).
    pub features: u32,
    /// The connection its ring is served as, from INTRODUCE until it is
    /// released or removed.
    pub ring_conn: Option<ConnId>,
}

/// Where a domain's ring is, as INTRODUCE gave it.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAddress {
    /// Guest frame of the ring page.
    pub gfn: u64,
    /// Unbound event channel port in the guest.
    pub port: u32,
}

impl Domain {
    /// A newly known domain.
    pub fn new(since_gen: u64, quotas: Quotas, features: u32) -> Domain {
        Domain {
            since_gen,
            owned: 0,
            memory: 0,
            quotas,
            target: None,
            introduced: None,
            release_fired: false,
            features,
            ring_conn: None,
        }
    }
}
