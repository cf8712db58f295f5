//! The toolstack helper's directories and permissions, seen by the
//! domains themselves, and bus enumeration (in the stepped world).

mod support;

use support::demo::{entries, log, DemoBack, DemoFront};
use support::{code, settle, state_of, Host};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::{Bus, XenbusState};
use xenstore::{Access, ErrorCode, Op, Perm, Store};

fn perms(list: &[(u16, Access)]) -> Vec<Perm> {
    list.iter().map(|&(domid, access)| Perm { domid, access }).collect()
}

#[test]
fn attach_writes_both_directories_as_libxl_does() {
    let host = Host::new();
    let (fe, _fe_conn) = host.guest("front");
    let (be, _be_conn) = host.guest("back");
    let mut spec = DeviceSpec::new("vif", 0, fe, be);
    spec.frontend_keys.push(("mac".into(), "00:16:3e:00:00:01".into()));
    spec.backend_keys.push(("script".into(), "vif-bridge".into()));
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let ts = &host.toolstack;
    let (fe_dir, be_dir) = (spec.frontend_dir(), spec.backend_dir());
    assert_eq!(fe_dir, format!("/local/domain/{fe}/device/vif/0"));
    assert_eq!(be_dir, format!("/local/domain/{be}/backend/vif/{fe}/0"));
    let read = |path: String| String::from_utf8(ts.read(&path).unwrap()).unwrap();
    assert_eq!(read(format!("{fe_dir}/backend")), be_dir);
    assert_eq!(read(format!("{fe_dir}/backend-id")), be.to_string());
    assert_eq!(read(format!("{fe_dir}/state")), "1");
    assert_eq!(read(format!("{fe_dir}/mac")), "00:16:3e:00:00:01");
    assert_eq!(read(format!("{be_dir}/frontend")), fe_dir);
    assert_eq!(read(format!("{be_dir}/frontend-id")), fe.to_string());
    assert_eq!(read(format!("{be_dir}/online")), "1");
    assert_eq!(read(format!("{be_dir}/state")), "1");
    assert_eq!(read(format!("{be_dir}/script")), "vif-bridge");
    for node in [fe_dir.clone(), format!("{fe_dir}/state"), format!("{fe_dir}/mac")] {
        assert_eq!(ts.get_perms(&node).unwrap().entries(), perms(&[(fe, Access::None), (be, Access::Read)]), "{node}");
    }
    for node in [be_dir.clone(), format!("{be_dir}/state"), format!("{be_dir}/online")] {
        assert_eq!(ts.get_perms(&node).unwrap().entries(), perms(&[(be, Access::None), (fe, Access::Read)]), "{node}");
    }
}

#[test]
fn a_qdisk_disk_has_its_backend_under_backend_qdisk_and_its_frontend_under_device_vbd() {
    let host = Host::new();
    let (fe, _fe_conn) = host.guest("front");
    let spec = DeviceSpec::new("vbd", 51712, fe, 0).with_backend_devtype("qdisk");
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let (fe_dir, be_dir) = (spec.frontend_dir(), spec.backend_dir());
    assert_eq!(fe_dir, format!("/local/domain/{fe}/device/vbd/51712"));
    assert_eq!(be_dir, format!("/local/domain/0/backend/qdisk/{fe}/51712"));
    let read = |path: String| String::from_utf8(host.toolstack.read(&path).unwrap()).unwrap();
    assert_eq!(read(format!("{fe_dir}/backend")), be_dir);
    assert_eq!(read(format!("{be_dir}/frontend")), fe_dir);
}

#[test]
fn each_end_reads_the_other_but_writes_only_its_own_and_a_third_guest_sees_nothing() {
    let host = Host::new();
    let (fe, fe_conn) = host.guest("front");
    let (be, be_conn) = host.guest("back");
    let (_, third) = host.guest("third");
    let spec = DeviceSpec::new("vif", 0, fe, be);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let (fe_dir, be_dir) = (spec.frontend_dir(), spec.backend_dir());
    // Each end reads both directories.
    for conn in [&fe_conn, &be_conn] {
        assert_eq!(conn.read(&format!("{fe_dir}/state")).unwrap(), b"1");
        assert_eq!(conn.read(&format!("{be_dir}/state")).unwrap(), b"1");
    }
    // Each writes its own directory only.
    fe_conn.write(&format!("{fe_dir}/ring-ref"), b"8").unwrap();
    be_conn.write(&format!("{be_dir}/feature-sg"), b"1").unwrap();
    assert_eq!(code(fe_conn.write(&format!("{be_dir}/state"), b"4")), Some(ErrorCode::EACCES));
    assert_eq!(code(be_conn.write(&format!("{fe_dir}/state"), b"4")), Some(ErrorCode::EACCES));
    // A third guest can neither read nor list nor write them.
    for dir in [&fe_dir, &be_dir] {
        assert_eq!(code(third.read(&format!("{dir}/state"))), Some(ErrorCode::EACCES), "{dir}");
        assert_eq!(code(third.read(dir)), Some(ErrorCode::EACCES), "{dir}");
        assert_eq!(code(third.directory(dir)), Some(ErrorCode::EACCES), "{dir}");
        assert_eq!(code(third.write(&format!("{dir}/state"), b"6")), Some(ErrorCode::EACCES), "{dir}");
    }
}

