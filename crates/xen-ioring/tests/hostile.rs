//! A peer that writes impossible indices: each end reports the ring
//! corrupt, copies nothing, stays stopped, and never panics.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use proptest::prelude::*;
use xen_ioring::{init_shared_ring, BackRing, FrontRing, Index, RingError, HEADER_SIZE};
use xen_shared_mem::{Ordering, OwnedMem, SharedMem};

type Front<'a> = FrontRing<'a, u32, u32>;
type Back<'a> = BackRing<'a, u32, u32>;

/// Room for 8 entries of 4 bytes.
const BYTES: usize = HEADER_SIZE + 8 * 4;

fn poke(mem: SharedMem<'_>, index: Index, value: u32) {
    mem.store_u32(index.offset(), value, Ordering::SeqCst);
}

#[test]
fn req_prod_more_than_a_ring_ahead_is_bogus_requests_and_sticks() {
    let owned = OwnedMem::new(BYTES);
    init_shared_ring(owned.mem(), 10);
    let mut back = Back::attach(owned.mem(), 10).unwrap();
    poke(owned.mem(), Index::ReqProd, 10 + 9);
    let want = RingError::BogusRequests { req_prod: 19, req_cons: 10, rsp_prod: 10, size: 8 };
    assert_eq!(back.take_request(), Err(want));
    poke(owned.mem(), Index::ReqProd, 11);
    assert_eq!(back.take_request(), Err(want), "a corrupt ring stays stopped");
    assert_eq!(back.final_check_for_requests(), Err(want));
    assert_eq!(back.unconsumed_requests(), Err(want));
    assert_eq!(back.failure(), Some(want));
}

#[test]
fn req_prod_exactly_a_ring_ahead_is_accepted() {
    let owned = OwnedMem::new(BYTES);
    init_shared_ring(owned.mem(), 0);
    let mut back = Back::new(owned.mem()).unwrap();
    poke(owned.mem(), Index::ReqProd, 8);
    for _ in 0..8 {
        assert!(back.take_request().unwrap().is_some());
    }
    assert_eq!(back.take_request(), Ok(None));
    assert_eq!(back.unanswered(), 8);
}

#[test]
fn req_prod_moving_back_behind_taken_requests_is_bogus() {
    let owned = OwnedMem::new(BYTES);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    for i in 0..3 {
        front.push_request(&i).unwrap();
    }
    front.publish_requests();
    for _ in 0..3 {
        back.take_request().unwrap();
    }
    poke(owned.mem(), Index::ReqProd, 1);
    assert!(matches!(back.take_request(), Err(RingError::BogusRequests { req_prod: 1, req_cons: 3, .. })));
}

#[test]
fn req_prod_far_behind_is_bogus_not_four_billion_requests() {
    let owned = OwnedMem::new(BYTES);
    init_shared_ring(owned.mem(), 100);
    let mut back = Back::attach(owned.mem(), 100).unwrap();
    poke(owned.mem(), Index::ReqProd, 99);
    assert!(back.take_request().is_err());
}

#[test]
fn rsp_prod_beyond_requests_in_flight_is_bogus_responses() {
    let owned = OwnedMem::new(BYTES);
    let mut front = Front::new(owned.mem()).unwrap();
    front.push_request(&1).unwrap();
    front.push_request(&2).unwrap();
    front.publish_requests();
    poke(owned.mem(), Index::RspProd, 3);
    let want = RingError::BogusResponses { rsp_prod: 3, rsp_cons: 0, req_prod: 2 };
    assert_eq!(front.take_response(), Err(want));
    poke(owned.mem(), Index::RspProd, 1);
    assert_eq!(front.take_response(), Err(want), "a corrupt ring stays stopped");
    assert_eq!(front.final_check_for_responses(), Err(want));
}

#[test]
fn responses_to_pushed_but_unpublished_requests_are_bogus() {
    let owned = OwnedMem::new(BYTES);
    let mut front = Front::new(owned.mem()).unwrap();
    front.push_request(&1).unwrap();
    poke(owned.mem(), Index::RspProd, 1);
    assert!(matches!(front.take_response(), Err(RingError::BogusResponses { .. })));
}

#[test]
fn rsp_prod_moving_back_is_bogus() {
    let owned = OwnedMem::new(BYTES);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    front.push_request(&1).unwrap();
    front.push_request(&2).unwrap();
    front.publish_requests();
    back.take_request().unwrap();
    back.push_response(&1).unwrap();
    back.publish_responses();
    assert_eq!(front.take_response(), Ok(Some(1)));
    poke(owned.mem(), Index::RspProd, 0);
    assert!(matches!(front.take_response(), Err(RingError::BogusResponses { rsp_prod: 0, rsp_cons: 1, .. })));
}

