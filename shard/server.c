#include "shard/server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/service.h"
#include "common/validate.h"
#include "common/wire.h"
#include "shard/convert.h"
#include "shard/schema.h"

#define POLL_MS 100      /* the writer's maintenance tick when idle */
#define RUN_SLICE_MS 50  /* shard_server_run's check of its stop flag */
/* Default most concurrent Search requests in one index search: 1 (each alone). On a quiet
 * machine merging measured 15-30 % fewer QPS at 8 clients than the single-query path with the
 * default busy-poll (docs/performance.md, #14 target 3); `--merge-max 32` opts in. */
#define MERGE_MAX 1

/* A write request in the writer's batch; the skeleton owns the call. */
typedef struct write_job {
    cr_svc_call *call;
    const Cirrus__V1__Request *req;
    struct write_job *next;
} write_job;

typedef struct shard_server server;

struct shard_server {
    shard_engine *engine;
    shard_server_opts o;
    cr_service *svc;
    uint64_t last_snap_ms; /* the writer's */
    atomic_uint_fast64_t merged_calls, merged_queries; /* shard_server_merged */
    uint64_t write_err_ms; /* the writer's: when a failed commit was last logged */
    uint64_t write_errs;   /* failed commits since then (not logged one by one) */
};

#define WRITE_ERR_LOG_MS 10000 /* a failing store (disk full) is logged at most this often */

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
    o.merge_max = MERGE_MAX;
    return o;
}

/* ---- replies ---------------------------------------------------------------------------- */

/* From any thread holding the call (the skeleton logs a failed send). */
static cr_err reply(cr_svc_call *call, uint64_t id, Cirrus__V1__Response *resp)
{
    return cr_svc_reply_ok(call, id, resp);
}

static void reply_status(cr_svc_call *call, uint64_t id, cr_err code, const char *msg)
{
    cr_svc_reply_error(call, id, code, msg);
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
    if (q->params) {
        eq->nprobe = q->params->nprobe;
        eq->ef_search = q->params->ef_search;
        eq->exact = q->params->exact;
    }
    eq->threads = 1;
    if (cr_validate_k(q->k, CR_MAX_K))
        return CR_ERR_INVALID;
    /* compiled last: the caller frees eq->filter only when this returns CR_OK */
    return shard_conv_filter_compile(q->filter, (shard_filter **)&eq->filter);
}

/* Engine hits -> r->hits (one wire block each), freeing the engine hits. */
static cr_err hits_to_pb(shard_hit **hits, size_t n, Cirrus__V1__SearchResult *r)
{
    cr_err rc = CR_OK;
    for (size_t i = 0; i < n; i++) {
        Cirrus__V1__Hit *h = rc ? NULL : shard_conv_hit_to_pb(hits[i]);
        if (h)
            r->hits[r->n_hits++] = h;
        else if (!rc)
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        shard_hit_free(&hits[i]);
    }
    return rc;
}

/* shard_engine_hits_fill into the wire result r (room for n). */
static cr_err fill_hits(shard_engine *e, const shard_engine_hit *hits, size_t n, int with_attrs,
                        int with_vector, Cirrus__V1__SearchResult *r)
{
    shard_hit **eh = calloc(n ? n : 1, sizeof *eh);
    size_t m = 0;
    cr_err rc;
    if (!eh)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = shard_engine_hits_fill(e, hits, n, with_attrs, with_vector, eh, &m);
    if (rc)
        for (size_t i = 0; i < m; i++)
            shard_hit_free(&eh[i]);
    else
        rc = hits_to_pb(eh, m, r);
    free(eh);
    return rc;
}

static void result_free(Cirrus__V1__SearchResult *r)
{
    for (size_t i = 0; i < r->n_hits; i++)
        free(r->hits[i]); /* one block each (shard_conv_hit_to_pb) */
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
        shard_filter_free((shard_filter **)&eq.filter);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = shard_engine_search(e, &eq, hits, &n);
    shard_filter_free((shard_filter **)&eq.filter);
    if (!rc && n > q->offset)
        rc = fill_hits(e, hits + q->offset, n - q->offset, q->include_metadata,
                       q->include_vectors, r);
    free(hits);
    if (r->timing)
        r->timing->search_us = cr_clock_mono_us() - t0;
    return rc;
}

