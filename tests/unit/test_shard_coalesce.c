/* Concurrent Search requests merged into one index search (issue 14, target 3): with 8
 * clients sending at once, every answer equals the one a lone client got for the same query
 * (same ids, same scores, same error), whatever else was queued with it: requests of other k
 * or parameters, filtered and exact ones, offsets, invalid ones (wrong dimension, NaN, k 0,
 * an unknown filter attribute, and for inner product a zero vector, which fails a merged
 * search as a whole). The merge path must have run (the server's counters), or the test
 * proves nothing. Real engine (LMDB, FAISS HNSW32 and IVF), real ZeroMQ sockets (inproc). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "client/client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "shard/engine.h"
#include "shard/filter_parse.h"
#include "shard/server.h"

#define DIM 16
#define ITEMS 3000
#define CLIENTS 8
#define ROUNDS 60
#define MAX_HITS 40

/* One query of the mix, and the answer a lone client got for it. */
typedef struct spec {
    int vec;            /* row of the query set */
    uint32_t k, offset, ef, nprobe;
    int exact, wrong_dim, nan, zero;
    const char *filter;
    int code;           /* the answer: status code, hits */
    char msg[160];
    size_t n;
    char ids[MAX_HITS][24];
    float scores[MAX_HITS];
} spec;

static float qv[32][DIM];

static const spec mix[] = {
    {.vec = 0, .k = 10},
    {.vec = 1, .k = 10},
    {.vec = 2, .k = 10},
    {.vec = 3, .k = 10},
    {.vec = 4, .k = 10, .ef = 32, .nprobe = 4},
    {.vec = 5, .k = 10, .ef = 32, .nprobe = 4},
    {.vec = 6, .k = 5},
    {.vec = 7, .k = 5, .offset = 3},
    {.vec = 8, .k = 10, .filter = "bucket < 10"},
    {.vec = 9, .k = 10, .filter = "bucket < 60"},
    {.vec = 10, .k = 10, .exact = 1},
    {.vec = 11, .k = 20, .ef = 64, .nprobe = 8},
    {.vec = 12, .k = 20, .ef = 64, .nprobe = 8},
    {.vec = 13, .k = 10, .wrong_dim = 1},
    {.vec = 14, .k = 10, .nan = 1},
    {.vec = 15, .k = 0},
    {.vec = 16, .k = 10, .filter = "nosuch < 3"},
    {.vec = 17, .k = 10, .zero = 1},
    {.vec = 18, .k = 10},
    {.vec = 19, .k = 10},
};
#define NSPEC (sizeof mix / sizeof mix[0])

static Cirrus__V1__Response *search_spec(cirrus_client *c, const spec *s)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query q = CIRRUS__V1__QUERY__INIT;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__SearchParams p = CIRRUS__V1__SEARCH_PARAMS__INIT;
    Cirrus__V1__Filter *f = NULL;
    Cirrus__V1__Response *resp = NULL;
    float vec[DIM];
    memcpy(vec, qv[s->vec], sizeof vec);
    if (s->nan)
        vec[3] = NAN;
    if (s->zero)
        memset(vec, 0, sizeof vec);
    if (s->filter && cr_filter_parse(s->filter, &f) != CR_OK)
        return NULL;
    v.values = vec;
    v.n_values = s->wrong_dim ? DIM - 1 : DIM;
    p.ef_search = s->ef;
    p.nprobe = s->nprobe;
    p.exact = s->exact;
    q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    q.vector = &v;
    q.k = s->k;
    q.offset = s->offset;
    q.params = &p;
    q.filter = f;
    sr.query = &q;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    if (cirrus_client_call(c, &req, 20000, &resp) != CR_OK)
        resp = NULL;
    if (f)
        cirrus__v1__filter__free_unpacked(f, NULL);
    return resp;
}

/* The answer into s (code, message, hits); 0 when there was none. */
static int record(const Cirrus__V1__Response *r, spec *s)
{
    if (!r || !r->status)
        return 0;
    s->code = r->status->code;
    snprintf(s->msg, sizeof s->msg, "%s", r->status->message ? r->status->message : "");
    s->n = 0;
    if (s->code == 0 && r->search)
        for (size_t i = 0; i < r->search->n_hits && i < MAX_HITS; i++, s->n++) {
            snprintf(s->ids[i], sizeof s->ids[i], "%s", r->search->hits[i]->id);
            s->scores[i] = r->search->hits[i]->score;
        }
    return 1;
}

