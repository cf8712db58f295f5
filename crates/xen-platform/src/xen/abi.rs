//! The binary interface of Linux's `/dev/xen/*` devices and of the one
//! sysctl the daemon makes, as this module uses it: ioctl numbers, the
//! argument structures and Xen's constants.
//!
//! Sources: Linux's UAPI headers `<xen/evtchn.h>`, `<xen/gntdev.h>`,
//! `<xen/gntalloc.h>` (linux-libc-dev), libxen-dev's
//! `<xen/sys/privcmd.h>` and `<xen/sys/xenbus_dev.h>` (the same ioctls as
//! Linux's `<xen/privcmd.h>`, which cannot be included from user space:
//! it includes the kernel-only `<xen/interface/xen.h>`), and Xen's
//! public `<xen/xen.h>`, `<xen/sched.h>`, `<xen/grant_table.h>`,
//! `<xen/sysctl.h>` and `<xen/domctl.h>` (4.17, with `__XEN_TOOLS__`).
//! Every number and every offset below is compared with what the C
//! compiler says of those headers by `tests/c_layout.rs`.
//!
//! Public for that test only: not a stable interface.

use std::mem::{align_of, offset_of, size_of};

/// `_IOC(_IOC_NONE, kind, nr, size)` in the generic encoding that x86 and
/// Arm use (direction bits 30-31, size 16-29, type 8-15, number 0-7), the
/// only architectures Xen runs Linux domains on.
// The size is asserted to fit its 14 bits before the casts, which cannot
// then truncate; `From` is not callable in a const fn.
#[allow(clippy::cast_possible_truncation, clippy::cast_lossless)]
pub const fn ioc_none(kind: u8, nr: u8, size: usize) -> u32 {
    assert!(size < 1 << 14, "an ioctl argument's size has 14 bits");
    ((size as u32) << 16) | ((kind as u32) << 8) | nr as u32
}

// ---- /dev/xen/evtchn (Linux <xen/evtchn.h>) ----

/// `struct ioctl_evtchn_bind_virq`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnBindVirq {
    /// The virtual interrupt.
    pub virq: u32,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnBindInterdomain {
    /// The peer domain.
    pub remote_domain: u32,
    /// The peer's port.
    pub remote_port: u32,
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnBindUnboundPort {
    /// The domain that may bind the new port.
    pub remote_domain: u32,
}

/// `struct ioctl_evtchn_unbind` and `struct ioctl_evtchn_notify` (the
/// same shape).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnPort {
    /// The local port.
    pub port: u32,
}

/// `IOCTL_EVTCHN_BIND_VIRQ`: returns the new local port.
pub const IOCTL_EVTCHN_BIND_VIRQ: u32 = ioc_none(b'E', 0, size_of::<EvtchnBindVirq>());
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`: returns the new local port.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 = ioc_none(b'E', 1, size_of::<EvtchnBindInterdomain>());
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`: returns the new local port.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 = ioc_none(b'E', 2, size_of::<EvtchnBindUnboundPort>());
/// `IOCTL_EVTCHN_UNBIND`.
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc_none(b'E', 3, size_of::<EvtchnPort>());
/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc_none(b'E', 4, size_of::<EvtchnPort>());
/// `IOCTL_EVTCHN_RESET`: empties the queue of pending ports and clears
/// its overflow.
pub const IOCTL_EVTCHN_RESET: u32 = ioc_none(b'E', 5, 0);

// ---- /dev/xen/gntdev (Linux <xen/gntdev.h>) ----

/// `struct ioctl_gntdev_grant_ref`: one grant to map.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GntdevGrantRef {
    /// The granting domain.
    pub domid: u32,
    /// Its grant reference.
    pub gref: u32,
}

/// The fixed part of `struct ioctl_gntdev_map_grant_ref`; `count`
/// [`GntdevGrantRef`]s follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GntdevMapGrantRef {
    /// How many grants follow.
    pub count: u32,
    /// Zero.
    pub pad: u32,
    /// Out: the offset to `mmap` them at.
    pub index: u64,
}

/// `sizeof(struct ioctl_gntdev_map_grant_ref)` in C (with its one-entry
/// array): what the ioctl number encodes, and the least the kernel reads
/// and writes back.
pub const GNTDEV_MAP_GRANT_REF_SIZE: usize = size_of::<GntdevMapGrantRef>() + size_of::<GntdevGrantRef>();

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GntdevUnmapGrantRef {
    /// The offset the map ioctl returned.
    pub index: u64,
    /// How many grants.
    pub count: u32,
    /// Zero.
    pub pad: u32,
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = ioc_none(b'G', 0, GNTDEV_MAP_GRANT_REF_SIZE);
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 = ioc_none(b'G', 1, size_of::<GntdevUnmapGrantRef>());

// ---- /dev/xen/gntalloc (Linux <xen/gntalloc.h>) ----

/// The fixed part of `struct ioctl_gntalloc_alloc_gref`; `count` grant
/// references (`u32`) follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GntallocAllocGref {
    /// The domain to grant the pages to.
    pub domid: u16,
    /// [`GNTALLOC_FLAG_WRITABLE`] or 0.
    pub flags: u16,
    /// How many pages.
    pub count: u32,
    /// Out: the offset to `mmap` them at.
    pub index: u64,
}

