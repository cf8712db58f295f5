//! The daemon's ring behaviour in the stepped world: INTRODUCE, RELEASE,
//! domain death, reconnection, the error indicator and fairness between
//! rings, with the real `Server` over the platform's in-memory twins, in
//! one process (milliseconds, no processes). `crates/xsim/tests/guests.rs`
//! keeps the same behaviours over real processes and the hosted
//! hypervisor.

use xen_platform::{ShutdownReason, Toolstack};
use xenstore::{ErrorCode, Op};
use xenstore_ring::{Field, ERROR_COMM, ERROR_NONE, ERROR_PROTO, ERROR_RINGIDX};
use xenstored::testing::{ClientId, World};

fn code(result: xenstored::testing::ReplyResult) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

fn introduced(world: &mut World, name: &str) -> ClientId {
    let guest = world.create_guest(name);
    assert_eq!(world.introduce(guest).unwrap(), b"OK\0");
    guest
}

#[test]
fn introduce_serves_the_ring_as_the_guest_with_relative_paths() {
    let mut w = World::new();
    let dom0 = w.dom0();
    w.watch(dom0, "@introduceDomain", "intro").unwrap();
    w.take_events(dom0);
    let guest = introduced(&mut w, "guest");
    let domid = w.domid(guest);
    assert_eq!(w.take_events(dom0).iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["@introduceDomain"]);
    w.call(dom0, Op::Mkdir, format!("/local/domain/{domid}\0").as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("/local/domain/{domid}\0b{domid}\0").as_bytes()).unwrap();
    w.call(guest, Op::Write, b"data/x\0hello").unwrap();
    let read = w.call(dom0, Op::Read, format!("/local/domain/{domid}/data/x\0").as_bytes()).unwrap();
    assert_eq!(read, b"hello");
    // The guest is unprivileged: dom0's nodes and CONTROL are refused.
    assert_eq!(code(w.call(guest, Op::Read, b"/tool/xenstored\0")), Some(ErrorCode::EACCES));
    assert_eq!(code(w.call(guest, Op::Control, b"memreport\0")), Some(ErrorCode::EACCES));
    assert_eq!(code(w.call(guest, Op::IsDomainIntroduced, b"0\0")), Some(ErrorCode::EACCES));
    assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"T\0");
}

#[test]
fn requests_written_before_introduce_are_answered_once_introduced() {
    let mut w = World::new();
    let guest = w.create_guest("early");
    let req = w.send(guest, Op::GetDomainPath, 0, b"7\0");
    w.run();
    assert!(w.reply(guest, req).is_none(), "nobody serves the ring yet");
    w.introduce(guest).unwrap();
    assert_eq!(w.reply(guest, req).unwrap().unwrap(), b"/local/domain/7\0");
}

#[test]
fn introduce_whose_ring_cannot_be_mapped_is_einval_and_leaves_nothing() {
    let mut w = World::new();
    let dom0 = w.dom0();
    w.watch(dom0, "@introduceDomain", "intro").unwrap();
    w.take_events(dom0);
    let guest = w.create_guest("unmappable");
    let domid = w.domid(guest);
    w.hv.fail_next_map_foreign(libc_einval());
    assert_eq!(code(w.introduce(guest)), Some(ErrorCode::EINVAL));
    assert!(w.take_events(dom0).is_empty(), "@introduceDomain did not fire");
    assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"F\0");
    assert_eq!(w.server.engine().check(), Ok(()));
    // The next attempt works, and the daemon kept serving.
    assert_eq!(w.introduce(guest).unwrap(), b"OK\0");
    assert_eq!(w.call(guest, Op::GetDomainPath, b"3\0").unwrap(), b"/local/domain/3\0");
}

#[test]
fn introduce_whose_channel_cannot_be_bound_is_einval() {
    let mut w = World::new();
    let guest = w.create_guest("unbindable");
    w.hv.fail_next_bind_interdomain(libc_einval());
    assert_eq!(code(w.introduce(guest)), Some(ErrorCode::EINVAL));
    assert_eq!(w.introduce(guest).unwrap(), b"OK\0");
}

#[test]
fn introducing_a_domain_that_does_not_exist_is_einval() {
    let mut w = World::new();
    let dom0 = w.dom0();
    assert_eq!(code(w.call(dom0, Op::Introduce, b"999\x001\x002\0")), Some(ErrorCode::EINVAL));
    assert_eq!(w.call(dom0, Op::Read, b"/tool/xenstored\0").unwrap(), b"");
}

