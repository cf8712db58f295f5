//! The request a frontend puts in a ring slot: `struct blkif_request`
//! (read, write, barrier, flush), `struct blkif_request_discard` and
//! `struct blkif_request_indirect`, which share the slot and are told
//! apart by the `operation` byte, as blkback's `blkif_get_x86_64_req`
//! does.
//!
//! Decoding never fails: a hostile frontend's bytes become some
//! request, and [`crate::validate`] decides what it may do.

use xen_ioring::Message;

use crate::abi::{MAX_SEGMENTS, OP_DISCARD, OP_INDIRECT};
use crate::bytes::{get_u16, get_u32, get_u64, get_u8, put};

/// `sizeof(struct blkif_request)` on x86_64: the ring slot.
pub const REQUEST_SIZE: usize = 112;
/// `sizeof(struct blkif_request_discard)` on x86_64.
pub const DISCARD_SIZE: usize = 32;
/// `sizeof(struct blkif_request_indirect)` on x86_64.
pub const INDIRECT_SIZE: usize = 64;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const MAX_INDIRECT_PAGES: usize = 8;

/// Offsets of `struct blkif_request` (checked against the header by
/// `tests/c_layout.rs`).
mod rw {
    pub const OPERATION: usize = 0;
    pub const NR_SEGMENTS: usize = 1;
    pub const HANDLE: usize = 2;
    pub const ID: usize = 8;
    pub const SECTOR_NUMBER: usize = 16;
    pub const SEG: usize = 24;
    /// `sizeof(struct blkif_request_segment)`: gref, first, last, 2 bytes pad.
    pub const SEG_SIZE: usize = 8;
    pub const SEG_FIRST: usize = 4;
    pub const SEG_LAST: usize = 5;
}

/// Offsets of `struct blkif_request_discard`.
mod discard {
    pub const FLAG: usize = 1;
    pub const HANDLE: usize = 2;
    pub const ID: usize = 8;
    pub const SECTOR_NUMBER: usize = 16;
    pub const NR_SECTORS: usize = 24;
}

/// Offsets of `struct blkif_request_indirect`.
mod indirect {
    pub const INDIRECT_OP: usize = 1;
    pub const NR_SEGMENTS: usize = 2;
    pub const ID: usize = 8;
    pub const SECTOR_NUMBER: usize = 16;
    pub const HANDLE: usize = 24;
    pub const GREFS: usize = 28;
}

/// One `struct blkif_request_segment`: sectors `first_sect ..= last_sect`
/// of the page granted as `gref`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// The grant reference of the data page.
    pub gref: u32,
    /// First 512-byte sector of the page to transfer (inclusive).
    pub first_sect: u8,
    /// Last sector of the page to transfer (inclusive).
    pub last_sect: u8,
}

/// `struct blkif_request`: read, write, write barrier, flush, or an
/// operation this crate does not know (kept, so it can be answered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Segments in use, as the frontend claims (not yet checked).
    pub nr_segments: u8,
    /// The virtual device (`blkif_vdev_t`); blkback ignores it.
    pub handle: u16,
    /// The frontend's tag, echoed in the response.
    pub id: u64,
    /// First 512-byte sector on the disk.
    pub sector_number: u64,
    /// All eleven slots; only the first `nr_segments` mean anything.
    pub segments: [Segment; MAX_SEGMENTS],
}

/// `struct blkif_request_discard`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscardRequest {
    /// `BLKIF_DISCARD_SECURE` or 0.
    pub flag: u8,
    /// The virtual device.
    pub handle: u16,
    /// The frontend's tag.
    pub id: u64,
    /// First sector to discard.
    pub sector_number: u64,
    /// Sectors to discard.
    pub nr_sectors: u64,
}

/// `struct blkif_request_indirect`: decoded so that it can be answered
/// (with `EOPNOTSUPP`: the backend does not offer
/// `feature-max-indirect-segments`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndirectRequest {
    /// The operation the segments are for (`BLKIF_OP_READ`/`WRITE`).
    pub indirect_op: u8,
    /// Segments listed in the indirect pages.
    pub nr_segments: u16,
    /// The frontend's tag.
    pub id: u64,
    /// First sector.
    pub sector_number: u64,
    /// The virtual device.
    pub handle: u16,
    /// Grant references of the pages that list the segments.
    pub indirect_grefs: [u32; MAX_INDIRECT_PAGES],
}

/// Whatever a ring slot holds, by its `operation` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `struct blkif_request` (every operation but discard and indirect).
    Segments(SegmentRequest),
    /// `BLKIF_OP_DISCARD`.
    Discard(DiscardRequest),
    /// `BLKIF_OP_INDIRECT`.
    Indirect(IndirectRequest),
}

impl Request {
    /// The frontend's tag, echoed in the response.
    pub fn id(&self) -> u64 {
        match self {
            Request::Segments(r) => r.id,
            Request::Discard(r) => r.id,
            Request::Indirect(r) => r.id,
        }
    }

    /// The `operation` byte of the slot.
    pub fn operation(&self) -> u8 {
        match self {
            Request::Segments(r) => r.operation,
            Request::Discard(_) => OP_DISCARD,
            Request::Indirect(_) => OP_INDIRECT,
        }
    }

    /// The `operation` its response carries: the slot's, except for an
    /// indirect request, whose response carries its `indirect_op`, as
    /// Linux's blkback answers and its blkfront checks (a response whose
    /// operation is not the one it expects disables the disk).
    pub fn response_operation(&self) -> u8 {
        match self {
            Request::Indirect(r) => r.indirect_op,
            other => other.operation(),
        }
    }
}

