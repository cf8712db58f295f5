//! An example split device, "demo": the frontend publishes a ring
//! reference and an event channel, the backend maps them and publishes
//! the device size, the frontend reads it. Only the lines between the
//! `xenbus part` markers are what a real driver would need; the `Log`
//! lets the tests see which hooks ran.

use std::cell::RefCell;
use std::rc::Rc;

use xenbus::{Backend, DeviceCtx, Error, Frontend, XenbusState};

/// What the drivers did, in order, shared with the test.
pub type Log = Rc<RefCell<Vec<String>>>;

pub fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// The entries of `log` that start with `prefix`.
pub fn entries(log: &Log, prefix: &str) -> Vec<String> {
    log.borrow().iter().filter(|e| e.starts_with(prefix)).cloned().collect()
}

// xenbus part: frontend (start)
pub struct DemoFront {
    pub published: XenbusState,
    pub grant: u32,
    pub sectors: u64,
    pub log: Log,
}

impl Frontend for DemoFront {
    fn published_state(&self) -> XenbusState {
        self.published
    }

    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.grant += 1; // a fresh grant for every connection
        self.log.borrow_mut().push(format!("fe connect {}", self.grant));
        dev.publish(&[("ring-ref", &self.grant), ("event-channel", &7)])
    }

    fn backend_connected(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.sectors = dev.read_otherend("sectors")?;
        self.log.borrow_mut().push(format!("fe backend-connected {}", self.sectors));
        Ok(())
    }

    fn disconnect(&mut self, _dev: &DeviceCtx<'_>) {
        self.log.borrow_mut().push(format!("fe disconnect {}", self.grant));
    }
}
// xenbus part: frontend (end)

// xenbus part: backend (start)
pub struct DemoBack {
    pub sectors: u64,
    pub log: Log,
}

impl Backend for DemoBack {
    fn probe(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        dev.publish(&[("feature-demo", &1)])
    }

    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        let [ring, port]: [u32; 2] = dev.gather_otherend(["ring-ref", "event-channel"])?;
        self.log.borrow_mut().push(format!("be connect {ring} {port}"));
        dev.publish(&[("sectors", &self.sectors)])
    }

    fn disconnect(&mut self, _dev: &DeviceCtx<'_>) {
        self.log.borrow_mut().push("be disconnect".into());
    }

    fn remove(&mut self, _dev: &DeviceCtx<'_>) {
        self.log.borrow_mut().push("be remove".into());
    }
}
// xenbus part: backend (end)
