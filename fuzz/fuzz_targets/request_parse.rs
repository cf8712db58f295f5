//! `Request::parse` on an arbitrary operation number and payload.
//!
//! Input layout: the first 4 bytes are the operation (little-endian, as in
//! the header), the rest is the payload. Parsing must never panic, and a
//! request that parses must say it is that operation and must survive
//! `encode_payload` followed by `parse` unchanged; its encoding must be a
//! fixed point (encoding the re-parsed request gives the same bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_wire::Request;

fuzz_target!(|data: &[u8]| {
    let Some((op, payload)) = data.split_first_chunk::<4>() else {
        return;
    };
    let op = u32::from_le_bytes(*op);
    let Ok(request) = Request::parse(op, payload) else {
        return;
    };
    assert_eq!(request.op() as u32, op, "parsed as another operation");

    let mut encoded = Vec::new();
    request.encode_payload(&mut encoded);
    let reparsed = Request::parse(op, &encoded).expect("an encoded request parses");
    assert_eq!(reparsed, request, "request changed through encode and parse");

    let mut again = Vec::new();
    reparsed.encode_payload(&mut again);
    assert_eq!(again, encoded, "encoding is not a fixed point");
});
