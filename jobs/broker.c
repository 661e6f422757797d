/* broker.c — the broker thread: its sockets, the poll loop, the group commit, the sync thread
 * that makes commits durable off the loop, and the tick (liveness, deadlines, eviction).
 * See broker.h for the contract and broker_impl.h for the other files.
 *
 * Durability. Each loop turn writes every changed record in one LMDB transaction committed
 * without a sync (jobs/store.c: the pages are in the page cache, so they survive kill -9 of
 * the broker at once) and dispatches right after it; the sync thread fdatasyncs the store
 * whenever commits are newer than the last sync, one sync covering every commit before it
 * began. What a client may see waits for the sync of its commit: a submit's id (its waiter),
 * a final state (JobStatus and CancelJob answers, deferred in intake.c). Transient changes
 * (running, attempts begun, requeues) are committed the same way but nobody waits for their
 * sync: a restart turns running jobs back into queued ones anyway. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/curve_zap.h"
#include "common/log.h"
#include "jobs/broker_impl.h"

#define FLUSH_MAX 1024     /* records per transaction */
#define RECV_BURST 512     /* messages read from one socket before looking at the others */
#define TICK_MIN_MS 10

jobs_broker_opts jobs_broker_default_opts(void)
{
    jobs_broker_opts o;
    memset(&o, 0, sizeof o);
    o.heartbeat_ms = 1000;
    o.attempts = 3;
    o.queue = 1000;
    o.result_ttl_ms = 3600 * 1000;
    o.store_mb = 1024;
    o.job_deadline_ms = 10 * 60 * 1000;
    o.default_wait_ms = 30000;
    return o;
}

/* ---- the group commit ------------------------------------------------------------------ */

/* Submits whose commit failed are refused; their waiters hear why. */
static void refuse_new(jobs_broker *b, jobs_job **jobs, size_t n, cr_err rc, const char *msg)
{
    for (size_t i = 0; i < n; i++) {
        jobs_job *j = jobs[i];
        if (j->committed)
            continue;
        while (j->waiters) {
            jobs_waiter *w = j->waiters;
            j->waiters = w->next;
            jobs_waiter_answer(b, NULL, w, rc, msg);
        }
        jobs_job_drop(b, j);
    }
}

/* synced_gen = max(synced_gen, gen): the sync thread and sync_now may both sync. */
static void synced_advance(jobs_broker *b, uint64_t gen)
{
    uint64_t cur = atomic_load(&b->synced_gen);
    while (gen > cur && !atomic_compare_exchange_weak(&b->synced_gen, &cur, gen))
        ;
}

/* Asks the sync thread to sync up to commit gen. */
static void sync_request(jobs_broker *b, uint64_t gen)
{
    pthread_mutex_lock(&b->sync_mu);
    if (gen > b->sync_want)
        b->sync_want = gen;
    pthread_cond_signal(&b->sync_cv);
    pthread_mutex_unlock(&b->sync_mu);
}

/* Marks j for the next flush behind the others (a record that failed to be written does not
 * hold up the rest). */
static void dirty_append(jobs_broker *b, jobs_job *j)
{
    jobs_job **pp = &b->dirty_head;
    if (j->dirty)
        return;
    while (*pp)
        pp = &(*pp)->dirty_next;
    j->dirty = 1;
    j->dirty_next = NULL;
    *pp = j;
}

/* Writes up to FLUSH_MAX dirty jobs in one transaction (committed, not yet synced); their
 * changes that clients must see only once synced go on the unsynced list. Returns the number
 * written (0 when nothing was dirty or the write failed). */
