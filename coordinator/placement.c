#include "coordinator/placement.h"

#include <string.h>

#define FNV64_PRIME 0x100000001b3ull
#define FNV64_OFFSET 0xcbf29ce484222325ull /* 14695981039346656037 */
#define FNV64_LEGACY_OFFSET 1469598103934665603ull

static uint64_t fnv1a_from(uint64_t h, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

uint64_t coord_fnv1a64(const void *data, size_t len)
{
    return fnv1a_from(FNV64_OFFSET, data, len);
}

uint64_t coord_fnv_legacy64(const void *data, size_t len)
{
    return fnv1a_from(FNV64_LEGACY_OFFSET, data, len);
}

int32_t coord_jump_hash(uint64_t key, int32_t buckets)
{
    int64_t b = -1, j = 0;
    while (j < buckets) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (int32_t)b;
}

int coord_placement_group(coord_placement p, const char *id, size_t len, int n_groups)
{
    uint64_t h = p == COORD_PLACEMENT_FNV1A64_JUMP ? coord_fnv1a64(id, len)
                                                   : coord_fnv_legacy64(id, len);
    return coord_jump_hash(h, n_groups);
}

const char *coord_placement_name(coord_placement p)
{
    return p == COORD_PLACEMENT_FNV1A64_JUMP ? COORD_PLACEMENT_NAME_FNV1A64_JUMP
                                             : COORD_PLACEMENT_NAME_LEGACY;
}

cr_err coord_placement_parse(const char *name, coord_placement *out)
{
    if (name && strcmp(name, COORD_PLACEMENT_NAME_FNV1A64_JUMP) == 0) {
        *out = COORD_PLACEMENT_FNV1A64_JUMP;
        return CR_OK;
    }
    if (name && strcmp(name, COORD_PLACEMENT_NAME_LEGACY) == 0) {
        *out = COORD_PLACEMENT_LEGACY;
        return CR_OK;
    }
    return cr_error_set(CR_ERR_INVALID, "unknown placement '%s' (known: \"%s\", \"%s\")",
                        name ? name : "(null)", COORD_PLACEMENT_NAME_FNV1A64_JUMP,
                        COORD_PLACEMENT_NAME_LEGACY);
}
