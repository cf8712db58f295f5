//! The messages against Xen's own header: `tests/c_layout/blkif.c`
//! includes `<xen/io/blkif.h>` (Debian's libxen-dev), prints sizes and
//! offsets and the bytes of sample messages; this test compiles and runs
//! it with the system C compiler and compares every line with what the
//! crate computes and encodes.
//!
//! Without a C compiler or the header the comparison is reported ignored
//! (xs-peers' harness), and fails under `XS_REQUIRE_PEERS=1` (as `.ci/run`
//! sets), as xen-ioring's layout test does.

use std::collections::BTreeMap;
use std::path::Path;

use blkif::abi::{OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, RSP_EOPNOTSUPP};
use blkif::request::{DISCARD_SIZE, INDIRECT_SIZE, REQUEST_SIZE};
use blkif::response::RESPONSE_SIZE;
use blkif::{DiscardRequest, IndirectRequest, Request, Response, Segment, SegmentRequest};
use xen_ioring::{Message, RingLayout, PAGE_SIZE};
use xs_peers::c_program::C_HEADERS;
use xs_peers::harness::{run, Test};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encoded<M: Message>(message: &M) -> String {
    let mut bytes = vec![0xeeu8; M::SIZE];
    message.encode(&mut bytes);
    hex(&bytes)
}

/// The sample messages of blkif.c, encoded by the crate.
fn crate_samples() -> BTreeMap<String, String> {
    let mut rw = SegmentRequest {
        operation: OP_WRITE,
        nr_segments: 3,
        handle: 51712,
        id: 0x0102_0304_0506_0708,
        sector_number: 0x1122_3344_5566_7788,
        ..Default::default()
    };
    for (i, seg) in rw.segments.iter_mut().take(3).enumerate() {
        *seg = Segment {
            gref: 0xa0b0_c0d0 + u32::try_from(i).unwrap(),
            first_sect: u8::try_from(i).unwrap(),
            last_sect: 7,
        };
    }
    let discard = DiscardRequest { flag: 1, handle: 768, id: 42, sector_number: 4096, nr_sectors: 1 << 32 };
    let indirect = IndirectRequest {
        indirect_op: OP_READ,
        nr_segments: 300,
        id: 7,
        sector_number: 8,
        handle: 5,
        indirect_grefs: std::array::from_fn(|i| 100 + u32::try_from(i).unwrap()),
    };
    let response = Response { id: 0xfeed_face_cafe_beef, operation: OP_FLUSH_DISKCACHE, status: RSP_EOPNOTSUPP };
    BTreeMap::from([
        ("rw.bytes".into(), encoded(&Request::Segments(rw))),
        ("discard.bytes".into(), encoded(&Request::Discard(discard))),
        ("indirect.bytes".into(), encoded(&Request::Indirect(indirect))),
        ("response.bytes".into(), encoded(&response)),
    ])
}

/// The sizes the crate uses.
fn crate_sizes() -> BTreeMap<String, String> {
    let entries = RingLayout::of::<Request, Response>(PAGE_SIZE).unwrap().entries();
    [
        ("blkif_request.size", REQUEST_SIZE),
        ("blkif_request.align", <Request as Message>::ALIGN),
        ("blkif_request_discard.size", DISCARD_SIZE),
        ("blkif_request_indirect.size", INDIRECT_SIZE),
        ("blkif_response.size", RESPONSE_SIZE),
        ("blkif_response.align", <Response as Message>::ALIGN),
        ("blkif.entries.1", entries as usize),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_string()))
    .collect()
}

/// Every line blkif.c prints, as the C compiler computes it.
fn c_facts() -> BTreeMap<String, String> {
    xs_peers::c_program::facts(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c_layout/blkif.c"))
}

fn sizes_match_the_c_header() {
    let c = c_facts();
    for (key, value) in crate_sizes() {
        assert_eq!(c.get(&key), Some(&value), "{key}");
    }
}

fn encoded_messages_are_byte_for_byte_the_c_structs() {
    let c = c_facts();
    for (key, value) in crate_samples() {
        assert_eq!(c.get(&key), Some(&value), "{key}");
    }
}

fn the_c_bytes_decode_to_the_same_messages() {
    let c = c_facts();
    for key in ["rw.bytes", "discard.bytes", "indirect.bytes"] {
        let bytes: Vec<u8> =
            (0..c[key].len() / 2).map(|i| u8::from_str_radix(&c[key][2 * i..2 * i + 2], 16).unwrap()).collect();
        let request = Request::decode(&bytes);
        assert_eq!(encoded(&request), c[key], "{key} decodes and encodes back");
    }
}

fn main() -> std::process::ExitCode {
    // The header's layouts are x86_64's (the only ABI the crate speaks).
    let tests = if cfg!(target_arch = "x86_64") {
        vec![
            Test::new("sizes_match_the_c_header", sizes_match_the_c_header).needs(C_HEADERS),
            Test::new(
                "encoded_messages_are_byte_for_byte_the_c_structs",
                encoded_messages_are_byte_for_byte_the_c_structs,
            )
            .needs(C_HEADERS),
            Test::new("the_c_bytes_decode_to_the_same_messages", the_c_bytes_decode_to_the_same_messages)
                .needs(C_HEADERS),
        ]
    } else {
        Vec::new()
    };
    run(tests)
}
