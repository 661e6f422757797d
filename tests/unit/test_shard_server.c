/* The shard server over real ZeroMQ sockets (inproc, in-process threads): every op, every
 * bad input answered with a clear error and no change, and SIGTERM-style shutdown. While the
 * indexer adds a chunk to an HNSW32 index (hundreds of ms), Health, Get and write
 * acknowledgements keep answering at once, and the indexer is not starved by searches. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "client/client.h"
#include "common/clock.h"
#include "shard/filter_parse.h"
#include "common/log.h"
#include "common/test.h"
#include "common/wire.h"
#include "shard/engine.h"
#include "shard/server.h"

#define DIM 8

typedef struct srv {
    void *ctx;
    shard_engine *engine;
    shard_server_opts o;
    shard_server *h;
} srv;

/* Returns once the server serves: no wait for readiness. */
static void srv_start_dim(srv *s, const char *dir, const char *factory, int create,
                          const char *bind, int dim, int workers)
{
    shard_engine_opts eo = shard_engine_default_opts();
    eo.create = create;
    eo.dim = dim;
    eo.factory = factory;
    CR_CHECK(shard_engine_open(&s->engine, dir, &eo) == CR_OK);
    s->o = shard_server_default_opts();
    s->o.bind = bind; /* a fresh name per instance: a closed inproc endpoint is released
                         asynchronously by ZeroMQ */
    s->o.zmq_ctx = s->ctx;
    if (workers)
        s->o.workers = workers;
    CR_CHECK_MSG(shard_server_open(&s->h, s->engine, &s->o) == CR_OK, "%s", cr_error_message());
    /* inproc names are kept; tcp port 0 gives the port chosen */
    CR_CHECK(s->h && (strcmp(shard_server_endpoint(s->h), bind) == 0 ||
                      (strcmp(bind, "tcp://127.0.0.1:0") == 0 &&
                       strncmp(shard_server_endpoint(s->h), "tcp://127.0.0.1:", 16) == 0 &&
                       atoi(shard_server_endpoint(s->h) + 16) > 0)));
}

static void srv_start(srv *s, const char *dir, const char *factory, int create,
                      const char *bind)
{
    srv_start_dim(s, dir, factory, create, bind, DIM, 0);
}

static void srv_stop(srv *s)
{
    CR_CHECK(shard_server_close(&s->h) == CR_OK && s->h == NULL);
    shard_engine_close(&s->engine);
}

static Cirrus__V1__Response *call(cirrus_client *c, Cirrus__V1__Request *req)
{
    Cirrus__V1__Response *resp = NULL;
    req->deadline_ms = 0;
    CR_CHECK(cirrus_client_call(c, req, 5000, &resp) == CR_OK);
    return resp;
}

static int upsert(cirrus_client *c, const char *id, const float *v, size_t n, const char *color,
                  double price, char *msg, size_t msglen)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item it = CIRRUS__V1__ITEM__INIT, *items[1] = {&it};
    Cirrus__V1__Vector vec = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__Attribute a1 = CIRRUS__V1__ATTRIBUTE__INIT, a2 = CIRRUS__V1__ATTRIBUTE__INIT;
    Cirrus__V1__AttrValue v1 = CIRRUS__V1__ATTR_VALUE__INIT, v2 = CIRRUS__V1__ATTR_VALUE__INIT;
    Cirrus__V1__Attribute *attrs[2] = {&a1, &a2};
    Cirrus__V1__Response *resp;
    int code;
    a1.name = "color";
    v1.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
    v1.s = (char *)color;
    a1.value = &v1;
    a2.name = "price";
    v2.value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
    v2.d = price;
    a2.value = &v2;
    vec.values = (float *)v;
    vec.n_values = n;
    it.id = (char *)id;
    it.vector = &vec;
    it.attributes = attrs;
    it.n_attributes = 2;
    up.items = items;
    up.n_items = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    resp = call(c, &req);
    if (!resp)
        return -100;
    if (resp->status->code < 0) {
        code = resp->status->code;
        snprintf(msg, msglen, "%s", resp->status->message);
    } else {
        code = resp->upsert->items[0]->status->code;
        snprintf(msg, msglen, "%s", resp->upsert->items[0]->status->message);
    }
    cirrus_response_free(resp);
    return code;
}

