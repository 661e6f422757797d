#include "shard/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/validate.h"
#include "common/wire.h"

#define POLL_MS 100

/* A write request waiting for the writer thread. Owns its request and routing frames. */
typedef struct write_job {
    cr_wire_msg route;   /* routing frames only */
    cr_pb_bounded alloc; /* the request was unpacked through it */
    Cirrus__V1__Request *req;
    struct write_job *next;
} write_job;

typedef struct server {
    shard_engine *engine;
    shard_server_opts o;
    void *ctx;
    char work_ep[64], reply_ep[64];
    cr_wire_limits lim;
    volatile sig_atomic_t *stop;
    atomic_int workers_stop, writer_stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    write_job *head, *tail;
    int queued;
} server;

shard_server_opts shard_server_default_opts(void)
{
    shard_server_opts o = {0};
    o.workers = 2;
    o.write_queue = 1024;
    o.max_batch_items = 8192;
    o.snapshot_writes = 100000;
    o.snapshot_interval_s = 300;
    o.rebuild_fraction = 0.2;
    o.default_deadline_ms = 30000;
    o.spin_us = 300;
    return o;
}

/* ---- replies ---------------------------------------------------------------------------- */

static cr_err reply(void *sock, const cr_wire_msg *route, uint64_t id,
                    Cirrus__V1__Response *resp)
{
    cr_err rc = cr_wire_reply_ok(sock, route, id, resp);
    if (rc)
        CR_WARN("shard", "reply %llu: %s", (unsigned long long)resp->id, cr_error_message());
    return rc;
}

static void reply_status(void *sock, const cr_wire_msg *route, uint64_t id, cr_err code,
                         const char *msg)
{
    if (cr_wire_reply_error(sock, route, id, code, msg))
        CR_WARN("shard", "reply %llu: %s", (unsigned long long)id, cr_error_message());
}

/* ---- reads (worker threads) -------------------------------------------------------------- */

static cr_err query_to_engine(shard_engine *e, const Cirrus__V1__Query *q, shard_engine_query *eq)
{
    memset(eq, 0, sizeof *eq);
    if (!q)
        return cr_error_set(CR_ERR_INVALID, "search without a query");
    if (q->kind_case != CIRRUS__V1__QUERY__KIND_VECTOR)
        return cr_error_set(CR_ERR_UNSUPPORTED,
                            "a shard answers vector queries only; send text, image and "
                            "composed queries to a coordinator");
    if (cr_validate_vector(q->vector, (uint32_t)shard_engine_dim(e), "query"))
        return CR_ERR_INVALID;
    if (q->group_by && q->group_by[0])
        return cr_error_set(CR_ERR_UNSUPPORTED, "group_by is applied by the coordinator");
    eq->vector = q->vector->values;
    eq->k = q->k + q->offset;
    eq->filter = q->filter;
    if (q->params) {
        eq->nprobe = q->params->nprobe;
        eq->ef_search = q->params->ef_search;
        eq->exact = q->params->exact;
    }
    eq->threads = 1;
    return cr_validate_k(q->k, CR_MAX_K);
}

static void result_free(Cirrus__V1__SearchResult *r)
{
    for (size_t i = 0; i < r->n_hits; i++) {
        shard_engine_hit_clear(r->hits[i]);
        free(r->hits[i]);
    }
    free(r->hits);
    r->hits = NULL;
    r->n_hits = 0;
}

