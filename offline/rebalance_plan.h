/* rebalance_plan.h — what `cirrus rebalance` moves, decided from the two cluster maps alone
 * (pure functions: no I/O, no sockets; tests/unit/test_rebalance.c).
 *
 *   offline_rebal_plan p;
 *   rc = offline_rebal_plan_make(&p, old_map, new_map);   // checks the maps fit together
 *   to = offline_rebal_target(&p, id, g);                  // -1: stays in g, else its new group
 *   rc = offline_rebal_map_json(new_json, &p, reads_new, &text);  // the map of the move
 *
 * A move grows the number of groups (the old groups first, with the same replicas, then the
 * new ones) and/or changes the placement (e.g. legacy-fnv-jump -> fnv1a64-jump). Shrinking is
 * not supported: the items of a removed group would need a home outside the new map.
 */
#ifndef OFFLINE_REBALANCE_PLAN_H
#define OFFLINE_REBALANCE_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coordinator/clustermap.h"

typedef struct offline_rebal_plan {
    int old_groups, new_groups;
    coord_placement old_placement, new_placement;
} offline_rebal_plan;

/* CR_OK when `new_map` can replace `old_map` by a move: neither is in the middle of one, the
 * new map has at least as many groups, its first old_groups groups list the same replicas,
 * the metric is the same, and the placement or the number of groups differs (else
 * CR_ERR_INVALID, saying which). */
cr_err offline_rebal_plan_make(offline_rebal_plan *p, const coord_map *old_map,
                               const coord_map *new_map);

/* The group an item found in old group g must go to: -1 when it stays in g (its new owner is
 * g). An item that the old placement does not place in g (a leftover of an earlier move) is
 * treated the same way: its new owner decides. */
int offline_rebal_target(const offline_rebal_plan *p, const char *ext_id, int g);

/* Counts, over `n` ids found in old group g, how many would move to each group: moved[t] for
 * t < new_groups (moved must hold new_groups counters, added to). Returns the ids that move. */
uint64_t offline_rebal_plan_count(const offline_rebal_plan *p, const char *const *ids, size_t n,
                                  int g, uint64_t *moved);

/* The map that coordinators run during the move: new_json (the new map's text) with
 * "moving_from" {groups, placement, reads} added (clustermap.h). *out is a malloc'd string. */
cr_err offline_rebal_map_json(const char *new_json, const offline_rebal_plan *p, int reads_new,
                              char **out);

#endif