/* `quiet`: no CR_CHECK on the call (for client threads: its counters are not thread-safe). */
static Cirrus__V1__Response *search_q(cirrus_client *c, const float *q, size_t n, uint32_t k,
                                      const char *filter, int quiet)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query qq = CIRRUS__V1__QUERY__INIT;
    Cirrus__V1__Vector vec = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__Filter *f = NULL;
    Cirrus__V1__Response *resp;
    if (filter)
        CR_CHECK(cr_filter_parse(filter, &f) == CR_OK);
    vec.values = (float *)q;
    vec.n_values = n;
    qq.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    qq.vector = &vec;
    qq.k = k;
    qq.filter = f;
    qq.include_metadata = 1;
    sr.query = &qq;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    if (quiet) {
        resp = NULL;
        req.deadline_ms = 0;
        if (cirrus_client_call(c, &req, 5000, &resp) != CR_OK)
            resp = NULL;
    } else {
        resp = call(c, &req);
    }
    if (f)
        cirrus__v1__filter__free_unpacked(f, NULL);
    return resp;
}

static Cirrus__V1__Response *search(cirrus_client *c, const float *q, size_t n, uint32_t k,
                                    const char *filter)
{
    return search_q(c, q, n, k, filter, 0);
}

static uint64_t count_items(cirrus_client *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__Response *resp;
    uint64_t n = 0;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    resp = call(c, &req);
    if (resp && resp->stats)
        n = resp->stats->count;
    cirrus_response_free(resp);
    return n;
}

