//! The `xen` module's binary interface against the C headers:
//! `tests/c_layout/xen_devices.c` includes Linux's `<xen/evtchn.h>`,
//! `<xen/gntdev.h>`, `<xen/gntalloc.h>`, libxen-dev's
//! `<xen/sys/privcmd.h>` and `<xen/sys/xenbus_dev.h>`, and Xen's
//! `<xen/sysctl.h>` and `<xen/domctl.h>`, and prints every ioctl number,
//! structure size and offset and constant the module uses; the test
//! compiles and runs it and compares each line with
//! `xen_platform::xen::abi`.
//!
//! Without a C compiler or the headers the comparison is reported ignored
//! (xs-peers' harness), and fails under `XS_REQUIRE_PEERS=1` (as `.ci/run`
//! sets). The ioctl numbers are also checked against the values the
//! kernel headers give on x86_64, without any compiler.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::Path;

use xs_peers::c_program::C_HEADERS;
use xs_peers::harness::{run, Test};
use xs_peers::LINUX_LIBC_DEV;

use xen_platform::xen::abi::*;
use xen_platform::ShutdownReason;

/// Every line xen_devices.c prints, as the crate has it.
fn crate_facts() -> BTreeMap<String, usize> {
    let mut facts = BTreeMap::new();
    let mut put = |key: &str, value: usize| {
        facts.insert(key.to_owned(), value);
    };
    let ioctl = |n: u32| usize::try_from(n).unwrap();

    put("ioctl.evtchn_bind_virq", ioctl(IOCTL_EVTCHN_BIND_VIRQ));
    put("ioctl.evtchn_bind_interdomain", ioctl(IOCTL_EVTCHN_BIND_INTERDOMAIN));
    put("ioctl.evtchn_bind_unbound_port", ioctl(IOCTL_EVTCHN_BIND_UNBOUND_PORT));
    put("ioctl.evtchn_unbind", ioctl(IOCTL_EVTCHN_UNBIND));
    put("ioctl.evtchn_notify", ioctl(IOCTL_EVTCHN_NOTIFY));
    put("ioctl.evtchn_reset", ioctl(IOCTL_EVTCHN_RESET));
    put("ioctl.gntdev_map_grant_ref", ioctl(IOCTL_GNTDEV_MAP_GRANT_REF));
    put("ioctl.gntdev_unmap_grant_ref", ioctl(IOCTL_GNTDEV_UNMAP_GRANT_REF));
    put("ioctl.gntalloc_alloc_gref", ioctl(IOCTL_GNTALLOC_ALLOC_GREF));
    put("ioctl.gntalloc_dealloc_gref", ioctl(IOCTL_GNTALLOC_DEALLOC_GREF));
    put("ioctl.privcmd_hypercall", ioctl(IOCTL_PRIVCMD_HYPERCALL));
    put("ioctl.privcmd_mmapbatch_v2", ioctl(IOCTL_PRIVCMD_MMAPBATCH_V2));
    put("ioctl.xenbus_backend_evtchn", ioctl(IOCTL_XENBUS_BACKEND_EVTCHN));

    put("size.evtchn_bind_virq", size_of::<EvtchnBindVirq>());
    put("offset.evtchn_bind_virq.virq", offset_of!(EvtchnBindVirq, virq));
    put("size.evtchn_bind_interdomain", size_of::<EvtchnBindInterdomain>());
    put("offset.evtchn_bind_interdomain.remote_domain", offset_of!(EvtchnBindInterdomain, remote_domain));
    put("offset.evtchn_bind_interdomain.remote_port", offset_of!(EvtchnBindInterdomain, remote_port));
    put("size.evtchn_bind_unbound_port", size_of::<EvtchnBindUnboundPort>());
    put("offset.evtchn_bind_unbound_port.remote_domain", offset_of!(EvtchnBindUnboundPort, remote_domain));
    put("size.evtchn_unbind", size_of::<EvtchnPort>());
    put("offset.evtchn_unbind.port", offset_of!(EvtchnPort, port));
    put("size.evtchn_notify", size_of::<EvtchnPort>());
    put("offset.evtchn_notify.port", offset_of!(EvtchnPort, port));

    put("size.gntdev_grant_ref", size_of::<GntdevGrantRef>());
    put("offset.gntdev_grant_ref.domid", offset_of!(GntdevGrantRef, domid));
    put("offset.gntdev_grant_ref.ref", offset_of!(GntdevGrantRef, gref));
    put("size.gntdev_map_grant_ref", GNTDEV_MAP_GRANT_REF_SIZE);
    put("offset.gntdev_map_grant_ref.count", offset_of!(GntdevMapGrantRef, count));
    put("offset.gntdev_map_grant_ref.pad", offset_of!(GntdevMapGrantRef, pad));
    put("offset.gntdev_map_grant_ref.index", offset_of!(GntdevMapGrantRef, index));
    // The grants follow the fixed part.
    put("offset.gntdev_map_grant_ref.refs", size_of::<GntdevMapGrantRef>());
    put("size.gntdev_unmap_grant_ref", size_of::<GntdevUnmapGrantRef>());
    put("offset.gntdev_unmap_grant_ref.index", offset_of!(GntdevUnmapGrantRef, index));
    put("offset.gntdev_unmap_grant_ref.count", offset_of!(GntdevUnmapGrantRef, count));
    put("offset.gntdev_unmap_grant_ref.pad", offset_of!(GntdevUnmapGrantRef, pad));

    put("size.gntalloc_alloc_gref", GNTALLOC_ALLOC_GREF_SIZE);
    put("offset.gntalloc_alloc_gref.domid", offset_of!(GntallocAllocGref, domid));
    put("offset.gntalloc_alloc_gref.flags", offset_of!(GntallocAllocGref, flags));
    put("offset.gntalloc_alloc_gref.count", offset_of!(GntallocAllocGref, count));
    put("offset.gntalloc_alloc_gref.index", offset_of!(GntallocAllocGref, index));
    put("offset.gntalloc_alloc_gref.gref_ids", size_of::<GntallocAllocGref>());
    put("size.gntalloc_dealloc_gref", size_of::<GntallocDeallocGref>());
    put("offset.gntalloc_dealloc_gref.index", offset_of!(GntallocDeallocGref, index));
    put("offset.gntalloc_dealloc_gref.count", offset_of!(GntallocDeallocGref, count));
    put("const.gntalloc_flag_writable", usize::from(GNTALLOC_FLAG_WRITABLE));

    put("size.privcmd_hypercall", size_of::<PrivcmdHypercall>());
    put("offset.privcmd_hypercall.op", offset_of!(PrivcmdHypercall, op));
    put("offset.privcmd_hypercall.arg", offset_of!(PrivcmdHypercall, arg));
    put("size.privcmd_mmapbatch_v2", size_of::<PrivcmdMmapbatchV2>());
    put("offset.privcmd_mmapbatch_v2.num", offset_of!(PrivcmdMmapbatchV2, num));
    put("offset.privcmd_mmapbatch_v2.dom", offset_of!(PrivcmdMmapbatchV2, dom));
    put("offset.privcmd_mmapbatch_v2.addr", offset_of!(PrivcmdMmapbatchV2, addr));
    put("offset.privcmd_mmapbatch_v2.arr", offset_of!(PrivcmdMmapbatchV2, arr));
    put("offset.privcmd_mmapbatch_v2.err", offset_of!(PrivcmdMmapbatchV2, err));
    put("size.xen_pfn", size_of::<XenPfn>());

    put("size.xen_sysctl", size_of::<XenSysctl>());
    put("offset.xen_sysctl.cmd", offset_of!(XenSysctl, cmd));
    put("offset.xen_sysctl.interface_version", offset_of!(XenSysctl, interface_version));
    put("offset.xen_sysctl.u", SYSCTL_UNION_OFFSET);
    put("size.xen_sysctl.u", SYSCTL_UNION_SIZE);
    put("size.sysctl_getdomaininfolist", size_of::<SysctlGetdomaininfolist>());
    put("offset.sysctl_getdomaininfolist.first_domain", offset_of!(SysctlGetdomaininfolist, first_domain));
    put("offset.sysctl_getdomaininfolist.max_domains", offset_of!(SysctlGetdomaininfolist, max_domains));
    put("offset.sysctl_getdomaininfolist.buffer", offset_of!(SysctlGetdomaininfolist, buffer));
    put("offset.sysctl_getdomaininfolist.num_domains", offset_of!(SysctlGetdomaininfolist, num_domains));
    // The stride the module uses with the headers' interface version (the
    // first it tries).
    put("size.domctl_getdomaininfo", SYSCTL_VERSIONS[0].getdomaininfo_size);
    put("offset.domctl_getdomaininfo.domain", offset_of!(DomctlGetdomaininfoHead, domain));
    put("offset.domctl_getdomaininfo.flags", offset_of!(DomctlGetdomaininfoHead, flags));

    put("const.sysctl_interface_version", usize::try_from(SYSCTL_VERSIONS[0].version).unwrap());
    put("const.sysctl_getdomaininfolist", usize::try_from(XEN_SYSCTL_GETDOMAININFOLIST).unwrap());
    put("const.hypervisor_sysctl", usize::try_from(HYPERVISOR_SYSCTL).unwrap());
    put("const.virq_dom_exc", usize::try_from(VIRQ_DOM_EXC).unwrap());
    put("const.domid_first_reserved", usize::from(DOMID_FIRST_RESERVED));
    put("const.gnttab_reserved_xenstore", usize::try_from(GNTTAB_RESERVED_XENSTORE).unwrap());
    put("const.dominf_dying", usize::try_from(XEN_DOMINF_DYING).unwrap());
    put("const.dominf_shutdown", usize::try_from(XEN_DOMINF_SHUTDOWN).unwrap());
    put("const.dominf_paused", usize::try_from(XEN_DOMINF_PAUSED).unwrap());
    put("const.dominf_shutdownshift", usize::try_from(XEN_DOMINF_SHUTDOWNSHIFT).unwrap());
    put("const.dominf_shutdownmask", usize::try_from(XEN_DOMINF_SHUTDOWNMASK).unwrap());
    for (name, reason) in [
        ("poweroff", ShutdownReason::Poweroff),
        ("reboot", ShutdownReason::Reboot),
        ("suspend", ShutdownReason::Suspend),
        ("crash", ShutdownReason::Crash),
        ("watchdog", ShutdownReason::Watchdog),
        ("soft_reset", ShutdownReason::SoftReset),
    ] {
        put(&format!("const.shutdown_{name}"), usize::try_from(reason.code()).unwrap());
    }
    put("const.shutdown_max", usize::try_from(SHUTDOWN_MAX).unwrap());
    facts
}

