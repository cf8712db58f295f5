//! Table-driven tests: transcripts of rows (caller, transaction, request,
//! expected reply, expected events), run in order against one world.

// Payloads are written as on the wire: `\0` is the nul separator, never octal.
#![allow(clippy::octal_escapes)]

mod support;

use support::*;
use xenstore_wire::ErrorCode::*;
use xenstore_wire::Op::{self, *};

/// One row: who sends what, and exactly what must come back.
struct Row {
    who: &'static str,
    tx: u32,
    op: Op,
    payload: &'static [u8],
    expect: Expect,
    /// (connection, path, token) delivered before the reply.
    events: &'static [(&'static str, &'static str, &'static str)],
}

const fn row(who: &'static str, op: Op, payload: &'static [u8], expect: Expect) -> Row {
    Row { who, tx: 0, op, payload, expect, events: &[] }
}

const fn row_ev(
    who: &'static str,
    op: Op,
    payload: &'static [u8],
    expect: Expect,
    events: &'static [(&'static str, &'static str, &'static str)],
) -> Row {
    Row { who, tx: 0, op, payload, expect, events }
}

fn run(w: &mut World, rows: &[Row]) {
    for (i, r) in rows.iter().enumerate() {
        let out = w.send(r.who, r.tx, r.op, r.payload);
        let got = out.reply.clone().map(|rep| {
            let mut buf = Vec::new();
            rep.encode_payload(&mut buf);
            buf
        });
        let want = r.expect.map(|b| b.to_vec());
        assert_eq!(got, want, "row {i}: {} {} {:?}", r.who, r.op, String::from_utf8_lossy(r.payload));
        let events = w.events_of(&out);
        let want_events: Vec<_> =
            r.events.iter().map(|(c, p, t)| (c.to_string(), p.to_string(), t.to_string())).collect();
        assert_eq!(events, want_events, "row {i} events: {} {} {:?}", r.who, r.op, String::from_utf8_lossy(r.payload));
        assert_eq!(w.engine.check(), Ok(()), "row {i}: invariants");
    }
}

#[test]
fn node_operations_as_dom0() {
    let mut w = World::new();
    run(
        &mut w,
        &[
            row("dom0", Read, b"/a\0", Err(ENOENT)),
            row("dom0", Write, b"/a/b/c\0v1", Ok(b"OK\0")),
            row("dom0", Read, b"/a/b/c\0", Ok(b"v1")),
            row("dom0", Read, b"/a/b\0", Ok(b"")),
            row("dom0", Write, b"/a/bin\0x\0y\0", Ok(b"OK\0")),
            row("dom0", Read, b"/a/bin\0", Ok(b"x\0y\0")),
            row("dom0", Write, b"/a/empty\0", Ok(b"OK\0")),
            row("dom0", Read, b"/a/empty\0", Ok(b"")),
            row("dom0", Directory, b"/a\0", Ok(b"b\0bin\0empty\0")),
            row("dom0", Directory, b"/\0", Ok(b"tool\0a\0")),
            row("dom0", Mkdir, b"/a/b\0", Ok(b"OK\0")),
            row("dom0", Read, b"/a/b/c\0", Ok(b"v1")),
            row("dom0", Mkdir, b"/m/n\0", Ok(b"OK\0")),
            row("dom0", Directory, b"/m\0", Ok(b"n\0")),
            row("dom0", GetPerms, b"/a/b/c\0", Ok(b"n0\0")),
            row("dom0", Rm, b"/a/nothere\0", Ok(b"OK\0")),
            row("dom0", Rm, b"/nothere/deeper\0", Err(ENOENT)),
            row("dom0", Rm, b"/\0", Err(EINVAL)),
            row("dom0", Rm, b"/a/b\0", Ok(b"OK\0")),
            row("dom0", Read, b"/a/b/c\0", Err(ENOENT)),
            row("dom0", Directory, b"/a\0", Ok(b"bin\0empty\0")),
            row("dom0", Write, b"/a/b\0again", Ok(b"OK\0")),
            row("dom0", Directory, b"/a\0", Ok(b"bin\0empty\0b\0")),
            row("dom0", Directory, b"/nothere\0", Err(ENOENT)),
            row("dom0", GetDomainPath, b"7\0", Ok(b"/local/domain/7\0")),
            row("dom0", IsDomainIntroduced, b"0\0", Ok(b"T\0")),
            row("dom0", IsDomainIntroduced, b"7\0", Ok(b"F\0")),
        ],
    );
}

