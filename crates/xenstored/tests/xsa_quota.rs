//! The adversarial suite, resources: quotas, memory, transactions and
//! what a domain leaves behind. The table of every advisory is in
//! `tests/xsa.rs`.
//!
//! | advisory | checks |
//! | --- | --- |
//! | XSA-206 | a guest writing its own nodes flat out does not fail dom0's transactions |
//! | XSA-272 | `nodes` quota, ENOSPC |
//! | XSA-323 | path-max judged on the canonical path; nothing a guest makes is out of others' reach |
//! | XSA-326 | watches, transactions, transaction-nodes; bounded output for a guest that does not read; `outstanding`, `memory`, a dom0 watcher's other events |
//! | XSA-330 | RESET_WATCHES frees every watch |
//! | XSA-414, 415 | a creation failing half way leaves nothing, inside a transaction fails the commit |
//! | XSA-416 | a guest not reading big replies is paused, memory bounded; then reconnected |
//! | XSA-418 | the deepest trees are made, listed, removed and cleaned up |
//! | XSA-419 | a guest's nodes outside its home go with it |
//! | XSA-421, 440 | accounting exact after create+remove in a transaction, and after conflicting removals |
//! | XSA-483 | a new domain with a dead one's id has the whole quota |
//! | XSA-484 | RESET_WATCHES inside a transaction |

mod xsa_support;

use xenstore::{ErrorCode, Op};
use xenstored::testing::ClientId;
use xsa_support::*;

/// Writes `data/<prefix><i>` until a write fails; returns how many
/// succeeded and the error.
fn fill(h: &mut Host, g: ClientId, prefix: &str, max: usize) -> (usize, Option<ErrorCode>) {
    for i in 0..max {
        if let Err(e) = h.w.call(g, Op::Write, &wr(&format!("data/{prefix}{i}"), b"v")) {
            return (i, e.code());
        }
    }
    (max, None)
}

/// "xenstore denial of service via repeated update": a guest rewriting
/// its own nodes between every step of dom0's transactions (which read
/// and write other domains' nodes) does not make them fail: conflicts are
/// per node. (A guest rewriting a node the transaction read does conflict;
/// the write rate limit bounds that: see the next tests.)
#[test]
fn xsa_206_guest_writes_do_not_fail_dom0_transactions() {
    let mut h = Host::new();
    let g = h.guest("rewriter");
    let by = h.home_of(h.bystander);
    for round in 0..20 {
        let tx: u32 = String::from_utf8(h.w.call(h.dom0, Op::TransactionStart, b"\0").unwrap())
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap();
        let steps: [(Op, Vec<u8>); 3] = [
            (Op::Read, z(&[&format!("{by}/data/mine")])),
            (Op::Directory, z(&[&format!("{by}/data")])),
            (Op::Write, wr(&format!("{by}/backend-state"), round.to_string().as_bytes())),
        ];
        for (op, payload) in steps {
            h.w.call(g, Op::Write, &wr("data/hot", round.to_string().as_bytes())).unwrap();
            h.w.call_in(h.dom0, tx, op, &payload).unwrap();
        }
        h.w.call(g, Op::Write, b"data/hot\0last").unwrap();
        assert_eq!(h.w.call_in(h.dom0, tx, Op::TransactionEnd, b"T\0").unwrap(), b"OK\0", "round {round}");
    }
    h.still_serving();
}

/// The transaction id dom0's TRANSACTION_START answered.
fn start(h: &mut Host) -> u32 {
    let reply = h.w.call(h.dom0, Op::TransactionStart, b"\0").unwrap();
    String::from_utf8(reply).unwrap().trim_end_matches('\0').parse().unwrap()
}

/// Sends `n` WRITEs of `path` from `g` without waiting; steps the world
/// without waiting out any timer; returns how many were answered and how
/// long that took.
fn flood(h: &mut Host, g: ClientId, path: &str, n: usize) -> (Vec<u32>, usize, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let ids: Vec<u32> = (0..n).map(|i| h.w.send(g, Op::Write, 0, &wr(path, i.to_string().as_bytes()))).collect();
    while h.w.round() {}
    let elapsed = t0.elapsed();
    let answered = ids.iter().filter(|&&id| h.w.reply(g, id).is_some()).count();
    (ids, answered, elapsed)
}

