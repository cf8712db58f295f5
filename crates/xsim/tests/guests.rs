//! Guest-side behaviour: each check runs inside a hosted domain against
//! xenstored over the domain's own ring (`xsim-guest check ...`), with the
//! dom0 side set up here the way a toolstack would.

mod support;

use std::time::Duration;

use support::TestHost;
use xen_platform::{DomainState, ShutdownReason, Toolstack};
use xenstore::{Request, Store};

#[test]
fn relative_paths_resolve_in_the_domain_home() {
    TestHost::up().check("relative", &[]);
}

#[test]
fn another_domains_nodes_and_guest_only_operations_are_refused() {
    let mut host = TestHost::up();
    let other = host.guest("other", &["demo"], false);
    host.check("eacces", &[&other.to_string()]);
}

#[test]
fn created_nodes_belong_to_the_guest_which_may_not_give_them_away() {
    let mut host = TestHost::up();
    let other = host.guest("other", &["demo"], false);
    let domid = host.check("ownership", &[&other.to_string()]);
    let perms = host.ts.store().get_perms(&format!("/local/domain/{domid}/data/mine")).expect("perms");
    assert_eq!(perms.owner(), domid);
}

#[test]
fn per_domain_quotas_run_out_with_their_errors() {
    let mut host = TestHost::up();
    let domid = host.guest("check-quota", &["check", "quota"], true);
    for (quota, value) in [("nodes", 12), ("watches", 2), ("transactions", 2)] {
        host.ts
            .store()
            .request(&Request::SetQuota { domid: Some(domid), quota, value })
            .unwrap_or_else(|e| panic!("SET_QUOTA {quota}: {e}"));
    }
    host.ts.unpause(domid).expect("unpause");
    host.expect_pass(domid, "quota");
    // The toolstack wrote 7 nodes the guest owns (control, control/shutdown,
    // data, drivers, feature, attr, error, as libxl); the quota of 12 left
    // room for 5 more.
    assert!(host.console(domid).contains("quota: 5 nodes before ENOSPC"), "{}", host.console(domid));
}

#[test]
fn set_target_lets_a_domain_act_for_another() {
    let mut host = TestHost::up();
    let target = host.guest("target", &["demo"], false);
    let actor = host.guest("check-target", &["check", "target", &target.to_string()], true);
    host.ts.store().set_target(actor, target).expect("SET_TARGET");
    host.ts.unpause(actor).expect("unpause");
    host.expect_pass(actor, "target");
    let value = host.ts.store().read(&format!("/local/domain/{target}/data/by-target")).expect("read");
    assert_eq!(value, b"hi");
}

#[test]
fn destroying_a_domain_fires_release_domain_and_removes_its_nodes() {
    let mut host = TestHost::up();
    let domid = host.guest("linger", &["check", "linger"], false);
    let ready = format!("/local/domain/{domid}/data/ready");
    let watch = host.ts.store().watch(&ready, "ready").expect("watch");
    while !host.ts.store().exists(&ready).expect("exists") {
        let _ = watch.recv_timeout(Duration::from_secs(10));
    }
    let released = host.ts.store().watch("@releaseDomain", "rel").expect("watch @releaseDomain");
    let first = released.recv_timeout(Duration::from_secs(5)).expect("initial event");
    assert_eq!(first.path, "@releaseDomain");
    let dom = format!("/local/domain/{domid}");
    assert!(host.ts.store().exists(&format!("{dom}/data/linger/a")).expect("exists"));
    // The hypervisor destroys it; xenstored learns through VIRQ_DOM_EXC.
    let hv = xen_platform::hosted::Host::connect(&host.state.hypervisor_socket()).expect("hypervisor");
    hv.toolstack().destroy(domid).expect("destroy");
    let event = released.recv_timeout(Duration::from_secs(10)).expect("@releaseDomain fired");
    assert_eq!(event.path, "@releaseDomain");
    let store = host.ts.store();
    assert!(!store.is_domain_introduced(domid).expect("introduced?"));
    // What the guest owned is gone; dom0's own nodes for it stay until the
    // toolstack removes them.
    assert!(!store.exists(&format!("{dom}/data/linger")).expect("exists"));
    assert!(!store.exists(&format!("{dom}/data/ready")).expect("exists"));
    assert!(store.exists(&format!("{dom}/name")).expect("exists"));
}

#[test]
fn shutdown_fires_release_domain_before_destruction() {
    let mut host = TestHost::up();
    let domid = host.guest("demo", &["demo"], false);
    let released = host.ts.store().watch("@releaseDomain", "rel").expect("watch");
    released.recv_timeout(Duration::from_secs(5)).expect("initial event");
    let state = host.ts.shutdown(domid, ShutdownReason::Poweroff, Duration::from_secs(10)).expect("shutdown");
    assert_eq!(state, DomainState::Shutdown(ShutdownReason::Poweroff));
    released.recv_timeout(Duration::from_secs(10)).expect("@releaseDomain on shutdown");
    assert!(host.console(domid).contains("shutdown requested (poweroff)"), "{}", host.console(domid));
    // Still introduced until destroyed.
    assert!(host.ts.store().is_domain_introduced(domid).expect("introduced?"));
    host.ts.destroy(domid).expect("destroy");
    assert!(!host.ts.store().exists(&format!("/local/domain/{domid}")).expect("exists"));
}

#[test]
fn ring_reconnection_mid_stream_drops_partial_packets_and_watches() {
    TestHost::up().check("reconnect", &[]);
}

