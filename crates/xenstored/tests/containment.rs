//! A guest is an adversary: what it can make the daemon hold is bounded
//! and charged to it, in the stepped world (the real server over the
//! platform's in-memory twins, guests on rings).

use xenstore::{ErrorCode, Op};
use xenstored::testing::{ClientId, World};

/// The C daemon's default `memory` quota, 2.5 MiB.
const MEMORY_QUOTA: usize = 2 * 1024 * 1024 + 512 * 1024;

fn code(result: xenstored::testing::ReplyResult) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

/// An introduced guest that owns its home.
fn guest_with_home(w: &mut World, dom0: ClientId, name: &str) -> (ClientId, u16) {
    let guest = w.create_guest(name);
    assert_eq!(w.introduce(guest).unwrap(), b"OK\0");
    let domid = w.domid(guest);
    w.call(dom0, Op::Mkdir, format!("/local/domain/{domid}\0").as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("/local/domain/{domid}\0b{domid}\0").as_bytes()).unwrap();
    (guest, domid)
}

/// A leaf name of about `len` bytes, distinct for each `i`.
fn long_name(i: usize, len: usize) -> String {
    format!("n{i:05}-{}", "x".repeat(len - 7))
}

#[test]
fn long_names_and_values_stop_at_the_memory_quota_with_enomem() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let (guest, domid) = guest_with_home(&mut w, dom0, "hoarder");
    let value = "v".repeat(2048);
    // Within the other quotas: fewer than 1000 nodes, names under path-max,
    // values at node-size.
    let mut written = 0;
    let refused = loop {
        assert!(written < 1000, "the nodes quota came first: nothing bounded the bytes");
        match w.call(guest, Op::Write, format!("{}\0{value}", long_name(written, 2000)).as_bytes()) {
            Ok(_) => written += 1,
            Err(e) => break e.code(),
        }
    };
    assert_eq!(refused, Some(ErrorCode::ENOMEM), "after {written} nodes");
    let held = w.server.engine().memory(domid);
    assert!(held <= MEMORY_QUOTA, "{held} bytes held");
    assert!(held > MEMORY_QUOTA - 8 * 1024, "{held} bytes held: refused well before the quota");
    // Watches and transactions are charged too: the guest is full.
    let token = "t".repeat(2000);
    assert_eq!(
        code(w.call(guest, Op::Watch, format!("{}\0{token}\0", long_name(0, 2000)).as_bytes())),
        Some(ErrorCode::ENOMEM)
    );
    // Removing frees: the guest can write again.
    w.call(guest, Op::Rm, format!("{}\0", long_name(0, 2000)).as_bytes()).unwrap();
    w.call(guest, Op::Write, format!("{}\0{value}", long_name(0, 2000)).as_bytes()).unwrap();
    assert_eq!(w.server.engine().check(), Ok(()));
}

#[test]
fn watches_and_transactions_are_charged_to_the_guest() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let (guest, domid) = guest_with_home(&mut w, dom0, "watcher");
    let value = "v".repeat(2000);
    for i in 0..200 {
        w.call(guest, Op::Write, format!("{}\0{value}", long_name(i, 2000)).as_bytes()).unwrap();
    }
    let before = w.server.engine().memory(domid);
    let token = "t".repeat(1500);
    for i in 0..100 {
        w.call(guest, Op::Watch, format!("{}\0{token}{i}\0", long_name(i, 2000)).as_bytes()).unwrap();
    }
    let watches = w.server.engine().memory(domid) - before;
    assert!(watches > 100 * 3500, "100 watches of 3.5 KB charged {watches} bytes");
    // A transaction that records long paths: each is charged.
    let tx: u32 = String::from_utf8(w.call(guest, Op::TransactionStart, b"\0").unwrap())
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = w.call_in(guest, tx, Op::Read, format!("{}\0", long_name(i + 1000, 2000)).as_bytes()) {
            if e.code() != Some(ErrorCode::ENOENT) {
                refused = e.code();
                break;
            }
        }
    }
    assert_eq!(refused, Some(ErrorCode::ENOMEM), "a transaction's records are bounded by the quota");
    assert!(w.server.engine().memory(domid) <= MEMORY_QUOTA);
    assert_eq!(w.server.engine().check(), Ok(()));
    // Ending it gives the memory back.
    w.call_in(guest, tx, Op::TransactionEnd, b"F\0").unwrap();
    assert_eq!(w.server.engine().memory(domid) - before, watches);
}

#[test]
fn dom0_is_not_limited_by_the_memory_quota() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let value = "v".repeat(2000);
    for i in 0..1000 {
        w.call(dom0, Op::Write, format!("/big/{}\0{value}", long_name(i, 2000)).as_bytes()).unwrap();
    }
    assert!(w.server.engine().memory(0) > MEMORY_QUOTA);
}

