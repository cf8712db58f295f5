//! The transaction gate (`src/tx_gate.rs`) in the running daemon:
//! transactions of connections whose commits failed with EAGAIN take
//! turns (their first requests wait), with bounds.

use std::time::{Duration, Instant};

use xenstore::{ErrorCode, Op};
use xenstored::testing::{ClientId, World};

const COUNTER: &[u8] = b"/counter\0";

fn start(w: &mut World, who: ClientId) -> u32 {
    let tx = call(w, who, 0, Op::TransactionStart, b"\0").expect("a transaction");
    std::str::from_utf8(tx.strip_suffix(b"\0").unwrap_or(&tx)).unwrap().parse().unwrap()
}

/// A request and its reply, stepping the world without waiting for its
/// timers (`World::call_in` would sleep until the gate's deadline and let
/// a waiting start through).
fn call(w: &mut World, who: ClientId, tx: u32, op: Op, payload: &[u8]) -> xenstored::testing::ReplyResult {
    let req = w.send(who, op, tx, payload);
    settle(w);
    w.reply(who, req).expect("a reply")
}

/// Reads the counter and writes it plus one in `tx`.
fn increment(w: &mut World, who: ClientId, tx: u32) {
    let n: u64 = String::from_utf8(call(w, who, tx, Op::Read, COUNTER).unwrap()).unwrap().parse().unwrap();
    call(w, who, tx, Op::Write, format!("/counter\0{}", n + 1).as_bytes()).unwrap();
}

fn commit(w: &mut World, who: ClientId, tx: u32) -> Result<(), Option<ErrorCode>> {
    call(w, who, tx, Op::TransactionEnd, b"T\0").map(|_| ()).map_err(|e| e.code())
}

/// Two clients whose commits both failed with EAGAIN (contended).
fn two_contended(w: &mut World) -> (ClientId, ClientId) {
    let setup = w.dom0();
    w.call(setup, Op::Write, b"/counter\x000").unwrap();
    let (a, b) = (w.dom0(), w.dom0());
    let (ta, tb) = (start(w, a), start(w, b));
    increment(w, a, ta);
    increment(w, b, tb);
    w.call(setup, Op::Write, b"/counter\x00100").unwrap();
    assert_eq!(commit(w, a, ta), Err(Some(ErrorCode::EAGAIN)));
    assert_eq!(commit(w, b, tb), Err(Some(ErrorCode::EAGAIN)));
    (a, b)
}

/// Runs rounds until nothing moves (no waiting on timers).
fn settle(w: &mut World) {
    for _ in 0..1000 {
        if !w.round() {
            return;
        }
    }
    panic!("still busy");
}

fn read_counter(w: &mut World, who: ClientId, tx: u32) -> u64 {
    String::from_utf8(call(w, who, tx, Op::Read, COUNTER).unwrap()).unwrap().parse().unwrap()
}

#[test]
fn after_a_conflict_racers_take_turns_and_commit_without_retrying() {
    let mut w = World::new();
    w.set_tx_gate_times(Duration::from_secs(60), Duration::from_secs(60));
    let (a, b) = two_contended(&mut w);
    let ta = start(&mut w, a);
    // b's start is answered at once: the gate holds first requests.
    let tb = start(&mut w, b);
    // a's first request takes the turn.
    assert_eq!(read_counter(&mut w, a, ta), 100);
    // b's first request waits while a's transaction is open.
    let b_read = w.send(b, Op::Read, tb, COUNTER);
    settle(&mut w);
    assert!(w.reply(b, b_read).is_none(), "b's first request went through while a's transaction was open");
    call(&mut w, a, ta, Op::Write, b"/counter\x00101").unwrap();
    assert_eq!(commit(&mut w, a, ta), Ok(()));
    // a's commit lets b through, in a transaction moved to after it: b
    // sees 101 and needs no retry.
    settle(&mut w);
    let seen = w.reply(b, b_read).expect("b's read answered once a committed").unwrap();
    assert_eq!(seen, b"101", "b's transaction still saw the store of its start");
    call(&mut w, b, tb, Op::Write, b"/counter\x00102").unwrap();
    assert_eq!(commit(&mut w, b, tb), Ok(()));
    assert_eq!(w.call(a, Op::Read, COUNTER).unwrap(), b"102");
}

#[test]
fn an_uncontended_client_never_waits_at_the_gate() {
    let mut w = World::new();
    w.set_tx_gate_times(Duration::from_secs(60), Duration::from_secs(60));
    let (a, _b) = two_contended(&mut w);
    let ta = start(&mut w, a);
    read_counter(&mut w, a, ta);
    let c = w.dom0();
    let tc = start(&mut w, c);
    let c_read = w.send(c, Op::Read, tc, COUNTER);
    settle(&mut w);
    assert!(w.reply(c, c_read).is_some(), "a client that never saw EAGAIN waited");
}

#[test]
fn a_transaction_left_open_holds_the_others_only_for_the_turn_limit() {
    let mut w = World::new();
    let hold = Duration::from_millis(50);
    w.set_tx_gate_times(hold, Duration::from_secs(60));
    let (a, b) = two_contended(&mut w);
    let ta = start(&mut w, a);
    read_counter(&mut w, a, ta);
    let tb = start(&mut w, b);
    let began = Instant::now();
    // a never ends its transaction: b goes when a's turn runs out (the
    // world waits for the daemon's timer).
    let n: u64 = String::from_utf8(w.call_in(b, tb, Op::Read, COUNTER).unwrap()).unwrap().parse().unwrap();
    assert!(began.elapsed() >= hold, "b went through before a's turn ran out");
    call(&mut w, b, tb, Op::Write, format!("/counter\0{}", n + 1).as_bytes()).unwrap();
    assert_eq!(commit(&mut w, b, tb), Ok(()));
}

#[test]
fn a_waiting_client_that_goes_away_leaves_no_trace() {
    let mut w = World::new();
    w.set_tx_gate_times(Duration::from_secs(60), Duration::from_secs(60));
    let (a, b) = two_contended(&mut w);
    let ta = start(&mut w, a);
    let tb = start(&mut w, b);
    increment(&mut w, a, ta);
    let _ = w.send(b, Op::Read, tb, COUNTER);
    settle(&mut w);
    w.close(b);
    settle(&mut w);
    assert_eq!(commit(&mut w, a, ta), Ok(()));
    // The gate is free again: a contended client goes at once.
    let tc = start(&mut w, a);
    let c_read = w.send(a, Op::Read, tc, COUNTER);
    settle(&mut w);
    assert!(w.reply(a, c_read).is_some(), "the gate stayed held by a client that went away");
    assert_eq!(commit(&mut w, a, tc), Ok(()));
}
