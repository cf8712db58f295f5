//! The server's connection over a ring: framing on input, gathered writes
//! on output, and the error indicator when the guest breaks either.
//!
//! Queueing output is the server's business, not the ring's: what may be
//! dropped or merged when a guest does not read (watch events) and what
//! may not (replies) is policy, so xenstored keeps one queue per
//! connection, the same for sockets and rings, and writes it here through
//! [`ServerConnection::write_vectored`]. [`OutputQueue`] is a plain FIFO
//! for servers without such a policy (test fixtures, small tools).

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::IoSlice;

use xenstore_wire::{Decoder, FrameError, Packet};

use crate::layout::{ERROR_PROTO, ERROR_RINGIDX, RING_SIZE};
use crate::ring::ServerRing;
use crate::{Notify, RingError};

/// Encoded messages waiting for space in a ring: a plain FIFO for a server
/// that needs no output policy (xenstored has its own; see the module
/// docs). Flush it with [`OutputQueue::flush_with`] and
/// [`ServerConnection::write`].
///
/// A message may leave in several writes and cross the wrap; the queue
/// keeps its place. Bytes of several messages are gathered into one ring
/// write so that one flush costs at most one notification per ring-full.
#[derive(Debug, Default)]
pub struct OutputQueue {
    messages: VecDeque<Vec<u8>>,
    /// Bytes of the front message already written.
    offset: usize,
    /// Bytes not yet written, over all messages.
    pending: usize,
}

impl OutputQueue {
    /// An empty queue.
    pub fn new() -> OutputQueue {
        OutputQueue::default()
    }

    /// Queues one encoded message (header and payload).
    pub fn push(&mut self, message: Vec<u8>) {
        self.pending += message.len();
        if !message.is_empty() {
            self.messages.push_back(message);
        }
    }

    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether everything was written.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Whether no message is partly written.
    pub fn at_boundary(&self) -> bool {
        self.offset == 0
    }

    /// Drops everything, including a partly written message.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.offset = 0;
        self.pending = 0;
    }

    /// Writes queued bytes with `write` (a ring end's `write`), which
    /// returns how many of the offered bytes it took; stops when it takes
    /// fewer than offered. Returns the bytes written.
    pub fn flush_with<E>(&mut self, mut write: impl FnMut(&[u8]) -> Result<usize, E>) -> Result<usize, E> {
        let mut total = 0;
        let mut staging = [0u8; RING_SIZE];
        while self.pending > 0 {
            let filled = self.gather(&mut staging);
            let written = write(&staging[..filled])?.min(filled);
            self.advance(written);
            total += written;
            if written < filled || written == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Copies the first bytes pending into `buf`; returns how many.
    fn gather(&self, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        let mut offset = self.offset;
        for message in &self.messages {
            let rest = &message[offset..];
            let take = rest.len().min(buf.len() - filled);
            buf[filled..filled + take].copy_from_slice(&rest[..take]);
            filled += take;
            offset = 0;
            if filled == buf.len() {
                break;
            }
        }
        filled
    }

    /// Marks `n` pending bytes as written.
    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.messages.front() else { break };
            let rest = front.len() - self.offset;
            if n >= rest {
                n -= rest;
                self.offset = 0;
                self.messages.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }
}

/// What [`ServerConnection::poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete request.
    Packet(Packet),
    /// The guest asked for a reconnection and it was completed: partial
    /// input and queued output are gone; the caller must now discard the
    /// connection's in-flight requests, watches and transactions.
    Reconnected,
}

/// Why a [`ServerConnection`] stopped serving its ring. The error indicator
/// on the page was set accordingly; the connection fails every later call
/// with the same error until the guest reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The guest corrupted the ring indices ([`crate::ERROR_RINGIDX`]).
    Ring(RingError),
    /// The guest sent a packet whose payload is over the protocol maximum
    /// ([`crate::ERROR_PROTO`]).
    Frame(FrameError),
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::Ring(e) => write!(f, "ring: {e}"),
            ConnectionError::Frame(e) => write!(f, "protocol: {e}"),
        }
    }
}

impl std::error::Error for ConnectionError {}