/// The same, the other half: a guest rewriting in a loop the very node
/// dom0's transaction read (which does conflict) is slowed by the write
/// rate limit (C's `wrl_*`, the XSA-206 fix): its burst of ten goes
/// through, then it is read at the shared rate, so dom0's retry commits.
#[test]
fn xsa_206_a_guest_rewriting_what_dom0_reads_is_rate_limited() {
    // Credit comes back with time from the guests' introduction on.
    let t0 = std::time::Instant::now();
    let mut h = Host::new();
    let g = h.guest("rewriter");
    let hot = format!("{}/data/hot", h.home_of(g));
    h.w.call(g, Op::Write, b"data/hot\0start").unwrap();
    let tx = start(&mut h);
    h.w.call_in(h.dom0, tx, Op::Read, &z(&[&hot])).unwrap();
    let (_, answered, _) = flood(&mut h, g, "data/hot", 60);
    let elapsed = t0.elapsed();
    // Ten from the guest's burst, and at most what the whole host's rate
    // (200 writes a second, shared) restored since, plus one in flight.
    let bound = 10 + 1 + elapsed.as_millis() as usize / 5 + 1;
    assert!((10..=bound).contains(&answered), "{answered} answered in {elapsed:?}, bound {bound}");
    assert_eq!(code(h.w.call_in(h.dom0, tx, Op::TransactionEnd, b"T\0")), Some(ErrorCode::EAGAIN));
    // The retry: the guest's remaining writes wait for credit, so dom0's
    // transaction commits (a few tries at most, if credit came back in
    // between).
    let committed = (0..5).any(|_| {
        let tx = start(&mut h);
        h.w.call_in(h.dom0, tx, Op::Read, &z(&[&hot])).unwrap();
        h.w.call_in(h.dom0, tx, Op::Write, &wr(&format!("{hot}-seen"), b"1")).unwrap();
        h.w.call_in(h.dom0, tx, Op::TransactionEnd, b"T\0").is_ok()
    });
    assert!(committed, "dom0's transaction never committed against the rate-limited guest");
    // Nothing is lost: the guest's writes are all served in time, in order.
    h.w.run();
    assert_eq!(h.w.call(h.dom0, Op::Read, &z(&[&hot])).unwrap(), b"59");
    h.still_serving();
}

/// The limit binds only while a transaction is open (a write conflicts
/// with nothing otherwise), and never dom0.
#[test]
fn xsa_206_no_limit_without_open_transactions_nor_for_dom0() {
    let mut h = Host::new();
    let g = h.guest("writer");
    let (_, answered, _) = flood(&mut h, g, "data/n", 200);
    assert_eq!(answered, 200, "no transaction open: nothing held");
    let tx = start(&mut h);
    let path = format!("{}/data/dom0", h.home_of(h.bystander));
    let dom0 = h.dom0;
    let (_, answered, _) = flood(&mut h, dom0, &path, 200);
    assert_eq!(answered, 200, "dom0 is never limited");
    h.w.call_in(h.dom0, tx, Op::TransactionEnd, b"F\0").unwrap();
    h.still_serving();
}

/// "oxenstored does not apply quota-maxentity": a guest creating nodes
/// is refused with ENOSPC at its `nodes` quota, and stays there.
#[test]
fn xsa_272_node_quota_is_enforced() {
    let mut h = Host::new();
    let g = h.guest("hoarder");
    h.quota(g, "nodes", 40);
    let (made, err) = fill(&mut h, g, "n", 100);
    assert_eq!(err, Some(ErrorCode::ENOSPC));
    assert_eq!(h.owned(g), 40, "made {made}");
    assert_eq!(code(h.w.call(g, Op::Mkdir, b"data/more\0")), Some(ErrorCode::ENOSPC));
    h.still_serving();
}