/* Answers a search. With `nowait` (the front thread) returns 0 without answering when the
 * index is busy with a change: the caller hands the request to a worker. Else 1. */
static int search_reply(server *s, cr_svc_call *call, const Cirrus__V1__Request *req,
                        int nowait)
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
        reply_status(call, req->id, rc, cr_error_message());
        return 1;
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
    resp.search = &r;
    reply(call, req->id, &resp);
    result_free(&r);
    return 1;
}

static void do_search(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    search_reply(s, call, req, 0);
}

/* ---- concurrent searches merged (the pool's batch function) ------------------------------ */

/* One Search request of a pool batch. */
typedef struct merge_req {
    cr_svc_call *call;
    const Cirrus__V1__Request *req;
    const Cirrus__V1__Query *q;
    shard_engine_query eq;
    int done; /* answered, or taken by a group */
} merge_req;

/* A request that may share an index search: a valid plain vector query without a filter or
 * an exact scan. Invalid ones are answered here (as search_reply would); 0 = runs alone. */
static int merge_eligible(server *s, merge_req *m)
{
    const Cirrus__V1__Query *q = m->q;
    cr_err rc;
    if (!q || q->kind_case != CIRRUS__V1__QUERY__KIND_VECTOR || q->filter ||
        (q->params && q->params->exact))
        return 0;
    rc = query_to_engine(s->engine, q, &m->eq);
    if (rc) {
        reply_status(m->call, m->req->id, rc, cr_error_message());
        m->done = 1;
        return 0;
    }
    return 1;
}

static int merge_same(const shard_engine_query *a, const shard_engine_query *b)
{
    return a->k == b->k && a->nprobe == b->nprobe && a->ef_search == b->ef_search;
}

/* The group g[0..n) (same k and parameters) as one index search; each answered from its rows.
 * When the merged search fails (e.g. an inner-product query of zeros), each runs alone, so
 * that one request's error is its own. */
static void merge_run(server *s, merge_req **g, size_t n)
{
    size_t dim = (size_t)shard_engine_dim(s->engine), k = g[0]->eq.k;
    shard_engine_query common = g[0]->eq;
    float *qs = malloc(n * dim * sizeof *qs);
    shard_engine_hit *hits = malloc(n * k * sizeof *hits);
    size_t *nh = calloc(n, sizeof *nh);
    uint64_t t0 = cr_clock_mono_us(), took;
    cr_err rc = qs && hits && nh ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");

    common.vector = NULL;
    common.threads = 1; /* the pool's threads are the cores: no OpenMP team on top */
    for (size_t i = 0; !rc && i < n; i++)
        memcpy(qs + i * dim, g[i]->eq.vector, dim * sizeof *qs);
    if (!rc)
        rc = shard_engine_search_many(s->engine, qs, n, &common, hits, nh);
    took = cr_clock_mono_us() - t0;
    for (size_t i = 0; i < n; i++) {
        const Cirrus__V1__Query *q = g[i]->q;
        Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
        Cirrus__V1__SearchResult r = CIRRUS__V1__SEARCH_RESULT__INIT;
        Cirrus__V1__Timing t = CIRRUS__V1__TIMING__INIT;
        cr_err ri = CR_OK;
        if (rc) {
            search_reply(s, g[i]->call, g[i]->req, 0);
            continue;
        }
        r.timing = &t;
        r.hits = calloc(k, sizeof *r.hits);
        if (!r.hits)
            ri = cr_error_set(CR_ERR_NOMEM, "out of memory");
        else if (nh[i] > q->offset)
            ri = fill_hits(s->engine, hits + i * k + q->offset, nh[i] - q->offset,
                           q->include_metadata, q->include_vectors, &r);
        t.search_us = took + (cr_clock_mono_us() - t0 - took) / n;
        if (ri) {
            reply_status(g[i]->call, g[i]->req->id, ri, cr_error_message());
        } else {
            resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
            resp.search = &r;
            reply(g[i]->call, g[i]->req->id, &resp);
        }
        result_free(&r);
    }
    if (!rc) {
        atomic_fetch_add(&s->merged_calls, 1);
        atomic_fetch_add(&s->merged_queries, n);
    }
    free(qs);
    free(hits);
    free(nh);
}

