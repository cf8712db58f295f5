//! How a request's data pages reach the backend: mapped for the request
//! alone (every page in one call, unmapped when it is answered), or, with
//! persistent grants, found in or added to the device's [`GrantCache`].

use std::io;

use xen_ioring::SharedMem;
use xen_platform::{DomId, GrantRef, Grants, MappedPages, PAGE_SIZE};

use crate::abi::MAX_SEGMENTS;
use crate::backend::persistent::{GrantCache, IDLE_REQUESTS, MAX_PERSISTENT_GRANTS};
use crate::request::Segment;

/// One device's way of mapping data pages.
#[derive(Debug)]
pub(crate) struct DataPages {
    frontend: DomId,
    /// The persistently mapped pages, when both ends offered
    /// `feature-persistent`.
    cache: Option<GrantCache<MappedPages>>,
}

/// Where one segment's page is mapped.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In the cache, under its reference.
    Cached(GrantRef),
    /// The nth page of the request's own mapping.
    Once(usize),
}

/// A request's pages, mapped: the cached ones are borrowed from the
/// cache, the others unmapped when this is dropped.
#[derive(Debug)]
pub(crate) struct Mapped<'a> {
    cache: Option<&'a GrantCache<MappedPages>>,
    once: Option<MappedPages>,
    places: [Place; MAX_SEGMENTS],
}

impl DataPages {
    /// Pages of domain `frontend`, kept mapped if `persistent`.
    pub(crate) fn new(frontend: DomId, persistent: bool) -> DataPages {
        let cache = persistent.then(|| GrantCache::new(MAX_PERSISTENT_GRANTS, IDLE_REQUESTS));
        DataPages { frontend, cache }
    }

    /// Pages kept mapped now (0 without persistent grants).
    pub(crate) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, GrantCache::len)
    }

    /// Maps the pages of `segments` (at most [`MAX_SEGMENTS`]), writable
    /// if `writable` (the request writes them: a disk read). A reference
    /// the frontend did not grant (or granted read-only, for a `writable`
    /// request) fails here.
    pub(crate) fn map(
        &mut self,
        grants: &mut dyn Grants,
        segments: &[Segment],
        writable: bool,
    ) -> io::Result<Mapped<'_>> {
        let mut places = [Place::Once(0); MAX_SEGMENTS];
        let mut once_refs: Vec<GrantRef> = Vec::with_capacity(segments.len());
        match self.cache.as_mut() {
            None => {
                for (place, seg) in places.iter_mut().zip(segments) {
                    *place = Place::Once(once_refs.len());
                    once_refs.push(seg.gref);
                }
            }
            Some(cache) => {
                cache.begin_request();
                for (place, seg) in places.iter_mut().zip(segments) {
                    *place = if cache_page(cache, grants, self.frontend, seg.gref) {
                        Place::Cached(seg.gref)
                    } else {
                        once_refs.push(seg.gref);
                        Place::Once(once_refs.len() - 1)
                    };
                }
            }
        }
        let once =
            if once_refs.is_empty() { None } else { Some(grants.map_grants(self.frontend, &once_refs, writable)?) };
        Ok(Mapped { cache: self.cache.as_ref(), once, places })
    }
}

/// Whether `gref`'s page is in the cache, found or mapped now. Cached
/// pages are mapped read-write (blkif.h's note 8: a frontend with the
/// feature grants them so); a page that fails that (granted read-only,
/// or not granted) is left to the request's own mapping, which maps it
/// with the access the request needs, or fails it.
fn cache_page(cache: &mut GrantCache<MappedPages>, grants: &mut dyn Grants, frontend: DomId, gref: GrantRef) -> bool {
    if cache.get(gref).is_some() {
        return true;
    }
    if !cache.make_room() {
        return false;
    }
    match grants.map_grants(frontend, &[gref], true) {
        Ok(page) => {
            cache.insert(gref, page);
            true
        }
        Err(err) => {
            tracing::debug!(gref, %err, "not kept mapped: mapped for its request");
            false
        }
    }
}

impl Mapped<'_> {
    /// Segment `i`'s page: its memory and the page's offset in it.
    pub(crate) fn page(&self, i: usize) -> (SharedMem<'_>, usize) {
        match self.places[i] {
            Place::Cached(gref) => {
                // Placed in the cache by `map`, and the cache is borrowed
                // since: it is there.
                let page = self.cache.and_then(|c| c.peek(gref)).expect("a page placed in the cache");
                (page.shared_mem(), 0)
            }
            Place::Once(n) => {
                let once = self.once.as_ref().expect("the request's own mapping, made for its pages");
                (once.shared_mem(), n * PAGE_SIZE)
            }
        }
    }
}
