//! A hostile guest against the server end of the ring: arbitrary data and
//! arbitrary index values written into the shared page between server
//! polls and flushes. The server must never panic, never copy out of
//! bounds, and once it reports a corrupt ring the error indicator must say
//! so (RINGIDX) or a too-long payload PROTO.

#![no_main]

use std::io::IoSlice;

use libfuzzer_sys::fuzz_target;
use xenstore_ring::ring::{GuestRing, ServerRing};
use xenstore_ring::{
    ConnectionError, Field, OwnedPage, ServerConnection, ERROR_PROTO, ERROR_RINGIDX, FEATURE_ERROR,
    FEATURE_RECONNECTION,
};

const FIELDS: [Field; 5] = [Field::ReqCons, Field::ReqProd, Field::RspCons, Field::RspProd, Field::Connection];

fuzz_target!(|data: &[u8]| {
    let owned = OwnedPage::new();
    let mut server_ring = ServerRing::new(owned.page(), || {});
    server_ring.set_features(FEATURE_RECONNECTION | FEATURE_ERROR);
    let mut server = ServerConnection::new(server_ring);
    let mut guest = GuestRing::new(owned.page(), || {});
    let mut input = data;
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        match op % 6 {
            // Guest writes bytes (possibly garbage headers) through its end.
            0 => {
                let n = usize::from(input.first().copied().unwrap_or(0));
                let take = n.min(input.len().saturating_sub(1));
                let chunk = input.get(1..1 + take).unwrap_or_default();
                let _ = guest.write(chunk);
                input = input.get(1 + take..).unwrap_or_default();
            }
            // Guest scribbles an index or the connection field.
            1 => {
                let Some(bytes) = input.get(..5) else { break };
                let field = FIELDS[usize::from(bytes[0]) % FIELDS.len()];
                let value = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                owned.page().set_field(field, value);
                input = input.get(5..).unwrap_or_default();
            }
            // Guest reads responses.
            2 => {
                let mut buf = [0u8; 700];
                let _ = guest.read(&mut buf);
            }
            // Guest asks to reconnect.
            3 => guest.request_reconnect(),
            // Server writes a reply-sized message, gathered from two
            // pieces as xenstored's outbox hands them over.
            4 => {
                let len = usize::from(input.first().copied().unwrap_or(0)) * 9;
                let (head, tail) = (vec![0x5a; len / 3], vec![0xa5; len - len / 3]);
                let _ = server.write_vectored(&[IoSlice::new(&head), IoSlice::new(&tail)]);
            }
            // Server polls.
            _ => {
                for _ in 0..8 {
                    match server.poll() {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(e) => {
                            let indicator = owned.page().field(Field::Error);
                            match e {
                                ConnectionError::Ring(_) => assert_eq!(indicator, ERROR_RINGIDX),
                                ConnectionError::Frame(_) => assert_eq!(indicator, ERROR_PROTO),
                                // Non-exhaustive: a future kind sets its own indicator.
                                _ => {}
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
});