static int same_answer(const spec *a, const spec *b)
{
    if (a->code != b->code || strcmp(a->msg, b->msg) != 0 || a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->ids[i], b->ids[i]) != 0 || a->scores[i] != b->scores[i])
            return 0;
    return 1;
}

typedef struct client_arg {
    void *ctx;
    const char *ep;
    const spec *ref; /* NSPEC answers of a lone client */
    int seed;
    atomic_int *start;
    int calls, mismatches, lost;
    char first[512];
} client_arg;

static void *client_main(void *arg)
{
    client_arg *a = arg;
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    unsigned r = (unsigned)a->seed;
    co.zmq_ctx = a->ctx;
    /* No CR_CHECK on this thread (its counters are not thread-safe): counts instead. */
    if (cirrus_client_open(&c, a->ep, &co) != CR_OK) {
        a->lost = 1000;
        return NULL;
    }
    while (!atomic_load(a->start))
        ;
    for (int i = 0; i < ROUNDS * (int)NSPEC; i++) {
        size_t j;
        spec got;
        Cirrus__V1__Response *resp;
        r = r * 1103515245u + 12345u;
        j = (r >> 8) % NSPEC;
        got = a->ref[j];
        resp = search_spec(c, &a->ref[j]);
        a->calls++;
        if (!record(resp, &got)) {
            a->lost++;
        } else if (!same_answer(&got, &a->ref[j])) {
            if (!a->mismatches++)
                snprintf(a->first, sizeof a->first, "query %zu: code %d (%s), %zu hits; "
                         "alone: code %d (%s), %zu hits", j, got.code, got.msg, got.n,
                         a->ref[j].code, a->ref[j].msg, a->ref[j].n);
        }
        cirrus_response_free(resp);
    }
    cirrus_client_close(&c);
    return NULL;
}

static int upsert_all(cirrus_client *c)
{
    enum { BATCH = 500 };
    static float vecs[BATCH][DIM];
    Cirrus__V1__Item it[BATCH], *items[BATCH];
    Cirrus__V1__Vector v[BATCH];
    Cirrus__V1__Attribute a[BATCH], *ap[BATCH];
    Cirrus__V1__AttrValue av[BATCH];
    char ids[BATCH][16];
    for (int from = 0; from < ITEMS; from += BATCH) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
        Cirrus__V1__Response *resp = NULL;
        int ok;
        for (int i = 0; i < BATCH; i++) {
            for (int d = 0; d < DIM; d++) /* clustered a little: 30 centres */
                vecs[i][d] = (float)(((from + i) % 30) * (d + 1) % 7) +
                             (float)rand() / (float)RAND_MAX;
            cirrus__v1__item__init(&it[i]);
            cirrus__v1__vector__init(&v[i]);
            cirrus__v1__attribute__init(&a[i]);
            cirrus__v1__attr_value__init(&av[i]);
            snprintf(ids[i], sizeof ids[i], "r%d", from + i);
            v[i].values = vecs[i];
            v[i].n_values = DIM;
            av[i].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
            av[i].i = (from + i) % 100;
            a[i].name = "bucket";
            a[i].value = &av[i];
            ap[i] = &a[i];
            it[i].id = ids[i];
            it[i].vector = &v[i];
            it[i].attributes = &ap[i];
            it[i].n_attributes = 1;
            items[i] = &it[i];
        }
        up.items = items;
        up.n_items = BATCH;
        req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
        ok = cirrus_client_call(c, &req, 30000, &resp) == CR_OK && resp->upsert &&
             resp->status->code == 0;
        cirrus_response_free(resp);
        if (!ok)
            return 0;
    }
    return 1;
}

