//! The view of real shared memory: atomics built from raw pointers.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

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

    /// The `len` bytes at `offset` of this view, as a view of their own
    /// (one page of a multi-page mapping, for a ring). Not in the loom
    /// model.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds or `offset` is not a multiple of 8.
    pub fn slice(&self, offset: usize, len: usize) -> SharedMem<'a> {
        check_range(offset, len, self.len);
        assert!(offset % 8 == 0, "a view starts 8-aligned");
        // SAFETY: the range lies within this view (checked), whose memory
        // meets `new`'s contract for 'a; the new base keeps the 4-byte
        // alignment (the old one was, and the offset is a multiple of 8).
        unsafe { SharedMem::new(self.base.add(offset), len) }
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

    /// ORs `bits` into the 32-bit word at `offset`, returning what it
    /// held: one member raising a flag in another's word while the owner
    /// takes them (a share's triggers).
    ///
    /// # Panics
    ///
    /// As [`SharedMem::load_u32`].
    pub fn fetch_or_u32(&self, offset: usize, bits: u32, order: Ordering) -> u32 {
        self.word(offset).fetch_or(bits, order)
    }

    /// Replaces the 32-bit word at `offset`, returning what it held.
    ///
    /// # Panics
    ///
    /// As [`SharedMem::load_u32`].
    pub fn swap_u32(&self, offset: usize, value: u32, order: Ordering) -> u32 {
        self.word(offset).swap(value, order)
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the memory
    /// with `Relaxed` atomic loads: 8 bytes at a time where the memory is
    /// 8-aligned, single bytes at the unaligned ends.
    ///
    /// Word-sized atomics are what make bulk data cheap to copy: a block
    /// backend moving 64 KiB a request spent 40% of its time in the
    /// byte-at-a-time loop (the compiler cannot widen atomic accesses).
    /// The chunking follows the memory's addresses, not the range, so two
    /// copies of the same bytes use the same access sizes.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        check_range(offset, dst.len(), self.len);
        let (head, words, tail) = self.split(offset, dst.len());
        let (dst_head, rest) = dst.split_at_mut(head);
        let (dst_words, dst_tail) = rest.split_at_mut(words * 8);
        for (i, out) in dst_head.iter_mut().enumerate() {
            *out = self.byte(offset + i).load(Ordering::Relaxed);
        }
        let at = offset + head;
        for (i, out) in dst_words.chunks_exact_mut(8).enumerate() {
            out.copy_from_slice(&self.word64(at + 8 * i).load(Ordering::Relaxed).to_ne_bytes());
        }
        let at = at + words * 8;
        debug_assert_eq!(dst_tail.len(), tail);
        for (i, out) in dst_tail.iter_mut().enumerate() {
            *out = self.byte(at + i).load(Ordering::Relaxed);
        }
    }

    /// Copies `src` into the memory starting at `offset` with `Relaxed`
    /// atomic stores, chunked as [`SharedMem::read_bytes`] reads.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) {
        check_range(offset, src.len(), self.len);
        let (head, words, _) = self.split(offset, src.len());
        let (src_head, rest) = src.split_at(head);
        let (src_words, src_tail) = rest.split_at(words * 8);
        for (i, &b) in src_head.iter().enumerate() {
            self.byte(offset + i).store(b, Ordering::Relaxed);
        }
        let at = offset + head;
        for (i, chunk) in src_words.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word64(at + 8 * i).store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        let at = at + words * 8;
        for (i, &b) in src_tail.iter().enumerate() {
            self.byte(at + i).store(b, Ordering::Relaxed);
        }
    }

    /// How a copy of `len` bytes at `offset` splits: bytes before the
    /// first 8-aligned address, whole 8-byte words, bytes after.
    fn split(&self, offset: usize, len: usize) -> (usize, usize, usize) {
        let addr = self.base.as_ptr().addr().wrapping_add(offset);
        let head = ((8 - addr % 8) % 8).min(len);
        let words = (len - head) / 8;
        (head, words, len - head - words * 8)
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

    fn word64(&self, offset: usize) -> &'a AtomicU64 {
        // Callers pass 8-aligned addresses inside checked ranges; these
        // are the last line of defence.
        check_range(offset, 8, self.len);
        let ptr = self.base.as_ptr().wrapping_add(offset);
        assert!(ptr.addr() % 8 == 0, "unaligned 8-byte access");
        // SAFETY: the 8 bytes at base + offset are within the view
        // (checked), valid for 'a by the contract of `new`, and 8-aligned
        // (checked). Every access to the memory from this process is
        // atomic, which is what `AtomicU64::from_ptr` requires. Accesses
        // of different sizes to the same bytes come from the peer (outside
        // the abstract machine) or, in one process, from two ends whose
        // copies the ring indices order (happens-before), and the chunking
        // follows addresses, so equal ranges are copied with equal sizes.
        unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) }
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
