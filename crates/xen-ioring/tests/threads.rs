//! A front thread and a back thread over real memory: 10,000 round trips,
//! each side sleeping on a simulated event channel whenever its final
//! check says so. A lost wake-up shows as a side that waits for an event
//! that never comes (caught by a deadline) rather than a hang.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use xen_ioring::{init_shared_ring, BackRing, FrontRing, HEADER_SIZE};
use xen_shared_mem::OwnedMem;

const ROUND_TRIPS: u64 = 10_000;
/// Long enough for any scheduler; a lost wake-up waits for ever.
const DEADLINE: Duration = Duration::from_secs(20);

/// An event channel: a pending bit set with a read-modify-write, as Xen's
/// `test_and_set_bit`, and cleared by the waiter with another.
#[derive(Default)]
struct EventChannel {
    pending: AtomicBool,
    sent: AtomicUsize,
}

impl EventChannel {
    fn notify(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.pending.swap(true, Ordering::SeqCst);
    }

    /// Waits for an event (or `stop`), panicking at the deadline.
    fn wait(&self, stop: &AtomicBool, who: &str) {
        let start = Instant::now();
        while !self.pending.swap(false, Ordering::SeqCst) {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            assert!(start.elapsed() < DEADLINE, "{who} waited {DEADLINE:?} for an event: lost wake-up");
            thread::yield_now();
        }
    }
}

fn response_to(req: u64) -> u32 {
    u32::try_from(req % 1_000_003).unwrap() ^ 0x5a5a_5a5a
}

/// `window`: the most requests the front keeps in flight (1 is strict
/// ping-pong); it pushes at most `batch` before each publish.
fn round_trips(bytes: usize, start: u32, window: u32, batch: u64) {
    let owned = OwnedMem::new(bytes);
    init_shared_ring(owned.mem(), start);
    let to_back = EventChannel::default();
    let to_front = EventChannel::default();
    let done = AtomicBool::new(false);

    thread::scope(|s| {
        let (to_back, to_front, done) = (&to_back, &to_front, &done);
        let mem = owned.mem();
        s.spawn(move || {
            let mut back = BackRing::<u64, u32>::attach(mem, start).unwrap();
            loop {
                while let Some(req) = back.take_request().unwrap() {
                    back.push_response(&response_to(req)).unwrap();
                }
                if back.publish_responses() {
                    to_front.notify();
                }
                if back.final_check_for_requests().unwrap() {
                    continue;
                }
                if done.load(Ordering::SeqCst) {
                    return;
                }
                to_back.wait(done, "back");
            }
        });

        let mut front = FrontRing::<u64, u32>::attach(mem, start).unwrap();
        let (mut sent, mut received) = (0u64, 0u64);
        while received < ROUND_TRIPS {
            let mut pushed = 0;
            while sent < ROUND_TRIPS && pushed < batch && front.in_flight() + front.unpublished() < window {
                front.push_request(&sent).unwrap();
                sent += 1;
                pushed += 1;
            }
            if front.publish_requests() {
                to_back.notify();
            }
            while let Some(rsp) = front.take_response().unwrap() {
                assert_eq!(rsp, response_to(received), "response {received} lost, repeated or reordered");
                received += 1;
            }
            let can_send = sent < ROUND_TRIPS && front.in_flight() < window;
            if received == ROUND_TRIPS || can_send || front.final_check_for_responses().unwrap() {
                continue;
            }
            to_front.wait(&AtomicBool::new(false), "front");
        }
        done.store(true, Ordering::SeqCst);
        to_back.notify();
    });
    assert!(to_back.sent.load(Ordering::Relaxed) >= 1);
}

#[test]
fn ten_thousand_round_trips_one_at_a_time() {
    round_trips(4096, 0, 1, 1);
}

#[test]
fn ten_thousand_round_trips_in_batches_across_the_wrap() {
    round_trips(HEADER_SIZE + 8 * 8, u32::MAX - 1000, 8, 5);
}

#[test]
fn ten_thousand_round_trips_over_a_four_page_ring() {
    round_trips(4 * 4096, 7, 1024, 300);
}
