//! The view of real shared memory: atomics built from raw pointers.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::{check_range, check_word};

/// A view of `len` bytes of memory shared with a peer.
///
/// Cheap to copy; both ends of a ring (or, in tests, both ends in one
/// process) may hold views of the same memory. All accesses are atomic, so
/// a `SharedMem` may be sent to and shared between threads.
#[derive(Debug, Clone, Copy)]
pub struct SharedMem<'a> {
    base: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a [AtomicU8]>,
}

// SAFETY: a SharedMem is a pointer to memory that is only ever accessed
// through atomic operations (module docs), so using it from several
// threads at once is no different from sharing a `&[AtomicU8]`, which is
// Send and Sync.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as for Send above: all access through a SharedMem is atomic.
unsafe impl Sync for SharedMem<'_> {}

impl<'a> SharedMem<'a> {
    /// A view of the `len` bytes at `base`.
    ///
    /// # Panics
    ///
    /// If `base` is not aligned to 4 bytes (the words are `AtomicU32`s).
    ///
    /// # Safety
    ///
    /// The caller guarantees that, for all of `'a`:
    ///
    /// - `base .. base + len` is readable and writable memory (and
    ///   `base + len` does not wrap the address space);
    /// - the memory stays mapped and is not freed or reused for anything
    ///   else;
    /// - nothing in this process creates Rust references to that memory or
    ///   accesses it non-atomically (the peer domain or process, outside the
    ///   Rust abstract machine, may write to it in any way it likes).
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> SharedMem<'a> {
        assert!(base.as_ptr().addr() % 4 == 0, "shared memory not aligned to 4 bytes");
        SharedMem { base, len, _memory: PhantomData }
    }

    /// The first byte's address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The size of the view in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Loads the 32-bit word at `offset` (native byte order, as the peer's
    /// C code stores it).
    ///
    /// # Panics
    ///
    /// If `offset` is not a multiple of 4 or the word is out of bounds.
    pub fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.word(offset).load(order)
    }

    /// Stores the 32-bit word at `offset`.
    ///
    /// # Panics
    ///
    /// As [`SharedMem::load_u32`].
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.word(offset).store(value, order);
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the memory,
    /// each a `Relaxed` atomic load.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        check_range(offset, dst.len(), self.len);
        for (i, out) in dst.iter_mut().enumerate() {
            *out = self.byte(offset + i).load(Ordering::Relaxed);
        }
    }

    /// Copies `src` into the memory starting at `offset`, each byte a
    /// `Relaxed` atomic store.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) {
        check_range(offset, src.len(), self.len);
        for (i, &b) in src.iter().enumerate() {
            self.byte(offset + i).store(b, Ordering::Relaxed);
        }
    }

    /// Sets `len` bytes starting at `offset` to `value` (`Relaxed`).
    ///
    /// # Panics
    ///
    /// If the range is out of bounds.
    pub fn fill(&self, offset: usize, len: usize, value: u8) {
        check_range(offset, len, self.len);
        for i in offset..offset + len {
            self.byte(i).store(value, Ordering::Relaxed);
        }
    }

    fn word(&self, offset: usize) -> &'a AtomicU32 {
        check_word(offset, self.len);
        // SAFETY: the 4 bytes at base + offset are within the view (checked
        // just above), valid for 'a by the contract of `new`, and aligned:
        // `base` is 4-aligned (asserted in `new`) and `offset` a multiple of
        // 4 (checked). Every access to the memory from this process is
        // atomic (this type is the only way in; the peer is outside the
        // abstract machine), which is what `AtomicU32::from_ptr` requires.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast::<u32>()) }
    }

    fn byte(&self, offset: usize) -> &'a AtomicU8 {
        // Callers check whole ranges; this is the last line of defence.
        check_range(offset, 1, self.len);
        // SAFETY: `offset` is within the view (checked), valid for 'a by
        // the contract of `new`; AtomicU8 needs no alignment; every access
        // to the memory is atomic.
        unsafe { AtomicU8::from_ptr(self.base.as_ptr().add(offset)) }
    }
}
