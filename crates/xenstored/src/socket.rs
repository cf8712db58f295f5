//! The socket transport: a dom0 process on the Unix socket.

use std::io::{self, Read};

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use xenstore_db::ConnId;
use xenstore_wire::{Decoder, Packet};

use crate::conn::Received;
use crate::outbox::Outbox;

/// One socket client.
#[derive(Debug)]
pub(crate) struct SocketConn {
    pub(crate) stream: UnixStream,
    decoder: Decoder,
    /// Interest includes WRITABLE (output is waiting on a full socket).
    want_write: bool,
    /// The socket took no more at the last write: wait for WRITABLE rather
    /// than retry on every new message.
    pub(crate) blocked: bool,
    /// Bytes read but not yet decoded, from `unread_at` on: the turn's
    /// budget ran out before them (one read brings up to 64 KiB, hundreds
    /// of requests; the rest wait for the connection's next turn rather
    /// than make every other client wait for them).
    unread: Vec<u8>,
    unread_at: usize,
    /// The last read filled the buffer: the socket may hold more, which no
    /// readiness event will announce (edge-triggered).
    full_read: bool,
}

/// The poll token of a socket connection.
pub(crate) fn token(id: ConnId) -> Token {
    Token(usize::try_from(id).unwrap_or(usize::MAX - 1))
}

impl SocketConn {
    /// A socket just accepted (and registered for READABLE).
    pub(crate) fn new(stream: UnixStream) -> SocketConn {
        SocketConn {
            stream,
            decoder: Decoder::new(),
            want_write: false,
            blocked: false,
            unread: Vec::new(),
            unread_at: 0,
            full_read: false,
        }
    }

    /// A socket handed over by a live update, with the input the previous
    /// daemon had read from it and not handled: decoded before anything
    /// more is read.
    pub(crate) fn restored(stream: UnixStream, input: Vec<u8>) -> SocketConn {
        SocketConn { unread: input, ..SocketConn::new(stream) }
    }

    /// What was read from the socket and not yet handled, oldest first
    /// (a partial request in the decoder, or the bytes a turn's budget
    /// left undecoded: never both), for a live update; left in place.
    pub(crate) fn input(&self) -> Vec<u8> {
        let mut bytes = self.decoder.pending();
        bytes.extend_from_slice(self.unread.get(self.unread_at..).unwrap_or_default());
        bytes
    }

    /// Appends up to `budget` requests: first from what an earlier read
    /// left undecoded, else from one read. A short read drained the socket:
    /// edge-triggered polling reports any later data, so a read that would
    /// only say EAGAIN is saved.
    pub(crate) fn receive(&mut self, scratch: &mut [u8], packets: &mut Vec<Packet>, budget: usize) -> Received {
        if self.unread_at < self.unread.len() {
            let mut input = self.unread.get(self.unread_at..).unwrap_or_default();
            let decoded = decode(&mut self.decoder, &mut input, packets, budget);
            self.unread_at = self.unread.len() - input.len();
            if let Err(violation) = decoded {
                return violation;
            }
            if !input.is_empty() {
                return Received::More;
            }
            // Not kept: a thousand idle connections must not each hold
            // the 64 KiB one burst left them.
            self.unread = Vec::new();
            self.unread_at = 0;
            return if self.full_read { Received::More } else { Received::Drained };
        }
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Received::Closed("closed by peer".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Received::Closed(format!("read failed: {e}")),
            };
            self.full_read = n == scratch.len();
            let mut input = scratch.get(..n).unwrap_or_default();
            if let Err(violation) = decode(&mut self.decoder, &mut input, packets, budget) {
                return violation;
            }
            if !input.is_empty() {
                self.unread.extend_from_slice(input);
                return Received::More;
            }
            return if self.full_read { Received::More } else { Received::Drained };
        }
    }

    /// Writes what the socket takes; arms WRITABLE while output remains.
    pub(crate) fn flush(&mut self, id: ConnId, outbox: &mut Outbox, registry: &Registry) -> Result<(), String> {
        if !self.blocked {
            outbox.flush_to(&mut self.stream).map_err(|e| format!("write failed: {e}"))?;
            self.blocked = !outbox.is_empty();
        }
        let want_write = !outbox.is_empty();
        if want_write != self.want_write {
            let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            registry.reregister(&mut self.stream, token(id), interest).map_err(|e| format!("polling: {e}"))?;
            self.want_write = want_write;
        }
        Ok(())
    }
}

/// Decodes up to `budget` requests from the front of `input`, leaving the
/// rest there; a framing error is the connection's end.
fn decode(decoder: &mut Decoder, input: &mut &[u8], packets: &mut Vec<Packet>, budget: usize) -> Result<(), Received> {
    for _ in 0..budget {
        match decoder.decode(input) {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return Ok(()),
            Err(e) => return Err(Received::Violation(e.to_string())),
        }
    }
    Ok(())
}
