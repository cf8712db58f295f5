//! The stepped world (`xenstored::testing`) seen through xenbus's
//! connection seam, the example drivers, and a world with domains laid
//! out as libxl lays them out.

#![allow(dead_code)]

pub mod demo;
pub mod threaded;
pub mod world_conn;

use std::cell::RefCell;
use std::rc::Rc;

pub use world_conn::{write_home, Shared, WorldConn};
use xenbus::Conn;
use xenstore::{ErrorCode, Store};
use xenstored::testing::World;

/// A world with dom0 and guests whose homes are laid out as libxl lays
/// them out (the parts xenbus uses).
pub struct Host {
    pub world: Shared,
    /// The toolstack's own dom0 connection.
    pub toolstack: WorldConn,
}

impl Host {
    pub fn new() -> Host {
        let world = Rc::new(RefCell::new(World::new()));
        let id = world.borrow_mut().dom0();
        let toolstack = WorldConn::new(&world, id);
        toolstack.mkdir("/local/domain/0/backend").unwrap();
        Host { world, toolstack }
    }

    /// A new dom0 connection.
    pub fn dom0(&self) -> WorldConn {
        let id = self.world.borrow_mut().dom0();
        WorldConn::new(&self.world, id)
    }

    /// Creates and introduces a guest, writes its home as libxl does
    /// (read-only to it; `device` read-only, `error` and `data` its own)
    /// and returns its domid and a connection on its ring.
    pub fn guest(&self, name: &str) -> (u16, WorldConn) {
        let id = self.world.borrow_mut().create_guest(name);
        let reply = self.world.borrow_mut().introduce(id).unwrap();
        assert_eq!(reply, b"OK\0");
        let domid = self.world.borrow().domid(id);
        write_home(&self.toolstack, domid);
        (domid, WorldConn::new(&self.world, id))
    }
}

/// Polls every bus until none has anything left to handle (bounded).
pub fn settle(buses: &mut [&mut dyn Pump]) -> usize {
    for round in 0..200 {
        let mut handled = 0;
        for bus in buses.iter_mut() {
            handled += bus.pump();
        }
        if handled == 0 {
            return round;
        }
    }
    panic!("the buses are still busy after 200 rounds");
}

/// A bus that can be polled without knowing its connection type.
pub trait Pump {
    fn pump(&mut self) -> usize;
}

impl<C: Conn> Pump for xenbus::Bus<C> {
    fn pump(&mut self) -> usize {
        self.poll(None).expect("polling a bus")
    }
}

/// The error code of a failed store operation.
pub fn code<T: std::fmt::Debug>(result: Result<T, xenstore::Error>) -> Option<ErrorCode> {
    result.expect_err("expected an error").code()
}

/// The state a `state` node holds, as text.
pub fn state_of(store: &dyn Store, dir: &str) -> String {
    String::from_utf8(store.read(&format!("{dir}/state")).unwrap()).unwrap()
}
