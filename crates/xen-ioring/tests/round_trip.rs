//! Both ends over one buffer in one thread: delivery, batching, the
//! notify decisions, full rings, wrap-around, multi-page rings.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use xen_ioring::{init_shared_ring, ring_bytes, BackRing, FrontRing, Index, RingFull, HEADER_SIZE};
use xen_shared_mem::{Ordering, OwnedMem};

type Front<'a> = FrontRing<'a, u64, u32>;
type Back<'a> = BackRing<'a, u64, u32>;

#[test]
fn new_front_initialises_the_shared_header() {
    let owned = OwnedMem::pages(1);
    let mem = owned.mem();
    mem.fill(0, HEADER_SIZE, 0xaa);
    let front = Front::new(mem).unwrap();
    assert_eq!(front.size(), 256); // (4096 - 64) / 8 = 504 -> 256
    let words: Vec<u32> = Index::ALL.iter().map(|i| mem.load_u32(i.offset(), Ordering::SeqCst)).collect();
    assert_eq!(words, [0, 1, 0, 1]);
    let mut rest = [0xffu8; HEADER_SIZE - 16];
    mem.read_bytes(16, &mut rest);
    assert!(rest.iter().all(|&b| b == 0));
}

#[test]
fn request_and_response_round_trip_with_notifications() {
    let owned = OwnedMem::pages(1);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();

    front.push_request(&0x1122_3344_5566_7788).unwrap();
    assert_eq!(back.take_request().unwrap(), None, "unpublished requests are invisible");
    assert!(front.publish_requests(), "req_event 1 asks for the first request");
    assert_eq!(back.take_request().unwrap(), Some(0x1122_3344_5566_7788));
    assert_eq!(back.take_request().unwrap(), None);

    back.push_response(&7).unwrap();
    assert!(back.publish_responses(), "rsp_event 1 asks for the first response");
    assert_eq!(front.take_response().unwrap(), Some(7));
    assert_eq!(front.take_response().unwrap(), None);
    assert_eq!(front.in_flight(), 0);
}

#[test]
fn publishing_again_without_a_final_check_does_not_notify() {
    let owned = OwnedMem::pages(1);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    front.push_request(&1).unwrap();
    assert!(front.publish_requests());
    front.push_request(&2).unwrap();
    assert!(!front.publish_requests(), "the back is awake: it has not asked again");
    assert_eq!(back.take_request().unwrap(), Some(1));
    assert_eq!(back.take_request().unwrap(), Some(2));
    assert!(!back.final_check_for_requests().unwrap());
    front.push_request(&3).unwrap();
    assert!(front.publish_requests(), "the back went to sleep asking for the next one");
    assert!(back.final_check_for_requests().unwrap());
}

#[test]
fn final_check_sees_requests_published_before_it() {
    let owned = OwnedMem::pages(1);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    front.push_request(&1).unwrap();
    front.publish_requests();
    assert!(back.final_check_for_requests().unwrap());
}

#[test]
fn a_batch_is_published_with_one_notify_decision() {
    let owned = OwnedMem::pages(1);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    for i in 0..100 {
        front.push_request(&i).unwrap();
    }
    assert_eq!(front.unpublished(), 100);
    assert!(front.publish_requests());
    assert!(!front.publish_requests(), "nothing new, nothing to notify");
    assert_eq!(back.unconsumed_requests().unwrap(), 100);
    for i in 0..100 {
        assert_eq!(back.take_request().unwrap(), Some(i));
        back.push_response(&u32::try_from(i).unwrap()).unwrap();
    }
    assert!(back.publish_responses());
    assert_eq!(front.unconsumed_responses().unwrap(), 100);
}

#[test]
fn front_is_full_after_ring_size_requests() {
    let owned = OwnedMem::new(HEADER_SIZE + 4 * 8);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    for i in 0..4 {
        front.push_request(&i).unwrap();
    }
    assert!(front.is_full());
    assert_eq!(front.push_request(&4), Err(RingFull));
    front.publish_requests();
    assert_eq!(back.take_request().unwrap(), Some(0));
    back.push_response(&0).unwrap();
    assert!(front.is_full(), "a slot frees only when its response is taken");
    back.publish_responses();
    assert_eq!(front.take_response().unwrap(), Some(0));
    assert_eq!(front.free_requests(), 1);
    front.push_request(&4).unwrap();
}

