//! The transaction gate (`src/tx_gate.rs`) in the running daemon:
//! connections whose commits failed with EAGAIN take turns, with bounds.

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

#[test]
fn after_a_conflict_racers_take_turns_and_commit_without_retrying() {
    let mut w = World::new();
    w.set_tx_gate_times(Duration::from_secs(60), Duration::from_secs(60));
    let (a, b) = two_contended(&mut w);
    let ta = start(&mut w, a);
    // b's start waits while a's transaction is open.
    let b_start = w.send(b, Op::TransactionStart, 0, b"\0");
    settle(&mut w);
    assert!(w.reply(b, b_start).is_none(), "b's start went through while a's transaction was open");
    // b sends nothing else meanwhile, so nothing else is held.
    increment(&mut w, a, ta);
    assert_eq!(commit(&mut w, a, ta), Ok(()));
    // a's commit lets b through: no retry needed.
    settle(&mut w);
    let tb = w.reply(b, b_start).expect("b's start answered once a committed").unwrap();
    let tb: u32 = std::str::from_utf8(tb.strip_suffix(b"\0").unwrap()).unwrap().parse().unwrap();
    increment(&mut w, b, tb);
    assert_eq!(commit(&mut w, b, tb), Ok(()));
    assert_eq!(w.call(a, Op::Read, COUNTER).unwrap(), b"102");
}

#[test]
fn an_uncontended_client_never_waits_at_the_gate() {
    let mut w = World::new();
    w.set_tx_gate_times(Duration::from_secs(60), Duration::from_secs(60));
    let (a, _b) = two_contended(&mut w);
    let _ta = start(&mut w, a);
    let c = w.dom0();
    let c_start = w.send(c, Op::TransactionStart, 0, b"\0");
    settle(&mut w);
    assert!(w.reply(c, c_start).is_some(), "a client that never saw EAGAIN waited");
}

#[test]
fn a_transaction_left_open_holds_the_others_only_for_the_turn_limit() {
    let mut w = World::new();
    let hold = Duration::from_millis(50);
    w.set_tx_gate_times(hold, Duration::from_secs(60));
    let (a, b) = two_contended(&mut w);
    let _ta = start(&mut w, a);
    let began = Instant::now();
    // a never ends its transaction: b goes when a's turn runs out (the
    // world waits for the daemon's timer).
    let tb = w.call(b, Op::TransactionStart, b"\0").unwrap();
    let tb: u32 = std::str::from_utf8(tb.strip_suffix(b"\0").unwrap()).unwrap().parse().unwrap();
    assert!(began.elapsed() >= hold, "b went through before a's turn ran out");
    increment(&mut w, b, tb);
    assert_eq!(commit(&mut w, b, tb), Ok(()));
}

#[test]
fn a_waiting_client_that_goes_away_leaves_no_trace() {
    let mut w = World::new();
    w.set_tx_gate_times(Duration::from_secs(60), Duration::from_secs(60));
    let (a, b) = two_contended(&mut w);
    let ta = start(&mut w, a);
    let _ = w.send(b, Op::TransactionStart, 0, b"\0");
    settle(&mut w);
    w.close(b);
    settle(&mut w);
    increment(&mut w, a, ta);
    assert_eq!(commit(&mut w, a, ta), Ok(()));
    // The gate is free again: a contended client goes at once.
    let tc = start(&mut w, a);
    assert_eq!(commit(&mut w, a, tc), Ok(()));
}
