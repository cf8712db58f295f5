//! The frontend: a guest's block device over a backend in another
//! domain, with a block API (read, write, flush by sector).
//!
//! A xenbus frontend [`Bus`] finds the guest's `vbd` devices; for each,
//! the driver grants a ring and a pool of data pages and offers an event
//! channel when the backend waits, goes `Initialised`, and reads the
//! disk's details when the backend is `Connected`. The data pages are
//! granted once per connection (eleven per ring slot, writable) and
//! reused by every request, so the frontend offers `feature-persistent`
//! and a backend that offers it too keeps them mapped. Operations are queued
//! at any time, split into ring requests of at most eleven pages, and
//! issued while the device is connected, as many as the ring holds. If
//! the backend goes away (it closes, or a restarted backend process
//! closes the device to take it over), the requests in flight are kept
//! and issued again on the next connection, so an operation completes
//! once, after its last request was answered, and no acknowledged write
//! is lost.
//!
//! Call order: [`Blkfront::new`], [`Blkfront::start`], then
//! [`Blkfront::step`] whenever the event channels fire or xenstore
//! events may have come (the blocking helpers [`Blkfront::wait_for`] and
//! [`Blkfront::wait_connected`] loop on it), with [`Blkfront::read`],
//! [`Blkfront::write`], [`Blkfront::flush`] and [`Blkfront::take`]
//! between steps.

mod driver;
mod hub;
mod link;
mod queue;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use xen_platform::{wait_any_readable, DomId, EventChannels, Grants};
use xenbus::{paths, switch, Bus, Conn, Error, XenbusState};

pub use driver::VbdFrontend;
pub use hub::DiskInfo;
pub use queue::{Chunk, ChunkKind, IoError, Queue, Ticket, SECTORS_PER_REQUEST};

use crate::abi::SECTOR_SIZE;
use hub::FrontHub;

/// How a frontend sets its devices up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontConfig {
    /// The `ring-page-order` wanted; the backend's `max-ring-page-order`
    /// caps it (0: one page, 32 requests).
    pub ring_page_order: u32,
    /// Write `feature-persistent` 0, so that the backend maps each
    /// request's pages for that request alone: for comparisons, and to
    /// test a frontend without the feature. By default it is 1: the data
    /// pages are granted once per connection, writable, and reused by
    /// every request, which is what the feature promises.
    pub no_persistent: bool,
}

/// The block frontend of one domain: its `vbd` devices.
#[derive(Debug)]
pub struct Blkfront<C> {
    bus: Bus<C>,
    hub: Rc<RefCell<FrontHub>>,
    domid: DomId,
    /// The bus's watch doorbell, waited on beside the event channels, so
    /// that a state change is seen at once, not at the next tick.
    doorbell: Option<OwnedFd>,
}

impl<C: Conn> Blkfront<C> {
    /// A frontend of domain `domid` over a xenstore connection and the
    /// platform's grant and event-channel handles.
    pub fn new(
        conn: C,
        domid: DomId,
        grants: Box<dyn Grants>,
        events: Box<dyn EventChannels>,
        config: FrontConfig,
    ) -> Blkfront<C> {
        let hub = Rc::new(RefCell::new(FrontHub {
            grants,
            events,
            ring_page_order: config.ring_page_order,
            persistent: !config.no_persistent,
            devices: BTreeMap::new(),
        }));
        let shared = Rc::clone(&hub);
        let bus = Bus::frontend(conn, domid, "vbd", move |dev| VbdFrontend::new(Rc::clone(&shared), dev.dir()));
        Blkfront { bus, hub, domid, doorbell: None }
    }

    /// Starts watching `device/vbd`.
    pub fn start(&mut self) -> Result<(), Error> {
        self.bus.start()?;
        self.doorbell = self.bus.doorbell();
        Ok(())
    }

    /// The xenbus bus (its devices and their states).
    pub fn bus(&self) -> &Bus<C> {
        &self.bus
    }

    /// The directory of device `devid` (its `virtual-device` number).
    pub fn dir(&self, devid: u32) -> String {
        paths::frontend_dir(self.domid, "vbd", devid)
    }

    /// The disk's details while the backend is connected.
    pub fn info(&self, devid: u32) -> Option<DiskInfo> {
        self.hub.borrow().devices.get(&self.dir(devid)).and_then(|d| d.info)
    }

    /// Requests of device `devid` in flight and waiting.
    pub fn outstanding(&self, devid: u32) -> (usize, usize) {
        self.hub.borrow().devices.get(&self.dir(devid)).map_or((0, 0), |d| (d.queue.in_flight(), d.queue.waiting()))
    }

    /// Reads `count` sectors from `sector`.
    pub fn read(&mut self, devid: u32, sector: u64, count: u64) -> Result<Ticket, IoError> {
        self.check_range(devid, sector, count, false)?;
        self.with_queue(devid, |q| q.submit_read(sector, count))
    }

