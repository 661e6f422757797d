/* handlers.h — the coordinator's shared state and its worker-thread body (handlers.c). */
#ifndef COORD_HANDLERS_H
#define COORD_HANDLERS_H

#include <stdatomic.h>

#include "common/hlc.h"
#include "coordinator/coord.h"
#include "coordinator/io.h"
#include "coordinator/metrics.h"

typedef struct coord_repair coord_repair;

typedef struct coord_app {
    coord_io *io;
    coord_server_opts o;
    cr_hlc hlc;          /* item versions: one clock for every write this coordinator routes */
    coord_repair *repair;
    coord_metrics metrics;
    /* The map under which each replica last reported its highest version into `hlc` (NULL =
     * not yet): writes seed the clock from replicas not seeded under the current map. */
    _Atomic(const coord_map *) seeded[COORD_MAX_GROUPS][COORD_MAX_REPLICAS];
} coord_app;

/* Worker thread body: serves client requests until the I/O thread stops. */
void *coord_worker_main(void *arg);

/* Replica repair (repair.c): queued by the I/O thread when a replica returns, run on a
 * thread of its own that copies every item and tombstone a live peer holds (with their
 * versions, so newer data on the returning replica is never overwritten). */
cr_err coord_repair_start(coord_app *app, coord_repair **out);
void coord_repair_enqueue(void *ctx, int group, int replica); /* coord_io_up_fn */
void coord_repair_stop(coord_repair **pp);

#endif