static void test_bad_inputs(cirrus_client *c, void *ctx)
{
    float v[DIM] = {1, 0, 0, 0, 0, 0, 0, 0}, bad[DIM];
    char msg[256], longid[300];
    Cirrus__V1__Response *resp;
    uint64_t before = count_items(c);

    CR_CHECK(upsert(c, "x", v, DIM - 1, "red", 1, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "7 dimensions, expected 8") != NULL, "%s", msg);
    memcpy(bad, v, sizeof bad);
    bad[3] = NAN;
    CR_CHECK(upsert(c, "x", bad, DIM, "red", 1, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "NaN") != NULL, "%s", msg);
    bad[3] = INFINITY;
    CR_CHECK(upsert(c, "x", bad, DIM, "red", 1, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK(upsert(c, "", v, DIM, "red", 1, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "empty") != NULL, "%s", msg);
    memset(longid, 'a', 257);
    longid[257] = '\0';
    CR_CHECK(upsert(c, longid, v, DIM, "red", 1, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "exceeds") != NULL, "%s", msg);
    CR_CHECK(upsert(c, "x", v, DIM, "red", NAN, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK(count_items(c) == before);

    /* Search: wrong dimension, k out of range, unknown attribute, non-vector query. */
    resp = search(c, v, DIM - 2, 10, NULL);
    CR_CHECK(resp && resp->status->code == CR_ERR_INVALID);
    cirrus_response_free(resp);
    resp = search(c, v, DIM, 0, NULL);
    CR_CHECK(resp && resp->status->code == CR_ERR_INVALID);
    cirrus_response_free(resp);
    resp = search(c, v, DIM, 1001, NULL);
    CR_CHECK(resp && resp->status->code == CR_ERR_INVALID &&
             strstr(resp->status->message, "out of range"));
    cirrus_response_free(resp);
    resp = search(c, v, DIM, 10, "size = 3");
    CR_CHECK(resp && resp->status->code == CR_ERR_INVALID &&
             strstr(resp->status->message, "unknown attribute 'size'"));
    cirrus_response_free(resp);
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
        Cirrus__V1__Query qq = CIRRUS__V1__QUERY__INIT;
        qq.kind_case = CIRRUS__V1__QUERY__KIND_TEXT;
        qq.text = "red dress";
        qq.k = 5;
        sr.query = &qq;
        req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
        req.search = &sr;
        resp = call(c, &req);
        CR_CHECK(resp && resp->status->code == CR_ERR_UNSUPPORTED);
        cirrus_response_free(resp);
        req.op_case = CIRRUS__V1__REQUEST__OP__NOT_SET;
        resp = call(c, &req);
        CR_CHECK(resp && resp->status->code == CR_ERR_INVALID);
        cirrus_response_free(resp);
    }

    /* Raw frames: malformed protobuf and an oversized frame are answered, not dropped. */
    {
        void *raw = zmq_socket(ctx, ZMQ_DEALER);
        char buf[512];
        int n, one = 1 << 20;
        size_t big_len = CR_WIRE_DEFAULT_MAX_FRAME + 16;
        char *big = calloc(1, big_len);
        zmq_setsockopt(raw, ZMQ_RCVTIMEO, &one, sizeof one);
        zmq_connect(raw, "inproc://shard-test");
        zmq_send(raw, "\x0a\xff\xff\xff\xff\xff", 6, 0);
        n = zmq_recv(raw, buf, sizeof buf, 0);
        resp = n > 0 ? cirrus__v1__response__unpack(NULL, (size_t)n, (uint8_t *)buf) : NULL;
        CR_CHECK(resp && resp->status->code == CR_ERR_PROTO);
        cirrus__v1__response__free_unpacked(resp, NULL);
        if (big) {
            zmq_send(raw, big, big_len, 0);
            n = zmq_recv(raw, buf, sizeof buf, 0);
            resp = n > 0 ? cirrus__v1__response__unpack(NULL, (size_t)n, (uint8_t *)buf) : NULL;
            CR_CHECK(resp && resp->status->code == CR_ERR_PROTO &&
                     strstr(resp->status->message, "exceeds"));
            cirrus__v1__response__free_unpacked(resp, NULL);
        }
        free(big);
        zmq_close(raw);
    }
    CR_CHECK(count_items(c) == before);
}

static void test_ops(cirrus_client *c)
{
    float v[DIM];
    char msg[256], id[32];
    Cirrus__V1__Response *resp;

    for (int i = 0; i < 50; i++) {
        for (int j = 0; j < DIM; j++)
            v[j] = (float)((i * 7 + j * 3) % 11) - 5.0f + (j == i % DIM ? 10.0f : 0.0f);
        snprintf(id, sizeof id, "item-%d", i);
        CR_CHECK(upsert(c, id, v, DIM, i % 2 ? "red" : "blue", i, msg, sizeof msg) == CR_OK);
    }
    CR_CHECK(count_items(c) == 50);
    /* item-10's own vector finds item-10 first. */
    for (int j = 0; j < DIM; j++)
        v[j] = (float)((10 * 7 + j * 3) % 11) - 5.0f + (j == 10 % DIM ? 10.0f : 0.0f);
    resp = search(c, v, DIM, 5, NULL);
    CR_CHECK(resp && resp->search && resp->search->n_hits == 5 &&
             strcmp(resp->search->hits[0]->id, "item-10") == 0);
    CR_CHECK(resp && resp->search && resp->search->hits[0]->n_attributes == 2);
    cirrus_response_free(resp);
    /* Filtered: only red (odd) items, price < 20. */
    resp = search(c, v, DIM, 50, "color = \"red\" and price < 20");
    CR_CHECK(resp && resp->search && resp->search->n_hits == 10);
    for (size_t i = 0; resp && resp->search && i < resp->search->n_hits; i++) {
        int num = atoi(resp->search->hits[i]->id + 5);
        CR_CHECK(num % 2 == 1 && num < 20);
    }
    cirrus_response_free(resp);
    /* Delete, then it is gone from search and get. */
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
        Cirrus__V1__DeleteItem di = CIRRUS__V1__DELETE_ITEM__INIT, *dis[1] = {&di};
        Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
        char *ids[1] = {"item-10"};
        di.id = "item-10";
        del.items = dis;
        del.n_items = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
        req.delete_ = &del;
        resp = call(c, &req);
        CR_CHECK(resp && resp->delete_ && resp->delete_->items[0]->status->code == CR_OK);
        cirrus_response_free(resp);
        resp = search(c, v, DIM, 5, NULL);
        CR_CHECK(resp && resp->search && strcmp(resp->search->hits[0]->id, "item-10") != 0);
        cirrus_response_free(resp);
        get.ids = ids;
        get.n_ids = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_GET;
        req.get = &get;
        resp = call(c, &req);
        CR_CHECK(resp && resp->get && resp->get->n_items == 0 && resp->get->n_missing == 1);
        cirrus_response_free(resp);
        ids[0] = "item-11";
        get.include_vector = 1;
        resp = call(c, &req);
        CR_CHECK(resp && resp->get && resp->get->n_items == 1 &&
                 resp->get->items[0]->vector->n_values == DIM);
        cirrus_response_free(resp);
    }
    /* An explicit older version is stale and changes nothing. */
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
        Cirrus__V1__Item it = CIRRUS__V1__ITEM__INIT, *items[1] = {&it};
        Cirrus__V1__Vector vec = CIRRUS__V1__VECTOR__INIT;
        vec.values = v;
        vec.n_values = DIM;
        it.id = "item-12";
        it.vector = &vec;
        it.version = 5;
        up.items = items;
        up.n_items = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
        resp = call(c, &req);
        CR_CHECK(resp && resp->upsert && resp->upsert->items[0]->status->code == CR_STALE);
        cirrus_response_free(resp);
    }
    CR_CHECK(count_items(c) == 49);

    /* SearchBatch (the one-index-call path) answers exactly as single searches do. */
    {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__SearchBatchRequest sb = CIRRUS__V1__SEARCH_BATCH_REQUEST__INIT;
        Cirrus__V1__Query qs[3], *qp[3];
        Cirrus__V1__Vector vs[3];
        float qv[3][DIM];
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < DIM; j++)
                qv[i][j] = (float)((i * 5 + j * 3) % 7) - 2.5f;
            cirrus__v1__query__init(&qs[i]);
            cirrus__v1__vector__init(&vs[i]);
            vs[i].values = qv[i];
            vs[i].n_values = DIM;
            qs[i].kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
            qs[i].vector = &vs[i];
            qs[i].k = 4;
            qp[i] = &qs[i];
        }
        sb.queries = qp;
        sb.n_queries = 3;
        req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH_BATCH;
        req.search_batch = &sb;
        resp = call(c, &req);
        CR_CHECK(resp && resp->search_batch && resp->search_batch->n_results == 3);
        for (int i = 0; resp && resp->search_batch && i < 3; i++) {
            Cirrus__V1__Response *one = search(c, qv[i], DIM, 4, NULL);
            const Cirrus__V1__SearchResult *a = resp->search_batch->results[i];
            CR_CHECK(one && one->search && a->n_hits == one->search->n_hits);
            for (size_t j = 0; one && one->search && j < a->n_hits && j < one->search->n_hits; j++)
                CR_CHECK(strcmp(a->hits[j]->id, one->search->hits[j]->id) == 0);
            cirrus_response_free(one);
        }
        cirrus_response_free(resp);
    }
}

