//! Effects as data: what the engine asks the driver to do outside the
//! store (attach and detach rings, daemon-only CONTROL commands), and how
//! a failure reported back undoes the request.

mod support;

use support::World;
use xenstore_db::{DaemonCommand, Effect, LiveUpdate, QuotaKind};
use xenstore_wire::{ErrorCode, Op, Reply};

fn introduce(w: &mut World, domid: u16, gfn: u64, port: u32) -> xenstore_db::Outcome {
    w.send("dom0", 0, Op::Introduce, format!("{domid}\0{gfn}\0{port}\0").as_bytes())
}

#[test]
fn introduce_asks_to_attach_the_ring_as_a_new_guest_connection() {
    let mut w = World::new();
    w.watch("dom0", "@introduceDomain", "t");
    let out = introduce(&mut w, 7, 0xfeffc, 3);
    assert_eq!(out.reply, Ok(Reply::Ok));
    let [Effect::AttachRing { domid: 7, gfn: 0xfeffc, port: 3, conn, features, .. }] = out.effects[..] else {
        panic!("expected one AttachRing: {:?}", out.effects);
    };
    assert_eq!(features, w.engine.config().features);
    let caller = w.engine.caller(conn).expect("the ring's connection is registered");
    assert_eq!((caller.domid, caller.privileged), (7, false));
    assert_eq!(w.events_of(&out), [("dom0".into(), "@introduceDomain".into(), "t".into())]);
    // A repeat with the same ring is OK and asks for nothing more.
    let again = introduce(&mut w, 7, 0xfeffc, 3);
    assert_eq!((again.reply, again.effects.len()), (Ok(Reply::Ok), 0));
}

#[test]
fn introduce_advertises_the_features_set_before_it() {
    let mut w = World::new();
    w.ok("dom0", Op::SetFeature, b"7\x001\0");
    let out = introduce(&mut w, 7, 1, 3);
    assert!(matches!(out.effects[..], [Effect::AttachRing { features: 1, .. }]), "{:?}", out.effects);
}

#[test]
fn failed_attach_rolls_the_introduce_back_to_the_state_before_it() {
    let mut w = World::new();
    let before = format!("{:?}", w.engine);
    let out = introduce(&mut w, 7, 1, 3);
    let failed = w.engine.effect_failed(&out.effects[0]);
    assert_eq!(failed.reply, Err(ErrorCode::EINVAL));
    assert!(failed.events.is_empty() && failed.effects.is_empty());
    assert_eq!(format!("{:?}", w.engine), before, "the engine is as before the INTRODUCE");
    assert_eq!(w.reply("dom0", 0, Op::IsDomainIntroduced, b"7\0"), Ok(b"F\0".to_vec()));
    assert_eq!(w.reply("dom0", 0, Op::GetQuota, b"7\0nodes\0"), Err(ErrorCode::ENOENT));
    // The same INTRODUCE may be tried again.
    assert_eq!(introduce(&mut w, 7, 1, 3).effects.len(), 1);
}

#[test]
fn failed_attach_keeps_a_domain_known_before_the_introduce() {
    let mut w = World::new();
    w.ok("dom0", Op::Mkdir, b"/shared\0");
    w.ok("dom0", Op::SetPerms, b"/shared\0n0\0r7\0");
    let out = introduce(&mut w, 7, 1, 3);
    w.engine.effect_failed(&out.effects[0]);
    // Domain 7 still holds its read permission on /shared.
    assert_eq!(w.reply("dom0", 0, Op::GetPerms, b"/shared\0"), Ok(b"n0\0r7\0".to_vec()));
}

#[test]
fn failed_attach_keeps_a_domain_set_target_made_known_just_before() {
    let mut w = World::new();
    w.ok("dom0", Op::SetTarget, b"7\x008\0");
    let before = format!("{:?}", w.engine);
    let out = introduce(&mut w, 7, 1, 3);
    w.engine.effect_failed(&out.effects[0]);
    assert_eq!(format!("{:?}", w.engine), before, "domain 7 and its target stay known");
}

#[test]
fn release_detaches_the_ring_and_forgets_its_connection() {
    let mut w = World::new();
    let out = introduce(&mut w, 7, 1, 3);
    let [Effect::AttachRing { conn, .. }] = out.effects[..] else { panic!() };
    let released = w.send("dom0", 0, Op::Release, b"7\0");
    assert_eq!(released.reply, Ok(Reply::Ok));
    assert_eq!(released.effects, [Effect::DetachRing { domid: 7, conn }]);
    assert_eq!(w.engine.caller(conn), None);
}

