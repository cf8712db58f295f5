//! The stepped world (`xenstored::testing`) seen through xenbus's
//! connection seam: each request runs the world until it is idle. Shared
//! by the tests of the crates whose drivers run over xenbus (blkif's
//! tests include this file by path).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use xenbus::Conn;
use xenstore::{Op, Reply, Request, Store, WatchEvent};
use xenstored::testing::{ClientId, World};

/// The world, shared by every connection of a test.
pub type Shared = Rc<RefCell<World>>;

/// One client of the world as a xenbus [`Conn`]: each request runs the
/// world until it is idle and returns the reply.
pub struct WorldConn {
    world: Shared,
    /// The world's client behind this connection.
    pub id: ClientId,
    events: RefCell<VecDeque<WatchEvent>>,
    /// Every request sent, in or out of a transaction (for tests that
    /// bound how many a step takes).
    sent: RefCell<Vec<Op>>,
}

struct WorldTx<'a> {
    conn: &'a WorldConn,
    tx_id: u32,
}

impl WorldConn {
    pub fn new(world: &Shared, id: ClientId) -> WorldConn {
        WorldConn { world: Rc::clone(world), id, events: RefCell::new(VecDeque::new()), sent: RefCell::new(Vec::new()) }
    }

    /// The requests sent since the last call, and forgets them.
    pub fn take_sent(&self) -> Vec<Op> {
        std::mem::take(&mut *self.sent.borrow_mut())
    }

    fn call(&self, tx_id: u32, request: &Request<'_>) -> Result<Reply, xenstore::Error> {
        self.sent.borrow_mut().push(request.op());
        let mut payload = Vec::new();
        request.encode_payload(&mut payload);
        let reply = self.world.borrow_mut().call_in(self.id, tx_id, request.op(), &payload)?;
        xenstore::core::decode_reply(request.op(), &reply)
    }

    fn call_raw(&self, tx_id: u32, op: Op, payload: &[u8]) -> Result<Vec<u8>, xenstore::Error> {
        self.sent.borrow_mut().push(op);
        self.world.borrow_mut().call_in(self.id, tx_id, op, payload)
    }

    fn end(&self, tx_id: u32, commit: bool) -> Result<(), xenstore::Error> {
        self.call(tx_id, &Request::TransactionEnd { commit }).map(drop)
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
        let mut attempt = 0;
        loop {
            let tx_id = match self.call(0, &Request::TransactionStart)? {
                Reply::TransactionStart(id) => id,
                other => panic!("TRANSACTION_START answered {other:?}"),
            };
            let result = match body(&WorldTx { conn: self, tx_id }) {
                Ok(()) => self.end(tx_id, true),
                Err(err) => {
                    let _ = self.end(tx_id, false);
                    Err(err)
                }
            };
            match result {
                Err(err) if err.is_eagain() && attempt < 16 => attempt += 1,
                other => return other,
            }
        }
    }

    fn watch(&self, path: &str, token: &str) -> Result<(), xenstore::Error> {
        self.sent.borrow_mut().push(Op::Watch);
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
                // Nothing else runs in a stepped world: waiting is only time passing.
                std::thread::sleep(timeout);
            }
        }
        event
    }
}

/// Writes guest `domid`'s home through dom0's `toolstack` connection as
/// libxl does (the parts the device tests use): read-only to the guest,
/// `device` and `backend` read-only, `error` and `data` its own.
pub fn write_home(toolstack: &WorldConn, domid: u16) {
    let home = format!("/local/domain/{domid}");
    let perms = |text: &str| xenstore::PermList::parse_nul_list(text.as_bytes()).unwrap();
    toolstack.mkdir(&home).unwrap();
    toolstack.set_perms(&home, &perms(&format!("n0\0r{domid}\0"))).unwrap();
    for ro in ["device", "backend"] {
        toolstack.mkdir(&format!("{home}/{ro}")).unwrap();
    }
    for rw in ["error", "data"] {
        toolstack.mkdir(&format!("{home}/{rw}")).unwrap();
        toolstack.set_perms(&format!("{home}/{rw}"), &perms(&format!("n{domid}\0"))).unwrap();
    }
}
