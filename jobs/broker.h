/* broker.h — the generation job broker (DESIGN §7b): durable jobs, diffusion workers, dispatch.
 *
 *   jobs_broker_opts o = jobs_broker_default_opts();
 *   o.dir = "/var/lib/cirrus/jobs"; o.bind = "tcp://127.0.0.1:7720";
 *   o.worker_bind = "tcp://0.0.0.0:7721"; o.items = "tcp://127.0.0.1:7700";
 *   jobs_broker *b; rc = jobs_broker_open(&b, &o);   // returns once both sockets are bound
 *   ... clients (a coordinator forwarding, or anyone) send Generate / JobStatus / CancelJob /
 *       ListJobs / Health Requests to jobs_broker_endpoint(b); workers connect a DEALER to
 *       jobs_broker_worker_endpoint(b) ...
 *   jobs_broker_close(&b);
 *
 * What it guarantees: a job's id is returned only after its record is committed and synced
 * (fdatasync) to the LMDB store in `dir`, and a final state is reported only once synced too
 * (the loop commits without a sync and dispatches at once; a thread of its own syncs); a restart (kill -9 included) re-dispatches every job that was
 * queued or running; a worker silent for 3 heartbeat intervals is dead and its jobs are
 * requeued up to `attempts` times; the queue holds at most `queue` jobs (OVERLOADED past it);
 * results are kept `result_ttl_ms` within half of `store_mb` (the oldest evicted first).
 *
 * Threads: one broker thread owns every socket and the store (files broker.c, intake.c,
 * dispatch.c, table.c, evict.c, garment.c), but for a sync thread that only fdatasyncs the
 * store and wakes it; jobs_broker_metrics is safe from any thread.
 */
#ifndef JOBS_BROKER_H
#define JOBS_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct jobs_broker_opts {
    const char *dir;          /* required: the job store's directory */
    const char *bind;         /* client endpoint (tcp, ipc or inproc); required */
    const char *worker_bind;  /* worker ROUTER endpoint; required */
    const char *items;        /* endpoint answering Get (a coordinator) for garment ids; NULL:
                                 garment ids are refused */
    void *zmq_ctx;            /* shared context (needed for inproc); NULL = own */
    uint32_t heartbeat_ms;    /* both directions (default 1000); dead after 3 silent */
    uint32_t attempts;        /* attempts per job (default 3) */
    uint32_t queue;           /* most queued jobs (default 1000) */
    uint64_t result_ttl_ms;   /* how long a result is kept (default 1 h) */
    size_t store_mb;          /* LMDB map size; results may use half of it (default 1024) */
    uint32_t job_deadline_ms; /* of jobs submitted without one (default 10 min) */
    uint32_t default_wait_ms; /* request deadline of waits that carry none (default 30 s) */
    const struct cr_curve *curve; /* CURVE on a tcp:// worker_bind: workers must hold a key of
                                     curve->allow_dir (common/curve_zap.h; a ZAP handler of the
                                     same key already running in zmq_ctx is shared); copied;
                                     NULL = plaintext */
} jobs_broker_opts;

jobs_broker_opts jobs_broker_default_opts(void);

typedef struct jobs_broker jobs_broker;

/* Opens the store, loads its jobs (queued and running ones are queued again), binds both
 * endpoints and starts the broker thread. *out is written only on success. Errors: the
 * store's (CR_ERR_IO, CR_ERR_STORE), CR_ERR_NET (bind), CR_ERR_INVALID (options). */
cr_err jobs_broker_open(jobs_broker **out, const jobs_broker_opts *o);
/* The endpoints actually bound (tcp port 0 resolved). Valid until close. */
const char *jobs_broker_endpoint(const jobs_broker *b);
const char *jobs_broker_worker_endpoint(const jobs_broker *b);
/* Stops the thread (jobs stay in the store as they are), closes the sockets and the store.
 * NULL-safe; sets *pp = NULL. */
void jobs_broker_close(jobs_broker **pp);

/* Appends the broker's metrics in Prometheus text format to *text (malloc'd or NULL; grown
 * with realloc; *len updated). Any thread. */
cr_err jobs_broker_metrics(jobs_broker *b, char **text, size_t *len);

#endif
