//! Domain states by the `XEN_SYSCTL_getdomaininfolist` hypercall, made
//! through `/dev/xen/privcmd` (what libxenctrl's `xc_domain_getinfolist`
//! does).
//!
//! # The interface version
//!
//! Xen refuses a sysctl (`EACCES`) whose `interface_version` is not the
//! one it was built with, and the size of each returned
//! `xen_domctl_getdomaininfo` (the stride of the buffer) depends on the
//! release. [`SYSCTL_VERSIONS`] lists the versions of Xen 4.15 to 4.22
//! with their strides; the first call tries them in order and the one
//! that works is kept for the life of the handle. If the hypervisor
//! refuses them all, the call fails with `EACCES` and a message naming
//! the versions tried (a newer or older Xen than this build knows, or an
//! XSM policy denying the call).
//!
//! # The buffer
//!
//! The hypervisor reads and writes the sysctl and the list in this
//! process's memory, by virtual address, while it runs the call; memory
//! that is paged out or being migrated at that moment makes the call
//! fail. Linux (4.18 and later) hands out memory that is never moved from
//! `/dev/xen/hypercall` (`privcmd-buf`), which libxencall uses, and so does
//! this module; without that device it falls back, as libxencall does, to
//! anonymous memory that is locked (`mlock`), kept from children
//! (`MADV_DONTFORK`) and touched, which the kernel may still migrate.
//! The buffer is taken at the first call, and taken again in a process
//! forked since (a child has no locked or not-copied mapping).

use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;

use rustix::io::Errno;
use rustix::mm::{madvise, mlock, mmap, mmap_anonymous, munmap, Advice, MapFlags, ProtFlags};
use rustix::process::{getpid, Pid};

use super::abi::{
    DomctlGetdomaininfoHead, PrivcmdHypercall, SysctlGetdomaininfolist, SysctlVersion, XenSysctl, DOMID_FIRST_RESERVED,
    HYPERVISOR_SYSCTL, IOCTL_PRIVCMD_HYPERCALL, SYSCTL_UNION_SIZE, SYSCTL_VERSIONS, XEN_DOMINF_DYING,
    XEN_DOMINF_PAUSED, XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT,
    XEN_SYSCTL_GETDOMAININFOLIST,
};
use super::{context, errno, ioctl, open_device, HYPERCALL_DEVICE, PRIVCMD_DEVICE};
use crate::{DomId, DomainState, DomainStates, ShutdownReason, PAGE_SIZE};

/// Pages of the hypercall buffer: the sysctl, then the list.
const BUFFER_PAGES: usize = 8;
/// Where the list starts in the buffer (after the sysctl, 8-aligned).
const LIST_OFFSET: usize = 256;

// The sysctl fits before the list, and a call lists at least 256 domains.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const _: () = {
    assert!(size_of::<XenSysctl>() <= LIST_OFFSET);
    assert!((BUFFER_PAGES * PAGE_SIZE - LIST_OFFSET) / super::abi::GETDOMAININFO_SIZE >= 256);
};

/// Domain states through the hypervisor (privileged: dom0, or a domain
/// XSM lets list domains).
pub struct XenDomainStates {
    privcmd: OwnedFd,
    buffer: Option<HypercallBuffer>,
    /// The entry of [`SYSCTL_VERSIONS`] the hypervisor accepted.
    version: Option<SysctlVersion>,
}

impl XenDomainStates {
    /// Opens `/dev/xen/privcmd` (the hypercall buffer is taken at the
    /// first call).
    pub fn open() -> io::Result<XenDomainStates> {
        XenDomainStates::open_at(Path::new(PRIVCMD_DEVICE))
    }

    pub(crate) fn open_at(path: &Path) -> io::Result<XenDomainStates> {
        let privcmd = open_device(path, false, "is this a Xen domain with the xen-privcmd module loaded?")?;
        Ok(XenDomainStates { privcmd, buffer: None, version: None })
    }

