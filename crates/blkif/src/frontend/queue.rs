//! The frontend's bookkeeping, with no I/O: operations the user asked
//! for, split into ring requests of at most eleven pages; which request
//! is in which ring slot; what to send again after a reconnect.
//!
//! An operation of `n` sectors becomes requests of at most
//! `11 * 8 = 88` sectors, each segment one whole page from sector 0
//! (the last may be partial). A request's tag (`id`) is the number of
//! the slot it occupies, from 0 to the ring's size; slot `s` owns data
//! pages `s * 11 .. s * 11 + 11` of the connection's pool, so a request
//! needs nothing allocated when issued.
//!
//! When the connection goes, the requests in flight go back to the head
//! of the queue in the order they were issued: a write is acknowledged
//! only by its response, so one without a response is written again on
//! the next connection, and none is lost.
//!
//! Call order: `submit_*`; while connected, [`Queue::start_next`] until
//! `None` (copying write data into the slot's pages and pushing the
//! request), [`Queue::finish`] for each response; [`Queue::requeue`]
//! when the connection goes and [`Queue::set_slots`] when a new one
//! comes; [`Queue::take`] for the results.

use std::collections::{BTreeMap, VecDeque};

use crate::abi::{MAX_SEGMENTS, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, RSP_OKAY, SECTORS_PER_PAGE, SECTOR_SIZE};
use crate::request::{Request, Segment, SegmentRequest};

/// Names an operation the user submitted.
pub type Ticket = u64;

/// Sectors in one ring request: eleven whole pages.
pub const SECTORS_PER_REQUEST: u64 = (MAX_SEGMENTS as u64) * (SECTORS_PER_PAGE as u64);

/// How an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The backend answered a request with this `BLKIF_RSP_*` status.
    Status(i16),
    /// The operation was refused before being sent (bad length or range,
    /// a write to a read-only disk).
    Invalid(&'static str),
    /// The device went away before the operation completed.
    Gone,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoError::Status(status) => {
                write!(f, "backend answered {} ({status})", crate::response::Response::status_name(*status))
            }
            IoError::Invalid(why) => write!(f, "invalid request: {why}"),
            IoError::Gone => write!(f, "device gone"),
        }
    }
}

impl std::error::Error for IoError {}

/// What a ring request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkKind {
    /// Read into the slot's pages.
    Read,
    /// Write these bytes (copied into the slot's pages when issued).
    Write(Vec<u8>),
    /// Flush the backend's cache.
    Flush,
}

/// One ring request of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    ticket: Ticket,
    /// What it does.
    pub kind: ChunkKind,
    /// First sector on the disk.
    pub sector: u64,
    /// Sectors (0 for a flush).
    pub sectors: u64,
    /// Where its bytes start in the operation's buffer.
    offset: usize,
    /// Order of issue, to send it again in the same order.
    seq: u64,
}

impl Chunk {
    /// The ring request for this chunk in slot `slot`, whose data pages
    /// have the grant references `pages` (eleven).
    pub fn request(&self, slot: u64, pages: &[u32]) -> Request {
        let operation = match self.kind {
            ChunkKind::Read => OP_READ,
            ChunkKind::Write(_) => OP_WRITE,
            ChunkKind::Flush => OP_FLUSH_DISKCACHE,
        };
        let mut request = SegmentRequest { operation, id: slot, sector_number: self.sector, ..Default::default() };
        let per_page = u64::from(SECTORS_PER_PAGE);
        let used = self.sectors.div_ceil(per_page);
        for ((seg, &gref), page) in request.segments.iter_mut().zip(pages).zip(0..used) {
            let in_page = (self.sectors - page * per_page).min(per_page);
            // At most 8 sectors in a page: the cast cannot truncate.
            *seg = Segment { gref, first_sect: 0, last_sect: u8::try_from(in_page - 1).unwrap_or(7) };
        }
        request.nr_segments = u8::try_from(used).unwrap_or(0);
        Request::Segments(request)
    }

    /// The bytes a read chunk fills or a write chunk carries.
    pub fn bytes(&self) -> usize {
        usize::try_from(self.sectors * SECTOR_SIZE).unwrap_or(usize::MAX)
    }
}

#[derive(Debug)]
struct OpState {
    remaining: usize,
    buffer: Vec<u8>,
    error: Option<IoError>,
}

/// The frontend's requests, from submission to completion.
#[derive(Debug, Default)]
pub struct Queue {
    next_ticket: Ticket,
    next_seq: u64,
    ops: BTreeMap<Ticket, OpState>,
    waiting: VecDeque<Chunk>,
    in_flight: BTreeMap<u64, Chunk>,
    free: Vec<u64>,
    done: BTreeMap<Ticket, Result<Vec<u8>, IoError>>,
}