/// "Xenstore: wrong path length check": path-max is judged on the
/// canonical path, so relative and absolute spellings get the same
/// answer, and the longest path a guest may make is one dom0 can read,
/// list and remove.
#[test]
fn xsa_323_path_length_judged_on_the_canonical_path() {
    let mut h = Host::new();
    let g = h.guest("longpaths");
    let home = h.home_of(g);
    let mut accepted = 0;
    for len in [2040usize, 2046, 2047, 2048, 2049, 2050, 3000] {
        let rel = format!("data/{}", "p".repeat(len - "data/".len()));
        let abs = format!("{home}/{rel}");
        let by_rel = h.w.call(g, Op::Write, &wr(&rel, b"v")).map(|_| ());
        let by_abs = h.w.call(g, Op::Write, &wr(&abs, b"v")).map(|_| ());
        assert_eq!(by_rel.is_ok(), by_abs.is_ok(), "length {len}: relative {by_rel:?}, absolute {by_abs:?}");
        if by_rel.is_err() {
            assert_eq!(by_rel.err().and_then(|e| e.code()), Some(ErrorCode::EINVAL), "length {len}");
            continue;
        }
        accepted += 1;
        // Out of nobody's reach: dom0 reads it, lists it and removes it.
        assert_eq!(h.w.call(h.dom0, Op::Read, &z(&[&abs])).unwrap(), b"v");
        let listing = h.w.call(h.dom0, Op::Directory, &z(&[&format!("{home}/data")])).unwrap();
        assert_eq!(listing.len(), len - "data/".len() + 1, "dom0 lists the long name");
        h.w.call(h.dom0, Op::Rm, &z(&[&abs])).unwrap();
    }
    assert!((1..7).contains(&accepted), "{accepted} of 7 lengths accepted");
    h.still_serving();
}

/// "Xenstore: guests can let run xenstored out of memory", the quotas:
/// watches (E2BIG), transactions (ENOSPC) and nodes touched by one
/// transaction (ENOSPC, and the commit fails).
#[test]
fn xsa_326_watch_transaction_and_transaction_node_quotas() {
    let mut h = Host::new();
    let g = h.guest("greedy");
    h.quota(g, "transaction-nodes", 30);
    for i in 0..128 {
        h.w.watch(g, "data", &format!("w{i}")).unwrap();
    }
    assert_eq!(code(h.w.watch(g, "data", "one-more")), Some(ErrorCode::E2BIG));
    let mut txs = Vec::new();
    for _ in 0..10 {
        txs.push(h.w.call(g, Op::TransactionStart, b"\0").unwrap());
    }
    assert_eq!(code(h.w.call(g, Op::TransactionStart, b"\0")), Some(ErrorCode::ENOSPC));
    let tx: u32 = String::from_utf8(txs[0].clone()).unwrap().trim_end_matches('\0').parse().unwrap();
    let mut refused = None;
    for i in 0..60 {
        if let Err(e) = h.w.call_in(g, tx, Op::Write, &wr(&format!("data/t{i}"), b"v")) {
            refused = Some((i, e.code()));
            break;
        }
    }
    assert!(matches!(refused, Some((_, Some(ErrorCode::ENOSPC)))), "{refused:?}");
    assert!(code(h.w.call_in(g, tx, Op::TransactionEnd, b"T\0")).is_some(), "the commit fails");
    assert_eq!(code(h.w.call(g, Op::Read, b"data/t0\0")), Some(ErrorCode::ENOENT));
    h.still_serving();
}

/// XSA-326, "by causing large number of watch events ... without reading":
/// a guest with its full quota of long-token watches fires thousands of
/// events at itself and reads none; what the daemon holds for it stays
/// under its memory quota (events queued for a guest are charged to it, as
/// in C), and the others are served meanwhile.
#[test]
fn xsa_326_unread_watch_events_are_bounded() {
    let mut h = Host::new();
    let g = h.guest("storm");
    for i in 0..128 {
        h.w.watch(g, "data", &format!("{i}-{}", "token".repeat(100))).unwrap();
    }
    h.w.set_reading(g, false);
    for i in 0..200 {
        h.w.send(g, Op::Write, 0, &wr(&format!("data/e{}", i % 50), b"x"));
    }
    h.w.run();
    let queued = h.total("queued-bytes");
    // 128 watches x 200 writes x ~530 bytes would be 13 MB.
    let quota = xenstore_db::QuotaKind::Memory.default_value() as usize;
    assert!(queued <= quota, "{queued} bytes queued for a guest that does not read");
    h.still_serving();
    // Once it reads, it gets them all (13 MB through a 1 KiB ring: more
    // rounds than `run` allows), stalled at its quota meanwhile.
    h.w.set_reading(g, true);
    let mut rounds = 0;
    while h.w.round() {
        rounds += 1;
        assert!(rounds < 100_000, "the guest never drained its events");
    }
    h.still_serving();
}

