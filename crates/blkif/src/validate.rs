//! What a backend may do with a request from a frontend it does not
//! trust: every field is checked against the protocol and the disk, and
//! the answer is a [`Plan`] to carry out or a [`Refusal`] to respond
//! with. Pure: no grant is mapped and no byte read here. Whether the
//! grant references are the frontend's own is learnt when mapping them
//! (a reference it did not grant fails to map and is refused then).
//!
//! The rules, after blkback's `dispatch_rw_block_io` and
//! `dispatch_discard_io`:
//!
//! | request | refused with `BLKIF_RSP_ERROR` when | else |
//! |---|---|---|
//! | read, write | `nr_segments` not in 1..=11; a segment with `first_sect > last_sect` or `last_sect > 7`; the sectors run past the disk (or overflow); a write to a read-only disk | [`Plan::Read`], [`Plan::Write`] |
//! | write barrier | as write, but 0 segments is a flush alone | write then flush |
//! | flush | as write (a flush may carry data, blkfront's FUA writes) | [`Plan::Flush`] or write then flush |
//! | discard | the range runs past the disk; a read-only disk. `BLKIF_RSP_EOPNOTSUPP` when discard is not offered, or for a secure discard (`discard-secure` is not offered; Linux's blkback answers the same) | [`Plan::Discard`] |
//! | indirect, unknown operation | always `BLKIF_RSP_EOPNOTSUPP` (indirect segments are not offered) | |

use crate::abi::{
    DISCARD_SECURE, MAX_SEGMENTS, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, OP_WRITE_BARRIER, RSP_EOPNOTSUPP, RSP_ERROR,
    SECTORS_PER_PAGE,
};
use crate::request::{DiscardRequest, Request, Segment, SegmentRequest};

/// What the backend serves: the facts the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// The disk's size in 512-byte sectors.
    pub sectors: u64,
    /// Whether writes and discards are refused.
    pub readonly: bool,
    /// Whether `feature-discard` is offered.
    pub discard: bool,
}

/// The checked segments of a request, in order, contiguous on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    list: [Segment; MAX_SEGMENTS],
    len: usize,
}

impl Segments {
    /// The segments in use.
    pub fn as_slice(&self) -> &[Segment] {
        &self.list[..self.len]
    }

    /// Sectors they cover in all.
    pub fn sectors(&self) -> u64 {
        self.as_slice().iter().map(|s| u64::from(s.last_sect - s.first_sect) + 1).sum()
    }
}

/// What to do for a request that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Read the disk from `sector` into the segments.
    Read {
        /// First sector.
        sector: u64,
        /// Where the data goes.
        segments: Segments,
    },
    /// Write the segments to the disk from `sector`, then flush if
    /// `flush` (a barrier, or a flush carrying data).
    Write {
        /// First sector.
        sector: u64,
        /// Where the data comes from.
        segments: Segments,
        /// Whether to flush after writing.
        flush: bool,
    },
    /// Make completed writes durable.
    Flush,
    /// Punch `count` sectors from `sector` out of the image.
    Discard {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u64,
    },
}

/// Why a request is answered without being carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`.
    pub status: i16,
    /// What was wrong, for the log.
    pub reason: &'static str,
}

const fn error(reason: &'static str) -> Refusal {
    Refusal { status: RSP_ERROR, reason }
}

const fn unsupported(reason: &'static str) -> Refusal {
    Refusal { status: RSP_EOPNOTSUPP, reason }
}

/// Checks `request` against the protocol and `disk`.
pub fn check(request: &Request, disk: &Geometry) -> Result<Plan, Refusal> {
    match request {
        Request::Segments(r) => check_segments(r, disk),
        Request::Discard(r) => check_discard(r, disk),
        Request::Indirect(_) => Err(unsupported("indirect requests are not offered")),
    }
}

fn check_segments(r: &SegmentRequest, disk: &Geometry) -> Result<Plan, Refusal> {
    let (writes, flush, min_segments) = match r.operation {
        OP_READ => (false, false, 1),
        OP_WRITE => (true, false, 1),
        OP_WRITE_BARRIER | OP_FLUSH_DISKCACHE => (true, true, 0),
        _ => return Err(unsupported("unknown operation")),
    };
    let count = usize::from(r.nr_segments);
    if count < min_segments || count > MAX_SEGMENTS {
        return Err(error("nr_segments out of range"));
    }
    let segments = Segments { list: r.segments, len: count };
    if segments.as_slice().iter().any(|s| s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE) {
        return Err(error("segment sectors out of the page"));
    }
    if writes && count > 0 && disk.readonly {
        return Err(error("write to a read-only disk"));
    }
    within(r.sector_number, segments.sectors(), disk)?;
    Ok(match (writes, count) {
        (false, _) => Plan::Read { sector: r.sector_number, segments },
        (true, 0) => Plan::Flush,
        (true, _) => Plan::Write { sector: r.sector_number, segments, flush },
    })
}

fn check_discard(r: &DiscardRequest, disk: &Geometry) -> Result<Plan, Refusal> {
    if !disk.discard {
        return Err(unsupported("discard is not offered"));
    }
    if r.flag & DISCARD_SECURE != 0 {
        return Err(unsupported("secure discard is not offered"));
    }
    if disk.readonly {
        return Err(error("discard on a read-only disk"));
    }
    within(r.sector_number, r.nr_sectors, disk)?;
    Ok(Plan::Discard { sector: r.sector_number, count: r.nr_sectors })
}

