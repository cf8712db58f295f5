//! Raw access to the shared page: with `mapped.rs` (which ties a page to
//! the mapping that backs it), the only `unsafe` code of the crate.
//!
//! The page is memory shared with an untrusted peer that may write any byte
//! at any time. So no Rust reference (`&`/`&mut`) to the page or to its data
//! arrays is ever created; every access is an atomic operation on a location
//! reached through a raw pointer:
//!
//! - the seven 32-bit fields are `AtomicU32`s (they are 4-byte aligned, the
//!   page being page-aligned), loaded and stored with the ordering the
//!   caller in [`crate::ring`] chooses and documents;
//! - data bytes are copied one `AtomicU8` at a time with `Relaxed`
//!   ordering. The ordering of the data against the indices comes from the
//!   index operations (acquire/release), not from the byte accesses. Using
//!   atomics even for the data means a hostile peer scribbling on bytes we
//!   are copying is a benign race (we copy garbage, which the protocol layer
//!   rejects), never undefined behaviour.

use core::marker::PhantomData;
use core::ptr::NonNull;
pub(crate) use core::sync::atomic::fence;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::layout::{Field, Queue, PAGE_SIZE, RING_SIZE};

/// A view of one shared ring page.
///
/// Cheap to copy; both ends of a ring (or, in tests, both ends in one
/// process) may hold a view of the same page. All accesses are atomic, so a
/// `RingPage` may be sent to and shared between threads.
#[derive(Debug, Clone, Copy)]
pub struct RingPage<'a> {
    base: NonNull<u8>,
    _memory: PhantomData<&'a [AtomicU8]>,
}

// SAFETY: a RingPage is a pointer to memory that is only ever accessed
// through atomic operations (see the module docs), so using it from several
// threads at once is no different from sharing a `&[AtomicU8]`, which is
// Send and Sync.
unsafe impl Send for RingPage<'_> {}
// SAFETY: as for Send above: all access through a RingPage is atomic.
unsafe impl Sync for RingPage<'_> {}

impl<'a> RingPage<'a> {
    /// A view of the page at `base`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that, for all of `'a`:
    ///
    /// - `base` points to [`PAGE_SIZE`] (4096) bytes of readable and
    ///   writable memory, and `base` is aligned to 4096 bytes (any alignment
    ///   of at least 4 would do for the atomics; the page of a real or hosted
    ///   ring is always page-aligned);
    /// - the memory stays mapped and is not freed or reused for anything
    ///   else;
    /// - nothing in this process creates Rust references to that memory or
    ///   accesses it non-atomically (the peer domain or process, outside the
    ///   Rust abstract machine, may write to it in any way it likes).
    pub unsafe fn new(base: NonNull<u8>) -> RingPage<'a> {
        debug_assert_eq!(base.as_ptr() as usize % PAGE_SIZE, 0, "ring page not page-aligned");
        RingPage { base, _memory: PhantomData }
    }

    /// The address of the page.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Reads a field with sequentially consistent ordering (for
    /// toolstacks initialising a page, diagnostics and tests; the ring
    /// ends use their own, documented orderings).
    pub fn field(&self, field: Field) -> u32 {
        self.load(field, Ordering::SeqCst)
    }

    /// Writes a field with sequentially consistent ordering (for
    /// toolstacks initialising a page and for tests that play a hostile
    /// peer).
    pub fn set_field(&self, field: Field, value: u32) {
        self.store(field, value, Ordering::SeqCst);
    }

    fn index(&self, field: Field) -> &'a AtomicU32 {
        // SAFETY: by the contract of `new`, the page is 4096 valid bytes for
        // 'a, aligned to at least 4; `field.offset()` is a multiple of 4 and
        // at most 2072, so the 4 bytes at base + offset are in bounds and
        // aligned for an AtomicU32. All accesses to them are atomic (this
        // module is the only way in, and the peer is outside the abstract
        // machine), which is what `AtomicU32::from_ptr` requires.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(field.offset()).cast::<u32>()) }
    }

    fn byte(&self, offset: usize) -> &'a AtomicU8 {
        assert!(offset < PAGE_SIZE);
        // SAFETY: `offset` is in bounds of the 4096-byte page (asserted),
        // which is valid for 'a by the contract of `new`; AtomicU8 needs no
        // alignment; every access to the page is atomic.
        unsafe { AtomicU8::from_ptr(self.base.as_ptr().add(offset)) }
    }

    pub(crate) fn load(&self, field: Field, order: Ordering) -> u32 {
        self.index(field).load(order)
    }

    pub(crate) fn store(&self, field: Field, value: u32, order: Ordering) {
        self.index(field).store(value, order);
    }

    /// Copies `dst.len()` bytes of `queue` starting at `offset` (which, with
    /// the length, must stay within the queue: the caller splits at the
    /// wrap).
    pub(crate) fn read_data(&self, queue: Queue, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= RING_SIZE);
        let start = queue.data_offset() + offset;
        for (i, out) in dst.iter_mut().enumerate() {
            *out = self.byte(start + i).load(Ordering::Relaxed);
        }
    }

    /// Copies `src` into `queue` starting at `offset` (within the queue, as
    /// for [`RingPage::read_data`]).
    pub(crate) fn write_data(&self, queue: Queue, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= RING_SIZE);
        let start = queue.data_offset() + offset;
        for (i, &b) in src.iter().enumerate() {
            self.byte(start + i).store(b, Ordering::Relaxed);
        }
    }
}