    /// The sysctl interface version in use, once a call has worked.
    pub fn interface_version(&self) -> Option<u32> {
        self.version.map(|v| v.version)
    }

    /// Takes this process's hypercall buffer if it has none.
    fn ensure_buffer(&mut self) -> io::Result<()> {
        let pid = getpid();
        if self.buffer.as_ref().is_some_and(|b| b.pid != pid) {
            self.buffer = None;
        }
        if self.buffer.is_none() {
            self.buffer = Some(HypercallBuffer::new(BUFFER_PAGES)?);
        }
        Ok(())
    }

    /// Up to `max` domains from `first` on: each one's id and flags.
    /// Returns them and how many the call could have returned (fewer
    /// means there are no more).
    fn list(&mut self, first: DomId, max: usize) -> io::Result<(Vec<(DomId, u32)>, usize)> {
        let candidates: Vec<SysctlVersion> = match self.version {
            Some(known) => vec![known],
            None => SYSCTL_VERSIONS.to_vec(),
        };
        let probing = self.version.is_none();
        for version in candidates {
            let stride = version.getdomaininfo_size;
            if stride == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "listing domains: the layout of xen_domctl_getdomaininfo is not known for this architecture",
                ));
            }
            self.ensure_buffer()?;
            let buffer = self.buffer.as_ref().expect("taken above");
            let room = (buffer.len - LIST_OFFSET) / stride;
            let asked = max.min(room);
            match buffer.getdomaininfolist(self.privcmd.as_fd(), version.version, first, asked) {
                Ok(count) => {
                    self.version = Some(version);
                    let count = usize::try_from(count).unwrap_or(usize::MAX).min(asked);
                    let bytes = buffer.list_bytes(count * stride);
                    return Ok((parse_list(&bytes, stride, count), asked));
                }
                Err(e) if probing && errno(&e) == Some(libc::EACCES) => continue,
                Err(e) => {
                    let what = format!(
                        "XEN_SYSCTL_getdomaininfolist (interface version {:#x}, Xen {})",
                        version.version, version.xen
                    );
                    return Err(context(e, what));
                }
            }
        }
        Err(context(io::Error::from_raw_os_error(libc::EACCES), refused_every_version()))
    }
}

/// What the error says when Xen refused every known version.
fn refused_every_version() -> String {
    let tried: Vec<String> = SYSCTL_VERSIONS.iter().map(|v| format!("{:#x} (Xen {})", v.version, v.xen)).collect();
    format!(
        "XEN_SYSCTL_getdomaininfolist: the hypervisor refused every sysctl interface version this build knows, {} \
         (a Xen release this build does not know, or an XSM policy denying the call)",
        tried.join(", ")
    )
}

impl DomainStates for XenDomainStates {
    fn states(&mut self) -> io::Result<Vec<(DomId, DomainState)>> {
        let mut states = Vec::new();
        let mut first: DomId = 0;
        loop {
            let (entries, asked) = self.list(first, usize::MAX)?;
            let full = entries.len() >= asked;
            let mut last = None;
            for (domid, flags) in entries {
                // Ascending ids from `first` on; anything else is ignored
                // (and ends the walk, which must not loop).
                if domid < first || last.is_some_and(|l| domid <= l) {
                    continue;
                }
                states.push((domid, decode_state(flags)));
                last = Some(domid);
            }
            match last {
                Some(last) if full && last < DOMID_FIRST_RESERVED - 1 => first = last + 1,
                _ => return Ok(states),
            }
        }
    }

    fn state(&mut self, domid: DomId) -> io::Result<Option<DomainState>> {
        if domid >= DOMID_FIRST_RESERVED {
            return Ok(None);
        }
        let (entries, _) = self.list(domid, 1)?;
        Ok(entries.first().filter(|&&(id, _)| id == domid).map(|&(_, flags)| decode_state(flags)))
    }
}