/// Every line xen_devices.c prints, as the C compiler has it.
fn c_facts() -> BTreeMap<String, usize> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c_layout/xen_devices.c");
    // GNU C: <xen/hvm/save.h> (from domctl.h) refuses strict ISO C.
    let facts = xs_peers::c_program::facts_with(&source, &["-std=gnu11"]);
    facts.into_iter().map(|(k, v)| (k, v.parse().unwrap_or_else(|_| panic!("not a number: {v:?}")))).collect()
}

fn abi_matches_the_c_headers() {
    assert_eq!(crate_facts(), c_facts());
}

/// The numbers as Linux's headers give them on x86_64 and arm64 (the
/// generic `_IOC` encoding), checked without a compiler.
fn ioctl_numbers_are_the_kernels() {
    assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x0004_4500);
    assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
    assert_eq!(IOCTL_EVTCHN_BIND_UNBOUND_PORT, 0x0004_4502);
    assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
    assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
    assert_eq!(IOCTL_EVTCHN_RESET, 0x0000_4505);
    assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
    assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
    assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x0018_4705);
    assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x0010_4706);
    assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
    assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
    assert_eq!(IOCTL_XENBUS_BACKEND_EVTCHN, 0x0000_4200);
}

fn sysctl_versions_cover_xen_4_15_to_4_22_once_each() {
    let versions: Vec<u32> = SYSCTL_VERSIONS.iter().map(|v| v.version).collect();
    assert_eq!(versions, [0x15, 0x16, 0x14, 0x13], "the 4.17 header's first, then newer, then older");
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), versions.len());
}

fn main() -> std::process::ExitCode {
    run(vec![
        Test::new("abi_matches_the_c_headers", abi_matches_the_c_headers).needs(C_HEADERS).needs(&[LINUX_LIBC_DEV]),
        Test::new("ioctl_numbers_are_the_kernels", ioctl_numbers_are_the_kernels),
        Test::new("sysctl_versions_cover_xen_4_15_to_4_22_once_each", sysctl_versions_cover_xen_4_15_to_4_22_once_each),
    ])
}