/// XSA-326, "issuing new requests ... without reading the responses": the
/// `outstanding` quota (20) stops reading a guest's requests while that
/// many replies wait for it. Counted by side effect: the writes applied
/// while it reads nothing are what fits its ring's reply half (about 50
/// replies) plus 20.
#[test]
fn xsa_326_outstanding_requests_quota() {
    let mut h = Host::new();
    let g = h.guest("noreader");
    h.w.set_reading(g, false);
    let before = h.owned(g);
    for i in 0..300 {
        h.w.send(g, Op::Write, 0, &wr(&format!("data/o{i}"), b""));
    }
    h.w.run();
    let applied = h.owned(g) - before;
    assert!(applied <= 100, "{applied} requests served for a guest that reads no reply");
    h.still_serving();
}

/// XSA-326, "creating as many nodes as allowed with the maximum allowed
/// size and path length": within every other quota a guest can pin
/// megabytes; the per-domain `memory` quota refuses it first.
#[test]
fn xsa_326_memory_quota() {
    let mut h = Host::new();
    let g = h.guest("pinner");
    let value = vec![b'm'; 2048];
    let mut refused = None;
    for i in 0..990 {
        let path = format!("data/{i}-{}", "l".repeat(1900));
        if let Err(e) = h.w.call(g, Op::Write, &wr(&path, &value)) {
            refused = Some((i, e.code()));
            break;
        }
    }
    // 990 x (2 KiB value + 1.9 KiB name) is about 3.9 MB; C's hard limit is 2.5 MB.
    assert!(matches!(refused, Some((i, Some(ErrorCode::ENOMEM))) if i < 700), "{refused:?}");
    h.still_serving();
}

/// "oxenstored memory leak in reset_watches": watches set and reset over
/// and over are all freed, and reset watches fire no more.
#[test]
fn xsa_330_reset_watches_frees_every_watch() {
    let mut h = Host::new();
    let g = h.guest("resetter");
    let base = h.w.server.engine().watch_count();
    for round in 0..10 {
        for i in 0..100 {
            h.w.watch(g, &format!("data/w{i}"), &format!("r{round}")).unwrap();
        }
        assert_eq!(h.w.server.engine().watch_count(), base + 100);
        h.w.call(g, Op::ResetWatches, b"\0").unwrap();
        assert_eq!(h.w.server.engine().watch_count(), base, "round {round}");
    }
    h.w.take_events(g);
    h.w.call(g, Op::Write, b"data/w1\0x").unwrap();
    assert!(h.w.take_events(g).is_empty());
    h.still_serving();
}

/// "Xenstore: Guests can crash xenstored" (a node creation failing half
/// way): a write that must create three levels with room for two is
/// ENOSPC and creates none; the count of owned nodes is exact.
#[test]
fn xsa_414_failed_creation_leaves_nothing() {
    let mut h = Host::new();
    let g = h.guest("halfway");
    let owned = u32::try_from(h.owned(g)).unwrap();
    // `data/x/y/z` is four new nodes; there is room for three.
    h.quota(g, "nodes", owned + 3);
    assert_eq!(code(h.w.call(g, Op::Write, b"data/x/y/z\0v")), Some(ErrorCode::ENOSPC));
    assert_eq!(code(h.w.call(g, Op::Read, b"data\0")), Some(ErrorCode::ENOENT));
    assert_eq!(h.owned(g), owned as usize);
    h.w.call(g, Op::Write, b"data/x/y\0v").unwrap();
    h.still_serving();
}

