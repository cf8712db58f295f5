//! A frontend in a guest and a backend in dom0 (or a driver domain), with
//! the real daemon in the stepped world: the handshake, closing,
//! reconnecting, backend restarts, removal under a switch, stale
//! other-end events and fatal errors.

mod support;

use std::time::Duration;

use support::demo::{entries, log, DemoBack, DemoFront, Log};
use support::{settle, state_of, Host, WorldConn};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::{Bus, Conn, Error, XenbusState};
use xenstore::Store;

struct Setup {
    host: Host,
    fe_dom: u16,
    spec: DeviceSpec,
    fe: Bus<WorldConn>,
    be: Bus<WorldConn>,
    log: Log,
}

impl Setup {
    fn fe_dir(&self) -> String {
        self.spec.frontend_dir()
    }

    fn be_dir(&self) -> String {
        self.spec.backend_dir()
    }

    fn settle(&mut self) {
        settle(&mut [&mut self.fe, &mut self.be]);
    }

    fn states(&self) -> (String, String) {
        let store = self.host.toolstack.store();
        (state_of(store, &self.fe_dir()), state_of(store, &self.be_dir()))
    }
}

fn backend_bus(host: &Host, log: &Log) -> Bus<WorldConn> {
    let log = log.clone();
    let mut bus = Bus::backend(host.dom0(), 0, "demo", move |_| DemoBack { sectors: 2048, log: log.clone() });
    bus.start().unwrap();
    bus
}

