/* io.h — the coordinator's I/O thread: it owns every socket of the coordinator (the public
 * ROUTER, one DEALER per backend, and the inproc sockets to the worker threads), keeps many
 * requests in flight per backend, picks replicas, hedges slow reads, times out what does not
 * answer, and tracks backend health with Health pings.
 *
 * Worker threads handle one client request each. For backend work they describe sub-requests
 * (coord_sub) and call coord_io_call(), which blocks the worker (never the I/O thread) until
 * every sub-request has an answer, an error, or its timeout.
 *
 * Replica choice for a group: the healthy, up-to-date (readable) replica with the fewest
 * outstanding requests; a read not answered within hedge_ms is sent to a second replica too,
 * and the first answer wins; a replica that fails (network error, overloaded) is replaced by
 * another. A backend is down after 3 missed pings (500 ms apart) or a timed-out request with
 * no reply for 1.5 s; it is up again at its first answer, which is reported to the repair
 * hook. Writes go to every replica that is up, readable or not.
 *
 * Freshness: each shard replica carries what the coordinator can prove about its contents
 * (coord_replica_state). The rule and its reasons are in repair.c; this module keeps the
 * state, applies the write path's reports of missed writes at once (a replica that missed an
 * acknowledged write stops serving reads before the client hears the ack), and answers
 * reads only from replicas that are not behind.
 */
#ifndef COORD_IO_H
#define COORD_IO_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"
#include "coordinator/clustermap.h"

typedef struct coord_io coord_io;

typedef enum coord_target {
    COORD_TO_GROUP = 0,   /* any live replica of `group` (reads) */
    COORD_TO_REPLICA = 1, /* exactly replica `replica` of `group` (writes, repair) */
    COORD_TO_ENCODER = 2  /* any live encoder */
} coord_target;

typedef struct coord_sub {
    coord_target target;
    int group, replica;
    const uint8_t *body; /* a packed Request; its id is overridden by the I/O thread */
    size_t len;
    uint32_t timeout_ms;
    int hedge;           /* reads: allow a second replica after hedge_ms */
    /* results */
    cr_err rc;           /* CR_OK: resp is set (its status may still be an error) */
    char msg[200];
    Cirrus__V1__Response *resp; /* free with cirrus__v1__response__free_unpacked(r, NULL) */
    int replica_used;
} coord_sub;

/* Called on the I/O thread when shard replica (group, replica) answers for the first time or
 * again after being down. Must not block. */
typedef void (*coord_io_up_fn)(void *ctx, int group, int replica);

typedef struct coord_io_opts {
    const char *bind;      /* public endpoint */
    void *zmq_ctx;         /* shared context (inproc) or NULL */
    int workers;           /* worker threads */
    void *(*worker_main)(void *); /* the worker thread body; gets `worker_arg` */
    void *worker_arg;
    coord_io_up_fn on_replica_up;
    void *up_ctx;
    unsigned spin_us;      /* the I/O thread and waiting workers busy-poll this long after
                              traffic before sleeping (0 = never) */
} coord_io_opts;

/* Creates the I/O state for `map` (copied). Does not start threads. */
cr_err coord_io_new(coord_io **out, const coord_map *map, const coord_io_opts *o);
void coord_io_free(coord_io **pp);

/* Runs the I/O loop on the calling thread (and starts the workers) until *stop. */
cr_err coord_io_run(coord_io *io, volatile sig_atomic_t *stop);

/* Replaces the cluster map (SIGHUP): applied by the I/O thread between events; backends
 * present in both maps keep their connections. Thread-safe. */
void coord_io_set_map(coord_io *io, const coord_map *map);

/* Sets the hook called when a shard replica returns (before coord_io_run). */
void coord_io_set_up_hook(coord_io *io, coord_io_up_fn fn, void *ctx);

/* The current map. Thread-safe. The pointer stays valid until coord_io_free: a map replaced
 * by a reload is retired, not freed, so requests in flight keep a consistent view (maps are
 * large and reloads rare; copying one per request would cost more than the request). */
const coord_map *coord_io_map(coord_io *io);

/* ---- worker side ---------------------------------------------------------------------- */

/* A worker's connection to the I/O thread; create on the worker thread. */
typedef struct coord_worker coord_worker;
cr_err coord_worker_open(coord_io *io, coord_worker **out);
/* A connection that only makes backend calls and serves no client requests (repair). */
cr_err coord_worker_open_caller(coord_io *io, coord_worker **out);
void coord_worker_close(coord_worker **pp);

/* Receives the next client request for this worker: the routing frames stay in *route
 * (pass them to coord_worker_reply). CR_TIMEOUT when none within poll_ms; the worker loop
 * checks coord_io_stopping() then. */
cr_err coord_worker_next(coord_worker *w, int poll_ms, void *route /* cr_wire_msg* */,
                         uint64_t *recv_us);
cr_err coord_worker_reply(coord_worker *w, const void *route, const Cirrus__V1__Response *resp);
cr_err coord_worker_reply_error(coord_worker *w, const void *route, uint64_t id, cr_err code,
                                const char *msg);
int coord_io_stopping(const coord_io *io);

/* Runs the sub-requests and waits for all of them. */
cr_err coord_io_call(coord_worker *w, coord_sub *subs, size_t n);

/* Health view for workers: 1 when the replica is up and readable (published by the I/O
 * thread every 500 ms). */
int coord_io_replica_live(coord_io *io, int group, int replica);

/* ---- replica freshness (all thread-safe) ---------------------------------------------- */

typedef struct coord_replica_state {
    int up;        /* has answered since it was last (re)connected or seen down */
    int behind;    /* may lack an acknowledged write: serves no reads */
    int known;     /* 0: nothing is known of its contents (coordinator start, new in the map) */
    uint64_t mark; /* it may lack only writes with a version > mark; UINT64_MAX: none */
    char ep[COORD_MAX_ENDPOINT];
} coord_replica_state;

/* The write path reports that replica (group, replica) of the caller's map, at endpoint `ep`,
 * did not durably apply a write whose lowest version is `min_version`; `acked`: the write was
 * acknowledged to the client without it. Lowers the replica's mark below min_version and,
 * when acked, makes it behind (no reads) at once. Returns 1 when the replica is up (worth a
 * repair now). Call before replying to the client. */
int coord_io_replica_missed(coord_io *io, int group, int replica, const char *ep,
                            uint64_t min_version, int acked);

/* Fills *out; 0 when (group, replica) is not in the current map. */
int coord_io_replica_state(coord_io *io, int group, int replica, coord_replica_state *out);

/* A repair of (group, replica): begin fills *out and starts recording the misses that happen
 * while it runs (returns 0 when not in the map). end applies the outcome if `ep` still is
 * (group, replica): `complete` (it now holds what every other replica held when the repair
 * began): mark = UINT64_MAX and known, unless it missed writes meanwhile (mark = below the
 * lowest of those); `proven` (it now holds every acknowledged write): not behind, unless it
 * missed an acknowledged write meanwhile. Both 0 = the repair was abandoned. Returns 1 when
 * it missed writes while the repair ran (run it again). */
int coord_io_repair_begin(coord_io *io, int group, int replica, coord_replica_state *out);
int coord_io_repair_end(coord_io *io, int group, int replica, const char *ep, int proven,
                        int complete);

#endif
