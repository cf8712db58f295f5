//! The XenStore shared ring page (`docs/misc/xenstore-ring.txt`): both
//! ends, with no I/O of its own.
//!
//! # Role
//!
//! A domain talks to xenstored through one 4 KiB page holding two 1024-byte
//! circular byte queues (requests to the server at offset 0, responses at
//! 1024), their four free-running 32-bit indices, the server's feature
//! bitmap, the connection state and the error indicator ([`layout`]). This
//! crate moves bytes through that page; the XenStore protocol on top is
//! [`xenstore_wire`]'s. It does no I/O: the page is given as a [`RingPage`]
//! (mapped by the caller: a foreign mapping on Xen, shared memory when
//! hosted, an [`OwnedPage`] in tests), and the event channel is a [`Notify`]
//! the caller supplies.
//!
//! # Call order
//!
//! Server (xenstored): build a [`ServerRing`], [`ServerRing::set_features`],
//! wrap it in a [`ServerConnection`] (or a [`MappedServer`], which also
//! owns the page's mapping); on each event call [`ServerConnection::poll`]
//! until it returns `Ok(None)` or the server's fairness budget runs out,
//! handle the packets, queue the replies in the server's own output queue
//! (xenstored's holds its bounds on what a guest that does not read may
//! cost), then write the queue with [`ServerConnection::write_vectored`]
//! as space allows. A server with no output policy may use
//! [`OutputQueue`]. Errors set the page's error indicator
//! ([`ERROR_RINGIDX`] for corrupt indices, [`ERROR_PROTO`] for an oversize
//! payload) and stop the connection until the guest reconnects.
//!
//! Guest: a [`GuestRing`]; [`GuestRing::write`] requests,
//! [`GuestRing::read`] responses, wait for an event when neither makes
//! progress; [`GuestRing::request_reconnect`] to reset.
//!
//! # Memory-ordering rules
//!
//! The page is shared with an untrusted peer, so:
//!
//! - it is touched only through raw pointers and atomics ([`xen_shared_mem`]
//!   via module `page`); no Rust reference into it ever exists;
//! - each operation reads the peer's index **once**, validates it
//!   (`prod - cons`, wrapping, must be at most 1024, else
//!   [`RingError::BadIndex`] and nothing is copied), then copies using only
//!   that snapshot;
//! - the peer's producer index is loaded with `Acquire` before reading data
//!   (pairs with the producer's `Release`); the peer's consumer index is
//!   loaded with `Acquire` before overwriting data;
//! - our index is stored with `Release` after the copy, so the data (or the
//!   completion of our reads) is visible before the index;
//! - a `SeqCst` fence follows every index update, where the C code has
//!   `xen_mb()`: between publishing our index and re-checking the peer's
//!   (did more arrive? was it waiting?), which is what keeps notification
//!   suppression from losing a wake-up.
//!
//! Indices are free-running and may start anywhere; offsets are
//! `index & 1023`.
//!
//! # Loom
//!
//! Built with `--cfg loom`, the page is modelled with loom's atomics and
//! `tests/loom.rs` explores the index handshake (data visibility through
//! acquire/release, and no lost wake-up with the guest's notification
//! suppression):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p xenstore-ring --release loom
//! ```

//! # Unsafe code
//!
//! Access to the shared page itself is [`xen_shared_mem`]'s (one place for
//! every Xen ring). Two files here have `unsafe` code, each block with its
//! `// SAFETY:` argument; every other module has `#![forbid(unsafe_code)]`:
//!
//! - `page.rs`: [`RingPage::new`] is `unsafe` (the caller vouches for the
//!   memory) and passes that promise on to `SharedMem::new`;
//! - `mapped.rs`: the `unsafe trait` [`PageMemory`] (an implementor vouches
//!   that its page stays mapped while it lives), the [`RingPage::new`]
//!   calls in [`MappedServer::new`] and [`MappedGuest::new`] that rely on
//!   it, and its `unsafe impl` for [`OwnedPage`].
//!
//! Under `--cfg loom` the page is the same code over `xen_shared_mem`'s
//! loom twin, and `mapped.rs` is left out.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod connection;
pub mod layout;
#[cfg(not(loom))]
pub mod mapped;
mod page;
pub mod ring;

pub use connection::{ConnectionError, Incoming, OutputQueue, ServerConnection};
pub use layout::{
    Field, CONNECTED, ERROR_COMM, ERROR_NONE, ERROR_PROTO, ERROR_RINGIDX, FEATURE_ERROR, FEATURE_RECONNECTION,
    FEATURE_WATCH_DEPTH, PAGE_SIZE, RECONNECT, RING_SIZE,
};
#[cfg(not(loom))]
pub use mapped::{read_field, MappedGuest, MappedServer, PageMemory};
pub use page::{OwnedPage, RingPage};
pub use ring::{GuestRing, ServerRing};

/// How a ring end signals its peer (an event channel on Xen, a
/// notification between processes when hosted, a counter in tests).
pub trait Notify {
    /// Signal the peer.
    fn notify(&mut self);
}

impl<F: FnMut()> Notify for F {
    fn notify(&mut self) {
        self()
    }
}

/// A ring the peer has made unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// The indices read from the page are inconsistent: `prod - cons`
    /// (wrapping) exceeds the queue size. Nothing was copied. The server
    /// sets [`ERROR_RINGIDX`] and stops serving the ring.
    BadIndex {
        /// The consumer index read.
        cons: u32,
        /// The producer index read.
        prod: u32,
    },
}

impl RingError {
    /// The error-indicator value a server sets for this error.
    pub fn indicator(&self) -> u32 {
        match self {
            RingError::BadIndex { .. } => ERROR_RINGIDX,
        }
    }
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::BadIndex { cons, prod } => {
                write!(f, "inconsistent ring indices: consumer {cons}, producer {prod} (more than {RING_SIZE} apart)")
            }
        }
    }
}

impl std::error::Error for RingError {}
