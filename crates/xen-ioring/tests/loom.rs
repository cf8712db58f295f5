//! Loom models of the event-index handshake and of data visibility through
//! the indices. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p xen-ioring --test loom --release`.
//!
//! Messages are one byte (`u8`) and rings have one or two entries, so that
//! loom, which branches at every atomic access, explores all interleavings
//! in seconds. Indices start at `u32::MAX` so the handshake crosses the
//! wrap.
//!
//! Each model was seen to fail when the ordering it guards is weakened:
//! without the fence in the back's final check or in its publish (a lost
//! wake-up), and with `Relaxed` instead of `Release` on either producer
//! index (stale request or response bytes).

#![forbid(unsafe_code)]
#![cfg(loom)]

use std::sync::atomic::Ordering;

use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use xen_ioring::{init_shared_ring, BackRing, FrontRing, HEADER_SIZE};
use xen_shared_mem::OwnedMem;

const START: u32 = u32::MAX;

fn ring_of(entries: usize) -> Arc<OwnedMem> {
    let owned = Arc::new(OwnedMem::new(HEADER_SIZE + entries));
    init_shared_ring(owned.mem(), START);
    owned
}

/// An event channel's pending bit: set with a read-modify-write, as Xen's
/// `test_and_set_bit`, and cleared by the receiver with another.
fn notify(pending: &AtomicBool) {
    pending.swap(true, Ordering::SeqCst);
}

/// No lost wake-up on requests: the front publishes two requests one at a
/// time, notifying when `publish_requests` says so; the back takes what it
/// finds and goes to sleep when its final check finds nothing and no
/// event is pending. If it sleeps with a request still queued, an event
/// must be pending. What it takes is exactly the requests, in order.
#[test]
fn loom_requests_no_lost_wakeup() {
    loom::model(|| {
        let owned = ring_of(2);
        let pending = Arc::new(AtomicBool::new(false));
        let back_mem = owned.clone();
        let back_pending = pending.clone();
        let back = thread::spawn(move || {
            let mut back = BackRing::<u8, u8>::attach(back_mem.mem(), START).unwrap();
            let mut got = Vec::new();
            loop {
                while let Some(req) = back.take_request().unwrap() {
                    got.push(req);
                }
                if back.final_check_for_requests().unwrap() {
                    continue;
                }
                if !back_pending.swap(false, Ordering::SeqCst) {
                    break; // asleep until the next event
                }
            }
            got
        });
        let mut front = FrontRing::<u8, u8>::attach(owned.mem(), START).unwrap();
        for req in [7, 8] {
            front.push_request(&req).unwrap();
            if front.publish_requests() {
                notify(&pending);
            }
        }
        let got = back.join().unwrap();
        assert_eq!(&got[..], &[7, 8][..got.len()]);
        if got.len() < 2 {
            assert!(pending.load(Ordering::SeqCst), "back asleep with a request queued and no event pending");
        }
    });
}

/// No lost wake-up on responses: two requests are in flight; the back
/// answers them one at a time, notifying when `publish_responses` says
/// so; the front takes and sleeps as the back does above.
#[test]
fn loom_responses_no_lost_wakeup() {
    loom::model(|| {
        let owned = ring_of(2);
        let pending = Arc::new(AtomicBool::new(false));
        let mut front = FrontRing::<u8, u8>::attach(owned.mem(), START).unwrap();
        for req in [1, 2] {
            front.push_request(&req).unwrap();
        }
        front.publish_requests();

        let back_pending = pending.clone();
        let back_mem = owned.clone();
        let backend = thread::spawn(move || {
            let mut back = BackRing::<u8, u8>::attach(back_mem.mem(), START).unwrap();
            // Published before the spawn, so both are there.
            assert_eq!(back.take_request().unwrap(), Some(1));
            assert_eq!(back.take_request().unwrap(), Some(2));
            for rsp in [11, 12] {
                back.push_response(&rsp).unwrap();
                if back.publish_responses() {
                    notify(&back_pending);
                }
            }
        });
        let mut got = Vec::new();
        loop {
            while let Some(rsp) = front.take_response().unwrap() {
                got.push(rsp);
            }
            if front.final_check_for_responses().unwrap() {
                continue;
            }
            if !pending.swap(false, Ordering::SeqCst) {
                break;
            }
        }
        backend.join().unwrap();
        assert_eq!(&got[..], &[11, 12][..got.len()]);
        if got.len() < 2 {
            assert!(pending.load(Ordering::SeqCst), "front asleep with a response queued and no event pending");
        }
    });
}

/// Data through the indices and slot reuse: a one-entry ring carries two
/// round trips, so the second request overwrites the slot the first
/// response was read from. Each side sees exactly the other's bytes: the
/// Acquire on the peer's producer index makes them visible, and the
/// Release on ours orders our reads of a slot before the peer reuses it.
#[test]
fn loom_one_slot_reused_for_two_round_trips() {
    loom::model(|| {
        let owned = ring_of(1);
        let back_mem = owned.clone();
        let backend = thread::spawn(move || {
            let mut back = BackRing::<u8, u8>::attach(back_mem.mem(), START).unwrap();
            for want in [3u8, 4] {
                let req = loop {
                    match back.take_request().unwrap() {
                        Some(req) => break req,
                        None => thread::yield_now(),
                    }
                };
                assert_eq!(req, want);
                back.push_response(&(req + 100)).unwrap();
                back.publish_responses();
            }
        });
        let mut front = FrontRing::<u8, u8>::attach(owned.mem(), START).unwrap();
        assert_eq!(front.size(), 1);
        for req in [3u8, 4] {
            front.push_request(&req).unwrap();
            front.publish_requests();
            let rsp = loop {
                match front.take_response().unwrap() {
                    Some(rsp) => break rsp,
                    None => thread::yield_now(),
                }
            };
            assert_eq!(rsp, req + 100);
        }
        backend.join().unwrap();
    });
}
