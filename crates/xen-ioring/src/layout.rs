//! The shared ring's layout, as `DEFINE_RING_TYPES` in `xen/io/ring.h`
//! lays out `struct <name>_sring`, and its size rules (`__RING_SIZE`).
//!
//! ```text
//! offset  0  req_prod   (front writes)
//!         4  req_event  (back writes: "notify me when req_prod passes this")
//!         8  rsp_prod   (back writes)
//!        12  rsp_event  (front writes)
//!        16  pvt        (4 bytes, per-protocol: netif's smartpoll_active ...)
//!        20  __pad      (44 bytes)
//!        64  ring[]     entries, each the union of a request and a response
//! ```

#![forbid(unsafe_code)]

use crate::error::LayoutError;
use crate::message::Message;

/// Size of a Xen page: a ring is `2^ring-page-order` of them.
pub const PAGE_SIZE: usize = xen_shared_mem::PAGE_SIZE;

/// Offset of the first entry: the four indices, `pvt` and `__pad`.
pub const HEADER_SIZE: usize = 64;
/// Offset of the per-protocol `pvt` union (4 bytes).
pub const PVT_OFFSET: usize = 16;
/// Size of the `pvt` union.
pub const PVT_SIZE: usize = 4;
/// Offset of `__pad`.
pub const PAD_OFFSET: usize = 20;
/// Size of `__pad`.
pub const PAD_SIZE: usize = 44;

/// The largest `ring-page-order` this crate accepts: Linux's
/// `XENBUS_MAX_RING_GRANT_ORDER` (16 pages), the most any Linux frontend or
/// backend offers. The order comes from the peer through xenstore, so it is
/// range checked before anything is sized from it.
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// One of the four 32-bit indices at the start of the shared ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// Requests produced; written by the front, offset 0.
    ReqProd,
    /// The back's "notify me when `req_prod` passes this"; offset 4.
    ReqEvent,
    /// Responses produced; written by the back, offset 8.
    RspProd,
    /// The front's "notify me when `rsp_prod` passes this"; offset 12.
    RspEvent,
}

impl Index {
    /// Every index, in memory order.
    pub const ALL: [Index; 4] = [Index::ReqProd, Index::ReqEvent, Index::RspProd, Index::RspEvent];

    /// Byte offset in the shared ring.
    pub const fn offset(self) -> usize {
        match self {
            Index::ReqProd => 0,
            Index::ReqEvent => 4,
            Index::RspProd => 8,
            Index::RspEvent => 12,
        }
    }
}

/// `__RD32`: `x` rounded down to a power of two (0 stays 0).
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// The size of one entry: `sizeof(union { Req req; Rsp rsp; })`, the larger
/// message rounded up to the larger alignment.
pub const fn entry_size<Req: Message, Rsp: Message>() -> usize {
    let size = if Req::SIZE > Rsp::SIZE { Req::SIZE } else { Rsp::SIZE };
    let align = if Req::ALIGN > Rsp::ALIGN { Req::ALIGN } else { Rsp::ALIGN };
    let align = if align == 0 { 1 } else { align };
    size.div_ceil(align) * align
}

/// The bytes of a ring of `2^order` pages.
pub fn ring_bytes(order: u32) -> Result<usize, LayoutError> {
    if order > MAX_RING_PAGE_ORDER {
        return Err(LayoutError::OrderTooLarge { order });
    }
    Ok(PAGE_SIZE << order)
}

/// The geometry of one ring: how many entries, how big each is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    entries: u32,
    entry_size: usize,
}

impl RingLayout {
    /// The ring in `bytes` of shared memory with entries of `entry_size`
    /// bytes: as many entries as fit after the header, rounded down to a
    /// power of two (`__RING_SIZE`), so that an index is masked, never
    /// divided, into a slot.
    pub fn new(bytes: usize, entry_size: usize) -> Result<RingLayout, LayoutError> {
        if entry_size == 0 {
            return Err(LayoutError::ZeroSizedEntry);
        }
        let fit = bytes.saturating_sub(HEADER_SIZE) / entry_size;
        // Beyond 2^31 entries the wrapping index arithmetic breaks; __RD32
        // works on 32 bits too.
        let entries = round_down_pow2(u32::try_from(fit).unwrap_or(u32::MAX));
        if entries == 0 {
            return Err(LayoutError::TooSmall { bytes, entry_size });
        }
        Ok(RingLayout { entries, entry_size })
    }

    /// The ring of `Req` and `Rsp` in `bytes` of shared memory.
    pub fn of<Req: Message, Rsp: Message>(bytes: usize) -> Result<RingLayout, LayoutError> {
        RingLayout::new(bytes, entry_size::<Req, Rsp>())
    }

    /// The number of entries (`RING_SIZE`), a power of two.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The size of one entry in bytes.
    pub fn entry_size(&self) -> usize {
        self.entry_size
    }

    /// The bytes the header and entries occupy (at most the memory's size).
    pub fn bytes_used(&self) -> usize {
        HEADER_SIZE + self.entries as usize * self.entry_size
    }

    /// The offset of the entry a free-running index names: the index is
    /// masked (`RING_GET_REQUEST`), so any value, including one a hostile
    /// peer wrote, lands on a slot inside the ring.
    pub fn slot_offset(&self, index: u32) -> usize {
        let slot = (index & (self.entries - 1)) as usize;
        HEADER_SIZE + slot * self.entry_size
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn round_down_pow2_matches_rd32() {
        let cases = [(0, 0), (1, 1), (2, 2), (3, 2), (36, 32), (72, 64), (145, 128), (u32::MAX, 1 << 31)];
        for (x, want) in cases {
            assert_eq!(round_down_pow2(x), want, "{x}");
        }
    }

    #[test]
    fn index_offsets_are_the_sring_fields() {
        let offsets: Vec<usize> = Index::ALL.iter().map(|i| i.offset()).collect();
        assert_eq!(offsets, [0, 4, 8, 12]);
        assert_eq!(PAD_OFFSET + PAD_SIZE, HEADER_SIZE);
        assert_eq!(PVT_OFFSET + PVT_SIZE, PAD_OFFSET);
    }

    #[test]
    fn slot_offset_masks_any_index_into_the_ring() {
        let layout = RingLayout::new(PAGE_SIZE, 112).unwrap();
        assert_eq!(layout.entries(), 32);
        for index in [0, 31, 32, u32::MAX, 0x8000_0000] {
            let offset = layout.slot_offset(index);
            assert!(offset >= HEADER_SIZE && offset + 112 <= layout.bytes_used());
        }
        assert_eq!(layout.slot_offset(33), HEADER_SIZE + 112);
    }

    #[test]
    fn memory_without_room_for_one_entry_is_refused() {
        assert_eq!(RingLayout::new(64 + 15, 16), Err(LayoutError::TooSmall { bytes: 79, entry_size: 16 }));
        assert_eq!(RingLayout::new(10, 4), Err(LayoutError::TooSmall { bytes: 10, entry_size: 4 }));
        assert_eq!(RingLayout::new(4096, 0), Err(LayoutError::ZeroSizedEntry));
    }

    #[test]
    fn ring_page_order_is_range_checked() {
        assert_eq!(ring_bytes(0), Ok(4096));
        assert_eq!(ring_bytes(4), Ok(65536));
        assert_eq!(ring_bytes(5), Err(LayoutError::OrderTooLarge { order: 5 }));
        assert_eq!(ring_bytes(u32::MAX), Err(LayoutError::OrderTooLarge { order: u32::MAX }));
    }
}
