//! Every consistency rule, broken once, in both byte orders: the reader
//! refuses with the rule's error, the record index and a byte offset.

mod common;

use common::{conn, header, node, raw_rec, rec, stream, F};
use xenstore_migration::{read, ConnSpec, Connection, ErrorKind, GlobalData, Node, Record, Stream, Transaction, Watch};
use F::{B, H, Q, W};

/// Reads `bytes` expecting `kind` at record `record`.
fn refused(bytes: &[u8], kind: &ErrorKind, record: Option<usize>) {
    let err = read(bytes).unwrap_err();
    assert_eq!(&err.kind, kind, "{err}");
    assert_eq!(err.at.record, record, "{err}");
    let offset = err.at.offset.expect("reader errors have an offset");
    assert!(offset <= bytes.len(), "{err}");
    assert!(!err.to_string().is_empty());
}

/// Both byte orders: `make(big)` gives the records.
fn both(make: impl Fn(bool) -> Vec<Vec<u8>>, kind: &ErrorKind, record: usize) {
    for big in [false, true] {
        refused(&stream(2, big, &make(big)), kind, Some(record));
    }
}

#[test]
fn header_rules() {
    refused(b"xenstor", &ErrorKind::Truncated { needed: 16, available: 7 }, None);
    let mut bad = header(2, false);
    bad[0] = b'X';
    refused(&bad, &ErrorKind::BadIdent, None);
    refused(&header(3, false), &ErrorKind::UnsupportedVersion(3), None);
    refused(&header(0, false), &ErrorKind::UnsupportedVersion(0), None);
    let mut flags = header(2, false);
    flags[14] = 1;
    refused(&flags, &ErrorKind::ReservedFlags(0x100), None);
}

#[test]
fn end_rules() {
    for big in [false, true] {
        let h = header(2, big);
        refused(&h, &ErrorKind::MissingEnd, Some(0));
        let mut partial = h.clone();
        partial.extend([0, 0, 0]);
        refused(&partial, &ErrorKind::Truncated { needed: 8, available: 3 }, Some(0));
        let mut no_end = h.clone();
        no_end.extend(node(big, "/"));
        refused(&no_end, &ErrorKind::MissingEnd, Some(1));
        let mut long_end = h.clone();
        long_end.extend(raw_rec(big, 0, 8, &[Q(0)]));
        refused(&long_end, &ErrorKind::EndNotEmpty(8), Some(0));
        let mut trailing = stream(2, big, &[]);
        trailing.push(0);
        refused(&trailing, &ErrorKind::TrailingData(1), Some(0));
    }
}

#[test]
fn lengths_within_the_buffer() {
    for big in [false, true] {
        let mut s = header(2, big);
        s.extend(raw_rec(big, 1, 16, &[W(0), W(0)]));
        refused(&s, &ErrorKind::Truncated { needed: 16, available: 8 }, Some(0));
        // A huge length must not allocate or overflow.
        let mut s = header(2, big);
        s.extend(raw_rec(big, 5, u32::MAX, &[]));
        refused(&s, &ErrorKind::Truncated { needed: (u32::MAX as usize + 7) & !7, available: 0 }, Some(0));
        // A length shorter than the fields.
        let mut s = header(2, big);
        s.extend(raw_rec(big, 1, 4, &[W(0), W(0)]));
        s.extend(rec(big, 0, &[]));
        refused(&s, &ErrorKind::BodyTooShort { field: "evtchn-fd" }, Some(0));
    }
}

#[test]
fn padding() {
    for big in [false, true] {
        // Exact (unrounded) length followed by padding: accepted.
        let mut s = header(2, big);
        s.extend(raw_rec(big, 5, 22, &[W(0), W(0), H(2), H(0), H(0), H(1), B(b"n\0\0\0/\0\0\0")]));
        s.extend(rec(big, 0, &[]));
        assert_eq!(read(&s).unwrap().records().len(), 1);
        // Padding missing at the end of the buffer.
        let mut s = header(2, big);
        s.extend(raw_rec(big, 5, 22, &[W(0), W(0), H(2), H(0), H(0), H(1), B(b"n\0\0\0/\0")]));
        refused(&s, &ErrorKind::Truncated { needed: 24, available: 22 }, Some(0));
        // More than 7 octets beyond the fields.
        let mut s = header(2, big);
        s.extend(raw_rec(big, 4, 16, &[W(1), W(1), Q(0)]));
        s.extend(rec(big, 0, &[]));
        let mut c = header(2, big);
        c.extend(conn(big, 1));
        c.extend(&s[16..]);
        refused(&c, &ErrorKind::BodyTooLong { len: 16, used: 8 }, Some(1));
    }
}

