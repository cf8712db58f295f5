//! Access to memory shared with an untrusted peer: the pages of a Xen ring
//! (the XenStore ring page, the `io/ring.h` request/response rings),
//! mapped from another domain on Xen or shared between processes when
//! hosted.
//!
//! # Role
//!
//! The peer may write any byte at any time, so this crate never creates a
//! Rust reference (`&`/`&mut`) to a shared buffer or to anything inside
//! it. A [`SharedMem`] is a pointer and a length; every access is one
//! atomic operation on a location reached through a raw pointer:
//!
//! - 32-bit words (ring indices, event indices, flags) are `AtomicU32`
//!   loads and stores at 4-aligned offsets, with the [`Ordering`] the ring
//!   code chooses and documents at each call;
//! - payload bytes are copied in and out one `AtomicU8` at a time, with
//!   `Relaxed` ordering. Their ordering against the indices comes from the
//!   index operations (acquire on the peer's producer index, release on
//!   ours) and the [`fence`]s the ring code places. Atomics even for data
//!   make a peer scribbling on bytes we copy a benign race (we copy
//!   garbage, which the protocol layer rejects), never undefined
//!   behaviour.
//!
//! Every access is bounds checked against the length given at
//! construction (and words for alignment); a failed check is a bug in the
//! ring code, not something a peer can cause, and panics.
//!
//! # How it is used
//!
//! A platform layer maps the memory and builds a view with the `unsafe`
//! [`SharedMem::new`], vouching for the mapping; tests and hosted setups
//! use [`OwnedMem`], a zeroed page-aligned heap buffer. Ring crates keep
//! their index arithmetic and orderings and call only the safe accessors.
//!
//! # Loom
//!
//! Built with `--cfg loom`, the same types are backed by loom's atomics
//! (module `loom_mem`) so that a ring's loom model explores the orderings
//! its code chooses: if an index ordering were too weak, loom would let a
//! reader see stale bytes. The twin has no [`SharedMem::new`] (loom cannot
//! model foreign memory); models use [`OwnedMem`]. Loom cannot model one
//! location accessed at two sizes, so in the twin each 4-byte word is
//! either a word or four bytes for a model's whole run (the rings never
//! mix them), and mixing panics.
//!
//! # Unsafe code
//!
//! Only `mem.rs` (the views' atomics built from raw pointers, and their
//! `Send`/`Sync`) and `owned.rs` (allocating and freeing the buffer) have
//! `unsafe` code, each block with its `// SAFETY:` argument.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(loom)]
mod loom_mem;
#[cfg(not(loom))]
mod mem;
#[cfg(not(loom))]
mod owned;

pub use core::sync::atomic::Ordering;

#[cfg(loom)]
pub use loom::sync::atomic::fence;
#[cfg(loom)]
pub use loom_mem::{OwnedMem, SharedMem};

#[cfg(not(loom))]
pub use core::sync::atomic::fence;
#[cfg(not(loom))]
pub use mem::SharedMem;
#[cfg(not(loom))]
pub use owned::OwnedMem;

/// The size of a Xen page, and the alignment of an [`OwnedMem`].
pub const PAGE_SIZE: usize = 4096;

/// Panics unless `offset .. offset + len` lies within `size` bytes.
///
/// Shared by both implementations so that the real memory and the loom
/// twin reject exactly the same accesses.
fn check_range(offset: usize, len: usize, size: usize) {
    match offset.checked_add(len) {
        Some(end) if end <= size => {}
        _ => panic!("shared memory access out of bounds: {len} bytes at offset {offset} of {size}"),
    }
}

/// Panics unless a 32-bit word at `offset` is aligned and within `size`
/// bytes.
fn check_word(offset: usize, size: usize) {
    assert!(offset % 4 == 0, "shared memory word at unaligned offset {offset}");
    check_range(offset, 4, size);
}
