//! The stepped world (`xenstored::testing`) seen through xenbus's
//! connection seam: each request runs the world until it is idle.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use xenbus::Conn;
use xenstore::{Op, Reply, Request, Store, WatchEvent};
use xenstored::testing::{ClientId, World};

/// The world, shared by every connection of a test.
pub type Shared = Rc<RefCell<World>>;

/// One client of the world as a xenbus [`Conn`].
pub struct WorldConn {
    world: Shared,
    pub id: ClientId,
    events: RefCell<VecDeque<WatchEvent>>,
}

struct WorldTx<'a> {
    conn: &'a WorldConn,
    tx_id: u32,
}

impl WorldConn {
    pub fn new(world: &Shared, id: ClientId) -> WorldConn {
        WorldConn { world: Rc::clone(world), id, events: RefCell::new(VecDeque::new()) }
    }

    fn call(&self, tx_id: u32, request: &Request<'_>) -> Result<Reply, xenstore::Error> {
        let mut payload = Vec::new();
        request.encode_payload(&mut payload);
        let reply = self.world.borrow_mut().call_in(self.id, tx_id, request.op(), &payload)?;
        xenstore::core::decode_reply(request.op(), &reply)
    }

    fn call_raw(&self, tx_id: u32, op: Op, payload: &[u8]) -> Result<Vec<u8>, xenstore::Error> {
        self.world.borrow_mut().call_in(self.id, tx_id, op, payload)
    }
}

impl Store for WorldConn {
    fn request(&self, request: &Request<'_>) -> Result<Reply, xenstore::Error> {
        self.call(0, request)
    }

    fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, xenstore::Error> {
        self.call_raw(0, op, payload)
    }
}

impl Store for WorldTx<'_> {
    fn request(&self, request: &Request<'_>) -> Result<Reply, xenstore::Error> {
        self.conn.call(self.tx_id, request)
    }

    fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, xenstore::Error> {
        self.conn.call_raw(self.tx_id, op, payload)
    }
}

impl Conn for WorldConn {
    fn store(&self) -> &dyn Store {
        self
    }

    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
    ) -> Result<(), xenstore::Error> {
        for attempt in 0.. {
            let Reply::TransactionStart(tx_id) = self.call(0, &Request::TransactionStart)? else {
                panic!("TRANSACTION_START answered something else")
            };
            let result = match body(&WorldTx { conn: self, tx_id }) {
                Ok(()) => self.call(tx_id, &Request::TransactionEnd { commit: true }).map(drop),
                Err(err) => {
                    let _ = self.call(tx_id, &Request::TransactionEnd { commit: false });
                    Err(err)
                }
            };
            match result {
                Err(err) if err.is_eagain() && attempt < 16 => continue,
                other => return other,
            }
        }
        unreachable!()
    }

    fn watch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.world.borrow_mut().watch(self.id, path, token).map(drop)
    }

    fn unwatch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.call(0, &Request::Unwatch { path, token: token.as_bytes() }).map(drop)
    }

    fn next_event(&self, timeout: Option<Duration>) -> Option<WatchEvent> {
        let mut events = self.events.borrow_mut();
        if events.is_empty() {
            let mut world = self.world.borrow_mut();
            world.run();
            events.extend(world.take_events(self.id));
        }
        let event = events.pop_front();
        if event.is_none() {
            if let Some(timeout) = timeout {
                std::thread::sleep(timeout);
            }
        }
        event
    }
}
