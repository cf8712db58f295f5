//! The ring page: a [`SharedMem`] view of one 4 KiB page, with the page's
//! fields and queues named.
//!
//! The careful part, access to memory shared with an untrusted peer (no
//! Rust reference into it, every access an atomic through a raw pointer,
//! data bytes copied as `Relaxed` `AtomicU8`s, bounds checked), is
//! [`xen_shared_mem`]'s, shared with the other Xen rings. What is left here
//! is the layout: which offset each [`Field`] and each queue has. Under
//! `--cfg loom` the same code runs over that crate's loom twin.
//!
//! The only `unsafe` block is [`RingPage::new`]'s, which passes the
//! caller's promise about the memory on to [`SharedMem::new`].

#[cfg(not(loom))]
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

pub(crate) use xen_shared_mem::fence;
use xen_shared_mem::{OwnedMem, SharedMem};

#[cfg(not(loom))]
use crate::layout::PAGE_SIZE;
use crate::layout::{Field, Queue, RING_SIZE};

/// A view of one shared ring page.
///
/// Cheap to copy; both ends of a ring (or, in tests, both ends in one
/// process) may hold a view of the same page. All accesses are atomic, so a
/// `RingPage` may be sent to and shared between threads.
#[derive(Debug, Clone, Copy)]
pub struct RingPage<'a> {
    mem: SharedMem<'a>,
}

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
    #[cfg(not(loom))]
    pub unsafe fn new(base: NonNull<u8>) -> RingPage<'a> {
        debug_assert_eq!(base.as_ptr().addr() % PAGE_SIZE, 0, "ring page not page-aligned");
        // SAFETY: the caller's guarantees above are exactly SharedMem::new's
        // for PAGE_SIZE bytes.
        RingPage { mem: unsafe { SharedMem::new(base, PAGE_SIZE) } }
    }

    /// The address of the page.
    #[cfg(not(loom))]
    pub fn as_ptr(&self) -> *mut u8 {
        self.mem.as_ptr()
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

    pub(crate) fn load(&self, field: Field, order: Ordering) -> u32 {
        self.mem.load_u32(field.offset(), order)
    }

    pub(crate) fn store(&self, field: Field, value: u32, order: Ordering) {
        self.mem.store_u32(field.offset(), value, order);
    }

    /// Copies `dst.len()` bytes of `queue` starting at `offset` (which, with
    /// the length, must stay within the queue: the caller splits at the
    /// wrap).
    pub(crate) fn read_data(&self, queue: Queue, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= RING_SIZE);
        self.mem.read_bytes(queue.data_offset() + offset, dst);
    }

    /// Copies `src` into `queue` starting at `offset` (within the queue, as
    /// for [`RingPage::read_data`]).
    pub(crate) fn write_data(&self, queue: Queue, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= RING_SIZE);
        self.mem.write_bytes(queue.data_offset() + offset, src);
    }
}

/// A zeroed, page-aligned page on the heap: the in-memory twin of a page
/// shared with another domain or process, for hosted setups and tests
/// (under `--cfg loom`, a modelled page: create it inside `loom::model`).
#[derive(Debug)]
pub struct OwnedPage {
    memory: OwnedMem,
}

impl OwnedPage {
    /// A new page, all zero (every index 0, connected, no error, no
    /// features).
    pub fn new() -> OwnedPage {
        OwnedPage { memory: OwnedMem::new(crate::layout::PAGE_SIZE) }
    }

    /// A view of the page, valid while the page lives.
    pub fn page(&self) -> RingPage<'_> {
        RingPage { mem: self.memory.mem() }
    }
}

impl Default for OwnedPage {
    fn default() -> Self {
        OwnedPage::new()
    }
}

#[cfg(all(test, not(loom)))]
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
        page.mem.read_bytes(Field::Connection.offset(), &mut raw);
        assert_eq!(u32::from_ne_bytes(raw), 0x0102_0304);
    }
}