/// `sizeof(struct ioctl_gntalloc_alloc_gref)` in C (with its one-entry
/// array, padded to 8): what the ioctl number encodes, and the least the
/// kernel reads and writes back, more than the header and one reference.
pub const GNTALLOC_ALLOC_GREF_SIZE: usize =
    (size_of::<GntallocAllocGref>() + size_of::<u32>()).next_multiple_of(align_of::<GntallocAllocGref>());

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GntallocDeallocGref {
    /// The offset the alloc ioctl returned.
    pub index: u64,
    /// How many pages.
    pub count: u32,
}

/// `GNTALLOC_FLAG_WRITABLE`: the remote domain may write the pages.
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;
/// `IOCTL_GNTALLOC_ALLOC_GREF`.
pub const IOCTL_GNTALLOC_ALLOC_GREF: u32 = ioc_none(b'G', 5, GNTALLOC_ALLOC_GREF_SIZE);
/// `IOCTL_GNTALLOC_DEALLOC_GREF`.
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u32 = ioc_none(b'G', 6, size_of::<GntallocDeallocGref>());

// ---- /dev/xen/privcmd (<xen/sys/privcmd.h>) ----

/// `privcmd_hypercall_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PrivcmdHypercall {
    /// The hypercall number (`__HYPERVISOR_*`).
    pub op: u64,
    /// Its arguments.
    pub arg: [u64; 5],
}

/// `privcmd_mmapbatch_v2_t`: map `num` frames of `dom` at `addr`, one
/// error code per frame into `err`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrivcmdMmapbatchV2 {
    /// Frames to map.
    pub num: u32,
    /// The domain that owns them.
    pub dom: u16,
    /// Where (inside a VMA made by `mmap` of the privcmd file).
    pub addr: u64,
    /// `num` frame numbers (`xen_pfn_t`).
    pub arr: *const XenPfn,
    /// `num` error codes (0 or a negative errno), written by the kernel.
    pub err: *mut std::ffi::c_int,
}

/// `xen_pfn_t` on x86_64 (`unsigned long`) and Arm (`uint64_t`).
pub type XenPfn = u64;

/// `IOCTL_PRIVCMD_HYPERCALL`: returns the hypercall's result, or fails
/// with its (negated) errno.
pub const IOCTL_PRIVCMD_HYPERCALL: u32 = ioc_none(b'P', 0, size_of::<PrivcmdHypercall>());
/// `IOCTL_PRIVCMD_MMAPBATCH_V2`.
pub const IOCTL_PRIVCMD_MMAPBATCH_V2: u32 = ioc_none(b'P', 4, size_of::<PrivcmdMmapbatchV2>());

// ---- /dev/xen/xenbus_backend (<xen/sys/xenbus_dev.h>) ----

/// `IOCTL_XENBUS_BACKEND_EVTCHN`: returns dom0's xenstore event-channel
/// port (the kernel's end, for a xenstored running in dom0).
pub const IOCTL_XENBUS_BACKEND_EVTCHN: u32 = ioc_none(b'B', 0, 0);

// ---- Xen's public headers ----

/// `__HYPERVISOR_sysctl`.
pub const HYPERVISOR_SYSCTL: u64 = 35;
/// `VIRQ_DOM_EXC`.
pub const VIRQ_DOM_EXC: u32 = 3;
/// `DOMID_FIRST_RESERVED`: domain ids from here on are not domains.
pub const DOMID_FIRST_RESERVED: u16 = 0x7ff0;
/// `GNTTAB_RESERVED_XENSTORE`: the grant reference a guest's toolstack
/// fills with its xenstore page.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// `XEN_SYSCTL_getdomaininfolist`.
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;

/// `struct xen_sysctl_getdomaininfolist`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SysctlGetdomaininfolist {
    /// The first domain id to report.
    pub first_domain: u16,
    /// The most entries to write.
    pub max_domains: u32,
    /// Where to write them (`XEN_GUEST_HANDLE_64`: an address).
    pub buffer: u64,
    /// Out: how many were written.
    pub num_domains: u32,
}

/// `struct xen_sysctl` as used for `XEN_SYSCTL_getdomaininfolist`: the
/// union is 128 bytes (its `pad` member), so the whole is 136.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenSysctl {
    /// `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// `XEN_SYSCTL_INTERFACE_VERSION` of the hypervisor's build.
    pub interface_version: u32,
    /// The command's arguments.
    pub getdomaininfolist: SysctlGetdomaininfolist,
    /// The rest of the union.
    pub pad: [u8; SYSCTL_UNION_SIZE - size_of::<SysctlGetdomaininfolist>()],
}

