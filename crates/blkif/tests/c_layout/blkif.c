/* Prints the x86_64 layout of blkif's messages as the C compiler sees
 * <xen/io/blkif.h>: sizes, offsets, and the bytes of sample messages;
 * tests/c_layout.rs compares each line with what the crate encodes.
 * Written for this test (MIT OR Apache-2.0). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xen/xen.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

static void dump(const char *name, const void *p, size_t n) {
    const unsigned char *b = p;
    printf("%s.bytes ", name);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

#define OFF(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f))

int main(void) {
    printf("blkif_request.size %zu\n", sizeof(struct blkif_request));
    printf("blkif_request.align %zu\n", _Alignof(struct blkif_request));
    printf("blkif_request_discard.size %zu\n", sizeof(struct blkif_request_discard));
    printf("blkif_request_indirect.size %zu\n", sizeof(struct blkif_request_indirect));
    printf("blkif_response.size %zu\n", sizeof(struct blkif_response));
    printf("blkif_response.align %zu\n", _Alignof(struct blkif_response));
    printf("blkif_request_segment.size %zu\n", sizeof(struct blkif_request_segment));
    printf("blkif.entries.1 %u\n", (unsigned)__CONST_RING_SIZE(blkif, 4096));
    OFF(blkif_request, operation); OFF(blkif_request, nr_segments); OFF(blkif_request, handle);
    OFF(blkif_request, id); OFF(blkif_request, sector_number); OFF(blkif_request, seg);
    OFF(blkif_request_discard, flag); OFF(blkif_request_discard, handle); OFF(blkif_request_discard, id);
    OFF(blkif_request_discard, sector_number); OFF(blkif_request_discard, nr_sectors);
    OFF(blkif_request_indirect, indirect_op); OFF(blkif_request_indirect, nr_segments);
    OFF(blkif_request_indirect, id); OFF(blkif_request_indirect, sector_number);
    OFF(blkif_request_indirect, handle); OFF(blkif_request_indirect, indirect_grefs);
    OFF(blkif_response, id); OFF(blkif_response, operation); OFF(blkif_response, status);

    /* Sample messages, padding zeroed (memset), as the crate encodes. */
    struct blkif_request rw;
    memset(&rw, 0, sizeof rw);
    rw.operation = BLKIF_OP_WRITE; rw.nr_segments = 3; rw.handle = 51712;
    rw.id = 0x0102030405060708ull; rw.sector_number = 0x1122334455667788ull;
    for (int i = 0; i < 3; i++) {
        rw.seg[i].gref = 0xa0b0c0d0u + (unsigned)i; rw.seg[i].first_sect = (uint8_t)i; rw.seg[i].last_sect = 7;
    }
    dump("rw", &rw, sizeof rw);

    struct blkif_request_discard d;
    memset(&d, 0, sizeof d);
    d.operation = BLKIF_OP_DISCARD; d.flag = BLKIF_DISCARD_SECURE; d.handle = 768;
    d.id = 42; d.sector_number = 4096; d.nr_sectors = 0x100000000ull;
    unsigned char slot[sizeof(struct blkif_request)];
    memset(slot, 0, sizeof slot);
    memcpy(slot, &d, sizeof d);
    dump("discard", slot, sizeof slot);

    struct blkif_request_indirect in;
    memset(&in, 0, sizeof in);
    in.operation = BLKIF_OP_INDIRECT; in.indirect_op = BLKIF_OP_READ; in.nr_segments = 300;
    in.id = 7; in.sector_number = 8; in.handle = 5;
    for (int i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) in.indirect_grefs[i] = 100u + (unsigned)i;
    memset(slot, 0, sizeof slot);
    memcpy(slot, &in, sizeof in);
    dump("indirect", slot, sizeof slot);

    struct blkif_response r;
    memset(&r, 0, sizeof r);
    r.id = 0xfeedfacecafebeefull; r.operation = BLKIF_OP_FLUSH_DISKCACHE; r.status = BLKIF_RSP_EOPNOTSUPP;
    dump("response", &r, sizeof r);
    return 0;
}
