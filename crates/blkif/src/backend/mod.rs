//! The backend: serves images to frontends in other domains.
//!
//! One process serves every device of its domain under one backend
//! directory type ([`BackendType`]: `backend/vbd`, where Linux's blkback
//! would serve, or `backend/qdisk`, where libxl puts the disks it gives a
//! userspace backend such as QEMU), all frontend domains or only one
//! ([`ServeConfig::frontend`], as QEMU serves the domain it was started
//! for), in one thread:
//! a xenbus backend [`Bus`] probes each device (opening the image its
//! `params` names) and connects it (mapping its ring, binding its event
//! channel), and one event-channel handle holds every device's port, so
//! a single descriptor says when any frontend has published requests.
//! [`Blkback::step`] handles the xenstore events and serves one round;
//! each round serves each notified device up to a budget of requests, so
//! a frontend that floods its ring delays the others by at most one
//! budget per round. A frontend whose ring indices are impossible gets
//! its ring stopped, the error written to `error/<device>/error` and the
//! device switched to Closing; the other devices go on.
//!
//! Call order: [`Blkback::new`], [`Blkback::start`], then
//! [`Blkback::step`] for ever ([`Blkback::run`] does that, waiting on the
//! event channels between rounds).

mod data_pages;
mod disk;
mod driver;
mod hub;
pub mod params;
pub mod persistent;
mod ring_config;
mod served;

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use xen_platform::{wait_any_readable, DomId, EventChannels, Grants};
use xenbus::{paths, switch, Bus, Conn, Error, XenbusState};

pub use disk::Disk;
pub use driver::VbdBackend;
pub use hub::BUDGET;
pub use params::image_path;
pub use ring_config::RingConfig;

use hub::Hub;

/// The backend directory type a backend serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BackendType {
    /// `backend/vbd`: libxl's `phy` disks (Linux's blkback serves these;
    /// our own toolstack, xsim, writes them for every disk).
    #[default]
    Vbd,
    /// `backend/qdisk`: libxl's `qdisk` disks, which a userspace device
    /// model serves (QEMU's xen-block; xen-blkback in its place). As
    /// QEMU's xen-bus, a device the toolstack asks to close (libxl's
    /// detach) whose frontend is not active closes at once
    /// (`xenbus::Bus::closing_unanswered`).
    Qdisk,
}

impl BackendType {
    /// The directory name: `vbd` or `qdisk`.
    pub fn name(self) -> &'static str {
        match self {
            BackendType::Vbd => "vbd",
            BackendType::Qdisk => "qdisk",
        }
    }
}

impl std::fmt::Display for BackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendType {
    type Err = String;

    fn from_str(s: &str) -> Result<BackendType, String> {
        match s {
            "vbd" => Ok(BackendType::Vbd),
            "qdisk" => Ok(BackendType::Qdisk),
            other => Err(format!("unknown backend type {other:?} (vbd or qdisk)")),
        }
    }
}

/// Which devices a backend serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeConfig {
    /// The backend directory type.
    pub backend_type: BackendType,
    /// Only this frontend domain's devices (`backend/<type>/<domid>/*`),
    /// or every domain's.
    pub frontend: Option<DomId>,
}

/// The block backend of one domain: every device under its
/// `backend/vbd` (or as [`ServeConfig`] says).
#[derive(Debug)]
pub struct Blkback<C> {
    bus: Bus<C>,
    hub: Rc<RefCell<Hub>>,
    domid: DomId,
    /// The bus's watch doorbell, waited on beside the event channels, so
    /// that a state change is seen at once, not at the next tick.
    doorbell: Option<OwnedFd>,
}

impl<C: Conn> Blkback<C> {
    /// A backend of domain `domid` over a xenstore connection and the
    /// platform's grant and event-channel handles, serving every
    /// `backend/vbd` device.
    pub fn new(conn: C, domid: DomId, grants: Box<dyn Grants>, events: Box<dyn EventChannels>) -> Blkback<C> {
        Blkback::with_config(conn, domid, grants, events, ServeConfig::default())
    }

