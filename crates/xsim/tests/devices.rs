//! `xsim attach`, `detach` and `devices` across processes: the xsim binary
//! against a host, a dom0 backend thread (`BackendThread`, the null
//! backend) in this test process, and guests that are the frontends or
//! check what they may see (`xsim-guest`).

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::TestHost;
use xen_platform::DomId;
use xenstore::{Access, Perm, Store};
use xsim::devices::null_driver::BackendThread;

/// Runs the xsim binary against `host`.
fn xsim(host: &TestHost, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_xsim"))
        .env("XSIM_STATE", host.state.root())
        .args(args)
        .output()
        .expect("run xsim")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A null backend for `devtype` in dom0, on a connection of its own.
fn dom0_backend(host: &TestHost, devtype: &str) -> BackendThread {
    let client = xenstore::Client::connect(host.state.xenstored_socket()).expect("dom0 connection");
    BackendThread::start(client, 0, devtype)
}

fn read(host: &TestHost, path: &str) -> Option<String> {
    host.ts.store().read(path).ok().map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Waits until `path` reads `value`.
fn wait_for(host: &TestHost, path: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while read(host, path).as_deref() != Some(value) {
        assert!(Instant::now() < deadline, "{path} never read {value:?} (last {:?})", read(host, path));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn perms(entries: &[(DomId, Access)]) -> Vec<Perm> {
    entries.iter().map(|&(domid, access)| Perm { domid, access }).collect()
}

#[test]
fn attach_with_a_backend_prints_the_id_and_writes_both_directories_as_libxl_does() {
    let mut host = TestHost::up();
    let _backend = dom0_backend(&host, "vbd");
    // The frontend checks its own view once the device is there.
    let fe = host.guest("front", &["check", "device-access", "vbd", "51712", "0"], true);
    let out = xsim(&host, &["attach", "front", "vbd", "params=/srv/disk.img", "mode=w"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "51712\n", "the first vbd is xvda");

    let (fe_dir, be_dir) =
        (format!("/local/domain/{fe}/device/vbd/51712"), format!("/local/domain/0/backend/vbd/{fe}/51712"));
    for (key, value) in [
        ("backend", be_dir.as_str()),
        ("backend-id", "0"),
        ("state", "1"),
        ("virtual-device", "51712"),
        ("device-type", "disk"),
    ] {
        assert_eq!(read(&host, &format!("{fe_dir}/{key}")).as_deref(), Some(value), "{fe_dir}/{key}");
    }
    let fe_text = fe.to_string();
    for (key, value) in [
        ("frontend", fe_dir.as_str()),
        ("frontend-id", fe_text.as_str()),
        ("online", "1"),
        ("params", "/srv/disk.img"),
        ("mode", "w"),
    ] {
        assert_eq!(read(&host, &format!("{be_dir}/{key}")).as_deref(), Some(value), "{be_dir}/{key}");
    }
    // The backend took it: InitWait (the frontend is paused).
    assert_eq!(read(&host, &format!("{be_dir}/state")).as_deref(), Some("2"));
    // Frontend directory: the guest's, readable by the backend domain;
    // backend directory: the backend domain's, readable by the guest.
    let store = host.ts.store();
    for node in [fe_dir.clone(), format!("{fe_dir}/state"), format!("{fe_dir}/virtual-device")] {
        assert_eq!(
            store.get_perms(&node).unwrap().entries(),
            perms(&[(fe, Access::None), (0, Access::Read)]),
            "{node}"
        );
    }
    for node in [be_dir.clone(), format!("{be_dir}/online"), format!("{be_dir}/params")] {
        assert_eq!(
            store.get_perms(&node).unwrap().entries(),
            perms(&[(0, Access::None), (fe, Access::Read)]),
            "{node}"
        );
    }
    // The guest reads both, writes only its own.
    host.ts.unpause(fe).expect("unpause");
    host.expect_pass(fe, "device-access");
    // A third domain sees neither.
    host.check("no-access", &[&fe_dir, &be_dir]);
}

#[test]
fn attach_with_no_backend_times_out_naming_the_node_and_leaves_the_directories() {
    let mut host = TestHost::up();
    let fe = host.guest("lonely", &["demo"], false);
    let began = Instant::now();
    let out = xsim(&host, &["attach", "--timeout", "0.3", "lonely", "vif", "mac=00:16:3e:00:00:01"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(began.elapsed() < Duration::from_secs(5), "the timeout was not kept");
    let be_dir = format!("/local/domain/0/backend/vif/{fe}/0");
    let err = stderr(&out);
    for says in [
        format!("{be_dir}/state is Initialising (1)"),
        "wanted InitWait (2) or later".to_owned(),
        "Is a backend for vif running in domain 0 (Domain-0)?".to_owned(),
        "left in place".to_owned(),
        "--force".to_owned(),
    ] {
        assert!(err.contains(&says), "no {says:?} in: {err}");
    }
    assert_eq!(stdout(&out), "", "no id is printed for a device that did not attach");
    // As libxl leaves them: both directories, state 1, online 1.
    assert_eq!(read(&host, &format!("{be_dir}/state")).as_deref(), Some("1"));
    assert_eq!(read(&host, &format!("{be_dir}/online")).as_deref(), Some("1"));
    assert_eq!(read(&host, &format!("/local/domain/{fe}/device/vif/0/state")).as_deref(), Some("1"));
    let listing = stdout(&xsim(&host, &["devices", "lonely"]));
    assert!(listing.lines().nth(1).is_some_and(|l| l.starts_with("vif   0         0   1        1 ")), "{listing}");
    // A backend started late takes the device.
    let _backend = dom0_backend(&host, "vif");
    wait_for(&host, &format!("{be_dir}/state"), "2");
    // --force removes it without waiting for anyone.
    let out = xsim(&host, &["detach", "--force", "lonely", "vif", "0"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(&host, &be_dir), None);
    assert_eq!(read(&host, &format!("/local/domain/{fe}/device/vif/0")), None);
}

#[test]
fn detach_closes_both_ends_and_removes_the_directories_and_devices_lists_each() {
    let mut host = TestHost::up();
    let _backend = dom0_backend(&host, "vbd");
    let fe = host.guest("guest", &["null-frontend", "vbd"], false);
    let first = xsim(&host, &["attach", "guest", "vbd"]);
    let second = xsim(&host, &["attach", &fe.to_string(), "vbd"]);
    assert_eq!((stdout(&first), stdout(&second)), ("51712\n".into(), "51728\n".into()), "{first:?} {second:?}");
    for devid in ["51712", "51728"] {
        wait_for(&host, &format!("/local/domain/{fe}/device/vbd/{devid}/state"), "4");
        wait_for(&host, &format!("/local/domain/0/backend/vbd/{fe}/{devid}/state"), "4");
    }
    let listing = xsim(&host, &["devices", "guest"]);
    assert!(listing.status.success(), "{listing:?}");
    assert_eq!(
        stdout(&listing),
        format!(
            "Type  Devid     BE  FE-state BE-state BE-path\n\
             vbd   51712     0   4        4        /local/domain/0/backend/vbd/{fe}/51712\n\
             vbd   51728     0   4        4        /local/domain/0/backend/vbd/{fe}/51728\n"
        )
    );

    let out = xsim(&host, &["detach", "guest", "vbd", "51712"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(&host, &format!("/local/domain/0/backend/vbd/{fe}/51712")), None);
    assert_eq!(read(&host, &format!("/local/domain/{fe}/device/vbd/51712")), None);
    assert_eq!(stdout(&xsim(&host, &["devices", "guest"])).lines().count(), 2, "one device left");
    // The next id is after the highest in use; a detached id is not reused
    // while a higher one lives (libxl's rule).
    assert_eq!(stdout(&xsim(&host, &["attach", "guest", "vbd"])), "51744\n");
}

#[test]
fn detach_times_out_when_no_frontend_closes_and_leaves_the_directories() {
    let mut host = TestHost::up();
    let _backend = dom0_backend(&host, "vbd");
    let fe = host.guest("deaf", &["demo"], false);
    assert!(xsim(&host, &["attach", "deaf", "vbd"]).status.success());
    let out = xsim(&host, &["detach", "-t", "0.3", "deaf", "vbd", "51712"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let be_dir = format!("/local/domain/0/backend/vbd/{fe}/51712");
    let err = stderr(&out);
    assert!(err.contains(&format!("{be_dir}/state is Closing (5), wanted Closed (6)")), "{err}");
    assert!(err.contains("frontend's driver running"), "{err}");
    assert_eq!(read(&host, &format!("{be_dir}/online")).as_deref(), Some("0"));
    assert!(xsim(&host, &["detach", "-f", "deaf", "vbd", "51712"]).status.success());
    assert_eq!(read(&host, &be_dir), None);
}

#[test]
fn a_driver_domain_serves_a_device_and_destroy_removes_the_guests_backend_directories() {
    let mut host = TestHost::up();
    let be = host.guest("driver", &["null-backend", "vif"], false);
    let fe = host.guest("guest", &["null-frontend", "vif"], false);
    let out = xsim(&host, &["attach", "--backend", "driver", "guest", "vif"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "0\n");
    let be_dir = format!("/local/domain/{be}/backend/vif/{fe}/0");
    wait_for(&host, &format!("{be_dir}/state"), "4");
    let listing = stdout(&xsim(&host, &["devices", "guest"]));
    assert!(listing.contains(&format!("vif   0         {be:<3} 4        4        {be_dir}")), "{listing}");
    assert!(xsim(&host, &["destroy", "guest"]).status.success());
    assert_eq!(read(&host, &be_dir), None, "the backend directory went with its frontend's domain");
    assert_eq!(read(&host, &format!("/libxl/{fe}")), None);
}

#[test]
fn bad_domains_types_and_ids_are_refused_with_what_is_wrong() {
    let mut host = TestHost::up();
    let _backend = dom0_backend(&host, "vbd");
    host.guest("guest", &["demo"], false);
    assert!(xsim(&host, &["attach", "guest", "vbd", "--devid", "51712"]).status.success());
    for (args, code, says) in [
        (&["attach", "nobody", "vbd"][..], 1, "no domain \"nobody\""),
        (&["attach", "--backend", "ghost", "guest", "vbd"], 1, "--backend: no domain \"ghost\""),
        (&["attach", "guest", "vbd", "--devid", "51712"], 1, "already has vbd 51712"),
        (&["attach", "guest", "v/bd"], 2, "is not a device type"),
        (&["attach", "guest", "vbd", "online=0"], 2, "written by xsim itself"),
        (&["attach", "guest", "vbd", "params"], 2, "want KEY=VALUE"),
        (&["attach", "guest", "vbd", "--timeout", "soon"], 2, "number of seconds"),
        (&["detach", "guest", "vbd", "7"], 1, "has no vbd 7"),
        (&["detach", "guest", "vbd", "xvda"], 2, "invalid value 'xvda'"),
        (&["detach", "nobody", "vbd", "51712"], 1, "no domain \"nobody\""),
        (&["devices", "nobody"], 1, "no domain \"nobody\""),
        (&["devices"], 2, "DOMAIN"),
    ] {
        let out = xsim(&host, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// Attaches a `vif` to `fe` with the next free id, through the library.
fn attach_next(ts: &mut xsim::Toolstack, fe: DomId) -> u32 {
    let spec =
        xsim::devices::AttachSpec { timeout: Duration::from_secs(10), ..xsim::devices::AttachSpec::new(fe, "vif") };
    xsim::devices::attach(ts, &spec).expect("attach")
}

#[test]
fn the_next_id_follows_the_highest_and_survives_what_the_note_does_not_know() {
    let mut host = TestHost::up();
    let _backend = dom0_backend(&host, "vif");
    let fe = host.guest("guest", &["demo"], false);
    let ids: Vec<u32> = (0..3).map(|_| attach_next(&mut host.ts, fe)).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(read(&host, &xsim::devices::next_id::node(fe, "vif")).as_deref(), Some("2"));
    // A caller's id above the highest raises it.
    let spec = xsim::devices::AttachSpec { devid: Some(10), ..xsim::devices::AttachSpec::new(fe, "vif") };
    assert_eq!(xsim::devices::attach(&mut host.ts, &spec).unwrap(), 10);
    assert_eq!(attach_next(&mut host.ts, fe), 11);
    // The highest detached: the ids above the highest left are free again
    // (libxl's rule, from a listing).
    assert!(xsim(&host, &["detach", "-f", "guest", "vif", "11"]).status.success());
    assert!(xsim(&host, &["detach", "-f", "guest", "vif", "10"]).status.success());
    assert_eq!(attach_next(&mut host.ts, fe), 3);
    // A directory made behind the note's back at the next id: refused by
    // the transaction, and the id chosen again from a listing.
    host.ts.store().write(&format!("/local/domain/{fe}/device/vif/4/state"), b"1").unwrap();
    assert_eq!(attach_next(&mut host.ts, fe), 5);
    // That directory was not replaced.
    assert_eq!(read(&host, &format!("/local/domain/{fe}/device/vif/4/backend")), None);
    // A record left without its directories is not in the listing: the
    // same id comes back, and the attach fails saying what is in the way.
    host.ts.store().write(&format!("/libxl/{fe}/device/vif/6/backend-id"), b"0").unwrap();
    let spec =
        xsim::devices::AttachSpec { timeout: Duration::from_secs(10), ..xsim::devices::AttachSpec::new(fe, "vif") };
    let err = format!("{:#}", xsim::devices::attach(&mut host.ts, &spec).unwrap_err());
    assert!(err.contains(&format!("already has vif 6 (/libxl/{fe}/device/vif/6 exists")), "{err}");
}

#[test]
fn two_toolstacks_attaching_at_once_never_hand_out_one_id_twice() {
    let mut host = TestHost::up();
    let _backend = dom0_backend(&host, "vif");
    let fe = host.guest("guest", &["demo"], false);
    let per = 15;
    let ids: Vec<u32> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let state = &host.state;
                s.spawn(move || {
                    let mut ts = xsim::Toolstack::connect(state).expect("a second toolstack");
                    (0..per).map(|_| attach_next(&mut ts, fe)).collect::<Vec<u32>>()
                })
            })
            .collect();
        racers.into_iter().flat_map(|r| r.join().expect("racer")).collect()
    });
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "an id was handed out twice: {ids:?}");
    let listing = stdout(&xsim(&host, &["devices", "guest"]));
    assert_eq!(listing.lines().count(), ids.len() + 1, "{listing}");
}
