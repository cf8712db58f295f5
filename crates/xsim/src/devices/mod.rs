//! The toolstack's side of PV devices: what `xl block-attach`,
//! `block-detach` and `block-list` (and their network twins) do, for
//! hosted domains, over [`xenbus::toolstack`].
//!
//! - [`attach()`]: both directories in one transaction with libxl's
//!   permissions, then the wait for the backend;
//! - [`detach()`]: Closing, the wait for Closed, the directories removed
//!   (or removed at once, forced);
//! - [`listing`]: the lines of `xsim devices`;
//! - [`record`]: the toolstack's own copy of what it attached, which the
//!   others trust instead of the guest's frontend directory;
//! - [`devid`], [`next_id`], [`names`], [`wait`]: the rules they share;
//! - [`null_driver`]: a backend and a frontend that only do the
//!   handshake, for tests, benchmarks and drivers in the making.

pub mod attach;
pub mod detach;
pub mod devid;
pub mod listing;
pub mod names;
pub mod next_id;
pub mod null_driver;
pub mod record;
pub mod wait;

pub use attach::{attach, AttachSpec};
pub use detach::detach;
