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
}

/// The poll token of a socket connection.
pub(crate) fn token(id: ConnId) -> Token {
    Token(usize::try_from(id).unwrap_or(usize::MAX - 1))
}

impl SocketConn {
    /// A socket just accepted (and registered for READABLE).
    pub(crate) fn new(stream: UnixStream) -> SocketConn {
        SocketConn { stream, decoder: Decoder::new(), want_write: false, blocked: false }
    }

    /// One read, decoded. A short read drained the socket: edge-triggered
    /// polling reports any later data, so a read that would only say
    /// EAGAIN is saved.
    pub(crate) fn receive(&mut self, scratch: &mut [u8], packets: &mut Vec<Packet>) -> Received {
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Received::Closed("closed by peer".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Received::Closed(format!("read failed: {e}")),
            };
            let mut input = scratch.get(..n).unwrap_or_default();
            while !input.is_empty() {
                match self.decoder.decode(&mut input) {
                    Ok(Some(packet)) => packets.push(packet),
                    Ok(None) => break,
                    Err(e) => return Received::Violation(e.to_string()),
                }
            }
            return if n < scratch.len() { Received::Drained } else { Received::More };
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
