//! The messages against Xen's own header: `tests/c_layout/blkif.c`
//! includes `<xen/io/blkif.h>` (Debian's libxen-dev), prints sizes and
//! offsets and the bytes of sample messages; this test compiles and runs
//! it with the system C compiler and compares every line with what the
//! crate computes and encodes.
//!
//! Without a C compiler or the header the comparison is skipped with a
//! message, and fails under `XS_REQUIRE_PEERS=1` (as `.ci/run` sets), as
//! xen-ioring's layout test does.

#![cfg(target_arch = "x86_64")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use blkif::abi::{OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, RSP_EOPNOTSUPP};
use blkif::request::{DISCARD_SIZE, INDIRECT_SIZE, REQUEST_SIZE};
use blkif::response::RESPONSE_SIZE;
use blkif::{DiscardRequest, IndirectRequest, Request, Response, Segment, SegmentRequest};
use xen_ioring::{Message, RingLayout, PAGE_SIZE};

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

fn missing(what: &str) {
    let message = format!("{what}; apt-get install gcc libxen-dev");
    if std::env::var_os("XS_REQUIRE_PEERS").is_some_and(|v| v == "1") {
        panic!("{message}");
    }
    eprintln!("skipped: {message}");
}

/// Compiles and runs blkif.c: every line it prints, or `None` without a
/// compiler or the header.
fn c_facts() -> Option<BTreeMap<String, String>> {
    if !Path::new("/usr/include/xen/io/blkif.h").exists() {
        missing("no <xen/io/blkif.h>");
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c_layout/blkif.c");
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("blkif");
    let compiled = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .output();
    match compiled {
        Err(err) => {
            missing(&format!("no C compiler ({err})"));
            return None;
        }
        Ok(out) => assert!(out.status.success(), "blkif.c failed to build:\n{}", String::from_utf8_lossy(&out.stderr)),
    }
    let out = Command::new(&binary).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .map(|line| {
                let (key, value) = line.split_once(' ').unwrap();
                (key.to_owned(), value.to_owned())
            })
            .collect(),
    )
}

#[test]
fn sizes_match_the_c_header() {
    let Some(c) = c_facts() else { return };
    for (key, value) in crate_sizes() {
        assert_eq!(c.get(&key), Some(&value), "{key}");
    }
}

#[test]
fn encoded_messages_are_byte_for_byte_the_c_structs() {
    let Some(c) = c_facts() else { return };
    for (key, value) in crate_samples() {
        assert_eq!(c.get(&key), Some(&value), "{key}");
    }
}

#[test]
fn the_c_bytes_decode_to_the_same_messages() {
    let Some(c) = c_facts() else { return };
    for key in ["rw.bytes", "discard.bytes", "indirect.bytes"] {
        let bytes: Vec<u8> =
            (0..c[key].len() / 2).map(|i| u8::from_str_radix(&c[key][2 * i..2 * i + 2], 16).unwrap()).collect();
        let request = Request::decode(&bytes);
        assert_eq!(encoded(&request), c[key], "{key} decodes and encodes back");
    }
}
