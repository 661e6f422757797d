/* placement.h — which shard group owns an item: the one function every writer of data uses
 * (the coordinator's routing, `cirrus build`, and any outside program preparing inputs).
 *
 *   fnv1a64-jump     group = jump_hash(FNV-1a 64 (UTF-8 bytes of the id), groups): standard
 *                    FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3) and
 *                    Lamping & Veach's jump consistent hash. Maps written by tools use it.
 *   legacy-fnv-jump  the same with the offset basis 1469598103934665603 that cirrus used before
 *                    (a digit short of FNV-1a's). A map without "placement" means this one, so
 *                    clusters built before the key existed keep finding their data.
 *
 * Both depend only on the id and the NUMBER of groups, never on replicas or addresses; growing
 * from N to N+1 groups moves about 1/(N+1) of the items, all to the new group.
 */
#ifndef COORD_PLACEMENT_H
#define COORD_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum coord_placement {
    COORD_PLACEMENT_LEGACY = 0, /* zero: what a map (or struct) that names none means */
    COORD_PLACEMENT_FNV1A64_JUMP = 1,
} coord_placement;

#define COORD_PLACEMENT_LEGACY_NAME "legacy-fnv-jump"
#define COORD_PLACEMENT_STANDARD_NAME "fnv1a64-jump"

/* Standard FNV-1a 64. */
uint64_t coord_fnv1a64(const void *data, size_t len);
/* The pre-standard variant (wrong offset basis), kept for existing data. */
uint64_t coord_legacy_fnv64(const void *data, size_t len);
int32_t coord_jump_hash(uint64_t key, int32_t buckets);

/* The group of a NUL-terminated id among `groups` (>= 1) under placement p. */
int coord_placement_group(coord_placement p, const char *ext_id, int groups);

/* Name <-> enum; parse returns CR_ERR_INVALID (with a message) for an unknown name. */
const char *coord_placement_name(coord_placement p);
cr_err coord_placement_parse(const char *name, coord_placement *out);

#endif