/* Many clients at once: the proxy serves some searches itself and hands the overflow to the
 * workers; every answer must equal the one a lone client got. */
#define CONC_CLIENTS 6
#define CONC_QUERIES 8
typedef struct conc_arg {
    void *ctx;
    const char *ep;
    float q[CONC_QUERIES][DIM];
    char top[CONC_QUERIES][5][32];
    int mismatches;
} conc_arg;

static int same_top(const Cirrus__V1__Response *r, char top[5][32])
{
    if (!r || !r->search || r->search->n_hits != 5)
        return 0;
    for (int j = 0; j < 5; j++)
        if (strcmp(r->search->hits[j]->id, top[j]) != 0)
            return 0;
    return 1;
}

static void *conc_main(void *arg)
{
    conc_arg *a = arg;
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    co.zmq_ctx = a->ctx;
    /* No CR_CHECK here: its counters are not thread-safe; failures go to `mismatches`. */
    if (cirrus_client_open(&c, a->ep, &co) != CR_OK)
        __atomic_fetch_add(&a->mismatches, 1000, __ATOMIC_RELAXED);
    for (int i = 0; c && i < 150; i++) {
        Cirrus__V1__Response *r = search_q(c, a->q[i % CONC_QUERIES], DIM, 5, NULL, 1);
        if (!same_top(r, a->top[i % CONC_QUERIES]))
            __atomic_fetch_add(&a->mismatches, 1, __ATOMIC_RELAXED);
        cirrus_response_free(r);
    }
    cirrus_client_close(&c);
    return NULL;
}

