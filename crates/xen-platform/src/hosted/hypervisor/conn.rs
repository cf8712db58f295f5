//! One client connection as the hypervisor sees it: a non-blocking
//! socket, the request being assembled and the reply being sent.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::hosted::protocol::{recv_record, send_record, Assembler, Received, Record};
use crate::DomId;

/// A client connection.
#[derive(Debug)]
pub(super) struct Connection {
    /// The socket, non-blocking.
    pub(super) socket: OwnedFd,
    /// The domain everything arriving here speaks for.
    pub(super) domid: DomId,
    assembler: Assembler,
    /// Records of the reply not yet sent. While any remain the connection
    /// is not read: one request at a time.
    outbox: VecDeque<Record>,
}

/// What reading a connection gave.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A whole message: its JSON and any descriptors that came with it.
    Message(Vec<u8>, Vec<OwnedFd>),
    /// Nothing complete yet.
    Nothing,
    /// The peer closed.
    Closed,
}

impl Connection {
    /// A connection on `socket` (already non-blocking) for `domid`.
    pub(super) fn new(socket: OwnedFd, domid: DomId) -> Connection {
        Connection { socket, domid, assembler: Assembler::default(), outbox: VecDeque::new() }
    }

    /// Reads records until a message is whole or nothing is left; an
    /// error means the peer broke the protocol.
    pub(super) fn read(&mut self) -> io::Result<Incoming> {
        loop {
            match recv_record(self.socket.as_fd(), true)? {
                Received::Closed => return Ok(Incoming::Closed),
                Received::Empty => return Ok(Incoming::Nothing),
                Received::Record { last, payload, fds } => {
                    if let Some((json, fds)) = self.assembler.push(last, &payload, fds)? {
                        return Ok(Incoming::Message(json, fds));
                    }
                }
            }
        }
    }

    /// Queues a reply's records.
    pub(super) fn queue(&mut self, records: VecDeque<Record>) {
        self.outbox.extend(records);
    }

    /// Sends what the socket takes; `Ok(true)` once nothing is left.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        while let Some(record) = self.outbox.front() {
            match send_record(self.socket.as_fd(), record, true) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
