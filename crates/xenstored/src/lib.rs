//! The XenStore daemon as a library: the event loop around the
//! `xenstore-db` engine, its connections (Unix sockets and domains'
//! rings), and the platform it serves domains through.
//!
//! The `xenstored` binary is a thin wrapper (options, logging, forking)
//! around [`Server`]. Tests drive the same [`Server`] in one process: the
//! stepped world of the `test-utils` feature ([`testing`]) runs it with
//! in-memory twins of the platform, socket clients and guest rings, and
//! steps everything until idle.
//!
//! No unsafe code: the ring page is reached through `xenstore-ring`'s
//! mapped ends, the platform through `xen-platform`'s traits.

#![forbid(unsafe_code)]

mod conn;
mod control;
mod dirty;
mod effects;
pub mod live_update;
mod memory;
mod metrics;
pub mod outbox;
mod outstanding;
mod peers;
pub mod persist;
mod refusals;
mod rings;
mod server;
mod socket;
mod stats;
#[cfg(feature = "test-utils")]
pub mod testing;
mod trace;
mod tx_gate;
mod write_rate;

pub use live_update::handover::ExecContext;
pub use live_update::restore::Restored;
pub use metrics::MetricsAddr;
pub use outbox::Limits;
pub use rings::{cannot_adopt_events, AdoptEvents, Platform};
pub use server::{Server, Settings};