/// The size of `xen_sysctl`'s union (its `uint8_t pad[128]`).
pub const SYSCTL_UNION_SIZE: usize = 128;
/// Where the union starts in `xen_sysctl`.
pub const SYSCTL_UNION_OFFSET: usize = offset_of!(XenSysctl, getdomaininfolist);

/// The head of `struct xen_domctl_getdomaininfo`, the only fields read:
/// an entry is [`SysctlVersion::getdomaininfo_size`] bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DomctlGetdomaininfoHead {
    /// The domain's id.
    pub domain: u16,
    /// `pad1` since Xen 4.16 (before, implicit padding).
    pub pad1: u16,
    /// `XEN_DOMINF_*`.
    pub flags: u32,
}

/// `XEN_DOMINF_dying`.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_shutdown`.
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_paused`.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `XEN_DOMINF_shutdownshift`: where the shutdown code is in the flags.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// `XEN_DOMINF_shutdownmask`.
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;

/// One `XEN_SYSCTL_INTERFACE_VERSION` a hypervisor may have been built
/// with, and the size of `struct xen_domctl_getdomaininfo` (the stride of
/// the getdomaininfolist buffer) under it on this architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysctlVersion {
    /// The version number Xen checks (`EACCES` when it differs).
    pub version: u32,
    /// The Xen releases built with it.
    pub xen: &'static str,
    /// `sizeof(struct xen_domctl_getdomaininfo)`.
    pub getdomaininfo_size: usize,
}

/// The versions tried, in order: the 4.17 header's first, then the
/// newer, then the older. From Xen's history (`xen/include/public/sysctl.h`
/// and `domctl.h` at each `RELEASE-*` tag):
///
/// - 0x13: 4.15. `xen_domctl_getdomaininfo` had neither `pad1` (the same
///   offsets: `flags` was 4-aligned anyway) nor `gpaddr_bits`/`pad2[7]`.
/// - 0x14: 4.16 (commit 1e6706b0d1 added `gpaddr_bits` and bumped it).
/// - 0x15: 4.17 to 4.20 (bumped in 4.17 by 6b2b9b3405, x86's interrupt
///   controller virtualization capabilities in physinfo).
/// - 0x16: 4.21 and 4.22 (bumped by 4c3ce492ed, livepatch's list size).
///
/// `xen_sysctl_getdomaininfolist` and the fields of
/// `xen_domctl_getdomaininfo` are the same from 4.16 to 4.22; only the
/// architecture's `xen_arch_domainconfig` at its end differs: 8 bytes on
/// x86 in every one of these releases (so 104 bytes in 4.15, 112 from
/// 4.16), 12 on Arm to 4.20, 13 in 4.21, 16 in 4.22 (so 112 in 4.15, 120
/// from 4.16: the padding to 8 absorbs the growth).
pub const SYSCTL_VERSIONS: &[SysctlVersion] = &[
    SysctlVersion { version: 0x15, xen: "4.17-4.20", getdomaininfo_size: GETDOMAININFO_SIZE },
    SysctlVersion { version: 0x16, xen: "4.21-4.22", getdomaininfo_size: GETDOMAININFO_SIZE },
    SysctlVersion { version: 0x14, xen: "4.16", getdomaininfo_size: GETDOMAININFO_SIZE },
    SysctlVersion { version: 0x13, xen: "4.15", getdomaininfo_size: GETDOMAININFO_SIZE_4_15 },
];

/// `sizeof(struct xen_domctl_getdomaininfo)` from Xen 4.16 to 4.22.
#[cfg(target_arch = "x86_64")]
pub const GETDOMAININFO_SIZE: usize = 112;
/// `sizeof(struct xen_domctl_getdomaininfo)` in Xen 4.15.
#[cfg(target_arch = "x86_64")]
pub const GETDOMAININFO_SIZE_4_15: usize = 104;
/// `sizeof(struct xen_domctl_getdomaininfo)` from Xen 4.16 to 4.22.
#[cfg(target_arch = "aarch64")]
pub const GETDOMAININFO_SIZE: usize = 120;
/// `sizeof(struct xen_domctl_getdomaininfo)` in Xen 4.15.
#[cfg(target_arch = "aarch64")]
pub const GETDOMAININFO_SIZE_4_15: usize = 112;
/// No layout is known for this architecture: listing domains fails.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const GETDOMAININFO_SIZE: usize = 0;
/// No layout is known for this architecture: listing domains fails.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const GETDOMAININFO_SIZE_4_15: usize = 0;

/// `SHUTDOWN_*` codes up to `SHUTDOWN_MAX` (5), as in `<xen/sched.h>`.
pub const SHUTDOWN_MAX: u32 = 5;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<XenSysctl>() == 136);
    assert!(offset_of!(DomctlGetdomaininfoHead, flags) == 4);
    assert!(GNTDEV_MAP_GRANT_REF_SIZE == 24);
    assert!(GNTALLOC_ALLOC_GREF_SIZE == 24);
};