/// "Xenstore: Guests can create orphaned Xenstore nodes": the same
/// failure inside a transaction fails the commit; nothing is applied and
/// no node is left without its parent.
#[test]
fn xsa_415_failed_creation_fails_the_transaction() {
    let mut h = Host::new();
    let g = h.guest("orphans");
    let owned = u32::try_from(h.owned(g)).unwrap();
    h.quota(g, "nodes", owned + 2);
    let tx: u32 = String::from_utf8(h.w.call(g, Op::TransactionStart, b"\0").unwrap())
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    h.w.call_in(g, tx, Op::Write, b"data/a\0v").unwrap();
    assert_eq!(code(h.w.call_in(g, tx, Op::Write, b"data/x/y/z\0v")), Some(ErrorCode::ENOSPC));
    assert!(code(h.w.call_in(g, tx, Op::TransactionEnd, b"T\0")).is_some(), "the commit fails");
    for p in ["data/a\0", "data/x\0", "data/x/y\0", "data/x/y/z\0"] {
        assert_eq!(code(h.w.call(g, Op::Read, p.as_bytes())), Some(ErrorCode::ENOENT), "{p}");
    }
    assert_eq!(h.owned(g), owned as usize);
    h.still_serving();
}

/// "Xenstore: Guests can cause Xenstore to not free temporary memory": a
/// guest sends many requests with big replies and reads none; the daemon
/// stops reading it once its queue passes the limit, so what it holds
/// stays bounded; the guest gets every reply once it reads again.
#[test]
fn xsa_416_unread_big_replies_are_bounded() {
    let mut h = Host::new();
    let g = h.guest("slowreader");
    h.w.call(g, Op::Write, &wr("data/big", &[b'b'; 2048])).unwrap();
    h.w.set_reading(g, false);
    let ids: Vec<u32> = (0..2000).map(|_| h.w.send(g, Op::Read, 0, b"data/big\0")).collect();
    h.w.run();
    let queued = h.total("queued-bytes");
    // 2000 replies of 2 KiB would be 4 MB. The daemon pauses past 256 KiB,
    // checked after each turn: one turn's replies (at most 64 of at most
    // 4 KiB) may come on top.
    assert!(queued <= 256 * 1024 + 64 * 4112, "{queued} bytes queued");
    h.still_serving();
    h.w.set_reading(g, true);
    h.w.run();
    for id in ids {
        assert_eq!(h.w.reply(g, id).unwrap().unwrap().len(), 2048);
    }
    h.still_serving();
}

/// "Xenstore: Guests can crash xenstored via exhausting the stack": the
/// deepest tree a guest may make (path-max, node quota) and dom0 may make
/// (a 4 KiB path) is created, listed, read, removed inside and outside a
/// transaction, and cleaned up with its domain, without running out of
/// stack.
#[test]
fn xsa_418_deep_trees_do_not_exhaust_the_stack() {
    let mut h = Host::new();
    let g = h.guest("deep");
    let deep = format!("data/{}", vec!["d"; 900].join("/"));
    h.w.call(g, Op::Write, &wr(&deep, b"bottom")).unwrap();
    assert_eq!(h.w.call(g, Op::Read, &z(&[&deep])).unwrap(), b"bottom");
    h.w.call(g, Op::Rm, b"data/d\0").unwrap();
    let tx: u32 = String::from_utf8(h.w.call(g, Op::TransactionStart, b"\0").unwrap())
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    h.w.call_in(g, tx, Op::Write, &wr(&deep, b"again")).unwrap();
    h.w.call_in(g, tx, Op::TransactionEnd, b"T\0").unwrap();
    h.w.watch(h.dom0, &h.home_of(g), "home").unwrap();
    // Dom0's absolute paths are limited to 3072 bytes.
    let dom0_deep = format!("/deep/{}", vec!["e"; 1500].join("/"));
    h.w.call(h.dom0, Op::Write, &wr(&dom0_deep, b"x")).unwrap();
    assert!(h.w.call(h.dom0, Op::Control, b"check\0").is_ok());
    h.still_serving();
    h.w.destroy(g);
    h.w.run();
    h.w.call(h.dom0, Op::Rm, b"/deep\0").unwrap();
    h.still_serving();
}

