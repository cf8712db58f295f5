/*
 * The hypervisor that Debian's reference XenStore daemons expect, answered
 * from a plain Linux process, so that they run socket-only as dom0 on a
 * machine without Xen.  Why: the project's interoperability tests and
 * benchmarks compare our xenstored with Debian's C xenstored and oxenstored
 * (xen-utils-4.17), which otherwise refuse to start without /dev/xen.
 * The Xen 4.20 daemons (Debian 13) load it too: shim420.c includes this
 * file unchanged and adds what changed in Xen's tools interface since.
 *
 * xs-peers (src/shim.rs) compiles this file at run time against Debian's
 * libxen-dev headers and puts it in the daemon's LD_PRELOAD: a preloaded,
 * unversioned definition satisfies the daemons' versioned references to
 * libxenctrl, libxenevtchn and libxengnttab, so none of these calls reaches
 * the real libraries.  What is answered, and how:
 *
 *  - xc_interface_open / xengnttab_open / xenevtchn_open: a handle of our
 *    own, never touching privcmd or /dev/xen.
 *  - xc_domain_getinfo (C) and xc_domain_getinfolist (OCaml): dom0 exists,
 *    running; other domids exist when $XS_PEER_DOMAINS names them ("all",
 *    or ranges such as "1-10,77"), so permissions may name them.
 *  - xengnttab_map_grant_ref / xc_map_foreign_range: a domain's ring page is
 *    the file $XS_PEER_DIR/ring-<domid> (so an INTRODUCE does not crash the
 *    daemon; nothing drives such a ring here).
 *  - event channels: ports are numbers handed out in order; the fd the
 *    daemon polls is an eventfd that never fires; notify does nothing.
 *  - open("/proc/xen/xsd_kva" and "/proc/xen/xsd_port"), where the C daemon
 *    finds dom0's ring and port: $XS_PEER_DIR/xsd_kva and .../xsd_port,
 *    which the launcher writes before the start.
 *  - setrlimit(RLIMIT_NOFILE): oxenstored asks for fs.nr_open at start and
 *    exits when that is refused (no CAP_SYS_RESOURCE in a container); a
 *    refused raise is retried at the current hard limit.
 *
 * Written for this project from the public headers; the Rust side is the
 * only caller.  Set XS_PEER_TRACE=1 to have each answered call logged on
 * stderr (the daemon's log).
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

enum { PAGE = 4096, PORTS = 1024 };

/* First domid reserved by the hypervisor (DOMID_FIRST_RESERVED). */
#define FIRST_RESERVED_DOMID 0x7FF0u