#[test]
fn malformed_requests_get_einval_or_enosys() {
    let mut w = World::new();
    run(
        &mut w,
        &[
            row("dom0", Read, b"", Err(EINVAL)),
            row("dom0", Read, b"/a", Err(EINVAL)),
            row("dom0", Read, b"/a\0junk", Err(EINVAL)),
            row("dom0", Read, b"/a//b\0", Err(EINVAL)),
            row("dom0", Read, b"/a/\0", Err(EINVAL)),
            row("dom0", Read, b"/a b\0", Err(EINVAL)),
            row("dom0", Read, b"@releaseDomain\0", Err(EINVAL)),
            row("dom0", Write, b"/novalue", Err(EINVAL)),
            row("dom0", TransactionEnd, b"X\0", Err(EINVAL)),
            row("dom0", Watch, b"/a\0", Err(EINVAL)),
            row("dom0", SetPerms, b"/a\0", Err(EINVAL)),
            row("dom0", SetPerms, b"/a\0q1\0", Err(EINVAL)),
            row("dom0", WatchEvent, b"/a\0t\0", Err(ENOSYS)),
            row("dom0", Error, b"EINVAL\0", Err(ENOSYS)),
        ],
    );
    assert_eq!(w.reply("dom0", 0, Op::Read, b"/tool\0"), Ok(Vec::new()));
    let mut out = Vec::new();
    out.extend_from_slice(&20u32.to_le_bytes());
    // Operation 20 (the removed RESTRICT) and unknown numbers are ENOSYS.
    for op in [20u32, 27, 1000, 0xffff] {
        assert_eq!(xenstore_wire::Request::parse(op, b"/a\0").err(), Some(ENOSYS));
    }
}

#[test]
fn guest_permissions_follow_the_reference_rules() {
    let mut w = World::new();
    // dom0 lays out the store the way a toolstack does.
    w.ok("dom0", Mkdir, b"/local/domain/1\0");
    w.set_perms("dom0", "/local/domain/1", &["n0", "r1"]);
    w.write("dom0", "/local/domain/1/name", "guest1");
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["b1"]);
    w.write("dom0", "/pub", "public");
    w.set_perms("dom0", "/pub", &["r0"]);
    w.write("dom0", "/shared", "s");
    w.set_perms("dom0", "/shared", &["n0", "b2", "r3"]);
    w.write("dom0", "/secret/inner", "x");
    run(
        &mut w,
        &[
            // Reads: default letter, per-domain entries, owner.
            row("d1", Read, b"/pub\0", Ok(b"public")),
            row("d1", Write, b"/pub\0x", Err(EACCES)),
            row("d1", Read, b"/shared\0", Err(EACCES)),
            row("d2", Read, b"/shared\0", Ok(b"s")),
            row("d2", Write, b"/shared\0t", Ok(b"OK\0")),
            row("d3", Read, b"/shared\0", Ok(b"t")),
            row("d3", Write, b"/shared\0u", Err(EACCES)),
            // Relative paths are under the caller's home.
            row("d1", Read, b"name\0", Ok(b"guest1")),
            row("d1", Write, b"name\0evil", Err(EACCES)),
            row("d1", Write, b"data/x\01", Ok(b"OK\0")),
            // A node created by a guest is owned by it; other entries copied.
            row("d1", GetPerms, b"data/x\0", Ok(b"b1\0")),
            row("dom0", GetPerms, b"/local/domain/1/data/x\0", Ok(b"b1\0")),
            // Missing node: EACCES when the nearest ancestor is unreadable,
            // ENOENT when it is readable. Nothing leaks through errors.
            row("d1", Read, b"/secret/nothere\0", Err(EACCES)),
            row("d1", Read, b"/secret/inner\0", Err(EACCES)),
            row("d1", Read, b"/pub/nothere\0", Err(ENOENT)),
            row("d1", Read, b"data/nothere\0", Err(ENOENT)),
            // Creating needs write on the nearest existing ancestor.
            row("d1", Write, b"/pub/new\0v", Err(EACCES)),
            row("d1", Mkdir, b"/secret/new\0", Err(EACCES)),
            // RM of a missing node whose parent is not writable: EACCES.
            row("d1", Rm, b"/pub/nothere\0", Err(EACCES)),
            row("d1", Rm, b"data/nothere\0", Ok(b"OK\0")),
            row("d1", Rm, b"data/no/deeper\0", Err(ENOENT)),
            // SET_PERMS: owner only; the owner may not give the node away.
            row("d1", SetPerms, b"data/x\0b1\0r2\0", Ok(b"OK\0")),
            row("d2", Read, b"/local/domain/1/data/x\0", Ok(b"1")),
            row("d2", SetPerms, b"/local/domain/1/data/x\0b2\0", Err(EACCES)),
            row("d1", SetPerms, b"data/x\0b2\0", Err(EPERM)),
            row("d1", SetPerms, b"data/x\0n1\0r2\0r3\0r4\0r5\0r6\0", Err(ENOSPC)),
            row("d1", SetPerms, b"data/x\0n1\0r2\0r3\0r4\0r5\0", Ok(b"OK\0")),
            // IS_DOMAIN_INTRODUCED is for the toolstack, as in C 4.17+
            // (`XS_FLAG_PRIV`): a guest may not probe which domains exist.
            row("d1", IsDomainIntroduced, b"0\0", Err(EACCES)),
            row("d1", IsDomainIntroduced, b"1\0", Err(EACCES)),
            // dom0 may change the owner, and bypasses all checks.
            row("dom0", SetPerms, b"/local/domain/1/data/x\0n2\0", Ok(b"OK\0")),
            row("d2", Read, b"/local/domain/1/data/x\0", Ok(b"1")),
            row("d1", Read, b"data/x\0", Err(EACCES)),
            row("dom0", Read, b"/secret/inner\0", Ok(b"x")),
            // Privileged-only requests.
            row("d1", Introduce, b"5\0123\04\0", Err(EACCES)),
            row("d1", Release, b"1\0", Err(EACCES)),
            row("d1", SetTarget, b"1\02\0", Err(EACCES)),
            row("d1", Control, b"check\0", Err(EACCES)),
            row("d1", GetQuota, b"", Err(EACCES)),
            row("d1", SetQuota, b"nodes\05\0", Err(EACCES)),
            row("d1", GetFeature, b"1\0", Err(EACCES)),
            // ... but its own features any domain may ask for (Xen 4.22):
            // 15 = reconnection, error, watch depth, DOMID_ANY.
            row("d1", GetFeature, b"", Ok(b"15\0")),
            // RM of `/` is a permission refusal before it is EINVAL.
            row("d1", Rm, b"/\0", Err(EACCES)),
            row("dom0", Rm, b"/\0", Err(EINVAL)),
            row("d1", SetPerms, b"@releaseDomain\0b1\0", Err(EACCES)),
        ],
    );
}