#[test]
fn a_peer_rewriting_our_own_index_does_not_move_us() {
    let owned = OwnedMem::new(BYTES);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    front.push_request(&5).unwrap();
    front.publish_requests();
    back.take_request().unwrap();
    // The front scribbles on the back's index: the back does not read it
    // back, and its next publish overwrites it.
    poke(owned.mem(), Index::RspProd, 1000);
    back.push_response(&6).unwrap();
    back.publish_responses();
    assert_eq!(owned.mem().load_u32(Index::RspProd.offset(), Ordering::SeqCst), 1);
    assert_eq!(front.take_response(), Ok(Some(6)));
}

/// One step of a hostile front against an honest back.
#[derive(Debug, Clone)]
enum BackStep {
    SetReqProd(u32),
    SetReqProdNear(i8),
    SetReqEvent(u32),
    SetRspEvent(u32),
    Take,
    Respond,
    Publish,
    FinalCheck,
}

fn back_step() -> impl Strategy<Value = BackStep> {
    prop_oneof![
        any::<u32>().prop_map(BackStep::SetReqProd),
        any::<i8>().prop_map(BackStep::SetReqProdNear),
        any::<u32>().prop_map(BackStep::SetReqEvent),
        any::<u32>().prop_map(BackStep::SetRspEvent),
        Just(BackStep::Take),
        Just(BackStep::Respond),
        Just(BackStep::Publish),
        Just(BackStep::FinalCheck),
    ]
}

/// One step of a hostile back against an honest front.
#[derive(Debug, Clone)]
enum FrontStep {
    SetRspProd(u32),
    SetRspProdNear(i8),
    SetReqEvent(u32),
    Push,
    Publish,
    Take,
    FinalCheck,
}

fn front_step() -> impl Strategy<Value = FrontStep> {
    prop_oneof![
        any::<u32>().prop_map(FrontStep::SetRspProd),
        any::<i8>().prop_map(FrontStep::SetRspProdNear),
        any::<u32>().prop_map(FrontStep::SetReqEvent),
        Just(FrontStep::Push),
        Just(FrontStep::Publish),
        Just(FrontStep::Take),
        Just(FrontStep::FinalCheck),
    ]
}

/// Checks a result from a peer-facing call: once an error is seen, the
/// same error comes back for ever.
fn sticky<T>(seen: &mut Option<RingError>, result: Result<T, RingError>) {
    match (result, *seen) {
        (Err(err), None) => *seen = Some(err),
        (Err(err), Some(first)) => assert_eq!(err, first),
        (Ok(_), Some(first)) => panic!("ring worked again after {first}"),
        (Ok(_), None) => {}
    }
}

proptest! {
    #[test]
    fn back_survives_any_front(start: u32, steps in proptest::collection::vec(back_step(), 1..200)) {
        let owned = OwnedMem::new(BYTES);
        let mem = owned.mem();
        init_shared_ring(mem, start);
        let mut back = Back::attach(mem, start).unwrap();
        let mut taken = start;
        let mut seen = None;
        for step in steps {
            match step {
                BackStep::SetReqProd(v) => poke(mem, Index::ReqProd, v),
                BackStep::SetReqProdNear(d) => poke(mem, Index::ReqProd, taken.wrapping_add_signed(i32::from(d))),
                BackStep::SetReqEvent(v) => poke(mem, Index::ReqEvent, v),
                BackStep::SetRspEvent(v) => poke(mem, Index::RspEvent, v),
                BackStep::Take => {
                    let result = back.take_request();
                    if let Ok(Some(_)) = result {
                        taken = taken.wrapping_add(1);
                    }
                    sticky(&mut seen, result);
                }
                BackStep::Respond => {
                    let _ = back.push_response(&0);
                }
                BackStep::Publish => {
                    let _ = back.publish_responses();
                }
                BackStep::FinalCheck => sticky(&mut seen, back.final_check_for_requests()),
            }
            prop_assert!(back.unanswered() <= back.size());
        }
    }

    #[test]
    fn front_survives_any_back(start: u32, steps in proptest::collection::vec(front_step(), 1..200)) {
        let owned = OwnedMem::new(BYTES);
        let mem = owned.mem();
        init_shared_ring(mem, start);
        let mut front = Front::attach(mem, start).unwrap();
        let mut rsp_cons = start;
        let mut seen = None;
        for step in steps {
            match step {
                FrontStep::SetRspProd(v) => poke(mem, Index::RspProd, v),
                FrontStep::SetRspProdNear(d) => {
                    poke(mem, Index::RspProd, rsp_cons.wrapping_add_signed(i32::from(d)));
                }
                FrontStep::SetReqEvent(v) => poke(mem, Index::ReqEvent, v),
                FrontStep::Push => {
                    let _ = front.push_request(&1);
                }
                FrontStep::Publish => {
                    let _ = front.publish_requests();
                }
                FrontStep::Take => {
                    let result = front.take_response();
                    if let Ok(Some(_)) = result {
                        rsp_cons = rsp_cons.wrapping_add(1);
                    }
                    sticky(&mut seen, result);
                }
                FrontStep::FinalCheck => sticky(&mut seen, front.final_check_for_responses()),
            }
            prop_assert!(front.in_flight() <= front.size());
            prop_assert!(front.free_requests() <= front.size());
        }
    }
}
