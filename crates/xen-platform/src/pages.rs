//! Pages mapped into this process: the only `unsafe` code of the crate.
//!
//! A [`MappedPages`] owns one contiguous mapping of whole pages, shared
//! with another process (hosted) or domain (Xen), and unmaps it when
//! dropped. Callers reach the memory only through [`MappedPages::as_ptr`]:
//! the peer may write it at any time, so no Rust reference to it may exist
//! (the ring crate reads and writes it with atomics).

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::mm::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};

use crate::PAGE_SIZE;

/// Whole pages mapped shared into this process, unmapped on drop.
#[derive(Debug)]
pub struct MappedPages {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a MappedPages is an address range owned by this value alone;
// unmapping it from another thread is as sound as from this one, and the
// memory itself is only accessed through raw pointers by callers who take
// on the concurrency rules (the peer writes it concurrently anyway).
unsafe impl Send for MappedPages {}
// SAFETY: `&MappedPages` hands out only the address and length.
unsafe impl Sync for MappedPages {}

impl MappedPages {
    /// Maps `count` pages of `fd` starting at page `first`, shared and
    /// readable (and writable if `writable`).
    pub fn map(fd: BorrowedFd<'_>, first: u64, count: usize, writable: bool) -> io::Result<MappedPages> {
        MappedPages::map_segments(&[(fd, first, count)], writable)
    }

    /// Maps several runs of pages, each `(fd, first page, count)`, one
    /// after another into a single contiguous range (grants of one mapping
    /// may each live in a different file).
    pub fn map_segments(segments: &[(BorrowedFd<'_>, u64, usize)], writable: bool) -> io::Result<MappedPages> {
        let pages: usize = segments.iter().map(|s| s.2).sum();
        if pages == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "mapping zero pages"));
        }
        let len = pages.checked_mul(PAGE_SIZE).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a fresh anonymous mapping at an address the kernel
        // chooses overlaps nothing of ours; it only reserves the range that
        // the fixed mappings below replace.
        let reserved = unsafe { mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::empty(), MapFlags::PRIVATE) }?;
        let base = NonNull::new(reserved.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // From here on, dropping `mapped` unmaps the whole range.
        let mapped = MappedPages { base, len };
        let mut offset = 0usize;
        for &(fd, first, count) in segments {
            let file_offset =
                first.checked_mul(PAGE_SIZE as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: the target range lies inside the reservation owned by
            // `mapped` (offset + count pages <= len) and nothing else in
            // this process uses it; MAP_FIXED replaces the reservation
            // there with the file's pages.
            unsafe {
                mmap(
                    base.as_ptr().add(offset).cast(),
                    count * PAGE_SIZE,
                    prot,
                    MapFlags::SHARED | MapFlags::FIXED,
                    fd,
                    file_offset,
                )
            }?;
            offset += count * PAGE_SIZE;
        }
        Ok(mapped)
    }

    /// The first byte. Page-aligned. Valid for [`MappedPages::len`] bytes
    /// while `self` lives; access it only through raw pointers or atomics.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The first byte, non-null.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Bytes mapped (a multiple of [`PAGE_SIZE`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for MappedPages {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is the mapping this value created and
        // owns; callers never keep references into it past our lifetime
        // (they get raw pointers only).
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}

// SAFETY: a MappedPages owns its mapping: `base` never changes, stays
// mapped (readable and writable when mapped writable, which ring pages
// are) until the value is dropped, and this crate never touches the memory
// itself; callers reach it only through raw pointers, which the ring crate
// uses atomically.
unsafe impl xenstore_ring::PageMemory for MappedPages {
    fn page_base(&self) -> NonNull<u8> {
        self.base
    }
}
