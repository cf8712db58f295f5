//! The server of the stepped world run in a thread of its own, for the
//! blocking and async clients, which wait for their replies.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use xenbus::SyncConn;
use xenstore::transport::UnixSocket;
use xenstore::{Client, Options};
use xenstored::testing::World;

/// The server in a thread, `n` dom0 sockets to it, and introduced guest
/// domains (permissions may only name domains that exist).
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub sockets: Vec<UnixStream>,
    pub guests: Vec<u16>,
}

impl Server {
    pub fn start(n: usize, guests: usize) -> Server {
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

    pub fn conn(&mut self) -> SyncConn {
        let socket = self.sockets.pop().expect("a socket left");
        SyncConn::new(Client::with_transport(Box::new(UnixSocket::from_stream(socket)), Options::default()).unwrap())
    }

    /// Runs a bus in a thread until the server stops.
    pub fn run_bus(&mut self, make: impl FnOnce(SyncConn) -> Box<dyn FnMut() + 'static> + Send + 'static) {
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

impl Server {
    /// A raw dom0 socket (for the async client).
    pub fn socket(&mut self) -> UnixStream {
        self.sockets.pop().expect("a socket left")
    }
}
