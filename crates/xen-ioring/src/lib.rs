//! The generic request/response ring of Xen's `xen/include/public/io/ring.h`,
//! shared by every paravirtual device (block, network, console, ...): both
//! ends, with no I/O of its own.
//!
//! # Role
//!
//! A front end (the guest's driver) and a back end (the device's server)
//! share a ring of `2^ring-page-order` pages: four 32-bit indices, a
//! private area up to offset 64, then a power-of-two number of entries,
//! each big enough for a request or a response ([`layout`]). The front
//! produces requests into free slots; the back consumes them and produces
//! each response into the slot of the request it answers. Event indices
//! let each side skip notifications the other does not need.
//!
//! This crate is layout-compatible with the C macros (`DEFINE_RING_TYPES`,
//! `__RING_SIZE`), so it speaks to Linux's drivers unchanged. It does no
//! I/O and reads no clock: the memory is a [`SharedMem`] the caller maps
//! (a grant mapping on Xen, shared memory when hosted, an `OwnedMem` in
//! tests), and "notify" is a boolean the caller acts on with its event
//! channel. The messages are any [`Message`]: a type with the C `sizeof`
//! and `alignof` that encodes into and decodes from bytes.
//!
//! # Call order
//!
//! See [`FrontRing`] and [`BackRing`]. Both batch: push many messages, then
//! publish once (one index store, one notify decision).
//!
//! # Memory-ordering rules
//!
//! The ring is shared with an untrusted peer, so:
//!
//! - it is touched only through [`SharedMem`]'s atomic accessors; no Rust
//!   reference into it exists, and messages are copied out before they are
//!   decoded;
//! - the peer's producer index is loaded **once** per operation with
//!   `Acquire` (ring.h's `xen_rmb` after reading it), checked, and only
//!   that snapshot is used; an impossible value is a [`RingError`] and the
//!   end stops;
//! - our producer index is stored with `Release` after the entries are
//!   written (ring.h's `xen_wmb` before the store); we remember what we
//!   published and never read our own index back;
//! - a `SeqCst` fence stands where ring.h has `xen_mb`: between publishing
//!   a producer index and reading the peer's event index, and between
//!   writing our event index and re-reading the peer's producer index. The
//!   two fences together are what prevents a lost wake-up; `tests/loom.rs`
//!   checks it.
//!
//! Indices are free-running and may start anywhere; slots are
//! `index & (RING_SIZE - 1)`, so no value the peer writes reaches outside
//! the ring.
//!
//! # Loom
//!
//! With `--cfg loom`, [`SharedMem`] is loom's model and `tests/loom.rs`
//! explores the handshake:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p xen-ioring --test loom --release
//! ```

#![forbid(unsafe_code)]

mod back;
mod error;
mod event;
mod front;
pub mod layout;
mod message;
mod shared_ring;

pub use back::{BackCursors, BackRing};
pub use error::{LayoutError, RingError, RingFull};
pub use event::needs_notify;
pub use front::{FrontCursors, FrontRing};
pub use layout::{entry_size, ring_bytes, Index, RingLayout, HEADER_SIZE, MAX_RING_PAGE_ORDER, PAGE_SIZE};
pub use message::Message;
pub use shared_ring::init_shared_ring;
pub use xen_shared_mem::SharedMem;