static size_t flush_some(jobs_broker *b)
{
    jobs_job *jobs[FLUSH_MAX];
    Cirrus__V1__JobRecord *recs[FLUSH_MAX];
    Cirrus__V1__JobRecord *rec = NULL;
    Cirrus__V1__JobAttempt *atts = NULL, **attp = NULL;
    size_t n = 0, n_att = 0, at = 0;
    uint64_t now = cr_clock_mono_ms();
    cr_err rc;

    /* after a failed write, one record per transaction: a full map may still take the
     * smaller ones (and evictions that free room), and one bad record blocks no other */
    while (b->dirty_head && n < (b->flush_single ? 1 : FLUSH_MAX)) {
        jobs[n] = b->dirty_head;
        b->dirty_head = jobs[n]->dirty_next;
        jobs[n]->dirty = 0;
        n_att += jobs[n]->n_log;
        n++;
    }
    if (!n)
        return 0;
    rec = calloc(n, sizeof *rec);
    atts = calloc(n_att + 1, sizeof *atts);
    attp = calloc(n_att + 1, sizeof *attp);
    if (!rec || !atts || !attp) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        jobs_record_fill(jobs[i], &rec[i], atts + at, attp + at);
        at += jobs[i]->n_log;
        recs[i] = &rec[i];
    }
    rc = jobs_store_put(b->st, recs, n);
    if (rc)
        goto fail;
    b->flush_retry_ms = 0;
    if (b->flush_single && !b->dirty_head)
        b->flush_single = 0;
    free(rec);
    free(atts);
    free(attp);
    b->commit_gen++;
    jobs_metrics_count(b, &b->m.store_commits);
    for (size_t i = 0; i < n; i++) {
        jobs_job *j = jobs[i];
        j->committed = 1;
        if (j->evict) {
            j->stored_image = 0;
            j->evict = 0;
        }
        if (j->image) {
            j->stored_image = j->image_len;
            free(j->image);
            j->image = NULL;
            j->image_len = 0;
            jobs_result_add(b, j);
        }
        if (j->report_sync) {
            j->report_sync = 0;
            j->sync_gen = b->commit_gen;
            if (!j->sync_listed) {
                j->sync_listed = 1;
                j->sync_next = NULL;
                if (b->unsynced_tail)
                    b->unsynced_tail->sync_next = j;
                else
                    b->unsynced_head = j;
                b->unsynced_tail = j;
            }
        }
    }
    return n; /* the loop asks for the sync once it has dispatched (sync_kick) */
fail:
    /* a single record that fails waits for the next heartbeat interval: no busy retry loop
     * (the log says it once per interval) */
    if (n == 1 || b->flush_single)
        b->flush_retry_ms = now + b->o.heartbeat_ms;
    b->flush_single = 1;
    CR_ERROR("jobs", "writing %zu job records: %s", n, cr_error_message());
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cr_error_message());
        free(rec);
        free(atts);
        free(attp);
        /* jobs already in the store stay dirty for the next flush; new ones are refused */
        for (size_t i = 0; i < n; i++)
            if (jobs[i]->committed)
                dirty_append(b, jobs[i]);
        refuse_new(b, jobs, n, rc, msg);
    }
    return 0;
}

/* Jobs whose commit the sync thread has synced: submits become visible (their ids are
 * answered), deferred status and cancel answers go out. After a failed sync, the submits
 * waiting are refused (their records may not survive a crash; the jobs stay, unseen). */
static void settle_synced(jobs_broker *b)
{
    uint64_t synced = atomic_load(&b->synced_gen), now = cr_clock_mono_ms();
    if (atomic_exchange(&b->sync_failed, 0)) {
        char msg[300];
        pthread_mutex_lock(&b->sync_mu);
        snprintf(msg, sizeof msg, "%s", b->sync_msg);
        pthread_mutex_unlock(&b->sync_mu);
        for (jobs_job *j = b->unsynced_head; j; j = j->sync_next)
            if (j->sync_gen > synced && !j->durable)
                while (j->waiters) {
                    jobs_waiter *w = j->waiters;
                    j->waiters = w->next;
                    jobs_waiter_answer(b, NULL, w, CR_ERR_STORE, msg);
                }
    }
    while (b->unsynced_head && b->unsynced_head->sync_gen <= synced) {
        jobs_job *j = b->unsynced_head;
        b->unsynced_head = j->sync_next;
        if (!b->unsynced_head)
            b->unsynced_tail = NULL;
        j->sync_next = NULL;
        j->sync_listed = 0;
        j->durable = 1;
        jobs_waiters_settle(b, j, now, 0);
    }
}