#[test]
fn unknown_records_are_skipped() {
    for big in [false, true] {
        let s = stream(2, big, &[rec(big, 9, &[W(1)]), node(big, "/"), rec(big, 0xffff_ffff, &[])]);
        let read = read(&s).unwrap();
        assert_eq!(read.records().len(), 1);
        // The index of a later error counts the skipped records.
        let s = stream(2, big, &[rec(big, 9, &[W(1)]), rec(big, 4, &[W(1), W(1)])]);
        refused(&s, &ErrorKind::UnknownConn(1), Some(1));
    }
}

#[test]
fn strings_are_nul_terminated() {
    let field = |field| ErrorKind::BadString { field };
    both(|b| vec![conn(b, 1), rec(b, 3, &[W(1), H(2), H(3), B(b"/a"), B(b"tk\0")])], &field("wpath"), 1);
    both(|b| vec![conn(b, 1), rec(b, 3, &[W(1), H(3), H(3), B(b"/a\0t\0k")])], &field("token"), 1);
    both(|b| vec![conn(b, 1), rec(b, 3, &[W(1), H(0), H(1), B(b"\0")])], &field("wpath"), 1);
    both(|b| vec![conn(b, 1), rec(b, 3, &[W(1), H(4), H(1), B(b"/\0a\0\0")])], &field("wpath"), 1);
    both(|b| vec![rec(b, 5, &[W(0), W(0), H(3), H(0), H(0), H(1), B(b"n\0\0\0/ab")])], &field("path"), 0);
}

#[test]
fn paths_are_well_formed() {
    let node_path = ErrorKind::BadPath { field: "path" };
    for bad in ["a", "/a/", "//", "/a b", "@", "/\u{e9}"] {
        both(|b| vec![node(b, bad)], &node_path, 0);
    }
    both(|b| vec![rec(b, 5, &[W(0), W(0), H(3), H(0), H(0), H(1), B(b"n\0\0\0/\xff\0")])], &node_path, 0);
    let watch_path = ErrorKind::BadPath { field: "wpath" };
    for bad in ["a/", "/a//b", "@", ""] {
        let mut p = bad.as_bytes().to_vec();
        p.push(0);
        let len = u16::try_from(p.len()).unwrap();
        both(|b| vec![conn(b, 1), rec(b, 3, &[W(1), H(len), H(1), B(&p), B(b"\0")])], &watch_path, 1);
    }
}

#[test]
fn connection_rules() {
    let ring = |b, id, fields, resp, out: u32| {
        rec(b, 2, &[W(id), H(0), H(fields), H(1), H(0), W(3), H(0), H(resp), W(out), B(b"xy")])
    };
    both(|b| vec![ring(b, 0, 0, 0, 2)], &ErrorKind::ZeroConnId, 0);
    both(|b| vec![conn(b, 1), conn(b, 1)], &ErrorKind::DuplicateConn(1), 1);
    both(|b| vec![ring(b, 1, 2, 0, 2)], &ErrorKind::UnknownConnFields(2), 0);
    both(|b| vec![ring(b, 1, 0, 3, 2)], &ErrorKind::RespLongerThanOut, 0);
    // Exact length 26 (padding outside it): three out octets do not fit.
    let short = |b| {
        let mut r = raw_rec(b, 2, 26, &[W(1), H(0), H(0), H(1), H(0), W(3), H(0), H(0), W(3), B(b"xy")]);
        r.extend([0; 6]);
        r
    };
    both(|b| vec![short(b)], &ErrorKind::BodyTooShort { field: "data" }, 0);
    both(|b| vec![ring(b, 1, 1, 0, 2)], &ErrorKind::BodyTooShort { field: "unique-id" }, 0);
    both(|b| vec![rec(b, 2, &[W(1), H(2), H(0), W(0), W(0), H(0), H(0), W(0)])], &ErrorKind::UnknownConnType(2), 0);
}

