/* server.h — the shard's network front: a ROUTER socket served by search worker threads
 * and one writer thread that groups concurrent writes into one synced transaction.
 *
 * Threads: the calling thread runs the proxy loop (it owns the ROUTER and never blocks on
 * disk); `workers` threads run reads; one writer thread runs writes, snapshots and index
 * rebuilds. When no request is with the workers, the proxy serves a short read (a single
 * ANN search, Get, Health) itself: a lone client then pays no hand-off to a worker and back,
 * which costs more than the search on small machines. The proxy never waits for the index:
 * while an index add holds it, a search goes to a worker instead. A SIGTERM (the stop flag)
 * stops intake, finishes queued writes, snapshots the index and returns.
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
} shard_server_opts;

shard_server_opts shard_server_default_opts(void);

/* Serves until *stop becomes non-zero. The engine is borrowed. */
cr_err shard_server_run(shard_engine *e, const shard_server_opts *o,
                        volatile sig_atomic_t *stop);

#endif
