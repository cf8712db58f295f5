/* Prints the ioctl numbers, structure sizes and offsets, and constants of
 * Linux's /dev/xen devices and of Xen's getdomaininfolist sysctl, as the
 * C compiler sees them, one "key value" line each; tests/c_layout.rs
 * compares them with xen_platform::xen::abi. Written for this test (MIT OR
 * Apache-2.0).
 *
 * Headers: Linux's UAPI <xen/evtchn.h>, <xen/gntdev.h>, <xen/gntalloc.h>
 * (linux-libc-dev); libxen-dev's <xen/sys/privcmd.h> and
 * <xen/sys/xenbus_dev.h> (Linux's own <xen/privcmd.h> includes the
 * kernel-only <xen/interface/xen.h>; the two privcmd.h share an include
 * guard, so only one can be used, and the ioctls are the same); Xen's
 * public headers with __XEN_TOOLS__ (sysctl.h and domctl.h are tools-only).
 * Built with -std=gnu11: <xen/hvm/save.h>, which domctl.h includes, refuses
 * strict ISO C. */
#define __XEN_TOOLS__ 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <xen/xen.h>
#include <xen/sched.h>
#include <xen/grant_table.h>
#include <xen/evtchn.h>
#include <xen/gntdev.h>
#include <xen/gntalloc.h>
#include <xen/sys/privcmd.h>
#include <xen/sys/xenbus_dev.h>
#include <xen/sysctl.h>
#include <xen/domctl.h>

#define NUMBER(key, value) printf("%s %lu\n", key, (unsigned long)(value))
#define SIZE(key, type) NUMBER("size." key, sizeof(type))
#define OFFSET(key, type, field) NUMBER("offset." key "." #field, offsetof(type, field))