#[test]
fn watches_and_transactions_name_earlier_connections() {
    let watch = |b, c| rec(b, 3, &[W(c), H(2), H(1), B(b"/\0\0")]);
    both(|b| vec![watch(b, 1)], &ErrorKind::UnknownConn(1), 0);
    both(|b| vec![conn(b, 2), watch(b, 1)], &ErrorKind::UnknownConn(1), 1);
    both(|b| vec![watch(b, 1), conn(b, 1)], &ErrorKind::UnknownConn(1), 0);
    let ta = |b, c, t| rec(b, 4, &[W(c), W(t)]);
    both(|b| vec![ta(b, 1, 1)], &ErrorKind::UnknownConn(1), 0);
    both(|b| vec![conn(b, 1), ta(b, 1, 0)], &ErrorKind::ZeroTxId, 1);
    both(|b| vec![conn(b, 1), ta(b, 1, 5), ta(b, 1, 5)], &ErrorKind::DuplicateTransaction { conn_id: 1, tx_id: 5 }, 2);
    // The same tx-id on two connections is fine.
    let ok = stream(2, false, &[conn(false, 1), conn(false, 2), ta(false, 1, 5), ta(false, 2, 5)]);
    assert!(read(&ok).is_ok());
}

#[test]
fn node_rules() {
    let pending = |b, c, t, access, perms: u16, value: &[u8]| {
        let vlen = u16::try_from(value.len()).unwrap();
        let perm_bytes: &[u8] = if perms == 1 { b"b\0\0\0" } else { b"" };
        rec(b, 5, &[W(c), W(t), H(2), H(vlen), H(access), H(perms), B(perm_bytes), B(b"/\0"), B(value)])
    };
    let ctx = |b| vec![conn(b, 1), rec(b, 4, &[W(1), W(7)])];
    let with = |b, r| {
        let mut v = ctx(b);
        v.push(r);
        v
    };
    both(|b| with(b, pending(b, 1, 8, 1, 1, b"")), &ErrorKind::UnknownTransaction { conn_id: 1, tx_id: 8 }, 2);
    both(|b| with(b, pending(b, 2, 7, 1, 1, b"")), &ErrorKind::UnknownTransaction { conn_id: 2, tx_id: 7 }, 2);
    both(|b| with(b, pending(b, 1, 7, 4, 1, b"")), &ErrorKind::BadAccess(4), 2);
    both(|b| with(b, pending(b, 1, 7, 0, 0, b"x")), &ErrorKind::DeletedNotEmpty, 2);
    both(|b| with(b, pending(b, 1, 7, 2, 0, b"")), &ErrorKind::DeletedNotEmpty, 2);
    // A committed node (conn-id 0) without permissions has no owner; its
    // tx-id and access are ignored.
    both(|b| vec![pending(b, 0, 99, 0, 0, b"")], &ErrorKind::NoOwner, 0);
    let ok = stream(2, false, &[pending(false, 0, 99, 3, 1, b"v")]);
    let s = read(&ok).unwrap();
    assert!(matches!(&s.records()[0], Record::Node(Node { pending: None, .. })));
}

#[test]
fn permission_rules() {
    let perm =
        |b, count, perms: &'static [u8]| rec(b, 5, &[W(0), W(0), H(2), H(0), H(0), H(count), B(perms), B(b"/\0")]);
    both(|b| vec![perm(b, 1, b"x\0\0\0")], &ErrorKind::BadPermKind(b'x'), 0);
    both(|b| vec![perm(b, 1, b"b\x02\0\0")], &ErrorKind::BadPermFlags(2), 0);
    // Counts not matching the list: the path is read as a permission, or a
    // permission as the path.
    both(|b| vec![perm(b, 3, b"b\0\0\0r\0\0\0")], &ErrorKind::BadPermKind(b'/'), 0);
    both(|b| vec![perm(b, 1, b"b\0\0\0r\0\0\0")], &ErrorKind::BodyTooLong { len: 32, used: 22 }, 0);
    // More permissions than the body holds (exact length, padding outside).
    let huge = |b| {
        let mut r = raw_rec(b, 5, 20, &[W(0), W(0), H(2), H(0), H(0), H(0xffff), B(b"b\0\0\0")]);
        r.extend([0; 4]);
        r
    };
    both(|b| vec![huge(b)], &ErrorKind::BodyTooShort { field: "perm" }, 0);
}

