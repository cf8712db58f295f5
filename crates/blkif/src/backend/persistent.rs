//! Persistent grants (`feature-persistent`, blkback's `persistent_gnts`):
//! the data pages a frontend granted, kept mapped from their first use
//! until the device disconnects, so that a frontend that reuses its
//! grants (ours grants a pool once per connection) costs one map per page
//! per connection instead of one per request.
//!
//! # The bound
//!
//! A frontend chooses its grant references, and a hostile one could use a
//! fresh one for every request: every cached mapping holds a page of its
//! memory in this process (and, hosted, one `mmap`, of which a process
//! has some 65,000). So a device keeps at most [`MAX_PERSISTENT_GRANTS`]
//! mappings, 1056 as Linux's default `max_persistent_grants`: more than
//! the 352 pages (32 slots of 11) a one-page ring can have in flight, a
//! fifth of the 5632 of the largest ring we offer.
//!
//! # When full
//!
//! A page that is not cached when the cache is full is mapped for its
//! request alone, as without the feature, unless the least recently used
//! cached page has been idle for more than [`IDLE_REQUESTS`]; then that
//! one is unmapped and the new one takes its place. So:
//!
//! - A frontend whose working set fits keeps it all mapped.
//! - One that cycles through more pages than fit (the largest ring at full
//!   depth) keeps the first 1056 and maps the rest per request: an LRU
//!   that evicted at once would miss on every page of such a cycle and
//!   map (and unmap) each of them alone, worse than without the feature.
//! - One that moves on to other pages, or uses fresh references for ever,
//!   sees its old pages age out one by one and the new ones cached, and
//!   the count never passes the bound.
//!
//! Linux gets the same effect by purging 5% of the least recently used
//! grants every 100 ms once the cache overflowed; counting requests
//! instead of time keeps this deterministic in the stepped tests.
//!
//! # Access
//!
//! blkif.h's note 8: a frontend with the feature grants every page
//! writable, since a page written to the disk today may be read into
//! tomorrow; pages are cached mapped read-write. A page granted
//! read-only fails that mapping and is mapped per request instead, with
//! the access its request needs (so a write to the disk from it works,
//! a read into it fails), as without the feature.

use std::collections::{BTreeSet, HashMap};

use xen_platform::GrantRef;

/// The most data pages one device keeps mapped (Linux's default
/// `xen_blkif_max_pgrants`).
pub const MAX_PERSISTENT_GRANTS: usize = 1056;

/// Requests a cached page must go unused before a new page may take its
/// place in a full cache: twice the slots of the largest ring (512), so
/// that a frontend cycling through all its slots reuses each cached page
/// well before it could be evicted.
pub const IDLE_REQUESTS: u64 = 1024;

/// One device's persistently mapped pages, by grant reference: `P` is a
/// [`xen_platform::MappedPages`] (generic so that the rules are tested
/// without mapping anything).
#[derive(Debug)]
pub struct GrantCache<P> {
    pages: HashMap<GrantRef, Cached<P>>,
    /// `(last use, reference)` of every cached page: the first is the
    /// least recently used.
    recency: BTreeSet<(u64, GrantRef)>,
    /// Requests begun so far.
    clock: u64,
    bound: usize,
    idle: u64,
}

/// A cached page and when it was last used.
#[derive(Debug)]
struct Cached<P> {
    page: P,
    used: u64,
}

impl<P> GrantCache<P> {
    /// An empty cache of at most `bound` pages, whose pages may be
    /// replaced after `idle` requests unused.
    pub fn new(bound: usize, idle: u64) -> GrantCache<P> {
        GrantCache { pages: HashMap::new(), recency: BTreeSet::new(), clock: 0, bound, idle }
    }

    /// Starts a request: the pages it uses from now on count as used by
    /// it, and cannot be replaced while it runs.
    pub fn begin_request(&mut self) {
        self.clock += 1;
    }

    /// The page of `gref`, if cached; marks it used.
    pub fn get(&mut self, gref: GrantRef) -> Option<&P> {
        let cached = self.pages.get_mut(&gref)?;
        if cached.used != self.clock {
            self.recency.remove(&(cached.used, gref));
            self.recency.insert((self.clock, gref));
            cached.used = self.clock;
        }
        Some(&cached.page)
    }

    /// Whether `gref` is cached (without marking it used).
    pub fn contains(&self, gref: GrantRef) -> bool {
        self.pages.contains_key(&gref)
    }

    /// The page of `gref`, if cached, without marking it used.
    pub fn peek(&self, gref: GrantRef) -> Option<&P> {
        self.pages.get(&gref).map(|c| &c.page)
    }

    /// Makes room for one more page: true if there is room, or if the
    /// least recently used page was idle long enough and is now unmapped.
    pub fn make_room(&mut self) -> bool {
        if self.pages.len() < self.bound {
            return true;
        }
        let Some(&(used, gref)) = self.recency.first() else { return false };
        if self.clock.saturating_sub(used) <= self.idle {
            return false;
        }
        self.recency.remove(&(used, gref));
        // Dropping the mapping unmaps it.
        self.pages.remove(&gref);
        true
    }

    /// Caches `page` as the mapping of `gref`, used by this request.
    /// Call after [`GrantCache::make_room`] said there is room.
    pub fn insert(&mut self, gref: GrantRef, page: P) {
        let used = self.clock;
        if let Some(old) = self.pages.insert(gref, Cached { page, used }) {
            self.recency.remove(&(old.used, gref));
        }
        self.recency.insert((used, gref));
    }

    /// Pages mapped now.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no page is mapped.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(cache: &mut GrantCache<()>, grefs: impl IntoIterator<Item = GrantRef>) -> Vec<bool> {
        grefs
            .into_iter()
            .map(|gref| {
                cache.begin_request();
                if cache.get(gref).is_some() {
                    return true;
                }
                if cache.make_room() {
                    cache.insert(gref, ());
                }
                false
            })
            .collect()
    }

    #[test]
    fn a_working_set_that_fits_is_mapped_once() {
        let mut cache = GrantCache::<()>::new(4, 8);
        let hits = fill(&mut cache, [1, 2, 3, 4, 1, 2, 3, 4, 4, 1]);
        assert_eq!(hits, [false, false, false, false, true, true, true, true, true, true]);
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn a_cycle_larger_than_the_bound_keeps_its_first_pages() {
        let mut cache = GrantCache::<()>::new(2, 8);
        let hits = fill(&mut cache, [1, 2, 3, 1, 2, 3, 1, 2, 3]);
        assert_eq!(hits, [false, false, false, true, true, false, true, true, false]);
        assert!(cache.contains(1) && cache.contains(2) && !cache.contains(3));
    }

    #[test]
    fn fresh_references_for_ever_stay_within_the_bound_and_replace_idle_pages() {
        let mut cache = GrantCache::<()>::new(3, 5);
        for gref in 0..100 {
            fill(&mut cache, [gref]);
            assert!(cache.len() <= 3);
        }
        // The old ones aged out, recent ones took their place.
        assert!(!cache.contains(0) && (90..100).any(|gref| cache.contains(gref)));
    }

    #[test]
    fn a_page_used_by_the_running_request_is_never_replaced() {
        let mut cache = GrantCache::<()>::new(1, 0);
        cache.begin_request();
        assert!(cache.make_room());
        cache.insert(7, ());
        assert!(!cache.make_room(), "7 is in use by this request");
        cache.begin_request();
        assert!(cache.make_room(), "idle for one request, beyond 0");
        assert!(cache.is_empty());
    }
}