#[test]
fn release_stops_serving_the_ring_and_fires_release_domain() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "released");
    let domid = w.domid(guest);
    w.watch(dom0, "@releaseDomain", "rel").unwrap();
    w.take_events(dom0);
    w.call(dom0, Op::Release, format!("{domid}\0").as_bytes()).unwrap();
    assert_eq!(w.take_events(dom0).iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["@releaseDomain"]);
    let req = w.send(guest, Op::GetDomainPath, 0, b"1\0");
    w.run();
    assert!(w.reply(guest, req).is_none(), "a released ring is not served");
    // Introduced again, it is served from where it is.
    assert_eq!(w.introduce(guest).unwrap(), b"OK\0");
    assert!(w.reply(guest, req).is_some());
}

#[test]
fn destroying_a_domain_fires_release_domain_and_removes_its_nodes() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "doomed");
    let domid = w.domid(guest);
    let home = format!("/local/domain/{domid}");
    w.call(dom0, Op::Mkdir, format!("{home}\0").as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("{home}\0b{domid}\0").as_bytes()).unwrap();
    w.call(guest, Op::Write, b"mine\0x").unwrap();
    w.watch(dom0, "@releaseDomain", "rel").unwrap();
    w.take_events(dom0);
    w.destroy(guest);
    w.run();
    let events = w.take_events(dom0);
    assert!(events.iter().any(|e| e.path == "@releaseDomain"), "{events:?}");
    assert_eq!(code(w.call(dom0, Op::Read, format!("{home}/mine\0").as_bytes())), Some(ErrorCode::ENOENT));
    assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"F\0");
    assert_eq!(w.server.engine().check(), Ok(()));
}

#[test]
fn shutdown_fires_release_domain_once_before_destruction() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "stopping");
    let domid = w.domid(guest);
    w.watch(dom0, "@releaseDomain", "rel").unwrap();
    w.take_events(dom0);
    w.shutdown(guest, ShutdownReason::Poweroff);
    w.run();
    assert_eq!(w.take_events(dom0).len(), 1);
    // Still introduced until destroyed; the destruction fires no second event.
    assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"T\0");
    w.destroy(guest);
    w.run();
    assert!(w.take_events(dom0).is_empty());
    assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"F\0");
}

#[test]
fn domain_exceptions_list_every_domain_only_at_the_first_look() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guests: Vec<ClientId> = (0..4).map(|i| introduced(&mut w, &format!("g{i}"))).collect();
    w.watch(dom0, "@releaseDomain", "rel").unwrap();
    w.take_events(dom0);
    for &guest in &guests {
        w.destroy(guest);
        w.run();
    }
    assert_eq!(w.take_events(dom0).len(), guests.len(), "one @releaseDomain per domain");
    for &guest in &guests {
        let domid = w.domid(guest);
        assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"F\0");
    }
    assert_eq!(w.hv.full_looks(), 1, "later exceptions asked which domains changed");
}

#[test]
fn a_destroyed_domain_whose_id_is_reused_at_once_is_still_removed() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let first = introduced(&mut w, "first");
    w.hv.fire_dom_exc();
    w.run();
    let domid = w.domid(first);
    w.watch(dom0, "@releaseDomain", "rel").unwrap();
    w.take_events(dom0);
    // Destroyed and made again before the daemon looks: the changed
    // query says "gone" and then the new domain's state.
    w.hv.toolstack().destroy(domid).unwrap();
    w.hv.reuse_domid_next(domid);
    let second = w.create_guest("second");
    assert_eq!(w.domid(second), domid, "the id was reused");
    w.run();
    assert_eq!(w.take_events(dom0).len(), 1, "@releaseDomain for the old domain");
    assert_eq!(w.call(dom0, Op::IsDomainIntroduced, format!("{domid}\0").as_bytes()).unwrap(), b"F\0");
}

#[test]
fn reconnection_drops_partial_input_watches_and_transactions() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "reconnecting");
    let domid = w.domid(guest);
    w.call(dom0, Op::Mkdir, format!("/local/domain/{domid}\0").as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("/local/domain/{domid}\0b{domid}\0").as_bytes()).unwrap();
    w.watch(guest, "data", "tok").unwrap();
    let tx = w.call(guest, Op::TransactionStart, b"\0").unwrap();
    assert_eq!(w.server.engine().transaction_count(), 1);
    // Half a request header, then the reset.
    w.send_raw(guest, &[1, 0, 0, 0, 9, 0]);
    w.run();
    w.reconnect(guest);
    w.run();
    assert_eq!(w.ring(guest).raw_field(Field::Error), ERROR_NONE);
    assert_eq!(w.server.engine().transaction_count(), 0, "transaction {tx:?} dropped");
    assert_eq!(w.server.engine().watch_count(), 0);
    w.call(dom0, Op::Write, format!("/local/domain/{domid}/data\0v").as_bytes()).unwrap();
    assert!(w.take_events(guest).is_empty(), "the watch is gone");
    assert_eq!(w.call(guest, Op::GetDomainPath, b"2\0").unwrap(), b"/local/domain/2\0");
}