/// A zeroed, page-aligned page on the heap: the in-memory twin of a page
/// shared with another domain or process, for hosted setups and tests.
#[derive(Debug)]
pub struct OwnedPage {
    base: NonNull<u8>,
}

// SAFETY: OwnedPage owns its allocation and only hands out RingPage views,
// through which every access is atomic; freeing happens in Drop, which needs
// exclusive ownership.
unsafe impl Send for OwnedPage {}
// SAFETY: shared access goes only through RingPage (all atomic).
unsafe impl Sync for OwnedPage {}

impl OwnedPage {
    fn layout() -> std::alloc::Layout {
        match std::alloc::Layout::from_size_align(PAGE_SIZE, PAGE_SIZE) {
            Ok(layout) => layout,
            Err(_) => unreachable!("4096 is a power of two"),
        }
    }

    /// A new page, all zero (every index 0, connected, no error, no
    /// features).
    pub fn new() -> OwnedPage {
        let layout = OwnedPage::layout();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(base) => OwnedPage { base },
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    /// A view of the page, valid while the page lives.
    pub fn page(&self) -> RingPage<'_> {
        // SAFETY: `base` is a live 4096-byte, 4096-aligned allocation that
        // lives as long as the borrow of self, and OwnedPage never touches
        // it except through RingPage views (all atomic) and dealloc in Drop,
        // which cannot run while the view's borrow is alive.
        unsafe { RingPage::new(self.base) }
    }
}

impl Default for OwnedPage {
    fn default() -> Self {
        OwnedPage::new()
    }
}

impl Drop for OwnedPage {
    fn drop(&mut self) {
        // SAFETY: `base` came from alloc_zeroed with this same layout and
        // is freed exactly once; no view outlives `self` (they borrow it).
        unsafe { std::alloc::dealloc(self.base.as_ptr(), OwnedPage::layout()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_page_is_zeroed_and_aligned() {
        let owned = OwnedPage::new();
        let page = owned.page();
        assert_eq!(page.as_ptr() as usize % PAGE_SIZE, 0);
        for f in Field::ALL {
            assert_eq!(page.field(f), 0);
        }
        let mut buf = [1u8; RING_SIZE];
        page.read_data(Queue::Rsp, 0, &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn fields_land_at_their_offsets() {
        let owned = OwnedPage::new();
        let page = owned.page();
        page.set_field(Field::Connection, 0x0102_0304);
        let mut raw = [0u8; 4];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = page.byte(Field::Connection.offset() + i).load(Ordering::SeqCst);
        }
        assert_eq!(u32::from_ne_bytes(raw), 0x0102_0304);
    }
}