impl Message for Request {
    const SIZE: usize = REQUEST_SIZE;
    const ALIGN: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out.fill(0);
        match self {
            Request::Segments(r) => {
                put(out, rw::OPERATION, &[r.operation, r.nr_segments]);
                put(out, rw::HANDLE, &r.handle.to_ne_bytes());
                put(out, rw::ID, &r.id.to_ne_bytes());
                put(out, rw::SECTOR_NUMBER, &r.sector_number.to_ne_bytes());
                for (i, seg) in r.segments.iter().enumerate() {
                    let at = rw::SEG + i * rw::SEG_SIZE;
                    put(out, at, &seg.gref.to_ne_bytes());
                    put(out, at + rw::SEG_FIRST, &[seg.first_sect, seg.last_sect]);
                }
            }
            Request::Discard(r) => {
                put(out, rw::OPERATION, &[OP_DISCARD, r.flag]);
                put(out, discard::HANDLE, &r.handle.to_ne_bytes());
                put(out, discard::ID, &r.id.to_ne_bytes());
                put(out, discard::SECTOR_NUMBER, &r.sector_number.to_ne_bytes());
                put(out, discard::NR_SECTORS, &r.nr_sectors.to_ne_bytes());
            }
            Request::Indirect(r) => {
                put(out, rw::OPERATION, &[OP_INDIRECT, r.indirect_op]);
                put(out, indirect::NR_SEGMENTS, &r.nr_segments.to_ne_bytes());
                put(out, indirect::ID, &r.id.to_ne_bytes());
                put(out, indirect::SECTOR_NUMBER, &r.sector_number.to_ne_bytes());
                put(out, indirect::HANDLE, &r.handle.to_ne_bytes());
                for (i, gref) in r.indirect_grefs.iter().enumerate() {
                    put(out, indirect::GREFS + 4 * i, &gref.to_ne_bytes());
                }
            }
        }
    }

    fn decode(bytes: &[u8]) -> Request {
        match get_u8(bytes, rw::OPERATION) {
            OP_DISCARD => Request::Discard(DiscardRequest {
                flag: get_u8(bytes, discard::FLAG),
                handle: get_u16(bytes, discard::HANDLE),
                id: get_u64(bytes, discard::ID),
                sector_number: get_u64(bytes, discard::SECTOR_NUMBER),
                nr_sectors: get_u64(bytes, discard::NR_SECTORS),
            }),
            OP_INDIRECT => Request::Indirect(IndirectRequest {
                indirect_op: get_u8(bytes, indirect::INDIRECT_OP),
                nr_segments: get_u16(bytes, indirect::NR_SEGMENTS),
                id: get_u64(bytes, indirect::ID),
                sector_number: get_u64(bytes, indirect::SECTOR_NUMBER),
                handle: get_u16(bytes, indirect::HANDLE),
                indirect_grefs: std::array::from_fn(|i| get_u32(bytes, indirect::GREFS + 4 * i)),
            }),
            operation => Request::Segments(SegmentRequest {
                operation,
                nr_segments: get_u8(bytes, rw::NR_SEGMENTS),
                handle: get_u16(bytes, rw::HANDLE),
                id: get_u64(bytes, rw::ID),
                sector_number: get_u64(bytes, rw::SECTOR_NUMBER),
                segments: std::array::from_fn(|i| {
                    let at = rw::SEG + i * rw::SEG_SIZE;
                    Segment {
                        gref: get_u32(bytes, at),
                        first_sect: get_u8(bytes, at + rw::SEG_FIRST),
                        last_sect: get_u8(bytes, at + rw::SEG_LAST),
                    }
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::OP_WRITE;

    fn round_trip(request: Request) -> Request {
        let mut bytes = [0xaau8; REQUEST_SIZE];
        request.encode(&mut bytes);
        Request::decode(&bytes)
    }

    #[test]
    fn every_kind_of_request_round_trips() {
        let mut rw =
            SegmentRequest { operation: OP_WRITE, nr_segments: 2, handle: 51712, id: u64::MAX, ..Default::default() };
        rw.sector_number = 1 << 40;
        rw.segments[1] = Segment { gref: 0xdead_beef, first_sect: 3, last_sect: 7 };
        let discard = DiscardRequest { flag: 1, handle: 7, id: 9, sector_number: 100, nr_sectors: 1 << 33 };
        let indirect = IndirectRequest {
            indirect_op: 1,
            nr_segments: 300,
            id: 5,
            sector_number: 8,
            handle: 2,
            indirect_grefs: [4; 8],
        };
        for request in [Request::Segments(rw), Request::Discard(discard), Request::Indirect(indirect)] {
            assert_eq!(round_trip(request), request);
        }
    }

    #[test]
    fn an_indirect_request_is_answered_with_its_indirect_op() {
        let indirect = Request::Indirect(IndirectRequest { indirect_op: OP_WRITE, ..Default::default() });
        assert_eq!((indirect.operation(), indirect.response_operation()), (OP_INDIRECT, OP_WRITE));
        let discard = Request::Discard(DiscardRequest::default());
        assert_eq!(discard.response_operation(), OP_DISCARD);
        let rw = Request::Segments(SegmentRequest { operation: 200, ..Default::default() });
        assert_eq!(rw.response_operation(), 200, "an unknown operation is echoed");
    }

    #[test]
    fn any_bytes_decode_to_some_request() {
        for fill in [0u8, 5, 6, 0xff] {
            let request = Request::decode(&[fill; REQUEST_SIZE]);
            assert_eq!(request.operation(), fill);
        }
    }
}
