//! The page for loom models (`--cfg loom`): the same interface as the real
//! `page` module, over loom's atomics, so that loom explores the orderings
//! the ring code chooses. Data bytes are loom `AtomicU8`s accessed
//! `Relaxed`, exactly as on the real page: if an index ordering were too
//! weak, loom would let a reader see stale bytes and the model would fail.

#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;

pub(crate) use loom::sync::atomic::fence;
use loom::sync::atomic::{AtomicU32, AtomicU8};

use crate::layout::{Field, Queue, RING_SIZE};

#[derive(Debug)]
struct Memory {
    fields: [AtomicU32; 7],
    data: Vec<AtomicU8>,
}

/// A view of one modelled page.
#[derive(Debug, Clone, Copy)]
pub struct RingPage<'a> {
    memory: &'a Memory,
}

impl<'a> RingPage<'a> {
    /// Reads a field, sequentially consistent.
    pub fn field(&self, field: Field) -> u32 {
        self.load(field, Ordering::SeqCst)
    }

    /// Writes a field, sequentially consistent.
    pub fn set_field(&self, field: Field, value: u32) {
        self.store(field, value, Ordering::SeqCst);
    }

    fn index(&self, field: Field) -> &'a AtomicU32 {
        &self.memory.fields[(field.offset() - Field::ReqCons.offset()) / 4]
    }

    pub(crate) fn load(&self, field: Field, order: Ordering) -> u32 {
        self.index(field).load(order)
    }

    pub(crate) fn store(&self, field: Field, value: u32, order: Ordering) {
        self.index(field).store(value, order);
    }

    pub(crate) fn read_data(&self, queue: Queue, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= RING_SIZE);
        let start = queue.data_offset() + offset;
        for (i, out) in dst.iter_mut().enumerate() {
            *out = self.memory.data[start + i].load(Ordering::Relaxed);
        }
    }

    pub(crate) fn write_data(&self, queue: Queue, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= RING_SIZE);
        let start = queue.data_offset() + offset;
        for (i, &b) in src.iter().enumerate() {
            self.memory.data[start + i].store(b, Ordering::Relaxed);
        }
    }
}

/// A modelled page, all zero. Create it inside `loom::model`.
#[derive(Debug)]
pub struct OwnedPage {
    memory: Memory,
}

impl OwnedPage {
    /// A new page, all zero.
    pub fn new() -> OwnedPage {
        OwnedPage {
            memory: Memory {
                fields: core::array::from_fn(|_| AtomicU32::new(0)),
                data: (0..2 * RING_SIZE).map(|_| AtomicU8::new(0)).collect(),
            },
        }
    }

    /// A view of the page.
    pub fn page(&self) -> RingPage<'_> {
        RingPage { memory: &self.memory }
    }
}

impl Default for OwnedPage {
    fn default() -> Self {
        OwnedPage::new()
    }
}
