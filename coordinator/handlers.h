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

/* Replica repair (repair.c: the rule for when a replica may serve reads is there): a thread
 * of its own brings replicas that may be behind up to the newest version of every item, in
 * both directions — after a short absence only what changed since the replica's version
 * mark, otherwise by a full comparison that copies only the differences. Queued when a
 * replica answers (coord_repair_enqueue, the I/O thread's up hook) and when a write misses
 * a replica that is up (coord_repair_note_miss). */
cr_err coord_repair_start(coord_app *app, coord_repair **out);
void coord_repair_enqueue(void *ctx, int group, int replica); /* coord_io_up_fn */
/* The write path, before it replies: replica (group, replica) at `ep` (as the caller's map
 * names it) did not durably apply a write whose lowest version is min_version; `acked`: the
 * write is acknowledged without it. See coord_io_replica_missed. NULL-safe. */
void coord_repair_note_miss(coord_repair *rp, int group, int replica, const char *ep,
                            uint64_t min_version, int acked);
void coord_repair_stop(coord_repair **pp);

#endif
