//! One client connection, socket or ring, with the one flow-control rule
//! both follow.
//!
//! A connection is a transport (a Unix socket from a dom0 process, or a
//! domain's shared ring) and one [`Outbox`]. The loop treats both alike:
//! it asks the connection for what it received ([`Connection::receive`]),
//! hands each request to the engine, queues the replies and events in the
//! outbox, and writes the outbox out ([`Connection::flush`]). The rule:
//!
//! - **Pause**: while more than [`Limits::pause_reading_above`] bytes are
//!   queued, no more requests are read from the connection (its replies
//!   are bounded by backpressure; see [`crate::outbox`]).
//! - **Resume**: once a flush brings the queue down to half that, reading
//!   resumes, at the next loop iteration; a ring whose guest asks for a
//!   reconnection is read at once (the reconnection empties the queue).
//! - **Budget**: one connection's turn ends after [`TURN_TIME`] of work or
//!   [`TURN_BUDGET`] requests, whichever comes first; then the others get
//!   theirs. What it sent and was not handled waits for its next turn (in
//!   its ring, or read but undecoded in its socket's buffer).
//! - **Blocked**: a transport that took nothing more at the last write is
//!   not written again until it says it has room (a client that never reads
//!   must not cost a failing write per event).
//! - **Cut off**: a connection that breaks the protocol loses only itself:
//!   a socket is closed, a ring is stopped (error indicator set) until the
//!   guest reconnects.

use std::time::{Duration, Instant};

use mio::Registry;
use tracing::{debug, warn};
use xenstore_db::ConnId;
use xenstore_wire::{DomId, Packet};

use crate::memory::MemoryStall;
use crate::outbox::{Limits, Outbox};
use crate::rings::DomainRing;
use crate::socket::SocketConn;
use crate::stats::Counters;

/// Requests served from one connection per turn before the others get
/// theirs.
pub(crate) const TURN_BUDGET: usize = 64;

/// Time one connection's turn may take before the others get theirs,
/// checked after each request.
///
/// Counting requests alone let one busy client cost a quiet one a whole
/// 64-request turn (the quiet client's READ p99 at 6 to 10 times idle
/// under a write flood, 50 to 70 times under a watch-event storm); and a
/// request's cost varies a hundredfold (a READ, or a WRITE that fires a
/// hundred watches). So the turn is measured in time: about one request.
/// A quiet client then waits for at most one request of a busy one, that
/// one's flush and a poll (see `docs/benchmarks.md`, "Contained").
pub(crate) const TURN_TIME: Duration = Duration::from_micros(3);

/// What a connection's transport is.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A dom0 process on the Unix socket.
    Socket(SocketConn),
    /// A domain's shared ring.
    Ring(DomainRing),
}

/// What [`Connection::receive`] found, after the packets it appended.
#[derive(Debug)]
pub(crate) enum Received {
    /// More input may be waiting: receive again, budget permitting.
    More,
    /// Nothing more for now; the next readiness event says when.
    Drained,
    /// The peer went away (end of file, or reading failed).
    Closed(String),
    /// The peer broke the protocol or corrupted its ring: cut it off.
    Violation(String),
    /// The guest reset its ring: its queued output, watches and
    /// transactions go (the packets before the reset are handled first).
    Reconnected,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) transport: Transport,
    pub(crate) outbox: Outbox,
    /// Reading is paused until the outbox drains (backpressure).
    paused: bool,
    /// What it has done, for the statistics.
    pub(crate) counters: Counters,
    /// Its state under the `memory` quota's rule ([`crate::memory`]).
    pub(crate) memory: MemoryStall,
    /// Not read for the `outstanding` quota until a flush makes room
    /// (see [`crate::outstanding`]).
    pub(crate) held_outstanding: bool,
    /// Watch events dropped and not yet logged, and when the last line
    /// about them was written.
    drops: (u64, Option<Instant>),
}

/// Least time between two lines about one connection's dropped events.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Connection {
    /// A connection over `transport` with nothing queued.
    pub(crate) fn new(transport: Transport) -> Connection {
        Connection {
            transport,
            outbox: Outbox::default(),
            paused: false,
            counters: Counters::default(),
            memory: MemoryStall::default(),
            held_outstanding: false,
            drops: (0, None),
        }
    }

    /// The domain behind a ring connection (for the logs).
    pub(crate) fn domid(&self) -> Option<DomId> {
        match &self.transport {
            Transport::Socket(_) => None,
            Transport::Ring(ring) => Some(ring.domid),
        }
    }

    /// Whether requests may be read now: not while paused, unless the
    /// guest asks for a reconnection. A kernel that stopped reading its
    /// replies and then rebooted (kexec) wants exactly the queue that
    /// paused it thrown away; refusing to look would leave it unserved
    /// for good.
    pub(crate) fn readable(&self) -> bool {
        !self.paused || self.reconnect_requested()
    }

    /// Whether this is a ring whose guest asks for a reconnection.
    pub(crate) fn reconnect_requested(&self) -> bool {
        matches!(&self.transport, Transport::Ring(ring) if ring.reconnect_requested())
    }

    /// Appends the requests received, at most `budget`.
    pub(crate) fn receive(&mut self, scratch: &mut [u8], packets: &mut Vec<Packet>, budget: usize) -> Received {
        match &mut self.transport {
            Transport::Socket(socket) => socket.receive(scratch, packets, budget),
            Transport::Ring(ring) => ring.receive(packets, budget),
        }
    }

    /// Pauses reading if the queue has grown past the limit; returns
    /// whether reading is paused.
    pub(crate) fn pause_if_full(&mut self, limits: &Limits) -> bool {
        if self.outbox.queued_bytes() > limits.pause_reading_above {
            self.paused = true;
        }
        self.paused
    }

    /// Writes what the transport takes. `Ok(true)` when this unpaused
    /// reading (serve the connection again); `Err` when the connection
    /// must be cut off.
    pub(crate) fn flush(&mut self, id: ConnId, registry: &Registry, limits: &Limits) -> Result<bool, String> {
        let result = match &mut self.transport {
            Transport::Socket(socket) => socket.flush(id, &mut self.outbox, registry),
            Transport::Ring(ring) => ring.flush(&mut self.outbox),
        };
        let (dropped, coalesced) = self.outbox.take_counters();
        self.drops.0 += dropped;
        if self.drops.0 > 0 {
            let now = Instant::now();
            if self.drops.1.is_none_or(|t| now.duration_since(t) >= DROP_LOG_INTERVAL) {
                warn!(
                    conn = id,
                    domid = self.domid(),
                    dropped = self.drops.0,
                    "client is not reading: watch events unread for too long dropped"
                );
                self.drops = (0, Some(now));
            }
        }
        if coalesced > 0 {
            debug!(conn = id, coalesced, "identical pending watch events coalesced");
        }
        result?;
        if self.paused && self.outbox.queued_bytes() <= limits.pause_reading_above / 2 {
            self.paused = false;
            return Ok(true);
        }
        Ok(false)
    }

    /// The guest reset its ring: nothing queued for it is wanted now.
    pub(crate) fn reconnected(&mut self) {
        self.outbox = Outbox::default();
        self.paused = false;
        if let Transport::Ring(ring) = &mut self.transport {
            ring.stopped = false;
        }
    }

    /// A ring cut off for an error: nothing more is served or sent until
    /// the guest reconnects.
    pub(crate) fn stop(&mut self) {
        self.outbox = Outbox::default();
        if let Transport::Ring(ring) = &mut self.transport {
            ring.stopped = true;
        }
    }
}
