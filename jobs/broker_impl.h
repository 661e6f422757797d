/* broker_impl.h — the broker's state, private to jobs/broker*.c and the files beside it:
 *   broker.c   the thread, its sockets and poll loop, the group commit (flush), the sync thread
 *              that makes commits durable off the loop, and the tick;
 *   table.c    jobs in memory: the id and idempotency-key indexes, the FCFS queue per kind,
 *              records to and from the store, loading at start;
 *   intake.c   client requests: Generate (checks, admission), JobStatus, CancelJob, ListJobs,
 *              Health, and the waiters answered when a job is durable or ends;
 *   dispatch.c workers: Ready, heartbeats both ways, progress, results, liveness, dispatch;
 *   evict.c    results kept for the TTL within the size budget;
 *   garment.c  garment item ids resolved through a Get to the items endpoint;
 *   metrics.c  counters and the Prometheus text.
 * Everything here runs on the broker thread, except the metrics (under their mutex).
 */
#ifndef JOBS_BROKER_IMPL_H
#define JOBS_BROKER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/curve.h"
#include "common/err.h"
#include "common/sock.h"
#include "common/wire.h"
#include "jobs/broker.h"
#include "jobs/store.h"

#define JOBS_KINDS 4            /* Cirrus__V1__JobKind values 0..3 */
#define JOBS_MAX_WORKERS 1024   /* connected at once; more are told to reconnect later */
#define JOBS_MAX_CONCURRENCY 64 /* per worker */
#define JOBS_DEAD_INTERVALS 3   /* silent heartbeat intervals before a peer is dead */
#define JOBS_ID_LEN 24
#define JOBS_NAME_LEN 64
#define JOBS_MAX_IMAGE (16u << 20) /* any one input image */
#define JOBS_MAX_TEXT 4096
#define JOBS_MAX_KEY 200
#define JOBS_SIZE_MIN 64          /* output width and height (multiples of 8), as libcirrus */
#define JOBS_SIZE_MAX 2048
#define JOBS_GUIDANCE_MAX 50.0f
#define JOBS_RESOLVE_MAX 256      /* garment lookups in flight */
#define JOBS_HASH 4096            /* buckets of the id and key indexes (chained) */

typedef struct jobs_job jobs_job;
typedef struct jobs_worker jobs_worker;

typedef struct jobs_attempt {
    char worker[JOBS_NAME_LEN];
    char reason[32];
    uint64_t started_ms, ended_ms;
} jobs_attempt;

/* A client waiting on a job: for its submit to be durable (until_end = 0) or for its end. */
typedef struct jobs_waiter {
    cr_wire_msg route;
    uint64_t req_id;
    int op;               /* the Request op it answers (Generate, JobStatus, CancelJob) */
    uint64_t deadline_ms; /* monotonic; then it is answered with the job as it stands */
    int until_end, include_image;
    struct jobs_waiter *next;
} jobs_waiter;

struct jobs_job {
    char id[JOBS_ID_LEN];
    char *key; /* idempotency key, or NULL */
    Cirrus__V1__JobKind kind;
    Cirrus__V1__JobState state;
    /* The request (protobuf-c's default allocator), kept while the job may still run; its
     * images are dropped from memory and from the record once the job ended. */
    Cirrus__V1__GenerateRequest *req;
    uint64_t seq, created_ms, started_ms, ended_ms, deadline_ms; /* wall clock */
    uint64_t queued_us; /* monotonic: when it entered the queue (queue-wait histogram) */
    uint32_t attempts, step;
    float fraction;
    char error[256];
    jobs_attempt *log;
    size_t n_log;
    int cancel_requested;
    uint8_t *image;       /* a result not yet committed (freed by the flush) */
    size_t image_len;
    size_t stored_image;  /* bytes of the committed result; 0 = none (or evicted) */
    int committed;        /* its record is in the store (a commit, maybe not yet synced) */
    int durable;          /* the submit is synced: the job exists for clients */
    int report_sync;      /* a change clients must only see once synced (submit, end) */
    uint64_t sync_gen;    /* the commit that carries that change; reported once synced */
    int sync_listed;      /* on the unsynced list */
    jobs_job *sync_next;
    int dirty;            /* on the flush list */
    int evict;            /* the flush drops its stored image */
    int cancel_sent;
    jobs_worker *worker;  /* running on, or (cancelled, still draining) held by */
    jobs_waiter *waiters;
    jobs_job *q_prev, *q_next;     /* the queue of its kind, or the running list */
    jobs_job *all_prev, *all_next; /* every job, in submission order */
    jobs_job *res_prev, *res_next; /* stored results, oldest first */
    jobs_job *dirty_next;
    jobs_job *id_next, *key_next;  /* hash chains */
};