/* Search requests that were queued together: those with the same k and parameters (plain
 * vector queries, no filter, no exact scan) share one index search; the rest run as before. */
static void search_merge(void *arg, cr_svc_call *const *calls, size_t n)
{
    server *s = arg;
    merge_req *m = calloc(n, sizeof *m);
    merge_req **g = calloc(n, sizeof *g);
    if (!m || !g) { /* no room to merge: each alone */
        free(m);
        free(g);
        for (size_t i = 0; i < n; i++)
            do_search(s, calls[i], cr_svc_call_request(calls[i]));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        m[i].call = calls[i];
        m[i].req = cr_svc_call_request(calls[i]);
        m[i].q = m[i].req->search ? m[i].req->search->query : NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t ng = 0;
        if (m[i].done)
            continue;
        if (!merge_eligible(s, &m[i])) {
            if (!m[i].done)
                search_reply(s, m[i].call, m[i].req, 0);
            m[i].done = 1;
            continue;
        }
        g[ng++] = &m[i];
        m[i].done = 1;
        for (size_t j = i + 1; j < n; j++) {
            if (m[j].done || !m[j].q || m[j].q->kind_case != CIRRUS__V1__QUERY__KIND_VECTOR ||
                m[j].q->filter || (m[j].q->params && m[j].q->params->exact))
                continue;
            if (!m[j].eq.vector && !merge_eligible(s, &m[j]))
                continue; /* answered (invalid) or left for its turn */
            if (merge_same(&m[i].eq, &m[j].eq)) {
                g[ng++] = &m[j];
                m[j].done = 1;
            }
        }
        if (ng == 1)
            search_reply(s, m[i].call, m[i].req, 0);
        else
            merge_run(s, g, ng);
    }
    free(m);
    free(g);
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
            rc = fill_hits(e, hits + i * k, n[i], q0->include_metadata, q0->include_vectors, r);
    }
    free(qs);
    free(hits);
    free(n);
    return rc;
}

