//! Foreign mapping over `/dev/xen/privcmd`, and a guest's xenstore page
//! by its reserved grant first.
//!
//! As libxenforeignmemory does: `mmap` of the privcmd file reserves a
//! range (privcmd marks it its own, empty), then
//! `IOCTL_PRIVCMD_MMAPBATCH_V2` fills it with the domain's frames, with an
//! error code per frame. A frame that is paged out answers `ENOENT` and is
//! retried; the range ends with `munmap`.

use std::ffi::c_int;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

use super::abi::{PrivcmdMmapbatchV2, XenPfn, GNTTAB_RESERVED_XENSTORE, IOCTL_PRIVCMD_MMAPBATCH_V2};
use super::grants::{map_grant_refs, open_gntdev};
use super::{context, ioctl, open_device, GNTDEV_DEVICE, PRIVCMD_DEVICE};
use crate::{DomId, ForeignMemory, MappedPages, UnmapFn, PAGE_SIZE};

/// How often a paged-out frame is asked for again, and how long to wait
/// before each: at most 100 ms in all, then `EAGAIN` (the daemon's loop
/// must not stall on one guest; Xen's paging is rarely used).
const PAGED_RETRIES: u32 = 100;
const PAGED_WAIT: Duration = Duration::from_millis(1);

/// Foreign mapping through `/dev/xen/privcmd` (privileged), and a
/// guest's xenstore page through `/dev/xen/gntdev` first
/// ([`ForeignMemory::map_store_page`]), opened when first needed.
pub struct XenForeignMemory {
    privcmd: OwnedFd,
    gntdev: Option<Arc<OwnedFd>>,
}

impl XenForeignMemory {
    /// Opens `/dev/xen/privcmd`.
    pub fn open() -> io::Result<XenForeignMemory> {
        XenForeignMemory::open_at(Path::new(PRIVCMD_DEVICE))
    }

    pub(crate) fn open_at(path: &Path) -> io::Result<XenForeignMemory> {
        let privcmd = open_device(path, false, "is this a Xen domain with the xen-privcmd module loaded?")?;
        Ok(XenForeignMemory { privcmd, gntdev: None })
    }

    /// The gntdev file, opened now if it was not.
    fn gntdev(&mut self) -> io::Result<Arc<OwnedFd>> {
        if self.gntdev.is_none() {
            self.gntdev = Some(Arc::new(open_gntdev(Path::new(GNTDEV_DEVICE))?));
        }
        Ok(Arc::clone(self.gntdev.as_ref().expect("opened above")))
    }

