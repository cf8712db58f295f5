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
//!   thread and read the reply themselves when nobody else is reading (a
//!   background thread reads for watches, and for callers left waiting
//!   when another one got its reply: `sync`'s "Who reads"). Any number of
//!   threads may share one `Client` (`&self` methods), each with a
//!   request in flight.
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
//! # Across a daemon restart
//!
//! Over a guest's own ring ([`transport::SharedRing`], what a hosted guest
//! opens), the daemon tells the guest it stopped serving the ring by
//! setting the ring's error indicator: `ERROR_COMM` after xenstored was
//! restarted (crash recovery, `--persist`), or `ERROR_PROTO`/
//! `ERROR_RINGIDX` when it blames this guest. If the daemon supports
//! reconnection, [`Client`] resumes by itself: whichever thread reads
//! next reconnects the ring (`XENSTORE_RECONNECT`), and then
//!
//! - every request that was in flight fails with [`Error::Restarted`]: the
//!   old daemon may or may not have applied it (a write acknowledged before
//!   a restart is durable; one in flight may or may not be there);
//! - a transaction open then is gone: its later requests fail with
//!   [`Error::Restarted`] without being sent. [`Client::transaction`]
//!   starts such a transaction over (nothing of it was committed), except
//!   when its commit was in flight, which fails with [`Error::Restarted`];
//! - every watch of a live [`Watch`] handle is registered again, first
//!   thing on the new connection; the daemon fires each once at
//!   registration, as usual, so a resumption looks like a spurious event
//!   (which the protocol allows: watchers must re-read anyway). Changes
//!   made while the daemon was down are not reported otherwise;
//! - later requests work.
//!
//! Without the reconnection feature the indicator's error
//! ([`transport::ServerRingError`], in an [`Error::Io`]) stays, as before:
//! every request fails. A socket connection ([`Client::connect`], dom0)
//! is closed by a daemon restart: requests fail with [`Error::Io`] and
//! connecting again (and registering watches again) is the caller's
//! business; so is the kernel device, whose driver does its own recovery.
//! The async client does not resume either.
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
