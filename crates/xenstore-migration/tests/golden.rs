//! A small stream assembled octet by octet from the document, read and
//! written; the same stream big-endian; version 1 rules.

mod common;

use common::{rec, stream, F};
use xenstore_migration::{
    read, read_header, write, write_with, ConnSpec, Connection, DomainData, Endian, ErrorKind, GlobalData, GlobalQuota,
    Header, Node, Pending, Perm, PermKind, Quota, Record, Stream, Transaction, Version, Watch, DEPTH_UNLIMITED,
};

/// Version 2, little-endian, every record type once (NODE_DATA twice).
#[rustfmt::skip]
const GOLDEN: &[u8] = &[
    // header: ident, version 2 (big-endian), flags 0 (little-endian records)
    b'x', b'e', b'n', b's', b't', b'o', b'r', b'e',
    0, 0, 0, 2, 0, 0, 0, 0,
    // GLOBAL_DATA, len 8: rw-socket-fd -1, evtchn-fd 5
    1, 0, 0, 0, 8, 0, 0, 0,
    0xff, 0xff, 0xff, 0xff, 5, 0, 0, 0,
    // CONNECTION_DATA, len 40
    2, 0, 0, 0, 40, 0, 0, 0,
    1, 0, 0, 0, 0, 0, 1, 0, // conn-id 1, conn-type ring, fields unique-id
    1, 0, 0xf4, 0x7f, 3, 0, 0, 0, // domid 1, tdomid DOMID_INVALID, evtchn 3
    2, 0, 1, 0, 3, 0, 0, 0, // in-data-len 2, out-resp-len 1, out-data-len 3
    b'a', b'b', b'x', b'y', b'z', 0, 0, 0, // data, padding to 8
    8, 7, 6, 5, 4, 3, 2, 1, // unique-id
    // WATCH_DATA, len 16: conn-id 1, wpath-len 3, token-len 3, "/a", "tk"
    3, 0, 0, 0, 16, 0, 0, 0,
    1, 0, 0, 0, 3, 0, 3, 0,
    b'/', b'a', 0, b't', b'k', 0, 0, 0,
    // WATCH_DATA_EXTENDED, len 16: conn-id 1, wpath-len 2, token-len 1,
    // depth unlimited, pad, "a" (relative), ""
    8, 0, 0, 0, 16, 0, 0, 0,
    1, 0, 0, 0, 2, 0, 1, 0,
    0xff, 0xff, 0, 0, b'a', 0, 0, 0,
    // TRANSACTION_DATA, len 8: conn-id 1, tx-id 7
    4, 0, 0, 0, 8, 0, 0, 0,
    1, 0, 0, 0, 7, 0, 0, 0,
    // NODE_DATA, len 32: committed "/a" = "v", perms n0, r1 (stale)
    5, 0, 0, 0, 32, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, // conn-id 0, tx-id 0
    3, 0, 1, 0, 0, 0, 2, 0, // path-len 3, value-len 1, access 0, perm-count 2
    b'n', 0, 0, 0, b'r', 1, 1, 0,
    b'/', b'a', 0, b'v', 0, 0, 0, 0,
    // NODE_DATA, len 24: "/a" deleted in transaction 7 of connection 1
    5, 0, 0, 0, 24, 0, 0, 0,
    1, 0, 0, 0, 7, 0, 0, 0,
    3, 0, 0, 0, 0, 0, 0, 0,
    b'/', b'a', 0, 0, 0, 0, 0, 0,
    // GLOBAL_QUOTA_DATA, len 24: 1 per-domain, 1 global; 1000, 0; names
    6, 0, 0, 0, 24, 0, 0, 0,
    1, 0, 1, 0, 0xe8, 3, 0, 0,
    0, 0, 0, 0, b'n', b'o', b'd', b'e',
    b's', 0, b'p', b'e', b'r', b'm', b's', 0,
    // DOMAIN_DATA, len 24: domain 1, 1 quota, features 1, 10, "nodes"
    7, 0, 0, 0, 24, 0, 0, 0,
    1, 0, 1, 0, 1, 0, 0, 0,
    10, 0, 0, 0, b'n', b'o', b'd', b'e',
    b's', 0, 0, 0, 0, 0, 0, 0,
    // END
    0, 0, 0, 0, 0, 0, 0, 0,
];

fn quota(name: &str, value: u32) -> Quota {
    Quota { name: name.to_owned(), value }
}