/* `nowait`: CR_TIMEOUT, with nothing searched, while an index change holds the index. */
static cr_err run_query(shard_engine *e, const Cirrus__V1__Query *q, int nowait,
                        Cirrus__V1__SearchResult *r)
{
    shard_engine_query eq;
    shard_engine_hit *hits = NULL;
    size_t n = 0;
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc = query_to_engine(e, q, &eq);

    if (rc)
        return rc;
    eq.nowait = nowait;
    hits = malloc(eq.k * sizeof *hits);
    r->hits = calloc(eq.k, sizeof *r->hits);
    if (!hits || !r->hits) {
        free(hits);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = shard_engine_search(e, &eq, hits, &n);
    if (!rc && n > q->offset)
        rc = shard_engine_hits_fill(e, hits + q->offset, n - q->offset, q->include_metadata,
                                    q->include_vectors, r->hits, &r->n_hits);
    free(hits);
    if (r->timing)
        r->timing->search_us = cr_clock_mono_us() - t0;
    return rc;
}

/* Answers a search. With `nowait` (the front thread) returns 0 without answering when the
 * index is busy with a change: the caller hands the request to a worker. Else 1. */
static int search_reply(server *s, void *sock, const cr_wire_msg *route,
                        const Cirrus__V1__Request *req, int nowait)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchResult r = CIRRUS__V1__SEARCH_RESULT__INIT;
    Cirrus__V1__Timing t = CIRRUS__V1__TIMING__INIT;
    cr_err rc;

    r.timing = &t;
    rc = run_query(s->engine, req->search ? req->search->query : NULL, nowait, &r);
    if (rc == CR_TIMEOUT && nowait) {
        result_free(&r);
        return 0;
    }
    if (rc) {
        result_free(&r);
        reply_status(sock, route, req->id, rc, cr_error_message());
        return 1;
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
    resp.search = &r;
    reply(sock, route, req->id, &resp);
    result_free(&r);
    return 1;
}

static void do_search(server *s, void *sock, const cr_wire_msg *route, const Cirrus__V1__Request *req)
{
    search_reply(s, sock, route, req, 0);
}

/* A batch whose queries are all plain vector queries with the same k and parameters and no
 * filter runs as one index search over every core (SearchBatch is the throughput path). */
static int batch_uniform(shard_engine *e, const Cirrus__V1__SearchBatchRequest *b)
{
    const Cirrus__V1__Query *q0 = b->queries[0];
    for (size_t i = 0; i < b->n_queries; i++) {
        const Cirrus__V1__Query *q = b->queries[i];
        if (!q || q->kind_case != CIRRUS__V1__QUERY__KIND_VECTOR || q->filter || q->offset ||
            q->k != q0->k || !q->vector || q->vector->n_values != (size_t)shard_engine_dim(e) ||
            (q->group_by && q->group_by[0]) || q->include_metadata != q0->include_metadata ||
            q->include_vectors != q0->include_vectors || (q->params == NULL) != (q0->params == NULL))
            return 0;
        if (q->params && (q->params->nprobe != q0->params->nprobe ||
                          q->params->ef_search != q0->params->ef_search ||
                          q->params->exact != q0->params->exact))
            return 0;
    }
    return 1;
}

static cr_err run_batch(shard_engine *e, const Cirrus__V1__SearchBatchRequest *b,
                        Cirrus__V1__SearchBatchResult *out)
{
    const Cirrus__V1__Query *q0 = b->queries[0];
    size_t nq = b->n_queries, dim = (size_t)shard_engine_dim(e), k = q0->k;
    shard_engine_query common;
    float *qs = malloc(nq * dim * sizeof *qs);
    shard_engine_hit *hits = malloc(nq * (k ? k : 1) * sizeof *hits);
    size_t *n = calloc(nq, sizeof *n);
    cr_err rc = CR_OK;

    memset(&common, 0, sizeof common);
    common.k = q0->k;
    if (q0->params) {
        common.nprobe = q0->params->nprobe;
        common.ef_search = q0->params->ef_search;
        common.exact = q0->params->exact;
    }
    common.threads = 0; /* every core */
    if (!qs || !hits || !n)
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < nq; i++)
        memcpy(qs + i * dim, b->queries[i]->vector->values, dim * sizeof *qs);
    if (!rc)
        rc = shard_engine_search_many(e, qs, nq, &common, hits, n);
    for (size_t i = 0; !rc && i < nq; i++) {
        Cirrus__V1__SearchResult *r = malloc(sizeof *r);
        if (!r) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        cirrus__v1__search_result__init(r);
        out->results[i] = r;
        out->n_results = i + 1;
        r->hits = calloc(k ? k : 1, sizeof *r->hits);
        if (!r->hits)
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        else
            rc = shard_engine_hits_fill(e, hits + i * k, n[i], q0->include_metadata,
                                        q0->include_vectors, r->hits, &r->n_hits);
    }
    free(qs);
    free(hits);
    free(n);
    return rc;
}

