//! The protocol as the C daemon and Xen 4.22 answer it, where ours used to
//! differ: each case was run against Debian's C xenstored 4.17 over its
//! ring (a guest in a ring page, as `xenstore-ring.txt` has it) and read in
//! the 4.22 sources; the comments say what C answers. The stepped world:
//! the real server, guests on rings, a twin of the hypervisor that knows
//! which domains exist.

mod xsa_support;

use xenstore::{ErrorCode, Op};
use xenstored::testing::{ClientId, World};
use xsa_support::{code, existing, guest, line_of, stats, z};

fn paths(w: &mut World, who: ClientId) -> Vec<String> {
    w.take_events(who).into_iter().map(|e| e.path).collect()
}

#[test]
fn a_guest_sees_events_on_nodes_it_or_whose_parent_it_may_read_and_old_permissions_count() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, me) = guest(&mut w, d0, "watcher");
    w.call(d0, Op::Write, b"/w/kid\x001").unwrap();
    w.call(d0, Op::SetPerms, &z(&["/w", "n0", &format!("r{me}")])).unwrap();
    w.call(d0, Op::SetPerms, &z(&["/w/kid", "n0"])).unwrap();
    w.watch(g, "/w", "wt").unwrap();
    assert_eq!(paths(&mut w, g), ["/w"]);
    // C: the child is hidden but its parent readable: the event comes.
    w.call(d0, Op::Write, b"/w/kid\x002").unwrap();
    assert_eq!(paths(&mut w, g), ["/w/kid"]);
    // C: a grandchild whose parent is hidden too: nothing.
    w.call(d0, Op::Write, b"/w/kid/deeper\x002").unwrap();
    assert!(paths(&mut w, g).is_empty());
    // C: removing the hidden child is seen through the parent.
    w.call(d0, Op::Rm, b"/w/kid\0").unwrap();
    assert_eq!(paths(&mut w, g), ["/w/kid"]);
    // C: a permission change taking the guest's read away is judged by the
    // old permissions too, so the guest learns of it.
    w.call(d0, Op::Write, b"/v\x001").unwrap();
    w.call(d0, Op::SetPerms, &z(&["/v", "n0", &format!("r{me}")])).unwrap();
    w.watch(g, "/v", "vt").unwrap();
    paths(&mut w, g);
    w.call(d0, Op::SetPerms, &z(&["/v", "n0"])).unwrap();
    assert_eq!(paths(&mut w, g), ["/v"]);
    // ... and a write it can no longer read (nor its parent, `/`) is not.
    w.call(d0, Op::Write, b"/v\x002").unwrap();
    assert!(paths(&mut w, g).is_empty());
}

#[test]
fn domid_any_lets_every_domain_read_and_needs_the_feature() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, me) = guest(&mut w, d0, "reader");
    w.call(d0, Op::Write, b"/any\0v").unwrap();
    assert_eq!(code(w.call(g, Op::Read, b"/any\0")), Some(ErrorCode::EACCES));
    // Xen 4.22: `r32757` (DOMID_ANY) is read access for every domain (C
    // 4.17 stored it as a domain id and granted nothing).
    w.call(d0, Op::SetPerms, &z(&["/any", "n0", "r32757"])).unwrap();
    assert_eq!(w.call(g, Op::Read, b"/any\0").unwrap(), b"v");
    assert_eq!(w.call(d0, Op::GetPerms, b"/any\0").unwrap(), b"n0\0r32757\0");
    // The feature bit is advertised.
    let features: u32 =
        String::from_utf8(w.call(g, Op::GetFeature, b"").unwrap()).unwrap().trim_end_matches('\0').parse().unwrap();
    assert_eq!(features & xenstore_wire::features::DOMID_ANY, xenstore_wire::features::DOMID_ANY);
    // A domain whose features lack it cannot grant it: the entry is dropped.
    let other = w.create_guest("old-kernel");
    let od = w.domid(other).to_string();
    w.call(d0, Op::SetFeature, &z(&[&od, "7"])).unwrap();
    let home = format!("/local/domain/{od}");
    w.call(d0, Op::Mkdir, &z(&[&home])).unwrap();
    w.call(d0, Op::SetPerms, &z(&[&home, &format!("n{od}")])).unwrap();
    w.introduce(other).unwrap();
    w.call(other, Op::Write, b"mine\0x").unwrap();
    w.call(other, Op::SetPerms, &z(&["mine", &format!("n{od}"), "r32757"])).unwrap();
    assert_eq!(w.call(other, Op::GetPerms, b"mine\0").unwrap(), format!("n{od}\0").into_bytes());
    assert_eq!(code(w.call(g, Op::Read, format!("{home}/mine\0").as_bytes())), Some(ErrorCode::EACCES));
    let _ = me;
}