#[test]
fn quota_and_singleton_rules() {
    let glob = |b| rec(b, 1, &[W(0), W(0)]);
    both(|b| vec![glob(b), glob(b)], &ErrorKind::DuplicateGlobal, 1);
    let gq = |b| rec(b, 6, &[H(1), H(0), W(1), B(b"a\0")]);
    both(|b| vec![gq(b), gq(b)], &ErrorKind::DuplicateGlobalQuota, 1);
    let dom = |b, d| rec(b, 7, &[H(d), H(1), W(0), W(1), B(b"a\0")]);
    both(|b| vec![dom(b, 3), dom(b, 4), dom(b, 3)], &ErrorKind::DuplicateDomain(3), 2);
    // Names: missing, empty, not UTF-8; values beyond the body.
    both(|b| vec![rec(b, 7, &[H(1), H(2), W(0), W(1), W(2), B(b"a\0")])], &ErrorKind::BadQuotaName, 0);
    both(|b| vec![rec(b, 7, &[H(1), H(1), W(0), W(1), B(b"\0")])], &ErrorKind::BadQuotaName, 0);
    both(|b| vec![rec(b, 7, &[H(1), H(1), W(0), W(1), B(b"\xff\0")])], &ErrorKind::BadQuotaName, 0);
    both(|b| vec![rec(b, 6, &[H(1), H(1), W(1), B(b"a\0")])], &ErrorKind::BadQuotaName, 0);
    both(|b| vec![rec(b, 6, &[H(0xffff), H(0xffff), W(1)])], &ErrorKind::BodyTooShort { field: "quota-val" }, 0);
}

#[test]
fn stream_new_applies_the_same_rules() {
    let conn = |id| {
        Record::Connection(Connection {
            id,
            spec: ConnSpec::Socket { fd: 4 },
            in_data: Vec::new(),
            out_resp_len: 0,
            out_data: Vec::new(),
            unique_id: None,
        })
    };
    let err = Stream::new(vec![conn(1), conn(1)]).unwrap_err();
    assert_eq!((err.kind, err.at.record, err.at.offset), (ErrorKind::DuplicateConn(1), Some(1), None));
    let watch = Record::Watch(Watch { conn_id: 1, path: "/".into(), token: b"a\0".to_vec(), depth: None });
    let err = Stream::new(vec![conn(1), watch]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadString { field: "token" });
    let long = Record::Node(Node {
        pending: None,
        path: format!("/{}", "a".repeat(70_000)),
        value: Vec::new(),
        perms: Vec::new(),
    });
    assert_eq!(Stream::new(vec![long]).unwrap_err().kind, ErrorKind::TooLong { field: "path" });
    let big = Record::Connection(Connection {
        id: 1,
        spec: ConnSpec::Socket { fd: 4 },
        in_data: vec![0; 70_000],
        out_resp_len: 0,
        out_data: Vec::new(),
        unique_id: None,
    });
    assert_eq!(Stream::new(vec![big]).unwrap_err().kind, ErrorKind::TooLong { field: "in-data" });
    let ta = Record::Transaction(Transaction { conn_id: 9, tx_id: 1 });
    assert_eq!(Stream::new(vec![ta]).unwrap_err().kind, ErrorKind::UnknownConn(9));
    let g = Record::Global(GlobalData { rw_socket_fd: -1, evtchn_fd: -1 });
    assert_eq!(Stream::new(vec![g.clone(), g]).unwrap_err().kind, ErrorKind::DuplicateGlobal);
}
