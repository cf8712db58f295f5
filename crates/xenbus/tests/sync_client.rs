//! The blocking flavour end to end: `SyncConn` over `xenstore::Client`
//! sockets to the real server (run in a thread of its own), a backend bus
//! and a frontend bus each in its own thread, and the toolstack helpers
//! waiting for real.

mod support;

use std::time::Duration;

use support::demo::{log, DemoBack, DemoFront};
use support::threaded::Server;
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::{Bus, Error, XenbusState};
use xenstore::Store;

#[test]
fn sync_buses_in_threads_connect_and_the_toolstack_detaches() {
    let mut server = Server::start(3, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    server.run_bus(|conn| {
        let log = log();
        let mut bus = Bus::backend(conn, 0, "demo", move |_| DemoBack { sectors: 512, log: log.clone() });
        bus.start().unwrap();
        Box::new(move || {
            bus.poll(Some(Duration::from_millis(10))).unwrap();
        })
    });
    server.run_bus(move |conn| {
        let log = log();
        let mut bus = Bus::frontend(conn, fe, "demo", move |_| DemoFront {
            published: XenbusState::Initialised,
            grant: 40,
            sectors: 0,
            log: log.clone(),
        });
        bus.start().unwrap();
        Box::new(move || {
            bus.poll(Some(Duration::from_millis(10))).unwrap();
        })
    });
    let spec = DeviceSpec::new("demo", 3, fe, 0);
    toolstack::attach(&toolstack, &spec).unwrap();
    let wait = Duration::from_secs(10);
    toolstack::wait_for_state(&toolstack, &spec.backend_dir(), XenbusState::Connected, wait).unwrap();
    toolstack::wait_for_state(&toolstack, &spec.frontend_dir(), XenbusState::Connected, wait).unwrap();
    let client = toolstack.client();
    assert_eq!(client.read(&format!("{}/ring-ref", spec.frontend_dir())).unwrap(), b"41");
    assert_eq!(client.read(&format!("{}/sectors", spec.backend_dir())).unwrap(), b"512");
    toolstack::detach(&toolstack, &spec, wait).unwrap();
    assert!(!client.exists(&spec.frontend_dir()).unwrap());
    assert!(!client.exists(&spec.backend_dir()).unwrap());
}

#[test]
fn sync_detach_without_a_backend_times_out() {
    let mut server = Server::start(1, 1);
    let toolstack = server.conn();
    let spec = DeviceSpec::new("demo", 0, server.guests[0], 0);
    toolstack::attach(&toolstack, &spec).unwrap();
    let err = toolstack::detach(&toolstack, &spec, Duration::from_millis(100)).unwrap_err();
    assert!(matches!(err, Error::Timeout { last: Some(XenbusState::Closing), .. }), "{err:?}");
    assert!(toolstack.client().exists(&spec.backend_dir()).unwrap());
}
