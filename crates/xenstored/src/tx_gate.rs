//! The transaction gate: connections whose commits keep failing with
//! `EAGAIN` take turns instead of racing.
//!
//! A commit fails when a node its transaction read or wrote changed since
//! the transaction started, which is as fine a rule as the C daemon's;
//! what decides how often it fails is how many transactions on the same
//! nodes are open at once. Eight clients incrementing one counter each
//! open a transaction, and all but the first to commit fail and start
//! over: 4.5 retries per commit, where C's daemon, slower, saw 3.4.
//!
//! So a connection whose commit failed is *contended* for a while
//! ([`CONTENDED_FOR`]), and a transaction a contended connection starts
//! passes a gate that lets one such transaction work at a time. Its
//! TRANSACTION_START is answered at once; its first request waits, in
//! arrival order, until the transaction before it ends, and the engine
//! then moves the untouched transaction to the store as it is at that
//! moment (`Engine::restart_untouched_transaction`), so it sees the
//! commit it waited for. Racers then commit in turn with no retry at all,
//! and the start's round trip is off the turn's critical path (holding
//! the start instead cost a third of the commits per second). A request
//! that had to wait keeps its connection contended; a connection that
//! finds the gate free and nobody waiting stops being contended once its
//! time is up, and then works freely again.
//!
//! Connections that never saw `EAGAIN` never meet the gate. The gate
//! holds only the first request of a transaction that has done nothing
//! yet (so no other transaction can be waiting for it), and never for
//! long, whatever a guest does:
//! - the transaction let through keeps the gate at most [`HOLD_MAX`]
//!   (a guest that opens one and sleeps costs the next in line that much,
//!   and only connections that are themselves contended);
//! - a request waits at most [`WAIT_MAX`] in all, then goes through as
//!   it would without the gate;
//! - each connection has at most one request waiting (the daemon reads
//!   no further from it meanwhile), so the gate holds one request per
//!   connection at most.
//!
//! Pure state, the clock passed in; the server parks and resumes the
//! connections.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use xenstore_db::ConnId;
use xenstore_wire::Packet;

/// How long a connection stays contended after a commit of it failed
/// with `EAGAIN`, or after its start had to wait.
pub(crate) const CONTENDED_FOR: Duration = Duration::from_millis(20);

/// The longest the transaction let through holds the gate: a commit
/// round on a busy ring is well under it; past it, the next in line goes
/// (and the transactions overlap, as they would with no gate).
pub(crate) const HOLD_MAX: Duration = Duration::from_millis(2);

/// The longest a start waits at the gate.
pub(crate) const WAIT_MAX: Duration = Duration::from_millis(10);

/// A transaction's first request held at the gate.
#[derive(Debug)]
struct Parked {
    packet: Packet,
    arrived: Instant,
    /// Let through; the server handles it at the connection's next turn.
    admitted: bool,
}

/// The gate's state (see the module's documentation).
#[derive(Debug)]
pub(crate) struct TxGate {
    /// [`HOLD_MAX`], and [`WAIT_MAX`] (other values only in tests).
    pub(crate) hold_max: Duration,
    pub(crate) wait_max: Duration,
    /// Contended connections, and until when.
    contended: FxHashMap<ConnId, Instant>,
    /// The transaction each contended connection started and has not yet
    /// used: its first request passes the gate.
    awaiting: FxHashMap<ConnId, u32>,
    /// The connection whose transaction holds the gate, and since when.
    holder: Option<(ConnId, Instant)>,
    /// The starts waiting, oldest first.
    queue: VecDeque<ConnId>,
    /// Each waiting or admitted start.
    parked: FxHashMap<ConnId, Parked>,
    /// Connections whose start was let through since the server last
    /// asked ([`TxGate::take_admitted`]).
    admitted: Vec<ConnId>,
}

