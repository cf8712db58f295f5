//! Pages mapped into this process: the only `unsafe` code of the crate.
//!
//! A [`MappedPages`] owns one contiguous mapping of whole pages, shared
//! with another process (hosted) or domain (Xen), and unmaps it when
//! dropped. Callers reach the memory only through [`MappedPages::as_ptr`]:
//! the peer may write it at any time, so no Rust reference to it may exist
//! (the ring crate reads and writes it with atomics).
//!
//! How a mapping ends depends on who made it: [`MappedPages::map`] and
//! [`MappedPages::map_segments`] made it with `mmap` and end it with
//! `munmap`; a backend whose mappings need more (a Xen grant mapping is
//! unmapped with gntdev's `IOCTL_GNTDEV_UNMAP_GRANT_REF` after the
//! `munmap`, a foreign mapping may hold a privcmd resource) hands its own
//! unmap action to [`MappedPages::from_raw`], and it runs exactly once, on
//! drop.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::mm::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};

use crate::PAGE_SIZE;

/// Whole pages mapped shared into this process, unmapped on drop.
pub struct MappedPages {
    base: NonNull<u8>,
    len: usize,
    unmap: Unmap,
}

/// An owner's way of ending a mapping: given the base and length, undo
/// whatever made it.
pub type UnmapFn = Box<dyn FnOnce(NonNull<u8>, usize) + Send>;

/// How a [`MappedPages`] ends.
enum Unmap {
    /// `munmap` the range (this module mapped it).
    Munmap,
    /// The owner's action; taken when it runs.
    Owner(Option<UnmapFn>),
}

// SAFETY: a MappedPages is an address range owned by this value alone;
// unmapping it from another thread is as sound as from this one, and the
// memory itself is only accessed through raw pointers by callers who take
// on the concurrency rules (the peer writes it concurrently anyway).
unsafe impl Send for MappedPages {}
// SAFETY: `&MappedPages` hands out only the address and length; the
// owner's unmap action (which need not be Sync) is reached only by drop,
// through `&mut`.
unsafe impl Sync for MappedPages {}

impl MappedPages {
    /// Takes ownership of a mapping made by someone else, ended by
    /// `unmap(base, len)` when the value is dropped (exactly once) instead
    /// of by `munmap`.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be a mapping of whole pages (`len` a
    /// non-zero multiple of [`PAGE_SIZE`], `base` page-aligned), readable
    /// (and writable if callers will write it), that stays mapped until
    /// `unmap` runs and that nothing else unmaps or reuses meanwhile: the
    /// new value hands raw pointers into it to safe code, and
    /// [`xenstore_ring::PageMemory`] promises the ring crate the page
    /// lives as long as the value. `unmap` must end the mapping (or hand
    /// it back to its owner); it is not called if this function panics.
    pub unsafe fn from_raw(base: NonNull<u8>, len: usize, unmap: UnmapFn) -> MappedPages {
        assert!(len != 0 && len % PAGE_SIZE == 0, "a mapping is whole pages");
        assert!(base.as_ptr() as usize % PAGE_SIZE == 0, "a mapping is page-aligned");
        MappedPages { base, len, unmap: Unmap::Owner(Some(unmap)) }
    }

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
        let mapped = MappedPages { base, len, unmap: Unmap::Munmap };
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

    /// The mapping as a view for the ring crates (`xen-ioring`'s rings,
    /// a backend copying a request's data in and out): every access
    /// through it is atomic and bounds-checked, so safe code can share
    /// the pages with an untrusted peer without an `unsafe` of its own.
    /// Writing through the view of a mapping made read-only faults (the
    /// process gets SIGSEGV); it cannot corrupt anything.
    pub fn shared_mem(&self) -> xen_shared_mem::SharedMem<'_> {
        // SAFETY: the range is this value's mapping: readable (and
        // writable when mapped so; a store to a read-only mapping faults,
        // it corrupts nothing), page aligned (so 4-aligned), and it stays mapped while the returned
        // view borrows `self` (unmapping happens only in drop). This crate
        // never touches the memory, and callers reach it only through raw
        // pointers or such views, never through Rust references, which is
        // what SharedMem::new asks.
        unsafe { xen_shared_mem::SharedMem::new(self.base, self.len) }
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
        match &mut self.unmap {
            Unmap::Munmap => {
                // SAFETY: `base..base+len` is the mapping this value
                // created and owns; callers never keep references into it
                // past our lifetime (they get raw pointers only).
                let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
            }
            Unmap::Owner(unmap) => {
                if let Some(unmap) = unmap.take() {
                    unmap(self.base, self.len);
                }
            }
        }
    }
}

impl fmt::Debug for MappedPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.unmap {
            Unmap::Munmap => "munmap",
            Unmap::Owner(_) => "owner",
        };
        f.debug_struct("MappedPages").field("base", &self.base).field("len", &self.len).field("unmap", &how).finish()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// An anonymous page this test owns, for `from_raw`.
    fn anonymous_page() -> NonNull<u8> {
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address
        // overlaps nothing.
        let raw = unsafe {
            mmap_anonymous(std::ptr::null_mut(), PAGE_SIZE, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED)
        }
        .unwrap();
        NonNull::new(raw.cast()).unwrap()
    }

    #[test]
    fn from_raw_runs_owner_unmap_exactly_once_on_drop() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let base = anonymous_page();
        let expected = base.as_ptr() as usize;
        let unmap: UnmapFn = Box::new(move |ptr, len| {
            assert_eq!((ptr.as_ptr() as usize, len), (expected, PAGE_SIZE));
            seen.fetch_add(1, Ordering::SeqCst);
            // SAFETY: the test mapped this page above and nothing else
            // uses it once the MappedPages is gone.
            unsafe { munmap(ptr.as_ptr().cast(), len) }.unwrap();
        });
        // SAFETY: the page is mapped, page-aligned and one page long, and
        // only `unmap` ends it.
        let pages = unsafe { MappedPages::from_raw(base, PAGE_SIZE, unmap) };
        assert_eq!((pages.base(), pages.len()), (base, PAGE_SIZE));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        drop(pages);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn map_still_munmaps_on_drop() {
        let fd = rustix::fs::memfd_create("pages-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, PAGE_SIZE as u64).unwrap();
        let pages = MappedPages::map(std::os::fd::AsFd::as_fd(&fd), 0, 1, true).unwrap();
        assert!(format!("{pages:?}").contains("munmap"));
        drop(pages);
    }
}
