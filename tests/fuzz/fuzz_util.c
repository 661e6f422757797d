/* fuzz_util.c — helpers shared by the fuzz targets (linked in both builds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return NULL;
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

/* ---- protobuf round trip ------------------------------------------------------------------ */
#include "common/wire.h"

#define FUZZ_PB_LIMIT (64u << 20)

static cr_pb_bounded pb_alloc; /* one message alive at a time per target */

static uint8_t *pack_copy(const ProtobufCMessage *m, size_t *n)
{
    uint8_t *buf;
    *n = protobuf_c_message_get_packed_size(m);
    buf = malloc(*n ? *n : 1);
    FUZZ_ASSERT(buf);
    FUZZ_ASSERT(protobuf_c_message_pack(m, buf) == *n);
    return buf;
}

void *fuzz_pb_roundtrip(const struct ProtobufCMessageDescriptor *desc, const uint8_t *data,
                        size_t size)
{
    ProtobufCMessage *m = NULL, *again = NULL;
    cr_pb_bounded second;
    uint8_t *a, *b;
    size_t na, nb;
    cr_pb_bounded_init(&pb_alloc, FUZZ_PB_LIMIT);
    if (cr_wire_unpack(desc, data, size, &pb_alloc, &m) != CR_OK)
        return NULL;
    a = pack_copy(m, &na);
    cr_pb_bounded_init(&second, FUZZ_PB_LIMIT);
    FUZZ_ASSERT(cr_wire_unpack(desc, a, na, &second, &again) == CR_OK);
    b = pack_copy(again, &nb);
    FUZZ_ASSERT(na == nb && memcmp(a, b, na) == 0);
    protobuf_c_message_free_unpacked(again, &second.base);
    FUZZ_ASSERT(second.used == 0);
    free(a);
    free(b);
    return m;
}

void fuzz_pb_free(void *msg)
{
    if (!msg)
        return;
    protobuf_c_message_free_unpacked(msg, &pb_alloc.base);
    FUZZ_ASSERT(pb_alloc.used == 0); /* the allocator saw every byte come back */
}