impl fmt::Debug for XenDomainStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenDomainStates")
            .field("privcmd", &self.privcmd)
            .field("buffer", &self.buffer)
            .field("version", &self.version)
            .finish()
    }
}

/// A domain's state from its `XEN_DOMINF_*` flags: dying first, then
/// shut down (with the guest's code; a code Xen does not define reads as
/// a crash), then paused, else running.
pub(crate) fn decode_state(flags: u32) -> DomainState {
    if flags & XEN_DOMINF_DYING != 0 {
        DomainState::Dying
    } else if flags & XEN_DOMINF_SHUTDOWN != 0 {
        let reason = match (flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK {
            0 => ShutdownReason::Poweroff,
            1 => ShutdownReason::Reboot,
            2 => ShutdownReason::Suspend,
            3 => ShutdownReason::Crash,
            4 => ShutdownReason::Watchdog,
            5 => ShutdownReason::SoftReset,
            _ => ShutdownReason::Crash,
        };
        DomainState::Shutdown(reason)
    } else if flags & XEN_DOMINF_PAUSED != 0 {
        DomainState::Paused
    } else {
        DomainState::Running
    }
}

/// The id and flags of each of `count` entries of `stride` bytes.
fn parse_list(bytes: &[u8], stride: usize, count: usize) -> Vec<(DomId, u32)> {
    let domain = offset_of!(DomctlGetdomaininfoHead, domain);
    let flags = offset_of!(DomctlGetdomaininfoHead, flags);
    (0..count)
        .filter_map(|i| {
            let entry = bytes.get(i * stride..(i + 1) * stride)?;
            let id = DomId::from_ne_bytes(entry.get(domain..domain + 2)?.try_into().ok()?);
            let flags = u32::from_ne_bytes(entry.get(flags..flags + 4)?.try_into().ok()?);
            Some((id, flags))
        })
        .collect()
}

/// Memory the hypervisor may read and write during a hypercall (see the
/// module's documentation): the sysctl at its start, the list from
/// [`LIST_OFFSET`].
struct HypercallBuffer {
    base: NonNull<u8>,
    len: usize,
    /// `/dev/xen/hypercall`, kept open while mapped (the driver frees the
    /// pages when the file is closed); `None` for locked anonymous memory.
    device: Option<OwnedFd>,
    /// The process that mapped it.
    pid: Pid,
}

// SAFETY: the buffer is an address range owned by this value alone; it is
// used (and unmapped) only through `&mut XenDomainStates`, from whichever
// thread holds that.
unsafe impl Send for HypercallBuffer {}

impl HypercallBuffer {
    /// `pages` pages from `/dev/xen/hypercall`, or locked anonymous
    /// memory when the device does not exist.
    fn new(pages: usize) -> io::Result<HypercallBuffer> {
        let len = pages * PAGE_SIZE;
        let pid = getpid();
        match open_device(Path::new(HYPERCALL_DEVICE), false, "is the xen-privcmd module loaded?") {
            Ok(device) => {
                // SAFETY: a new shared mapping of the device at an address
                // the kernel chooses overlaps nothing of ours.
                let base = unsafe {
                    mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &device, 0)
                }
                .map_err(|e| context(e.into(), format!("mapping {len} bytes of {HYPERCALL_DEVICE}")))?;
                let base = NonNull::new(base.cast()).ok_or(Errno::NOMEM)?;
                Ok(HypercallBuffer { base, len, device: Some(device), pid })
            }
            Err(e) if errno(&e) == Some(libc::ENOENT) => HypercallBuffer::anonymous(len, pid),
            Err(e) => Err(e),
        }
    }

    /// Locked, not inherited, touched anonymous memory (libxencall's
    /// fallback without the device).
    fn anonymous(len: usize, pid: Pid) -> io::Result<HypercallBuffer> {
        // SAFETY: a new private anonymous mapping at an address the kernel
        // chooses overlaps nothing of ours.
        let base = unsafe {
            mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
        }?;
        let base = NonNull::new(base.cast::<u8>()).ok_or(Errno::NOMEM)?;
        // Owned from here: dropping it unmaps the range on the error paths.
        let buffer = HypercallBuffer { base, len, device: None, pid };
        let what = "locking an anonymous hypercall buffer (there is no /dev/xen/hypercall)";
        // SAFETY: the range is the mapping just made, which we own.
        unsafe { mlock(base.as_ptr().cast(), len) }.map_err(|e| context(e.into(), what))?;
        // SAFETY: as above; a child does not get the range.
        unsafe { madvise(base.as_ptr().cast(), len, Advice::LinuxDontFork) }.map_err(|e| context(e.into(), what))?;
        // SAFETY: the range is ours, readable and writable, and nothing
        // else refers to it yet; zeroing touches every page.
        unsafe { base.as_ptr().write_bytes(0, len) };
        Ok(buffer)
    }

    /// One `XEN_SYSCTL_getdomaininfolist` of up to `max` domains from
    /// `first` on, with interface version `version`, through `privcmd`;
    /// returns how many the hypervisor says it wrote at [`LIST_OFFSET`].
    fn getdomaininfolist(
        &self,
        privcmd: std::os::fd::BorrowedFd<'_>,
        version: u32,
        first: DomId,
        max: usize,
    ) -> io::Result<u32> {
        let sysctl_at = self.base.cast::<XenSysctl>();
        let list_at = u64::try_from(self.base.as_ptr().addr() + LIST_OFFSET).map_err(|_| Errno::INVAL)?;
        let sysctl = XenSysctl {
            cmd: XEN_SYSCTL_GETDOMAININFOLIST,
            interface_version: version,
            getdomaininfolist: SysctlGetdomaininfolist {
                first_domain: first,
                max_domains: u32::try_from(max).map_err(|_| Errno::INVAL)?,
                buffer: list_at,
                num_domains: 0,
            },
            pad: [0; SYSCTL_UNION_SIZE - size_of::<SysctlGetdomaininfolist>()],
        };
        // SAFETY: the buffer starts with room for a `XenSysctl` (136 bytes
        // of a page), aligned (a page); only raw pointers reach it, and
        // the hypervisor writes it only during the ioctl below.
        unsafe { sysctl_at.as_ptr().write_volatile(sysctl) };
        let mut call = PrivcmdHypercall {
            op: HYPERVISOR_SYSCTL,
            arg: [u64::try_from(sysctl_at.as_ptr().addr()).map_err(|_| Errno::INVAL)?, 0, 0, 0, 0],
        };
        // SAFETY: the ioctl reads one `privcmd_hypercall`, which `call`
        // is; the hypervisor then reads and writes the sysctl at arg[0]
        // and up to `max` entries at `list_at`, all inside this buffer
        // (the caller keeps `max` within it), which stays mapped.
        unsafe { ioctl(privcmd, IOCTL_PRIVCMD_HYPERCALL, &mut call) }?;
        // SAFETY: as for the write above.
        let answer = unsafe { sysctl_at.as_ptr().read_volatile() };
        Ok(answer.getdomaininfolist.num_domains)
    }

    /// A copy of the first `len` bytes of the list.
    fn list_bytes(&self, len: usize) -> Vec<u8> {
        assert!(LIST_OFFSET + len <= self.len, "the list is inside the buffer");
        let mut bytes = vec![0u8; len];
        // SAFETY: the source range lies inside the mapping (asserted), the
        // destination is a Vec of that length, and they do not overlap;
        // the hypervisor no longer writes the buffer (the call returned).
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(LIST_OFFSET), bytes.as_mut_ptr(), len) };
        bytes
    }
}

