//! Loom models of the index handshake. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p xenstore-ring --release loom`.

#![forbid(unsafe_code)]
#![cfg(loom)]

use std::sync::atomic::Ordering;

use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use xenstore_ring::{Field, GuestRing, OwnedPage, ServerRing};

/// Requests start 1 byte before the end of the queue, so the 2-byte
/// message wraps.
const START: u32 = 1023;

fn page_at(start: u32) -> Arc<OwnedPage> {
    let owned = Arc::new(OwnedPage::new());
    for f in [Field::ReqCons, Field::ReqProd, Field::RspCons, Field::RspProd] {
        owned.page().set_field(f, start);
    }
    owned
}

/// Whatever the server reads is exactly a prefix of what the guest wrote:
/// the Acquire on the producer index makes the bytes visible. Then the
/// server answers and the guest sees exactly the answer.
#[test]
fn loom_bytes_visible_through_indices() {
    loom::model(|| {
        let owned = page_at(START);
        let server_page = owned.clone();
        let server = thread::spawn(move || {
            let mut ring = ServerRing::new(server_page.page(), || {});
            let mut buf = [0u8; 4];
            let n = ring.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], &b"ab"[..n]);
            if n > 0 {
                assert_eq!(ring.write(&buf[..n]).unwrap(), n);
            }
            n
        });
        let mut guest = GuestRing::new(owned.page(), || {});
        assert_eq!(guest.write(b"ab").unwrap(), 2);
        let n = server.join().unwrap();
        let mut back = [0u8; 4];
        let got = guest.read(&mut back).unwrap();
        assert_eq!(got, n);
        assert_eq!(&back[..got], &b"ab"[..got]);
    });
}

/// No lost wake-up: the guest writes twice with notification suppression;
/// the server drains and "sleeps" when a read finds nothing and no
/// notification is pending. When it sleeps with bytes still queued, a
/// notification must be pending.
#[test]
fn loom_no_lost_wakeup_on_requests() {
    loom::model(|| {
        let owned = page_at(START);
        let notified = Arc::new(AtomicBool::new(false));
        let server_page = owned.clone();
        let server_notified = notified.clone();
        let server = thread::spawn(move || {
            let mut ring = ServerRing::new(server_page.page(), || {});
            let mut got = Vec::new();
            let mut buf = [0u8; 4];
            loop {
                let n = ring.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 && !server_notified.swap(false, Ordering::SeqCst) {
                    break; // would sleep until the next event
                }
            }
            got
        });
        let guest_notified = notified.clone();
        // Sending an event sets the pending bit with a read-modify-write,
        // as Xen's event channels do (test_and_set_bit); the server clears
        // it with another (swap). (A plain store here makes loom report a
        // final `false` that the C++ model does not allow.)
        let mut guest = GuestRing::new(owned.page(), move || {
            guest_notified.swap(true, Ordering::SeqCst);
        });
        assert_eq!(guest.write(b"x").unwrap(), 1);
        assert_eq!(guest.write(b"y").unwrap(), 1);
        let got = server.join().unwrap();
        assert_eq!(&got[..], &b"xy"[..got.len()]);
        if got.len() < 2 {
            assert!(notified.load(Ordering::SeqCst), "server asleep with data pending");
        }
    });
}
