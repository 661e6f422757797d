/* placement.h — which shard group owns an item: the one function every placer shares (the
 * coordinator's write and read routing, `cirrus build`, `cirrus rebalance`).
 *
 *   group = jump_consistent_hash(fnv1a64(external id bytes), number of groups)
 *
 * fnv1a64 is standard 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3,
 * over the id's UTF-8 bytes, no terminator); the jump hash is Lamping & Veach's ("A Fast,
 * Minimal Memory, Consistent Hash Algorithm", 2014), reproduced exactly, so another program
 * (a Spark job splitting inputs by group, a client in another language) computes the same
 * group. The cluster map names its placement ("placement": "fnv1a64-jump").
 *
 * The legacy placement ("legacy-fnv-jump") is what cirrus used before placements had names:
 * the same loop with an offset basis one digit short (1469598103934665603), which is not
 * FNV-1a. A map without a "placement" key means the legacy one, so clusters written before
 * keep finding their items; `cirrus rebalance` moves a cluster from one to the other.
 *
 * Placement depends only on the id and the NUMBER of groups, never on replicas: adding or
 * replacing replicas moves nothing; growing from N to N+1 groups moves about 1/(N+1) of the
 * items, all to the new group. Pure functions, any thread. */
#ifndef COORD_PLACEMENT_H
#define COORD_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum coord_placement {
    COORD_PLACEMENT_LEGACY = 0,      /* "legacy-fnv-jump": a map without the key */
    COORD_PLACEMENT_FNV1A64_JUMP = 1 /* "fnv1a64-jump": what new maps say */
} coord_placement;

#define COORD_PLACEMENT_NAME_LEGACY "legacy-fnv-jump"
#define COORD_PLACEMENT_NAME_FNV1A64_JUMP "fnv1a64-jump"

/* Standard 64-bit FNV-1a of len bytes ("" -> 0xcbf29ce484222325). */
uint64_t coord_fnv1a64(const void *data, size_t len);
/* The legacy hash (FNV-1a's loop from offset basis 1469598103934665603). */
uint64_t coord_fnv_legacy64(const void *data, size_t len);
/* Jump consistent hash: a bucket in [0, buckets) for buckets >= 1. */
int32_t coord_jump_hash(uint64_t key, int32_t buckets);

/* The group in [0, n_groups) owning external id `id` (len bytes) under placement p;
 * n_groups >= 1. */
int coord_placement_group(coord_placement p, const char *id, size_t len, int n_groups);

/* The placement's name as the map spells it; parse returns CR_ERR_INVALID for an unknown
 * one (the message lists the known names). */
const char *coord_placement_name(coord_placement p);
cr_err coord_placement_parse(const char *name, coord_placement *out);

#endif