impl Drop for HypercallBuffer {
    fn drop(&mut self) {
        // In a child, locked anonymous memory was not inherited: the range
        // is not ours to unmap (something else may be there now).
        if self.device.is_none() && self.pid != getpid() {
            return;
        }
        // SAFETY: the range is the mapping this value made and owns, in
        // this process; nothing refers to it past this point. The device
        // (if any) is closed after, as the driver wants.
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl fmt::Debug for HypercallBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HypercallBuffer")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("device", &self.device.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_decode_dying_before_shutdown_before_paused() {
        use DomainState::*;
        assert_eq!(decode_state(0), Running);
        assert_eq!(decode_state(XEN_DOMINF_PAUSED), Paused);
        assert_eq!(decode_state(XEN_DOMINF_SHUTDOWN | XEN_DOMINF_PAUSED), Shutdown(ShutdownReason::Poweroff));
        assert_eq!(decode_state(XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN | (3 << 16)), Dying);
        // Blocked, running, HVM, HAP and other bits say nothing of state.
        assert_eq!(decode_state((1 << 1) | (1 << 4) | (1 << 5) | (1 << 8)), Running);
    }

    #[test]
    fn shutdown_codes_map_to_reasons() {
        let reasons: Vec<DomainState> =
            (0..=6u32).map(|code| decode_state(XEN_DOMINF_SHUTDOWN | (code << XEN_DOMINF_SHUTDOWNSHIFT))).collect();
        use ShutdownReason::*;
        let expected = [Poweroff, Reboot, Suspend, Crash, Watchdog, SoftReset, Crash];
        assert_eq!(reasons, expected.map(DomainState::Shutdown));
    }