    /// Writes `data`, whole 512-byte sectors, from `sector`.
    pub fn write(&mut self, devid: u32, sector: u64, data: Vec<u8>) -> Result<Ticket, IoError> {
        if data.len() as u64 % SECTOR_SIZE != 0 {
            return Err(IoError::Invalid("data is not whole sectors"));
        }
        self.check_range(devid, sector, data.len() as u64 / SECTOR_SIZE, true)?;
        self.with_queue(devid, |q| q.submit_write(sector, data))
    }

    /// Makes the completed writes durable (a no-op, done at once, if the
    /// backend offers no `feature-flush-cache`).
    pub fn flush(&mut self, devid: u32) -> Result<Ticket, IoError> {
        let flush = self.info(devid).is_none_or(|i| i.flush);
        self.with_queue(devid, |q| if flush { q.submit_flush() } else { q.complete_now(Ok(Vec::new())) })
    }

    /// The result of `ticket` once done: a read's bytes (empty for writes
    /// and flushes).
    pub fn take(&mut self, devid: u32, ticket: Ticket) -> Option<Result<Vec<u8>, IoError>> {
        self.hub.borrow_mut().devices.get_mut(&self.dir(devid)).and_then(|d| d.queue.take(ticket))
    }

    /// Checks against the details, when they are known (before, the
    /// backend checks).
    fn check_range(&self, devid: u32, sector: u64, count: u64, write: bool) -> Result<(), IoError> {
        let Some(info) = self.info(devid) else { return Ok(()) };
        if write && info.readonly {
            return Err(IoError::Invalid("the disk is read-only"));
        }
        match sector.checked_add(count) {
            Some(end) if end <= info.sectors => Ok(()),
            _ => Err(IoError::Invalid("sectors beyond the end of the disk")),
        }
    }

    fn with_queue(&mut self, devid: u32, f: impl FnOnce(&mut Queue) -> Ticket) -> Result<Ticket, IoError> {
        let dir = self.dir(devid);
        let mut hub = self.hub.borrow_mut();
        let device = hub.devices.get_mut(&dir).ok_or(IoError::Gone)?;
        Ok(f(&mut device.queue))
    }

    /// Handles the xenstore events that arrived, takes the responses and
    /// issues the queued requests of connected devices. Returns the work
    /// done: 0 when idle.
    pub fn step(&mut self) -> Result<usize, Error> {
        let mut work = self.bus.poll(None)?;
        let mut broken = Vec::new();
        {
            let mut hub = self.hub.borrow_mut();
            let mut pending = Vec::new();
            if let Err(err) = hub.events.take_pending(&mut pending) {
                tracing::warn!(%err, "could not read pending event channels");
            }
            for (dir, device) in hub.devices.iter_mut() {
                let connected = device.info.is_some();
                let Some(link) = device.link.as_mut() else { continue };
                match link.pump(&mut device.queue, connected) {
                    Ok(progress) => work += progress.issued + progress.answered,
                    Err(err) => broken.push((dir.clone(), err)),
                }
            }
        }
        for (dir, err) in broken {
            let error = Error::driver(71, format!("backend ring: {err}")); // EPROTO
            switch::report_error(self.bus.conn(), &paths::home(self.domid), &dir, &error);
            let _ = self.bus.set_state(&dir, XenbusState::Closing);
            work += 1;
        }
        Ok(work)
    }

    /// Waits at most `timeout` for an event channel to fire or, once
    /// started, a xenstore event to arrive.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let hub = self.hub.borrow();
        match &self.doorbell {
            Some(bell) => wait_any_readable(&[hub.events.as_fd(), bell.as_fd()], Some(timeout)),
            None => hub.events.wait(Some(timeout)),
        }
    }

    /// Steps until `ticket` is done or `timeout` passes, waiting at most
    /// `tick` between idle steps ([`Blkfront::wait`]).
    pub fn wait_for(
        &mut self,
        devid: u32,
        ticket: Ticket,
        timeout: Duration,
        tick: Duration,
    ) -> Result<Option<Result<Vec<u8>, IoError>>, Error> {
        let start = Instant::now();
        loop {
            if let Some(result) = self.take(devid, ticket) {
                return Ok(Some(result));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            if self.step()? == 0 {
                let _ = self.wait(tick);
            }
        }
    }

    /// Steps until device `devid` is connected or `timeout` passes.
    pub fn wait_connected(&mut self, devid: u32, timeout: Duration, tick: Duration) -> Result<Option<DiskInfo>, Error> {
        let start = Instant::now();
        loop {
            if let Some(info) = self.info(devid) {
                return Ok(Some(info));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            if self.step()? == 0 {
                let _ = self.wait(tick);
            }
        }
    }

    /// Closes device `devid` (Closing, then Closed when the backend
    /// follows), as blkfront does when it is removed.
    pub fn close(&mut self, devid: u32) -> Result<(), Error> {
        let dir = self.dir(devid);
        self.bus.set_state(&dir, XenbusState::Closing)
    }
}
