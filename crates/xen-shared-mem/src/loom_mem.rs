//! The loom twin (`--cfg loom`): the same interface as `mem.rs` and
//! `owned.rs`, over loom's atomics, so that loom explores the orderings a
//! ring chooses. Bytes are loom `AtomicU8`s accessed `Relaxed`, exactly as
//! on real memory.
//!
//! Loom models each atomic as one object of one size, so a 4-byte word is
//! kept either as one `AtomicU32` or as four `AtomicU8`s. Which one is
//! decided by the first access in a model run and checked on every later
//! one: a ring that read an index as bytes would see none of its stores,
//! so mixing panics instead of passing silently.

#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;
// A plain std atomic for the bookkeeping of which words are words and which
// are bytes: it is not part of what loom explores.
use std::sync::atomic::AtomicU8 as Kind;

use loom::sync::atomic::{AtomicU32, AtomicU8};

use crate::{check_range, check_word};

const UNUSED: u8 = 0;
const WORD: u8 = 1;
const BYTES: u8 = 2;

#[derive(Debug)]
struct Cells {
    words: Vec<AtomicU32>,
    bytes: Vec<AtomicU8>,
    kinds: Vec<Kind>,
    len: usize,
}

impl Cells {
    fn claim(&self, offset: usize, kind: u8) {
        let slot = &self.kinds[offset / 4];
        if let Err(found) = slot.compare_exchange(UNUSED, kind, Ordering::Relaxed, Ordering::Relaxed) {
            assert_eq!(found, kind, "the loom twin cannot model offset {offset} both as a word and as bytes");
        }
    }
}

/// A view of modelled shared memory.
#[derive(Debug, Clone, Copy)]
pub struct SharedMem<'a> {
    cells: &'a Cells,
}

impl<'a> SharedMem<'a> {
    /// The size of the view in bytes.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.cells.len == 0
    }

    /// Loads the 32-bit word at `offset`.
    pub fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        check_word(offset, self.cells.len);
        self.cells.claim(offset, WORD);
        self.cells.words[offset / 4].load(order)
    }

    /// Stores the 32-bit word at `offset`.
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        check_word(offset, self.cells.len);
        self.cells.claim(offset, WORD);
        self.cells.words[offset / 4].store(value, order);
    }

    /// ORs `bits` into the 32-bit word at `offset`, returning what it held.
    pub fn fetch_or_u32(&self, offset: usize, bits: u32, order: Ordering) -> u32 {
        check_word(offset, self.cells.len);
        self.cells.claim(offset, WORD);
        self.cells.words[offset / 4].fetch_or(bits, order)
    }

    /// Replaces the 32-bit word at `offset`, returning what it held.
    pub fn swap_u32(&self, offset: usize, value: u32, order: Ordering) -> u32 {
        check_word(offset, self.cells.len);
        self.cells.claim(offset, WORD);
        self.cells.words[offset / 4].swap(value, order)
    }

    /// Copies bytes out, each a `Relaxed` atomic load.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        check_range(offset, dst.len(), self.cells.len);
        for (i, out) in dst.iter_mut().enumerate() {
            self.cells.claim(offset + i, BYTES);
            *out = self.cells.bytes[offset + i].load(Ordering::Relaxed);
        }
    }

    /// Copies bytes in, each a `Relaxed` atomic store.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) {
        check_range(offset, src.len(), self.cells.len);
        for (i, &b) in src.iter().enumerate() {
            self.cells.claim(offset + i, BYTES);
            self.cells.bytes[offset + i].store(b, Ordering::Relaxed);
        }
    }

    /// Sets `len` bytes to `value` (`Relaxed`).
    pub fn fill(&self, offset: usize, len: usize, value: u8) {
        check_range(offset, len, self.cells.len);
        for i in offset..offset + len {
            self.cells.claim(i, BYTES);
            self.cells.bytes[i].store(value, Ordering::Relaxed);
        }
    }
}

/// Modelled memory, all zero. Create it inside `loom::model`.
#[derive(Debug)]
pub struct OwnedMem {
    cells: Cells,
}

impl OwnedMem {
    /// `len` zero bytes.
    pub fn new(len: usize) -> OwnedMem {
        assert!(len > 0, "an OwnedMem must not be empty");
        let words = len.div_ceil(4);
        OwnedMem {
            cells: Cells {
                words: (0..words).map(|_| AtomicU32::new(0)).collect(),
                bytes: (0..len).map(|_| AtomicU8::new(0)).collect(),
                kinds: (0..words).map(|_| Kind::new(UNUSED)).collect(),
                len,
            },
        }
    }

    /// `count` zeroed pages.
    pub fn pages(count: usize) -> OwnedMem {
        OwnedMem::new(count * crate::PAGE_SIZE)
    }

    /// A view of the memory.
    pub fn mem(&self) -> SharedMem<'_> {
        SharedMem { cells: &self.cells }
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }
}
