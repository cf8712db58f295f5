//! Random interleavings of the two ends' operations, in one thread: every
//! request and every response is delivered exactly once, in order, and an
//! end that went to sleep (final check `false`) is woken by a notification
//! whenever something arrives for it.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use proptest::prelude::*;
use xen_ioring::{init_shared_ring, BackRing, FrontRing, HEADER_SIZE};
use xen_shared_mem::OwnedMem;

#[derive(Debug, Clone)]
enum Step {
    FrontPush(u8),
    FrontPublish,
    FrontTake,
    FrontSleep,
    BackTake,
    BackRespond,
    BackPublish,
    BackSleep,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..6).prop_map(Step::FrontPush),
        Just(Step::FrontPublish),
        Just(Step::FrontTake),
        Just(Step::FrontSleep),
        Just(Step::BackTake),
        Just(Step::BackRespond),
        Just(Step::BackPublish),
        Just(Step::BackSleep),
    ]
}

/// The messages: requests number 0, 1, 2 ...; the response to request n
/// is `!n`.
struct World<'a> {
    front: FrontRing<'a, u32, u64>,
    back: BackRing<'a, u32, u64>,
    next_request: u32,
    requests_seen: u32,
    answers_due: std::collections::VecDeque<u32>,
    responses_seen: u32,
    front_asleep: bool,
    back_asleep: bool,
}

impl World<'_> {
    fn step(&mut self, step: &Step) {
        match *step {
            Step::FrontPush(n) => {
                for _ in 0..n {
                    if self.front.push_request(&self.next_request).is_err() {
                        break;
                    }
                    self.next_request += 1;
                }
            }
            Step::FrontPublish => {
                let notify = self.front.publish_requests();
                // A notification wakes the back.
                self.back_asleep &= !notify;
            }
            Step::FrontTake if !self.front_asleep => {
                if let Some(rsp) = self.front.take_response().unwrap() {
                    assert_eq!(rsp, !u64::from(self.responses_seen), "response lost, repeated or reordered");
                    self.responses_seen += 1;
                }
            }
            Step::FrontSleep if !self.front_asleep => {
                self.front_asleep = !self.front.final_check_for_responses().unwrap();
            }
            Step::BackTake if !self.back_asleep => {
                if let Some(req) = self.back.take_request().unwrap() {
                    assert_eq!(req, self.requests_seen, "request lost, repeated or reordered");
                    self.requests_seen += 1;
                    self.answers_due.push_back(req);
                }
            }
            Step::BackRespond if !self.back_asleep => {
                if let Some(&req) = self.answers_due.front() {
                    self.back.push_response(&!u64::from(req)).unwrap();
                    self.answers_due.pop_front();
                }
            }
            Step::BackPublish if !self.back_asleep => {
                let notify = self.back.publish_responses();
                self.front_asleep &= !notify;
            }
            Step::BackSleep if !self.back_asleep => {
                self.back_asleep = !self.back.final_check_for_requests().unwrap();
            }
            // A sleeping end does nothing until it is notified.
            _ => {}
        }
    }

    fn check_no_lost_wakeup(&mut self) {
        if self.back_asleep {
            assert_eq!(self.back.unconsumed_requests().unwrap(), 0, "back asleep with requests waiting");
        }
        if self.front_asleep {
            assert_eq!(self.front.unconsumed_responses().unwrap(), 0, "front asleep with responses waiting");
        }
    }
}

proptest! {
    #[test]
    fn every_message_arrives_once_in_order(
        start: u32,
        entries_log2 in 0u32..4,
        steps in proptest::collection::vec(step(), 1..400),
    ) {
        let owned = OwnedMem::new(HEADER_SIZE + (8usize << entries_log2));
        init_shared_ring(owned.mem(), start);
        let mut world = World {
            front: FrontRing::attach(owned.mem(), start).unwrap(),
            back: BackRing::attach(owned.mem(), start).unwrap(),
            next_request: 0,
            requests_seen: 0,
            answers_due: Default::default(),
            responses_seen: 0,
            front_asleep: false,
            back_asleep: false,
        };
        for step in &steps {
            world.step(step);
            world.check_no_lost_wakeup();
        }
        // Drain: both ends awake, run until every request is answered.
        world.front_asleep = false;
        world.back_asleep = false;
        world.step(&Step::FrontPublish);
        world.back_asleep = false;
        for _ in 0..world.next_request {
            world.step(&Step::BackTake);
            world.step(&Step::BackRespond);
        }
        world.step(&Step::BackPublish);
        for _ in 0..world.next_request {
            world.step(&Step::FrontTake);
        }
        prop_assert_eq!(world.requests_seen, world.next_request);
        prop_assert_eq!(world.responses_seen, world.next_request);
    }
}
