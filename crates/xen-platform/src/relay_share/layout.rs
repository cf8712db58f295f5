//! The control page of a guest member of a relayed share: the words the
//! member and the service trade triggers in, and one request slot the
//! member asks the service through (registration, transfers, refresh).
//!
//! ```text
//! offset  size  field                                        written by
//! 0       4     pending: triggers raised in the member       service ORs, member swaps
//! 4       4     raised: triggers the member raises           member ORs, service swaps
//! 8       4     asked: counts the member's requests          member
//! 12      4     answered: the last request answered          service
//! 16      4     state: 0 member, 1 removed, 2 destroyed      service
//! 64      536   the request                                  member
//!   +0    4     op (1 refresh, 2 register, 3 transfer, 4 completed,
//!               5 unregister, 6 transfers: one segment each)
//!   +4    4     key
//!   +8    8     generation the member mapped
//!   +16   4     segments used (at most 16; 32 for op 6)
//!   +24   16×32 segments: offset (8), length (4), key for op 6 (4)
//! 1024  968   the answer                                     service
//!   +0    4     0, or the errno
//!   +4    4     members (at most 64)
//!   +8    8     value: the buffer registered, the bytes transferred
//!   +16   8     the share's generation
//!   +24   4     this member's index
//!   +28   4     completed buffers (at most 32)
//!   +32   4     results of op 6 (at most 32)
//!   +40   2×64  the members' domids
//!   +168  16×32 completed buffers: id (8), length (8)
//!   +680  8×32  results of op 6: bytes copied, or minus the errno
//! ```
//!
//! All little-endian (both ends are on one machine). The service copies
//! a request out of the page before it looks at it, so a member that
//! rewrites it meanwhile changes nothing but its own answer; the decoders
//! bound every count, and neither side trusts the other's.

use rustix::io::Errno;

use crate::share::{Completed, Segment, MAX_BUFFERS, MAX_MEMBERS, MAX_SEGMENTS, MAX_TRANSFER_BATCH};
use crate::DomId;

/// Triggers raised in the member.
pub(super) const PENDING: usize = 0;
/// Triggers the member raises in the others.
pub(super) const RAISED: usize = 4;
/// The member's request counter.
pub(super) const ASKED: usize = 8;
/// The service's: the counter of the last request it answered.
pub(super) const ANSWERED: usize = 12;
/// [`Standing`], as the service last wrote it.
pub(super) const STATE: usize = 16;
/// Where the request is.
pub(super) const REQUEST: usize = 64;
/// Its length.
pub(super) const REQUEST_LEN: usize = 24 + 16 * MAX_TRANSFER_BATCH;
/// Where the answer is.
pub(super) const ANSWER: usize = 1024;
/// Its length.
pub(super) const ANSWER_LEN: usize = RESULTS + 8 * MAX_TRANSFER_BATCH;
/// Where the answer's lists start.
const MEMBERS: usize = 40;
const COMPLETED: usize = MEMBERS + 2 * MAX_MEMBERS;
const RESULTS: usize = COMPLETED + 16 * MAX_BUFFERS;

const _: () = assert!(REQUEST + REQUEST_LEN <= ANSWER && ANSWER + ANSWER_LEN <= crate::PAGE_SIZE);

/// Where a member stands in its share, as the service says in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// A member.
    Member = 0,
    /// Removed: nothing it asks is answered.
    Removed = 1,
    /// The share is gone.
    Destroyed = 2,
}

impl Standing {
    pub(super) fn from_word(word: u32) -> Standing {
        match word {
            0 => Standing::Member,
            1 => Standing::Removed,
            _ => Standing::Destroyed,
        }
    }
}

/// What a member asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// The membership and this member's place in it.
    Refresh = 1,
    /// [`crate::share::Share::register`].
    Register = 2,
    /// [`crate::share::Share::transfer`].
    Transfer = 3,
    /// [`crate::share::Share::take_completed`].
    Completed = 4,
    /// [`crate::share::Share::unregister_all`].
    Unregister = 5,
    /// [`crate::share::Share::transfer_many`] of transfers of one
    /// segment each, checked against the generation once for all.
    TransferMany = 6,
}

/// A member's request, as the service reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub(super) op: Op,
    pub(super) key: u32,
    pub(super) generation: u64,
    pub(super) segments: Vec<Segment>,
    /// For [`Op::TransferMany`], each segment's key.
    pub(super) keys: Vec<u32>,
}

/// A count the slot bounds, as the page holds it.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from(u32_at(bytes, at)) | (u64::from(u32_at(bytes, at + 4)) << 32)
}

impl Request {
    /// The most segments `op` carries.
    fn room(op: Op) -> usize {
        if op == Op::TransferMany {
            MAX_TRANSFER_BATCH
        } else {
            MAX_SEGMENTS
        }
    }