#[test]
fn removing_a_dead_domain_detaches_its_ring() {
    let mut w = World::new();
    let out = introduce(&mut w, 7, 1, 3);
    let [Effect::AttachRing { conn, .. }] = out.effects[..] else { panic!() };
    assert_eq!(w.engine.remove_domain(7).effects, [Effect::DetachRing { domid: 7, conn }]);
    assert!(w.engine.remove_domain(7).effects.is_empty(), "only once");
}

#[test]
fn control_daemon_commands_come_back_as_effects() {
    let mut w = World::new();
    for (payload, command) in [
        (&b"log\0on\0"[..], DaemonCommand::Log(true)),
        (b"log\0off\0", DaemonCommand::Log(false)),
        (b"logfile\0/tmp/x\0", DaemonCommand::LogFile("/tmp/x".into())),
        (b"print\0hello\0world\0", DaemonCommand::Print("hello world".into())),
        (b"memreport\0", DaemonCommand::MemReport(None)),
        (b"memreport\0/tmp/m\0", DaemonCommand::MemReport(Some("/tmp/m".into()))),
        (b"live-update\0-f\0/usr/sbin/x\0", DaemonCommand::LiveUpdate(LiveUpdate::Binary("/usr/sbin/x".into()))),
        (b"live-update\0-c\0-T /tmp/t\0", DaemonCommand::LiveUpdate(LiveUpdate::CommandLine("-T /tmp/t".into()))),
        (b"live-update\0-a\0", DaemonCommand::LiveUpdate(LiveUpdate::Abort)),
        (
            b"live-update\0-s\0",
            DaemonCommand::LiveUpdate(LiveUpdate::Start { timeout_secs: 0, force: false, version: 2 }),
        ),
        (
            b"live-update\0-s\0-t\x0060\0-F\0-v\x001\0",
            DaemonCommand::LiveUpdate(LiveUpdate::Start { timeout_secs: 60, force: true, version: 1 }),
        ),
    ] {
        let out = w.send("dom0", 0, Op::Control, payload);
        assert_eq!(out.effects, [Effect::Daemon(command)], "{:?}", String::from_utf8_lossy(payload));
    }
}

#[test]
fn control_live_update_malformed_is_einval() {
    let mut w = World::new();
    for payload in [
        &b"live-update\0"[..],
        b"live-update\0-f\0",
        b"live-update\0-f\0a\0b\0",
        b"live-update\0-s\0-t\0",
        b"live-update\0-s\0-x\0",
        b"live-update\0-a\0x\0",
        b"live-update\0-b\x004096\0",
    ] {
        let out = w.send("dom0", 0, Op::Control, payload);
        assert_eq!(out.reply, Err(ErrorCode::EINVAL), "{:?}", String::from_utf8_lossy(payload));
        assert!(out.effects.is_empty());
    }
}

#[test]
fn control_quota_set_changes_the_global_quota_without_another_connection() {
    let mut w = World::new();
    let out = w.send("dom0", 0, Op::Control, b"quota\0set\0nodes\x0077\0");
    assert_eq!((out.reply, out.effects.len()), (Ok(Reply::Text(b"OK".to_vec())), 0));
    assert_eq!(w.engine.config().quotas.get(QuotaKind::Nodes), 77);
    let out = w.send("dom0", 0, Op::Control, b"quota-soft\0set\0nodes\x005\0");
    assert_eq!(out.reply, Ok(Reply::Text(b"OK".to_vec())));
    assert_eq!(w.engine.config().soft_quotas.get(QuotaKind::Nodes), 5);
    assert_eq!(w.send("dom0", 0, Op::Control, b"quota\0set\0bogus\x001\0").reply, Err(ErrorCode::EINVAL));
}

#[test]
fn control_from_a_guest_is_eacces_and_unknown_commands_einval() {
    let mut w = World::new();
    assert_eq!(w.send("d1", 0, Op::Control, b"log\0on\0").reply, Err(ErrorCode::EACCES));
    assert_eq!(w.send("dom0", 0, Op::Control, b"frobnicate\0").reply, Err(ErrorCode::EINVAL));
    assert_eq!(w.send("dom0", 0, Op::Control, b"print\0\xff\0").reply, Err(ErrorCode::EINVAL));
}