    #[test]
    fn list_entries_are_read_at_the_stride() {
        let stride = 112;
        let mut bytes = vec![0xaau8; 3 * stride];
        for (i, (id, flags)) in [(0u16, 0x20u32), (5, 0x8), (700, 0x1)].into_iter().enumerate() {
            bytes[i * stride..i * stride + 2].copy_from_slice(&id.to_ne_bytes());
            bytes[i * stride + 4..i * stride + 8].copy_from_slice(&flags.to_ne_bytes());
        }
        assert_eq!(parse_list(&bytes, stride, 3), [(0, 0x20), (5, 0x8), (700, 0x1)]);
        assert_eq!(parse_list(&bytes, stride, 4).len(), 3, "a count beyond the bytes is cut");
    }

    #[test]
    fn probing_tries_the_header_version_first_and_names_all_when_refused() {
        assert_eq!(SYSCTL_VERSIONS[0].version, 0x15);
        assert!(SYSCTL_VERSIONS.iter().all(|v| v.getdomaininfo_size % 8 == 0));
        let text = refused_every_version();
        for version in ["0x15 (Xen 4.17-4.20)", "0x16 (Xen 4.21-4.22)", "0x14 (Xen 4.16)", "0x13 (Xen 4.15)"] {
            assert!(text.contains(version), "{text}");
        }
    }

    #[test]
    fn open_without_privcmd_names_it() {
        let e = XenDomainStates::open_at(Path::new("/nonexistent/privcmd")).unwrap_err();
        assert!(e.to_string().starts_with("opening /nonexistent/privcmd: No such file or directory"), "{e}");
    }

    #[test]
    fn anonymous_buffer_is_zeroed_and_copies_out_the_list() {
        if Path::new(HYPERCALL_DEVICE).exists() {
            return;
        }
        let buffer = match HypercallBuffer::new(2) {
            Ok(buffer) => buffer,
            // A locked-memory limit below two pages: nothing to check.
            Err(e) if matches!(errno(&e), Some(libc::ENOMEM | libc::EPERM | libc::EAGAIN)) => return,
            Err(e) => panic!("{e}"),
        };
        assert!(buffer.device.is_none());
        assert_eq!(buffer.list_bytes(16), [0; 16]);
        // SAFETY: the buffer is ours and two pages long.
        unsafe { buffer.base.as_ptr().add(LIST_OFFSET + 1).write(7) };
        assert_eq!(buffer.list_bytes(2), [0, 7]);
    }
}