    /// The request as the page holds it. `EINVAL` for more segments than
    /// the operation carries (the member's own mistake, before it asks).
    pub(super) fn encode(&self) -> Result<[u8; REQUEST_LEN], Errno> {
        if self.segments.len() > Request::room(self.op) {
            return Err(Errno::INVAL);
        }
        let mut bytes = [0u8; REQUEST_LEN];
        bytes[0..4].copy_from_slice(&(self.op as u32).to_le_bytes());
        bytes[4..8].copy_from_slice(&self.key.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.generation.to_le_bytes());
        bytes[16..20].copy_from_slice(&count(self.segments.len()).to_le_bytes());
        for (i, segment) in self.segments.iter().enumerate() {
            let at = 24 + 16 * i;
            bytes[at..at + 8].copy_from_slice(&segment.offset.to_le_bytes());
            bytes[at + 8..at + 12].copy_from_slice(&segment.len.to_le_bytes());
            bytes[at + 12..at + 16].copy_from_slice(&self.keys.get(i).copied().unwrap_or(0).to_le_bytes());
        }
        Ok(bytes)
    }

    /// Reads what a member wrote. `EINVAL` for an unknown operation or a
    /// segment count past what it carries; the segments themselves are
    /// checked against the share by whoever uses them.
    pub(super) fn decode(bytes: &[u8; REQUEST_LEN]) -> Result<Request, Errno> {
        let op = match u32_at(bytes, 0) {
            1 => Op::Refresh,
            2 => Op::Register,
            3 => Op::Transfer,
            4 => Op::Completed,
            5 => Op::Unregister,
            6 => Op::TransferMany,
            _ => return Err(Errno::INVAL),
        };
        let count = usize::try_from(u32_at(bytes, 16)).map_err(|_| Errno::INVAL)?;
        if count > Request::room(op) {
            return Err(Errno::INVAL);
        }
        let segments = (0..count)
            .map(|i| Segment { offset: u64_at(bytes, 24 + 16 * i), len: u32_at(bytes, 24 + 16 * i + 8) })
            .collect();
        let keys = if op == Op::TransferMany {
            (0..count).map(|i| u32_at(bytes, 24 + 16 * i + 12)).collect()
        } else {
            Vec::new()
        };
        Ok(Request { op, key: u32_at(bytes, 4), generation: u64_at(bytes, 8), segments, keys })
    }
}

/// The service's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Answer {
    /// 0, or what failed.
    pub(super) errno: i32,
    /// The buffer registered, or the bytes transferred.
    pub(super) value: u64,
    pub(super) generation: u64,
    /// The member's index in `members`.
    pub(super) me: u32,
    pub(super) members: Vec<DomId>,
    pub(super) completed: Vec<Completed>,
    /// Each transfer's bytes or errno ([`Op::TransferMany`]).
    pub(super) results: Vec<Result<usize, Errno>>,
}

impl Answer {
    /// A failure.
    pub(super) fn failed(errno: Errno) -> Answer {
        Answer { errno: errno.raw_os_error(), ..Answer::default() }
    }

