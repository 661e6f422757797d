/* node.h — every role in one process: a coordinator, N shards and (with a model) a CLIP
 * encoder joined by inproc:// sockets, the data in one directory, and optionally the HTTP API
 * in front. `cirrus serve` is this plus its flags; tests and benches start a whole node
 * in-process the same way.
 *
 *   node_opts o = node_default_opts();
 *   o.data = "/var/lib/cirrus"; o.dim = 512;          // or o.model = "clip.safetensors"
 *   node *n; rc = node_open(&n, &o);                  // returns once every role serves
 *   ... clients use node_endpoint(n) ...
 *   rc = node_wait(n, &stop_flag);                    // until *stop_flag or a role fails
 *   rc = node_close(&n);                              // writes finished, indexes snapshotted
 *
 * Errors (cr_err, with cr_error_message()): CR_ERR_INVALID for bad options (a --dim that
 * differs from the model's, an unknown metric or preprocessing, no dimension for a new
 * catalog), CR_ERR_IO when the data directory cannot be made, the shard's, encoder's or
 * coordinator's own errors when one cannot open or bind, CR_ERR_INTERNAL when a thread cannot
 * start. node_wait returns the first role's failure ("shard 0: ...").
 */
#ifndef NODE_NODE_H
#define NODE_NODE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define NODE_MAX_SHARDS 64

typedef struct node_opts {
    const char *data;       /* required: shards live in DATA/shard-I */
    const char *model;      /* CLIP safetensors; NULL = vectors only, no encoder */
    const char *phi, *combiner, *vocab, *preprocess; /* encoder extras (NULL = defaults) */
    const char *index;      /* FAISS factory for new shards (NULL = HNSW32; existing: kept) */
    const char *metric;     /* "ip" | "l2"; NULL = as the shard was made (ip when new) */
    const char *bind;       /* public endpoint (default tcp://127.0.0.1:7700) */
    const char *http;       /* HOST:PORT for the HTTP API; NULL = none */
    const char *http_cors;  /* allowed origins of the HTTP API (gateway/http.h); NULL = off */
    int shards;             /* 1..NODE_MAX_SHARDS (default 1) */
    int dim;                /* for a new catalog without a model; 0 = the model's */
    int threads;            /* encoder threads; 0 = default */
    const char *precision;  /* encoder precision "fp32" | "bf16"; NULL = fp32 */
    unsigned spin_us;       /* busy-poll after traffic (default 0: the roles share cores) */
    long long query_cache;  /* composed query vectors the coordinator caches; < 0 = its
                               default (coord.h), 0 = off */
    const char *worker_bind; /* the job broker's worker endpoint; NULL = no broker */
    uint32_t job_attempts, job_queue, job_heartbeat_ms; /* 0 = the broker's defaults */
    uint64_t job_result_ttl_ms;
    size_t job_store_mb;
    int keep_images;        /* shards keep each upserted item's original image */
    const struct cr_curve *curve; /* CURVE on a tcp:// bind (common/curve.h; borrowed until
                                     close); NULL = plaintext. inproc roles stay plaintext */
    const char *http_keys;  /* the HTTP API keys file (gateway/auth.h); NULL = open */
    const char *http_tls_cert, *http_tls_key; /* PEM files: HTTPS; NULL = plain HTTP */
} node_opts;

node_opts node_default_opts(void);

typedef struct node node;

/* Opens (or creates) the shards, loads the model, binds every socket and starts every
 * thread; *out is written only on success, and on failure nothing is left running. */
cr_err node_open(node **out, const node_opts *o);
/* The public ZeroMQ endpoint (o->bind). */
const char *node_endpoint(const node *n);
/* Blocks until *stop is set (a signal handler may set it) or one role fails. */
cr_err node_wait(node *n, volatile sig_atomic_t *stop);
/* Stops every role (queued writes are finished, indexes snapshotted), joins and frees.
 * Returns the first failure of a role, if one failed. */
cr_err node_close(node **pp);

#endif
