//! The adversarial suite against the daemon binary over its socket, where
//! the stepped world cannot show it: the process's own memory. The table
//! of every advisory is in `tests/xsa.rs`; `tests/daemon.rs` and
//! `tests/flood.rs` keep the socket cases of XSA-72 and XSA-38's kin
//! (oversize lengths, a megabyte of garbage, a watch-event flood).

// Test payloads are far below 4 GiB.
#![allow(clippy::cast_possible_truncation)]

mod support;

use std::io::Write;

use support::*;
use xenstore_wire::{Header, Op};

/// XSA-416 and XSA-326 ("issuing new requests ... without reading the
/// responses") over a socket: a client sends READs of a 2 KiB value as
/// fast as the socket takes them and reads none. The daemon stops reading
/// it once its replies pass the queue limit, so its sends soon block and
/// the daemon's memory stays bounded; another client is served meanwhile.
#[test]
fn xsa_416_socket_client_reading_no_replies_is_paused() {
    let d = Daemon::start(&[]);
    let mut bystander = d.client();
    bystander.write("/big", &[b'b'; 2048]);
    let rss_before = d.rss();
    let mut sink = d.client();
    sink.stream.set_nonblocking(true).unwrap();
    let payload = p("/big");
    let header = Header { op: Op::Read as u32, req_id: 1, tx_id: 0, len: payload.len() as u32 };
    let request = [header.encode().as_slice(), &payload].concat();
    let batch = request.repeat(100);
    // 20,000 READs: 40 MB of replies if the daemon kept reading.
    let mut blocked = false;
    for _ in 0..200 {
        if sink.stream.write_all(&batch).is_err() {
            blocked = true;
            break;
        }
        // Something the daemon answers between batches, so it reads the sink.
        assert_eq!(bystander.call(Op::Read, 0, &p("/big")).1.len(), 2048);
    }
    let grown = d.rss().saturating_sub(rss_before);
    assert!(blocked, "the daemon kept reading a client that reads nothing");
    assert!(grown < 8 << 20, "the daemon grew by {grown} bytes");
    assert_eq!(bystander.call(Op::Read, 0, &p("/tool")), (Op::Read as u32, Vec::new()));
}
