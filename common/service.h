/* service.h — the one server skeleton: a ROUTER socket, an ops table saying where each request
 * runs, bounded queues, a reply channel, and a handle that returns once the server serves.
 *
 *     static const cr_svc_op ops[] = {
 *         {CIRRUS__V1__REQUEST__OP_HEALTH, CR_SVC_FRONT, do_health, NULL, NULL},
 *         {CIRRUS__V1__REQUEST__OP_SEARCH, CR_SVC_POOL, do_search, search_front, NULL},
 *         {CIRRUS__V1__REQUEST__OP_UPSERT, CR_SVC_WRITER, NULL, NULL, check_write},
 *     };
 *     cr_svc_ops t = {ops, 3, "operation not served by a shard", write_batch, write_idle,
 *                     write_weight};
 *     cr_svc_opts o = cr_svc_default_opts();
 *     o.name = "shard"; o.bind = "tcp://127.0.0.1:0";
 *     cr_service *svc;
 *     if (cr_service_open(&svc, &o, &t, my_state)) die(cr_error_message());
 *     printf("serving on %s\n", cr_service_endpoint(svc));   // the real port
 *     ...
 *     cr_service_close(&svc);                                 // drains, joins
 *
 * Threads. The FRONT thread owns the ROUTER: it receives every request, checks its framing,
 * reads its op without unpacking it (cheap even for a 64 MB batch of images) and routes it by
 * the table:
 *   CR_SVC_FRONT   unpacked and run right there (it must never block: Health);
 *   CR_SVC_POOL    queued for `workers` pool threads (unpacked there, its deadline checked
 *                  first); with a `front` function, tried on the front thread first whenever
 *                  the pool has no backlog to hide it behind (no other request waiting, or
 *                  every worker busy): a lone client then pays no hand-off to a worker and
 *                  back. `front` returns 0 to hand the request to the pool after all.
 *                  For the op named by opts.batch_op, a pool thread that picks one also
 *                  takes every other request of that op queued at that moment (up to
 *                  `pool_batch` in all; no timer waits for more) and runs them with one
 *                  opts.batch call; that op is tried on the front only when the pool is
 *                  idle and nothing else waits, so that concurrent requests queue and merge;
 *   CR_SVC_WRITER  unpacked on the front, checked by `admit`, queued for the one writer
 *                  thread, which takes queued requests in batches (up to `writer_batch` of
 *                  their `write_weight`) and runs them with `write_batch` in arrival order;
 *                  between batches, and every `idle_ms` when idle, it calls `write_idle`, and
 *                  once more with final = 1 after the last batch at close.
 * Ops not in the table, and requests without an op, go to the pool and are answered there
 * (CR_ERR_UNSUPPORTED with ops->unsupported; CR_ERR_INVALID "request without an operation").
 * A full queue answers CR_ERR_OVERLOADED at once, on the front. Handlers on the pool, the
 * writer or any other thread reply through the reply channel, which the front thread
 * forwards to the ROUTER; handlers on the front reply on the ROUTER directly.
 *
 * Every request is answered: a handler that returns without replying (and without keeping
 * the call) gets CR_ERR_INTERNAL sent for it and a warning logged.
 */
#ifndef CR_SERVICE_H
#define CR_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

typedef struct cr_service cr_service;
/* One request on its way through a service: its routing frames, its body, the request once
 * unpacked (through a bounded allocator), its receive time. */
typedef struct cr_svc_call cr_svc_call;

typedef enum cr_svc_where {
    CR_SVC_FRONT = 0,  /* inline on the front thread */
    CR_SVC_POOL = 1,   /* a pool thread */
    CR_SVC_WRITER = 2  /* the single writer thread, in batches */
} cr_svc_where;

/* Runs a request on its thread. ctx is the one given to cr_service_open. It replies with
 * cr_svc_reply_* (or keeps the call to reply later, from any thread). */
typedef void cr_svc_fn(void *ctx, cr_svc_call *call, const Cirrus__V1__Request *req);
/* Tries a POOL request on the front thread: 1 when it answered, 0 to queue it for the pool
 * (e.g. the data it needs is locked: the front never waits). */
typedef int cr_svc_try_fn(void *ctx, cr_svc_call *call, const Cirrus__V1__Request *req);
/* Checks a WRITER request on the front before it is queued; an error is the reply (its code
 * and cr_error_message()). */
typedef cr_err cr_svc_admit_fn(void *ctx, const Cirrus__V1__Request *req);
/* Runs n >= 2 POOL requests of one op taken from the queue together: calls[0..n) in arrival
 * order, each unpacked (cr_svc_call_request) and within its deadline. It answers every one
 * (the skeleton answers CR_ERR_INTERNAL for any it leaves unanswered) and may keep calls. */
typedef void cr_svc_batch_fn(void *ctx, cr_svc_call *const *calls, size_t n);

typedef struct cr_svc_op {
    int op;                  /* a Cirrus__V1__Request__OpCase */
    cr_svc_where where;
    cr_svc_fn *fn;           /* FRONT, POOL: runs it (WRITER ops run in write_batch) */
    cr_svc_try_fn *front;    /* POOL, optional: tried on the front first (see above) */
    cr_svc_admit_fn *admit;  /* WRITER, optional */
} cr_svc_op;