#[test]
fn back_cannot_respond_to_a_request_it_has_not_taken() {
    let owned = OwnedMem::pages(1);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    assert_eq!(back.push_response(&1), Err(RingFull));
    front.push_request(&1).unwrap();
    front.publish_requests();
    assert_eq!(back.push_response(&1), Err(RingFull), "published but not taken");
    back.take_request().unwrap();
    back.push_response(&1).unwrap();
    assert_eq!(back.push_response(&2), Err(RingFull));
}

#[test]
fn indices_wrap_around_u32() {
    let owned = OwnedMem::new(HEADER_SIZE + 8 * 8);
    let start = u32::MAX - 5;
    init_shared_ring(owned.mem(), start);
    let mut front = Front::attach(owned.mem(), start).unwrap();
    let mut back = Back::attach(owned.mem(), start).unwrap();
    for round in 0..10u64 {
        for i in 0..8 {
            front.push_request(&(round * 8 + i)).unwrap();
        }
        front.publish_requests();
        for i in 0..8 {
            let req = back.take_request().unwrap().unwrap();
            assert_eq!(req, round * 8 + i);
            back.push_response(&u32::try_from(req).unwrap()).unwrap();
        }
        back.publish_responses();
        for i in 0..8 {
            assert_eq!(front.take_response().unwrap(), Some(u32::try_from(round * 8 + i).unwrap()));
        }
    }
    assert_eq!(owned.mem().load_u32(Index::ReqProd.offset(), Ordering::SeqCst), start.wrapping_add(80));
}

#[test]
fn multi_page_rings_use_every_page() {
    for (order, entries) in [(0, 256), (1, 512), (2, 1024), (3, 2048), (4, 4096)] {
        let owned = OwnedMem::new(ring_bytes(order).unwrap());
        let mut front = Front::new(owned.mem()).unwrap();
        let mut back = Back::new(owned.mem()).unwrap();
        assert_eq!(front.size(), entries, "order {order}");
        for i in 0..u64::from(entries) {
            front.push_request(&i).unwrap();
        }
        front.publish_requests();
        for i in 0..u64::from(entries) {
            assert_eq!(back.take_request().unwrap(), Some(i));
        }
        assert!(front.layout().bytes_used() <= owned.len());
    }
}

#[test]
fn memory_too_small_for_a_ring_is_refused() {
    let owned = OwnedMem::new(HEADER_SIZE + 7);
    assert!(Front::new(owned.mem()).is_err());
    assert!(Back::new(owned.mem()).is_err());
    let mut header = [0u8; 16];
    owned.mem().read_bytes(0, &mut header);
    assert_eq!(header, [0; 16], "a refused front does not initialise the memory");
}

#[test]
fn ends_resumed_from_their_cursors_go_on_where_they_left_off() {
    let owned = OwnedMem::pages(1);
    let mut front = Front::new(owned.mem()).unwrap();
    let mut back = Back::new(owned.mem()).unwrap();
    for value in 0..3u64 {
        front.push_request(&value).unwrap();
    }
    front.publish_requests();
    front.push_request(&3).unwrap(); // pushed, not yet published
    assert_eq!(back.take_request().unwrap(), Some(0));
    back.push_response(&10).unwrap();
    let (front_cursors, back_cursors) = (front.cursors(), back.cursors());
    drop((front, back));

    let mut front = Front::resume(owned.mem(), front_cursors).unwrap();
    let mut back = Back::resume(owned.mem(), back_cursors).unwrap();
    assert_eq!((front.in_flight(), front.unpublished()), (3, 1));
    assert_eq!(back.unanswered(), 0);
    back.publish_responses();
    assert_eq!(front.take_response().unwrap(), Some(10));
    front.publish_requests();
    let taken: Vec<u64> = std::iter::from_fn(|| back.take_request().unwrap()).collect();
    assert_eq!(taken, [1, 2, 3]);
}