#[test]
fn a_guest_that_stopped_reading_is_reconnected_when_it_asks() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "deaf");
    let domid = w.domid(guest);
    w.call(dom0, Op::Write, format!("/local/domain/{domid}/big\0{}", "x".repeat(2000)).as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("/local/domain/{domid}/big\0b{domid}\0").as_bytes()).unwrap();
    // The guest stops reading its replies and keeps asking: its queue
    // passes the pause threshold, so the daemon stops reading its ring.
    w.set_reading(guest, false);
    for _ in 0..400 {
        w.send(guest, Op::Read, 0, b"big\0");
    }
    w.run();
    let queued = w.server.queued_for(domid);
    assert!(queued < 512 * 1024, "{queued} bytes queued for a guest that does not read");
    // A rebooted (kexec'd) kernel asks for a reconnection and reads again.
    w.reconnect(guest);
    w.set_reading(guest, true);
    let req = w.send(guest, Op::GetDomainPath, 0, b"5\0");
    w.run();
    assert_eq!(w.reply(guest, req).map(|r| r.unwrap()), Some(b"/local/domain/5\0".to_vec()), "reconnected");
}

#[test]
fn oversize_payload_sets_the_protocol_error_until_reconnection() {
    let mut w = World::new();
    let guest = introduced(&mut w, "oversize");
    let other = introduced(&mut w, "bystander");
    // A READ header claiming a 4097-byte payload.
    let mut header = Vec::new();
    for field in [2u32, 1, 0, 4097] {
        header.extend_from_slice(&field.to_le_bytes());
    }
    w.send_raw(guest, &header);
    w.run();
    assert_eq!(w.ring(guest).raw_field(Field::Error), ERROR_PROTO);
    let req = w.send(guest, Op::GetDomainPath, 0, b"1\0");
    w.run();
    assert!(w.reply(guest, req).is_none(), "a stopped ring is not served");
    assert_eq!(w.call(other, Op::GetDomainPath, b"1\0").unwrap(), b"/local/domain/1\0");
    w.reconnect(guest);
    w.run();
    assert_eq!(w.ring(guest).raw_field(Field::Error), ERROR_NONE);
    assert_eq!(w.call(guest, Op::GetDomainPath, b"1\0").unwrap(), b"/local/domain/1\0");
}

#[test]
fn corrupt_indices_cut_off_only_that_guest() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "corrupt");
    let other = introduced(&mut w, "fine");
    w.ring(guest).set_raw_field(Field::ReqProd, 0x7000_0000);
    w.kick(guest);
    w.run();
    assert_eq!(w.ring(guest).raw_field(Field::Error), ERROR_RINGIDX);
    assert_eq!(w.call(other, Op::GetDomainPath, b"1\0").unwrap(), b"/local/domain/1\0");
    assert_eq!(w.call(dom0, Op::GetDomainPath, b"1\0").unwrap(), b"/local/domain/1\0");
}

#[test]
fn broken_event_channel_sets_the_comm_error() {
    let mut w = World::new();
    let guest = introduced(&mut w, "unreachable");
    let domid = w.domid(guest);
    // Break every port dom0 bound to this guest (the daemon's side of the
    // channel): the next notification fails.
    for port in 1..16 {
        let _ = w.hv.break_port(0, port);
    }
    let req = w.send(guest, Op::GetDomainPath, 0, b"1\0");
    w.run();
    assert_eq!(w.ring(guest).raw_field(Field::Error), ERROR_COMM, "domain {domid}");
    let _ = w.reply(guest, req);
}

/// Every ring with pending requests is served in each loop iteration, so
/// a guest that keeps its ring full does not delay another. (The per-turn
/// budget itself cannot bind here: a ring holds fewer requests than a
/// turn's budget, and a single-threaded world cannot refill it during a
/// turn. `tests/flood.rs` floods a real daemon from other threads.)
#[test]
fn a_flooding_ring_does_not_delay_another_guest() {
    let mut w = World::new();
    let flood = introduced(&mut w, "flood");
    let quiet = introduced(&mut w, "quiet");
    for round in 0..200 {
        // The flooder keeps its ring full of requests every round.
        for _ in 0..64 {
            w.send(flood, Op::GetDomainPath, 0, b"1\0");
        }
        let req = w.send(quiet, Op::GetDomainPath, 0, b"2\0");
        // Two rounds: the guest writes and the daemon reads; the daemon
        // answers and the guest reads.
        for _ in 0..3 {
            w.round();
        }
        assert!(w.reply(quiet, req).is_some(), "round {round}: the quiet guest waited behind the flood");
    }
    w.run();
}