#[test]
fn every_domain_may_watch_release_domain_but_not_introduce_domain() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, _) = guest(&mut w, d0, "observer");
    // Xen 4.22's setup_structure: `@releaseDomain` is n0 plus DOMID_ANY
    // read; `@introduceDomain` dom0's alone.
    assert_eq!(w.call(g, Op::GetPerms, b"@releaseDomain\0").unwrap(), b"n0\0r32757\0");
    assert_eq!(code(w.call(g, Op::GetPerms, b"@introduceDomain\0")), Some(ErrorCode::EACCES));
    w.watch(g, "@releaseDomain", "rel").unwrap();
    w.watch(g, "@introduceDomain", "intro").unwrap();
    paths(&mut w, g);
    let (victim, _) = guest(&mut w, d0, "victim");
    assert!(paths(&mut w, g).is_empty(), "@introduceDomain is not the guest's to see");
    w.destroy(victim);
    w.run();
    assert_eq!(paths(&mut w, g), ["@releaseDomain"]);
}

#[test]
fn a_guest_may_ask_its_own_features_only() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, me) = guest(&mut w, d0, "curious");
    // Xen 4.22: GET_FEATURE without a domain is the caller's own.
    assert_eq!(w.call(g, Op::GetFeature, b"").unwrap(), b"15\0");
    assert_eq!(code(w.call(g, Op::GetFeature, &z(&[&me]))), Some(ErrorCode::EACCES));
    assert_eq!(w.call(d0, Op::GetFeature, b"").unwrap(), b"15\0");
}

#[test]
fn domains_the_hypervisor_does_not_have_are_enoent() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (_g, me) = guest(&mut w, d0, "real");
    let ex = existing(&mut w, "not-introduced");
    // C: find_or_alloc_existing_domain fails for these.
    for (op, args) in [
        (Op::SetTarget, vec![me.as_str(), "200"]),
        (Op::SetTarget, vec!["200", me.as_str()]),
        (Op::SetFeature, vec!["200", "1"]),
        (Op::GetFeature, vec!["200"]),
    ] {
        assert_eq!(code(w.call(d0, op, &z(&args))), Some(ErrorCode::ENOENT), "{op:?} {args:?}");
    }
    // ... but an existing domain that is not introduced is fine.
    assert_eq!(w.call(d0, Op::SetFeature, &z(&[&ex, "1"])).unwrap(), b"OK\0");
    assert_eq!(w.call(d0, Op::SetTarget, &z(&[&ex, &me])).unwrap(), b"OK\0");
    // C: an owner that does not exist is ENOENT, and nothing changes.
    w.call(d0, Op::Write, b"/p\0v").unwrap();
    assert_eq!(code(w.call(d0, Op::SetPerms, &z(&["/p", "n200"]))), Some(ErrorCode::ENOENT));
    assert_eq!(w.call(d0, Op::GetPerms, b"/p\0").unwrap(), b"n0\0");
}

#[test]
fn a_guests_entry_for_an_existing_domain_not_yet_introduced_is_kept() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, me) = guest(&mut w, d0, "sharer");
    let later = w.create_guest("later");
    let ld = w.domid(later).to_string();
    w.call(g, Op::Write, b"shared\0hello").unwrap();
    // C keeps the entry (it allocates the domain); one for a domain that
    // does not exist grants nothing (C marks it ignored).
    w.call(g, Op::SetPerms, &z(&["shared", &format!("n{me}"), &format!("r{ld}"), "r200"])).unwrap();
    assert_eq!(w.call(g, Op::GetPerms, b"shared\0").unwrap(), format!("n{me}\0r{ld}\0").into_bytes());
    // Once introduced, that domain reads it.
    let home = format!("/local/domain/{ld}");
    w.call(d0, Op::Mkdir, &z(&[&home])).unwrap();
    w.call(d0, Op::SetPerms, &z(&[&home, &format!("n{ld}")])).unwrap();
    w.introduce(later).unwrap();
    assert_eq!(w.call(later, Op::Read, format!("/local/domain/{me}/shared\0").as_bytes()).unwrap(), b"hello");
}

#[test]
fn a_transaction_id_must_name_an_open_transaction_except_for_watches() {
    let mut w = World::new();
    let d0 = w.dom0();
    // C: looked up before dispatch (ENOENT), except WATCH and UNWATCH
    // (XS_FLAG_NOTID).
    assert_eq!(code(w.call_in(d0, 999, Op::GetDomainPath, b"5\0")), Some(ErrorCode::ENOENT));
    assert_eq!(code(w.call_in(d0, 999, Op::Introduce, b"7\x000\x009\0")), Some(ErrorCode::ENOENT));
    assert_eq!(code(w.call_in(d0, 999, Op::TransactionStart, b"\0")), Some(ErrorCode::ENOENT));
    assert_eq!(w.call_in(d0, 999, Op::Watch, b"/w\0tok\0").unwrap(), b"OK\0");
    let tx = w.call(d0, Op::TransactionStart, b"\0").unwrap();
    let tx: u32 = String::from_utf8(tx).unwrap().trim_end_matches('\0').parse().unwrap();
    assert_eq!(w.call_in(d0, tx, Op::GetDomainPath, b"5\0").unwrap(), b"/local/domain/5\0");
    assert_eq!(code(w.call_in(d0, tx, Op::TransactionStart, b"\0")), Some(ErrorCode::EBUSY));
    // RESET_WATCHES ends it, as C's does.
    w.call_in(d0, tx, Op::ResetWatches, b"").unwrap();
    assert_eq!(code(w.call_in(d0, tx, Op::TransactionEnd, b"T\0")), Some(ErrorCode::ENOENT));
}