/// "Xenstore: Cooperating guests can create arbitrary numbers of nodes":
/// a guest creating nodes in a directory another guest opened to it (so
/// outside its home) has them removed when it dies; they are not handed
/// to dom0 to pile up beyond every quota.
#[test]
fn xsa_419_nodes_outside_home_go_with_their_owner() {
    let mut h = Host::new();
    let g = h.guest("squatter");
    let (me, by) = (h.domid(g), h.domid(h.bystander));
    h.w.call(h.bystander, Op::Mkdir, b"data/open\0").unwrap();
    h.w.call(h.bystander, Op::SetPerms, &z(&["data/open", &format!("n{by}"), &format!("b{me}")])).unwrap();
    let open = format!("{}/data/open", h.home_of(h.bystander));
    for i in 0..30 {
        h.w.call(g, Op::Write, &wr(&format!("{open}/s{i}"), b"x")).unwrap();
    }
    let nodes = h.w.server.engine().node_count();
    h.w.destroy(g);
    h.w.run();
    assert_eq!(h.w.call(h.bystander, Op::Directory, b"data/open\0").unwrap(), b"");
    assert!(h.w.server.engine().node_count() <= nodes - 30);
    assert_eq!(h.w.server.engine().owned_count(0), 0, "nothing given to dom0");
    h.still_serving();
}

/// "Xenstore: Guests can create arbitrary number of nodes via
/// transactions": nodes created and removed in the same transaction leave
/// the owned count exact, and the quota still binds afterwards.
#[test]
fn xsa_421_create_and_remove_in_a_transaction_keeps_accounting() {
    let mut h = Host::new();
    let g = h.guest("churn");
    h.w.call(g, Op::Mkdir, b"data\0").unwrap();
    let owned = h.owned(g);
    h.quota(g, "nodes", u32::try_from(owned).unwrap() + 10);
    for round in 0..5 {
        let tx: u32 = String::from_utf8(h.w.call(g, Op::TransactionStart, b"\0").unwrap())
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap();
        for i in 0..8 {
            h.w.call_in(g, tx, Op::Write, &wr(&format!("data/c{round}-{i}"), b"x")).unwrap();
            h.w.call_in(g, tx, Op::Rm, &z(&[&format!("data/c{round}-{i}")])).unwrap();
        }
        h.w.call_in(g, tx, Op::Write, &wr(&format!("data/kept{round}"), b"x")).unwrap();
        assert_eq!(h.w.call_in(g, tx, Op::TransactionEnd, b"T\0").unwrap(), b"OK\0");
        assert_eq!(h.owned(g), owned + round + 1);
    }
    let (made, err) = fill(&mut h, g, "f", 20);
    assert_eq!((made, err), (5, Some(ErrorCode::ENOSPC)));
    h.still_serving();
}

/// "xenstored: A transaction conflict can crash C Xenstored": 50 nodes,
/// two transactions each removing all of them; the first commits, the
/// second is EAGAIN, the count of owned nodes stays exact.
#[test]
fn xsa_440_conflicting_removals_keep_accounting() {
    let mut h = Host::new();
    let g = h.guest("conflict");
    h.w.call(g, Op::Mkdir, b"data\0").unwrap();
    let owned = h.owned(g);
    for i in 0..50 {
        h.w.call(g, Op::Write, &wr(&format!("data/k{i}"), b"x")).unwrap();
    }
    let start = |h: &mut Host| -> u32 {
        String::from_utf8(h.w.call(g, Op::TransactionStart, b"\0").unwrap())
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap()
    };
    let (t1, t2) = (start(&mut h), start(&mut h));
    for tx in [t1, t2] {
        for i in 0..50 {
            h.w.call_in(g, tx, Op::Rm, &z(&[&format!("data/k{i}")])).unwrap();
        }
    }
    assert_eq!(h.w.call_in(g, t1, Op::TransactionEnd, b"T\0").unwrap(), b"OK\0");
    assert_eq!(code(h.w.call_in(g, t2, Op::TransactionEnd, b"T\0")), Some(ErrorCode::EAGAIN));
    assert_eq!(h.owned(g), owned);
    h.still_serving();
}

/// "oxenstored keeps quota related use counts across domain destruction":
/// a guest fills its node quota and dies; a new domain with its id can
/// create as many nodes as the first.
#[test]
fn xsa_483_new_domain_with_the_id_has_the_whole_quota() {
    let mut h = Host::new();
    h.w.call(h.dom0, Op::SetQuota, &z(&["nodes", "30"])).unwrap();
    let old = h.guest("reboots");
    let n = h.domid(old);
    let (first, err) = fill(&mut h, old, "q", 100);
    assert_eq!(err, Some(ErrorCode::ENOSPC));
    h.w.destroy(old);
    h.w.run();
    h.w.call(h.dom0, Op::Rm, &z(&[&format!("/local/domain/{n}")])).unwrap();
    h.w.hv.reuse_domid_next(u16::try_from(n).unwrap());
    let new = h.guest("rebooted");
    assert_eq!(h.domid(new), n, "the id was reused");
    let (second, err) = fill(&mut h, new, "q", 100);
    assert_eq!((second, err), (first, Some(ErrorCode::ENOSPC)));
    h.still_serving();
}