#[test]
fn dom0s_own_ring_is_served_as_a_privileged_connection() {
    let (mut w, dom0_ring) = World::with_dom0_ring();
    assert_eq!(w.domid(dom0_ring), 0);
    w.call(dom0_ring, Op::Write, b"/tool/from-ring\0x").unwrap();
    assert_eq!(w.call(dom0_ring, Op::Read, b"/tool/from-ring\0").unwrap(), b"x");
    // Privileged: it may introduce a guest and read every node.
    let guest = w.create_guest("guest");
    let domid = w.domid(guest);
    let gfn = xen_platform::testing::STORE_GFN;
    let store_port = w.store_port(guest);
    let reply = w.call(dom0_ring, Op::Introduce, format!("{domid}\0{gfn}\0{store_port}\0").as_bytes());
    assert_eq!(reply.unwrap(), b"OK\0");
    assert_eq!(w.call(guest, Op::GetDomainPath, b"0\0").unwrap(), b"/local/domain/0\0");
}

#[test]
fn dom0s_kernel_is_notified_once_its_ring_is_served() {
    // A Linux dom0 probes its backends only after the first event from
    // xenstored on its xenstore port (the C daemon's dom0_init notifies).
    use xen_platform::EventChannels;
    let hv = xen_platform::testing::TestHypervisor::new();
    hv.give_dom0_a_store_ring().unwrap();
    let mut server = xenstored::Server::in_process(Default::default(), Default::default()).unwrap();
    let platform = xenstored::Platform {
        events: Box::new(hv.event_channels(0).unwrap()),
        memory: Box::new(hv.foreign_memory()),
        domains: Box::new(hv.domain_states()),
        dom0_store: Box::new(hv.dom0_store()),
        adopt_events: xenstored::cannot_adopt_events,
    };
    server.serve_domains(platform).unwrap();
    let mut kernel = hv.guest(0).unwrap();
    let mut pending = Vec::new();
    kernel.events.take_pending(&mut pending).unwrap();
    assert_eq!(pending, [kernel.store_port]);
}

/// A log sink for one test: what the daemon logged while `f` ran.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn refusals_are_logged_once_per_cause_with_domain_and_path() {
    let mut w = World::new();
    let guest = introduced(&mut w, "nosy");
    let domid = w.domid(guest);
    let log = logged(|| {
        for _ in 0..3 {
            assert_eq!(code(w.call(guest, Op::Read, b"/tool/xenstored\0")), Some(ErrorCode::EACCES));
        }
        assert_eq!(code(w.call(guest, Op::Read, b"/tool\0")), Some(ErrorCode::EACCES));
    });
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("request refused")).collect();
    assert_eq!(refusals.len(), 2, "{log}");
    assert!(refusals[0].contains(&format!("domid={domid}")) && refusals[0].contains("/tool/xenstored"), "{log}");
    assert!(refusals[0].contains("EACCES") && refusals[0].contains("READ"), "{log}");
}

/// EINVAL as an errno for the fault injection.
fn libc_einval() -> i32 {
    22
}

#[test]
fn a_live_update_whose_event_channels_cannot_be_handed_over_fails_and_rings_are_served_on() {
    // Taking the event-channel handle apart duplicates descriptors; a
    // daemon out of them must answer the start with the reason and keep
    // every ring, not lose its handle (the exec is never reached).
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = introduced(&mut w, "guest");
    let domid = w.domid(guest);
    w.call(dom0, Op::Mkdir, format!("/local/domain/{domid}\0").as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("/local/domain/{domid}\0b{domid}\0").as_bytes()).unwrap();
    w.hv.fail_next_into_parts(24); // EMFILE
    assert_eq!(w.call(dom0, Op::Control, b"live-update\0-f\0/bin/sh\0").unwrap(), b"OK\0");
    let answer = w.call(dom0, Op::Control, b"live-update\0-s\0").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("cannot hand over the event channels"), "{answer}");
    // The guest's ring is served as before, notifications included.
    w.call(guest, Op::Write, b"data/after\0yes").unwrap();
    let read = w.call(dom0, Op::Read, format!("/local/domain/{domid}/data/after\0").as_bytes()).unwrap();
    assert_eq!(read, b"yes");
    // The session ended with the failure: a new one may begin.
    assert_eq!(w.call(dom0, Op::Control, b"live-update\0-f\0/bin/sh\0").unwrap(), b"OK\0");
    assert_eq!(w.call(dom0, Op::Control, b"live-update\0-a\0").unwrap(), b"OK\0");
}
