/*
 * The shim of shim.c for the Xen 4.20 daemons of Debian 13 "trixie"
 * (xen-utils-4.20), which run chrooted in a trixie root (src/trixie.rs).
 * xs-peers compiles this file there, with the root's gcc against the root's
 * libxen-dev (Xen 4.20 headers), beside an unchanged copy of shim.c, which
 * it includes: one translation unit, one library.
 *
 * What changed in the tools interface between Xen 4.17 and 4.20, as far as
 * the two daemons are concerned:
 *
 *  - xc_dominfo_t and xc_domain_getinfo() left xenctrl.h in 4.18.  shim.c
 *    still defines xc_domain_getinfo() (the 4.17 C daemon imports it), so
 *    the fields it fills get a stand-in type here.  No 4.20 daemon imports
 *    that symbol: the definition is merely unused.
 *  - xc_domain_getinfo_single() (new in 4.18) is how both 4.20 daemons ask
 *    about one domain.  Same answer as the other getinfo calls: dom0 and
 *    the domains $XS_PEER_DOMAINS names exist, running; any other fails
 *    with ESRCH, as the hypercall does for a domain that does not exist.
 *
 * Nothing else the 4.20 daemons import is new (checked with nm -D: the C
 * daemon imports three xc_* calls and the same event-channel and grant-table
 * calls as 4.17; oxenstored the same set as 4.17 plus this one).
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <xenctrl.h>

#if !defined(XEN_DOMCTL_INTERFACE_VERSION) || XEN_DOMCTL_INTERFACE_VERSION < 0x16
#error "shim420.c is for Xen >= 4.18 headers; Xen 4.17 builds shim.c alone"
#endif

/* The fields of the type removed in Xen 4.18 that shim.c fills. */
typedef struct xs_peers_dominfo {
    uint32_t domid;
    unsigned int running : 1;
    unsigned int nr_online_vcpus;
    unsigned int max_vcpu_id;
} xc_dominfo_t;

#include "shim.c"

int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid,
                             xc_domaininfo_t *info)
{
    (void)xch;
    if (!domain_exists(domid)) {
        trace("xc_domain_getinfo_single(%u): no such domain", domid);
        errno = ESRCH;
        return -1;
    }
    if (info) {
        memset(info, 0, sizeof(*info));
        info->domain = (domid_t)domid;
        info->flags = XEN_DOMINF_running;
        info->nr_online_vcpus = 1;
        info->max_vcpu_id = 0;
    }
    trace("xc_domain_getinfo_single(%u): running", domid);
    return 0;
}