int main(void)
{
    NUMBER("ioctl.evtchn_bind_virq", IOCTL_EVTCHN_BIND_VIRQ);
    NUMBER("ioctl.evtchn_bind_interdomain", IOCTL_EVTCHN_BIND_INTERDOMAIN);
    NUMBER("ioctl.evtchn_bind_unbound_port", IOCTL_EVTCHN_BIND_UNBOUND_PORT);
    NUMBER("ioctl.evtchn_unbind", IOCTL_EVTCHN_UNBIND);
    NUMBER("ioctl.evtchn_notify", IOCTL_EVTCHN_NOTIFY);
    NUMBER("ioctl.evtchn_reset", IOCTL_EVTCHN_RESET);
    NUMBER("ioctl.gntdev_map_grant_ref", IOCTL_GNTDEV_MAP_GRANT_REF);
    NUMBER("ioctl.gntdev_unmap_grant_ref", IOCTL_GNTDEV_UNMAP_GRANT_REF);
    NUMBER("ioctl.gntalloc_alloc_gref", IOCTL_GNTALLOC_ALLOC_GREF);
    NUMBER("ioctl.gntalloc_dealloc_gref", IOCTL_GNTALLOC_DEALLOC_GREF);
    NUMBER("ioctl.privcmd_hypercall", IOCTL_PRIVCMD_HYPERCALL);
    NUMBER("ioctl.privcmd_mmapbatch_v2", IOCTL_PRIVCMD_MMAPBATCH_V2);
    NUMBER("ioctl.xenbus_backend_evtchn", IOCTL_XENBUS_BACKEND_EVTCHN);

    SIZE("evtchn_bind_virq", struct ioctl_evtchn_bind_virq);
    OFFSET("evtchn_bind_virq", struct ioctl_evtchn_bind_virq, virq);
    SIZE("evtchn_bind_interdomain", struct ioctl_evtchn_bind_interdomain);
    OFFSET("evtchn_bind_interdomain", struct ioctl_evtchn_bind_interdomain, remote_domain);
    OFFSET("evtchn_bind_interdomain", struct ioctl_evtchn_bind_interdomain, remote_port);
    SIZE("evtchn_bind_unbound_port", struct ioctl_evtchn_bind_unbound_port);
    OFFSET("evtchn_bind_unbound_port", struct ioctl_evtchn_bind_unbound_port, remote_domain);
    SIZE("evtchn_unbind", struct ioctl_evtchn_unbind);
    OFFSET("evtchn_unbind", struct ioctl_evtchn_unbind, port);
    SIZE("evtchn_notify", struct ioctl_evtchn_notify);
    OFFSET("evtchn_notify", struct ioctl_evtchn_notify, port);

    SIZE("gntdev_grant_ref", struct ioctl_gntdev_grant_ref);
    OFFSET("gntdev_grant_ref", struct ioctl_gntdev_grant_ref, domid);
    OFFSET("gntdev_grant_ref", struct ioctl_gntdev_grant_ref, ref);
    SIZE("gntdev_map_grant_ref", struct ioctl_gntdev_map_grant_ref);
    OFFSET("gntdev_map_grant_ref", struct ioctl_gntdev_map_grant_ref, count);
    OFFSET("gntdev_map_grant_ref", struct ioctl_gntdev_map_grant_ref, pad);
    OFFSET("gntdev_map_grant_ref", struct ioctl_gntdev_map_grant_ref, index);
    OFFSET("gntdev_map_grant_ref", struct ioctl_gntdev_map_grant_ref, refs);
    SIZE("gntdev_unmap_grant_ref", struct ioctl_gntdev_unmap_grant_ref);
    OFFSET("gntdev_unmap_grant_ref", struct ioctl_gntdev_unmap_grant_ref, index);
    OFFSET("gntdev_unmap_grant_ref", struct ioctl_gntdev_unmap_grant_ref, count);
    OFFSET("gntdev_unmap_grant_ref", struct ioctl_gntdev_unmap_grant_ref, pad);

    SIZE("gntalloc_alloc_gref", struct ioctl_gntalloc_alloc_gref);
    OFFSET("gntalloc_alloc_gref", struct ioctl_gntalloc_alloc_gref, domid);
    OFFSET("gntalloc_alloc_gref", struct ioctl_gntalloc_alloc_gref, flags);
    OFFSET("gntalloc_alloc_gref", struct ioctl_gntalloc_alloc_gref, count);
    OFFSET("gntalloc_alloc_gref", struct ioctl_gntalloc_alloc_gref, index);
    OFFSET("gntalloc_alloc_gref", struct ioctl_gntalloc_alloc_gref, gref_ids);
    SIZE("gntalloc_dealloc_gref", struct ioctl_gntalloc_dealloc_gref);
    OFFSET("gntalloc_dealloc_gref", struct ioctl_gntalloc_dealloc_gref, index);
    OFFSET("gntalloc_dealloc_gref", struct ioctl_gntalloc_dealloc_gref, count);
    NUMBER("const.gntalloc_flag_writable", GNTALLOC_FLAG_WRITABLE);

    SIZE("privcmd_hypercall", privcmd_hypercall_t);
    OFFSET("privcmd_hypercall", privcmd_hypercall_t, op);
    OFFSET("privcmd_hypercall", privcmd_hypercall_t, arg);
    SIZE("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t);
    OFFSET("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t, num);
    OFFSET("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t, dom);
    OFFSET("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t, addr);
    OFFSET("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t, arr);
    OFFSET("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t, err);
    SIZE("xen_pfn", xen_pfn_t);

    SIZE("xen_sysctl", struct xen_sysctl);
    OFFSET("xen_sysctl", struct xen_sysctl, cmd);
    OFFSET("xen_sysctl", struct xen_sysctl, interface_version);
    OFFSET("xen_sysctl", struct xen_sysctl, u);
    NUMBER("size.xen_sysctl.u", sizeof(((struct xen_sysctl *)0)->u));
    SIZE("sysctl_getdomaininfolist", struct xen_sysctl_getdomaininfolist);
    OFFSET("sysctl_getdomaininfolist", struct xen_sysctl_getdomaininfolist, first_domain);
    OFFSET("sysctl_getdomaininfolist", struct xen_sysctl_getdomaininfolist, max_domains);
    OFFSET("sysctl_getdomaininfolist", struct xen_sysctl_getdomaininfolist, buffer);
    OFFSET("sysctl_getdomaininfolist", struct xen_sysctl_getdomaininfolist, num_domains);
    SIZE("domctl_getdomaininfo", struct xen_domctl_getdomaininfo);
    OFFSET("domctl_getdomaininfo", struct xen_domctl_getdomaininfo, domain);
    OFFSET("domctl_getdomaininfo", struct xen_domctl_getdomaininfo, flags);

    NUMBER("const.sysctl_interface_version", XEN_SYSCTL_INTERFACE_VERSION);
    NUMBER("const.sysctl_getdomaininfolist", XEN_SYSCTL_getdomaininfolist);
    NUMBER("const.hypervisor_sysctl", __HYPERVISOR_sysctl);
    NUMBER("const.virq_dom_exc", VIRQ_DOM_EXC);
    NUMBER("const.domid_first_reserved", DOMID_FIRST_RESERVED);
    NUMBER("const.gnttab_reserved_xenstore", GNTTAB_RESERVED_XENSTORE);
    NUMBER("const.dominf_dying", XEN_DOMINF_dying);
    NUMBER("const.dominf_shutdown", XEN_DOMINF_shutdown);
    NUMBER("const.dominf_paused", XEN_DOMINF_paused);
    NUMBER("const.dominf_shutdownshift", XEN_DOMINF_shutdownshift);
    NUMBER("const.dominf_shutdownmask", XEN_DOMINF_shutdownmask);
    NUMBER("const.shutdown_poweroff", SHUTDOWN_poweroff);
    NUMBER("const.shutdown_reboot", SHUTDOWN_reboot);
    NUMBER("const.shutdown_suspend", SHUTDOWN_suspend);
    NUMBER("const.shutdown_crash", SHUTDOWN_crash);
    NUMBER("const.shutdown_watchdog", SHUTDOWN_watchdog);
    NUMBER("const.shutdown_soft_reset", SHUTDOWN_soft_reset);
    NUMBER("const.shutdown_max", SHUTDOWN_MAX);
    return 0;
}
