/* handlers.h — the coordinator's request handlers and the state they share.
 *
 * Every client request is a small state machine run by the event loop (loop.h): intake.c
 * takes it in and dispatches it by op; request.c holds the helpers every handler shares; resolve.c turns a query into a vector (fetch the
 * reference, encode, compose); search.c scatters to one replica of every group, gathers and
 * merges; write.c routes upserts and deletes to every replica and counts the quorum; ops.c
 * serves get, stats, health, snapshot and the encoder pass-through.
 */
#ifndef COORD_HANDLERS_H
#define COORD_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/hlc.h"
#include "common/wire.h"
#include "coordinator/coord.h"
#include "coordinator/loop.h"
#include "coordinator/metrics.h"
#include "coordinator/qcache.h"

typedef struct coord_repair coord_repair;
struct coord_rq;

#define COORD_PEER_BUCKETS 1024 /* the table of clients with requests in flight */

/* A client connection (its ROUTER routing id) with requests in flight (intake.c). */
typedef struct coord_peer {
    struct coord_peer *next; /* in its bucket */
    uint32_t n;              /* its requests in flight */
    size_t len;
    uint8_t id[256];
} coord_peer;

typedef struct coord_app {
    coord_loop *loop;
    coord_server_opts o;
    cr_hlc hlc;          /* item versions: one clock for every write this coordinator routes
                            (atomic: the repair thread reads it too) */
    coord_repair *repair;
    coord_metrics metrics; /* updated by the loop, rendered by the HTTP thread (atomics) */
    coord_qcache *qcache;  /* composed query vectors (loop thread; qcache.h) */
    struct coord_rq *requests; /* requests in flight (loop thread) */
    size_t n_requests;
    coord_peer *peers[COORD_PEER_BUCKETS]; /* by routing id: requests in flight per client */
    /* The map under which each replica last reported its highest version into `hlc` (NULL =
     * not yet): writes seed the clock from replicas not seeded under the current map. Loop
     * thread. */
    const coord_map *seeded[COORD_MAX_GROUPS][COORD_MAX_REPLICAS];
} coord_app;

/* The loop's coord_request_fn: takes in a client request (ctx is the coord_app). */
void coord_request_start(void *app, cr_wire_msg *m, uint64_t recv_us);

/* A request of peer p ended (request.c's coord_rq_end): p freed with its last one. */
void coord_peer_release(coord_app *app, coord_peer *p);

/* Answers every request still in flight with UNAVAILABLE and frees it (after the loop). */
void coord_requests_abort(coord_app *app);

#endif
