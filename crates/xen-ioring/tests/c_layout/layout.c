/* Prints the layout facts of Xen's io/ring.h as the C compiler sees them,
 * one "key value" line each; tests/c_layout.rs compares them with the
 * crate's. Written for this test (MIT OR Apache-2.0). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xen/xen.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

/* A sample protocol: a request with tail padding, a smaller response. */
struct sample_request { uint64_t id; uint32_t op; uint16_t len; uint8_t flags; };
struct sample_response { uint64_t id; int16_t status; };
DEFINE_RING_TYPES(sample, struct sample_request, struct sample_response);

/* The larger message is not the more aligned one: the union rounds up. */
struct odd_request { uint32_t a, b, c; };
struct odd_response { uint64_t v; };
DEFINE_RING_TYPES(odd, struct odd_request, struct odd_response);

/* Memory for the pointer form of the size macro (__RING_SIZE). */
static _Alignas(4096) unsigned char pages[4 * 4096];

#define MESSAGES(name, req, rsp)                                             \
    printf(#name ".req.size %zu\n", sizeof(req));                           \
    printf(#name ".req.align %zu\n", _Alignof(req));                        \
    printf(#name ".rsp.size %zu\n", sizeof(rsp));                           \
    printf(#name ".rsp.align %zu\n", _Alignof(rsp));                        \
    printf(#name ".entry %zu\n", sizeof(union name##_sring_entry));         \
    printf(#name ".ring %zu\n", offsetof(struct name##_sring, ring));       \
    for (unsigned p = 1; p <= 4; p *= 2) {                                  \
        struct name##_sring *s = (struct name##_sring *)pages;              \
        printf(#name ".entries.%u %u\n", p,                                 \
               (unsigned)__CONST_RING_SIZE(name, 4096 * p));                \
        printf(#name ".entries_ptr.%u %u\n", p,                             \
               (unsigned)__RING_SIZE(s, 4096 * p));                         \
    }

int main(void)
{
    printf("offset.req_prod %zu\n", offsetof(struct blkif_sring, req_prod));
    printf("offset.req_event %zu\n", offsetof(struct blkif_sring, req_event));
    printf("offset.rsp_prod %zu\n", offsetof(struct blkif_sring, rsp_prod));
    printf("offset.rsp_event %zu\n", offsetof(struct blkif_sring, rsp_event));
    printf("offset.pvt %zu\n", offsetof(struct blkif_sring, pvt));
    printf("size.pvt %zu\n", sizeof(((struct blkif_sring *)0)->pvt));
    printf("offset.pad %zu\n", offsetof(struct blkif_sring, __pad));
    printf("size.pad %zu\n", sizeof(((struct blkif_sring *)0)->__pad));
    MESSAGES(blkif, blkif_request_t, blkif_response_t)
    MESSAGES(sample, struct sample_request, struct sample_response)
    MESSAGES(odd, struct odd_request, struct odd_response)
    return 0;
}
