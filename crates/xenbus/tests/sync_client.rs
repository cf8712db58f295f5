//! The blocking flavour end to end: `SyncConn` over `xenstore::Client`
//! sockets to the real server (run in a thread of its own), a backend bus
//! and a frontend bus each in its own thread, and the toolstack helpers
//! waiting for real.

mod support;

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use support::demo::{log, DemoBack, DemoFront};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::{Bus, Error, SyncConn, XenbusState};
use xenstore::transport::UnixSocket;
use xenstore::{Client, Options, Store};
use xenstored::testing::World;

/// The server in a thread, `n` dom0 sockets to it, and introduced guest
/// domains (permissions may only name domains that exist).
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    sockets: Vec<UnixStream>,
    guests: Vec<u16>,
}

impl Server {
    fn start(n: usize, guests: usize) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let running = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut world = World::new();
            let mut sockets = Vec::new();
            for _ in 0..n {
                let (ours, theirs) = UnixStream::pair().unwrap();
                world.server.adopt_socket(theirs).unwrap();
                sockets.push(ours);
            }
            let mut domids = Vec::new();
            for i in 0..guests {
                let guest = world.create_guest(&format!("guest{i}"));
                world.introduce(guest).unwrap();
                domids.push(world.domid(guest));
            }
            tx.send((sockets, domids)).unwrap();
            while !running.load(Ordering::Relaxed) {
                if !world.round() {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let (sockets, guests) = rx.recv().unwrap();
        Server { stop, threads: vec![thread], sockets, guests }
    }

    fn conn(&mut self) -> SyncConn {
        let socket = self.sockets.pop().expect("a socket left");
        SyncConn::new(Client::with_transport(Box::new(UnixSocket::from_stream(socket)), Options::default()).unwrap())
    }

    /// Runs a bus in a thread until the server stops.
    fn run_bus(&mut self, make: impl FnOnce(SyncConn) -> Box<dyn FnMut() + 'static> + Send + 'static) {
        let conn = self.conn();
        let stop = Arc::clone(&self.stop);
        self.threads.push(thread::spawn(move || {
            let mut poll = make(conn);
            while !stop.load(Ordering::Relaxed) {
                poll();
            }
        }));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

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