static void test_concurrent_clients(cirrus_client *c, void *ctx, const char *ep)
{
    conc_arg a = {.ctx = ctx, .ep = ep};
    pthread_t t[CONC_CLIENTS];
    for (int i = 0; i < CONC_QUERIES; i++) {
        Cirrus__V1__Response *r;
        for (int d = 0; d < DIM; d++)
            a.q[i][d] = (float)((i * 7 + d * 3) % 11) - 5.0f;
        r = search(c, a.q[i], DIM, 5, NULL);
        CR_CHECK(r && r->search && r->search->n_hits == 5);
        for (int j = 0; r && r->search && j < 5 && j < (int)r->search->n_hits; j++)
            snprintf(a.top[i][j], sizeof a.top[i][j], "%s", r->search->hits[j]->id);
        cirrus_response_free(r);
    }
    for (int i = 0; i < CONC_CLIENTS; i++)
        pthread_create(&t[i], NULL, conc_main, &a);
    for (int i = 0; i < CONC_CLIENTS; i++)
        pthread_join(t[i], NULL);
    CR_CHECK(a.mismatches == 0);
}

/* ---- the front thread during index adds ----------------------------------------------- */

#define ADD_DIM 64
#define ADD_BATCH 1000
#define ADD_MAX_ITEMS 40000

static float add_vecs[ADD_MAX_ITEMS][ADD_DIM];

/* Upserts items [from, from + n) (n <= ADD_BATCH) in one request; 1 when all acknowledged. */
static int upsert_range(cirrus_client *c, int from, int n)
{
    static Cirrus__V1__Item it[ADD_BATCH], *ip[ADD_BATCH];
    static Cirrus__V1__Vector v[ADD_BATCH];
    static char ids[ADD_BATCH][24];
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;
    int ok;
    for (int i = 0; i < n; i++) {
        cirrus__v1__item__init(&it[i]);
        cirrus__v1__vector__init(&v[i]);
        snprintf(ids[i], sizeof ids[i], "a-%d", from + i);
        v[i].values = add_vecs[from + i];
        v[i].n_values = ADD_DIM;
        it[i].id = ids[i];
        it[i].vector = &v[i];
        ip[i] = &it[i];
    }
    up.items = ip;
    up.n_items = (size_t)n;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    rc = cirrus_client_call(c, &req, 10000, &resp);
    ok = rc == CR_OK && resp->upsert && resp->upsert->n_items == (size_t)n;
    if (!ok)
        fprintf(stderr, "upsert of %d items from %d: %s\n", n, from,
                rc ? cr_strerror(rc) : resp->status ? resp->status->message : "no result");
    cirrus_response_free(resp);
    return ok;
}

typedef struct searcher {
    void *ctx;
    const char *ep;
    atomic_int *stop;
    int first, n, failed; /* queries start at add_vecs[first]; n searches answered */
} searcher;