#[test]
fn watches_fire_filtered_and_in_order() {
    let mut w = World::new();
    w.write("dom0", "/w/a/b", "1");
    w.set_perms("dom0", "/w", &["n0", "r1"]);
    w.set_perms("dom0", "/w/a", &["n0", "r1"]);
    w.set_perms("dom0", "/w/a/b", &["n0", "r1"]);
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["b1"]);
    run(
        &mut w,
        &[
            row("dom0", Watch, b"/w\0t0\0", Ok(b"OK\0")),
            row("d1", Watch, b"/w/a\0t1\0", Ok(b"OK\0")),
            row("d2", Watch, b"/w\0t2\0", Ok(b"OK\0")),
            row("d1", Watch, b"data\0rel\0", Ok(b"OK\0")),
            row("d1", Watch, b"/w/a\0t1\0", Err(EEXIST)),
            row("d1", Watch, b"/w/a/b\0deep\00\0", Ok(b"OK\0")),
            // d2 cannot read /w/a/b: it is not told (XSA-115).
            row_ev(
                "dom0",
                Write,
                b"/w/a/b\02",
                Ok(b"OK\0"),
                &[("dom0", "/w/a/b", "t0"), ("d1", "/w/a/b", "t1"), ("d1", "/w/a/b", "deep")],
            ),
            // Depth 0 matches only the node itself.
            row_ev("dom0", Write, b"/w/a/b/c\0", Ok(b"OK\0"), &[("dom0", "/w/a/b/c", "t0"), ("d1", "/w/a/b/c", "t1")]),
            // A relative watch reports relative paths.
            row_ev("d1", Write, b"data/k\0v", Ok(b"OK\0"), &[("d1", "data/k", "rel")]),
            row_ev("dom0", Write, b"/local/domain/1/data/k\0v", Ok(b"OK\0"), &[("d1", "data/k", "rel")]),
            // MKDIR of an existing node changes nothing and fires nothing.
            row("dom0", Mkdir, b"/w/a\0", Ok(b"OK\0")),
            // Removing an ancestor: one event at the removed path for
            // watches above, the watch's own path for watches below.
            row_ev(
                "dom0",
                Rm,
                b"/w/a\0",
                Ok(b"OK\0"),
                &[("dom0", "/w/a", "t0"), ("d1", "/w/a", "t1"), ("d1", "/w/a/b", "deep")],
            ),
            row("d1", Unwatch, b"/w/a\0t1\0", Ok(b"OK\0")),
            row("d1", Unwatch, b"/w/a\0t1\0", Err(ENOENT)),
            row_ev("dom0", Write, b"/w/a\0", Ok(b"OK\0"), &[("dom0", "/w/a", "t0")]),
            row("d1", ResetWatches, b"\0", Ok(b"OK\0")),
            row_ev("dom0", Write, b"/local/domain/1/data/k\0v", Ok(b"OK\0"), &[]),
        ],
    );
}