/// A guest frontend and a dom0 backend, attached and settled.
fn connected(published: XenbusState) -> Setup {
    let host = Host::new();
    let (fe_dom, fe_conn) = host.guest("guest");
    let log = log();
    let be = backend_bus(&host, &log);
    let flog = log.clone();
    let mut fe = Bus::frontend(fe_conn, fe_dom, "demo", move |_| DemoFront {
        published,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    fe.start().unwrap();
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let mut setup = Setup { host, fe_dom, spec, fe, be, log };
    setup.settle();
    setup
}

#[test]
fn netfront_style_frontend_and_backend_reach_connected() {
    let s = connected(XenbusState::Connected);
    assert_eq!(s.states(), ("4".into(), "4".into()));
    assert_eq!(entries(&s.log, "fe connect"), ["fe connect 1"]);
    assert_eq!(entries(&s.log, "be connect"), ["be connect 1 7"]);
    assert_eq!(entries(&s.log, "fe backend-connected"), ["fe backend-connected 2048"]);
    let store = s.host.toolstack.store();
    assert_eq!(store.read(&format!("{}/feature-demo", s.be_dir())).unwrap(), b"1");
    assert_eq!(s.fe.device(&s.fe_dir()).unwrap().state(), XenbusState::Connected);
    assert_eq!(s.be.device(&s.be_dir()).unwrap().state(), XenbusState::Connected);
}

#[test]
fn blkfront_style_frontend_goes_through_initialised() {
    let host = Host::new();
    let (fe_dom, fe_conn) = host.guest("guest");
    let log = log();
    let mut be = backend_bus(&host, &log);
    let flog = log.clone();
    let mut fe = Bus::frontend(fe_conn, fe_dom, "demo", move |_| DemoFront {
        published: XenbusState::Initialised,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    fe.start().unwrap();
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    // Step by step: the backend probes and waits; the frontend publishes
    // and says Initialised; the backend connects; the frontend follows.
    be.poll(None).unwrap();
    assert_eq!(state_of(host.toolstack.store(), &spec.backend_dir()), "2");
    fe.poll(None).unwrap();
    assert_eq!(state_of(host.toolstack.store(), &spec.frontend_dir()), "3");
    be.poll(None).unwrap();
    assert_eq!(state_of(host.toolstack.store(), &spec.backend_dir()), "4");
    fe.poll(None).unwrap();
    assert_eq!(state_of(host.toolstack.store(), &spec.frontend_dir()), "4");
    assert_eq!(entries(&log, "fe backend-connected"), ["fe backend-connected 2048"]);
}

#[test]
fn a_backend_bus_serving_one_frontend_domain_leaves_the_others_devices_alone() {
    let host = Host::new();
    let log = log();
    let (mine, mine_conn) = host.guest("mine");
    let (other, _other_conn) = host.guest("other");
    let blog = log.clone();
    let mut be = Bus::backend(host.dom0(), 0, "demo", move |_| DemoBack { sectors: 2048, log: blog.clone() })
        .serving_frontend(mine);
    assert_eq!(be.watched(), format!("/local/domain/0/backend/demo/{mine}"));
    be.start().unwrap();
    let flog = log.clone();
    let mut fe = Bus::frontend(mine_conn, mine, "demo", move |_| DemoFront {
        published: XenbusState::Initialised,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    fe.start().unwrap();
    let theirs = DeviceSpec::new("demo", 0, other, 0);
    toolstack::attach(&host.toolstack, &theirs).unwrap();
    let spec = DeviceSpec::new("demo", 0, mine, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    settle(&mut [&mut fe, &mut be]);
    let store = host.toolstack.store();
    assert_eq!(state_of(store, &spec.backend_dir()), "4");
    assert_eq!(state_of(store, &theirs.backend_dir()), "1", "another backend's device is not touched");
    assert_eq!(be.devices().collect::<Vec<_>>(), [spec.backend_dir()]);

    // The other domain's devices going away is no event of this bus.
    host.toolstack.rm(&format!("/local/domain/0/backend/demo/{other}")).unwrap();
    assert_eq!(be.poll(None).unwrap(), 0);
    // Its own domain's directory going away drops its device.
    host.toolstack.rm(&format!("/local/domain/0/backend/demo/{mine}")).unwrap();
    be.poll(None).unwrap();
    assert!(be.devices().next().is_none());
}

#[test]
fn a_repeated_backend_connected_makes_the_frontend_reread_its_details() {
    let mut s = connected(XenbusState::Initialised);
    let be_dir = s.be_dir();
    s.host.toolstack.write(&format!("{be_dir}/sectors"), b"4096").unwrap();
    s.host.toolstack.write(&format!("{be_dir}/state"), b"4").unwrap();
    s.settle();
    assert_eq!(entries(&s.log, "fe backend-connected"), ["fe backend-connected 2048", "fe backend-connected 4096"]);
    assert_eq!(s.states(), ("4".into(), "4".into()));
}

#[test]
fn frontend_close_closes_both_ends_and_a_reconnect_connects_again() {
    let mut s = connected(XenbusState::Connected);
    let fe_dir = s.fe_dir();
    s.fe.set_state(&fe_dir, XenbusState::Closing).unwrap();
    s.settle();
    assert_eq!(s.states(), ("6".into(), "6".into()));
    assert_eq!(entries(&s.log, "fe disconnect"), ["fe disconnect 1"]);
    assert_eq!(entries(&s.log, "be disconnect"), ["be disconnect"]);
    // online is still 1: the backend stays for a reconnect.
    assert!(s.be.device(&s.be_dir()).is_some());
    s.fe.set_state(&fe_dir, XenbusState::Initialising).unwrap();
    s.settle();
    assert_eq!(s.states(), ("4".into(), "4".into()));
    assert_eq!(entries(&s.log, "fe connect"), ["fe connect 1", "fe connect 2"]);
    assert_eq!(entries(&s.log, "be connect"), ["be connect 1 7", "be connect 2 7"]);
}

#[test]
fn a_reconfiguration_round_trip_ends_connected_on_both_ends() {
    let mut s = connected(XenbusState::Connected);
    let fe_dir = s.fe_dir();
    s.fe.set_state(&fe_dir, XenbusState::Reconfiguring).unwrap();
    s.be.poll(None).unwrap();
    assert_eq!(s.states(), ("7".into(), "8".into()));
    s.settle();
    assert_eq!(s.states(), ("4".into(), "4".into()));
    assert!(entries(&s.log, "fe disconnect").is_empty() && entries(&s.log, "be disconnect").is_empty());
    assert_eq!(entries(&s.log, "be connect").len(), 1, "a reconfiguration is no reconnect");
}

#[test]
fn detach_closes_the_device_and_removes_both_directories() {
    let mut s = connected(XenbusState::Connected);
    toolstack::begin_detach(&s.host.toolstack, &s.spec).unwrap();
    s.settle();
    assert_eq!(s.states(), ("6".into(), "6".into()));
    assert!(s.be.device(&s.be_dir()).is_none(), "unregistered: online is 0");
    assert_eq!(entries(&s.log, "be remove"), ["be remove"]);
    toolstack::detach(&s.host.toolstack, &s.spec, Duration::from_secs(1)).unwrap();
    s.settle();
    let store = s.host.toolstack.store();
    assert!(!store.exists(&s.fe_dir()).unwrap());
    assert!(!store.exists(&s.be_dir()).unwrap());
    assert!(s.fe.device(&s.fe_dir()).is_none());
    assert!(s.fe.devices().next().is_none() && s.be.devices().next().is_none());
}

#[test]
fn detach_of_a_device_whose_frontend_never_started_closes_a_qemu_style_backend_at_once() {
    let host = Host::new();
    let (fe_dom, _fe_conn) = host.guest("guest");
    let log = log();
    let blog = log.clone();
    let mut be = Bus::backend(host.dom0(), 0, "demo", move |_| DemoBack { sectors: 2048, log: blog.clone() })
        .closing_unanswered();
    be.start().unwrap();
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    be.poll(None).unwrap();
    let store = host.toolstack.store();
    assert_eq!(state_of(store, &spec.backend_dir()), "2", "waiting for a frontend that never comes");
    // libxl's detach: online 0 and the backend's Closing, then a wait for
    // Closed that no frontend will bring (QEMU's xen-bus closes at once).
    toolstack::begin_detach(&host.toolstack, &spec).unwrap();
    be.poll(None).unwrap();
    assert_eq!(state_of(store, &spec.backend_dir()), "6");
    assert!(be.device(&spec.backend_dir()).is_none(), "unregistered: online is 0");
    assert_eq!(entries(&log, "be remove"), ["be remove"]);
    assert!(entries(&log, "be disconnect").is_empty(), "it never connected");

    // Without it (Linux's backends), the backend waits for the frontend.
    let mut linux_style = backend_bus(&host, &log);
    let spec = DeviceSpec::new("demo", 1, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    linux_style.poll(None).unwrap();
    toolstack::begin_detach(&host.toolstack, &spec).unwrap();
    linux_style.poll(None).unwrap();
    assert_eq!(state_of(store, &spec.backend_dir()), "5", "left for a frontend to answer");
}

#[test]
fn detach_with_no_backend_running_times_out_and_says_where_it_stopped() {
    let host = Host::new();
    let (fe_dom, _fe) = host.guest("guest");
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let err = toolstack::detach(&host.toolstack, &spec, Duration::from_millis(30)).unwrap_err();
    match &err {
        Error::Timeout { path, wanted, last, waited } => {
            assert_eq!(path, &format!("{}/state", spec.backend_dir()));
            assert_eq!(*wanted, XenbusState::Closed);
            assert_eq!(*last, Some(XenbusState::Closing));
            assert!(*waited >= Duration::from_millis(30));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("Closing (5)"), "{err}");
    assert!(host.toolstack.exists(&spec.frontend_dir()).unwrap(), "nothing removed on a timeout");
    assert_eq!(host.toolstack.read(&format!("{}/online", spec.backend_dir())).unwrap(), b"0");
}

#[test]
fn a_restarted_backend_walks_back_to_initwait_and_the_frontend_reconnects() {
    let mut s = connected(XenbusState::Connected);
    // The backend process dies (its bus is gone) and a new one starts.
    let log2 = log();
    s.be = backend_bus(&s.host, &log2);
    s.settle();
    assert_eq!(s.states(), ("4".into(), "4".into()));
    assert_eq!(entries(&s.log, "fe connect"), ["fe connect 1", "fe connect 2"]);
    assert_eq!(entries(&s.log, "fe disconnect"), ["fe disconnect 1"]);
    assert_eq!(entries(&log2, "be connect"), ["be connect 2 7"], "the new backend mapped the new ring");
    assert!(entries(&log2, "be disconnect").is_empty(), "the new driver never connected before");
}

#[test]
fn a_vanished_backend_closes_the_frontend_which_reconnects_when_it_returns() {
    let mut s = connected(XenbusState::Connected);
    let be_dir = s.be_dir();
    s.host.toolstack.rm(&be_dir).unwrap();
    s.settle();
    assert_eq!(state_of(s.host.toolstack.store(), &s.fe_dir()), "6");
    assert_eq!(entries(&s.log, "fe disconnect"), ["fe disconnect 1"]);
    assert!(s.be.device(&be_dir).is_none());
    // The toolstack writes the backend directory again; the frontend's is untouched.
    let ts = &s.host.toolstack;
    ts.mkdir(&be_dir).unwrap();
    let perms = xenstore::PermList::parse_nul_list(format!("n0\0r{}\0", s.fe_dom).as_bytes()).unwrap();
    ts.set_perms(&be_dir, &perms).unwrap();
    let fe_dom = s.fe_dom.to_string();
    let fe_dir = s.fe_dir();
    for (key, value) in [("frontend", fe_dir.as_str()), ("frontend-id", &fe_dom), ("online", "1"), ("state", "1")] {
        ts.write(&format!("{be_dir}/{key}"), value.as_bytes()).unwrap();
    }
    s.settle();
    assert_eq!(s.states(), ("4".into(), "4".into()));
    assert_eq!(entries(&s.log, "fe connect"), ["fe connect 1", "fe connect 2"]);
}

#[test]
fn removing_the_frontend_directory_drops_the_device_and_writes_nothing_for_it() {
    let mut s = connected(XenbusState::Connected);
    let fe_dir = s.fe_dir();
    s.host.toolstack.rm(&fe_dir).unwrap();
    // The backend closes before the frontend bus sees the removal: the
    // frontend's switch to Closed finds no state node.
    s.host.toolstack.write(&format!("{}/state", s.be_dir()), b"5").unwrap();
    s.fe.poll(None).unwrap();
    assert!(!s.host.toolstack.exists(&fe_dir).unwrap(), "the directory was not re-created");
    assert!(s.fe.device(&fe_dir).is_none());
    let error_node = format!("/local/domain/{}/error/device/demo/0/error", s.fe_dom);
    assert!(!s.host.toolstack.exists(&error_node).unwrap(), "a removed device is no error");
}

/// A connection whose first transaction body is followed by someone else's
/// removal of a directory (between the body and the commit).
struct RemovedMidSwitch<'a> {
    inner: &'a WorldConn,
    other: &'a WorldConn,
    dir: String,
    attempts: std::cell::Cell<u32>,
}

impl Conn for RemovedMidSwitch<'_> {
    fn store(&self) -> &dyn Store {
        self.inner.store()
    }
    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
    ) -> Result<(), xenstore::Error> {
        self.inner.transaction(&mut |tx| {
            body(tx)?;
            self.attempts.set(self.attempts.get() + 1);
            if self.attempts.get() == 1 {
                self.other.rm(&self.dir)?;
            }
            Ok(())
        })
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.inner.watch(path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.inner.unwatch(path, token)
    }
    fn next_event(&self, timeout: Option<Duration>) -> Option<xenstore::WatchEvent> {
        self.inner.next_event(timeout)
    }
}

#[test]
fn switch_state_retries_after_a_removal_mid_transaction_and_does_not_recreate() {
    let host = Host::new();
    let (fe_dom, fe_conn) = host.guest("guest");
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let conn = RemovedMidSwitch {
        inner: &fe_conn,
        other: &host.toolstack,
        dir: spec.frontend_dir(),
        attempts: std::cell::Cell::new(0),
    };
    let switched = xenbus::switch::switch_state(&conn, &spec.frontend_dir(), XenbusState::Connected).unwrap();
    assert_eq!(switched, xenbus::switch::Switched::Gone);
    assert_eq!(conn.attempts.get(), 2, "the first commit failed (EAGAIN); the retry saw no node");
    assert!(!host.toolstack.exists(&spec.frontend_dir()).unwrap());
}

/// A dom0 connection that, once armed, lets someone else remove `dir`
/// right after its next transaction body (so that transaction's commit
/// fails and its retry finds the directory gone).
struct Armed {
    inner: WorldConn,
    other: WorldConn,
    dir: String,
    armed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Conn for Armed {
    fn store(&self) -> &dyn Store {
        self.inner.store()
    }
    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
    ) -> Result<(), xenstore::Error> {
        self.inner.transaction(&mut |tx| {
            body(tx)?;
            if self.armed.replace(false) {
                self.other.rm(&self.dir)?;
            }
            Ok(())
        })
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.inner.watch(path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.inner.unwatch(path, token)
    }
    fn next_event(&self, timeout: Option<Duration>) -> Option<xenstore::WatchEvent> {
        self.inner.next_event(timeout)
    }
}

/// dom0 could re-create the directory (it may write anywhere): the
/// backend's switch must see the removal inside its transaction.
#[test]
fn a_backend_directory_removed_mid_switch_is_not_recreated_and_the_device_leaves_the_bus() {
    let host = Host::new();
    let (fe_dom, fe_conn) = host.guest("guest");
    let log = log();
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    let armed = std::rc::Rc::new(std::cell::Cell::new(false));
    let conn = Armed { inner: host.dom0(), other: host.dom0(), dir: spec.backend_dir(), armed: armed.clone() };
    let blog = log.clone();
    let mut be = Bus::backend(conn, 0, "demo", move |_| DemoBack { sectors: 8, log: blog.clone() });
    be.start().unwrap();
    let flog = log.clone();
    let mut fe = Bus::frontend(fe_conn, fe_dom, "demo", move |_| DemoFront {
        published: XenbusState::Connected,
        grant: 0,
        sectors: 0,
        log: flog.clone(),
    });
    fe.start().unwrap();
    toolstack::attach(&host.toolstack, &spec).unwrap();
    settle(&mut [&mut fe, &mut be]);
    assert_eq!(state_of(&host.toolstack, &spec.backend_dir()), "4");
    // The frontend closes; the backend's switch to Closing races with the
    // toolstack removing the backend directory.
    fe.set_state(&spec.frontend_dir(), XenbusState::Closing).unwrap();
    armed.set(true);
    be.poll(None).unwrap();
    assert!(!armed.get(), "the removal happened inside the switch");
    assert!(!host.toolstack.exists(&spec.backend_dir()).unwrap(), "not re-created");
    assert!(be.device(&spec.backend_dir()).is_none());
    assert_eq!(entries(&log, "be disconnect"), ["be disconnect"]);
    assert_eq!(entries(&log, "be remove"), ["be remove"]);
    assert!(!host.toolstack.exists("/local/domain/0/error").unwrap(), "a removed device is no error");
}

#[test]
fn switch_state_writes_the_decimal_state_when_the_node_exists() {
    let host = Host::new();
    let (fe_dom, fe_conn) = host.guest("guest");
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    let switched = xenbus::switch::switch_state(&fe_conn, &spec.frontend_dir(), XenbusState::Reconfiguring).unwrap();
    assert_eq!(switched, xenbus::switch::Switched::Written);
    assert_eq!(state_of(host.toolstack.store(), &spec.frontend_dir()), "7");
}

#[test]
fn events_of_an_old_backend_are_ignored_after_the_backend_node_changes() {
    let mut s = connected(XenbusState::Connected);
    let old_be = s.be_dir();
    // A second backend directory, not on the backend bus, connected.
    let new_be = format!("/local/domain/0/backend/other/{}/0", s.fe_dom);
    let ts = &s.host.toolstack;
    for (key, value) in [("state", "4"), ("sectors", "999"), ("frontend", s.fe_dir().as_str())] {
        ts.write(&format!("{new_be}/{key}"), value.as_bytes()).unwrap();
    }
    let perms = xenstore::PermList::parse_nul_list(format!("n0\0r{}\0", s.fe_dom).as_bytes()).unwrap();
    for key in ["", "/state", "/sectors", "/frontend"] {
        ts.set_perms(&format!("{new_be}{key}"), &perms).unwrap();
    }
    ts.write(&format!("{}/backend", s.fe_dir()), new_be.as_bytes()).unwrap();
    // The old backend closes: two events for the old other end, queued
    // before the frontend looks (the second arrives after the frontend
    // followed the new `backend` node).
    ts.write(&format!("{old_be}/state"), b"5").unwrap();
    ts.write(&format!("{old_be}/state"), b"6").unwrap();
    s.fe.poll(None).unwrap();
    let fe_dir = s.fe_dir();
    let device = s.fe.device(&fe_dir).unwrap();
    assert_eq!(device.otherend().unwrap().dir, new_be);
    assert_eq!(state_of(s.host.toolstack.store(), &fe_dir), "4", "the old backend's Closing was not acted on");
    assert_eq!(entries(&s.log, "fe backend-connected"), ["fe backend-connected 2048", "fe backend-connected 999"]);
    // Later changes of the old backend are not even delivered to the device.
    s.host.toolstack.write(&format!("{old_be}/state"), b"1").unwrap();
    s.fe.poll(None).unwrap();
    assert_eq!(state_of(s.host.toolstack.store(), &fe_dir), "4");
    assert!(entries(&s.log, "fe disconnect").is_empty());
}

#[test]
fn an_illegal_transition_is_written_to_the_error_node_and_closes_the_device() {
    let mut s = connected(XenbusState::Connected);
    let fe_dir = s.fe_dir();
    let err = s.fe.set_state(&fe_dir, XenbusState::Reconfigured).unwrap_err();
    assert!(
        matches!(err, Error::Illegal(t) if t.from == XenbusState::Connected && t.to == XenbusState::Reconfigured),
        "{err:?}"
    );
    let error_node = format!("/local/domain/{}/error/device/demo/0/error", s.fe_dom);
    assert_eq!(
        String::from_utf8(s.host.toolstack.read(&error_node).unwrap()).unwrap(),
        "22 illegal frontend transition from Connected (4) to Reconfigured (8)"
    );
    assert_eq!(state_of(s.host.toolstack.store(), &fe_dir), "5");
    assert_eq!(entries(&s.log, "fe disconnect"), ["fe disconnect 1"]);
    // The backend follows the frontend down.
    s.settle();
    assert_eq!(state_of(s.host.toolstack.store(), &s.be_dir()), "6");
}

/// What was logged while `f` ran.
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
fn an_illegal_transition_is_logged_with_the_device_and_errno() {
    let mut s = connected(XenbusState::Connected);
    let fe_dir = s.fe_dir();
    let log = logged(|| {
        let _ = s.fe.set_state(&fe_dir, XenbusState::InitWait);
    });
    let line = log.lines().find(|l| l.contains("xenbus device error")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR") && line.contains(&fe_dir) && line.contains("errno=22"), "{line}");
    assert!(line.contains("illegal frontend transition from Connected (4) to InitWait (2)"), "{line}");
}

#[test]
fn a_backend_state_that_is_not_a_number_is_fatal_to_the_frontend() {
    let mut s = connected(XenbusState::Connected);
    s.host.toolstack.write(&format!("{}/state", s.be_dir()), b"4abc").unwrap();
    s.fe.poll(None).unwrap();
    let error_node = format!("/local/domain/{}/error/device/demo/0/error", s.fe_dom);
    let text = String::from_utf8(s.host.toolstack.read(&error_node).unwrap()).unwrap();
    assert!(text.starts_with("22 ") && text.contains("4abc"), "{text}");
    assert_eq!(state_of(s.host.toolstack.store(), &s.fe_dir()), "5");
}

#[test]
fn a_failing_backend_connect_is_fatal_to_the_backend() {
    let host = Host::new();
    let (fe_dom, fe_conn) = host.guest("guest");
    let log = log();
    let mut be = backend_bus(&host, &log);
    // A frontend that publishes a ring-ref the backend cannot parse.
    struct BadFront;
    impl xenbus::Frontend for BadFront {
        fn connect(&mut self, dev: &xenbus::DeviceCtx<'_>) -> Result<(), Error> {
            dev.publish(&[("ring-ref", &"lots"), ("event-channel", &7)])
        }
    }
    let mut fe = Bus::frontend(fe_conn, fe_dom, "demo", |_| BadFront);
    fe.start().unwrap();
    let spec = DeviceSpec::new("demo", 0, fe_dom, 0);
    toolstack::attach(&host.toolstack, &spec).unwrap();
    settle(&mut [&mut fe, &mut be]);
    let error_node = format!("/local/domain/0/error/backend/demo/{fe_dom}/0/error");
    let text = String::from_utf8(host.toolstack.read(&error_node).unwrap()).unwrap();
    assert!(text.starts_with("22 ") && text.contains("ring-ref") && text.contains("lots"), "{text}");
    // The backend went Closing, the frontend closed, the backend closed.
    assert_eq!(state_of(host.toolstack.store(), &spec.backend_dir()), "6");
    assert_eq!(state_of(host.toolstack.store(), &spec.frontend_dir()), "6");
    assert!(entries(&log, "be connect").is_empty());
}