    /// The answer as the page holds it (counts past the page's room are
    /// cut: the service never makes such an answer).
    pub(super) fn encode(&self) -> [u8; ANSWER_LEN] {
        let mut bytes = [0u8; ANSWER_LEN];
        let members = &self.members[..self.members.len().min(MAX_MEMBERS)];
        let completed = &self.completed[..self.completed.len().min(MAX_BUFFERS)];
        let results = &self.results[..self.results.len().min(MAX_TRANSFER_BATCH)];
        bytes[0..4].copy_from_slice(&self.errno.to_le_bytes());
        bytes[4..8].copy_from_slice(&count(members.len()).to_le_bytes());
        bytes[8..16].copy_from_slice(&self.value.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.generation.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.me.to_le_bytes());
        bytes[28..32].copy_from_slice(&count(completed.len()).to_le_bytes());
        bytes[32..36].copy_from_slice(&count(results.len()).to_le_bytes());
        for (i, domid) in members.iter().enumerate() {
            bytes[MEMBERS + 2 * i..MEMBERS + 2 * i + 2].copy_from_slice(&domid.to_le_bytes());
        }
        for (i, done) in completed.iter().enumerate() {
            let at = COMPLETED + 16 * i;
            bytes[at..at + 8].copy_from_slice(&done.buffer.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&(done.len as u64).to_le_bytes());
        }
        for (i, result) in results.iter().enumerate() {
            let value = match result {
                Ok(n) => i64::try_from(*n).unwrap_or(i64::MAX),
                Err(e) => -i64::from(e.raw_os_error()),
            };
            bytes[RESULTS + 8 * i..RESULTS + 8 * i + 8].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    /// Reads the service's answer. `EIO` for counts the page cannot hold
    /// or an index outside the members.
    pub(super) fn decode(bytes: &[u8; ANSWER_LEN]) -> Result<Answer, Errno> {
        let members = usize::try_from(u32_at(bytes, 4)).map_err(|_| Errno::IO)?;
        let completed = usize::try_from(u32_at(bytes, 28)).map_err(|_| Errno::IO)?;
        let results = usize::try_from(u32_at(bytes, 32)).map_err(|_| Errno::IO)?;
        if members > MAX_MEMBERS || completed > MAX_BUFFERS || results > MAX_TRANSFER_BATCH {
            return Err(Errno::IO);
        }
        let me = u32_at(bytes, 24);
        let errno = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if errno == 0 && members > 0 && usize::try_from(me).map_or(true, |me| me >= members) {
            return Err(Errno::IO);
        }
        let completed = (0..completed)
            .map(|i| {
                let at = COMPLETED + 16 * i;
                let len = usize::try_from(u64_at(bytes, at + 8)).map_err(|_| Errno::IO)?;
                Ok(Completed { buffer: u64_at(bytes, at), len })
            })
            .collect::<Result<_, Errno>>()?;
        Ok(Answer {
            errno,
            value: u64_at(bytes, 8),
            generation: u64_at(bytes, 16),
            me,
            members: (0..members)
                .map(|i| u16::from_le_bytes([bytes[MEMBERS + 2 * i], bytes[MEMBERS + 2 * i + 1]]))
                .collect(),
            completed,
            results: (0..results)
                .map(|i| {
                    let at = RESULTS + 8 * i;
                    let value = i64::from_le_bytes(bytes[at..at + 8].try_into().map_err(|_| Errno::IO)?);
                    if value >= 0 {
                        usize::try_from(value).map_err(|_| Errno::IO)
                    } else {
                        Err(Errno::from_raw_os_error(i32::try_from(-value).map_err(|_| Errno::IO)?))
                    }
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_what_it_wrote() {
        let request = Request {
            op: Op::Transfer,
            key: 7,
            generation: 0x1_0000_0002,
            segments: vec![Segment { offset: 1 << 40, len: 9 }, Segment { offset: 4096, len: 1 }],
            keys: Vec::new(),
        };
        assert_eq!(Request::decode(&request.encode().unwrap()), Ok(request));
        let request = Request {
            op: Op::TransferMany,
            key: 0,
            generation: 4,
            segments: vec![Segment { offset: 8, len: 9 }; MAX_TRANSFER_BATCH],
            keys: (0..count(MAX_TRANSFER_BATCH)).collect(),
        };
        assert_eq!(Request::decode(&request.encode().unwrap()), Ok(request));
    }

    #[test]
    fn a_request_past_the_slot_is_refused_on_both_sides() {
        let mut request = Request { op: Op::Register, key: 1, generation: 1, segments: vec![], keys: vec![] };
        request.segments = vec![Segment { offset: 0, len: 1 }; MAX_SEGMENTS + 1];
        assert_eq!(request.encode(), Err(Errno::INVAL));
        let mut bytes = [0u8; REQUEST_LEN];
        bytes[0] = 2;
        bytes[16..20].copy_from_slice(&(count(MAX_SEGMENTS) + 1).to_le_bytes());
        assert_eq!(Request::decode(&bytes), Err(Errno::INVAL));
        bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Request::decode(&bytes), Err(Errno::INVAL));
        let mut bytes = [0u8; REQUEST_LEN];
        bytes[0] = 6;
        bytes[16..20].copy_from_slice(&(count(MAX_TRANSFER_BATCH) + 1).to_le_bytes());
        assert_eq!(Request::decode(&bytes), Err(Errno::INVAL));
        for op in [0u32, 7, u32::MAX] {
            let mut bytes = [0u8; REQUEST_LEN];
            bytes[0..4].copy_from_slice(&op.to_le_bytes());
            assert_eq!(Request::decode(&bytes), Err(Errno::INVAL), "op {op}");
        }
    }

    #[test]
    fn an_answer_reads_back_what_it_wrote() {
        let answer = Answer {
            errno: 0,
            value: 5,
            generation: 3,
            me: 1,
            members: vec![0, 9, 0xfff0],
            completed: vec![Completed { buffer: 4, len: 1500 }, Completed { buffer: u64::MAX, len: 0 }],
            results: vec![Ok(1500), Err(Errno::AGAIN), Ok(0)],
        };
        assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
        let failed = Answer::failed(Errno::STALE);
        assert_eq!(Answer::decode(&failed.encode()).unwrap().errno, Errno::STALE.raw_os_error());
    }

    #[test]
    fn a_garbled_answer_is_an_error_not_a_panic() {
        let mut bytes = [0u8; ANSWER_LEN];
        bytes[4..8].copy_from_slice(&(count(MAX_MEMBERS) + 1).to_le_bytes());
        assert_eq!(Answer::decode(&bytes), Err(Errno::IO));
        let mut bytes = [0u8; ANSWER_LEN];
        bytes[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Answer::decode(&bytes), Err(Errno::IO));
        let mut bytes = [0u8; ANSWER_LEN];
        bytes[32..36].copy_from_slice(&(count(MAX_TRANSFER_BATCH) + 1).to_le_bytes());
        assert_eq!(Answer::decode(&bytes), Err(Errno::IO));
        let mut bytes = [0u8; ANSWER_LEN];
        bytes[4] = 2;
        bytes[24] = 2;
        assert_eq!(Answer::decode(&bytes), Err(Errno::IO), "an index outside the members");
    }
}