#[test]
fn oversize_payload_sets_error_3_until_reconnection() {
    TestHost::up().check("oversize", &[]);
}

/// A guest cannot make xenstored block in the notification it sends it:
/// whatever it does to the descriptor it polls its port with (made
/// blocking and filled to the counter's maximum, when it is the eventfd
/// the daemon writes), the daemon keeps answering it and dom0.
#[test]
fn a_guest_cannot_make_the_daemon_block_in_its_notification() {
    let mut host = TestHost::up();
    let jam = host.guest("check-jam", &["check", "jam-port"], false);
    host.expect_pass(jam, "jam-port");
    let socket = host.state.xenstored_socket();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dom0 = xenstore::Client::connect(&socket).expect("dom0 client");
        let _ = tx.send(dom0.read("/local/domain/0/name").map_err(|e| e.to_string()));
    });
    let answer = rx.recv_timeout(Duration::from_secs(10)).expect("xenstored stopped answering dom0");
    assert_eq!(answer.expect("read"), b"Domain-0");
}

#[test]
fn corrupt_indices_cut_off_only_that_guest() {
    let mut host = TestHost::up();
    let pinger = host.guest("check-pinger", &["check", "pinger", "3000"], true);
    let corrupt = host.guest("check-corrupt", &["check", "corrupt"], true);
    host.ts.unpause(pinger).expect("unpause");
    host.ts.unpause(corrupt).expect("unpause");
    host.expect_pass(corrupt, "corrupt");
    host.expect_pass(pinger, "pinger");
    // The corrupt guest's ring is no longer served, but the daemon is fine.
    let log = std::fs::read_to_string(host.state.xenstored_log()).expect("log");
    assert!(log.contains("ring stopped"), "{log}");
    assert_eq!(host.ts.store().read(&format!("/local/domain/{pinger}/data/ping")).expect("read"), b"2999");
}

#[test]
fn xenstore_tools_run_one_after_another_inside_a_guest() {
    let mut host = TestHost::up();
    let tool = std::path::Path::new(env!("CARGO_BIN_EXE_xsim")).with_file_name("xenstore");
    assert!(tool.is_file(), "{} missing: `cargo build --bins` first", tool.display());
    let t = tool.display();
    // Each command is a new process on the guest's one ring; ten of them
    // in a row caught a stale reply on the shared hypervisor socket.
    let script = format!(
        "{t} write data/a 1 && {t} read data/a && {t} read name && {t} ls data && \
         for i in 1 2 3 4 5 6 7 8 9 10; do {t} read data/a || exit 1; done"
    );
    let spec = xsim::DomainSpec {
        name: "shell".into(),
        program: vec!["/bin/sh".into(), "-c".into(), script],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let domid = host.ts.create(&spec).expect("create").domid;
    let state = host.wait_shutdown(domid, Duration::from_secs(30));
    let console = host.console(domid);
    assert_eq!(state, DomainState::Shutdown(ShutdownReason::Poweroff), "{console}");
    assert_eq!(console, format!("1\nshell\na = \"1\"\n{}", "1\n".repeat(10)));
}

#[test]
fn introducing_a_domain_that_does_not_exist_is_einval_and_harms_nothing() {
    let host = TestHost::up();
    let store = host.ts.store();
    let err = store.introduce(999, xen_platform::hosted::STORE_GFN, 1).expect_err("no such domain");
    assert_eq!(err.code(), Some(xenstore::ErrorCode::EINVAL));
    assert!(!store.is_domain_introduced(999).expect("introduced?"));
    assert_eq!(store.read("/local/domain/0/name").expect("still serving"), b"Domain-0");
}

#[test]
fn guests_keep_their_rings_through_live_updates_of_xenstored() {
    // Two guests write, read, commit and watch over their rings without
    // pause while xenstored replaces itself three times: they see no
    // failed request and miss no event (`check steady`).
    let mut host = TestHost::up();
    let guests = [
        host.guest("steady-a", &["check", "steady", "3000"], false),
        host.guest("steady-b", &["check", "steady", "3000"], false),
    ];
    let socket = host.state.xenstored_socket();
    let xenstored = socket.parent().unwrap().join("xenstored-new");
    std::fs::copy(support::programs().xenstored, &xenstored).unwrap();
    let dom0 = xenstore::Client::connect(&socket).expect("dom0 client");
    let step = |args: &[&str]| {
        let mut call: Vec<&[u8]> = vec![b"live-update"];
        call.extend(args.iter().map(|a| a.as_bytes()));
        let reply = dom0.control(&call).expect("live-update step");
        String::from_utf8_lossy(&reply).trim_end_matches('\0').to_owned()
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(step(&["-f", xenstored.to_str().unwrap()]), "OK");
        assert_eq!(step(&["-s", "-t", "10"]), "OK");
    }
    // An update that fails after the event-channel handle was taken apart
    // (the binary is gone by the time it is executed) takes the handle
    // back, its ports no longer polled directly by then: the rings are
    // served again and the guests go on.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(step(&["-f", xenstored.to_str().unwrap()]), "OK");
    std::fs::remove_file(&xenstored).unwrap();
    let failed = step(&["-s", "-t", "10"]);
    assert!(failed.starts_with("Error activating new binary"), "{failed}");
    for domid in guests {
        host.expect_pass(domid, "steady");
    }
    // The store still answers, guests' nodes in place.
    let domains = host.ts.store().directory("/local/domain").expect("directory");
    assert!(guests.iter().all(|d| domains.contains(&d.to_string())), "{domains:?}");
}