static void *searcher_main(void *arg)
{
    searcher *a = arg;
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    co.zmq_ctx = a->ctx;
    if (cirrus_client_open(&c, a->ep, &co) != CR_OK) {
        a->failed++;
        return NULL;
    }
    while (!atomic_load(a->stop)) {
        Cirrus__V1__Response *r =
            search_q(c, add_vecs[(a->first + a->n) % 997], ADD_DIM, 10, NULL, 1);
        a->failed += !r || !r->search;
        a->n++;
        cirrus_response_free(r);
    }
    cirrus_client_close(&c);
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* One probe round: Health, Get of a known id, and a one-item upsert of a fresh id; each
 * call's latency goes to lat[]. */
static int probe(cirrus_client *c, int fresh, uint64_t *lat)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__GetRequest g = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    char *ids[1] = {"a-7"};
    int ok = 1;
    uint64_t t0 = cr_clock_mono_us();
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;
    ok &= cirrus_client_call(c, &req, 5000, &resp) == CR_OK && resp->health;
    cirrus_response_free(resp);
    lat[0] = cr_clock_mono_us() - t0;
    t0 = cr_clock_mono_us();
    g.ids = ids;
    g.n_ids = 1;
    req = (Cirrus__V1__Request)CIRRUS__V1__REQUEST__INIT;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &g;
    resp = NULL;
    ok &= cirrus_client_call(c, &req, 5000, &resp) == CR_OK && resp->get &&
          resp->get->n_items == 1;
    cirrus_response_free(resp);
    lat[1] = cr_clock_mono_us() - t0;
    t0 = cr_clock_mono_us();
    ok &= upsert_range(c, fresh, 1);
    lat[2] = cr_clock_mono_us() - t0;
    return ok;
}

static void test_front_during_adds(void *ctx, const char *dir)
{
    srv s = {.ctx = ctx};
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    const char *ep = "inproc://shard-adds";
    atomic_int stop = 0;
    searcher sa[4];
    pthread_t st[4];
    enum { MAXLAT = 3 * 4000 };
    static uint64_t lat[MAXLAT];
    size_t nlat = 0;
    int fresh = 30000, loaded = 0, bad = 0;
    uint64_t t0, drain_ms, queued, prev, last_drop, longest_add = 0;

    srand(11);
    for (int i = 0; i < ADD_MAX_ITEMS; i++)
        for (int d = 0; d < ADD_DIM; d++)
            add_vecs[i][d] = (float)rand() / RAND_MAX - 0.5f;
    srv_start_dim(&s, dir, "HNSW32", 1, ep, ADD_DIM, 4);
    co.zmq_ctx = ctx;
    CR_CHECK(cirrus_client_open(&c, ep, &co) == CR_OK);
    /* Acknowledged at the commit; the indexer then adds them 4096 at a time. */
    for (; loaded < 16000; loaded += ADD_BATCH)
        CR_CHECK(upsert_range(c, loaded, ADD_BATCH));
    memset(sa, 0, sizeof sa);
    sa[0] = (searcher){ctx, ep, &stop, 0, 0, 0};
    pthread_create(&st[0], NULL, searcher_main, &sa[0]);
    /* Probe the front while the adds run (and a client searches: the front serves searches
     * too, and must not wait for the index while it does). */
    t0 = cr_clock_mono_ms();
    last_drop = t0;
    prev = shard_engine_index_backlog(s.engine);
    while (prev > 0 && nlat + 3 <= MAXLAT && cr_clock_mono_ms() - t0 < 60000) {
        uint64_t now;
        bad += !probe(c, fresh++, lat + nlat);
        nlat += 3;
        now = cr_clock_mono_ms();
        queued = shard_engine_index_backlog(s.engine);
        if (queued < prev) { /* a chunk left the queue: one add ended */
            longest_add = now - last_drop > longest_add ? now - last_drop : longest_add;
            last_drop = now;
        }
        prev = queued;
    }
    atomic_store(&stop, 1);
    pthread_join(st[0], NULL);
    CR_CHECK_MSG(bad == 0 && sa[0].failed == 0, "%d probes and %d searches failed", bad,
                 sa[0].failed);
    CR_CHECK_MSG(nlat >= 30, "only %zu probes while indexing", nlat);
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    if (nlat) {
        /* 100 ms, or a quarter of an add on a machine so loaded that adds take seconds:
         * a front that waits for adds answers in about one add. */
        uint64_t p99 = lat[nlat * 99 / 100], mx = lat[nlat - 1];
        uint64_t bound_us = longest_add * 250 > 100000 ? longest_add * 250 : 100000;
        printf("front during adds: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
               "%d searches alongside; indexing took %llu ms, longest add ~%llu ms\n",
               nlat, lat[nlat / 2] / 1e3, p99 / 1e3, mx / 1e3, sa[0].n,
               (unsigned long long)(cr_clock_mono_ms() - t0), (unsigned long long)longest_add);
        CR_CHECK_MSG(p99 < bound_us, "p99 %.1f ms while the indexer adds (bound %.0f ms)",
                     p99 / 1e3, bound_us / 1e3);
    }

    /* Four clients search back to back: the indexer still drains the queue (a reader-
     * preferring index lock let overlapping searches starve it). */
    for (; loaded < 36000; loaded += ADD_BATCH)
        CR_CHECK(upsert_range(c, loaded, ADD_BATCH));
    queued = shard_engine_index_backlog(s.engine);
    atomic_store(&stop, 0);
    for (int i = 0; i < 4; i++) {
        sa[i] = (searcher){ctx, ep, &stop, i * 100, 0, 0};
        pthread_create(&st[i], NULL, searcher_main, &sa[i]);
    }
    t0 = cr_clock_mono_ms();
    while (shard_engine_index_backlog(s.engine) > 0 && cr_clock_mono_ms() - t0 < 30000)
        cr_clock_sleep_ms(20);
    drain_ms = cr_clock_mono_ms() - t0;
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(st[i], NULL);
    printf("indexer drained %llu queued items in %llu ms under 4 searching clients "
           "(%d, %d, %d, %d searches)\n",
           (unsigned long long)queued, (unsigned long long)drain_ms, sa[0].n, sa[1].n, sa[2].n,
           sa[3].n);
    CR_CHECK_MSG(sa[0].failed + sa[1].failed + sa[2].failed + sa[3].failed == 0,
                 "searches failed while indexing");
    CR_CHECK_MSG(shard_engine_index_backlog(s.engine) == 0,
                 "%llu items still queued after %llu ms of searches",
                 (unsigned long long)shard_engine_index_backlog(s.engine),
                 (unsigned long long)drain_ms);
    cirrus_client_close(&c);
    srv_stop(&s);
}