/// XSA-484 (CVE-2026-23557), "RESET_WATCHES inside a transaction": the
/// request ends the guest's transactions and watches cleanly; the old
/// transaction id is unknown after, and new ones work.
#[test]
fn xsa_484_reset_watches_inside_a_transaction() {
    let mut h = Host::new();
    let g = h.guest("resetter");
    h.w.watch(g, "data", "w").unwrap();
    let tx: u32 = String::from_utf8(h.w.call(g, Op::TransactionStart, b"\0").unwrap())
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    h.w.call_in(g, tx, Op::Write, b"data/in-tx\0v").unwrap();
    let _ = h.w.call_in(g, tx, Op::ResetWatches, b"\0");
    assert_eq!(h.w.server.engine().transaction_count(), 0);
    assert_eq!(code(h.w.call_in(g, tx, Op::TransactionEnd, b"T\0")), Some(ErrorCode::ENOENT));
    assert_eq!(code(h.w.call(g, Op::Read, b"data/in-tx\0")), Some(ErrorCode::ENOENT));
    let again = h.w.call(g, Op::TransactionStart, b"\0").unwrap();
    let again: u32 = String::from_utf8(again).unwrap().trim_end_matches('\0').parse().unwrap();
    assert_eq!(h.w.call_in(g, again, Op::TransactionEnd, b"T\0").unwrap(), b"OK\0");
    h.still_serving();
}

/// XSA-416's pause, then a reconnection: a guest paused for not reading
/// resets its ring (as a kernel's xenbus does after kexec); it must be
/// served again, its old replies dropped.
#[test]
fn xsa_416_paused_guest_is_reconnected() {
    let mut h = Host::new();
    let g = h.guest("pausedthenreset");
    h.w.call(g, Op::Write, &wr("data/big", &[b'b'; 2048])).unwrap();
    h.w.set_reading(g, false);
    for _ in 0..400 {
        h.w.send(g, Op::Read, 0, b"data/big\0");
    }
    h.w.run();
    h.w.set_reading(g, true);
    h.w.reconnect(g);
    h.w.run();
    assert_eq!(h.w.call(g, Op::Read, b"data/big\0").unwrap(), [b'b'; 2048]);
    h.still_serving();
}

/// XSA-326's event flood seen from dom0: a guest firing events at a dom0
/// watcher that pauses briefly must not cost dom0 the events of other
/// domains (a per-connection cap that drops the oldest events whoever
/// caused them does).
#[test]
fn xsa_326_event_flood_does_not_cost_dom0_other_domains_events() {
    let mut h = Host::new();
    let g = h.guest("flooder");
    let dom0_watcher = h.w.dom0();
    h.w.watch(dom0_watcher, "/local/domain", "all").unwrap();
    h.w.take_events(dom0_watcher);
    h.w.set_reading(dom0_watcher, false);
    // 900 distinct nodes (identical pending events would coalesce), each
    // event about 1.5 KiB: 1.3 MB, over the watcher's 256 KiB cap. The
    // bystander's write comes in the middle, once the watcher's socket
    // buffer is full and its events wait in the daemon.
    let long = "f".repeat(1500);
    for i in 0..900 {
        if i == 450 {
            h.w.run();
            h.w.send(h.bystander, Op::Write, 0, b"data/important\0\x31");
        }
        h.w.send(g, Op::Write, 0, &wr(&format!("data/{long}{i}"), b"x"));
    }
    h.w.run();
    h.w.set_reading(dom0_watcher, true);
    h.w.run();
    let important = format!("{}/data/important", h.home_of(h.bystander));
    let events = h.w.take_events(dom0_watcher);
    assert!(events.iter().any(|e| e.path == important), "the bystander's event was dropped");
    h.still_serving();
}