/// The server side of one guest's ring, from bytes to [`Packet`]s and back.
///
/// Call order, on each event-channel notification:
///
/// 1. call [`ServerConnection::poll`] until it returns `Ok(None)` (or as
///    many times as the server's fairness budget allows), handling each
///    [`Incoming::Packet`] and, on [`Incoming::Reconnected`], dropping the
///    connection's queued output, watches, transactions and in-flight
///    requests;
/// 2. queue the replies and watch events in the server's own output queue;
/// 3. write as much of the queue as fits with
///    [`ServerConnection::write_vectored`] (one ring write and at most one
///    notification per ring-full); the rest waits for the next
///    notification (the guest notifies when it frees space).
///
/// An `Err` means the connection is stopped (error indicator set); only a
/// guest reconnection (seen by `poll`) revives it.
#[derive(Debug)]
pub struct ServerConnection<'a, N> {
    ring: ServerRing<'a, N>,
    decoder: Decoder,
    input: Box<[u8; RING_SIZE]>,
    input_start: usize,
    input_end: usize,
    failed: Option<ConnectionError>,
}

impl<'a, N: Notify> ServerConnection<'a, N> {
    /// Serves `ring`. Advertise features on it first
    /// ([`ServerRing::set_features`]).
    pub fn new(ring: ServerRing<'a, N>) -> ServerConnection<'a, N> {
        ServerConnection {
            ring,
            decoder: Decoder::new(),
            input: Box::new([0; RING_SIZE]),
            input_start: 0,
            input_end: 0,
            failed: None,
        }
    }

    /// The ring.
    pub fn ring(&self) -> &ServerRing<'a, N> {
        &self.ring
    }