/* The sync thread: fdatasyncs the store while commits are newer than the last sync, then
 * wakes the loop. It touches only the store (jobs_store_sync may run beside a commit), the
 * sync_* fields and its own end of the wake-up socket. */
static void *sync_main(void *arg)
{
    jobs_broker *b = arg;
    void *tx = NULL;
    cr_sock_buf none = {"", 0};
    if (cr_sock_open(b->ctx, CR_SOCK_DEALER, NULL, &tx) || cr_sock_connect(tx, b->sync_ep)) {
        CR_ERROR("jobs", "the sync thread's socket: %s", cr_error_message());
        cr_sock_close(&tx);
    }
    pthread_mutex_lock(&b->sync_mu);
    while (!b->sync_stop) {
        uint64_t target;
        cr_err rc;
        if (b->sync_want <= atomic_load(&b->synced_gen)) {
            pthread_cond_wait(&b->sync_cv, &b->sync_mu);
            continue;
        }
        target = b->sync_want;
        pthread_mutex_unlock(&b->sync_mu);
        rc = jobs_store_sync(b->st);
        jobs_metrics_count(b, rc ? &b->m.store_sync_errors : &b->m.store_syncs);
        pthread_mutex_lock(&b->sync_mu);
        if (rc) {
            CR_ERROR("jobs", "syncing the job store: %s", cr_error_message());
            snprintf(b->sync_msg, sizeof b->sync_msg, "%s", cr_error_message());
            atomic_store(&b->sync_failed, 1);
        } else {
            synced_advance(b, target);
        }
        pthread_mutex_unlock(&b->sync_mu);
        if (tx)
            cr_sock_send(tx, NULL, &none, 1, CR_SOCK_DONTWAIT); /* full queue: awake anyway */
        if (rc)
            cr_clock_sleep_ms(100); /* and try again: the next commit's waiters need a sync */
        pthread_mutex_lock(&b->sync_mu);
    }
    pthread_mutex_unlock(&b->sync_mu);
    cr_sock_close(&tx);
    return NULL;
}

/* After the dispatch: wakes the sync thread for the commits of this turn (woken before, it
 * could take the CPU from the loop between the commit and the dispatch). */
static void sync_kick(jobs_broker *b)
{
    if (b->commit_gen > b->sync_kicked) {
        b->sync_kicked = b->commit_gen;
        sync_request(b, b->commit_gen);
    }
}

static void drain_wake(jobs_broker *b)
{
    for (int i = 0; i < 1024; i++) {
        ProtobufCMessage *pm = NULL;
        cr_err rc = cr_sock_recv_unpack(b->sync_rx, &cirrus__v1__coordinator_heartbeat__descriptor,
                                        NULL, CR_SOCK_DONTWAIT, &pm);
        if (pm)
            protobuf_c_message_free_unpacked(pm, NULL);
        if (rc == CR_TIMEOUT || rc == CR_ERR_NET)
            break;
    }
}

static cr_err sync_start(jobs_broker *b)
{
    cr_err rc;
    snprintf(b->sync_ep, sizeof b->sync_ep, "inproc://cirrus-jobs-sync-%p", (void *)b);
    rc = cr_sock_open(b->ctx, CR_SOCK_DEALER, NULL, &b->sync_rx);
    if (!rc)
        rc = cr_sock_bind(b->sync_rx, b->sync_ep);
    if (rc)
        return rc;
    if (pthread_create(&b->sync_tid, NULL, sync_main, b) != 0)
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the job store's sync thread");
    b->sync_started = 1;
    return CR_OK;
}

/* Syncs what is committed on this thread (start and stop), then stops the sync thread. */
static void sync_now(jobs_broker *b)
{
    if (b->commit_gen > atomic_load(&b->synced_gen)) {
        if (jobs_store_sync(b->st))
            CR_ERROR("jobs", "syncing the job store: %s", cr_error_message());
        else
            synced_advance(b, b->commit_gen);
    }
    settle_synced(b);
}

