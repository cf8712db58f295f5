//! A guest ring and a fake xenstored serving it, in one process: a memfd
//! page mapped twice (one mapping per end) and two eventfds standing in for
//! the event channel, one per direction.

#![allow(dead_code)]

pub mod events;
pub mod server;

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::Duration;

use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use xen_platform::MappedPages;
use xenstore::transport::SharedRing;
use xenstore::{Client, Options};

pub use events::{Counter, EventFd, TestEvents};
pub use server::{FakeServer, ServerConfig};

/// The guest's port in these tests (any number does).
pub const PORT: u32 = 7;

/// One shared page, mappable any number of times.
pub fn shared_page() -> OwnedFd {
    let fd = memfd_create("xenstore-ring-test", MemfdFlags::CLOEXEC).unwrap();
    ftruncate(&fd, 4096).unwrap();
    fd
}

/// A ring transport and the fake server at its other end.
pub struct Setup {
    pub ring: SharedRing,
    pub server: FakeServer,
    /// Notifications the guest sent the server.
    pub to_server: Counter,
}

impl Setup {
    pub fn new(config: ServerConfig) -> Setup {
        let page = shared_page();
        let guest_map = MappedPages::map(std::os::fd::AsFd::as_fd(&page), 0, 1, true).unwrap();
        let server_map = MappedPages::map(std::os::fd::AsFd::as_fd(&page), 0, 1, true).unwrap();
        let to_guest = EventFd::new();
        let to_server = EventFd::new();
        let events = TestEvents::new(PORT, to_guest.clone(), to_server.clone());
        let counter = events.sent();
        // The server is up (features advertised) before the guest looks.
        let server = FakeServer::start(server_map, to_server, to_guest, config);
        let ring = SharedRing::new(guest_map, Box::new(events), PORT).unwrap();
        Setup { ring, server, to_server: counter }
    }

    /// A client over the ring.
    pub fn client(config: ServerConfig) -> (Client, FakeServer, Counter) {
        let setup = Setup::new(config);
        let client = Client::with_transport(Box::new(setup.ring), Options::default()).unwrap();
        (client, setup.server, setup.to_server)
    }
}

/// Runs `body` on another thread and fails the test if it takes longer
/// than `limit` (so a hang shows as a failure, not a stuck test run).
pub fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still blocked after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}