fn golden_stream() -> Stream {
    Stream::new(vec![
        Record::Global(GlobalData { rw_socket_fd: -1, evtchn_fd: 5 }),
        Record::Connection(Connection {
            id: 1,
            spec: ConnSpec::Ring { domid: 1, tdomid: 0x7ff4, evtchn: 3 },
            in_data: b"ab".to_vec(),
            out_resp_len: 1,
            out_data: b"xyz".to_vec(),
            unique_id: Some(0x0102_0304_0506_0708),
        }),
        Record::Watch(Watch { conn_id: 1, path: "/a".to_owned(), token: b"tk".to_vec(), depth: None }),
        Record::Watch(Watch { conn_id: 1, path: "a".to_owned(), token: Vec::new(), depth: Some(DEPTH_UNLIMITED) }),
        Record::Transaction(Transaction { conn_id: 1, tx_id: 7 }),
        Record::Node(Node {
            pending: None,
            path: "/a".to_owned(),
            value: b"v".to_vec(),
            perms: vec![
                Perm { kind: PermKind::None, stale: false, domid: 0 },
                Perm { kind: PermKind::Read, stale: true, domid: 1 },
            ],
        }),
        Record::Node(Node {
            pending: Some(Pending { conn_id: 1, tx_id: 7, access: 0 }),
            path: "/a".to_owned(),
            value: Vec::new(),
            perms: Vec::new(),
        }),
        Record::GlobalQuota(GlobalQuota { per_domain: vec![quota("nodes", 1000)], global: vec![quota("perms", 0)] }),
        Record::Domain(DomainData { domid: 1, features: 1, quotas: vec![quota("nodes", 10)] }),
    ])
    .unwrap()
}

#[test]
fn golden_reads_and_writes() {
    assert_eq!(read(GOLDEN), Ok(golden_stream()));
    assert_eq!(write(&golden_stream()), GOLDEN);
    assert_eq!(read_header(GOLDEN), Ok(Header { version: Version::V2, endian: Endian::Little }));
}

/// The golden stream assembled again, field by field, in `big` order.
fn assembled(big: bool) -> Vec<u8> {
    use F::{B, H, Q, W};
    stream(
        2,
        big,
        &[
            rec(big, 1, &[W(0xffff_ffff), W(5)]),
            rec(
                big,
                2,
                &[
                    W(1),
                    H(0),
                    H(1),
                    H(1),
                    H(0x7ff4),
                    W(3),
                    H(2),
                    H(1),
                    W(3),
                    B(b"abxyz\0\0\0"),
                    Q(0x0102_0304_0506_0708),
                ],
            ),
            rec(big, 3, &[W(1), H(3), H(3), B(b"/a\0tk\0")]),
            rec(big, 8, &[W(1), H(2), H(1), H(0xffff), H(0), B(b"a\0\0")]),
            rec(big, 4, &[W(1), W(7)]),
            rec(big, 5, &[W(0), W(0), H(3), H(1), H(0), H(2), B(b"n\0"), H(0), B(b"r\x01"), H(1), B(b"/a\0v")]),
            rec(big, 5, &[W(1), W(7), H(3), H(0), H(0), H(0), B(b"/a\0")]),
            rec(big, 6, &[H(1), H(1), W(1000), W(0), B(b"nodes\0perms\0")]),
            rec(big, 7, &[H(1), H(1), W(1), W(10), B(b"nodes\0")]),
        ],
    )
}

#[test]
fn assembler_agrees_with_golden() {
    assert_eq!(assembled(false), GOLDEN);
}

#[test]
fn big_endian_reads_the_same() {
    let be = assembled(true);
    assert_ne!(be, GOLDEN);
    assert_eq!(read(&be), Ok(golden_stream()));
    let header = Header { version: Version::V2, endian: Endian::Big };
    assert_eq!(read_header(&be), Ok(header));
    assert_eq!(write_with(&golden_stream(), header), Ok(be));
}

#[test]
fn version_1_refuses_what_it_cannot_carry() {
    let v1 = Header { version: Version::V1, endian: Endian::Little };
    let err = write_with(&golden_stream(), v1).unwrap_err();
    assert_eq!(err.kind, ErrorKind::ExtendedWatchInV1);
    assert_eq!(err.at.record, Some(3));

    let mut records = golden_stream().into_records();
    records.remove(3);
    let err = write_with(&Stream::new(records.clone()).unwrap(), v1).unwrap_err();
    assert_eq!(err.kind, ErrorKind::FeaturesInV1);

    if let Some(Record::Domain(d)) = records.last_mut() {
        d.features = 0;
    }
    let s = Stream::new(records).unwrap();
    let bytes = write_with(&s, v1).unwrap();
    assert_eq!(bytes[8..12], [0, 0, 0, 1]);
    assert_eq!(read(&bytes), Ok(s));
}

#[test]
fn version_1_ignores_features_and_skips_extended_watches() {
    let mut bytes = GOLDEN.to_vec();
    bytes[11] = 1;
    let mut records = golden_stream().into_records();
    records.remove(3);
    if let Some(Record::Domain(d)) = records.last_mut() {
        d.features = 0;
    }
    assert_eq!(read(&bytes), Ok(Stream::new(records).unwrap()));
}
