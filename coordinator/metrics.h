/* metrics.h — the coordinator's request counters and latency histograms, rendered in the
 * Prometheus text format at GET /metrics. Updates are lock-free (atomics): any worker thread
 * may observe, any thread may render. */
#ifndef COORD_METRICS_H
#define COORD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/clustermap.h"
#include "coordinator/qcache.h"

#define COORD_METRICS_OPS 32    /* Request op numbers are < 32 */
#define COORD_METRICS_BUCKETS 12

typedef struct coord_metrics {
    _Atomic uint64_t requests[COORD_METRICS_OPS];
    _Atomic uint64_t errors[COORD_METRICS_OPS];
    _Atomic uint64_t buckets[COORD_METRICS_OPS][COORD_METRICS_BUCKETS + 1]; /* + Inf */
    _Atomic uint64_t sum_us[COORD_METRICS_OPS];
    _Atomic uint64_t partial;
    coord_qcache_counters qcache; /* the composed query cache */
} coord_metrics;

void coord_metrics_init(coord_metrics *m);

/* One answered request: its op (Request.op_case), whether it failed, how long it took. */
void coord_metrics_observe(coord_metrics *m, int op, int failed, uint64_t micros, int partial);

/* Appends the Prometheus text exposition to buf (malloc'd, grown as needed; *len updated).
 * live[g][r] says whether replica r of group g is up. Returns 0, or -1 when out of memory. */
int coord_metrics_render(const coord_metrics *m, const coord_map *map,
                         int (*live)(void *ctx, int group, int replica), void *ctx, char **buf,
                         size_t *len);

#endif
