//! Grants over `/dev/xen/gntdev` (mapping another domain's grants) and
//! `/dev/xen/gntalloc` (granting pages of ours).
//!
//! Both devices work the same way: an ioctl with a header and an array of
//! grants sets up `count` pages and returns an offset ("index") in the
//! device file; `mmap` of the file at that offset maps them (gntdev maps
//! the grants at this point, so a bad grant fails the `mmap`); after
//! `munmap`, another ioctl with the index and count releases them.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use rustix::io::Errno;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

use super::abi::{
    GntallocAllocGref, GntallocDeallocGref, GntdevGrantRef, GntdevMapGrantRef, GntdevUnmapGrantRef,
    GNTALLOC_ALLOC_GREF_SIZE, GNTALLOC_FLAG_WRITABLE, GNTDEV_MAP_GRANT_REF_SIZE, IOCTL_GNTALLOC_ALLOC_GREF,
    IOCTL_GNTALLOC_DEALLOC_GREF, IOCTL_GNTDEV_MAP_GRANT_REF, IOCTL_GNTDEV_UNMAP_GRANT_REF,
};
use super::{context, ioctl, open_device, GNTALLOC_DEVICE, GNTDEV_DEVICE};
use crate::{DomId, GrantRef, GrantedPages, Grants, MappedPages, UnmapFn, PAGE_SIZE};

/// Grants through Linux's devices, each opened when first needed: a
/// backend that only maps grants never opens gntalloc, a frontend that
/// only grants never opens gntdev.
///
/// Mappings and granted pages hold the device file they came from, so
/// they outlive this value.
#[derive(Default)]
pub struct XenGrants {
    gntdev: Option<Arc<OwnedFd>>,
    gntalloc: Option<Arc<OwnedFd>>,
}

impl XenGrants {
    /// A handle that opens `/dev/xen/gntdev` and `/dev/xen/gntalloc` on
    /// first use (the error of a missing device comes from the call that
    /// needs it). Never fails today; a `Result` so that it may check
    /// something up front later without changing callers.
    pub fn open() -> io::Result<XenGrants> {
        Ok(XenGrants::default())
    }

    fn gntdev(&mut self) -> io::Result<&Arc<OwnedFd>> {
        if self.gntdev.is_none() {
            self.gntdev = Some(Arc::new(open_gntdev(Path::new(GNTDEV_DEVICE))?));
        }
        Ok(self.gntdev.as_ref().expect("opened above"))
    }

    fn gntalloc(&mut self) -> io::Result<&Arc<OwnedFd>> {
        if self.gntalloc.is_none() {
            let file = open_device(
                Path::new(GNTALLOC_DEVICE),
                false,
                "is this a Xen domain with the xen-gntalloc module loaded?",
            )?;
            self.gntalloc = Some(Arc::new(file));
        }
        Ok(self.gntalloc.as_ref().expect("opened above"))
    }
}

/// Opens gntdev at `path`.
pub(crate) fn open_gntdev(path: &Path) -> io::Result<OwnedFd> {
    open_device(path, false, "is this a Xen domain with the xen-gntdev module loaded?")
}

impl Grants for XenGrants {
    fn grant_pages(&mut self, remote: DomId, count: usize, writable: bool) -> io::Result<GrantedPages> {
        let gntalloc = Arc::clone(self.gntalloc()?);
        grant_pages(&gntalloc, remote, count, writable)
    }

    fn map_grants(&mut self, remote: DomId, refs: &[GrantRef], writable: bool) -> io::Result<MappedPages> {
        let gntdev = Arc::clone(self.gntdev()?);
        map_grant_refs(&gntdev, remote, refs, writable)
    }
}

impl fmt::Debug for XenGrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenGrants").field("gntdev", &self.gntdev).field("gntalloc", &self.gntalloc).finish()
    }
}

/// `count` pages in bytes; `EINVAL` for none or an overflow.
fn pages_len(count: usize) -> io::Result<usize> {
    match count.checked_mul(PAGE_SIZE) {
        Some(len) if count > 0 => Ok(len),
        _ => Err(Errno::INVAL.into()),
    }
}

/// Maps grants `refs` of domain `remote` through the gntdev file
/// `gntdev`, contiguously; unmapped (`munmap`, then the unmap ioctl) when
/// the pages are dropped.
pub(crate) fn map_grant_refs(
    gntdev: &Arc<OwnedFd>,
    remote: DomId,
    refs: &[GrantRef],
    writable: bool,
) -> io::Result<MappedPages> {
    let what = || match refs {
        [one] => format!("mapping grant {one} of domain {remote}"),
        many => format!("mapping grants {many:?} of domain {remote}"),
    };
    let len = pages_len(refs.len())?;
    let count = u32::try_from(refs.len()).map_err(|_| Errno::INVAL)?;
    let grants: Vec<GntdevGrantRef> =
        refs.iter().map(|&gref| GntdevGrantRef { domid: u32::from(remote), gref }).collect();
    let mut op = FlexBuffer::new(GntdevMapGrantRef { count, pad: 0, index: 0 }, &grants, GNTDEV_MAP_GRANT_REF_SIZE);
    // SAFETY: `op` holds a `struct ioctl_gntdev_map_grant_ref` with
    // `count` entries and at least the C struct's size, which is all the
    // driver reads and writes back; it lives across the call.
    unsafe { ioctl(gntdev.as_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, op.as_mut_ptr()) }.map_err(|e| context(e, what()))?;
    let index = op.header().index;
    let release = {
        let gntdev = Arc::clone(gntdev);
        move || {
            let mut unmap = GntdevUnmapGrantRef { index, count, pad: 0 };
            // SAFETY: the unmap ioctl reads one
            // `ioctl_gntdev_unmap_grant_ref`, which `unmap` is.
            let _ = unsafe { ioctl(gntdev.as_fd(), IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut unmap) };
        }
    };
    let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
    // gntdev maps the grants into the mapping.
    map_at_index(gntdev, index, len, prot, release, what)
}

