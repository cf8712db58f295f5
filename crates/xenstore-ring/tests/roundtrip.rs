//! Random byte streams through a page, in random chunk sizes, from random
//! starting indices, arrive byte-identical in both directions.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use proptest::prelude::*;
use xenstore_ring::{Field, GuestRing, OwnedPage, ServerRing};

fn start_at(owned: &OwnedPage, req: u32, rsp: u32) {
    let page = owned.page();
    page.set_field(Field::ReqCons, req);
    page.set_field(Field::ReqProd, req);
    page.set_field(Field::RspCons, rsp);
    page.set_field(Field::RspProd, rsp);
}

fn counter_near_edges() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..2048).prop_map(|d| u32::MAX - d), 0u32..2048]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_in_random_chunks_arrive_identical_both_ways(
        req_start in counter_near_edges(),
        rsp_start in counter_near_edges(),
        requests in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..8),
        responses in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..8),
        chunks in prop::collection::vec(1usize..1500, 1..32),
    ) {
        let owned = OwnedPage::new();
        start_at(&owned, req_start, rsp_start);
        let mut guest = GuestRing::new(owned.page(), || {});
        let mut server = ServerRing::new(owned.page(), || {});
        let to_server = requests.concat();
        let to_guest = responses.concat();
        let (mut sent_req, mut sent_rsp) = (0, 0);
        let (mut got_req, mut got_rsp) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 1500];
        let mut step = 0;
        while got_req.len() < to_server.len() || got_rsp.len() < to_guest.len() {
            let mut chunk = || {
                step += 1;
                chunks[step % chunks.len()]
            };
            let end = (sent_req + chunk()).min(to_server.len());
            sent_req += guest.write(&to_server[sent_req..end]).unwrap();
            let end = (sent_rsp + chunk()).min(to_guest.len());
            sent_rsp += server.write(&to_guest[sent_rsp..end]).unwrap();
            let n = chunk();
            let got = server.read(&mut buf[..n]).unwrap();
            got_req.extend_from_slice(&buf[..got]);
            let n = chunk();
            let got = guest.read(&mut buf[..n]).unwrap();
            got_rsp.extend_from_slice(&buf[..got]);
        }
        prop_assert_eq!(got_req, to_server);
        prop_assert_eq!(got_rsp, to_guest);
        let page = owned.page();
        prop_assert_eq!(page.field(Field::ReqCons), page.field(Field::ReqProd));
        prop_assert_eq!(page.field(Field::RspCons), page.field(Field::RspProd));
    }
}