#[test]
fn a_backend_in_a_driver_domain_connects_with_only_the_toolstacks_permissions() {
    let host = Host::new();
    let (fe, fe_conn) = host.guest("front");
    let (be, be_conn) = host.guest("driver-domain");
    let log = log();
    let blog = log.clone();
    let mut back = Bus::backend(be_conn, be, "demo", move |_| DemoBack { sectors: 64, log: blog.clone() });
    let flog = log.clone();
    let mut front = Bus::frontend(fe_conn, fe, "demo", move |_| DemoFront {
        published: XenbusState::Connected,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    back.start().unwrap();
    front.start().unwrap();
    let spec = DeviceSpec::new("demo", 0, fe, be);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    settle(&mut [&mut front, &mut back]);
    assert_eq!(state_of(&host.toolstack, &spec.frontend_dir()), "4");
    assert_eq!(state_of(&host.toolstack, &spec.backend_dir()), "4");
    assert_eq!(entries(&log, "fe backend-connected"), ["fe backend-connected 64"]);
}

#[test]
fn the_backend_bus_probes_each_new_device_and_removes_vanished_ones() {
    let host = Host::new();
    let (fe1, _c1) = host.guest("one");
    let (fe2, _c2) = host.guest("two");
    let log = log();
    let blog = log.clone();
    let mut back = Bus::backend(host.dom0(), 0, "demo", move |_| DemoBack { sectors: 1, log: blog.clone() });
    back.start().unwrap();
    let specs =
        [DeviceSpec::new("demo", 0, fe1, 0), DeviceSpec::new("demo", 1, fe1, 0), DeviceSpec::new("demo", 0, fe2, 0)];
    for spec in &specs {
        toolstack::attach(&host.toolstack, spec).unwrap();
    }
    settle(&mut [&mut back]);
    let mut expected: Vec<String> = specs.iter().map(DeviceSpec::backend_dir).collect();
    expected.sort();
    assert_eq!(back.devices().collect::<Vec<_>>(), expected);
    for spec in &specs {
        assert_eq!(state_of(&host.toolstack, &spec.backend_dir()), "2", "probed and waiting");
    }
    toolstack::remove_dirs(&host.toolstack, &specs[1]).unwrap();
    settle(&mut [&mut back]);
    assert!(back.device(&specs[1].backend_dir()).is_none());
    assert_eq!(back.devices().count(), 2);
    assert_eq!(entries(&log, "be remove"), ["be remove"]);
}

#[test]
fn the_frontend_bus_probes_only_devices_that_are_initialising() {
    let host = Host::new();
    let (fe, fe_conn) = host.guest("front");
    let log = log();
    let flog = log.clone();
    let mut front = Bus::frontend(fe_conn, fe, "demo", move |_| DemoFront {
        published: XenbusState::Connected,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    let fresh = DeviceSpec::new("demo", 0, fe, 0);
    let closed = DeviceSpec::new("demo", 1, fe, 0);
    toolstack::attach(&host.toolstack, &fresh).unwrap();
    toolstack::attach(&host.toolstack, &closed).unwrap();
    host.toolstack.write(&format!("{}/state", closed.frontend_dir()), b"6").unwrap();
    front.start().unwrap();
    settle(&mut [&mut front]);
    assert_eq!(front.devices().collect::<Vec<_>>(), [fresh.frontend_dir()]);
}

#[test]
fn a_device_whose_other_end_is_missing_fails_its_probe_and_is_closed() {
    let host = Host::new();
    let (fe, fe_conn) = host.guest("front");
    let log = log();
    let flog = log.clone();
    let mut front = Bus::frontend(fe_conn, fe, "demo", move |_| DemoFront {
        published: XenbusState::Connected,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    front.start().unwrap();
    let spec = DeviceSpec::new("demo", 0, fe, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    host.toolstack.rm(&spec.backend_dir()).unwrap();
    // A new device whose backend is gone.
    let again = DeviceSpec::new("demo", 1, fe, 0);
    toolstack::attach(&host.toolstack, &again).unwrap();
    host.toolstack.rm(&again.backend_dir()).unwrap();
    settle(&mut [&mut front]);
    assert!(front.device(&again.frontend_dir()).is_none());
    assert_eq!(state_of(&host.toolstack, &again.frontend_dir()), "6");
    let error = host.toolstack.read(&format!("/local/domain/{fe}/error/device/demo/1/error")).unwrap();
    assert!(error.starts_with(b"2 "), "{}", String::from_utf8_lossy(&error));
}

/// The bus's work per attach and per removal must not grow with the
/// devices it has: no listing of the root, a bounded number of requests.
#[test]
fn a_bus_with_many_devices_takes_a_new_one_and_drops_a_gone_one_without_listing() {
    let host = Host::new();
    let (fe, _fe_conn) = host.guest("many");
    let (other, _other_conn) = host.guest("other");
    let log = log();
    let blog = log.clone();
    let mut back = Bus::backend(host.dom0(), 0, "demo", move |_| DemoBack { sectors: 1, log: blog.clone() });
    back.start().unwrap();
    // Past the small children list and past one 4 KiB listing of names.
    let many = 1200;
    for devid in 0..many {
        toolstack::attach(&host.toolstack, &DeviceSpec::new("demo", devid, fe, 0)).unwrap();
    }
    toolstack::attach(&host.toolstack, &DeviceSpec::new("demo", 0, other, 0)).unwrap();
    settle(&mut [&mut back]);
    assert_eq!(back.devices().count(), usize::try_from(many).unwrap() + 1);
    let _ = back.conn().take_sent();

    let new = DeviceSpec::new("demo", many, fe, 0);
    toolstack::attach(&host.toolstack, &new).unwrap();
    settle(&mut [&mut back]);
    assert!(back.device(&new.backend_dir()).is_some(), "the new device is probed");
    assert_eq!(state_of(&host.toolstack, &new.backend_dir()), "2");
    let sent = back.conn().take_sent();
    assert!(!sent.iter().any(|op| matches!(op, Op::Directory | Op::DirectoryPart)), "listed: {sent:?}");
    assert!(sent.len() <= 24, "{} requests to probe one device: {sent:?}", sent.len());

    let gone = DeviceSpec::new("demo", 7, fe, 0);
    toolstack::remove_dirs(&host.toolstack, &gone).unwrap();
    settle(&mut [&mut back]);
    assert!(back.device(&gone.backend_dir()).is_none(), "the removed device is dropped");
    let sent = back.conn().take_sent();
    assert!(!sent.iter().any(|op| matches!(op, Op::Directory | Op::DirectoryPart)), "listed: {sent:?}");
    assert!(sent.len() <= 8, "{} requests to drop one device: {sent:?}", sent.len());
    assert_eq!(back.devices().count(), usize::try_from(many).unwrap() + 1);
}

/// An event above the devices (a frontend domain's whole backend
/// directory removed, as destroying the domain does) drops every device
/// below it and only those.
#[test]
fn removing_a_domains_backend_directory_drops_its_devices_only() {
    let host = Host::new();
    let (fe1, _c1) = host.guest("one");
    let (fe2, _c2) = host.guest("two");
    let log = log();
    let blog = log.clone();
    let mut back = Bus::backend(host.dom0(), 0, "demo", move |_| DemoBack { sectors: 1, log: blog.clone() });
    back.start().unwrap();
    let specs =
        [DeviceSpec::new("demo", 0, fe1, 0), DeviceSpec::new("demo", 1, fe1, 0), DeviceSpec::new("demo", 0, fe2, 0)];
    for spec in &specs {
        toolstack::attach(&host.toolstack, spec).unwrap();
    }
    settle(&mut [&mut back]);
    assert_eq!(back.devices().count(), 3);
    host.toolstack.rm(&format!("/local/domain/0/backend/demo/{fe1}")).unwrap();
    settle(&mut [&mut back]);
    assert_eq!(back.devices().collect::<Vec<_>>(), [specs[2].backend_dir()]);
    assert_eq!(entries(&log, "be remove").len(), 2);
}

#[test]
fn attach_new_refuses_a_directory_that_is_there_and_writes_nothing() {
    let host = Host::new();
    let (fe, _fe_conn) = host.guest("front");
    let spec = DeviceSpec::new("vif", 0, fe, 0);
    let mut extra = |tx: &dyn Store| tx.write("/toolstack-note", b"1");
    toolstack::attach_new(&host.toolstack, &spec, &mut extra).unwrap();
    assert_eq!(host.toolstack.read("/toolstack-note").unwrap(), b"1", "the caller's writes are in it");
    host.toolstack.rm("/toolstack-note").unwrap();
    let err = toolstack::attach_new(&host.toolstack, &spec, &mut extra).unwrap_err();
    assert!(matches!(&err, xenbus::Error::Exists { path } if *path == spec.frontend_dir()), "{err}");
    assert_eq!(code(host.toolstack.read("/toolstack-note")), Some(ErrorCode::ENOENT), "nothing written");
    // Only the backend's left over is refused too.
    let other = DeviceSpec::new("vif", 1, fe, 0);
    host.toolstack.mkdir(&other.backend_dir()).unwrap();
    let err = toolstack::attach_new(&host.toolstack, &other, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(&err, xenbus::Error::Exists { path } if *path == other.backend_dir()), "{err}");
    assert_eq!(code(host.toolstack.read(&other.frontend_dir())), Some(ErrorCode::ENOENT));
}
