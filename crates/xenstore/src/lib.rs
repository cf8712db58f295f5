//! A XenStore client: a blocking [`Client`] usable from many threads at
//! once, an async client behind the `tokio` feature, and (as the `xenstore`
//! binary of this package) the `xenstore-read`/`-write`/`-ls`/... tools.
//!
//! # Model
//!
//! One connection carries many requests at a time. The protocol logic lives
//! in [`core::ClientCore`], which does no I/O: it gives each request a
//! `req_id`, frames it, and turns the bytes that come back into replies
//! (matched by `req_id`) and watch events (routed by token). The two front
//! ends are thin drivers around it:
//!
//! - [`Client`] (blocking): callers write their request from their own
//!   thread and sleep until a background reader thread hands them the reply.
//!   Any number of threads may share one `Client` (`&self` methods), each
//!   with a request in flight.
//! - `tokio::AsyncClient` (feature `tokio`): a reader task and a writer task
//!   do the I/O; requests are futures, watches are streams.
//!
//! Values are bytes (`Vec<u8>`/`&[u8]`), never assumed UTF-8. Errors are the
//! daemon's own [`ErrorCode`] (wrapped in [`Error`], which also has an I/O
//! and a protocol-violation case). A request whose payload would exceed
//! [`PAYLOAD_MAX`](xenstore_wire::PAYLOAD_MAX) bytes is refused locally with
//! `E2BIG` and never sent.
//!
//! # Finding the daemon
//!
//! As libxenstore does: `XENSTORED_PATH` if set, else
//! `$XENSTORED_RUNDIR/socket` (default `/var/run/xenstored/socket`); if that
//! cannot be reached, `/dev/xen/xenbus` (or `XENSTORED_PATH` again). See
//! [`transport`].
//!
//! ```no_run
//! use xenstore::{Client, Store};
//!
//! let client = Client::open()?;
//! client.write("/local/domain/0/name", b"Domain-0")?;
//! let name = client.read("/local/domain/0/name")?;
//! client.transaction(|tx| {
//!     let n = tx.read("/counter").unwrap_or_default();
//!     tx.write("/counter", &[n, b"x".to_vec()].concat())
//! })?;
//! for event in client.watch("/local/domain/0", "tok")?.take(1) {
//!     println!("{} changed", event.path);
//! }
//! # Ok::<(), xenstore::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod core;
pub mod error;
pub mod store;
pub mod sync;
pub mod transport;

mod hub;

#[cfg(feature = "tokio")]
pub mod tokio;

pub use crate::core::{ClientCore, DirectoryListing, Event, SubscriptionId};
pub use crate::error::{Error, ProtocolError};
pub use crate::store::Store;
pub use crate::sync::{Client, Options, Transaction, Watch};
pub use crate::transport::Transport;
pub use xenstore_wire::{Access, ErrorCode, Op, Perm, PermList, Reply, Request, WatchEvent};

/// How many times [`Client::transaction`] retries after `EAGAIN` by default.
pub const DEFAULT_TRANSACTION_RETRIES: u32 = 16;