#[test]
fn watch_fires_once_at_registration_after_the_reply() {
    let mut w = World::new();
    let out = w.send("d1", 0, Watch, b"some/rel\0tok\0");
    assert_eq!(out.reply, Ok(xenstore_wire::Reply::Ok));
    assert!(out.events.is_empty());
    let initial = out.after_reply.expect("initial event");
    assert_eq!(initial.conn, w.conn("d1"));
    assert_eq!(initial.event.path, "some/rel");
    assert_eq!(&*initial.event.token, b"tok");
}

#[test]
fn transactions_isolate_and_fire_at_commit() {
    let mut w = World::new();
    w.write("dom0", "/t/x", "0");
    w.watch("d1", "/", "root");
    w.set_perms("dom0", "/t", &["r0"]);
    w.set_perms("dom0", "/t/x", &["r0"]);
    let tx = w.tx_start("dom0");
    let steps: &[Row] = &[
        Row { who: "dom0", tx, op: Write, payload: b"/t/x\01", expect: Ok(b"OK\0"), events: &[] },
        Row { who: "dom0", tx, op: Write, payload: b"/t/y\02", expect: Ok(b"OK\0"), events: &[] },
        Row { who: "dom0", tx, op: Read, payload: b"/t/x\0", expect: Ok(b"1"), events: &[] },
        row("dom0", Read, b"/t/x\0", Ok(b"0")),
        row("dom0", Read, b"/t/y\0", Err(ENOENT)),
        Row { who: "dom0", tx, op: TransactionStart, payload: b"\0", expect: Err(EBUSY), events: &[] },
        Row { who: "d2", tx, op: Read, payload: b"/t/x\0", expect: Err(ENOENT), events: &[] },
        Row { who: "dom0", tx: 999, op: Read, payload: b"/t/x\0", expect: Err(ENOENT), events: &[] },
        Row {
            who: "dom0",
            tx,
            op: TransactionEnd,
            payload: b"T\0",
            expect: Ok(b"OK\0"),
            events: &[("d1", "/t/x", "root"), ("d1", "/t/y", "root")],
        },
        row("dom0", Read, b"/t/y\0", Ok(b"2")),
        Row { who: "dom0", tx, op: TransactionEnd, payload: b"T\0", expect: Err(ENOENT), events: &[] },
        row("dom0", TransactionEnd, b"T\0", Err(ENOENT)),
    ];
    run(&mut w, steps);
    let tx = w.tx_start("dom0");
    let steps: &[Row] = &[
        Row { who: "dom0", tx, op: Write, payload: b"/t/z\03", expect: Ok(b"OK\0"), events: &[] },
        Row { who: "dom0", tx, op: TransactionEnd, payload: b"F\0", expect: Ok(b"OK\0"), events: &[] },
        row("dom0", Read, b"/t/z\0", Err(ENOENT)),
    ];
    run(&mut w, steps);
}

#[test]
fn transaction_conflicts_are_per_node() {
    let mut w = World::new();
    w.write("dom0", "/c/a", "0");
    w.write("dom0", "/c/b", "0");
    // Disjoint writers both commit.
    let t1 = w.tx_start("dom0");
    let t2 = w.tx_start("dom0");
    assert_eq!(w.reply("dom0", t1, Write, b"/c/a\01"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t2, Write, b"/c/b\01"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t2, TransactionEnd, b"T\0"), Ok(b"OK\0".to_vec()));
    // Same node: the second commit is EAGAIN.
    let t1 = w.tx_start("dom0");
    let t2 = w.tx_start("dom0");
    assert_eq!(w.reply("dom0", t1, Read, b"/c/a\0"), Ok(b"1".to_vec()));
    assert_eq!(w.reply("dom0", t1, Write, b"/c/a\02"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t2, Read, b"/c/a\0"), Ok(b"1".to_vec()));
    assert_eq!(w.reply("dom0", t2, Write, b"/c/a\03"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t2, TransactionEnd, b"T\0"), Err(EAGAIN));
    assert_eq!(w.reply("dom0", 0, Read, b"/c/a\0"), Ok(b"2".to_vec()));
    // New children of one directory from two transactions: both commit.
    let t1 = w.tx_start("dom0");
    let t2 = w.tx_start("dom0");
    assert_eq!(w.reply("dom0", t1, Write, b"/c/n1\0x"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t2, Write, b"/c/n2\0y"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t2, TransactionEnd, b"T\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", 0, Directory, b"/c\0"), Ok(b"a\0b\0n2\0n1\0".to_vec()));
    // A listing transaction conflicts with a new child.
    let t1 = w.tx_start("dom0");
    assert!(w.reply("dom0", t1, Directory, b"/c\0").is_ok());
    w.write("dom0", "/c/n3", "z");
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Err(EAGAIN));
    // Observing absence counts too: a concurrent creation conflicts.
    let t1 = w.tx_start("dom0");
    assert_eq!(w.reply("dom0", t1, Read, b"/c/later\0"), Err(ENOENT));
    w.write("dom0", "/c/later", "1");
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Err(EAGAIN));
    // Removing a subtree conflicts with a child created inside it meanwhile.
    let t1 = w.tx_start("dom0");
    assert_eq!(w.reply("dom0", t1, Rm, b"/c\0"), Ok(b"OK\0".to_vec()));
    w.write("dom0", "/c/n4", "z");
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Err(EAGAIN));
    assert_eq!(w.engine.check(), Ok(()));
}