struct jobs_worker {
    int used;
    cr_wire_msg route;                 /* its identity frame, to send to it */
    uint8_t rid[64];
    size_t rid_len;
    char name[JOBS_NAME_LEN];
    unsigned caps;                     /* bit per JobKind */
    uint32_t concurrency, active;
    uint64_t last_heard_ms, last_sent_ms; /* monotonic */
    uint64_t last_dispatch;            /* a counter: least recently used first */
};

typedef struct jobs_list {
    jobs_job *head, *tail;
    size_t n;
} jobs_list;

/* A Generate waiting for its garment image. */
typedef struct jobs_resolve {
    int used;
    uint64_t call_id;
    uint64_t deadline_ms;       /* monotonic */
    jobs_job *job;              /* not yet indexed nor durable */
    jobs_waiter *w;
} jobs_resolve;

typedef struct jobs_metrics {
    pthread_mutex_t mu;
    uint64_t by_state[JOBS_KINDS][6];
    uint64_t queue_depth;
    uint64_t workers_by_cap[JOBS_KINDS];
    uint64_t workers;
    uint64_t retries[8]; /* by reason index (metrics.c) */
    uint64_t submitted, rejected_overloaded, rejected_invalid, evicted;
    uint64_t store_commits, store_syncs, store_sync_errors;
    uint64_t wait_buckets[14], run_buckets[14];
    double wait_sum, run_sum;
    uint64_t wait_n, run_n;
} jobs_metrics;

struct jobs_broker {
    jobs_broker_opts o;
    char dir[4096], bind[256], worker_bind[256], items[256];
    char endpoint[256], worker_endpoint[256];
    void *ctx;
    int own_ctx;
    void *front, *wsock, *isock; /* clients' ROUTER, workers' ROUTER, items DEALER */
    cr_wire_limits lim, wlim;
    cr_curve curve;  /* o.curve copied (o.curve points here) */
    struct cr_zap *zap; /* checks workers when the worker endpoint is CURVE */
    jobs_store *st;
    pthread_t tid;
    int thread_started;
    atomic_int stop;
    cr_err start_rc;
    char start_msg[512];
    pthread_mutex_t start_mu;
    pthread_cond_t start_cv;
    int started;

    jobs_job *by_id[JOBS_HASH], *by_key[JOBS_HASH];
    jobs_list queued[JOBS_KINDS]; /* FCFS per kind */
    jobs_list running;            /* running, and cancelled ones still held by a worker */
    jobs_job *all_head, *all_tail;
    size_t n_all;
    jobs_job *res_head, *res_tail;
    size_t results_bytes;
    jobs_job *dirty_head;
    int flush_single;       /* a write failed: one record per transaction until all are in */
    uint64_t flush_retry_ms; /* monotonic: no write before (after a failed single write) */
    uint64_t next_seq;

    /* Durability (broker.c): the loop commits without syncing (commit_gen counts commits) and
     * the sync thread fdatasyncs the store; a change clients must see only once durable waits
     * on the unsynced list until synced_gen reaches its commit. */
    uint64_t commit_gen;
    uint64_t sync_kicked;      /* the newest commit the sync thread was asked for */
    _Atomic uint64_t synced_gen;
    jobs_job *unsynced_head, *unsynced_tail;
    pthread_t sync_tid;
    int sync_started;
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    uint64_t sync_want;        /* under sync_mu: the newest commit to sync */
    int sync_stop;             /* under sync_mu */
    atomic_int sync_failed;    /* a sync failed since the loop last looked */
    char sync_msg[256];        /* under sync_mu: why */
    char sync_ep[64];
    void *sync_rx;             /* the loop's end of the wake-up socket */

    jobs_worker *workers; /* JOBS_MAX_WORKERS */
    uint64_t dispatch_clock;
    jobs_resolve resolves[JOBS_RESOLVE_MAX];
    uint64_t next_call_id;
    uint64_t last_tick_ms;
    unsigned workers_by_kind_seen; /* kinds some worker announced since start */

    jobs_metrics m;
};

