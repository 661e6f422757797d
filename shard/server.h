/* server.h — the shard's network front, on the service skeleton (common/service.h): search
 * threads for reads and one writer thread that groups concurrent writes into one synced
 * transaction. It alone translates between protobuf and the engine.
 *
 *     shard_server_opts o = shard_server_default_opts();
 *     o.bind = "tcp://127.0.0.1:0";                 // or inproc://shard0 with o.zmq_ctx
 *     shard_server *srv;
 *     if (shard_server_open(&srv, engine, &o)) die(cr_error_message());
 *     ... clients connect to shard_server_endpoint(srv) (the real port) ...
 *     rc = shard_server_close(&srv);                // writes finished, index snapshotted
 *
 * Threads: the front thread owns the ROUTER (it never blocks on disk); `workers` threads run
 * reads; one writer thread runs writes, snapshots and index rebuilds. When no request is with
 * the workers, the front serves a short read (a single ANN search, Get, Health) itself: a
 * lone client then pays no hand-off to a worker and back, which costs more than the search on
 * small machines. The front never waits for the index: while an index add holds it, a search
 * goes to a worker instead. Close stops intake, finishes queued writes (each acknowledged
 * only after its commit), snapshots the index and returns.
 */
#ifndef SHARD_SERVER_H
#define SHARD_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "shard/engine.h"

typedef struct shard_server_opts {
    const char *bind;           /* e.g. tcp://127.0.0.1:7701 or inproc://shard0 */
    void *zmq_ctx;              /* share a context (inproc); NULL = own */
    int workers;                /* search threads (default 2) */
    int write_queue;            /* queued write requests before "overloaded" (default 1024) */
    int max_batch_items;        /* items per group commit (default 8192) */
    uint64_t snapshot_writes;   /* snapshot after this many changes (default 100000) */
    uint64_t snapshot_interval_s; /* ...or this long with any change (default 300) */
    double rebuild_fraction;    /* rebuild the index when tombstones exceed this (0.2) */
    uint32_t default_deadline_ms; /* for requests without one (default 30000) */
    unsigned spin_us;           /* proxy busy-polls this long after traffic (default 300) */
    int merge_max;              /* most Search requests queued together that run as one index
                                   search (default 32; 1 = each alone, as before) */
    const struct cr_curve *curve; /* CURVE on a tcp:// bind (common/curve.h; borrowed until
                                     close); NULL = plaintext */
} shard_server_opts;

shard_server_opts shard_server_default_opts(void);

typedef struct shard_server shard_server;

/* Returns once the socket is bound and every thread runs; *out only on success, nothing left
 * running on failure. Errors: CR_ERR_INVALID, CR_ERR_NET ("cannot bind ..."),
 * CR_ERR_INTERNAL ("cannot start the writer thread", "cannot start search thread 2 of 4").
 * The engine is borrowed until close. */
cr_err shard_server_open(shard_server **out, shard_engine *e, const shard_server_opts *o);

/* The endpoint bound (tcp://...:0 gives the port chosen); valid until close. */
const char *shard_server_endpoint(const shard_server *s);

/* Concurrent Search requests merged so far: *searches index searches answered *queries
 * requests (each merged search 2 or more). Any thread. */
void shard_server_merged(shard_server *s, uint64_t *searches, uint64_t *queries);

/* Stops intake, answers what is in flight, finishes every queued write, snapshots the index,
 * joins and frees. CR_TIMEOUT when a search thread did not stop (it is left running, and the
 * engine must then stay open). NULL-safe; sets *pp to NULL. */
cr_err shard_server_close(shard_server **pp);

/* open, serve until *stop becomes non-zero, close: for a caller that gives a thread to it. */
cr_err shard_server_run(shard_engine *e, const shard_server_opts *o,
                        volatile sig_atomic_t *stop);

#endif
