//! A zeroed, page-aligned heap buffer: the in-memory twin of memory shared
//! with another domain or process, for hosted setups and tests.

use core::ptr::NonNull;
use std::alloc::Layout;

use crate::{SharedMem, PAGE_SIZE};

/// A zeroed, page-aligned buffer on the heap, accessed only through
/// [`SharedMem`] views.
#[derive(Debug)]
pub struct OwnedMem {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: OwnedMem owns its allocation and only hands out SharedMem views,
// through which every access is atomic; freeing happens in Drop, which
// needs exclusive ownership.
unsafe impl Send for OwnedMem {}
// SAFETY: shared access goes only through SharedMem views (all atomic).
unsafe impl Sync for OwnedMem {}

impl OwnedMem {
    fn layout(len: usize) -> Layout {
        match Layout::from_size_align(len, PAGE_SIZE) {
            Ok(layout) => layout,
            Err(_) => panic!("{len} bytes cannot be allocated page-aligned"),
        }
    }

    /// `len` zero bytes, aligned to [`PAGE_SIZE`].
    ///
    /// # Panics
    ///
    /// If `len` is zero or too large to allocate.
    pub fn new(len: usize) -> OwnedMem {
        assert!(len > 0, "an OwnedMem must not be empty");
        let layout = OwnedMem::layout(len);
        // SAFETY: the layout has a non-zero size (asserted).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(base) => OwnedMem { base, len },
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    /// `count` zeroed pages.
    pub fn pages(count: usize) -> OwnedMem {
        match count.checked_mul(PAGE_SIZE) {
            Some(len) => OwnedMem::new(len),
            None => panic!("{count} pages overflow the address space"),
        }
    }

    /// A view of the buffer, valid while it lives.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `base .. base + len` is a live, page-aligned allocation
        // that lives as long as the borrow of self; OwnedMem never touches
        // it except through SharedMem views (all atomic) and dealloc in
        // Drop, which cannot run while a view's borrow is alive.
        unsafe { SharedMem::new(self.base, self.len) }
    }

    /// The size of the buffer in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an `OwnedMem` is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for OwnedMem {
    fn drop(&mut self) {
        // SAFETY: `base` came from alloc_zeroed with this same layout and
        // is freed exactly once; no view outlives `self` (they borrow it).
        unsafe { std::alloc::dealloc(self.base.as_ptr(), OwnedMem::layout(self.len)) }
    }
}