static void do_search_batch(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchBatchResult b = CIRRUS__V1__SEARCH_BATCH_RESULT__INIT;
    size_t nq = req->search_batch ? req->search_batch->n_queries : 0;
    cr_err rc = CR_OK;

    if (nq == 0 || nq > 10000) {
        reply_status(call, req->id, CR_ERR_INVALID, "a batch holds 1..10000 queries");
        return;
    }
    b.results = calloc(nq, sizeof *b.results);
    if (!b.results) {
        reply_status(call, req->id, CR_ERR_NOMEM, "out of memory");
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
        reply_status(call, req->id, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH_BATCH;
        resp.search_batch = &b;
        reply(call, req->id, &resp);
    }
    for (size_t i = 0; i < b.n_results; i++) {
        result_free(b.results[i]);
        free(b.results[i]);
    }
    free(b.results);
}

/* Sets it->image to a malloc'd copy of the image kept with the item (none: left empty; a
 * failure is logged and the item goes without it). */
static void attach_image(shard_engine *e, Cirrus__V1__Item *it)
{
    void *img = NULL;
    size_t len = 0;
    cr_err rc = shard_engine_get_image(e, it->id, &img, &len);
    if (rc < 0)
        CR_WARN("shard", "image of %s: %s", it->id, cr_error_message());
    it->image.data = img;
    it->image.len = img ? len : 0;
}

static void do_get(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__GetResult g = CIRRUS__V1__GET_RESULT__INIT;
    size_t n = req->get ? req->get->n_ids : 0;

    if (n == 0 || n > 10000) {
        reply_status(call, req->id, CR_ERR_INVALID, "get takes 1..10000 ids");
        return;
    }
    g.items = calloc(n, sizeof *g.items);
    g.missing = calloc(n, sizeof *g.missing);
    if (!g.items || !g.missing) {
        free(g.items);
        free(g.missing);
        reply_status(call, req->id, CR_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        shard_item *it = NULL;
        cr_err rc = shard_engine_get(s->engine, req->get->ids[i], req->get->include_vector, &it);
        if (rc == CR_OK && (g.items[g.n_items] = shard_conv_item_to_pb(it))) {
            if (req->get->include_image)
                attach_image(s->engine, g.items[g.n_items]);
            g.n_items++;
        }
        else if (rc == CR_OK)
            CR_WARN("shard", "get %s: out of memory", req->get->ids[i]);
        else if (rc == CR_NOTFOUND || rc == CR_ERR_INVALID)
            g.missing[g.n_missing++] = req->get->ids[i];
        else
            CR_WARN("shard", "get %s: %s", req->get->ids[i], cr_error_message());
        shard_item_free(&it);
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_GET;
    resp.get = &g;
    reply(call, req->id, &resp);
    for (size_t i = 0; i < g.n_items; i++) {
        free(g.items[i]->image.data); /* attach_image's */
        free(g.items[i]); /* one block each (shard_conv_item_to_pb) */
    }
    free(g.items);
    free(g.missing);
}

static void do_stats(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__StatsResult r = CIRRUS__V1__STATS_RESULT__INIT;
    shard_stats st;
    cr_err rc = shard_engine_stats(s->engine, &st);
    if (rc) {
        reply_status(call, req->id, rc, cr_error_message());
        return;
    }
    shard_conv_stats_to_pb(&st, &r);
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_STATS;
    resp.stats = &r;
    reply(call, req->id, &resp);
}

/* A consistent copy of the shard into req->backup->dir, on a pool thread: the writer and
 * the other workers go on serving meanwhile. */
static void do_backup(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__BackupResult r = CIRRUS__V1__BACKUP_RESULT__INIT;
    shard_stats st;
    uint64_t t0 = cr_clock_mono_ms();
    const char *dir = req->backup ? req->backup->dir : NULL;
    cr_err rc;
    if (!dir || dir[0] != '/') {
        reply_status(call, req->id, CR_ERR_INVALID,
                     "backup: an absolute directory on the shard's file system is required");
        return;
    }
    rc = shard_engine_stats(s->engine, &st);
    if (!rc)
        rc = shard_engine_backup(s->engine, dir, &r.bytes);
    if (rc) {
        reply_status(call, req->id, rc, cr_error_message());
        return;
    }
    CR_INFO("shard", "backup of %llu items to %s (%llu bytes)", (unsigned long long)st.count,
            dir, (unsigned long long)r.bytes);
    r.dir = (char *)dir;
    r.items = st.count;
    r.duration_ms = cr_clock_mono_ms() - t0;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_BACKUP;
    resp.backup = &r;
    reply(call, req->id, &resp);
}

static void do_schema(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SchemaResult r = CIRRUS__V1__SCHEMA_RESULT__INIT;
    shard_schema sc;
    cr_err rc = shard_engine_schema(s->engine, req->schema ? req->schema->max_values : 0, &sc);
    if (!rc)
        rc = shard_conv_schema_to_pb(&sc, &r);
    if (rc) {
        reply_status(call, req->id, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SCHEMA;
        resp.schema = &r;
        reply(call, req->id, &resp);
    }
    shard_conv_schema_clear(&r);
    shard_schema_clear(&sc);
}

/* Answers a scan: the engine's outcome `rc`, else `page` (cleared here) with its next cursor;
 * live items carry their kept images when the request asked (replica repair). */
static void reply_scan(shard_engine *e, cr_svc_call *call, const Cirrus__V1__Request *req,
                       cr_err rc, shard_scan_page *page, char *next_cursor)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__ScanResult r = CIRRUS__V1__SCAN_RESULT__INIT;
    uint64_t id = req->id;
    int images = req->scan->include_image && !req->scan->keys_only;
    if (!rc) {
        rc = shard_conv_scan_to_pb(page, &r);
        shard_scan_page_clear(page);
    }
    for (size_t i = 0; !rc && images && i < r.n_items; i++)
        if (!r.deleted[i])
            attach_image(e, r.items[i]);
    if (rc) {
        reply_status(call, id, rc, cr_error_message());
        return;
    }
    r.next_cursor = next_cursor;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SCAN;
    resp.scan = &r;
    reply(call, id, &resp);
    for (size_t i = 0; images && i < r.n_items; i++) {
        free(r.items[i]->image.data);
        r.items[i]->image.data = NULL;
        r.items[i]->image.len = 0;
    }
    shard_conv_scan_clear(&r);
}

/* Bytes of kept images one scan page carries at most (beyond its first item): the page is
 * cut short instead, well below the wire's frame limit. */
#define SCAN_IMAGE_BUDGET (24u << 20)

/* How many leading items of `page` fit SCAN_IMAGE_BUDGET with their kept images (at least 1;
 * page->n when all do). */
static size_t images_fit(shard_engine *e, const shard_scan_page *page)
{
    size_t total = 0;
    for (size_t i = 0; i < page->n; i++) {
        void *img = NULL;
        size_t len = 0;
        if (page->deleted[i] || shard_engine_get_image(e, page->items[i]->id, &img, &len) < 0)
            continue;
        free(img);
        total += len;
        if (total > SCAN_IMAGE_BUDGET)
            return i ? i : 1;
    }
    return page->n;
}

/* Scan in external-id or version order: every id once, tombstones included. */
static void do_scan_ordered(server *s, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    const Cirrus__V1__ScanRequest *q = req->scan;
    shard_engine_scan_req sq = {0};
    shard_scan_page page;
    char next[320];
    cr_err rc;
    if (q->order != CIRRUS__V1__SCAN_ORDER__SCAN_BY_EXTERNAL_ID &&
        q->order != CIRRUS__V1__SCAN_ORDER__SCAN_BY_VERSION) {
        reply_status(call, req->id, CR_ERR_INVALID, "scan: unknown order");
        return;
    }
    sq.by_version = q->order == CIRRUS__V1__SCAN_ORDER__SCAN_BY_VERSION;
    sq.cursor = q->after_id;
    sq.min_version = q->min_version;
    sq.max_version = q->max_version;
    sq.limit = q->limit;
    sq.with_vector = q->include_vector;
    sq.keys_only = q->keys_only;
    rc = shard_engine_scan_ordered(s->engine, &sq, &page, next, sizeof next);
    if (!rc && q->include_image && !q->keys_only) {
        size_t fit = images_fit(s->engine, &page);
        if (fit < page.n) { /* the same scan, stopped where the images fit */
            shard_scan_page_clear(&page);
            sq.limit = (uint32_t)fit;
            rc = shard_engine_scan_ordered(s->engine, &sq, &page, next, sizeof next);
        }
    }
    reply_scan(s->engine, call, req, rc, &page, next);
}

static void do_scan(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    server *s = arg;
    const Cirrus__V1__ScanRequest *q = req->scan;
    shard_scan_page page;
    long long cursor = 0;
    uint64_t next = 0;
    char next_text[32];
    cr_err rc;
    if (q && (q->order || q->min_version || q->max_version || q->keys_only)) {
        if (q->order == CIRRUS__V1__SCAN_ORDER__SCAN_BY_INTERNAL_ID)
            reply_status(call, req->id, CR_ERR_INVALID,
                         "scan: version bounds and keys_only need order by external id or "
                         "by version");
        else
            do_scan_ordered(s, call, req);
        return;
    }
    if (!q || (q->after_id && q->after_id[0] &&
               cr_parse_ll(q->after_id, 0, INT64_MAX, &cursor))) {
        reply_status(call, req->id, CR_ERR_INVALID, "scan: bad cursor");
        return;
    }
    rc = shard_engine_scan(s->engine, (uint64_t)cursor, q->limit, q->include_vector, &page,
                           &next);
    snprintf(next_text, sizeof next_text, "%llu", (unsigned long long)next);
    reply_scan(s->engine, call, req, rc, &page, next_text);
}

static void do_health(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    (void)arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    h.ready = 1;
    h.role = "shard";
    h.version = "0.1.0";
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    reply(call, req->id, &resp);
}

/* ---- the front thread ------------------------------------------------------------------ */

/* A short read served on the front thread, which must never wait for the index (an add holds
 * it for hundreds of ms, and every reply the front forwards would wait too): one ANN search
 * (no exact scan), tried without waiting; 0 hands it to a search thread. Stats reads the
 * index's counters under its lock: a search thread's. */
static int search_front(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    if (!req->search || !req->search->query ||
        (req->search->query->params && req->search->query->params->exact))
        return 0;
    return search_reply(arg, call, req, 1);
}

static int get_front(void *arg, cr_svc_call *call, const Cirrus__V1__Request *req)
{
    do_get(arg, call, req);
    return 1;
}

/* ---- the writer ---------------------------------------------------------------------- */

static size_t job_items(const write_job *j)
{
    if (j->req->op_case == CIRRUS__V1__REQUEST__OP_UPSERT)
        return j->req->upsert ? j->req->upsert->n_items : 0;
    if (j->req->op_case == CIRRUS__V1__REQUEST__OP_DELETE)
        return j->req->delete_ ? j->req->delete_->n_items : 0;
    return 0;
}

/* A failed commit (each client gets the error in its reply) is logged once, then at most
 * every WRITE_ERR_LOG_MS with the count since: a full disk must not flood the log. */
static void log_write_failure(server *s)
{
    uint64_t now = cr_clock_mono_ms();
    s->write_errs++;
    if (s->write_err_ms && now - s->write_err_ms < WRITE_ERR_LOG_MS)
        return;
    CR_ERROR("shard", "write refused (%llu failed commit%s): %s",
             (unsigned long long)s->write_errs, s->write_errs == 1 ? "" : "s",
             cr_error_message());
    s->write_err_ms = now;
    s->write_errs = 0;
}

/* One group commit for every upsert/delete job in the list; replies to each. */
static void commit_jobs(server *s, write_job *jobs)
{
    size_t total = 0, k = 0;
    shard_engine_write_op *ops;
    shard_engine_write_result *res;
    shard_item *items;
    shard_attr **attrs;
    cr_err rc = CR_OK;

    for (write_job *j = jobs; j; j = j->next)
        total += job_items(j);
    ops = calloc(total ? total : 1, sizeof *ops);
    res = calloc(total ? total : 1, sizeof *res);
    items = calloc(total ? total : 1, sizeof *items);
    attrs = calloc(total ? total : 1, sizeof *attrs);
    if (!ops || !res || !items || !attrs) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto reply_all;
    }
    for (write_job *j = jobs; j && !rc; j = j->next) {
        for (size_t i = 0; i < job_items(j) && !rc; i++, k++) {
            if (j->req->op_case == CIRRUS__V1__REQUEST__OP_UPSERT) {
                rc = shard_conv_item_from_pb(j->req->upsert->items[i], &items[k], &attrs[k]);
            } else {
                items[k].id = j->req->delete_->items[i]->id;
                items[k].version = j->req->delete_->items[i]->version;
                ops[k].is_delete = 1;
            }
            ops[k].item = &items[k];
        }
    }
    if (!rc) {
        rc = shard_engine_write(s->engine, ops, total, res);
        if (rc == CR_ERR_STORE)
            log_write_failure(s);
    }
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
            reply_status(j->call, j->req->id, rc ? rc : CR_ERR_NOMEM, cr_error_message());
            free(is);
            free(isp);
            free(sts);
            k += n;
            continue;
        }
        for (size_t i = 0; i < n; i++, k++) {
            cirrus__v1__item_status__init(&is[i]);
            is[i].id = (char *)ops[k].item->id;
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
        reply(j->call, j->req->id, &resp);
        free(is);
        free(isp);
        free(sts);
    }
    for (size_t i = 0; attrs && i < total; i++)
        free(attrs[i]);
    free(attrs);
    free(ops);
    free(res);
    free(items);
}

static void do_snapshot(server *s, write_job *j)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SnapshotResult r = CIRRUS__V1__SNAPSHOT_RESULT__INIT;
    shard_snapshot_info info;
    /* An asked-for snapshot covers every item, or says why it cannot; but while a background
     * rebuild builds, the queued items wait for it, and so would every write queued behind
     * this one on the writer (in the soak a snapshot asked for during a rebuild held the
     * writes 26 s: 18 timed out). Then it covers what the live index holds, as a periodic
     * one does (its high_water says up to where; the rest replays from the store at open). */
    cr_err rc = shard_engine_rebuilding(s->engine) ? CR_OK : shard_engine_index_drain(s->engine);
    if (!rc)
        rc = shard_engine_snapshot(s->engine, &info);
    if (rc) {
        reply_status(j->call, j->req->id, rc, cr_error_message());
        return;
    }
    shard_conv_snapshot_to_pb(&info, &r);
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SNAPSHOT;
    resp.snapshot = &r;
    reply(j->call, j->req->id, &resp);
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

/* A write is refused on the front, before it is queued, when it cannot fit one commit. */
static cr_err admit_write(void *arg, const Cirrus__V1__Request *req)
{
    server *s = arg;
    if (job_items(&(write_job){.req = req}) > (size_t)s->o.max_batch_items)
        return cr_error_set(CR_ERR_INVALID, "too many items in one write");
    return CR_OK;
}

static size_t write_weight(const Cirrus__V1__Request *req)
{
    return job_items(&(write_job){.req = req});
}

/* One batch of queued writes (in arrival order): group commits, and snapshot requests
 * answered after the writes queued before them. */
static void write_batch(void *arg, cr_svc_call *const *calls, size_t n)
{
    server *s = arg;
    write_job *jobs = calloc(n, sizeof *jobs), *writes = NULL, **tail = &writes;
    if (!jobs) {
        for (size_t i = 0; i < n; i++)
            reply_status(calls[i], cr_svc_call_request(calls[i])->id, CR_ERR_NOMEM,
                         "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        write_job *j = &jobs[i];
        j->call = calls[i];
        j->req = cr_svc_call_request(calls[i]);
        if (j->req->op_case == CIRRUS__V1__REQUEST__OP_SNAPSHOT) {
            if (writes)
                commit_jobs(s, writes);
            writes = NULL;
            tail = &writes;
            do_snapshot(s, j);
            s->last_snap_ms = cr_clock_mono_ms();
        } else {
            *tail = j;
            tail = &j->next;
        }
    }
    if (writes)
        commit_jobs(s, writes);
    free(jobs);
}

static void write_idle(void *arg, int final)
{
    server *s = arg;
    maintenance(s, &s->last_snap_ms, final);
}

/* ---- the handle ----------------------------------------------------------------------- */

static const cr_svc_op shard_ops[] = {
    {CIRRUS__V1__REQUEST__OP_SEARCH, CR_SVC_POOL, do_search, search_front, NULL},
    {CIRRUS__V1__REQUEST__OP_SEARCH_BATCH, CR_SVC_POOL, do_search_batch, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_GET, CR_SVC_POOL, do_get, get_front, NULL},
    {CIRRUS__V1__REQUEST__OP_STATS, CR_SVC_POOL, do_stats, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_SCHEMA, CR_SVC_POOL, do_schema, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_HEALTH, CR_SVC_FRONT, do_health, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_SCAN, CR_SVC_POOL, do_scan, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_BACKUP, CR_SVC_POOL, do_backup, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_UPSERT, CR_SVC_WRITER, NULL, NULL, admit_write},
    {CIRRUS__V1__REQUEST__OP_DELETE, CR_SVC_WRITER, NULL, NULL, admit_write},
    {CIRRUS__V1__REQUEST__OP_SNAPSHOT, CR_SVC_WRITER, NULL, NULL, admit_write},
};

static const cr_svc_ops shard_table = {
    shard_ops, sizeof shard_ops / sizeof shard_ops[0],
    "operation not served by a shard (encode, compose and generation go to a coordinator or "
    "an encoder)",
    write_batch, write_idle, write_weight};

cr_err shard_server_open(shard_server **out, shard_engine *e, const shard_server_opts *o)
{
    cr_svc_opts so = cr_svc_default_opts();
    server *s;
    cr_err rc;

    if (!e || !o || !o->bind)
        return cr_error_set(CR_ERR_INVALID, "shard server: no engine or bind endpoint");
    s = calloc(1, sizeof *s);
    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    s->engine = e;
    s->o = *o;
    if (s->o.workers < 1 || s->o.workers > 64)
        s->o.workers = 2;
    if (s->o.write_queue < 1)
        s->o.write_queue = 1024;
    if (s->o.max_batch_items < 1)
        s->o.max_batch_items = 8192;
    s->last_snap_ms = cr_clock_mono_ms();
    so.name = "shard";
    so.pool_name = "search";
    so.bind = o->bind;
    so.zmq_ctx = o->zmq_ctx;
    so.curve = o->curve;
    so.workers = s->o.workers;
    if (s->o.merge_max < 1 || s->o.merge_max > 4096)
        s->o.merge_max = MERGE_MAX;
    if (s->o.merge_max > 1) {
        so.batch_op = CIRRUS__V1__REQUEST__OP_SEARCH;
        so.batch = search_merge;
        so.pool_batch = s->o.merge_max;
    }
    so.writer_queue = s->o.write_queue;
    so.writer_batch = (size_t)s->o.max_batch_items;
    so.default_deadline_ms = s->o.default_deadline_ms ? s->o.default_deadline_ms : 30000;
    so.spin_us = s->o.spin_us;
    so.idle_ms = POLL_MS;
    rc = cr_service_open(&s->svc, &so, &shard_table, s);
    if (rc) {
        free(s);
        return rc;
    }
    CR_INFO("shard", "serving on %s with %d search threads", cr_service_endpoint(s->svc),
            s->o.workers);
    *out = s;
    return CR_OK;
}

void shard_server_merged(shard_server *s, uint64_t *searches, uint64_t *queries)
{
    *searches = atomic_load(&s->merged_calls);
    *queries = atomic_load(&s->merged_queries);
}

const char *shard_server_endpoint(const shard_server *s)
{
    return cr_service_endpoint(s->svc);
}

cr_err shard_server_close(shard_server **pp)
{
    server *s = pp ? *pp : NULL;
    cr_err rc;
    if (!s)
        return CR_OK;
    *pp = NULL;
    CR_INFO("shard", "stopping: finishing queued writes");
    rc = cr_service_close(&s->svc);
    if (rc == CR_TIMEOUT) {
        /* a search thread still runs and uses s: leave it to it */
        CR_ERROR("shard", "%s", cr_error_message());
        return rc;
    }
    free(s);
    return rc;
}

cr_err shard_server_run(shard_engine *e, const shard_server_opts *o, volatile sig_atomic_t *stop)
{
    shard_server *s = NULL;
    cr_err rc = shard_server_open(&s, e, o);
    if (rc)
        return rc;
    while (!*stop)
        cr_clock_sleep_ms(RUN_SLICE_MS);
    return shard_server_close(&s);
}