static void trace(const char *fmt, ...)
{
    const char *on = getenv("XS_PEER_TRACE");
    va_list ap;

    if (!on || !*on)
        return;
    va_start(ap, fmt);
    fputs("xs-peers shim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* $XS_PEER_DIR/<name> into buf; 0 on success. */
static int state_path(char *buf, size_t len, const char *name)
{
    const char *dir = getenv("XS_PEER_DIR");
    int n;

    if (!dir || !*dir) {
        errno = ENOENT;
        return -1;
    }
    n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* ---- libc: the /proc/xen files, and oxenstored's descriptor limit ---- */

int open(const char *path, int flags, ...)
{
    static int (*next)(const char *, int, ...);
    char moved[4096];
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (!next)
        next = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    if (strncmp(path, "/proc/xen/", 10) == 0 &&
        (strcmp(path + 10, "xsd_kva") == 0 ||
         strcmp(path + 10, "xsd_port") == 0)) {
        if (state_path(moved, sizeof(moved), path + 10) != 0)
            return -1;
        trace("open %s as %s", path, moved);
        path = moved;
    }
    return next(path, flags, mode);
}

int setrlimit(__rlimit_resource_t resource, const struct rlimit *limit)
{
    static int (*next)(__rlimit_resource_t, const struct rlimit *);
    struct rlimit now, lower;

    if (!next)
        next = (int (*)(__rlimit_resource_t, const struct rlimit *))dlsym(
            RTLD_NEXT, "setrlimit");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    if (next(resource, limit) == 0)
        return 0;
    if (errno != EPERM || resource != RLIMIT_NOFILE ||
        getrlimit(RLIMIT_NOFILE, &now) != 0)
        return -1;
    lower.rlim_max = limit->rlim_max < now.rlim_max ? limit->rlim_max
                                                    : now.rlim_max;
    lower.rlim_cur = limit->rlim_cur < lower.rlim_max ? limit->rlim_cur
                                                      : lower.rlim_max;
    trace("setrlimit(NOFILE, %llu) refused, using %llu",
          (unsigned long long)limit->rlim_max,
          (unsigned long long)lower.rlim_max);
    return next(resource, &lower);
}

/* ---- which domains exist ---- */

static int domain_exists(uint32_t domid)
{
    const char *list = getenv("XS_PEER_DOMAINS");
    const char *p;

    if (domid == 0)
        return 1;
    if (domid >= FIRST_RESERVED_DOMID || !list)
        return 0;
    if (strcmp(list, "all") == 0)
        return 1;
    for (p = list; *p;) {
        char *end;
        unsigned long from = strtoul(p, &end, 10), to;

        if (end == p)
            return 0;
        to = from;
        if (*end == '-') {
            p = end + 1;
            to = strtoul(p, &end, 10);
            if (end == p)
                return 0;
        }
        if (domid >= from && domid <= to)
            return 1;
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* The next existing domid at or after `from`, or FIRST_RESERVED_DOMID. */
static uint32_t next_domain(uint32_t from)
{
    const char *list = getenv("XS_PEER_DOMAINS");

    /* Without a list only dom0 exists: no need to walk 32k domids. */
    if (!list || !*list)
        return from == 0 ? 0 : FIRST_RESERVED_DOMID;
    while (from < FIRST_RESERVED_DOMID && !domain_exists(from))
        from++;
    return from;
}

/* ---- libxenctrl ---- */

struct xc_interface_core {
    unsigned opened;
};

static xc_error no_error; /* zeroed: XC_ERROR_NONE */

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger;
    (void)dombuild_logger;
    (void)open_flags;
    trace("xc_interface_open");
    return calloc(1, sizeof(struct xc_interface_core));
}

int xc_interface_close(xc_interface *xch)
{
    free(xch);
    return 0;
}

const xc_error *xc_get_last_error(xc_interface *xch)
{
    (void)xch;
    return &no_error;
}

void xc_clear_last_error(xc_interface *xch)
{
    (void)xch;
}

const char *xc_error_code_to_desc(int code)
{
    return code == XC_ERROR_NONE ? "no error" : "error (xs-peers shim)";
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, xc_dominfo_t *info)
{
    unsigned int n = 0;
    uint32_t domid = first_domid;

    (void)xch;
    while (info && n < max_doms) {
        domid = next_domain(domid);
        if (domid >= FIRST_RESERVED_DOMID)
            break;
        memset(&info[n], 0, sizeof(info[n]));
        info[n].domid = domid;
        info[n].running = 1;
        info[n].nr_online_vcpus = 1;
        info[n].max_vcpu_id = 0;
        n++;
        domid++;
    }
    trace("xc_domain_getinfo(%u, %u) = %u", first_domid, max_doms, n);
    return (int)n;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain,
                          unsigned int max_domains, xc_domaininfo_t *info)
{
    unsigned int n = 0;
    uint32_t domid = first_domain;

    (void)xch;
    while (info && n < max_domains) {
        domid = next_domain(domid);
        if (domid >= FIRST_RESERVED_DOMID)
            break;
        memset(&info[n], 0, sizeof(info[n]));
        info[n].domain = (domid_t)domid;
        info[n].flags = XEN_DOMINF_running;
        n++;
        domid++;
    }
    trace("xc_domain_getinfolist(%u, %u) = %u", first_domain, max_domains, n);
    return (int)n;
}

/* A domain's ring: a page-sized file in the state directory. */
static void *map_ring(uint32_t domid)
{
    char name[32], path[4096];
    void *page;
    int fd;

    snprintf(name, sizeof(name), "ring-%u", domid);
    if (state_path(path, sizeof(path), name) != 0)
        return NULL;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, PAGE) != 0) {
        close(fd);
        return NULL;
    }
    page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    trace("ring of domain %u is %s", domid, path);
    return page == MAP_FAILED ? NULL : page;
}

void *xc_map_foreign_range(xc_interface *xch, uint32_t dom, int size,
                           int prot, unsigned long mfn)
{
    (void)xch;
    (void)prot;
    (void)mfn;
    if (size > PAGE) {
        errno = EINVAL;
        return NULL;
    }
    return map_ring(dom);
}

/* ---- libxengnttab ---- */

struct xengntdev_handle {
    unsigned opened;
};

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
    (void)logger;
    (void)open_flags;
    trace("xengnttab_open");
    return calloc(1, sizeof(struct xengntdev_handle));
}

int xengnttab_close(xengnttab_handle *xgt)
{
    free(xgt);
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    (void)xgt;
    (void)nr_grants;
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
                              uint32_t ref, int prot)
{
    (void)xgt;
    (void)ref;
    (void)prot;
    return map_ring(domid);
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address,
                    uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)count * PAGE);
}

/* ---- libxenevtchn ---- */

struct xenevtchn_handle {
    int fd;
    unsigned char bound[PORTS];
};

static xenevtchn_handle *evtchn_handle(int fd)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));

    if (!h) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    h->fd = fd;
    return h;
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                 unsigned int flags)
{
    int fd = eventfd(0, EFD_NONBLOCK |
                            ((flags & XENEVTCHN_NO_CLOEXEC) ? 0 : EFD_CLOEXEC));

    (void)logger;
    trace("xenevtchn_open: fd %d", fd);
    return fd < 0 ? NULL : evtchn_handle(fd);
}

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd,
                                   unsigned open_flags)
{
    (void)logger;
    (void)open_flags;
    return evtchn_handle(fd);
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (xce) {
        close(xce->fd);
        free(xce);
    }
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->fd;
}

static xenevtchn_port_or_error_t bind_port(xenevtchn_handle *xce)
{
    int port;

    for (port = 1; port < PORTS; port++)
        if (!__atomic_exchange_n(&xce->bound[port], 1, __ATOMIC_SEQ_CST))
            return port;
    errno = ENOSPC;
    return -1;
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce,
                                              unsigned int virq)
{
    xenevtchn_port_or_error_t port = bind_port(xce);

    trace("xenevtchn_bind_virq(%u) = %d", virq, port);
    return port;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
                                                     uint32_t domid,
                                                     evtchn_port_t remote_port)
{
    xenevtchn_port_or_error_t port = bind_port(xce);

    trace("xenevtchn_bind_interdomain(%u, %u) = %d", domid, remote_port,
          port);
    return port;
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce,
                                                      uint32_t domid)
{
    (void)domid;
    return bind_port(xce);
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    if (port == 0 || port >= PORTS) {
        errno = EINVAL;
        return -1;
    }
    __atomic_store_n(&xce->bound[port], 0, __ATOMIC_SEQ_CST);
    return 0;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce;
    (void)port;
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    (void)xce;
    errno = EAGAIN;
    return -1;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce;
    (void)port;
    return 0;
}