#[test]
fn quotas_return_the_reference_errors_and_name_the_quota() {
    let mut w = World::new();
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["b1"]);
    w.ok("dom0", SetQuota, b"1\0nodes\03\0");
    w.ok("dom0", SetQuota, b"1\0watches\02\0");
    w.ok("dom0", SetQuota, b"1\0transactions\01\0");
    assert_eq!(w.reply("dom0", 0, GetQuota, b"1\0nodes\0"), Ok(b"3\0".to_vec()));
    assert_eq!(w.reply("dom0", 0, GetQuota, b"nodes\0"), Ok(b"1000\0".to_vec()));
    assert_eq!(w.reply("dom0", 0, GetQuota, b"bogus\0"), Err(EINVAL));
    // data already counts as owned by 1 (b1 makes 1 the owner): 1 node.
    assert_eq!(w.reply("d1", 0, Write, b"data/a\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("d1", 0, Write, b"data/b\0"), Ok(b"OK\0".to_vec()));
    let out = w.send("d1", 0, Write, b"data/c\0");
    assert_eq!(out.reply, Err(ENOSPC));
    assert_eq!(out.quota.map(|q| q.kind), Some(xenstore_db::QuotaKind::Nodes));
    // Node size: over 2048 bytes is ENOSPC for a guest, fine for dom0.
    let mut big = b"data/a\0".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2049));
    let out = w.send("d1", 0, Write, &big);
    assert_eq!(out.reply, Err(ENOSPC));
    assert_eq!(out.quota.map(|q| q.kind), Some(xenstore_db::QuotaKind::NodeSize));
    let mut big0 = b"/big\0".to_vec();
    big0.extend(std::iter::repeat_n(b'x', 3000));
    assert_eq!(w.send("dom0", 0, Write, &big0).reply, Ok(xenstore_wire::Reply::Ok));
    // Watches: E2BIG.
    w.watch("d1", "/a", "1");
    w.watch("d1", "/b", "2");
    let out = w.send("d1", 0, Watch, b"/c\03\0");
    assert_eq!(out.reply, Err(E2BIG));
    assert_eq!(out.quota.map(|q| q.kind), Some(xenstore_db::QuotaKind::Watches));
    // Transactions: ENOSPC.
    let _t = w.tx_start("d1");
    let out = w.send("d1", 0, TransactionStart, b"\0");
    assert_eq!(out.reply, Err(ENOSPC));
    assert_eq!(out.quota.map(|q| q.kind), Some(xenstore_db::QuotaKind::Transactions));
    // Path length below the home: EINVAL.
    w.ok("dom0", SetQuota, b"1\0path-max\010\0");
    assert_eq!(w.reply("d1", 0, Read, b"data/abcdef\0"), Err(EINVAL));
    assert_eq!(w.reply("d1", 0, Read, b"data/abcd\0"), Err(ENOENT));
}