    /// The ring, mutably (to advertise features).
    pub fn ring_mut(&mut self) -> &mut ServerRing<'a, N> {
        &mut self.ring
    }

    /// The next request or reconnection, or `None` when the ring is
    /// drained. Reads at most one ring-full ahead of the decoder.
    pub fn poll(&mut self) -> Result<Option<Incoming>, ConnectionError> {
        if self.ring.reconnect_requested() {
            self.decoder.reset();
            self.input_start = 0;
            self.input_end = 0;
            self.failed = None;
            self.ring.complete_reconnect();
            return Ok(Some(Incoming::Reconnected));
        }
        if let Some(err) = self.failed {
            return Err(err);
        }
        loop {
            if self.input_start < self.input_end {
                let mut rest = &self.input[self.input_start..self.input_end];
                let decoded = self.decoder.decode(&mut rest);
                self.input_start = self.input_end - rest.len();
                match decoded {
                    Ok(Some(packet)) => return Ok(Some(Incoming::Packet(packet))),
                    Ok(None) => {}
                    Err(e) => return Err(self.fail(ConnectionError::Frame(e), ERROR_PROTO)),
                }
            }
            let n = match self.ring.read(&mut self.input[..]) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(ConnectionError::Ring(e), ERROR_RINGIDX)),
            };
            if n == 0 {
                return Ok(None);
            }
            self.input_start = 0;
            self.input_end = n;
        }
    }

    /// Writes as much of `bytes` as the response queue has room for;
    /// returns how many (0 when it is full).
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, ConnectionError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        match self.ring.write(bytes) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.fail(ConnectionError::Ring(e), ERROR_RINGIDX)),
        }
    }

    /// Writes the start of `bufs`, in order, as one ring write of at most a
    /// ring-full (so at most one notification); returns the bytes taken
    /// (0 when the response queue is full).
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> Result<usize, ConnectionError> {
        let mut gathered = [0u8; RING_SIZE];
        let mut len = 0;
        for buf in bufs {
            let n = buf.len().min(RING_SIZE - len);
            gathered[len..len + n].copy_from_slice(&buf[..n]);
            len += n;
            if len == RING_SIZE {
                break;
            }
        }
        if len == 0 {
            return Ok(0);
        }
        self.write(&gathered[..len])
    }

    /// Takes the input read from the ring but not yet returned as a packet
    /// (a partial request, or requests after the last one polled), oldest
    /// first, for a live update to hand over; the connection then holds
    /// none. At most one ring-full or one partial packet: a request is
    /// polled as soon as it is whole.
    pub fn take_input(&mut self) -> Vec<u8> {
        let mut bytes = self.decoder.take_pending();
        bytes.extend_from_slice(&self.input[self.input_start..self.input_end]);
        self.input_start = 0;
        self.input_end = 0;
        bytes
    }

    /// Puts back what [`ServerConnection::take_input`] took (in another
    /// process), to be polled before anything more is read from the ring.
    /// The bytes are decoded, not trusted: more than a ring-full that is
    /// not one partial packet is refused, as is a framing error.
    pub fn restore_input(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.input_start = 0;
        self.input_end = 0;
        if bytes.len() <= RING_SIZE {
            self.decoder = Decoder::new();
            self.input[..bytes.len()].copy_from_slice(bytes);
            self.input_end = bytes.len();
        } else {
            self.decoder = Decoder::restore(bytes)?;
        }
        Ok(())
    }

    /// Whether the connection has stopped (and why).
    pub fn failure(&self) -> Option<ConnectionError> {
        self.failed
    }

    fn fail(&mut self, err: ConnectionError, indicator: u32) -> ConnectionError {
        self.failed = Some(err);
        self.ring.set_error(indicator);
        err
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use xenstore_wire::Header;

    use super::*;
    use crate::layout::{Field, FEATURE_ERROR, FEATURE_RECONNECTION};
    use crate::page::OwnedPage;
    use crate::ring::GuestRing;

    fn message(req_id: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let header = Header { op: 2, req_id, tx_id: 0, len };
        let mut out = header.encode().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn start_at(owned: &OwnedPage, req: u32, rsp: u32) {
        let page = owned.page();
        page.set_field(Field::ReqCons, req);
        page.set_field(Field::ReqProd, req);
        page.set_field(Field::RspCons, rsp);
        page.set_field(Field::RspProd, rsp);
    }

    fn server(owned: &OwnedPage) -> ServerConnection<'_, impl FnMut()> {
        let mut ring = ServerRing::new(owned.page(), || {});
        ring.set_features(FEATURE_RECONNECTION | FEATURE_ERROR);
        ServerConnection::new(ring)
    }

    #[test]
    fn poll_decodes_packets_split_across_the_wrap() {
        let owned = OwnedPage::new();
        start_at(&owned, 1000, 0);
        let mut conn = server(&owned);
        let mut guest = GuestRing::new(owned.page(), || {});
        let first = message(1, b"/local/domain/1\0");
        let second = message(2, &[b'x'; 40]);
        guest.write(&[first.clone(), second.clone()].concat()).unwrap();
        let Some(Incoming::Packet(p1)) = conn.poll().unwrap() else { panic!("no packet") };
        assert_eq!((p1.header.req_id, &p1.payload[..]), (1, &b"/local/domain/1\0"[..]));
        let Some(Incoming::Packet(p2)) = conn.poll().unwrap() else { panic!("no packet") };
        assert_eq!(p2.payload, vec![b'x'; 40]);
        assert_eq!(conn.poll().unwrap(), None);
    }

    #[test]
    fn input_taken_and_restored_in_a_new_connection_polls_the_same_packets() {
        // Two whole requests and half of a third are read from the ring at
        // once; one is polled; the rest moves to a new connection (a live
        // update) and comes out there, the third once the guest ends it.
        let owned = OwnedPage::new();
        let mut conn = server(&owned);
        let mut guest = GuestRing::new(owned.page(), || {});
        let third = message(3, &[b'z'; 30]);
        guest.write(&[message(1, b"a\0"), message(2, b"b\0"), third[..20].to_vec()].concat()).unwrap();
        let Some(Incoming::Packet(p1)) = conn.poll().unwrap() else { panic!("no packet") };
        assert_eq!(p1.header.req_id, 1);
        let taken = conn.take_input();
        assert_eq!(taken, [message(2, b"b\0"), third[..20].to_vec()].concat());
        assert_eq!(conn.poll().unwrap(), None, "nothing left behind");
        let mut next = server(&owned);
        next.restore_input(&taken).unwrap();
        let Some(Incoming::Packet(p2)) = next.poll().unwrap() else { panic!("no packet") };
        assert_eq!(p2.header.req_id, 2);
        assert_eq!(next.poll().unwrap(), None);
        guest.write(&third[20..]).unwrap();
        let Some(Incoming::Packet(p3)) = next.poll().unwrap() else { panic!("no packet") };
        assert_eq!((p3.header.req_id, p3.payload.len()), (3, 30));

        // A partial payload longer than a ring-full goes to the decoder.
        let mut big = server(&owned);
        let long = message(4, &[b'y'; 3000]);
        big.restore_input(&long[..2000]).unwrap();
        assert_eq!(big.take_input(), long[..2000].to_vec());
        // More than a ring-full holding a whole packet cannot have been
        // taken from a connection: refused.
        let whole = [long.clone(), long].concat();
        assert!(server(&owned).restore_input(&whole[..3100]).is_err());
    }

    #[test]
    fn poll_with_payload_over_max_sets_proto_error_and_stops() {
        let owned = OwnedPage::new();
        let mut conn = server(&owned);
        let mut guest = GuestRing::new(owned.page(), || {});
        let header = Header { op: 2, req_id: 1, tx_id: 0, len: 4097 };
        guest.write(&header.encode()).unwrap();
        let err = conn.poll().unwrap_err();
        assert!(matches!(err, ConnectionError::Frame(FrameError::PayloadTooLong { len: 4097 })));
        assert_eq!(guest.error(), ERROR_PROTO);
        assert_eq!(conn.poll().unwrap_err(), err);
        assert_eq!(conn.write(b"reply").unwrap_err(), err);
        assert_eq!(conn.failure(), Some(err));
    }

    #[test]
    fn poll_with_corrupt_indices_sets_ringidx_error() {
        let owned = OwnedPage::new();
        let mut conn = server(&owned);
        owned.page().set_field(Field::ReqProd, 2000);
        let err = conn.poll().unwrap_err();
        assert!(matches!(err, ConnectionError::Ring(RingError::BadIndex { cons: 0, prod: 2000 })));
        assert_eq!(owned.page().field(Field::Error), ERROR_RINGIDX);
    }

    #[test]
    fn reconnect_after_error_drops_partial_packet_and_revives() {
        let owned = OwnedPage::new();
        start_at(&owned, u32::MAX - 7, 500);
        let mut conn = server(&owned);
        let mut guest = GuestRing::new(owned.page(), || {});
        // Half a header: the decoder holds a partial packet.
        guest.write(&message(9, b"abc")[..8]).unwrap();
        assert_eq!(conn.poll().unwrap(), None);
        owned.page().set_field(Field::ReqProd, 0x4000_0000);
        assert!(conn.poll().is_err());
        guest.request_reconnect();
        assert_eq!(conn.poll().unwrap(), Some(Incoming::Reconnected));
        assert_eq!(guest.connection_state(), crate::CONNECTED);
        assert_eq!(guest.error(), crate::ERROR_NONE);
        guest.write(&message(10, b"fresh")).unwrap();
        let Some(Incoming::Packet(p)) = conn.poll().unwrap() else { panic!("no packet") };
        assert_eq!((p.header.req_id, &p.payload[..]), (10, &b"fresh"[..]));
    }

    #[test]
    fn queued_output_splits_messages_across_writes_and_the_wrap() {
        let owned = OwnedPage::new();
        start_at(&owned, 0, 1020);
        let mut conn = server(&owned);
        let mut guest = GuestRing::new(owned.page(), || {});
        let messages: Vec<Vec<u8>> = (0..5u8).map(|i| message(u32::from(i), &vec![i; 700])).collect();
        let mut queue = OutputQueue::new();
        for m in &messages {
            queue.push(m.clone());
        }
        let expected = messages.concat();
        let mut received = Vec::new();
        let mut buf = [0u8; 333];
        while received.len() < expected.len() {
            queue.flush_with(|b| conn.write(b)).unwrap();
            let n = guest.read(&mut buf).unwrap();
            received.extend_from_slice(&buf[..n]);
        }
        assert_eq!(received, expected);
        assert!(queue.is_empty());
    }

    #[test]
    fn write_vectored_gathers_at_most_a_ring_full_in_order() {
        let owned = OwnedPage::new();
        start_at(&owned, 0, 1000);
        let mut conn = server(&owned);
        let mut guest = GuestRing::new(owned.page(), || {});
        let (a, b) = (vec![1u8; 600], vec![2u8; 600]);
        let n = conn.write_vectored(&[IoSlice::new(&a), IoSlice::new(&b)]).unwrap();
        assert_eq!(n, RING_SIZE);
        assert_eq!(conn.write_vectored(&[IoSlice::new(&b)]).unwrap(), 0, "the response queue is full");
        let mut buf = [0u8; RING_SIZE];
        assert_eq!(guest.read(&mut buf).unwrap(), RING_SIZE);
        assert_eq!(&buf[..600], &a[..]);
        assert!(buf[600..].iter().all(|&x| x == 2));
    }

    #[test]
    fn output_queue_keeps_its_place_in_a_partly_written_message() {
        let mut queue = OutputQueue::new();
        queue.push(b"hello".to_vec());
        queue.push(Vec::new());
        queue.push(b"world".to_vec());
        let mut out = Vec::new();
        for _ in 0..4 {
            queue
                .flush_with(|b: &[u8]| {
                    let n = b.len().min(3);
                    out.extend_from_slice(&b[..n]);
                    Ok::<_, RingError>(n)
                })
                .unwrap();
            assert_eq!(queue.at_boundary(), out.len() % 5 == 0);
        }
        assert_eq!(out, b"helloworld");
        assert!(queue.is_empty());
    }
}