static void do_search_batch(server *s, void *sock, const cr_wire_msg *route,
                            const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchBatchResult b = CIRRUS__V1__SEARCH_BATCH_RESULT__INIT;
    size_t nq = req->search_batch ? req->search_batch->n_queries : 0;
    cr_err rc = CR_OK;

    if (nq == 0 || nq > 10000) {
        reply_status(sock, route, req->id, CR_ERR_INVALID, "a batch holds 1..10000 queries");
        return;
    }
    b.results = calloc(nq, sizeof *b.results);
    if (!b.results) {
        reply_status(sock, route, req->id, CR_ERR_NOMEM, "out of memory");
        return;
    }
    if (batch_uniform(s->engine, req->search_batch)) {
        rc = run_batch(s->engine, req->search_batch, &b);
        goto done;
    }
    for (size_t i = 0; i < nq && !rc; i++) {
        b.results[i] = malloc(sizeof **b.results);
        if (!b.results[i]) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        cirrus__v1__search_result__init(b.results[i]);
        b.n_results = i + 1;
        rc = run_query(s->engine, req->search_batch->queries[i], 0, b.results[i]);
        if (rc)
            cr_error_wrap(rc, "query %zu", i);
    }
done:
    if (rc) {
        reply_status(sock, route, req->id, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH_BATCH;
        resp.search_batch = &b;
        reply(sock, route, req->id, &resp);
    }
    for (size_t i = 0; i < b.n_results; i++) {
        result_free(b.results[i]);
        free(b.results[i]);
    }
    free(b.results);
}

static void do_get(server *s, void *sock, const cr_wire_msg *route, const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__GetResult g = CIRRUS__V1__GET_RESULT__INIT;
    size_t n = req->get ? req->get->n_ids : 0;

    if (n == 0 || n > 10000) {
        reply_status(sock, route, req->id, CR_ERR_INVALID, "get takes 1..10000 ids");
        return;
    }
    g.items = calloc(n, sizeof *g.items);
    g.missing = calloc(n, sizeof *g.missing);
    if (!g.items || !g.missing) {
        free(g.items);
        free(g.missing);
        reply_status(sock, route, req->id, CR_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        Cirrus__V1__Item *it = NULL;
        cr_err rc = shard_engine_get(s->engine, req->get->ids[i], req->get->include_vector, &it);
        if (rc == CR_OK)
            g.items[g.n_items++] = it;
        else if (rc == CR_NOTFOUND || rc == CR_ERR_INVALID)
            g.missing[g.n_missing++] = req->get->ids[i];
        else
            CR_WARN("shard", "get %s: %s", req->get->ids[i], cr_error_message());
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_GET;
    resp.get = &g;
    reply(sock, route, req->id, &resp);
    for (size_t i = 0; i < g.n_items; i++)
        cirrus__v1__item__free_unpacked(g.items[i], NULL);
    free(g.items);
    free(g.missing);
}

static void do_stats(server *s, void *sock, const cr_wire_msg *route, const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__StatsResult r = CIRRUS__V1__STATS_RESULT__INIT;
    cr_err rc = shard_engine_stats(s->engine, &r);
    if (rc) {
        reply_status(sock, route, req->id, rc, cr_error_message());
        return;
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_STATS;
    resp.stats = &r;
    reply(sock, route, req->id, &resp);
}

/* Scan in external-id or version order: every id once, tombstones included. */
static void do_scan_ordered(server *s, void *sock, const cr_wire_msg *route,
                            const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__ScanResult r = CIRRUS__V1__SCAN_RESULT__INIT;
    const Cirrus__V1__ScanRequest *q = req->scan;
    shard_engine_scan_req sq = {0};
    char next[320];
    cr_err rc;
    if (q->order != CIRRUS__V1__SCAN_ORDER__SCAN_BY_EXTERNAL_ID &&
        q->order != CIRRUS__V1__SCAN_ORDER__SCAN_BY_VERSION) {
        reply_status(sock, route, req->id, CR_ERR_INVALID, "scan: unknown order");
        return;
    }
    sq.by_version = q->order == CIRRUS__V1__SCAN_ORDER__SCAN_BY_VERSION;
    sq.cursor = q->after_id;
    sq.min_version = q->min_version;
    sq.max_version = q->max_version;
    sq.limit = q->limit;
    sq.with_vector = q->include_vector;
    sq.keys_only = q->keys_only;
    rc = shard_engine_scan_ordered(s->engine, &sq, &r, next, sizeof next);
    if (rc) {
        reply_status(sock, route, req->id, rc, cr_error_message());
        return;
    }
    r.next_cursor = next;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SCAN;
    resp.scan = &r;
    reply(sock, route, req->id, &resp);
    shard_engine_scan_clear(&r);
}

static void do_scan(server *s, void *sock, const cr_wire_msg *route, const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__ScanResult r = CIRRUS__V1__SCAN_RESULT__INIT;
    const Cirrus__V1__ScanRequest *q = req->scan;
    long long cursor = 0;
    uint64_t next = 0;
    char next_text[32];
    cr_err rc;
    if (q && (q->order || q->min_version || q->max_version || q->keys_only)) {
        if (q->order == CIRRUS__V1__SCAN_ORDER__SCAN_BY_INTERNAL_ID)
            reply_status(sock, route, req->id, CR_ERR_INVALID,
                         "scan: version bounds and keys_only need order by external id or "
                         "by version");
        else
            do_scan_ordered(s, sock, route, req);
        return;
    }
    if (!q || (q->after_id && q->after_id[0] &&
               cr_parse_ll(q->after_id, 0, INT64_MAX, &cursor))) {
        reply_status(sock, route, req->id, CR_ERR_INVALID, "scan: bad cursor");
        return;
    }
    rc = shard_engine_scan(s->engine, (uint64_t)cursor, q->limit, q->include_vector, &r, &next);
    if (rc) {
        reply_status(sock, route, req->id, rc, cr_error_message());
        return;
    }
    snprintf(next_text, sizeof next_text, "%llu", (unsigned long long)next);
    r.next_cursor = next_text;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SCAN;
    resp.scan = &r;
    reply(sock, route, req->id, &resp);
    shard_engine_scan_clear(&r);
}

/* A consistent copy of the shard into req->backup->dir, on this worker thread: the writer
 * and the other workers go on serving meanwhile. */
static void do_backup(server *s, void *sock, const cr_wire_msg *route,
                      const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__BackupResult r = CIRRUS__V1__BACKUP_RESULT__INIT;
    Cirrus__V1__StatsResult st = CIRRUS__V1__STATS_RESULT__INIT;
    uint64_t t0 = cr_clock_mono_ms();
    const char *dir = req->backup ? req->backup->dir : NULL;
    cr_err rc;
    if (!dir || dir[0] != '/') {
        reply_status(sock, route, req->id, CR_ERR_INVALID,
                     "backup: an absolute directory on the shard's file system is required");
        return;
    }
    rc = shard_engine_stats(s->engine, &st);
    if (!rc)
        rc = shard_engine_backup(s->engine, dir, &r.bytes);
    if (rc) {
        reply_status(sock, route, req->id, rc, cr_error_message());
        return;
    }
    CR_INFO("shard", "backup of %llu items to %s (%llu bytes)", (unsigned long long)st.count,
            dir, (unsigned long long)r.bytes);
    r.dir = (char *)dir;
    r.items = st.count;
    r.duration_ms = cr_clock_mono_ms() - t0;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_BACKUP;
    resp.backup = &r;
    reply(sock, route, req->id, &resp);
}

static void do_health(void *sock, const cr_wire_msg *route, const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    h.ready = 1;
    h.role = "shard";
    h.version = "0.1.0";
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    reply(sock, route, req->id, &resp);
}

/* ---- the writer ---------------------------------------------------------------------- */

static void job_free(write_job *j)
{
    if (!j)
        return;
    if (j->req)
        cirrus__v1__request__free_unpacked(j->req, &j->alloc.base);
    cr_wire_msg_close(&j->route);
    free(j);
}

/* Takes ownership of *req (and the allocator state) on success. */
static cr_err enqueue_write(server *s, const cr_wire_msg *m, int nroute, cr_pb_bounded *alloc,
                            Cirrus__V1__Request **req)
{
    write_job *j = calloc(1, sizeof *j);
    cr_err rc = CR_OK;
    if (!j)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    cr_wire_msg_init(&j->route);
    for (int i = 0; i < nroute; i++) {
        zmq_msg_init(&j->route.route[i]);
        zmq_msg_copy(&j->route.route[i], (zmq_msg_t *)&m->route[i]);
        j->route.nroute++;
    }
    pthread_mutex_lock(&s->mu);
    if (s->queued >= s->o.write_queue) {
        rc = cr_error_set(CR_ERR_OVERLOADED, "write queue full (%d requests)", s->queued);
    } else {
        /* The allocator lives in the job from now on: re-point its self-reference. */
        j->alloc = *alloc;
        j->alloc.base.allocator_data = &j->alloc;
        j->req = *req;
        *req = NULL;
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc)
        job_free(j);
    return rc;
}

static size_t job_items(const write_job *j)
{
    if (j->req->op_case == CIRRUS__V1__REQUEST__OP_UPSERT)
        return j->req->upsert ? j->req->upsert->n_items : 0;
    if (j->req->op_case == CIRRUS__V1__REQUEST__OP_DELETE)
        return j->req->delete_ ? j->req->delete_->n_items : 0;
    return 0;
}

/* Takes queued jobs up to the batch limit (at least one). */
static write_job *dequeue_batch(server *s, int wait)
{
    write_job *first, *last;
    size_t items;
    pthread_mutex_lock(&s->mu);
    while (!s->head && wait && !atomic_load(&s->writer_stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        wait = 0;
    }
    first = last = s->head;
    if (first) {
        items = job_items(first);
        s->queued--;
        while (last->next && items + job_items(last->next) <= (size_t)s->o.max_batch_items) {
            last = last->next;
            items += job_items(last);
            s->queued--;
        }
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return first;
}

/* One group commit for every upsert/delete job in the list; replies to each. */
static void commit_jobs(server *s, void *out, write_job *jobs)
{
    size_t total = 0, k = 0;
    shard_engine_write_op *ops;
    shard_engine_write_result *res;
    Cirrus__V1__Item *del_items;
    cr_err rc;

    for (write_job *j = jobs; j; j = j->next)
        total += job_items(j);
    ops = calloc(total ? total : 1, sizeof *ops);
    res = calloc(total ? total : 1, sizeof *res);
    del_items = calloc(total ? total : 1, sizeof *del_items);
    if (!ops || !res || !del_items) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto reply_all;
    }
    for (write_job *j = jobs; j; j = j->next) {
        for (size_t i = 0; i < job_items(j); i++, k++) {
            if (j->req->op_case == CIRRUS__V1__REQUEST__OP_UPSERT) {
                ops[k].item = j->req->upsert->items[i];
            } else {
                cirrus__v1__item__init(&del_items[k]);
                del_items[k].id = j->req->delete_->items[i]->id;
                del_items[k].version = j->req->delete_->items[i]->version;
                ops[k].item = &del_items[k];
                ops[k].is_delete = 1;
            }
        }
    }
    rc = shard_engine_write(s->engine, ops, total, res);
reply_all:
    k = 0;
    for (write_job *j = jobs; j; j = j->next) {
        size_t n = job_items(j);
        Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
        Cirrus__V1__WriteResult wr = CIRRUS__V1__WRITE_RESULT__INIT;
        Cirrus__V1__ItemStatus *is = calloc(n ? n : 1, sizeof *is);
        Cirrus__V1__ItemStatus **isp = calloc(n ? n : 1, sizeof *isp);
        Cirrus__V1__Status *sts = calloc(n ? n : 1, sizeof *sts);
            if (rc || !is || !isp || !sts) {
            reply_status(out, &j->route, j->req->id, rc ? rc : CR_ERR_NOMEM, cr_error_message());
            free(is);
            free(isp);
            free(sts);
            k += n;
            continue;
        }
        for (size_t i = 0; i < n; i++, k++) {
            cirrus__v1__item_status__init(&is[i]);
            is[i].id = ops[k].item->id;
            is[i].version = res[k].version;
            cr_wire_status_set(&sts[i], res[k].status, res[k].message);
            is[i].status = &sts[i];
            isp[i] = &is[i];
        }
        wr.items = isp;
        wr.n_items = n;
        wr.replicas_acked = 1;
        if (j->req->op_case == CIRRUS__V1__REQUEST__OP_UPSERT) {
            resp.result_case = CIRRUS__V1__RESPONSE__RESULT_UPSERT;
            resp.upsert = &wr;
        } else {
            resp.result_case = CIRRUS__V1__RESPONSE__RESULT_DELETE;
            resp.delete_ = &wr;
        }
        reply(out, &j->route, j->req->id, &resp);
        free(is);
        free(isp);
        free(sts);
    }
    free(ops);
    free(res);
    free(del_items);
}

static void do_snapshot(server *s, void *out, write_job *j)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SnapshotResult r = CIRRUS__V1__SNAPSHOT_RESULT__INIT;
    /* An asked-for snapshot covers every item, or says why it cannot. */
    cr_err rc = shard_engine_index_drain(s->engine);
    if (!rc)
        rc = shard_engine_snapshot(s->engine, &r);
    if (rc) {
        reply_status(out, &j->route, j->req->id, rc, cr_error_message());
        return;
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SNAPSHOT;
    resp.snapshot = &r;
    reply(out, &j->route, j->req->id, &resp);
}

static void maintenance(server *s, uint64_t *last_snap_ms, int force)
{
    uint64_t dirty, now = cr_clock_mono_ms();
    uint64_t queued = force ? shard_engine_index_backlog(s->engine) : 0;
    if (queued) {
        CR_INFO("shard", "indexing %llu queued items before the final snapshot",
                (unsigned long long)queued);
        if (shard_engine_index_drain(s->engine))
            CR_WARN("shard", "%s", cr_error_message());
    }
    shard_engine_index_work(s->engine); /* retries a failed add when no indexer runs */
    dirty = shard_engine_dirty(s->engine);
    if (shard_engine_maybe_rebuild(s->engine, s->o.rebuild_fraction))
        CR_WARN("shard", "rebuild: %s", cr_error_message());
    if (dirty && (force || dirty >= s->o.snapshot_writes ||
                  now - *last_snap_ms >= s->o.snapshot_interval_s * 1000)) {
        cr_err rc = force ? shard_engine_snapshot(s->engine, NULL)
                          : shard_engine_snapshot_if_idle(s->engine);
        if (rc == CR_TIMEOUT)
            return; /* the indexer holds the index: try again on the next round */
        if (rc)
            CR_WARN("shard", "snapshot: %s", cr_error_message());
        *last_snap_ms = now;
    }
}

static void *writer_main(void *arg)
{
    server *s = arg;
    void *out = zmq_socket(s->ctx, ZMQ_PUSH);
    uint64_t last_snap = cr_clock_mono_ms();

    if (!out || cr_wire_socket_setup(out, &s->lim) || zmq_connect(out, s->reply_ep) != 0) {
        CR_ERROR("shard", "writer socket: %s", zmq_strerror(errno));
        return NULL;
    }
    for (;;) {
        write_job *jobs = dequeue_batch(s, 1), *writes = NULL, **tail = &writes;
        if (!jobs) {
            if (atomic_load(&s->writer_stop))
                break;
            maintenance(s, &last_snap, 0);
            continue;
        }
        /* Snapshot requests are answered after the writes queued before them. */
        for (write_job *j = jobs, *next; j; j = next) {
            next = j->next;
            j->next = NULL;
            if (j->req->op_case == CIRRUS__V1__REQUEST__OP_SNAPSHOT) {
                if (writes)
                    commit_jobs(s, out, writes);
                for (write_job *w = writes, *wn; w; w = wn) {
                    wn = w->next;
                    job_free(w);
                }
                writes = NULL;
                tail = &writes;
                do_snapshot(s, out, j);
                job_free(j);
                last_snap = cr_clock_mono_ms();
            } else {
                *tail = j;
                tail = &j->next;
            }
        }
        if (writes)
            commit_jobs(s, out, writes);
        for (write_job *w = writes, *wn; w; w = wn) {
            wn = w->next;
            job_free(w);
        }
        maintenance(s, &last_snap, 0);
    }
    maintenance(s, &last_snap, 1);
    zmq_close(out);
    return NULL;
}

/* ---- workers -------------------------------------------------------------------------- */

/* Runs one unpacked request; replies on sock (writes reply later, from the writer). Frees
 * *req unless a write took it. */
static void handle_request(server *s, void *sock, cr_wire_msg *m, cr_pb_bounded *alloc,
                           Cirrus__V1__Request *req)
{
    cr_err rc;
    switch (req->op_case) {
    case CIRRUS__V1__REQUEST__OP_SEARCH: do_search(s, sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_SEARCH_BATCH: do_search_batch(s, sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_GET: do_get(s, sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_STATS: do_stats(s, sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_HEALTH: do_health(sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_SCAN: do_scan(s, sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_BACKUP: do_backup(s, sock, m, req); break;
    case CIRRUS__V1__REQUEST__OP_UPSERT:
    case CIRRUS__V1__REQUEST__OP_DELETE:
    case CIRRUS__V1__REQUEST__OP_SNAPSHOT:
        if (job_items(&(write_job){.req = req}) > (size_t)s->o.max_batch_items) {
            reply_status(sock, m, req->id, CR_ERR_INVALID, "too many items in one write");
            break;
        }
        {
            uint64_t id = req->id;
            rc = enqueue_write(s, m, m->nroute, alloc, &req);
            if (rc)
                reply_status(sock, m, id, rc, cr_error_message());
        }
        break;
    case CIRRUS__V1__REQUEST__OP__NOT_SET:
        reply_status(sock, m, req->id, CR_ERR_INVALID, "request without an operation");
        break;
    default:
        reply_status(sock, m, req->id, CR_ERR_UNSUPPORTED,
                     "operation not served by a shard (encode, compose and generation go to "
                     "a coordinator or an encoder)");
        break;
    }
    if (req)
        cirrus__v1__request__free_unpacked(req, &alloc->base);
}


/* A worker's request: strip the receive time, unpack, check the deadline, run it. */
static void handle_msg(void *arg, void *sock, cr_wire_msg *m)
{
    server *s = arg;
    cr_pb_bounded alloc;
    Cirrus__V1__Request *req = NULL;
    uint64_t recv_us = 0;

    if (cr_wire_worker_take(sock, m, &s->lim, s->o.default_deadline_ms, &alloc, &req,
                            &recv_us))
        return;
    handle_request(s, sock, m, &alloc, req);
}

static void *worker_main(void *arg)
{
    server *s = arg;
    if (cr_wire_worker_loop(s->ctx, s->work_ep, &s->lim, &s->workers_stop,
                            handle_msg, s))
        CR_ERROR("shard", "%s", cr_error_message());
    return NULL;
}

/* ---- the proxy (calling thread) ------------------------------------------------------- */

static cr_err sockets_open(server *s, void **front, void **work, void **replies)
{
    cr_wire_limits inner = s->lim;
    inner.heartbeat_ivl_ms = 0;
    inner.max_frame = (size_t)-1 >> 1;
    *front = zmq_socket(s->ctx, ZMQ_ROUTER);
    *work = zmq_socket(s->ctx, ZMQ_DEALER);
    *replies = zmq_socket(s->ctx, ZMQ_PULL);
    if (!*front || !*work || !*replies)
        return cr_error_set(CR_ERR_NET, "socket: %s", zmq_strerror(errno));
    if (cr_wire_socket_setup(*front, &s->lim) || cr_wire_socket_setup(*work, &inner) ||
        cr_wire_socket_setup(*replies, &inner))
        return CR_ERR_NET;
    if (zmq_bind(*front, s->o.bind) != 0)
        return cr_error_set(CR_ERR_NET, "cannot bind %s: %s", s->o.bind, zmq_strerror(errno));
    if (zmq_bind(*work, s->work_ep) != 0 || zmq_bind(*replies, s->reply_ep) != 0)
        return cr_error_set(CR_ERR_NET, "inproc bind: %s", zmq_strerror(errno));
    return CR_OK;
}

/* A request short enough to serve on the proxy thread, which must never wait for the index
 * (an add holds it for hundreds of ms, and every reply the proxy forwards would wait too):
 * one ANN search (no exact scan; tried without waiting, see take_front), a Get or Health;
 * writes are only queued for the writer. Stats reads the index's counters under its lock:
 * a worker's. */
static int inline_op(const Cirrus__V1__Request *req)
{
    switch (req->op_case) {
    case CIRRUS__V1__REQUEST__OP_SEARCH:
        return req->search && req->search->query &&
               !(req->search->query->params && req->search->query->params->exact);
    case CIRRUS__V1__REQUEST__OP_GET:
    case CIRRUS__V1__REQUEST__OP_HEALTH:
    case CIRRUS__V1__REQUEST__OP_UPSERT:
    case CIRRUS__V1__REQUEST__OP_DELETE:
        return 1;
    default:
        return 0;
    }
}

static int more_waiting(void *sock)
{
    int ev = 0;
    size_t len = sizeof ev;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) == 0 && (ev & ZMQ_POLLIN);
}

/* One request from the front. A short one is served right here unless others are waiting
 * and a worker is free: the hand-off to a worker and back costs more than a search on small
 * machines, so the proxy is also a search thread and workers take the overflow. Returns 1
 * when a worker took it. */
static int take_front(server *s, void *front, void *work, int busy)
{
    cr_wire_msg m;
    cr_pb_bounded alloc;
    Cirrus__V1__Request *req = NULL;
    uint64_t now = cr_clock_mono_us();
    int handed = 0;

    cr_wire_msg_init(&m);
    if (cr_wire_front_recv(front, &m, &s->lim) != CR_OK)
        goto out;
    if (busy >= s->o.workers || !more_waiting(front)) {
        cr_pb_bounded_init(&alloc, s->lim.max_alloc);
        if (cr_wire_unpack_request(&m, &alloc, &req) != CR_OK) {
            cr_wire_reply_error(front, &m, 0, CR_ERR_PROTO, cr_error_message());
            goto out;
        }
        if (inline_op(req) && req->op_case != CIRRUS__V1__REQUEST__OP_SEARCH) {
            handle_request(s, front, &m, &alloc, req);
            goto out;
        }
        if (inline_op(req) && search_reply(s, front, &m, req, 1)) {
            cirrus__v1__request__free_unpacked(req, &alloc.base);
            goto out;
        }
        /* Not inline, or the index is busy with a change: a worker waits for it instead. */
        cirrus__v1__request__free_unpacked(req, &alloc.base);
    }
    handed = cr_wire_hand_off(front, work, &m, now) == CR_OK;
out:
    cr_wire_msg_close(&m);
    return handed;
}

static void proxy_loop(server *s, void *front, void *work, void *replies)
{
    cr_wire_spin spin = {s->o.spin_us, 0};
    int busy = 0; /* requests with the workers */
    while (!*s->stop) {
        zmq_pollitem_t items[3] = {{front, 0, ZMQ_POLLIN, 0},
                                   {work, 0, ZMQ_POLLIN, 0},
                                   {replies, 0, ZMQ_POLLIN, 0}};
        if (cr_wire_poll_spin(items, 3, POLL_MS, &spin) <= 0)
            continue;
        if (items[1].revents & ZMQ_POLLIN) {
            cr_wire_forward(work, front);
            busy -= busy > 0;
        }
        if (items[2].revents & ZMQ_POLLIN)
            cr_wire_forward(replies, front);
        if (items[0].revents & ZMQ_POLLIN)
            busy += take_front(s, front, work, busy);
    }
}

/* Stop intake, let workers finish, let the writer drain its queue, forward every reply. */
static void drain(server *s, pthread_t *workers, int nw, pthread_t writer, void *front,
                  void *work, void *replies)
{
    zmq_pollitem_t items[2] = {{work, 0, ZMQ_POLLIN, 0}, {replies, 0, ZMQ_POLLIN, 0}};
    atomic_store(&s->workers_stop, 1);
    for (int i = 0; i < nw; i++)
        pthread_join(workers[i], NULL);
    while (zmq_poll(items, 1, 0) > 0 && (items[0].revents & ZMQ_POLLIN))
        cr_wire_forward(work, front);
    atomic_store(&s->writer_stop, 1);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(writer, NULL);
    while (zmq_poll(&items[1], 1, 0) > 0 && (items[1].revents & ZMQ_POLLIN))
        cr_wire_forward(replies, front);
    cr_clock_sleep_ms(50); /* let ZeroMQ's I/O thread flush the last replies */
}

cr_err shard_server_run(shard_engine *e, const shard_server_opts *o, volatile sig_atomic_t *stop)
{
    server s;
    void *front = NULL, *work = NULL, *replies = NULL;
    pthread_t workers[64], writer;
    int nw = 0, own_ctx = !o->zmq_ctx, writer_started = 0;
    cr_err rc;

    memset(&s, 0, sizeof s);
    s.engine = e;
    s.o = *o;
    s.stop = stop;
    s.lim = cr_wire_default_limits();
    if (strncmp(o->bind, "inproc://", 9) == 0)
        s.lim.heartbeat_ivl_ms = 0;
    if (s.o.workers < 1 || s.o.workers > 64)
        s.o.workers = 2;
    s.ctx = own_ctx ? zmq_ctx_new() : o->zmq_ctx;
    cr_wire_inproc_name(s.work_ep, sizeof s.work_ep, "shard-work");
    cr_wire_inproc_name(s.reply_ep, sizeof s.reply_ep, "shard-replies");
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    rc = sockets_open(&s, &front, &work, &replies);
    if (rc)
        goto out;
    if (pthread_create(&writer, NULL, writer_main, &s) != 0) {
        rc = cr_error_set(CR_ERR_INTERNAL, "cannot start the writer thread");
        goto out;
    }
    writer_started = 1;
    for (; nw < s.o.workers; nw++)
        if (pthread_create(&workers[nw], NULL, worker_main, &s) != 0)
            break;
    if (nw < s.o.workers) {
        /* A shard with fewer workers than asked would serve slower than its operator
         * planned for, or not at all: fail the start, as every other start failure does. */
        rc = cr_error_set(CR_ERR_INTERNAL, "cannot start search thread %d of %d", nw + 1,
                          s.o.workers);
        goto out;
    }
    CR_INFO("shard", "serving on %s with %d search threads", o->bind, nw);
    proxy_loop(&s, front, work, replies);
    CR_INFO("shard", "stopping: finishing queued writes");
out:
    if (writer_started)
        drain(&s, workers, nw, writer, front, work, replies);
    for (write_job *j = s.head, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    if (front)
        zmq_close(front);
    if (work)
        zmq_close(work);
    if (replies)
        zmq_close(replies);
    if (own_ctx)
        zmq_ctx_term(s.ctx);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return rc;
}