#[test]
fn a_guest_over_its_memory_quota_is_not_read_until_its_output_drains() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let (guest, domid) = guest_with_home(&mut w, dom0, "slow");
    // Fill the quota but 16 KiB with store memory, and keep a small node
    // with a big value to read.
    let value = "v".repeat(2048);
    w.call(guest, Op::Write, format!("s\0{value}").as_bytes()).unwrap();
    let target = MEMORY_QUOTA - 16 * 1024;
    let mut i = 0;
    while target - w.server.engine().memory(domid) > 2300 {
        let room = target - w.server.engine().memory(domid);
        let value = "v".repeat((room - 2300).min(2048));
        w.call(guest, Op::Write, format!("{}\0{value}", long_name(i, 2000)).as_bytes()).unwrap();
        i += 1;
    }
    // It stops reading and asks for big replies: the queued output takes
    // it over the quota, and the daemon stops reading its ring within a
    // ring-full of requests (well before the pause threshold of 256 KiB
    // of output).
    w.set_reading(guest, false);
    let reqs: Vec<u32> = (0..300).map(|_| w.send(guest, Op::Read, 0, b"s\0")).collect();
    w.run();
    let (held, queued) = (w.server.engine().memory(domid), w.server.queued_for(domid));
    assert!(held + queued < MEMORY_QUOTA + 128 * 1024, "{queued} bytes queued over {held} held");
    // Another guest is served meanwhile.
    let (other, _) = guest_with_home(&mut w, dom0, "other");
    w.call(other, Op::Write, b"x\0y").unwrap();
    // Reading again drains the queue; every request is answered.
    w.set_reading(guest, true);
    w.run();
    for req in reqs {
        assert_eq!(w.reply(guest, req).map(|r| r.unwrap().len()), Some(2048), "request {req}");
    }
}

#[test]
fn a_watcher_that_pauses_keeps_a_quiet_domains_events_through_anothers_flood() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let (quiet, quiet_id) = guest_with_home(&mut w, dom0, "quiet");
    let (flood, flood_id) = guest_with_home(&mut w, dom0, "flood");
    let watcher = w.dom0();
    w.watch(watcher, "/local/domain", "all").unwrap();
    w.take_events(watcher);
    // The watcher pauses (under a second: the test takes milliseconds).
    w.set_reading(watcher, false);
    // The flood: 600 distinct nodes with 2000-byte names, 1.2 MB of events
    // (the first fill the socket's buffer); the quiet guest writes once
    // inside it.
    for i in 0..600 {
        if i == 200 {
            w.call(quiet, Op::Write, b"ready\x001").unwrap();
        }
        w.call(flood, Op::Write, format!("{}\0", long_name(i, 2000)).as_bytes()).unwrap();
    }
    w.call(quiet, Op::Write, b"done\x001").unwrap();
    w.set_reading(watcher, true);
    w.run();
    let events = w.take_events(watcher);
    let paths: Vec<&str> = events.iter().map(|e| e.path.as_str()).collect();
    let quiet_paths: Vec<&str> =
        paths.iter().copied().filter(|p| p.starts_with(&format!("/local/domain/{quiet_id}/"))).collect();
    assert_eq!(quiet_paths, [format!("/local/domain/{quiet_id}/ready"), format!("/local/domain/{quiet_id}/done")]);
    let flooded = paths.iter().filter(|p| p.starts_with(&format!("/local/domain/{flood_id}/"))).count();
    assert_eq!(flooded, 600, "nothing is dropped for a pause under 20 s");
}

/// Turns are short: a client that sends 300 WRITEs in one burst does not
/// make a quiet client wait for all of them (one read brings them all; a
/// turn once handled everything a read brought). The quiet client's READ
/// is answered while most of the burst is still unanswered, and then the
/// whole burst is, in order.
#[test]
fn a_burst_from_one_client_is_spread_over_turns() {
    let mut w = World::new();
    let busy = w.dom0();
    let quiet = w.dom0();
    w.call(quiet, Op::Write, b"/quiet\0here").unwrap();
    let burst: Vec<u32> = (0..300).map(|i| w.send(busy, Op::Write, 0, format!("/busy/n{i}\0{i}").as_bytes())).collect();
    // The burst reaches the daemon's socket before the quiet request.
    assert!(w.round());
    let read = w.send(quiet, Op::Read, 0, b"/quiet\0");
    let mut rounds = 0;
    let answered_meanwhile = loop {
        assert!(w.round() || rounds < 3, "the world went idle without answering the quiet client");
        rounds += 1;
        if let Some(reply) = w.reply(quiet, read) {
            assert_eq!(reply.unwrap(), b"here");
            break burst.iter().filter(|&&id| w.reply(busy, id).is_some()).count();
        }
    };
    assert!(answered_meanwhile <= 150, "{answered_meanwhile} of the burst answered before the quiet READ");
    w.run();
    let rest = burst.iter().filter(|&&id| w.reply(busy, id).is_some()).count();
    assert_eq!(answered_meanwhile + rest, 300, "every WRITE of the burst is answered");
    assert_eq!(w.call(quiet, Op::Read, b"/busy/n299\0").unwrap(), b"299");
}