impl Default for TxGate {
    fn default() -> TxGate {
        TxGate {
            hold_max: HOLD_MAX,
            wait_max: WAIT_MAX,
            contended: FxHashMap::default(),
            awaiting: FxHashMap::default(),
            holder: None,
            queue: VecDeque::new(),
            parked: FxHashMap::default(),
            admitted: Vec::new(),
        }
    }
}

impl TxGate {
    /// `conn`, which had no other transaction open, started transaction
    /// `tx_id`: if it is contended, the transaction's first request will
    /// pass the gate ([`TxGate::first_request`]).
    pub(crate) fn started(&mut self, conn: ConnId, tx_id: u32, now: Instant) {
        let Some(&until) = self.contended.get(&conn) else { return };
        if now >= until {
            self.contended.remove(&conn);
            return;
        }
        self.awaiting.insert(conn, tx_id);
    }

    /// Whether a request of `conn` in transaction `tx_id` is the first of
    /// a transaction that must pass the gate.
    pub(crate) fn awaits(&self, conn: ConnId, tx_id: u32) -> bool {
        !self.awaiting.is_empty() && self.awaiting.get(&conn) == Some(&tx_id)
    }

    /// The first request of a transaction that [`TxGate::awaits`]: the
    /// packet back to handle now (its transaction holds the gate), or
    /// `None` when it waits (the server then stops reading `conn` until
    /// [`TxGate::take_admitted`] names it). Either way the server moves
    /// the transaction to the store as it is when the request goes.
    pub(crate) fn first_request(&mut self, conn: ConnId, packet: Packet, now: Instant) -> Option<Packet> {
        self.awaiting.remove(&conn);
        self.expire(now);
        if self.holder.is_none() && self.queue.is_empty() {
            self.holder = Some((conn, now));
            return Some(packet);
        }
        // It meets contention again: it stays contended.
        self.contended.insert(conn, now + CONTENDED_FOR);
        self.queue.push_back(conn);
        self.parked.insert(conn, Parked { packet, arrived: now, admitted: false });
        None
    }

    /// After a TRANSACTION_START or TRANSACTION_END of `conn` was
    /// handled: `open` transactions are left to it, and `eagain` says
    /// whether a commit failed for a conflict.
    pub(crate) fn after(&mut self, conn: ConnId, open: usize, eagain: bool, now: Instant) {
        if eagain {
            self.contended.insert(conn, now + CONTENDED_FOR);
        }
        if open == 0 && self.holder.is_some_and(|(h, _)| h == conn) {
            self.pass_on(now);
        }
    }

    /// `conn` is gone or was reset: its start, its turn, its state.
    pub(crate) fn forget(&mut self, conn: ConnId, now: Instant) {
        self.contended.remove(&conn);
        self.awaiting.remove(&conn);
        if self.parked.remove(&conn).is_some() {
            self.queue.retain(|c| *c != conn);
            self.admitted.retain(|c| *c != conn);
        }
        if self.holder.is_some_and(|(h, _)| h == conn) {
            self.pass_on(now);
        }
    }

    /// Whether `conn` has a request waiting (the server does not read it).
    pub(crate) fn is_waiting(&self, conn: ConnId) -> bool {
        !self.parked.is_empty() && self.parked.get(&conn).is_some_and(|p| !p.admitted)
    }

    /// The request of `conn` that was let through, to handle before
    /// anything else it sent.
    pub(crate) fn take_start(&mut self, conn: ConnId) -> Option<Packet> {
        if self.parked.is_empty() || !self.parked.get(&conn).is_some_and(|p| p.admitted) {
            return None;
        }
        self.parked.remove(&conn).map(|p| p.packet)
    }