static void run_case(void *ctx, const char *factory, shard_index_metric metric, const char *ep)
{
    char dir[] = "/tmp/cirrus-test-coalesce-XXXXXX", cmd[128];
    shard_engine *e = NULL;
    shard_engine_opts eo = shard_engine_default_opts();
    shard_server_opts so = shard_server_default_opts();
    shard_server *srv = NULL;
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    static spec ref[NSPEC];
    client_arg args[CLIENTS];
    pthread_t t[CLIENTS];
    atomic_int start = 0;
    uint64_t t0, merged = 0, merged_q = 0;
    int calls = 0, mismatches = 0, lost = 0, errors = 0;

    CR_CHECK(mkdtemp(dir) != NULL);
    eo.create = 1;
    eo.dim = DIM;
    eo.factory = factory;
    eo.metric = metric;
    eo.metric_set = 1;
    CR_CHECK_MSG(shard_engine_open(&e, dir, &eo) == CR_OK, "%s", cr_error_message());
    so.bind = ep;
    so.zmq_ctx = ctx;
    so.workers = 2;
    so.merge_max = 32; /* merging is opt-in (the default runs each search alone) */
    CR_CHECK_MSG(e && shard_server_open(&srv, e, &so) == CR_OK, "%s", cr_error_message());
    co.zmq_ctx = ctx;
    CR_CHECK(srv && cirrus_client_open(&c, ep, &co) == CR_OK);
    if (!c)
        goto out;
    CR_CHECK(upsert_all(c));
    /* the answers must come from one index state: everything indexed first */
    t0 = cr_clock_mono_ms();
    while (shard_engine_index_backlog(e) > 0 && cr_clock_mono_ms() - t0 < 120000)
        cr_clock_sleep_ms(20);
    CR_CHECK(shard_engine_index_backlog(e) == 0);

    /* Alone: one request at a time, so none is merged with another. */
    for (size_t i = 0; i < NSPEC; i++) {
        Cirrus__V1__Response *r;
        ref[i] = mix[i];
        r = search_spec(c, &ref[i]);
        CR_CHECK_MSG(record(r, &ref[i]), "query %zu: no answer", i);
        cirrus_response_free(r);
        errors += ref[i].code != 0;
    }
    shard_server_merged(srv, &merged, &merged_q);
    CR_CHECK_MSG(merged == 0, "%llu merged searches from a lone client",
                 (unsigned long long)merged);
    /* the mix is what it says: answers with hits, and the invalid ones refused */
    CR_CHECK(ref[0].code == 0 && ref[0].n == 10 && ref[7].code == 0 && ref[7].n == 5 &&
             ref[11].n == 20 && ref[8].code == 0 && ref[8].n == 10);
    CR_CHECK(ref[13].code == CR_ERR_INVALID && ref[14].code == CR_ERR_INVALID &&
             ref[15].code == CR_ERR_INVALID && ref[16].code < 0);
    CR_CHECK_MSG(metric == SHARD_INDEX_METRIC_IP ? ref[17].code == CR_ERR_INVALID
                                                 : ref[17].code == 0,
                 "zero vector: code %d (%s)", ref[17].code, ref[17].msg);
    printf("%s (%s): %d of %zu queries refused alone\n", factory,
           metric == SHARD_INDEX_METRIC_IP ? "ip" : "l2", errors, NSPEC);

    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (client_arg){.ctx = ctx, .ep = ep, .ref = ref, .seed = 17 * i + 1,
                               .start = &start};
        pthread_create(&t[i], NULL, client_main, &args[i]);
    }
    cr_clock_sleep_ms(50);
    atomic_store(&start, 1);
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        calls += args[i].calls;
        mismatches += args[i].mismatches;
        lost += args[i].lost;
        if (args[i].mismatches)
            printf("client %d: %d mismatches, first: %s\n", i, args[i].mismatches,
                   args[i].first);
    }
    shard_server_merged(srv, &merged, &merged_q);
    printf("%s: %d calls from %d clients, %llu merged searches answered %llu requests "
           "(%.1f each)\n", factory, calls, CLIENTS, (unsigned long long)merged,
           (unsigned long long)merged_q, merged ? (double)merged_q / (double)merged : 0.0);
    CR_CHECK_MSG(lost == 0, "%d calls without an answer", lost);
    CR_CHECK_MSG(mismatches == 0, "%d of %d answers differ from the lone client's",
                 mismatches, calls);
    CR_CHECK_MSG(merged > 0 && merged_q >= 2 * merged,
                 "the merge path did not run (%llu merged searches)", (unsigned long long)merged);
out:
    cirrus_client_close(&c);
    CR_CHECK(shard_server_close(&srv) == CR_OK);
    shard_engine_close(&e);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
}

int main(void)
{
    void *ctx;
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    srand(3);
    for (int i = 0; i < 32; i++)
        for (int d = 0; d < DIM; d++)
            qv[i][d] = (float)((i * 5 + d) % 7) + (float)rand() / (float)RAND_MAX;
    ctx = zmq_ctx_new();
    run_case(ctx, "HNSW32", SHARD_INDEX_METRIC_L2, "inproc://coalesce-hnsw");
    run_case(ctx, "IVF16,Flat", SHARD_INDEX_METRIC_IP, "inproc://coalesce-ivf");
    zmq_ctx_term(ctx);
    return CR_TEST_END();
}
