//! The shared ring as both ends see it: the four indices and the entries,
//! reached only through [`SharedMem`]'s atomic accessors.
//!
//! This module names places; it chooses no orderings. Each load and store
//! takes the ordering its caller in `front.rs` or `back.rs` documents.

#![forbid(unsafe_code)]

use xen_shared_mem::{Ordering, SharedMem};

use crate::layout::{Index, RingLayout, HEADER_SIZE, PAD_OFFSET, PAD_SIZE, PVT_OFFSET, PVT_SIZE};

/// A view of one shared ring with its geometry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedRing<'a> {
    mem: SharedMem<'a>,
    layout: RingLayout,
}

impl<'a> SharedRing<'a> {
    /// The ring in `mem`. The layout was computed from `mem.len()`, so
    /// every slot lies inside `mem`; `SharedMem` checks each access anyway.
    pub(crate) fn new(mem: SharedMem<'a>, layout: RingLayout) -> SharedRing<'a> {
        debug_assert!(layout.bytes_used() <= mem.len());
        SharedRing { mem, layout }
    }

    pub(crate) fn layout(&self) -> RingLayout {
        self.layout
    }

    pub(crate) fn load(&self, index: Index, order: Ordering) -> u32 {
        self.mem.load_u32(index.offset(), order)
    }

    pub(crate) fn store(&self, index: Index, value: u32, order: Ordering) {
        self.mem.store_u32(index.offset(), value, order);
    }

    /// Copies the first `dst.len()` bytes of the entry `index` names
    /// (masked) out of the ring.
    pub(crate) fn read_entry(&self, index: u32, dst: &mut [u8]) {
        assert!(dst.len() <= self.layout.entry_size());
        self.mem.read_bytes(self.layout.slot_offset(index), dst);
    }

    /// Copies `src` into the entry `index` names (masked).
    pub(crate) fn write_entry(&self, index: u32, src: &[u8]) {
        assert!(src.len() <= self.layout.entry_size());
        self.mem.write_bytes(self.layout.slot_offset(index), src);
    }
}

/// Initialises the shared ring in `mem` with every index at `start`
/// (`SHARED_RING_INIT`, which uses 0): both producer indices `start`, both
/// event indices `start + 1` (notify on the first message), `pvt` and
/// `__pad` zero. Only the front does this, before it advertises the ring;
/// the entries are left alone.
///
/// # Panics
///
/// If `mem` is shorter than the 64-byte header.
pub fn init_shared_ring(mem: SharedMem<'_>, start: u32) {
    assert!(mem.len() >= HEADER_SIZE, "shared ring memory shorter than its header");
    mem.fill(PVT_OFFSET, PVT_SIZE, 0);
    mem.fill(PAD_OFFSET, PAD_SIZE, 0);
    mem.store_u32(Index::ReqProd.offset(), start, Ordering::Relaxed);
    mem.store_u32(Index::RspProd.offset(), start, Ordering::Relaxed);
    mem.store_u32(Index::ReqEvent.offset(), start.wrapping_add(1), Ordering::Relaxed);
    // Release: whoever is handed the ring through a synchronising channel
    // (xenstore, a thread spawn) sees the whole header initialised.
    mem.store_u32(Index::RspEvent.offset(), start.wrapping_add(1), Ordering::Release);
}