#[test]
fn a_quota_refusal_inside_a_transaction_fails_it_with_nothing_applied() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, _) = guest(&mut w, d0, "greedy");
    let tx = w.call(g, Op::TransactionStart, b"\0").unwrap();
    let tx: u32 = String::from_utf8(tx).unwrap().trim_end_matches('\0').parse().unwrap();
    w.call_in(g, tx, Op::Write, b"t1\x001").unwrap();
    let mut big = b"t2\0".to_vec();
    big.extend(std::iter::repeat_n(b'x', 4000));
    assert_eq!(code(w.call_in(g, tx, Op::Write, &big)), Some(ErrorCode::ENOSPC));
    w.call_in(g, tx, Op::Write, b"t3\x001").unwrap();
    // C: the commit fails with ENOMEM (fail_transaction) and applies nothing.
    assert_eq!(code(w.call_in(g, tx, Op::TransactionEnd, b"T\0")), Some(ErrorCode::ENOMEM));
    assert_eq!(code(w.call(g, Op::Read, b"t1\0")), Some(ErrorCode::ENOENT));
}

#[test]
fn removing_the_root_is_refused_for_permission_first() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, _) = guest(&mut w, d0, "vandal");
    assert_eq!(code(w.call(g, Op::Rm, b"/\0")), Some(ErrorCode::EACCES));
    assert_eq!(code(w.call(d0, Op::Rm, b"/\0")), Some(ErrorCode::EINVAL));
}

#[test]
fn is_domain_introduced_is_dom0s_and_domid_self_is_introduced() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, me) = guest(&mut w, d0, "nosy");
    // C 4.17+: XS_FLAG_PRIV; DOMID_SELF answers T.
    assert_eq!(code(w.call(g, Op::IsDomainIntroduced, &z(&[&me]))), Some(ErrorCode::EACCES));
    assert_eq!(w.call(d0, Op::IsDomainIntroduced, b"32752\0").unwrap(), b"T\0");
    assert_eq!(w.call(d0, Op::IsDomainIntroduced, b"200\0").unwrap(), b"F\0");
}

#[test]
fn the_event_channel_xen_wrote_in_the_ring_page_wins_over_introduces() {
    let mut w = World::new();
    let d0 = w.dom0();
    let g = w.create_guest("dom0less");
    let domid = w.domid(g);
    let port = w.store_port(g);
    let wrong = z(&[&domid.to_string(), &xen_platform::testing::STORE_GFN.to_string(), "999"]);
    // Xen 4.21's `evtchn_port` at offset 2076: zero, INTRODUCE's port is
    // bound, and a wrong one fails.
    assert_eq!(code(w.call(d0, Op::Introduce, &wrong)), Some(ErrorCode::EINVAL));
    // Filled in (as Xen does for dom0less domains): used instead.
    w.ring(g).set_raw_field(xenstore_ring::Field::EvtchnPort, port);
    assert_eq!(w.call(d0, Op::Introduce, &wrong).unwrap(), b"OK\0");
    assert_eq!(
        w.call(g, Op::GetDomainPath, &z(&[&domid.to_string()])).unwrap(),
        format!("/local/domain/{domid}\0").into_bytes()
    );
}

#[test]
fn a_guest_that_does_not_take_its_replies_is_read_no_further_than_the_outstanding_quota() {
    let mut w = World::new();
    let d0 = w.dom0();
    let (g, me) = guest(&mut w, d0, "hoarder");
    w.set_reading(g, false);
    let payload = z(&[&me]);
    let sent: Vec<u32> = (0..80).map(|_| w.send(g, Op::GetDomainPath, 0, &payload)).collect();
    w.run();
    // C: quota_req_outstanding (20) answered-but-untaken requests, plus
    // what the ring itself holds (1024 bytes: 32 replies of 32 bytes).
    let line = line_of(&stats(&mut w, d0).0, me.parse().unwrap());
    assert_eq!(line["requests"], (32 + 20).to_string(), "{line:?}");
    // Once it reads, everything is answered.
    w.set_reading(g, true);
    w.run();
    for id in sent {
        assert!(w.reply(g, id).is_some(), "request {id} answered");
    }
}
