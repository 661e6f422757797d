#include "coordinator/placement.h"

#include <string.h>

#define FNV64_PRIME 1099511628211ull

static uint64_t fnv1a_from(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

uint64_t coord_fnv1a64(const void *data, size_t len)
{
    return fnv1a_from(0xcbf29ce484222325ull, data, len);
}

uint64_t coord_legacy_fnv64(const void *data, size_t len)
{
    return fnv1a_from(1469598103934665603ull, data, len);
}

/* Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm". */
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

int coord_placement_group(coord_placement p, const char *ext_id, int groups)
{
    size_t len = strlen(ext_id);
    uint64_t h = p == COORD_PLACEMENT_FNV1A64_JUMP ? coord_fnv1a64(ext_id, len)
                                                   : coord_legacy_fnv64(ext_id, len);
    return coord_jump_hash(h, groups);
}

const char *coord_placement_name(coord_placement p)
{
    return p == COORD_PLACEMENT_FNV1A64_JUMP ? COORD_PLACEMENT_STANDARD_NAME
                                             : COORD_PLACEMENT_LEGACY_NAME;
}

cr_err coord_placement_parse(const char *name, coord_placement *out)
{
    if (name && strcmp(name, COORD_PLACEMENT_STANDARD_NAME) == 0)
        *out = COORD_PLACEMENT_FNV1A64_JUMP;
    else if (name && strcmp(name, COORD_PLACEMENT_LEGACY_NAME) == 0)
        *out = COORD_PLACEMENT_LEGACY;
    else
        return cr_error_set(CR_ERR_INVALID, "unknown placement '%s' (known: %s, %s)",
                            name ? name : "", COORD_PLACEMENT_STANDARD_NAME,
                            COORD_PLACEMENT_LEGACY_NAME);
    return CR_OK;
}