/// `sector .. sector + count` lies on the disk, without overflow.
fn within(sector: u64, count: u64, disk: &Geometry) -> Result<(), Refusal> {
    match sector.checked_add(count) {
        Some(end) if end <= disk.sectors => Ok(()),
        _ => Err(error("sectors beyond the end of the disk")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{OP_DISCARD, OP_INDIRECT, RSP_OKAY};
    use crate::request::IndirectRequest;

    const DISK: Geometry = Geometry { sectors: 1024, readonly: false, discard: true };
    const READONLY: Geometry = Geometry { sectors: 1024, readonly: true, discard: false };

    fn rw(operation: u8, sector: u64, segs: &[(u8, u8)]) -> Request {
        let mut r = SegmentRequest {
            operation,
            nr_segments: u8::try_from(segs.len()).unwrap(),
            sector_number: sector,
            ..Default::default()
        };
        for (slot, &(first_sect, last_sect)) in r.segments.iter_mut().zip(segs) {
            *slot = Segment { gref: 1, first_sect, last_sect };
        }
        Request::Segments(r)
    }

    fn with_nr(mut request: Request, nr: u8) -> Request {
        if let Request::Segments(r) = &mut request {
            r.nr_segments = nr;
        }
        request
    }

    fn discard(sector: u64, count: u64) -> Request {
        Request::Discard(DiscardRequest { sector_number: sector, nr_sectors: count, ..Default::default() })
    }

    fn secure_discard(sector: u64, count: u64) -> Request {
        Request::Discard(DiscardRequest {
            flag: DISCARD_SECURE,
            sector_number: sector,
            nr_sectors: count,
            ..Default::default()
        })
    }

    /// The status a request gets from the checks alone (OKAY if it passes).
    fn status(request: Request, disk: &Geometry) -> i16 {
        check(&request, disk).map_or_else(|r| r.status, |_| RSP_OKAY)
    }

    #[test]
    fn the_table_of_rules() {
        let full = [(0, 7); 11];
        let rows: &[(&str, Request, &Geometry, i16)] = &[
            ("read one sector", rw(OP_READ, 0, &[(0, 0)]), &DISK, RSP_OKAY),
            ("write eleven pages", rw(OP_WRITE, 0, &full), &DISK, RSP_OKAY),
            ("read to the last sector", rw(OP_READ, 1016, &[(0, 7)]), &DISK, RSP_OKAY),
            ("read past the end", rw(OP_READ, 1017, &[(0, 7)]), &DISK, RSP_ERROR),
            ("sector overflows", rw(OP_READ, u64::MAX, &[(0, 0)]), &DISK, RSP_ERROR),
            ("read with 0 segments", rw(OP_READ, 0, &[]), &DISK, RSP_ERROR),
            ("write with 0 segments", rw(OP_WRITE, 0, &[]), &DISK, RSP_ERROR),
            ("12 segments", with_nr(rw(OP_WRITE, 0, &full), 12), &DISK, RSP_ERROR),
            ("255 segments", with_nr(rw(OP_READ, 0, &full), 255), &DISK, RSP_ERROR),
            ("first after last", rw(OP_READ, 0, &[(3, 2)]), &DISK, RSP_ERROR),
            ("last_sect 8", rw(OP_READ, 0, &[(0, 8)]), &DISK, RSP_ERROR),
            ("write to read-only", rw(OP_WRITE, 0, &[(0, 0)]), &READONLY, RSP_ERROR),
            ("read from read-only", rw(OP_READ, 0, &[(0, 0)]), &READONLY, RSP_OKAY),
            ("flush alone", rw(OP_FLUSH_DISKCACHE, 0, &[]), &DISK, RSP_OKAY),
            ("flush alone on read-only", rw(OP_FLUSH_DISKCACHE, 0, &[]), &READONLY, RSP_OKAY),
            ("flush with data", rw(OP_FLUSH_DISKCACHE, 8, &[(0, 7)]), &DISK, RSP_OKAY),
            ("barrier", rw(OP_WRITE_BARRIER, 8, &[(0, 7)]), &DISK, RSP_OKAY),
            ("discard", discard(0, 1024), &DISK, RSP_OKAY),
            ("discard past the end", discard(1, 1024), &DISK, RSP_ERROR),
            ("discard overflows", discard(u64::MAX, 2), &DISK, RSP_ERROR),
            ("discard not offered", discard(0, 8), &READONLY, RSP_EOPNOTSUPP),
            ("secure discard", secure_discard(0, 8), &DISK, RSP_EOPNOTSUPP),
            ("indirect", Request::Indirect(IndirectRequest::default()), &DISK, RSP_EOPNOTSUPP),
            ("reserved operation 4", rw(4, 0, &[(0, 0)]), &DISK, RSP_EOPNOTSUPP),
            ("operation 200", rw(200, 0, &[(0, 0)]), &DISK, RSP_EOPNOTSUPP),
        ];
        for (name, request, disk, expected) in rows {
            assert_eq!(status(*request, disk), *expected, "{name}");
        }
        assert_eq!(Request::Indirect(IndirectRequest::default()).operation(), OP_INDIRECT);
        assert_eq!(discard(0, 0).operation(), OP_DISCARD);
    }

    #[test]
    fn segments_are_contiguous_and_counted_in_sectors() {
        let Ok(Plan::Read { sector, segments }) = check(&rw(OP_READ, 16, &[(2, 7), (0, 7), (0, 0)]), &DISK) else {
            panic!("a valid read was refused")
        };
        assert_eq!((sector, segments.sectors(), segments.as_slice().len()), (16, 15, 3));
    }

    #[test]
    fn a_flush_with_data_writes_then_flushes() {
        let plan = check(&rw(OP_FLUSH_DISKCACHE, 8, &[(0, 7)]), &DISK).unwrap();
        assert!(matches!(plan, Plan::Write { sector: 8, flush: true, .. }));
        assert_eq!(check(&rw(OP_FLUSH_DISKCACHE, 0, &[]), &DISK).unwrap(), Plan::Flush);
    }
}
