/* rebalance.h — `cirrus rebalance`: moves a live cluster from one cluster map to another (more
 * groups and/or another placement), while it serves reads and writes.
 *
 *   offline_rebal_opts o = offline_rebal_default_opts();
 *   o.map_path = "cluster.json"; o.new_map_path = "cluster.new.json";
 *   o.coordinators = eps; o.n_coordinators = 1;
 *   rc = offline_rebalance(&o, &events, &summary);
 *
 * The steps (each one's map is written to map_path and sent to every coordinator with the
 * Reload op, which answers once no request that arrived under the previous map is in flight):
 *
 *   copy    map = new + "moving_from" (reads old): writes go to the old and the new owner;
 *           every old group is scanned and each item whose owner changes is copied, with its
 *           version, to every replica of its new group.
 *   switch  map = new + "moving_from" (reads new): reads go to the new owners, writes still to
 *           both; the old copies are deleted at their versions.
 *   final   map = the new map: writes to the new owner only; the old groups are scanned again
 *           for copies re-made by writes during `switch`, which are deleted.
 *
 * The pages of items done are recorded in the state file (rebalance_state.h) as they go, so a
 * crash at any point is continued by running the same command again. Throughout, searches
 * count a hit only from the item's read owner (coordinator/search.c), so an item in two groups
 * is one result.
 */
#ifndef OFFLINE_REBALANCE_H
#define OFFLINE_REBALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coordinator/clustermap.h"

typedef struct offline_rebal_opts {
    const char *map_path;     /* the map the cluster runs now; rewritten at each step */
    const char *new_map_path; /* the map to move to */
    const char *state_path;   /* NULL = new_map_path + ".rebalance" */
    const char *const *coordinators; /* Reload targets (every coordinator of the cluster) */
    size_t n_coordinators;
    int dry_run;              /* count what would move; change nothing */
    uint32_t batch;           /* items per scan page and per write (default 2048) */
    uint32_t timeout_ms;      /* per call to a shard or coordinator (default 30000) */
    uint32_t drain_ms;        /* wait for a reload to take effect (default 60000) */
    uint64_t rate;            /* items scanned per second at most (0 = no limit) */
} offline_rebal_opts;

offline_rebal_opts offline_rebal_default_opts(void);

typedef struct offline_rebal_report {
    const char *stage; /* "count" (dry run), "copy", "switch", "final" */
    uint64_t scanned, copied, deleted; /* in this run */
    int skipped;       /* finished by an earlier run */
    double seconds;
} offline_rebal_report;

/* Callbacks may be NULL; `begin` gives the stage's total items (0: unknown). */
typedef struct offline_rebal_events {
    void *ctx;
    void (*begin)(void *ctx, const char *stage, uint64_t total);
    void (*advance)(void *ctx, uint64_t n);
    void (*end)(void *ctx, const offline_rebal_report *r);
} offline_rebal_events;

typedef struct offline_rebal_summary {
    int old_groups, new_groups;
    char old_placement[32], new_placement[32];
    int resumed;        /* a state file was found */
    int finished_before; /* the state says the move was finished by an earlier run */
    uint64_t scanned, copied, deleted; /* over every run */
    uint64_t moving;    /* dry run: items that would move */
    uint64_t moving_to[COORD_MAX_GROUPS];
    double seconds[3];  /* copy, switch, final, over every run */
} offline_rebal_summary;

/* Runs or resumes the move (or counts, with dry_run). CR_ERR_INVALID for maps that do not fit
 * (rebalance_plan.h) or a state file of another move; network errors otherwise (rerun). */
cr_err offline_rebalance(const offline_rebal_opts *o, const offline_rebal_events *ev,
                         offline_rebal_summary *sum);

#endif