/* ---- table.c ---- */
jobs_job *jobs_find(jobs_broker *b, const char *id);
jobs_job *jobs_find_key(jobs_broker *b, const char *key);
/* A new job for req (taken over), with a fresh id and seq; not yet indexed. */
jobs_job *jobs_job_new(jobs_broker *b, Cirrus__V1__GenerateRequest *req);
/* Indexes a job (id, key, submission order) and queues it when queued. */
void jobs_index(jobs_broker *b, jobs_job *j);
/* Unindexes and frees (a submit whose commit failed). Answers no waiter. */
void jobs_job_drop(jobs_broker *b, jobs_job *j);
void jobs_job_free(jobs_job *j);
void jobs_list_push(jobs_list *l, jobs_job *j);
void jobs_list_remove(jobs_list *l, jobs_job *j);
/* Marks j for the next flush (a commit; synced soon after, nobody waits for it). */
void jobs_dirty(jobs_broker *b, jobs_job *j);
/* Marks j for the next flush with a change clients see only once it is synced (a submit, a
 * final state): status and cancel answers about j wait for that sync (jobs_synced). */
void jobs_dirty_report(jobs_broker *b, jobs_job *j);
/* 1 when every change of j that clients may see is synced. */
int jobs_synced(const jobs_broker *b, const jobs_job *j);
/* Fills rec (storage of the caller: attempts[] of n_log entries) from j. */
void jobs_record_fill(const jobs_job *j, Cirrus__V1__JobRecord *rec, Cirrus__V1__JobAttempt *atts,
                      Cirrus__V1__JobAttempt **attp);
/* Fills info from j (no image). attempts storage as above. */
void jobs_info_fill(const jobs_job *j, Cirrus__V1__JobInfo *info, Cirrus__V1__JobAttempt *atts,
                    Cirrus__V1__JobAttempt **attp);
/* Loads every record of the store; queued and running ones are queued again. */
cr_err jobs_table_load(jobs_broker *b);
void jobs_table_free(jobs_broker *b);
/* Appends an attempt record. */
void jobs_attempt_begin(jobs_job *j, const char *worker, uint64_t now_ms);
void jobs_attempt_end(jobs_job *j, const char *reason, uint64_t now_ms);
/* A job reaches a final state: its request images are dropped, it leaves its queue or the
 * running list (unless still held by a worker), waiters are answered after the flush. */
void jobs_finish(jobs_broker *b, jobs_job *j, Cirrus__V1__JobState state, const char *error);
int jobs_terminal(Cirrus__V1__JobState s);
const char *jobs_state_name(Cirrus__V1__JobState s);
const char *jobs_kind_name(Cirrus__V1__JobKind k);

/* ---- intake.c ---- */
void jobs_on_client(jobs_broker *b, cr_wire_msg *m);
/* Answers (and frees) waiters that are due: after a flush, and at their deadlines. */
void jobs_waiters_settle(jobs_broker *b, jobs_job *j, uint64_t now_mono_ms, int force);
void jobs_waiter_answer(jobs_broker *b, jobs_job *j, jobs_waiter *w, cr_err code,
                        const char *msg);
/* After garment resolution: admit a job (queue bound), mark it for the flush. */
void jobs_submit(jobs_broker *b, jobs_job *j, jobs_waiter *w);
void jobs_deadlines(jobs_broker *b, uint64_t now_ms, uint64_t now_mono);

/* ---- dispatch.c ---- */
void jobs_on_worker(jobs_broker *b, cr_wire_msg *m);
void jobs_dispatch(jobs_broker *b);
void jobs_liveness(jobs_broker *b, uint64_t now_mono);
/* Sends Cancel for j to the worker that holds it. */
void jobs_cancel_send(jobs_broker *b, jobs_job *j);
void jobs_workers_free(jobs_broker *b);

/* ---- evict.c ---- */
void jobs_result_add(jobs_broker *b, jobs_job *j);
void jobs_result_remove(jobs_broker *b, jobs_job *j);
void jobs_evict(jobs_broker *b, uint64_t now_ms);
/* Bytes results may use. */
size_t jobs_result_budget(const jobs_broker *b);

/* ---- garment.c ---- */
/* Starts the lookup of j's garment item (the waiter w answered at the end); a job without
 * one goes straight to jobs_submit. */
void jobs_garment_start(jobs_broker *b, jobs_job *j, jobs_waiter *w);
void jobs_on_items(jobs_broker *b);
void jobs_garment_timeouts(jobs_broker *b, uint64_t now_mono);
void jobs_garment_abort(jobs_broker *b);

/* ---- metrics.c ---- */
void jobs_metrics_init(jobs_metrics *m);
void jobs_metrics_free(jobs_metrics *m);
/* Recomputes the gauges from the tables (under the mutex). */
void jobs_metrics_gauges(jobs_broker *b);
void jobs_metrics_retry(jobs_broker *b, const char *reason);
void jobs_metrics_wait(jobs_broker *b, double seconds);
void jobs_metrics_run(jobs_broker *b, double seconds);
void jobs_metrics_count(jobs_broker *b, uint64_t *counter);

#endif