impl Queue {
    /// An empty queue with no slots (not connected).
    pub fn new() -> Queue {
        Queue::default()
    }

    /// A new connection with a ring of `slots` entries.
    pub fn set_slots(&mut self, slots: u32) {
        debug_assert!(self.in_flight.is_empty(), "requeue before a new connection");
        self.free = (0..u64::from(slots)).rev().collect();
    }

    /// Reads `count` sectors from `sector`.
    pub fn submit_read(&mut self, sector: u64, count: u64) -> Ticket {
        let bytes = usize::try_from(count * SECTOR_SIZE).unwrap_or(0);
        self.submit(sector, count, vec![0; bytes], |_| ChunkKind::Read)
    }

    /// Writes `data` (whole sectors) from `sector`.
    pub fn submit_write(&mut self, sector: u64, data: Vec<u8>) -> Ticket {
        let count = data.len() as u64 / SECTOR_SIZE;
        let chunks = |range: std::ops::Range<usize>| ChunkKind::Write(data[range].to_vec());
        self.submit(sector, count, Vec::new(), chunks)
    }

    /// Flushes the backend's cache.
    pub fn submit_flush(&mut self) -> Ticket {
        let ticket = self.new_op(1, Vec::new());
        self.waiting.push_back(Chunk { ticket, kind: ChunkKind::Flush, sector: 0, sectors: 0, offset: 0, seq: 0 });
        ticket
    }