/// Maps `len` bytes of the device file `device` at the offset `index` an
/// ioctl set up, shared, with `prot`. The mapping is ended by `munmap`
/// and then `release` (the ioctl that frees the index) when the pages are
/// dropped; `release` also runs when the mapping fails.
fn map_at_index(
    device: &Arc<OwnedFd>,
    index: u64,
    len: usize,
    prot: ProtFlags,
    release: impl FnOnce() + Send + 'static,
    what: impl Fn() -> String,
) -> io::Result<MappedPages> {
    // SAFETY: a new shared mapping of the device at an address the kernel
    // chooses overlaps nothing of ours; the driver puts its pages there.
    let mapped = unsafe { mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, device.as_fd(), index) };
    let base = match mapped.map(|p| NonNull::new(p.cast::<u8>())) {
        Ok(Some(base)) => base,
        Ok(None) => {
            release();
            return Err(io::Error::other(format!("{}: mmap returned a null address", what())));
        }
        Err(e) => {
            release();
            return Err(context(e.into(), what()));
        }
    };
    let unmap: UnmapFn = Box::new(move |base, len| {
        // SAFETY: `base..base+len` is the mapping made above, which the
        // MappedPages owned and no longer uses.
        let _ = unsafe { munmap(base.as_ptr().cast(), len) };
        release();
    });
    // SAFETY: `base` is a fresh, page-aligned mapping of `len` bytes (whole
    // pages), with `prot`, that only `unmap` ends.
    Ok(unsafe { MappedPages::from_raw(base, len, unmap) })
}

/// Allocates `count` zeroed pages through the gntalloc file `gntalloc`,
/// granted to `remote`, and maps them here (writable: they are ours).
fn grant_pages(gntalloc: &Arc<OwnedFd>, remote: DomId, count: usize, writable: bool) -> io::Result<GrantedPages> {
    let what = || format!("granting {count} pages to domain {remote}");
    let len = pages_len(count)?;
    let count32 = u32::try_from(count).map_err(|_| Errno::INVAL)?;
    let flags = if writable { GNTALLOC_FLAG_WRITABLE } else { 0 };
    let header = GntallocAllocGref { domid: remote, flags, count: count32, index: 0 };
    let mut op = FlexBuffer::new(header, &vec![0u32; count], GNTALLOC_ALLOC_GREF_SIZE);
    // SAFETY: `op` holds a `struct ioctl_gntalloc_alloc_gref` with room
    // for `count` references and at least the C struct's size, which is
    // all the driver reads and writes; it lives across the call.
    unsafe { ioctl(gntalloc.as_fd(), IOCTL_GNTALLOC_ALLOC_GREF, op.as_mut_ptr()) }.map_err(|e| context(e, what()))?;
    let index = op.header().index;
    let refs: Vec<GrantRef> = (0..count).map(|i| op.entry(i)).collect();
    let release = {
        let gntalloc = Arc::clone(gntalloc);
        move || {
            let mut dealloc = GntallocDeallocGref { index, count: count32 };
            // SAFETY: the dealloc ioctl reads one
            // `ioctl_gntalloc_dealloc_gref`, which `dealloc` is.
            let _ = unsafe { ioctl(gntalloc.as_fd(), IOCTL_GNTALLOC_DEALLOC_GREF, &mut dealloc) };
        }
    };
    // The grants end with the mapping: munmap, then dealloc (the driver
    // frees each page once the remote domain has unmapped it too).
    let pages = map_at_index(gntalloc, index, len, ProtFlags::READ | ProtFlags::WRITE, release, what)?;
    Ok(GrantedPages::new(pages, refs, None))
}

/// A C structure ending in a flexible array: a header `H`, then entries
/// `E` right after it, in one 8-aligned buffer of at least `min_size`
/// bytes (a C struct declared with a one-entry array is bigger than its
/// header and one entry when padding rounds it up, and drivers read and
/// write `sizeof` of it).
///
/// `H` and `E` must be plain integers in `#[repr(C)]` structs (any bit
/// pattern valid), aligned to at most 8, with the header's size a
/// multiple of the entries' alignment: what every `/dev/xen` ioctl
/// structure is. The constructor checks the layout.
struct FlexBuffer<H, E> {
    words: Vec<u64>,
    count: usize,
    shape: PhantomData<(H, E)>,
}