    /// One `IOCTL_PRIVCMD_MMAPBATCH_V2` for `frames` at `addr`; the
    /// per-frame codes go to `errors`. `Err` only for a failure of the
    /// call as a whole; `ENOENT` from it means some frame is paged out
    /// (its code says which), which is not an error here.
    fn batch(&self, domid: DomId, addr: usize, frames: &[XenPfn], errors: &mut [c_int]) -> io::Result<()> {
        assert_eq!(frames.len(), errors.len());
        let mut op = PrivcmdMmapbatchV2 {
            num: u32::try_from(frames.len()).map_err(|_| Errno::INVAL)?,
            dom: domid,
            addr: u64::try_from(addr).map_err(|_| Errno::INVAL)?,
            arr: frames.as_ptr(),
            err: errors.as_mut_ptr(),
        };
        // SAFETY: `op` is a `privcmd_mmapbatch_v2`; `arr` points to `num`
        // frame numbers the driver reads and `err` to `num` ints it
        // writes, both alive across the call; `addr..+num pages` lies in
        // a VMA of this privcmd file (the driver checks, and fills only
        // that range).
        match unsafe { ioctl(self.privcmd.as_fd(), IOCTL_PRIVCMD_MMAPBATCH_V2, &mut op) } {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Fills the privcmd range at `base` with `count` frames of `domid`
    /// from `gfn`, retrying paged-out frames.
    fn fill(&self, domid: DomId, gfn: u64, count: usize, base: usize) -> io::Result<()> {
        let frames: Vec<XenPfn> = (0..count)
            .map(|i| u64::try_from(i).ok().and_then(|i| gfn.checked_add(i)))
            .collect::<Option<_>>()
            .ok_or(Errno::INVAL)?;
        let mut errors: Vec<c_int> = vec![0; count];
        let range = || format!("mapping {count} frames from {gfn:#x} of domain {domid}");
        self.batch(domid, base, &frames, &mut errors).map_err(|e| context(e, range()))?;
        let mut tries = 0;
        while errors.iter().any(|&e| is_paged_out(e)) {
            if tries == PAGED_RETRIES {
                break;
            }
            tries += 1;
            std::thread::sleep(PAGED_WAIT);
            // Each run of paged-out frames again, at its place in the
            // range (privcmd fills holes of a range it already owns).
            let mut i = 0;
            while i < count {
                if !is_paged_out(errors[i]) {
                    i += 1;
                    continue;
                }
                let end = (i..count).find(|&j| !is_paged_out(errors[j])).unwrap_or(count);
                let addr = base + i * PAGE_SIZE;
                self.batch(domid, addr, &frames[i..end], &mut errors[i..end]).map_err(|e| context(e, range()))?;
                i = end;
            }
        }
        match errors.iter().position(|&e| e != 0) {
            None => Ok(()),
            Some(i) => Err(frame_error(domid, frames[i], errors[i])),
        }
    }
}

/// Whether a frame's code says it is paged out (try again).
fn is_paged_out(code: c_int) -> bool {
    code == -libc::ENOENT || code == -libc::EAGAIN
}

/// The error for frame `gfn` of `domid` that failed with code `code`
/// (a negative errno; a paged-out frame still paged out is `EAGAIN`).
fn frame_error(domid: DomId, gfn: u64, code: c_int) -> io::Error {
    let errno = if is_paged_out(code) { libc::EAGAIN } else { code.checked_neg().unwrap_or(libc::EINVAL) };
    let what = if is_paged_out(code) {
        format!("mapping frame {gfn:#x} of domain {domid} (still paged out after {PAGED_RETRIES} tries)")
    } else {
        format!("mapping frame {gfn:#x} of domain {domid}")
    };
    context(io::Error::from_raw_os_error(errno), what)
}

impl ForeignMemory for XenForeignMemory {
    fn map_foreign(&mut self, domid: DomId, gfn: u64, count: usize) -> io::Result<MappedPages> {
        let len = match count.checked_mul(PAGE_SIZE) {
            Some(len) if count > 0 => len,
            _ => return Err(Errno::INVAL.into()),
        };
        // SAFETY: a new shared mapping of the privcmd file at an address
        // the kernel chooses overlaps nothing of ours; privcmd leaves it
        // empty until the batch ioctl fills it.
        let reserved = unsafe {
            mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &self.privcmd, 0)
        }
        .map_err(|e| context(e.into(), format!("reserving {count} pages for domain {domid}'s frames")))?;
        let Some(base) = NonNull::new(reserved.cast::<u8>()) else {
            return Err(io::Error::other("mmap of privcmd returned a null address"));
        };
        let unmap: UnmapFn = Box::new(|base, len| {
            // SAFETY: `base..base+len` is the privcmd range mapped above,
            // which the MappedPages owned and no longer uses.
            let _ = unsafe { munmap(base.as_ptr().cast(), len) };
        });
        // SAFETY: `base` is a fresh, page-aligned mapping of `len` bytes
        // (whole pages), readable and writable once filled, that only
        // `unmap` ends. Owning it from here unmaps it on every error path.
        let pages = unsafe { MappedPages::from_raw(base, len, unmap) };
        self.fill(domid, gfn, count, base.as_ptr().addr())?;
        Ok(pages)
    }

    /// Grant reference 1 (`GNTTAB_RESERVED_XENSTORE`) through gntdev, as
    /// the C daemon maps every guest's page; if gntdev is missing or the
    /// grant does not map (a guest whose builder did not fill the grant),
    /// frame `gfn` through privcmd, as oxenstored maps every guest's page.
    /// When both fail, the error names both.
    fn map_store_page(&mut self, domid: DomId, gfn: u64) -> io::Result<MappedPages> {
        let by_grant =
            self.gntdev().and_then(|gntdev| map_grant_refs(&gntdev, domid, &[GNTTAB_RESERVED_XENSTORE], true));
        let grant_error = match by_grant {
            Ok(pages) => return Ok(pages),
            Err(e) => e,
        };
        self.map_foreign(domid, gfn, 1).map_err(|e| {
            let grant = GNTTAB_RESERVED_XENSTORE;
            context(
                e,
                format!("mapping domain {domid}'s xenstore page by grant {grant} failed ({grant_error}), and by frame"),
            )
        })
    }
}

impl fmt::Debug for XenForeignMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenForeignMemory").field("privcmd", &self.privcmd).field("gntdev", &self.gntdev).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_privcmd_names_it_and_the_module() {
        let e = XenForeignMemory::open_at(Path::new("/nonexistent/privcmd")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("opening /nonexistent/privcmd: No such file or directory"), "{e}");
        assert!(e.to_string().contains("xen-privcmd module"), "{e}");
    }

    #[test]
    fn paged_out_codes_are_enoent_and_eagain() {
        assert!(is_paged_out(-libc::ENOENT) && is_paged_out(-libc::EAGAIN));
        assert!(!is_paged_out(0) && !is_paged_out(-libc::EINVAL) && !is_paged_out(-libc::EPERM));
    }

    #[test]
    fn frame_errors_name_the_domain_and_the_frame() {
        use super::super::errno;
        let e = frame_error(7, 0xfeffc, -libc::EPERM);
        assert_eq!(e.to_string(), "mapping frame 0xfeffc of domain 7: Operation not permitted");
        assert_eq!(errno(&e), Some(libc::EPERM));
        let paged = frame_error(7, 0x10, -libc::ENOENT);
        assert_eq!(errno(&paged), Some(libc::EAGAIN));
        assert!(paged.to_string().contains("still paged out"), "{paged}");
    }
}