static void sync_stop(jobs_broker *b)
{
    if (b->sync_started) {
        pthread_mutex_lock(&b->sync_mu);
        b->sync_stop = 1;
        pthread_cond_signal(&b->sync_cv);
        pthread_mutex_unlock(&b->sync_mu);
        pthread_join(b->sync_tid, NULL);
        b->sync_started = 0;
    }
    cr_sock_close(&b->sync_rx);
}

static void flush(jobs_broker *b)
{
    if (b->flush_retry_ms && cr_clock_mono_ms() < b->flush_retry_ms)
        return;
    while (b->dirty_head && flush_some(b) == (b->flush_single ? 1 : FLUSH_MAX))
        ;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void tick(jobs_broker *b, uint64_t now_mono)
{
    uint64_t now_ms = (uint64_t)cr_clock_unix_ms();
    jobs_liveness(b, now_mono);
    jobs_deadlines(b, now_ms, now_mono);
    jobs_garment_timeouts(b, now_mono);
    jobs_evict(b, now_ms);
    jobs_metrics_gauges(b);
    b->last_tick_ms = now_mono;
}

static uint32_t tick_every(const jobs_broker *b)
{
    uint32_t t = b->o.heartbeat_ms / 4;
    return t < TICK_MIN_MS ? TICK_MIN_MS : t > 250 ? 250 : t;
}

static void drain_front(jobs_broker *b)
{
    cr_wire_msg m;
    cr_wire_msg_init(&m);
    for (int i = 0; i < RECV_BURST; i++) {
        cr_err rc = cr_wire_front_recv(b->front, &m, &b->lim);
        if (rc == CR_TIMEOUT)
            break;
        if (rc == CR_OK)
            jobs_on_client(b, &m);
    }
    cr_wire_msg_close(&m);
}

static void drain_workers(jobs_broker *b)
{
    cr_wire_msg m;
    cr_wire_msg_init(&m);
    for (int i = 0; i < RECV_BURST; i++) {
        cr_err rc = cr_wire_recv(b->wsock, &m, &b->wlim, CR_SOCK_DONTWAIT);
        if (rc == CR_TIMEOUT)
            break;
        if (rc == CR_ERR_PROTO) {
            CR_WARN("jobs", "dropped a worker frame: %s", cr_error_message());
            continue;
        }
        if (rc) {
            CR_ERROR("jobs", "worker socket: %s", cr_error_message());
            break;
        }
        jobs_on_worker(b, &m);
    }
    cr_wire_msg_close(&m);
}

static void loop(jobs_broker *b)
{
    cr_poll *p = NULL;
    uint32_t every = tick_every(b);
    if (cr_poll_new(&p, 4)) {
        CR_ERROR("jobs", "poll set: %s", cr_error_message());
        return;
    }
    cr_poll_add(p, b->front, CR_POLL_IN);
    cr_poll_add(p, b->wsock, CR_POLL_IN);
    cr_poll_add(p, b->isock, CR_POLL_IN);
    cr_poll_add(p, b->sync_rx, CR_POLL_IN);
    while (!atomic_load(&b->stop)) {
        uint64_t now = cr_clock_mono_ms();
        long wait = (long)(b->last_tick_ms + every > now ? b->last_tick_ms + every - now : 0);
        int n = cr_poll_wait(p, b->dirty_head && !b->flush_retry_ms ? 0 : wait, NULL);
        if (n > 0) {
            if (cr_poll_readable(p, 1))
                drain_workers(b);
            if (cr_poll_readable(p, 0))
                drain_front(b);
            if (cr_poll_readable(p, 2))
                jobs_on_items(b);
            if (cr_poll_readable(p, 3))
                drain_wake(b);
        }
        now = cr_clock_mono_ms();
        if (now >= b->last_tick_ms + every)
            tick(b, now);
        flush(b);
        jobs_dispatch(b);
        sync_kick(b);
        settle_synced(b);
    }
    cr_poll_free(&p);
}

/* ---- start and stop ---------------------------------------------------------------------- */

static cr_err sockets_open(jobs_broker *b)
{
    cr_err rc;
    b->lim = cr_wire_default_limits();
    b->wlim = b->lim;
    /* the broker runs its own heartbeats with workers; ZMTP's stay for dead TCP peers */
    if (strncmp(b->bind, "inproc://", 9) == 0)
        b->lim.heartbeat_ivl_ms = 0;
    if (strncmp(b->worker_bind, "inproc://", 9) == 0)
        b->wlim.heartbeat_ivl_ms = 0;
    rc = cr_sock_open(b->ctx, CR_SOCK_ROUTER, &b->lim, &b->front);
    if (!rc)
        rc = cr_sock_bind(b->front, b->bind);
    if (!rc)
        rc = cr_sock_endpoint(b->front, b->endpoint, sizeof b->endpoint);
    if (!rc)
        rc = cr_sock_open(b->ctx, CR_SOCK_ROUTER, &b->wlim, &b->wsock);
    /* CURVE workers: the ZAP handler before the bind (without one any key would do) */
    if (!rc && b->o.curve && cr_endpoint_is_tcp(b->worker_bind)) {
        rc = cr_zap_start(&b->zap, b->ctx, b->o.curve);
        if (!rc)
            rc = cr_curve_setup_server(b->wsock, b->o.curve);
    }
    if (!rc)
        cr_warn_exposed("jobs", b->worker_bind, b->zap != NULL,
                        "CURVE for the workers (--curve-secret, --curve-allow)");
    if (!rc)
        rc = cr_sock_bind(b->wsock, b->worker_bind);
    if (!rc)
        rc = cr_sock_endpoint(b->wsock, b->worker_endpoint, sizeof b->worker_endpoint);
    if (!rc) {
        cr_wire_limits il = b->lim;
        if (strncmp(b->items, "inproc://", 9) == 0)
            il.heartbeat_ivl_ms = 0;
        rc = cr_sock_open(b->ctx, CR_SOCK_DEALER, &il, &b->isock);
    }
    if (!rc && b->items[0])
        rc = cr_sock_connect(b->isock, b->items);
    return rc;
}

static void sockets_close(jobs_broker *b)
{
    cr_sock_close(&b->front);
    cr_sock_close(&b->wsock);
    cr_sock_close(&b->isock);
    cr_zap_stop(&b->zap);
}

static void started(jobs_broker *b, cr_err rc)
{
    pthread_mutex_lock(&b->start_mu);
    b->start_rc = rc;
    if (rc)
        snprintf(b->start_msg, sizeof b->start_msg, "%s", cr_error_message());
    b->started = 1;
    pthread_cond_signal(&b->start_cv);
    pthread_mutex_unlock(&b->start_mu);
}

static void *broker_main(void *arg)
{
    jobs_broker *b = arg;
    cr_err rc = sockets_open(b);
    if (!rc)
        rc = jobs_table_load(b);
    if (!rc)
        rc = sync_start(b);
    if (rc) {
        sync_stop(b);
        sockets_close(b);
        started(b, rc);
        return NULL;
    }
    CR_INFO("jobs", "broker on %s, workers on %s (heartbeat %u ms, %u attempts, queue %u)",
            b->endpoint, b->worker_endpoint, b->o.heartbeat_ms, b->o.attempts, b->o.queue);
    flush(b); /* jobs found running are queued again, durably */
    sync_now(b);
    jobs_metrics_gauges(b);
    started(b, CR_OK);
    loop(b);
    flush(b);
    sync_now(b);
    sync_stop(b);
    jobs_garment_abort(b);
    jobs_workers_free(b);
    sockets_close(b);
    return NULL;
}

static cr_err opts_check(const jobs_broker_opts *o)
{
    if (!o->dir || !o->dir[0] || !o->bind || !o->worker_bind)
        return cr_error_set(CR_ERR_INVALID, "the job broker needs a directory, a client "
                                            "endpoint and a worker endpoint");
    if (o->heartbeat_ms < 10 || o->heartbeat_ms > 60000)
        return cr_error_set(CR_ERR_INVALID, "job heartbeat %u ms: 10..60000", o->heartbeat_ms);
    if (o->attempts < 1 || o->attempts > 100 || o->queue < 1 || o->store_mb < 1)
        return cr_error_set(CR_ERR_INVALID, "job attempts 1..100, queue >= 1, store >= 1 MiB");
    if (strlen(o->dir) >= 4096 || strlen(o->bind) >= 256 || strlen(o->worker_bind) >= 256 ||
        (o->items && strlen(o->items) >= 256))
        return cr_error_set(CR_ERR_INVALID, "job broker path or endpoint too long");
    return CR_OK;
}

cr_err jobs_broker_open(jobs_broker **out, const jobs_broker_opts *o)
{
    jobs_broker *b;
    cr_err rc = opts_check(o);
    if (rc)
        return rc;
    if (!(b = calloc(1, sizeof *b)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    b->o = *o;
    snprintf(b->dir, sizeof b->dir, "%s", o->dir);
    snprintf(b->bind, sizeof b->bind, "%s", o->bind);
    snprintf(b->worker_bind, sizeof b->worker_bind, "%s", o->worker_bind);
    snprintf(b->items, sizeof b->items, "%s", o->items ? o->items : "");
    b->o.dir = b->dir;
    b->o.bind = b->bind;
    b->o.worker_bind = b->worker_bind;
    b->o.items = b->items[0] ? b->items : NULL;
    if (o->curve) {
        b->curve = *o->curve;
        b->o.curve = &b->curve;
    }
    b->workers = calloc(JOBS_MAX_WORKERS, sizeof *b->workers);
    pthread_mutex_init(&b->start_mu, NULL);
    pthread_cond_init(&b->start_cv, NULL);
    pthread_mutex_init(&b->sync_mu, NULL);
    pthread_cond_init(&b->sync_cv, NULL);
    jobs_metrics_init(&b->m);
    if (!b->workers) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    b->ctx = o->zmq_ctx;
    if (!b->ctx) {
        if ((rc = cr_wire_ctx_new(&b->ctx)))
            goto out;
        b->own_ctx = 1;
    }
    if ((rc = jobs_store_open(&b->st, b->dir, o->store_mb)))
        goto out;
    if (pthread_create(&b->tid, NULL, broker_main, b) != 0) {
        rc = cr_error_set(CR_ERR_INTERNAL, "cannot start the job broker thread");
        goto out;
    }
    b->thread_started = 1;
    pthread_mutex_lock(&b->start_mu);
    while (!b->started)
        pthread_cond_wait(&b->start_cv, &b->start_mu);
    pthread_mutex_unlock(&b->start_mu);
    if (b->start_rc) {
        rc = cr_error_set(b->start_rc, "%s", b->start_msg);
        goto out;
    }
out:
    if (rc) {
        jobs_broker_close(&b);
        return rc;
    }
    *out = b;
    return CR_OK;
}

const char *jobs_broker_endpoint(const jobs_broker *b)
{
    return b->endpoint;
}

const char *jobs_broker_worker_endpoint(const jobs_broker *b)
{
    return b->worker_endpoint;
}

void jobs_broker_close(jobs_broker **pp)
{
    jobs_broker *b = pp ? *pp : NULL;
    if (!b)
        return;
    atomic_store(&b->stop, 1);
    if (b->thread_started)
        pthread_join(b->tid, NULL);
    jobs_table_free(b);
    jobs_store_close(&b->st);
    if (b->own_ctx)
        cr_wire_ctx_term(&b->ctx);
    jobs_metrics_free(&b->m);
    pthread_mutex_destroy(&b->start_mu);
    pthread_cond_destroy(&b->start_cv);
    pthread_mutex_destroy(&b->sync_mu);
    pthread_cond_destroy(&b->sync_cv);
    free(b->workers);
    memset(&b->curve, 0, sizeof b->curve);
    free(b);
    *pp = NULL;
}