    /// A backend serving the devices `config` says.
    pub fn with_config(
        conn: C,
        domid: DomId,
        grants: Box<dyn Grants>,
        events: Box<dyn EventChannels>,
        config: ServeConfig,
    ) -> Blkback<C> {
        let hub = Rc::new(RefCell::new(Hub::new(grants, events)));
        let shared = Rc::clone(&hub);
        let mut bus =
            Bus::backend(conn, domid, config.backend_type.name(), move |_| VbdBackend::new(Rc::clone(&shared)));
        if let Some(frontend) = config.frontend {
            bus = bus.serving_frontend(frontend);
        }
        if config.backend_type == BackendType::Qdisk {
            // QEMU's contract with libxl: a detach whose frontend will
            // never answer completes at once.
            bus = bus.closing_unanswered();
        }
        Blkback { bus, hub, domid, doorbell: None }
    }

    /// Starts watching the backend directory (`backend/vbd`, or as the
    /// [`ServeConfig`] said).
    pub fn start(&mut self) -> Result<(), Error> {
        self.bus.start()?;
        self.doorbell = self.bus.doorbell();
        Ok(())
    }

    /// Lists the devices there are now and probes the new ones (each
    /// then waits in InitWait), without waiting for the watch's first
    /// event to do it: for a caller that must know they are probed
    /// (xen-blkback in QEMU's place, before it says it is ready).
    pub fn scan(&mut self) -> Result<(), Error> {
        self.bus.scan()
    }

    /// The xenbus bus (its devices and their states).
    pub fn bus(&self) -> &Bus<C> {
        &self.bus
    }

    /// The directories of the devices whose rings are mapped.
    pub fn connected(&self) -> Vec<String> {
        self.hub.borrow().dirs()
    }

    /// The data pages device `dir` (a backend directory) keeps mapped
    /// (persistent grants), or `None` if it is not connected. At most
    /// [`persistent::MAX_PERSISTENT_GRANTS`].
    pub fn cached_grants(&self, dir: &str) -> Option<usize> {
        self.hub.borrow().cached_grants(dir)
    }

    /// The event-channel ports the backend holds (one per connected
    /// device).
    pub fn ports(&self) -> Vec<xen_platform::BoundPort> {
        self.hub.borrow().events.bindings()
    }

    /// Handles the xenstore events that arrived, serves one round, and
    /// closes the devices whose rings stopped. Returns the work done
    /// (events handled plus requests answered): 0 when idle.
    pub fn step(&mut self) -> Result<usize, Error> {
        let events = self.bus.poll(None)?;
        let answered = self.hub.borrow_mut().round();
        let broken = self.hub.borrow_mut().take_broken();
        for (dir, err) in &broken {
            let error = Error::driver(71, format!("frontend ring: {err}")); // EPROTO
            switch::report_error(self.bus.conn(), &paths::home(self.domid), dir, &error);
            if let Err(err) = self.bus.set_state(dir, XenbusState::Closing) {
                tracing::warn!(device = dir, %err, "could not close a device whose ring stopped");
            }
        }
        Ok(events + answered + broken.len())
    }

    /// Whether a round left work for the next (call [`Blkback::step`]
    /// again without waiting).
    pub fn has_work(&self) -> bool {
        self.hub.borrow().has_work()
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

    /// Serves for ever: a step, then (if it left no work) a wait of at
    /// most `tick` for an event channel or a xenstore event (over a
    /// connection without a doorbell, `tick` bounds how late a state
    /// change is seen).
    pub fn run(&mut self, tick: Duration) -> Result<(), Error> {
        loop {
            self.step()?;
            if !self.has_work() {
                self.wait(tick).map_err(|e| Error::driver(e.raw_os_error().unwrap_or(5), e.to_string()))?;
            }
        }
    }
}
