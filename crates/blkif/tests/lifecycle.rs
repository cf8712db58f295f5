//! Devices coming and going: detach and re-attach, a backend process
//! that dies and restarts under a busy frontend, a frontend that goes
//! away in the middle of the handshake.

// Test data: small counters turned into byte patterns and sizes.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod support;

use blkif::FrontConfig;
use support::Rig;
use xenbus::toolstack;
use xenstore::Store;

const DEVID: u32 = 51712;

#[test]
fn detach_closes_and_unmaps_and_reattach_serves_the_same_image() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 256);
    let spec = rig.attach(fe, DEVID, &image, "w");
    let ticket = rig.front(fe).write(DEVID, 8, vec![0xab; 4096]).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));

    toolstack::begin_detach(&rig.toolstack, &spec).unwrap();
    rig.settle();
    assert_eq!(rig.state(&spec.backend_dir()), "6");
    assert!(rig.backend().connected().is_empty(), "the ring is unmapped");
    toolstack::remove_dirs(&rig.toolstack, &spec).unwrap();
    rig.settle();
    assert!(rig.front(fe).info(DEVID).is_none());

    rig.attach(fe, DEVID, &image, "w");
    assert_eq!(rig.state(&spec.frontend_dir()), "4");
    let ticket = rig.front(fe).read(DEVID, 8, 8).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), vec![0xab; 4096]);
}

#[test]
fn a_backend_restart_closes_the_frontend_which_reconnects_and_loses_no_acknowledged_write() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 1024);
    let spec = rig.attach(fe, DEVID, &image, "w");
    let fe_dir = spec.frontend_dir();
    let first_ring = rig.read(&format!("{fe_dir}/ring-ref")).unwrap();

    // Some writes acknowledged, then 40 more: 32 on the ring, 8 waiting.
    let acked: Vec<_> = (0..10).map(|i| rig.front(fe).write(DEVID, i * 8, vec![i as u8 + 1; 4096]).unwrap()).collect();
    rig.settle();
    for ticket in acked {
        assert_eq!(rig.front(fe).take(DEVID, ticket), Some(Ok(Vec::new())));
    }
    let pending: Vec<_> =
        (10..50).map(|i| rig.front(fe).write(DEVID, i * 8, vec![i as u8 + 1; 4096]).unwrap()).collect();
    rig.front(fe).step().unwrap();
    assert_eq!(rig.front(fe).outstanding(DEVID), (32, 8));

    rig.kill_backend();
    rig.start_backend();
    let mut states = Vec::new();
    for _ in 0..10_000 {
        let work = rig.step();
        let state = rig.state(&fe_dir);
        if states.last() != Some(&state) {
            states.push(state);
        }
        if work == 0 {
            break;
        }
    }
    assert!(states.contains(&"6".to_string()), "the frontend closed on the way: {states:?}");
    assert_eq!(states.last().map(String::as_str), Some("4"));
    assert_ne!(rig.read(&format!("{fe_dir}/ring-ref")).unwrap(), first_ring, "a new ring");
    for ticket in pending {
        assert_eq!(rig.front(fe).take(DEVID, ticket), Some(Ok(Vec::new())), "in-flight writes were retried");
    }
    let bytes = std::fs::read(&image).unwrap();
    for i in 0..50usize {
        assert!(bytes[i * 4096..(i + 1) * 4096].iter().all(|&b| b == i as u8 + 1), "write {i} is on the image");
    }
}

#[test]
fn a_frontend_that_goes_away_mid_handshake_leaves_nothing_mapped() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 64);
    let spec = rig.spec(fe, DEVID, &image, "w");
    toolstack::attach(&rig.toolstack, &spec).unwrap();
    // Backend waits, frontend publishes (Initialised), backend maps and
    // says Connected; the frontend never gets to Connected.
    rig.backend().step().unwrap();
    rig.front(fe).step().unwrap();
    rig.backend().step().unwrap();
    assert_eq!((rig.state(&spec.frontend_dir()), rig.state(&spec.backend_dir())), ("3".into(), "4".into()));
    assert_eq!(rig.backend().connected().len(), 1);
    assert_eq!(rig.backend().ports().len(), 1, "the device's event channel is bound");

    // The guest goes: its frontend with it, and the toolstack removes the
    // frontend's directory.
    rig.fronts.remove(&fe);
    rig.toolstack.rm(&spec.frontend_dir()).unwrap();
    rig.settle();
    assert!(rig.backend().connected().is_empty(), "the ring is unmapped and the port unbound");
    assert_eq!(rig.state(&spec.backend_dir()), "6");
    assert!(rig.backend().bus().device(&spec.backend_dir()).is_none(), "the device is unregistered");
    assert!(rig.backend().ports().is_empty(), "its event channel is closed");
}

#[test]
fn a_missing_image_fails_the_probe_with_an_error_node_and_closed() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let missing = rig.dir.path().join("missing.img");
    let spec = rig.attach(fe, DEVID, &missing, "w");
    assert_eq!(rig.state(&spec.backend_dir()), "6");
    let error = rig.backend_error(&spec).unwrap();
    assert!(error.starts_with("2 ") && error.contains("missing.img"), "{error}");
    assert!(rig.front(fe).info(DEVID).is_none());
}