typedef struct cr_svc_ops {
    const cr_svc_op *ops;
    size_t n;
    const char *unsupported; /* the message for ops not in the table */
    /* Needed when the table has WRITER ops. calls[0..n) are in arrival order; the skeleton
     * frees them when write_batch returns (keep one with cr_svc_call_keep to reply later). */
    void (*write_batch)(void *ctx, cr_svc_call *const *calls, size_t n);
    void (*write_idle)(void *ctx, int final);             /* optional */
    size_t (*write_weight)(const Cirrus__V1__Request *req); /* optional: NULL = 1 each */
} cr_svc_ops;

typedef int cr_svc_spawn_fn(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                            void *arg);

typedef struct cr_svc_opts {
    const char *name;          /* "shard", "encoder": logs and messages */
    const char *pool_name;     /* the pool's threads in messages ("search"; default "worker") */
    const char *bind;          /* tcp://host:port (port 0: any free one), ipc://, inproc:// */
    void *zmq_ctx;             /* share a context (needed for inproc); NULL = own */
    int workers;               /* pool threads, 1..64 (default 2) */
    int pool_queue;            /* pool requests queued or running before OVERLOADED (10000) */
    int batch_op;              /* a POOL op (Cirrus__V1__Request__OpCase) whose queued
                                  requests run together through `batch`; 0 = none */
    cr_svc_batch_fn *batch;    /* with batch_op */
    int pool_batch;            /* most requests per `batch` call (32); 1 = never batch */
    int writer_queue;          /* writer requests queued before OVERLOADED (1024) */
    size_t writer_batch;       /* most weight per write_batch call (8192); a request heavier
                                  than this alone still runs, alone */
    uint32_t default_deadline_ms; /* for requests without one (30000) */
    size_t max_frame;          /* largest request body; 0 = CR_WIRE_DEFAULT_MAX_FRAME */
    uint32_t drain_ms;         /* longest wait at close for pool and kept calls (30000) */
    unsigned spin_us;          /* front busy-polls this long after traffic (0 = never) */
    uint32_t idle_ms;          /* writer's idle tick (100) */
    cr_svc_spawn_fn *spawn;    /* thread start, for tests injecting failures; NULL =
                                  pthread_create */
    const struct cr_curve *curve; /* CURVE on a tcp:// bind (common/curve.h; borrowed until
                                     close); NULL = plaintext */
} cr_svc_opts;

cr_svc_opts cr_svc_default_opts(void);

/* Binds the ROUTER, starts the writer (when the table has WRITER ops), the pool and the front
 * thread, and returns once each of them runs: a client may connect and send at once. Writes
 * *out only on success; on failure nothing is left running and nothing is bound. Errors:
 * CR_ERR_INVALID (options, table), CR_ERR_NET ("cannot bind ENDPOINT: why"),
 * CR_ERR_INTERNAL ("cannot start the writer thread", "cannot start search thread 2 of 4",
 * "cannot start the shard front thread"). The options and the table are copied; ctx is
 * borrowed until close. */
cr_err cr_service_open(cr_service **out, const cr_svc_opts *o, const cr_svc_ops *ops, void *ctx);

/* The endpoint actually bound (for tcp://...:0, the port chosen). Valid until close. */
const char *cr_service_endpoint(const cr_service *s);

/* Stops reading requests, lets the pool finish what is queued (past drain_ms, queued
 * requests are answered CR_ERR_UNAVAILABLE), lets the writer finish its whole queue and its
 * final idle call, waits for kept calls and forwards every reply, for at most drain_ms; then
 * raises the calls' cancel flag, waits 100 ms more and stops forwarding (later replies are
 * dropped), joins every thread and frees. Returns CR_TIMEOUT when a pool thread did not
 * return within 5 s past the drain: it is left running (detached) and may still use ctx, so
 * the caller must not free ctx then. NULL-safe; sets *pp to NULL. */
cr_err cr_service_close(cr_service **pp);

/* ---- calls (any thread holding the call; one thread at a time) ------------------------- */

/* Sends `resp` as the ok answer to `id` (sets its id and an ok Status). */
cr_err cr_svc_reply_ok(cr_svc_call *c, uint64_t id, Cirrus__V1__Response *resp);
/* Sends a Status-only answer (message copied; NULL or "" = cr_strerror(code)). */
cr_err cr_svc_reply_error(cr_svc_call *c, uint64_t id, cr_err code, const char *message);
/* Sends `resp` as it is (id and status already set). */
cr_err cr_svc_reply(cr_svc_call *c, const Cirrus__V1__Response *resp);

/* The unpacked request (NULL before it was unpacked: only write_batch and handlers use it). */
const Cirrus__V1__Request *cr_svc_call_request(const cr_svc_call *c);
/* When the front received the request (monotonic us): deadlines count from here. */
uint64_t cr_svc_call_recv_us(const cr_svc_call *c);
/* Raised once close stops waiting for the call: its work may stop (its reply is dropped).
 * Valid while the call is held. */
const atomic_int *cr_svc_call_cancel(const cr_svc_call *c);

/* Takes the call from the skeleton: it is not freed when the handler returns, and the holder
 * replies later from any thread, then releases it. Returns c. */
cr_svc_call *cr_svc_call_keep(cr_svc_call *c);
/* Lets go of a kept call; it is freed once the skeleton's thread is done with it too (then
 * answered CR_ERR_INTERNAL if nobody answered it). NULL-safe; sets *pp to NULL. */
void cr_svc_call_release(cr_svc_call **pp);

#endif
