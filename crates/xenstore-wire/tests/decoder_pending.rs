//! Handing a decoder's partial input to another decoder (a live update).
//!
//! For any stream of packets, possibly ending in a partial packet or in a
//! header with an oversize length, cut at any point: decoding the first
//! part, taking its pending bytes, restoring a decoder from them and
//! decoding the rest gives the same packets, the same failure and the same
//! leftover as decoding the stream whole.

use proptest::collection::vec;
use proptest::prelude::*;
use xenstore_wire::{Decoder, FrameError, Header, Packet, HEADER_LEN, PAYLOAD_MAX};

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn restore_pending_at_any_cut_decodes_like_the_whole_stream(
        (stream, cut) in stream().prop_flat_map(|s| { let len = s.len(); (Just(s), 0..=len) }),
    ) {
        let whole = decode_all(Decoder::new(), &stream);

        let first = decode_all(Decoder::new(), &stream[..cut]);
        let resumed = match first.failure {
            // Failed before the cut: the rest is never looked at.
            Some(_) => first,
            None => match Decoder::restore(&first.decoder.pending()) {
                Ok(restored) => {
                    let mut rest = decode_all(restored, &stream[cut..]);
                    let mut packets = first.packets;
                    packets.append(&mut rest.packets);
                    Run { packets, ..rest }
                }
                Err(err) => Run { failure: Some(err), ..first },
            },
        };

        prop_assert_eq!(&resumed.packets, &whole.packets);
        prop_assert_eq!(resumed.failure, whole.failure);
        prop_assert_eq!(resumed.decoder.pending(), whole.decoder.pending());
    }
}

#[test]
fn oversize_min_is_one_past_payload_max() {
    assert_eq!(OVERSIZE_MIN as usize, PAYLOAD_MAX + 1);
}

#[test]
fn restore_oversize_header_returns_payload_too_long() {
    let header = Header { op: 2, req_id: 7, tx_id: 0, len: 5000 }.encode();
    assert_eq!(Decoder::restore(&header).err(), Some(FrameError::PayloadTooLong { len: 5000 }));
}

#[test]
fn restore_whole_packet_returns_not_pending() {
    let mut bytes = Header { op: 2, req_id: 7, tx_id: 0, len: 3 }.encode().to_vec();
    bytes.extend_from_slice(b"/a\0");
    assert_eq!(Decoder::restore(&bytes).err(), Some(FrameError::NotPending { len: HEADER_LEN + 3 }));
}

#[test]
fn restore_empty_is_at_boundary() {
    let decoder = Decoder::restore(&[]).expect("nothing pending is valid");
    assert!(decoder.at_boundary());
    assert!(decoder.pending().is_empty());
}

#[test]
fn take_pending_leaves_decoder_at_boundary() {
    let mut bytes = Header { op: 2, req_id: 7, tx_id: 0, len: 3 }.encode().to_vec();
    bytes.extend_from_slice(b"/a");
    let mut decoder = Decoder::new();
    let mut input = &bytes[..];
    assert_eq!(decoder.decode(&mut input), Ok(None));
    assert_eq!(decoder.take_pending(), bytes);
    assert!(decoder.at_boundary());
}

#[test]
fn pending_of_failed_decoder_restores_to_the_same_failure() {
    let header = Header { op: 2, req_id: 7, tx_id: 0, len: u32::MAX }.encode();
    let mut decoder = Decoder::new();
    let mut input = &header[..];
    let err = decoder.decode(&mut input).expect_err("oversize");
    assert_eq!(Decoder::restore(&decoder.pending()).err(), Some(err));
}

/// What decoding some bytes gave.
struct Run {
    decoder: Decoder,
    packets: Vec<Packet>,
    failure: Option<FrameError>,
}

/// Feeds `bytes` to `decoder` until they are used up or it fails.
fn decode_all(mut decoder: Decoder, bytes: &[u8]) -> Run {
    let mut input = bytes;
    let mut packets = Vec::new();
    loop {
        match decoder.decode(&mut input) {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) if input.is_empty() => return Run { decoder, packets, failure: None },
            Ok(None) => {}
            Err(err) => return Run { decoder, packets, failure: Some(err) },
        }
    }
}

/// The smallest length a header may not announce.
const OVERSIZE_MIN: u32 = 4097;

/// Whole packets, then maybe a partial one or an oversize header, then
/// maybe more bytes (unread after a failure).
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop_oneof![
        Just(Vec::new()),
        packet().prop_flat_map(|p| {
            let len = p.len();
            (Just(p), 0..len).prop_map(|(p, keep)| p[..keep].to_vec())
        }),
        (OVERSIZE_MIN..=u32::MAX, vec(any::<u8>(), 0..40)).prop_map(|(len, after)| {
            let mut bytes = Header { op: 1, req_id: 2, tx_id: 3, len }.encode().to_vec();
            bytes.extend_from_slice(&after);
            bytes
        }),
    ];
    (vec(packet(), 0..5), tail).prop_map(|(packets, tail)| [packets.concat(), tail].concat())
}

/// One encoded packet with any header fields and a payload of up to 300
/// bytes, or exactly the maximum.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![9 => vec(any::<u8>(), 0..300), 1 => vec(any::<u8>(), PAYLOAD_MAX)];
    (any::<u32>(), any::<u32>(), any::<u32>(), payload).prop_map(|(op, req_id, tx_id, payload)| {
        let len = u32::try_from(payload.len()).expect("at most PAYLOAD_MAX");
        let mut bytes = Header { op, req_id, tx_id, len }.encode().to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    })
}
