//! Xen's PV device framework (xenbus): the device state machine, the
//! frontend/backend handshake, bus enumeration and the toolstack's side.
//!
//! A split device has two ends that talk only through XenStore: the
//! frontend (in the guest, `device/<type>/<id>`) and the backend (in dom0
//! or a driver domain, `backend/<type>/<fe>/<id>`). Each end has a
//! `state` node ([`XenbusState`]) and watches the other's.
//!
//! # Layers
//!
//! - Pure rules, no I/O: [`state`] (the node's text), [`transitions`]
//!   (which steps each role may take, the shortest-path walker),
//!   [`handshake`] (what an end does when its peer's state changes),
//!   [`paths`] (where libxl puts things), [`otherend`] (stale events),
//!   [`enumerate`] (what a bus does with a root event, which devices it
//!   probes; shared by the sync and async buses).
//! - The I/O seam [`Conn`]: node operations, transactions, watches;
//!   [`SyncConn`] runs it over the blocking [`xenstore::Client`].
//! - Thin drivers over the seam: [`switch`] (`xenbus_switch_state`),
//!   [`gather`], [`device`] (one device: its other end, its state, the
//!   walk with hooks, fatal errors), [`bus`] (enumeration and event
//!   dispatch), [`toolstack`] (attach and detach a device as libxl does).
//!
//! # Driving it
//!
//! A driver implements [`Frontend`] or [`Backend`]: usually only
//! `connect` (publish or map the rings) and perhaps `probe` and
//! `disconnect`. A [`Bus`] of the right role is created over a
//! connection and pumped: [`Bus::scan`] once, then [`Bus::poll`] with
//! each watch event; the bus probes new devices, removes vanished ones,
//! and runs the handshake for each device's other-end changes.
//!
//! With the `tokio` feature, the module `tokio` has the same rules
//! over the async client: an `AsyncBus` whose `next()` yields the devices
//! added and removed, and an `AsyncDevice` per device that hands out the
//! hooks to run instead of calling a trait, each in a task of its own.

//! ```no_run
//! use xenbus::{Backend, Bus, DeviceCtx, Error, Frontend, SyncConn, XenbusState};
//!
//! /// The frontend's whole xenbus part: publish a ring and an event channel.
//! struct Front;
//! impl Frontend for Front {
//!     fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
//!         dev.publish(&[("ring-ref", &8), ("event-channel", &3)])
//!     }
//! }
//!
//! /// The backend's: map what the frontend published.
//! struct Back;
//! impl Backend for Back {
//!     fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
//!         let [ring, port]: [u32; 2] = dev.gather_otherend(["ring-ref", "event-channel"])?;
//!         println!("map grant {ring} of domain {}, bind port {port}", dev.otherend_id());
//!         Ok(())
//!     }
//! }
//!
//! let conn = SyncConn::new(xenstore::Client::open()?);
//! let mut bus = Bus::backend(conn, 0, "demo", |_| Back);
//! bus.start()?;
//! loop {
//!     bus.poll(Some(std::time::Duration::from_secs(1)))?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod bus;
pub mod conn;
pub mod device;
pub mod driver;
pub mod enumerate;
pub mod error;
pub mod gather;
pub mod handshake;
pub mod otherend;
pub mod paths;
pub mod state;
pub mod switch;
pub mod toolstack;
pub mod transitions;

#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tokio")]
mod tokio_bus;

pub use crate::bus::Bus;
pub use crate::conn::{Conn, SyncConn};
pub use crate::device::{Device, DeviceCtx};
pub use crate::driver::{Backend, Flow, Frontend};
pub use crate::error::Error;
pub use crate::state::{ParseStateError, XenbusState};
pub use crate::transitions::{IllegalTransition, Role};
