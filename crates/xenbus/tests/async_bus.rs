//! The async bus: `AsyncBus`es over tokio clients to the real server (in a
//! thread) add the devices the toolstack attaches and remove the ones it
//! detaches, by the sync bus's rules; with one `AsyncDevice` task per
//! added device, both ends connect, follow a detach, and a restarted
//! backend takes over a live device.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::threaded::Server;
use tokio::task::JoinSet;
use xenbus::tokio::{self as xtokio, AsyncBus, AsyncDevice, BusEvent, HookCall};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::{Error, Role, XenbusState};
use xenstore::tokio::AsyncClient;
use xenstore::{Options, Store};

const WAIT: Duration = Duration::from_secs(10);

fn async_client(server: &mut Server) -> Arc<AsyncClient> {
    let socket = server.socket();
    socket.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(socket).unwrap();
    Arc::new(AsyncClient::from_stream(stream, Options::default()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The bus's next event, bounded.
async fn next(bus: &mut AsyncBus) -> BusEvent {
    tokio::time::timeout(WAIT, bus.next()).await.expect("a bus event in time").unwrap()
}

/// No bus event within a short wait.
async fn quiet(bus: &mut AsyncBus) {
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(200), bus.next()).await {
        panic!("unexpected bus event {event:?}");
    }
}

fn added_dir(event: BusEvent) -> String {
    match event {
        BusEvent::Added { dir, .. } => dir,
        other => panic!("expected Added, got {other:?}"),
    }
}

fn removed(dir: String) -> BusEvent {
    BusEvent::Removed { dir }
}

#[test]
fn frontend_bus_adds_attached_devices_and_removes_detached_ones() {
    let mut server = Server::start(2, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    runtime().block_on(async {
        let client = async_client(&mut server);
        let specs = [DeviceSpec::new("demo", 0, fe, 0), DeviceSpec::new("demo", 1, fe, 0)];
        for spec in &specs {
            toolstack::attach(&toolstack, spec).unwrap();
        }
        let mut bus = AsyncBus::open(client, Role::Frontend, fe, "demo").await.unwrap();
        match next(&mut bus).await {
            BusEvent::Added { dir, state, otherend } => {
                assert_eq!(dir, specs[0].frontend_dir());
                assert_eq!(state, XenbusState::Initialising);
                assert_eq!(otherend.dir, specs[0].backend_dir());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(added_dir(next(&mut bus).await), specs[1].frontend_dir());
        toolstack::remove_dirs(&toolstack, &specs[0]).unwrap();
        assert_eq!(next(&mut bus).await, removed(specs[0].frontend_dir()));
        let late = DeviceSpec::new("demo", 2, fe, 0);
        toolstack::attach(&toolstack, &late).unwrap();
        assert_eq!(added_dir(next(&mut bus).await), late.frontend_dir());
        assert_eq!(bus.devices().collect::<Vec<_>>(), [specs[1].frontend_dir(), late.frontend_dir()]);
    });
}

#[test]
fn backend_bus_adds_attached_devices_and_removes_detached_ones() {
    let mut server = Server::start(2, 2);
    let (fe1, fe2) = (server.guests[0], server.guests[1]);
    let toolstack = server.conn();
    runtime().block_on(async {
        let client = async_client(&mut server);
        let mut bus = AsyncBus::open(client, Role::Backend, 0, "demo").await.unwrap();
        quiet(&mut bus).await;
        let specs = [
            DeviceSpec::new("demo", 0, fe1, 0),
            DeviceSpec::new("demo", 1, fe1, 0),
            DeviceSpec::new("demo", 0, fe2, 0),
        ];
        for spec in &specs {
            toolstack::attach(&toolstack, spec).unwrap();
            assert_eq!(added_dir(next(&mut bus).await), spec.backend_dir());
        }
        toolstack::remove_dirs(&toolstack, &specs[2]).unwrap();
        assert_eq!(next(&mut bus).await, removed(specs[2].backend_dir()));
        // A frontend domain's whole backend directory, as destroying it
        // removes: each of its devices, and only those.
        toolstack.client().rm(&format!("/local/domain/0/backend/demo/{fe1}")).unwrap();
        let mut gone = vec![next(&mut bus).await, next(&mut bus).await];
        gone.sort_by_key(|event| format!("{event:?}"));
        assert_eq!(gone, [removed(specs[0].backend_dir()), removed(specs[1].backend_dir())]);
        assert_eq!(bus.devices().count(), 0);
        quiet(&mut bus).await;
    });
}

#[test]
fn frontend_bus_does_not_probe_a_device_that_is_not_initialising() {
    let mut server = Server::start(2, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    runtime().block_on(async {
        let client = async_client(&mut server);
        let (closed, new) = (DeviceSpec::new("demo", 0, fe, 0), DeviceSpec::new("demo", 1, fe, 0));
        toolstack::attach(&toolstack, &closed).unwrap();
        toolstack.client().write(&format!("{}/state", closed.frontend_dir()), b"6").unwrap();
        toolstack::attach(&toolstack, &new).unwrap();
        let mut bus = AsyncBus::open(client, Role::Frontend, fe, "demo").await.unwrap();
        assert_eq!(added_dir(next(&mut bus).await), new.frontend_dir());
        // A write inside it looks at it again, and again does not take it.
        toolstack.client().write(&format!("{}/state", closed.frontend_dir()), b"4").unwrap();
        quiet(&mut bus).await;
    });
}

/// What the device tasks of both buses did: (device directory, what).
type Log = Arc<Mutex<Vec<(String, String)>>>;

fn logged(log: &Log, dir: &str) -> Vec<String> {
    log.lock().unwrap().iter().filter(|(d, _)| d == dir).map(|(_, what)| what.clone()).collect()
}

/// The usage pattern: one bus, one `AsyncDevice` task per added device,
/// aborted when its device is removed (dropping the bus task drops the
/// `JoinSet`, which aborts every device task: a backend process dying).
async fn run_bus(client: Arc<AsyncClient>, role: Role, domid: u16, log: Log) -> Result<(), Error> {
    let mut bus = AsyncBus::open(client.clone(), role, domid, "demo").await?;
    let mut tasks = JoinSet::new();
    let mut running = HashMap::new();
    loop {
        match bus.next().await? {
            BusEvent::Added { dir, .. } => {
                log.lock().unwrap().push((dir.clone(), "added".into()));
                let task = tasks.spawn(drive(client.clone(), role, dir.clone(), domid, log.clone()));
                running.insert(dir, task);
            }
            BusEvent::Removed { dir } => {
                log.lock().unwrap().push((dir.clone(), "removed".into()));
                if let Some(task) = running.remove(&dir) {
                    task.abort();
                }
            }
        }
    }
}

/// One device's driver: a frontend publishes a ring on Connect, a
/// backend maps it; each hook is logged.
async fn drive(client: Arc<AsyncClient>, role: Role, dir: String, domid: u16, log: Log) -> Result<(), Error> {
    let mut dev = AsyncDevice::open(client.clone(), role, &dir, domid, XenbusState::Initialised).await?;
    dev.start().await?;
    loop {
        let call = match dev.next().await {
            Ok(call) => call,
            Err(Error::Gone { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        log.lock().unwrap().push((dir.clone(), format!("{call:?}")));
        match (role, call) {
            (Role::Frontend, HookCall::Connect) => client.write(&format!("{dir}/ring-ref"), b"33").await?,
            (Role::Backend, HookCall::Connect) => {
                let ring = client.read(&format!("{}/ring-ref", dev.otherend().dir)).await?;
                client.write(&format!("{dir}/mapped"), &ring).await?;
            }
            (_, HookCall::Unregister) => return Ok(()),
            _ => {}
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn connected(client: &AsyncClient, spec: &DeviceSpec) {
    for dir in [spec.frontend_dir(), spec.backend_dir()] {
        xtokio::wait_for_state(client, &dir, XenbusState::Connected, WAIT).await.unwrap();
    }
}

#[test]
fn async_buses_connect_two_devices_and_follow_a_detach() {
    let mut server = Server::start(4, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    runtime().block_on(async {
        let (fe_client, be_client, check) =
            (async_client(&mut server), async_client(&mut server), async_client(&mut server));
        let log = Log::default();
        let back = tokio::spawn(run_bus(be_client, Role::Backend, 0, log.clone()));
        let front = tokio::spawn(run_bus(fe_client, Role::Frontend, fe, log.clone()));
        let specs = [DeviceSpec::new("demo", 0, fe, 0), DeviceSpec::new("demo", 1, fe, 0)];
        for spec in &specs {
            toolstack::attach(&toolstack, spec).unwrap();
        }
        for spec in &specs {
            connected(&check, spec).await;
            assert_eq!(check.read(&format!("{}/mapped", spec.backend_dir())).await.unwrap(), b"33");
        }
        // The toolstack detaches device 0: backend Closing, frontend
        // Closed, backend Closed and unregistered; then both directories go
        // and each bus removes its end.
        let (gone, kept) = (&specs[0], &specs[1]);
        toolstack::begin_detach(&toolstack, gone).unwrap();
        xtokio::wait_for_state(&check, &gone.backend_dir(), XenbusState::Closed, WAIT).await.unwrap();
        toolstack::remove_dirs(&toolstack, gone).unwrap();
        let ends = [gone.backend_dir(), gone.frontend_dir()];
        wait_until("both ends removed", || ends.iter().all(|dir| logged(&log, dir).last().unwrap() == "removed")).await;
        assert_eq!(logged(&log, &gone.backend_dir()), ["added", "Connect", "Disconnect", "Unregister", "removed"]);
        assert_eq!(logged(&log, &gone.frontend_dir()), ["added", "Connect", "PeerConnected", "Disconnect", "removed"]);
        // The other device is untouched.
        assert_eq!(logged(&log, &kept.backend_dir()), ["added", "Connect"]);
        assert_eq!(logged(&log, &kept.frontend_dir()), ["added", "Connect", "PeerConnected"]);
        connected(&check, kept).await;
        assert!(!back.is_finished() && !front.is_finished(), "the buses run on");
        back.abort();
        front.abort();
    });
}

#[test]
fn a_restarted_backend_bus_takes_over_an_online_device() {
    let mut server = Server::start(6, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    runtime().block_on(async {
        let (fe_client, check) = (async_client(&mut server), async_client(&mut server));
        let log = Log::default();
        let front = tokio::spawn(run_bus(fe_client, Role::Frontend, fe, log.clone()));
        let back = tokio::spawn(run_bus(async_client(&mut server), Role::Backend, 0, log.clone()));
        let spec = DeviceSpec::new("demo", 0, fe, 0);
        toolstack::attach(&toolstack, &spec).unwrap();
        connected(&check, &spec).await;
        // The backend process dies (its device tasks with it) and a new
        // one starts on a new connection: it finds the device Connected
        // and online, takes it, closes it, and the frontend reconnects.
        back.abort();
        let _ = back.await;
        let mut bus = AsyncBus::open(async_client(&mut server), Role::Backend, 0, "demo").await.unwrap();
        match next(&mut bus).await {
            BusEvent::Added { dir, state, .. } => {
                assert_eq!(dir, spec.backend_dir());
                assert_eq!(state, XenbusState::Connected);
            }
            other => panic!("{other:?}"),
        }
        drop(bus);
        let restarted = tokio::spawn(run_bus(async_client(&mut server), Role::Backend, 0, log.clone()));
        let be_dir = spec.backend_dir();
        wait_until("the new backend connects", || {
            logged(&log, &be_dir).iter().filter(|w| *w == "Connect").count() == 2
        })
        .await;
        connected(&check, &spec).await;
        let front_log = logged(&log, &spec.frontend_dir());
        assert_eq!(front_log.iter().filter(|w| *w == "Connect").count(), 2, "the frontend reconnected: {front_log:?}");
        assert!(!toolstack.client().exists(&format!("/local/domain/{fe}/error")).unwrap());
        restarted.abort();
        front.abort();
    });
}