int main(void)
{
    srv s;
    char dir[] = "/tmp/cirrus-test-shard-XXXXXX", cmd[128];
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();

    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    CR_CHECK(mkdtemp(dir) != NULL);
    memset(&s, 0, sizeof s);
    s.ctx = zmq_ctx_new();
    srv_start(&s, dir, "HNSW16", 1, "inproc://shard-test");
    co.zmq_ctx = s.ctx;
    CR_CHECK(cirrus_client_open(&c, "inproc://shard-test", &co) == CR_OK);
    test_ops(c);
    test_concurrent_clients(c, s.ctx, "inproc://shard-test");
    test_bad_inputs(c, s.ctx);
    cirrus_client_close(&c);
    srv_stop(&s);

    /* Reopen (the stop snapshotted), on a port chosen at bind: everything is still there,
     * answered on the first try. */
    srv_start(&s, dir, NULL, 0, "tcp://127.0.0.1:0");
    CR_CHECK(s.h && cirrus_client_open(&c, shard_server_endpoint(s.h), &co) == CR_OK);
    CR_CHECK(count_items(c) == 49);
    cirrus_client_close(&c);
    srv_stop(&s);

    {
        char dir2[] = "/tmp/cirrus-test-shard-adds-XXXXXX";
        CR_CHECK(mkdtemp(dir2) != NULL);
        test_front_during_adds(s.ctx, dir2);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir2);
        CR_CHECK(system(cmd) == 0);
    }

    zmq_ctx_term(s.ctx);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    return CR_TEST_END();
}
