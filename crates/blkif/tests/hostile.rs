//! A frontend the backend must not trust: bad ring details, bad
//! requests, a flood, impossible ring indices. The backend answers with
//! errors or stops that ring, and goes on serving the other frontends.

// Test data: small counters turned into byte patterns and sizes.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod support;

use blkif::abi::{DISCARD_SECURE, OP_DISCARD, OP_READ, OP_WRITE, RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY};
use blkif::{DiscardRequest, FrontConfig, IndirectRequest, Request, Segment};
use support::hostile::{Hostile, Lies};
use support::Rig;

const DEVID: u32 = 51712;

#[test]
fn bad_ring_details_are_fatal_to_the_device_with_an_error_node() {
    let some = |s: &str| Some(s.to_string());
    let rows = [
        ("a ring-ref not granted", Lies { ring_ref: some("4242"), ..Lies::default() }, "mapping ring-ref"),
        ("a ring-ref not a number", Lies { ring_ref: some("ring"), ..Lies::default() }, "ring-ref"),
        ("an event channel not offered", Lies { event_channel: some("4242"), ..Lies::default() }, "event-channel"),
        ("a 32-bit protocol", Lies { protocol: some("x86_32-abi"), ..Lies::default() }, "protocol"),
        ("a ring order too large", Lies { ring_page_order: some("9"), ..Lies::default() }, "ring-page-order"),
        ("two queues", Lies { multi_queue_num_queues: some("2"), ..Lies::default() }, "2 queues"),
    ];
    for (name, lies, expected) in rows {
        let mut rig = Rig::new();
        let hostile = Hostile::new(&mut rig, "hostile", DEVID, lies);
        assert_eq!(rig.state(&hostile.spec.backend_dir()), "5", "{name}: Closing");
        let error = rig.backend_error(&hostile.spec).unwrap_or_default();
        assert!(error.contains(expected), "{name}: error node says {error:?}");
        assert!(rig.backend().connected().is_empty(), "{name}: nothing mapped");
        assert!(rig.backend().ports().is_empty(), "{name}: nothing bound");
    }
}

#[test]
fn bad_requests_get_error_responses_and_good_ones_still_work() {
    let mut rig = Rig::new();
    let mut hostile = Hostile::new(&mut rig, "hostile", DEVID, Lies::default());
    assert_eq!(rig.state(&hostile.spec.backend_dir()), "4");
    let good = hostile.read(1, 0);
    let mut not_granted = hostile.read(2, 0);
    not_granted.segments[0].gref = 4242;
    let beyond = hostile.read(3, 64);
    let overflow = hostile.read(4, u64::MAX);
    let mut no_segments = hostile.read(5, 0);
    no_segments.nr_segments = 0;
    let mut twelve = hostile.read(6, 0);
    twelve.nr_segments = 12;
    let mut backwards = hostile.read(7, 0);
    backwards.segments[0] = Segment { gref: backwards.segments[0].gref, first_sect: 5, last_sect: 4 };
    let mut past_page = hostile.read(8, 0);
    past_page.segments[0].last_sect = 8;
    let mut unknown = hostile.read(9, 0);
    unknown.operation = 77;
    let indirect =
        Request::Indirect(IndirectRequest { indirect_op: OP_READ, nr_segments: 20, id: 10, ..Default::default() });
    let mut requests: Vec<Request> =
        [good, not_granted, beyond, overflow, no_segments, twelve, backwards, past_page, unknown]
            .into_iter()
            .map(Request::Segments)
            .collect();
    requests.push(indirect);
    assert_eq!(hostile.send(&requests), 10);
    rig.settle();
    let statuses = hostile.responses();
    let expected = [
        (1, RSP_OKAY),
        (2, RSP_ERROR),
        (3, RSP_ERROR),
        (4, RSP_ERROR),
        (5, RSP_ERROR),
        (6, RSP_ERROR),
        (7, RSP_ERROR),
        (8, RSP_ERROR),
        (9, RSP_EOPNOTSUPP),
        (10, RSP_EOPNOTSUPP),
    ];
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), expected);
    assert_eq!(rig.state(&hostile.spec.backend_dir()), "4", "bad requests do not close the device");
}

#[test]
fn what_is_not_offered_is_answered_eopnotsupp_with_the_operation_linux_expects() {
    let mut rig = Rig::new();
    let mut hostile = Hostile::new(&mut rig, "hostile", DEVID, Lies::default());
    // Linux's blkfront disables the disk on a response whose operation is
    // not the request's (an indirect one's: its indirect_op).
    let indirect =
        Request::Indirect(IndirectRequest { indirect_op: OP_WRITE, nr_segments: 20, id: 1, ..Default::default() });
    let secure = Request::Discard(DiscardRequest { flag: DISCARD_SECURE, id: 2, nr_sectors: 8, ..Default::default() });
    let plain = Request::Discard(DiscardRequest { id: 3, nr_sectors: 8, ..Default::default() });
    assert_eq!(hostile.send(&[indirect, secure, plain]), 3);
    rig.settle();
    let answers: Vec<_> = hostile.answers().into_iter().collect();
    assert_eq!(
        answers,
        [(1, (OP_WRITE, RSP_EOPNOTSUPP)), (2, (OP_DISCARD, RSP_EOPNOTSUPP)), (3, (OP_DISCARD, RSP_OKAY))]
    );
}

#[test]
fn a_flooding_frontend_does_not_starve_another() {
    let mut rig = Rig::new();
    let mut hostile = Hostile::new(&mut rig, "hostile", DEVID, Lies::default());
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 1024);
    rig.attach(fe, DEVID, &image, "w");
    let tickets: Vec<_> = (0..100).map(|i| rig.front(fe).write(DEVID, i, vec![i as u8; 512]).unwrap()).collect();
    let mut flooded = 0;
    let mut rounds = 0;
    while rig.front(fe).outstanding(DEVID) != (0, 0) {
        // The hostile guest keeps its ring full, every round.
        hostile.responses();
        let free = hostile.free() as usize;
        let reads: Vec<Request> = (0..free).map(|i| Request::Segments(hostile.read(i as u64, 0))).collect();
        flooded += hostile.send(&reads);
        rig.step();
        rounds += 1;
        assert!(rounds < 50, "the other frontend is starved");
    }
    for ticket in tickets {
        assert_eq!(rig.front(fe).take(DEVID, ticket), Some(Ok(Vec::new())));
    }
    assert!(flooded > 32 * 3, "the flood was served too ({flooded} requests)");
}

#[test]
fn impossible_ring_indices_stop_that_ring_and_close_only_that_device() {
    let mut rig = Rig::new();
    let hostile = Hostile::new(&mut rig, "hostile", DEVID, Lies::default());
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 64);
    let spec = rig.attach(fe, DEVID, &image, "w");

    hostile.scribble_req_prod(1000);
    rig.settle();
    assert_eq!(rig.state(&hostile.spec.backend_dir()), "5");
    let error = rig.backend_error(&hostile.spec).unwrap();
    assert!(error.contains("bogus ring requests"), "{error}");
    assert_eq!(rig.backend().connected(), [spec.backend_dir()], "only the other device is left");

    let ticket = rig.front(fe).write(DEVID, 0, vec![1; 512]).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));
}