    /// The connections let through since the last call, to serve.
    pub(crate) fn take_admitted(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.admitted)
    }

    /// Whether a request is held, waiting or let through but not yet
    /// handled (a live update hands over none: [`TxGate::open`]).
    pub(crate) fn holds_any(&self) -> bool {
        !self.parked.is_empty()
    }

    /// Lets every waiting request through.
    pub(crate) fn open(&mut self) {
        for conn in self.queue.drain(..) {
            if let Some(p) = self.parked.get_mut(&conn) {
                p.admitted = true;
                self.admitted.push(conn);
            }
        }
    }

    /// Lets through what waited its longest, passes on a turn held its
    /// longest, and gives a free gate to the next in line.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.holder.is_some_and(|(_, since)| now >= since + self.hold_max) {
            self.holder = None;
        }
        while let Some(&conn) = self.queue.front() {
            let Some(p) = self.parked.get_mut(&conn) else {
                self.queue.pop_front();
                continue;
            };
            if now < p.arrived + self.wait_max {
                break;
            }
            p.admitted = true;
            self.queue.pop_front();
            self.admitted.push(conn);
        }
        if self.holder.is_none() {
            self.pass_on(now);
        }
    }

    /// When [`TxGate::expire`] has something to do next, if anything
    /// waits.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let first = self.parked.get(self.queue.front()?)?.arrived + self.wait_max;
        Some(match self.holder {
            Some((_, since)) => first.min(since + self.hold_max),
            None => first,
        })
    }

    /// The turn ends: the next request in line holds the gate.
    fn pass_on(&mut self, now: Instant) {
        self.holder = None;
        while let Some(conn) = self.queue.pop_front() {
            if let Some(p) = self.parked.get_mut(&conn) {
                p.admitted = true;
                self.admitted.push(conn);
                self.holder = Some((conn, now));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore_wire::Header;

    /// A READ in transaction `tx_id`, the transaction's first request.
    fn first(req_id: u32, tx_id: u32) -> Packet {
        Packet {
            header: Header { op: xenstore_wire::Op::Read as u32, req_id, tx_id, len: 2 },
            payload: b"a\0".to_vec(),
        }
    }

    /// `conn` starts a transaction and sends its first request: whether
    /// it goes at once (`false`: it waits at the gate).
    fn begin(gate: &mut TxGate, conn: ConnId, now: Instant) -> bool {
        let tx = 100 + u32::try_from(conn).expect("a small test connection id");
        gate.started(conn, tx, now);
        if !gate.awaits(conn, tx) {
            return true;
        }
        gate.first_request(conn, first(tx, tx), now).is_some()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_connection_that_never_saw_eagain_never_waits() {
        let t0 = Instant::now();
        let mut gate = TxGate::default();
        assert!(begin(&mut gate, 1, t0));
        assert!(begin(&mut gate, 2, t0));
        assert!(!gate.is_waiting(2));
    }

    #[test]
    fn contended_connections_take_turns_in_arrival_order() {
        let t0 = Instant::now();
        let mut gate = TxGate::default();
        for conn in 1..=3 {
            gate.after(conn, 0, true, t0);
        }
        assert!(begin(&mut gate, 1, t0), "the gate is free");
        assert!(!begin(&mut gate, 2, t0));
        assert!(!begin(&mut gate, 3, t0));
        assert!(gate.is_waiting(2) && gate.is_waiting(3));
        assert!(gate.take_admitted().is_empty());

        // 1 commits: 2 goes, 3 still waits.
        gate.after(1, 0, false, t0 + ms(1));
        assert_eq!(gate.take_admitted(), vec![2]);
        assert!(!gate.is_waiting(2) && gate.is_waiting(3));
        assert_eq!(gate.take_start(2).map(|p| p.header.tx_id), Some(102));
        assert_eq!(gate.take_start(2).map(|p| p.header.tx_id), None, "handed over once");

        // 1 starts again while 2 holds the gate: behind 3.
        assert!(!begin(&mut gate, 1, t0 + ms(1)));
        gate.after(2, 0, false, t0 + ms(1));
        assert_eq!(gate.take_admitted(), vec![3]);
        gate.after(3, 0, false, t0 + ms(1));
        assert_eq!(gate.take_admitted(), vec![1]);
    }

    #[test]
    fn contention_wears_off_when_nobody_waits() {
        let t0 = Instant::now();
        let mut gate = TxGate::default();
        gate.after(1, 0, true, t0);
        assert!(begin(&mut gate, 1, t0));
        gate.after(1, 0, false, t0);
        gate.after(2, 0, true, t0);
        // Past the contended time, 2 starts alongside 1's turn.
        assert!(begin(&mut gate, 1, t0));
        assert!(begin(&mut gate, 2, t0 + CONTENDED_FOR));
    }

    #[test]
    fn a_sleeping_holder_keeps_the_gate_at_most_hold_max() {
        let t0 = Instant::now();
        let mut gate = TxGate::default();
        gate.after(1, 0, true, t0);
        gate.after(2, 0, true, t0);
        assert!(begin(&mut gate, 1, t0));
        assert!(!begin(&mut gate, 2, t0));
        assert_eq!(gate.next_deadline(), Some(t0 + HOLD_MAX));
        gate.expire(t0 + HOLD_MAX - ms(1) / 2);
        assert!(gate.take_admitted().is_empty());
        gate.expire(t0 + HOLD_MAX);
        assert_eq!(gate.take_admitted(), vec![2]);
        // 1's late end does not pass 2's turn on.
        assert!(begin(&mut gate, 3, t0 + HOLD_MAX), "3 is not contended");
        gate.after(1, 0, false, t0 + HOLD_MAX);
        gate.after(4, 0, true, t0 + HOLD_MAX);
        assert!(!begin(&mut gate, 4, t0 + HOLD_MAX), "2 still holds the gate");
    }

    #[test]
    fn no_start_waits_longer_than_wait_max() {
        let t0 = Instant::now();
        let mut gate = TxGate::default();
        for conn in 1..=20 {
            gate.after(conn, 0, true, t0);
        }
        assert!(begin(&mut gate, 1, t0));
        for conn in 2..=20 {
            assert!(!begin(&mut gate, conn, t0));
        }
        // Nobody ends a transaction: each holder gives way at HOLD_MAX,
        // and everyone still waiting goes at WAIT_MAX.
        let mut now = t0;
        let mut through = Vec::new();
        while let Some(at) = gate.next_deadline() {
            assert!(at <= t0 + WAIT_MAX, "a deadline past WAIT_MAX");
            now = at;
            gate.expire(now);
            through.extend(gate.take_admitted());
        }
        through.sort_unstable();
        assert_eq!(through, (2..=20).collect::<Vec<_>>());
        assert!(now <= t0 + WAIT_MAX);
        assert!(!(2..=20).any(|c| gate.is_waiting(c)));
    }

    /// Connections 1 to 3 contended: 1 holds the gate, 2 and 3 wait.
    fn three_in_line() -> (TxGate, Instant) {
        let t0 = Instant::now();
        let mut gate = TxGate::default();
        for conn in 1..=3 {
            gate.after(conn, 0, true, t0);
        }
        assert!(begin(&mut gate, 1, t0));
        assert!(!begin(&mut gate, 2, t0));
        assert!(!begin(&mut gate, 3, t0));
        (gate, t0)
    }

    #[test]
    fn a_connection_that_goes_gives_up_its_turn_and_its_place() {
        let (mut gate, t0) = three_in_line();
        gate.forget(2, t0);
        assert!(!gate.is_waiting(2));
        gate.forget(1, t0);
        assert_eq!(gate.take_admitted(), vec![3], "1's turn passes to 3, 2 is gone");
        assert!(gate.take_start(2).is_none());
    }

    #[test]
    fn opening_lets_everyone_through() {
        let (mut gate, _) = three_in_line();
        assert!(gate.holds_any());
        gate.open();
        assert!(gate.holds_any(), "let through, not yet handled");
        assert_eq!(gate.take_admitted(), vec![2, 3]);
        assert!(gate.take_start(2).is_some() && gate.take_start(3).is_some());
        assert!(!gate.holds_any());
    }
}