impl<H: Copy, E: Copy> FlexBuffer<H, E> {
    fn new(header: H, entries: &[E], min_size: usize) -> FlexBuffer<H, E> {
        assert!(align_of::<H>() <= 8 && align_of::<E>() <= 8, "an ioctl structure is at most 8-aligned");
        assert!(size_of::<H>() % align_of::<E>() == 0, "the entries follow the header, aligned");
        let bytes = (size_of::<H>() + size_of_val(entries)).max(min_size);
        let mut buffer = FlexBuffer { words: vec![0u64; bytes.div_ceil(8)], count: entries.len(), shape: PhantomData };
        // SAFETY: the buffer is 8-aligned and holds the header at 0 and
        // `entries.len()` entries after it (its size was computed so);
        // writes of Copy values through raw pointers into our own Vec.
        unsafe {
            buffer.words.as_mut_ptr().cast::<H>().write(header);
            let first = buffer.words.as_mut_ptr().cast::<u8>().add(size_of::<H>()).cast::<E>();
            for (i, entry) in entries.iter().enumerate() {
                first.add(i).write(*entry);
            }
        }
        buffer
    }

    /// The whole buffer, for the ioctl.
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }

    /// The header, as the driver left it.
    fn header(&self) -> H {
        // SAFETY: the header was written at offset 0 of this aligned
        // buffer; any bit pattern the driver wrote over it is a valid `H`
        // (plain integers, see the type's rules).
        unsafe { self.words.as_ptr().cast::<H>().read() }
    }

    /// Entry `i`, as the driver left it.
    fn entry(&self, i: usize) -> E {
        assert!(i < self.count, "entry {i} of {}", self.count);
        // SAFETY: entry `i < count` lies inside the buffer, aligned (see
        // `new`); any bit pattern is a valid `E`.
        unsafe { self.words.as_ptr().cast::<u8>().add(size_of::<H>()).cast::<E>().add(i).read() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gntdev_map_buffer_is_header_then_grants() {
        let grants = [GntdevGrantRef { domid: 7, gref: 1 }, GntdevGrantRef { domid: 7, gref: 9 }];
        let mut op = FlexBuffer::new(GntdevMapGrantRef { count: 2, pad: 0, index: 0 }, &grants, 24);
        assert_eq!(op.words.len() * 8, 32, "16-byte header and two 8-byte grants");
        let bytes: Vec<u8> = op.words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[0..4], &2u32.to_ne_bytes());
        assert_eq!(&bytes[16..20], &7u32.to_ne_bytes());
        assert_eq!(&bytes[28..32], &9u32.to_ne_bytes());
        // The driver writes the index at offset 8.
        op.words[1] = 0x5000;
        let _ = op.as_mut_ptr();
        assert_eq!(op.header().index, 0x5000);
        assert_eq!(op.entry(1).gref, 9);
    }

    #[test]
    fn gntalloc_buffer_for_one_page_is_the_c_struct_size() {
        // 16-byte header and one u32 reference: 20 bytes, but the C
        // struct is 24 and the driver copies 24 in and out.
        let op = FlexBuffer::new(GntallocAllocGref::default(), &[0u32], GNTALLOC_ALLOC_GREF_SIZE);
        assert_eq!(op.words.len() * 8, 24);
        let three = FlexBuffer::new(GntallocAllocGref::default(), &[0u32; 3], GNTALLOC_ALLOC_GREF_SIZE);
        assert_eq!(three.words.len() * 8, 32, "16 + 12 rounded up to a word");
    }

    #[test]
    fn gntalloc_references_are_read_after_the_header() {
        let mut op = FlexBuffer::new(GntallocAllocGref::default(), &[0u32; 3], GNTALLOC_ALLOC_GREF_SIZE);
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&11u32.to_ne_bytes());
        bytes[4..].copy_from_slice(&12u32.to_ne_bytes());
        op.words[2] = u64::from_ne_bytes(bytes);
        assert_eq!((op.entry(0), op.entry(1), op.entry(2)), (11, 12, 0));
    }

    #[test]
    fn mapping_nothing_is_invalid() {
        assert_eq!(pages_len(0).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(pages_len(usize::MAX).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(pages_len(2).unwrap(), 2 * PAGE_SIZE);
    }

    #[test]
    fn devices_open_only_when_needed_and_name_themselves_when_missing() {
        let mut grants = XenGrants::open().unwrap();
        assert!(grants.gntdev.is_none() && grants.gntalloc.is_none());
        if !Path::new(GNTDEV_DEVICE).exists() {
            let e = grants.map_grants(1, &[8], true).unwrap_err();
            assert!(e.to_string().starts_with("opening /dev/xen/gntdev: No such file or directory"), "{e}");
            assert!(e.to_string().contains("xen-gntdev module"), "{e}");
        }
        if !Path::new(GNTALLOC_DEVICE).exists() {
            let e = grants.grant_pages(1, 1, true).unwrap_err();
            assert!(e.to_string().starts_with("opening /dev/xen/gntalloc: No such file or directory"), "{e}");
        }
    }
}