    /// A ready result: the operation's outcome (a read's bytes; empty for
    /// a write or flush), or an error.
    pub fn complete_now(&mut self, result: Result<Vec<u8>, IoError>) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.done.insert(ticket, result);
        ticket
    }

    fn new_op(&mut self, chunks: usize, buffer: Vec<u8>) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.ops.insert(ticket, OpState { remaining: chunks, buffer, error: None });
        ticket
    }

    fn submit(
        &mut self,
        sector: u64,
        count: u64,
        buffer: Vec<u8>,
        kind: impl Fn(std::ops::Range<usize>) -> ChunkKind,
    ) -> Ticket {
        if count == 0 {
            return self.complete_now(Ok(buffer));
        }
        let chunks = count.div_ceil(SECTORS_PER_REQUEST);
        let ticket = self.new_op(usize::try_from(chunks).unwrap_or(usize::MAX), buffer);
        let mut done = 0;
        while done < count {
            let sectors = (count - done).min(SECTORS_PER_REQUEST);
            let offset = usize::try_from(done * SECTOR_SIZE).unwrap_or(usize::MAX);
            let len = usize::try_from(sectors * SECTOR_SIZE).unwrap_or(usize::MAX);
            let kind = kind(offset..offset + len);
            self.waiting.push_back(Chunk { ticket, kind, sector: sector + done, sectors, offset, seq: 0 });
            done += sectors;
        }
        ticket
    }

    /// The next request to issue and its slot, moved in flight; `None`
    /// when nothing waits or every slot is taken.
    pub fn start_next(&mut self) -> Option<(u64, &Chunk)> {
        if self.waiting.is_empty() {
            return None;
        }
        let slot = self.free.pop()?;
        let mut chunk = self.waiting.pop_front()?;
        chunk.seq = self.next_seq;
        self.next_seq += 1;
        Some((slot, self.in_flight.entry(slot).or_insert(chunk)))
    }

    /// The response for slot `slot` came with `status`; `fill` copies a
    /// successful read's bytes from the slot's pages into the given
    /// buffer. A tag that names no request in flight (a confused or
    /// hostile backend) is ignored and `false` returned.
    pub fn finish(&mut self, slot: u64, status: i16, fill: impl FnOnce(&mut [u8])) -> bool {
        let Some(chunk) = self.in_flight.remove(&slot) else { return false };
        self.free.push(slot);
        let Some(op) = self.ops.get_mut(&chunk.ticket) else { return true };
        if status != RSP_OKAY {
            op.error.get_or_insert(IoError::Status(status));
        } else if chunk.kind == ChunkKind::Read {
            if let Some(buf) = op.buffer.get_mut(chunk.offset..chunk.offset + chunk.bytes()) {
                fill(buf);
            }
        }
        op.remaining -= 1;
        if op.remaining == 0 {
            if let Some(op) = self.ops.remove(&chunk.ticket) {
                self.done.insert(chunk.ticket, op.error.map_or(Ok(op.buffer), Err));
            }
        }
        true
    }

    /// The connection went: every request in flight waits again, ahead
    /// of the others, in the order it was issued; no slot is free.
    pub fn requeue(&mut self) {
        let mut again: Vec<Chunk> = std::mem::take(&mut self.in_flight).into_values().collect();
        again.sort_by_key(|c| c.seq);
        for chunk in again.into_iter().rev() {
            self.waiting.push_front(chunk);
        }
        self.free.clear();
    }

    /// The device is gone: every operation not done fails.
    pub fn fail_all(&mut self) {
        self.waiting.clear();
        self.in_flight.clear();
        for (ticket, _) in std::mem::take(&mut self.ops) {
            self.done.insert(ticket, Err(IoError::Gone));
        }
    }

    /// Takes the result of `ticket` if it is done.
    pub fn take(&mut self, ticket: Ticket) -> Option<Result<Vec<u8>, IoError>> {
        self.done.remove(&ticket)
    }

    /// Requests issued and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Requests waiting to be issued.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_write_is_split_into_requests_of_eleven_pages() {
        let mut queue = Queue::new();
        queue.set_slots(32);
        let ticket = queue.submit_write(10, vec![7; 200 * 512]);
        let mut requests = Vec::new();
        while let Some((slot, chunk)) = queue.start_next() {
            requests.push((slot, chunk.sector, chunk.sectors, chunk.request(slot, &[9; 11])));
        }
        let shape: Vec<(u64, u64, u64)> = requests.iter().map(|r| (r.0, r.1, r.2)).collect();
        assert_eq!(shape, [(0, 10, 88), (1, 98, 88), (2, 186, 24)]);
        let Request::Segments(last) = requests[2].3 else { panic!() };
        assert_eq!(last.nr_segments, 3);
        assert_eq!((last.segments[2].first_sect, last.segments[2].last_sect), (0, 7));
        for slot in 0..3 {
            assert!(queue.take(ticket).is_none());
            assert!(queue.finish(slot, RSP_OKAY, |_| {}));
        }
        assert_eq!(queue.take(ticket), Some(Ok(Vec::new())));
    }

    #[test]
    fn a_partial_last_page_ends_at_its_last_sector() {
        let chunk = Chunk { ticket: 0, kind: ChunkKind::Read, sector: 0, sectors: 11, offset: 0, seq: 0 };
        let Request::Segments(r) = chunk.request(4, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) else { panic!() };
        assert_eq!((r.nr_segments, r.id), (2, 4));
        assert_eq!(r.segments[1], Segment { gref: 2, first_sect: 0, last_sect: 2 });
    }

    #[test]
    fn in_flight_requests_go_back_first_in_issue_order_after_a_disconnect() {
        let mut queue = Queue::new();
        queue.set_slots(2);
        let tickets: Vec<Ticket> = (0..3).map(|i| queue.submit_write(i, vec![0; 512])).collect();
        let first: Vec<u64> = std::iter::from_fn(|| queue.start_next().map(|(_, c)| c.sector)).collect();
        assert_eq!(first, [0, 1]);
        queue.requeue();
        queue.set_slots(4);
        let again: Vec<u64> = std::iter::from_fn(|| queue.start_next().map(|(_, c)| c.sector)).collect();
        assert_eq!(again, [0, 1, 2]);
        assert_eq!(queue.in_flight(), 3);
        for slot in 0..3 {
            queue.finish(slot, RSP_OKAY, |_| {});
        }
        assert!(tickets.iter().all(|&t| queue.take(t) == Some(Ok(Vec::new()))));
    }

    #[test]
    fn an_error_status_fails_the_operation_and_an_unknown_tag_is_ignored() {
        let mut queue = Queue::new();
        queue.set_slots(4);
        let ticket = queue.submit_read(0, 100);
        while queue.start_next().is_some() {}
        assert!(!queue.finish(99, RSP_OKAY, |_| {}));
        queue.finish(0, RSP_OKAY, |buf| buf.fill(1));
        queue.finish(1, crate::abi::RSP_ERROR, |_| {});
        assert_eq!(queue.take(ticket), Some(Err(IoError::Status(-1))));
    }

    #[test]
    fn reads_are_assembled_in_order() {
        let mut queue = Queue::new();
        queue.set_slots(4);
        let ticket = queue.submit_read(0, 100);
        while queue.start_next().is_some() {}
        queue.finish(1, RSP_OKAY, |buf| buf.fill(2));
        queue.finish(0, RSP_OKAY, |buf| buf.fill(1));
        let data = queue.take(ticket).unwrap().unwrap();
        assert_eq!(data.len(), 100 * 512);
        assert!(data[..88 * 512].iter().all(|&b| b == 1) && data[88 * 512..].iter().all(|&b| b == 2));
    }
}