#[test]
fn transaction_node_quota_is_enospc() {
    let mut w = World::new();
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["b1"]);
    w.ok("dom0", SetQuota, b"1\0transaction-nodes\03\0");
    let tx = w.tx_start("d1");
    assert_eq!(w.reply("d1", tx, Write, b"data/a\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("d1", tx, Write, b"data/b\0"), Ok(b"OK\0".to_vec()));
    let out = w.send("d1", tx, Write, b"data/c\0");
    assert_eq!(out.reply, Err(ENOSPC));
    assert_eq!(out.quota.map(|q| q.kind), Some(xenstore_db::QuotaKind::TransactionNodes));
}

#[test]
fn special_watches_need_privilege_or_permission() {
    let mut w = World::new();
    w.ok("dom0", Watch, b"@introduceDomain\0i\0");
    w.ok("dom0", Watch, b"@releaseDomain\0r\01\0");
    w.ok("d1", Watch, b"@introduceDomain\0i1\0");
    w.ok("d2", Watch, b"@releaseDomain/5\0r5\0");
    assert_eq!(w.reply("dom0", 0, Watch, b"@releaseDomain\0bad\02\0"), Err(EINVAL));
    let out = w.send("dom0", 0, Introduce, b"5\012\03\0");
    assert_eq!(w.events_of(&out), vec![("dom0".into(), "@introduceDomain".into(), "i".into())]);
    // Let d1 and d2 see the special events.
    w.set_perms("dom0", "@introduceDomain", &["n0", "r1"]);
    w.set_perms("dom0", "@releaseDomain", &["n0", "r2"]);
    assert_eq!(w.reply("dom0", 0, GetPerms, b"@introduceDomain\0"), Ok(b"n0\0r1\0".to_vec()));
    let out = w.send("dom0", 0, Introduce, b"6\012\03\0");
    assert_eq!(
        w.events_of(&out),
        vec![
            ("dom0".into(), "@introduceDomain".into(), "i".into()),
            ("d1".into(), "@introduceDomain".into(), "i1".into())
        ]
    );
    // Re-introducing with the same ring is harmless; another ring is EINVAL.
    assert_eq!(w.reply("dom0", 0, Introduce, b"6\012\03\0"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", 0, Introduce, b"6\099\03\0"), Err(EINVAL));
    assert_eq!(w.reply("dom0", 0, IsDomainIntroduced, b"6\0"), Ok(b"T\0".to_vec()));
    // Shutdown of 5 fires once, with the domid at depth 1.
    let events = w.engine.domain_shutdown(5).events;
    let names: Vec<_> = events.iter().map(|d| (d.conn, d.event.path.clone())).collect();
    assert_eq!(
        names,
        vec![(w.conn("dom0"), "@releaseDomain/5".to_string()), (w.conn("d2"), "@releaseDomain/5".to_string())]
    );
    assert!(w.engine.domain_shutdown(5).events.is_empty());
    w.ok("dom0", Resume, b"5\0");
    assert_eq!(w.engine.domain_shutdown(5).events.len(), 2);
    // Domain 6 released: dom0 hears it; d2's watch is only for domain 5.
    let out = w.send("dom0", 0, Release, b"6\0");
    assert_eq!(w.events_of(&out), vec![("dom0".into(), "@releaseDomain/6".into(), "r".into())]);
    assert_eq!(w.reply("dom0", 0, Release, b"6\0"), Err(ENOENT));
    assert_eq!(w.reply("dom0", 0, Release, b"0\0"), Err(EINVAL));
    assert_eq!(w.reply("dom0", 0, IsDomainIntroduced, b"6\0"), Ok(b"F\0".to_vec()));
}

#[test]
fn domain_removal_deletes_owned_nodes_and_stale_grants() {
    let mut w = World::new();
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["n1"]);
    w.ok("d1", Write, b"data/mine/deep\0v");
    w.write("dom0", "/grant", "g");
    w.set_perms("dom0", "/grant", &["n0", "r1"]);
    w.watch("dom0", "/local/domain/1", "home");
    w.ok("dom0", Introduce, b"1\01\01\0");
    assert_eq!(w.engine.owned_count(1), 3);
    let events = w.engine.remove_domain(1).events;
    let paths: Vec<_> = events.iter().map(|d| d.event.path.clone()).collect();
    assert_eq!(paths, vec!["/local/domain/1/data".to_string()]);
    assert!(w.engine.peek("/local/domain/1/data").is_none());
    assert_eq!(w.engine.owned_count(1), 0);
    // The grant to the old domain 1 is gone for a new domain 1.
    let new1 = w.engine.connect(xenstore_db::Caller::guest(1));
    let out = w.engine.handle(new1, 0, &xenstore_wire::Request::Read("/grant"));
    assert_eq!(out.reply, Err(EACCES));
    assert_eq!(w.reply("dom0", 0, GetPerms, b"/grant\0"), Ok(b"n0\0".to_vec()));
    assert_eq!(w.engine.check(), Ok(()));
}

#[test]
fn domain_removal_finds_owned_nodes_anywhere_in_path_order() {
    let mut w = World::new();
    // Owned nodes outside the home, one nested in another's subtree, and
    // a dom0 node below one of them.
    for p in ["/b/x", "/a/one", "/a/one/two", "/a/one/two/dom0", "/a-z"] {
        w.write("dom0", p, "v");
    }
    for p in ["/b/x", "/a/one", "/a/one/two", "/a-z"] {
        w.set_perms("dom0", p, &["n1"]);
    }
    w.set_perms("dom0", "/a/one/two/dom0", &["n0"]);
    w.watch("dom0", "/", "all");
    assert_eq!(w.engine.owned_count(1), 4);
    let events = w.engine.remove_domain(1).events;
    let paths: Vec<_> = events.iter().map(|d| d.event.path.clone()).collect();
    // One event per removed subtree, in path order ('-' sorts before '/').
    assert_eq!(paths, ["/a-z", "/a/one", "/b/x"].map(String::from));
    assert!(w.engine.peek("/a/one/two/dom0").is_none(), "removed with its owned parent");
    for p in ["/a/one", "/a-z", "/b/x"] {
        assert!(w.engine.peek(p).is_none(), "{p} kept");
    }
    assert!(w.engine.peek("/a").is_some() && w.engine.peek("/b").is_some());
    assert_eq!(w.engine.owned_count(1), 0);
    assert_eq!(w.engine.check(), Ok(()));
}

#[test]
fn domain_removal_after_its_nodes_are_gone_removes_nothing_else() {
    let mut w = World::new();
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["n1"]);
    w.ok("d1", Write, b"data/mine\0v");
    w.write("dom0", "/local/domain/0/backend", "b");
    assert_eq!(w.engine.owned_count(1), 2);
    w.ok("dom0", Rm, b"/local/domain/1\0");
    assert_eq!(w.engine.owned_count(1), 0);
    let before: Vec<String> = w.engine.paths().collect();
    let events = w.engine.remove_domain(1).events;
    assert!(events.iter().all(|d| d.event.path == "@releaseDomain/1"), "{events:?}");
    let after: Vec<String> = w.engine.paths().collect();
    assert_eq!(before, after);
    assert_eq!(w.engine.check(), Ok(()));
}

#[test]
fn keep_orphans_gives_nodes_to_dom0() {
    let config = xenstore_db::Config { keep_orphans: true, ..Default::default() };
    let mut w = World::with_config(config);
    w.write("dom0", "/local/domain/1/data", "");
    w.set_perms("dom0", "/local/domain/1/data", &["n1"]);
    w.ok("d1", Write, b"data/mine\0v");
    w.engine.remove_domain(1);
    let (value, perms) = w.engine.peek("/local/domain/1/data/mine").expect("kept");
    assert_eq!(&*value, b"v");
    assert_eq!(perms.owner(), 0);
    assert_eq!(w.engine.check(), Ok(()));
}

#[test]
fn set_target_lets_a_controller_act_for_its_target() {
    let mut w = World::new();
    w.write("dom0", "/local/domain/2/device", "d");
    w.set_perms("dom0", "/local/domain/2/device", &["n2"]);
    w.write("dom0", "/granted", "g");
    w.set_perms("dom0", "/granted", &["n0", "r2"]);
    assert_eq!(w.reply("d3", 0, Read, b"/local/domain/2/device\0"), Err(EACCES));
    w.ok("dom0", SetTarget, b"3\02\0");
    assert_eq!(w.reply("d3", 0, Read, b"/local/domain/2/device\0"), Ok(b"d".to_vec()));
    assert_eq!(w.reply("d3", 0, Write, b"/local/domain/2/device\0e"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("d3", 0, Read, b"/granted\0"), Ok(b"g".to_vec()));
}

#[test]
fn removing_a_target_ends_its_controller_acting_for_the_next_domain_with_its_id() {
    let mut w = World::new();
    w.ok("dom0", SetTarget, b"3\02\0");
    w.engine.remove_domain(2);
    // A new domain 2: domain 3 must not act for it.
    w.write("dom0", "/local/domain/2/device", "d");
    w.set_perms("dom0", "/local/domain/2/device", &["n2"]);
    assert_eq!(w.reply("d3", 0, Read, b"/local/domain/2/device\0"), Err(EACCES));
    assert_eq!(w.engine.check(), Ok(()));
}

#[test]
fn directory_part_pages_with_generation_and_end_marker() {
    let mut w = World::new();
    for i in 0..600 {
        w.write("dom0", &format!("/big/child-{i:04}"), "");
    }
    assert_eq!(w.reply("dom0", 0, Directory, b"/big\0"), Err(E2BIG));
    let mut names = Vec::new();
    let mut offset = 0usize;
    let mut gen = None;
    loop {
        let out = w.send("dom0", 0, DirectoryPart, format!("/big\0{offset}\0").as_bytes());
        let Ok(xenstore_wire::Reply::DirectoryPart { generation, names: run, complete }) = out.reply else {
            panic!("bad reply {:?}", out.reply)
        };
        assert!(gen.is_none_or(|g| g == generation));
        gen = Some(generation);
        offset += run.len();
        names.extend(run.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| String::from_utf8(n.to_vec()).unwrap()));
        if complete {
            break;
        }
    }
    assert_eq!(names.len(), 600);
    assert_eq!(names[0], "child-0000");
    assert_eq!(names[599], "child-0599");
    // Past the end: just the generation and the end marker.
    let out = w.reply("dom0", 0, DirectoryPart, b"/big\099999\0").unwrap();
    assert!(out.ends_with(b"\0\0"));
    // A change to the children changes the generation.
    w.write("dom0", "/big/another", "");
    let Ok(xenstore_wire::Reply::DirectoryPart { generation, .. }) =
        w.send("dom0", 0, DirectoryPart, b"/big\00\0").reply
    else {
        panic!()
    };
    assert_ne!(Some(generation), gen);
}

#[test]
fn privileged_callers_are_bounded_too() {
    let config = xenstore_db::Config { max_transactions_per_conn: 2, max_transaction_nodes: 3, ..Default::default() };
    let mut w = World::with_config(config);
    let tx = w.tx_start("dom0");
    let _second = w.tx_start("dom0");
    assert_eq!(w.send("dom0", 0, TransactionStart, b"\0").reply, Err(ENOSPC));
    for (i, expect) in [Ok(b"OK\0".to_vec()), Ok(b"OK\0".to_vec()), Err(ENOSPC)].into_iter().enumerate() {
        // Each new top-level node touches itself and the root.
        assert_eq!(w.reply("dom0", tx, Write, format!("/n{i}\0").as_bytes()), expect, "write {i}");
    }
}

/// A toolstack writes a new domain's directory in one transaction: the
/// entry naming the (not yet known) domain must count inside the
/// transaction, so children created after SET_PERMS inherit it.
#[test]
fn transaction_set_perms_naming_a_new_domain_is_inherited() {
    let mut w = World::new();
    let tx = w.tx_start("dom0");
    let steps: &[Row] = &[
        Row { who: "dom0", tx, op: Mkdir, payload: b"/local/domain/7\0", expect: Ok(b"OK\0"), events: &[] },
        Row { who: "dom0", tx, op: SetPerms, payload: b"/local/domain/7\0n0\0r7\0", expect: Ok(b"OK\0"), events: &[] },
        Row { who: "dom0", tx, op: Write, payload: b"/local/domain/7/name\0g", expect: Ok(b"OK\0"), events: &[] },
        Row { who: "dom0", tx, op: GetPerms, payload: b"/local/domain/7/name\0", expect: Ok(b"n0\0r7\0"), events: &[] },
        Row { who: "dom0", tx, op: TransactionEnd, payload: b"T\0", expect: Ok(b"OK\0"), events: &[] },
        row("dom0", GetPerms, b"/local/domain/7/name\0", Ok(b"n0\0r7\0")),
        row("dom0", GetPerms, b"/local/domain/7\0", Ok(b"n0\0r7\0")),
    ];
    run(&mut w, steps);
}

/// `/` cannot be removed: when the domain owning it goes, dom0 gets it, so
/// no node is left owned by a domain the store no longer knows.
#[test]
fn remove_domain_owning_root_gives_root_to_dom0() {
    let mut w = World::new();
    w.set_perms("dom0", "/", &["r1"]);
    w.engine.remove_domain(1);
    assert_eq!(w.engine.check(), Ok(()));
    run(&mut w, &[row("dom0", GetPerms, b"/\0", Ok(b"r0\0"))]);
}

/// `Engine::restart_untouched_transaction` (the daemon's transaction
/// gate): a transaction that has done nothing yet moves to the store as
/// it is now and sees what was committed since its start; one that has
/// read, written, or belongs to another connection does not move.
#[test]
fn an_untouched_transaction_restarts_at_the_present() {
    let mut w = World::new();
    w.write("dom0", "/c", "0");
    let t1 = w.tx_start("dom0");
    let t2 = w.tx_start("dom0");
    w.write("dom0", "/c", "1");
    let conn = w.conn("dom0");
    let other = w.conn("d1");
    assert!(!w.engine.restart_untouched_transaction(other, t1), "another connection's transaction moved");
    assert!(w.engine.restart_untouched_transaction(conn, t1));
    assert_eq!(w.reply("dom0", t1, Read, b"/c\0"), Ok(b"1".to_vec()));
    assert_eq!(w.reply("dom0", t1, Write, b"/c\x002"), Ok(b"OK\0".to_vec()));
    assert_eq!(w.reply("dom0", t1, TransactionEnd, b"T\0"), Ok(b"OK\0".to_vec()), "it saw the commit before it");
    // t2 read before: it keeps its snapshot and conflicts.
    assert_eq!(w.reply("dom0", t2, Read, b"/c\0"), Ok(b"0".to_vec()));
    assert!(!w.engine.restart_untouched_transaction(conn, t2), "a transaction that read moved");
    assert_eq!(w.reply("dom0", t2, TransactionEnd, b"T\0"), Err(EAGAIN));
    assert!(!w.engine.restart_untouched_transaction(conn, 999), "no such transaction");
}
