//! The incremental `Decoder`, fed in chunks the input chooses, and every
//! packet it frames.
//!
//! Input layout: the first byte `n` says that the next `n % 8 + 1` bytes are
//! chunk sizes (each byte `b` is a chunk of `b + 1` bytes, used in turn and
//! cycled); everything after them is the byte stream. For every packet:
//!
//! * the payload has exactly the announced length, at most `PAYLOAD_MAX`;
//! * a payload that `Request::parse` accepts re-encodes (within the limit),
//!   frames again to the same ids and parses to the same request;
//! * a payload that `Reply::parse` accepts knows its encoded length and
//!   survives `encode_payload` followed by `parse`;
//! * likewise for `WatchEvent::parse`.
//!
//! A framing error must happen only for an announced length over the limit,
//! and the decoder must stay failed afterwards. After every odd-sized
//! chunk the decoder's pending bytes are handed to a new decoder
//! (`take_pending` and `restore`, as a live update does), which must carry
//! on as the old one would have.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_wire::{Decoder, Packet, Reply, Request, WatchEvent, PAYLOAD_MAX};

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8) + 1;
    let (sizes, stream) = rest.split_at(count.min(rest.len()));

    let mut decoder = Decoder::new();
    let mut offset = 0;
    let mut turn = 0;
    while offset < stream.len() {
        let size = sizes.get(turn % sizes.len()).map_or(1, |b| usize::from(*b) + 1);
        turn += 1;
        let end = (offset + size).min(stream.len());
        let mut chunk = &stream[offset..end];
        offset = end;
        loop {
            match decoder.decode(&mut chunk) {
                Ok(Some(packet)) => check_packet(&packet),
                Ok(None) => {
                    assert!(chunk.is_empty(), "decoder stopped with input left");
                    if size % 2 == 1 {
                        let pending = decoder.take_pending();
                        decoder = Decoder::restore(&pending).expect("a decoder's own pending bytes restore");
                    }
                    break;
                }
                Err(err) => {
                    let xenstore_wire::FrameError::PayloadTooLong { len } = err else {
                        panic!("decode failed with {err:?}");
                    };
                    assert!(usize::try_from(len).map_or(true, |len| len > PAYLOAD_MAX));
                    let mut more = &stream[offset..];
                    assert_eq!(decoder.decode(&mut more), Err(err), "decoder recovered");
                    return;
                }
            }
        }
    }
});

fn check_packet(packet: &Packet) {
    let Packet { header, payload } = packet;
    assert_eq!(u32::try_from(payload.len()), Ok(header.len));
    assert!(payload.len() <= PAYLOAD_MAX);

    if let Ok(request) = Request::parse(header.op, payload) {
        assert_eq!(request.op() as u32, header.op, "parsed as another operation");
        let mut bytes = Vec::new();
        request
            .encode(header.req_id, header.tx_id, &mut bytes)
            .expect("a parsed request re-encodes within PAYLOAD_MAX");
        let mut input = &bytes[..];
        let again = Decoder::new()
            .decode(&mut input)
            .expect("re-encoded request frames")
            .expect("re-encoded request is one whole packet");
        assert!(input.is_empty(), "re-encoded request is more than one packet");
        assert_eq!(again.header.op, header.op);
        assert_eq!(again.header.req_id, header.req_id);
        assert_eq!(again.header.tx_id, header.tx_id);
        assert_eq!(Request::parse(again.header.op, &again.payload), Ok(request));
    }

    if let Ok(reply) = Reply::parse(header.op, payload) {
        let mut bytes = Vec::new();
        reply.encode_payload(&mut bytes);
        assert_eq!(reply.payload_len(), bytes.len(), "payload_len disagrees with encode_payload");
        match (&reply, Reply::parse(header.op, &bytes)) {
            // GET_QUOTA's names list and value share a syntax: one all-digit
            // name reads back as a number (documented on `Reply::Names`).
            (Reply::Names(names), Ok(Reply::Number(n))) if is_one_decimal(names) => {
                assert_eq!(names[0].parse::<u64>(), Ok(n));
            }
            (_, again) => assert_eq!(again, Ok(reply), "reply changed through encode and parse"),
        }
    }

    if let Ok(event) = WatchEvent::parse(payload) {
        let mut bytes = Vec::new();
        if event.encode(&mut bytes) {
            assert_eq!(bytes.len(), xenstore_wire::HEADER_LEN + event.payload_len());
            let reparsed = WatchEvent::parse(&bytes[xenstore_wire::HEADER_LEN..]);
            assert_eq!(reparsed, Ok(event), "event changed through encode and parse");
        } else {
            assert!(bytes.is_empty() && event.payload_len() > PAYLOAD_MAX);
        }
    }
}

/// Whether `names` is a single name made only of ASCII digits.
fn is_one_decimal(names: &[String]) -> bool {
    matches!(names, [name] if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
}
