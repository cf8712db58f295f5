//! The layout against Xen's own header: `tests/c_layout/layout.c` includes
//! `<xen/io/ring.h>` and `<xen/io/blkif.h>` (Debian's libxen-dev), defines
//! sample rings with `DEFINE_RING_TYPES`, and prints offsets, sizes and
//! `__CONST_RING_SIZE`/`__RING_SIZE` for 1, 2 and 4 pages; the test
//! compiles and runs it with the system C compiler and compares every line
//! with what this crate computes.
//!
//! Without a C compiler or the headers the comparison is reported ignored
//! (xs-peers' harness), and fails under `XS_REQUIRE_PEERS=1` (as `.ci/run`
//! sets), so that CI never skips it silently. The values documented for
//! blkif are also checked without any compiler.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;

use xs_peers::c_program::C_HEADERS;
use xs_peers::harness::{run, Test};

use xen_ioring::layout::{PAD_OFFSET, PAD_SIZE, PVT_OFFSET, PVT_SIZE};
use xen_ioring::{entry_size, Index, Message, RingLayout, HEADER_SIZE, PAGE_SIZE};

/// A message of a given C size and alignment; its bytes do not matter here.
struct Shape<const SIZE: usize, const ALIGN: usize>;

impl<const SIZE: usize, const ALIGN: usize> Message for Shape<SIZE, ALIGN> {
    const SIZE: usize = SIZE;
    const ALIGN: usize = ALIGN;

    fn encode(&self, out: &mut [u8]) {
        out.fill(0);
    }

    fn decode(_: &[u8]) -> Self {
        Shape
    }
}

/// `blkif_request` and `blkif_response` on x86_64 (and arm64).
type BlkifRequest = Shape<112, 8>;
type BlkifResponse = Shape<16, 8>;
/// `struct sample_request`/`sample_response` of layout.c.
type SampleRequest = Shape<16, 8>;
type SampleResponse = Shape<16, 8>;
/// `struct odd_request`/`odd_response` of layout.c.
type OddRequest = Shape<12, 4>;
type OddResponse = Shape<8, 8>;

fn messages<Req: Message, Rsp: Message>(name: &str, facts: &mut BTreeMap<String, usize>) {
    facts.insert(format!("{name}.req.size"), Req::SIZE);
    facts.insert(format!("{name}.req.align"), Req::ALIGN);
    facts.insert(format!("{name}.rsp.size"), Rsp::SIZE);
    facts.insert(format!("{name}.rsp.align"), Rsp::ALIGN);
    facts.insert(format!("{name}.entry"), entry_size::<Req, Rsp>());
    facts.insert(format!("{name}.ring"), HEADER_SIZE);
    for pages in [1, 2, 4] {
        let entries = RingLayout::of::<Req, Rsp>(PAGE_SIZE * pages).unwrap().entries() as usize;
        facts.insert(format!("{name}.entries.{pages}"), entries);
        facts.insert(format!("{name}.entries_ptr.{pages}"), entries);
    }
}

/// Every line layout.c prints, as this crate computes it.
fn crate_facts() -> BTreeMap<String, usize> {
    let mut facts = BTreeMap::new();
    for (name, index) in [
        ("req_prod", Index::ReqProd),
        ("req_event", Index::ReqEvent),
        ("rsp_prod", Index::RspProd),
        ("rsp_event", Index::RspEvent),
    ] {
        facts.insert(format!("offset.{name}"), index.offset());
    }
    facts.insert("offset.pvt".into(), PVT_OFFSET);
    facts.insert("size.pvt".into(), PVT_SIZE);
    facts.insert("offset.pad".into(), PAD_OFFSET);
    facts.insert("size.pad".into(), PAD_SIZE);
    messages::<BlkifRequest, BlkifResponse>("blkif", &mut facts);
    messages::<SampleRequest, SampleResponse>("sample", &mut facts);
    messages::<OddRequest, OddResponse>("odd", &mut facts);
    facts
}

/// Every line layout.c prints, as the C compiler computes it.
fn c_facts() -> BTreeMap<String, usize> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c_layout/layout.c");
    let facts = xs_peers::c_program::facts(&source);
    facts.into_iter().map(|(k, v)| (k, v.parse().unwrap_or_else(|_| panic!("not a number: {v:?}")))).collect()
}

fn layout_matches_the_c_header() {
    assert_eq!(crate_facts(), c_facts());
}

fn blkif_ring_has_the_documented_geometry() {
    assert_eq!(entry_size::<BlkifRequest, BlkifResponse>(), 112);
    let entries: Vec<u32> = (0..=4)
        .map(|order| RingLayout::of::<BlkifRequest, BlkifResponse>(xen_ioring::ring_bytes(order).unwrap()).unwrap())
        .map(|layout| layout.entries())
        .collect();
    // BLK_RING_SIZE: 32 entries in one page, doubling with each order.
    assert_eq!(entries, [32, 64, 128, 256, 512]);
}

fn union_size_rounds_up_to_the_stricter_alignment() {
    assert_eq!(entry_size::<OddRequest, OddResponse>(), 16);
    assert_eq!(RingLayout::of::<OddRequest, OddResponse>(PAGE_SIZE).unwrap().entries(), 128);
}

fn main() -> std::process::ExitCode {
    run(vec![
        Test::new("layout_matches_the_c_header", layout_matches_the_c_header).needs(C_HEADERS),
        Test::new("blkif_ring_has_the_documented_geometry", blkif_ring_has_the_documented_geometry),
        Test::new("union_size_rounds_up_to_the_stricter_alignment", union_size_rounds_up_to_the_stricter_alignment),
    ])
}
