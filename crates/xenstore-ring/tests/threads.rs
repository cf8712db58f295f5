//! A server thread and a guest thread over one heap page: 100,000 requests
//! echoed back as replies, with no loss or reordering.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use xenstore_ring::{
    Field, GuestRing, Incoming, OutputQueue, OwnedPage, ServerConnection, ServerRing, FEATURE_ERROR,
    FEATURE_RECONNECTION,
};
use xenstore_wire::{Decoder, Header};

const MESSAGES: u32 = 100_000;

fn payload(i: u32) -> Vec<u8> {
    let seed = i.to_le_bytes()[0];
    (0..i % 97).map(|j| seed.wrapping_add(j.to_le_bytes()[0])).collect()
}

fn encode(req_id: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header { op: 2, req_id, tx_id: 0, len: u32::try_from(payload.len()).unwrap() };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A "event channel": a counter the receiver watches; waiting spins with
/// `yield_now`.
#[derive(Default)]
struct Channel {
    events: AtomicUsize,
}

#[test]
fn two_threads_exchange_100k_messages_in_order() {
    let owned = OwnedPage::new();
    let start = u32::MAX - 300;
    for (f, v) in [(Field::ReqCons, start), (Field::ReqProd, start), (Field::RspCons, 17), (Field::RspProd, 17)] {
        owned.page().set_field(f, v);
    }
    let to_server = Arc::new(Channel::default());
    let to_guest = Arc::new(Channel::default());
    let done = AtomicBool::new(false);

    thread::scope(|s| {
        let page = owned.page();
        let (wake_guest, my_events) = (to_guest.clone(), to_server.clone());
        let done = &done;
        s.spawn(move || {
            let mut ring = ServerRing::new(page, move || {
                wake_guest.events.fetch_add(1, Ordering::SeqCst);
            });
            ring.set_features(FEATURE_RECONNECTION | FEATURE_ERROR);
            let mut conn = ServerConnection::new(ring);
            let mut output = OutputQueue::new();
            let mut served = 0;
            let mut seen = 0;
            while !(served == MESSAGES && output.is_empty()) {
                while let Some(incoming) = conn.poll().unwrap() {
                    let Incoming::Packet(p) = incoming else { panic!("unexpected reconnect") };
                    assert_eq!(p.header.req_id, served);
                    output.push(encode(p.header.req_id, &p.payload));
                    served += 1;
                }
                output.flush_with(|b| conn.write(b)).unwrap();
                // Wait for an event unless there is work left.
                let now = my_events.events.load(Ordering::SeqCst);
                if now == seen && conn.ring().readable().unwrap() == 0 {
                    thread::yield_now();
                }
                seen = now;
            }
            done.store(true, Ordering::SeqCst);
        });

        let page = owned.page();
        let wake_server = to_server.clone();
        s.spawn(move || {
            let mut guest = GuestRing::new(page, move || {
                wake_server.events.fetch_add(1, Ordering::SeqCst);
            });
            let mut outgoing = Vec::new();
            let mut sent_msgs = 0u32;
            let mut sent = 0;
            let mut decoder = Decoder::new();
            let mut received = 0u32;
            let mut buf = [0u8; 700];
            while received < MESSAGES {
                if sent == outgoing.len() && sent_msgs < MESSAGES {
                    outgoing.clear();
                    sent = 0;
                    for _ in 0..10.min(MESSAGES - sent_msgs) {
                        outgoing.extend(encode(sent_msgs, &payload(sent_msgs)));
                        sent_msgs += 1;
                    }
                }
                let wrote = guest.write(&outgoing[sent..]).unwrap();
                sent += wrote;
                let n = guest.read(&mut buf).unwrap();
                let mut input = &buf[..n];
                while let Some(p) = decoder.decode(&mut input).unwrap() {
                    assert_eq!(p.header.req_id, received, "reply out of order");
                    assert_eq!(p.payload, payload(received), "reply corrupted");
                    received += 1;
                }
                if wrote == 0 && n == 0 {
                    thread::yield_now();
                }
            }
            assert!(decoder.at_boundary());
        });
    });
    assert!(done.load(Ordering::SeqCst));
    let page = owned.page();
    assert_eq!(page.field(Field::ReqCons), page.field(Field::ReqProd));
    assert_eq!(page.field(Field::RspCons), page.field(Field::RspProd));
}
