/* libcirrus's high-level API (client/cirrus.h) against a real node started in-process the way
 * `cirrus serve` starts one: a CLIP encoder (the tiny fixture model with its SEARLE and
 * combiner heads), two shards and a coordinator, joined by inproc:// sockets. Covers text,
 * vector, image, item-id and composed searches, filters, group_by, partial answers (a second
 * coordinator with a group that never answers), upsert/get/delete with per-item status, the
 * raw escape hatch, and the errors left on the handle. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "client/cirrus.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/test.h"
#include "coordinator/coord.h"
#include "encoder/server.h"
#include "shard/engine.h"
#include "shard/server.h"

#define N_SHARDS 2
#define N_ITEMS 60

/* ---- an in-process node ---------------------------------------------------------------- */

typedef struct shard_t {
    shard_engine *engine;
    shard_server_opts o;
    char bind[64];
    shard_server *srv;
} shard_t;

typedef struct node {
    void *ctx;
    volatile sig_atomic_t stop;
    enc_service *svc;
    enc_server_opts eo;
    enc_server *enc;
    shard_t shards[N_SHARDS];
    coord_map map, map_partial;
    coord_server_opts co, co_partial;
    pthread_t coord_tid, coord_partial_tid;
    cr_err coord_rc, coord_partial_rc;
    int dim;
} node;

static node the_node;

static void *coord_main(void *arg)
{
    node *n = arg;
    n->coord_rc = coord_server_run(&n->co, &n->stop);
    return NULL;
}

static void *coord_partial_main(void *arg)
{
    node *n = arg;
    n->coord_partial_rc = coord_server_run(&n->co_partial, &n->stop);
    return NULL;
}

static void node_start(node *n, const char *fix, const char *dir)
{
    enc_service_opts eo = enc_service_default_opts();
    char model[1200], phi[1200], comb[1200], sdir[1200];

    snprintf(model, sizeof model, "%s/clip-openai-names.safetensors", fix);
    snprintf(phi, sizeof phi, "%s/phi.safetensors", fix);
    snprintf(comb, sizeof comb, "%s/combiner.safetensors", fix);
    eo.model = model;
    eo.phi = phi;
    eo.combiner = comb;
    eo.threads = 1;
    CR_CHECK_MSG(enc_service_open(&n->svc, &eo) == CR_OK, "%s", cr_error_message());
    n->dim = enc_service_embed_dim(n->svc);
    n->ctx = zmq_ctx_new();
    n->eo = enc_server_default_opts();
    n->eo.bind = "inproc://api-encoder";
    n->eo.zmq_ctx = n->ctx;
    CR_CHECK_MSG(enc_server_open(&n->enc, n->svc, &n->eo) == CR_OK, "%s", cr_error_message());

    for (int i = 0; i < N_SHARDS; i++) {
        shard_engine_opts so = shard_engine_default_opts();
        shard_t *s = &n->shards[i];
        snprintf(sdir, sizeof sdir, "%s/shard-%d", dir, i);
        so.create = 1;
        so.dim = n->dim;
        so.factory = "Flat";
        CR_CHECK_MSG(shard_engine_open(&s->engine, sdir, &so) == CR_OK, "%s",
                     cr_error_message());
        snprintf(s->bind, sizeof s->bind, "inproc://api-shard-%d", i);
        s->o = shard_server_default_opts();
        s->o.bind = s->bind;
        s->o.zmq_ctx = n->ctx;
        s->o.spin_us = 0;
        CR_CHECK_MSG(shard_server_open(&s->srv, s->engine, &s->o) == CR_OK, "%s",
                     cr_error_message());
    }

    /* The node's coordinator, as `cirrus serve` configures it. */
    snprintf(n->map.bind, sizeof n->map.bind, "inproc://api-coord");
    n->map.n_groups = N_SHARDS;
    for (int i = 0; i < N_SHARDS; i++) {
        n->map.n_replicas[i] = 1;
        snprintf(n->map.replicas[i][0], sizeof n->map.replicas[i][0], "%s",
                 n->shards[i].bind);
    }
    n->map.n_encoders = 1;
    snprintf(n->map.encoders[0], sizeof n->map.encoders[0], "%s", n->eo.bind);
    n->map.hedge_ms = 1000;
    n->map.default_method = (int)enc_service_default_method(n->svc);
    n->co = coord_server_default_opts();
    n->co.map = &n->map;
    n->co.zmq_ctx = n->ctx;
    pthread_create(&n->coord_tid, NULL, coord_main, n);

    /* A second coordinator over the same shards plus a third group that never answers. */
    n->map_partial = n->map;
    snprintf(n->map_partial.bind, sizeof n->map_partial.bind, "inproc://api-coord-partial");
    n->map_partial.n_groups = N_SHARDS + 1;
    n->map_partial.n_replicas[N_SHARDS] = 1;
    snprintf(n->map_partial.replicas[N_SHARDS][0], sizeof n->map_partial.replicas[0][0],
             "inproc://api-nobody");
    n->co_partial = n->co;
    n->co_partial.map = &n->map_partial;
    n->co_partial.backend_timeout_ms = 300;
    pthread_create(&n->coord_partial_tid, NULL, coord_partial_main, n);
}

static void node_stop(node *n)
{
    n->stop = 1;
    pthread_join(n->coord_tid, NULL);
    pthread_join(n->coord_partial_tid, NULL);
    CR_CHECK(n->coord_rc == CR_OK && n->coord_partial_rc == CR_OK);
    CR_CHECK(enc_server_close(&n->enc) == CR_OK);
    for (int i = 0; i < N_SHARDS; i++) {
        CR_CHECK(shard_server_close(&n->shards[i].srv) == CR_OK);
        shard_engine_close(&n->shards[i].engine);
    }
    enc_service_close(&n->svc);
    zmq_ctx_term(n->ctx);
}

/* Polls the handle's health until the node answers ready (no fixed sleeps). */
static int wait_ready(cirrus *c)
{
    for (int i = 0; i < 200; i++) {
        int ready = 0;
        if (cirrus_health(c, &ready) == CIRRUS_OK && ready)
            return 1;
    }
    return 0;
}

/* ---- the catalog ------------------------------------------------------------------------ */

static const char *const colors[] = {"red", "blue", "green"};

static float *item_vector(int i, int dim)
{
    static float v[4096];
    unsigned s = 2654435761u * (unsigned)(i + 1);
    for (int d = 0; d < dim; d++) {
        s = s * 1664525u + 1013904223u;
        v[d] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return v;
}

static void load_catalog(cirrus *c, int dim)
{
    cirrus_item items[N_ITEMS];
    cirrus_item_status st[N_ITEMS];
    cirrus_attr attrs[N_ITEMS][3];
    char ids[N_ITEMS][16], products[N_ITEMS][16];
    float *vecs = malloc((size_t)N_ITEMS * (size_t)dim * sizeof *vecs);
    int ok = 1;

    memset(items, 0, sizeof items);
    for (int i = 0; i < N_ITEMS; i++) {
        memcpy(vecs + (size_t)i * (size_t)dim, item_vector(i, dim), (size_t)dim * sizeof *vecs);
        snprintf(ids[i], sizeof ids[i], "sku-%d", i);
        snprintf(products[i], sizeof products[i], "p%d", i / 3); /* 3 items per product */
        attrs[i][0] = cirrus_attr_string("color", colors[i % 3]);
        attrs[i][1] = cirrus_attr_double("price", 10.0 + 2.0 * i);
        attrs[i][2] = cirrus_attr_string("product", products[i]);
        items[i].id = ids[i];
        items[i].vector = vecs + (size_t)i * (size_t)dim;
        items[i].dim = (size_t)dim;
        items[i].attrs = attrs[i];
        items[i].n_attrs = 3;
    }
    CR_CHECK_MSG(cirrus_upsert(c, items, N_ITEMS, st) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    for (int i = 0; i < N_ITEMS; i++)
        ok &= st[i].code == CIRRUS_OK && st[i].version > 0;
    CR_CHECK(ok);
    CR_CHECK(cirrus_errmsg(c)[0] == '\0');
    free(vecs);
}

/* ---- searches --------------------------------------------------------------------------- */

static void test_vector_and_item(cirrus *c, int dim)
{
    cirrus_query q = cirrus_query_default();
    cirrus_result *r = NULL;
    cirrus_attr a;

    CR_CHECK(q.k == 10 && q.include_metadata == 1 && q.method == CIRRUS_METHOD_DEFAULT);
    q.vector = item_vector(7, dim);
    q.dim = (size_t)dim;
    q.k = 5;
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 5);
    CR_CHECK(cirrus_result_id(r, 0) && strcmp(cirrus_result_id(r, 0), "sku-7") == 0);
    CR_CHECK_NEAR(cirrus_result_score(r, 0), 1.0, 1e-4);
    CR_CHECK(cirrus_result_score(r, 1) <= cirrus_result_score(r, 0));
    CR_CHECK(!cirrus_result_partial(r));
    CR_CHECK(cirrus_result_attr_count(r, 0) == 3);
    CR_CHECK(cirrus_result_attr_find(r, 0, "color", &a) == CIRRUS_OK &&
             a.type == CIRRUS_ATTR_STRING && strcmp(a.s, "blue") == 0);
    CR_CHECK(cirrus_result_attr_find(r, 0, "price", &a) == CIRRUS_OK &&
             a.type == CIRRUS_ATTR_DOUBLE && a.d == 24.0);
    CR_CHECK(cirrus_result_attr_find(r, 0, "nope", &a) == CIRRUS_NOTFOUND);
    CR_CHECK(cirrus_result_attr(r, 0, 3, &a) == CIRRUS_NOTFOUND);
    CR_CHECK(cirrus_result_id(r, 5) == NULL && cirrus_result_score(r, 99) == 0.0f);
    CR_CHECK(cirrus_result_vector(r, 0, NULL) == NULL); /* include_vectors off */
    cirrus_result_free(&r);
    CR_CHECK(r == NULL);
    cirrus_result_free(&r); /* NULL-safe */

    q.include_vectors = 1;
    q.include_metadata = 0;
    CR_CHECK(cirrus_search(c, &q, &r) == CIRRUS_OK);
    {
        size_t d = 0;
        const float *v = cirrus_result_vector(r, 0, &d);
        CR_CHECK(v && d == (size_t)dim && fabsf(v[0] - item_vector(7, dim)[0]) < 1e-6f);
        CR_CHECK(cirrus_result_attr_count(r, 0) == 0);
    }
    cirrus_result_free(&r);

    q = cirrus_query_default();
    q.item_id = "sku-11";
    q.k = 3;
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 3 && strcmp(cirrus_result_id(r, 0), "sku-11") == 0);
    cirrus_result_free(&r);
}

static void test_text_and_image(cirrus *c, const unsigned char *png, size_t png_len)
{
    cirrus_query q = cirrus_query_default();
    cirrus_result *r = NULL;

    q.text = "a red dress";
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 10 && !cirrus_result_partial(r));
    CR_CHECK(cirrus_result_server_us(r) > 0);
    cirrus_result_free(&r);

    q = cirrus_query_default();
    q.image = png;
    q.image_len = png_len;
    q.k = 4;
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 4);
    cirrus_result_free(&r);
}

/* ids of a result as one string, for comparisons */
static void ids_of(const cirrus_result *r, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < cirrus_result_count(r) && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s ", cirrus_result_id(r, i));
}

/* The composed embedding the encoder gives for (reference vector, caption, method), through the
 * escape hatch: a raw Compose request passed through the coordinator. */
static int compose_raw(cirrus *c, const float *ref, int dim, const char *caption,
                       cirrus_method m, float *out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ComposeRequest cr = CIRRUS__V1__COMPOSE_REQUEST__INIT;
    Cirrus__V1__Composed comp = CIRRUS__V1__COMPOSED__INIT, *pc = &comp;
    Cirrus__V1__Reference rf;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__Response *resp = NULL;
    int ok;
    cirrus__v1__reference__init(&rf);
    v.values = (float *)ref;
    v.n_values = (size_t)dim;
    rf.ref_case = CIRRUS__V1__REFERENCE__REF_VECTOR;
    rf.vector = &v;
    comp.reference = &rf;
    comp.caption = (char *)caption;
    comp.method = (Cirrus__V1__ComposeMethod)m;
    cr.queries = &pc;
    cr.n_queries = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
    req.compose = &cr;
    ok = cirrus_call(c, &req, &resp) == CIRRUS_OK && resp->compose->n_vectors == 1 &&
         resp->compose->vectors[0]->n_values == (size_t)dim;
    if (ok)
        memcpy(out, resp->compose->vectors[0]->values, (size_t)dim * sizeof *out);
    cirrus_response_free(resp);
    return ok;
}

static void test_composed(cirrus *c, int dim, const unsigned char *png, size_t png_len)
{
    static const cirrus_method methods[] = {CIRRUS_METHOD_SEARLE, CIRRUS_METHOD_COMBINER,
                                            CIRRUS_METHOD_SUM, CIRRUS_METHOD_TEXT,
                                            CIRRUS_METHOD_IMAGE, CIRRUS_METHOD_DEFAULT};
    float *composed = malloc((size_t)dim * sizeof *composed);
    char got[1024], want[1024];

    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        cirrus_query q = cirrus_query_default();
        cirrus_result *r = NULL, *e = NULL;
        q.caption = "is red and striped";
        q.ref_item_id = "sku-17";
        q.method = methods[m];
        q.exact = 1;
        CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "method %d: %s", (int)methods[m],
                     cirrus_errmsg(c));
        CR_CHECK(cirrus_result_count(r) == 10);
        /* the same as a vector search for the composed vector of sku-17's stored vector */
        if (methods[m] != CIRRUS_METHOD_DEFAULT &&
            compose_raw(c, item_vector(17, dim), dim, q.caption, methods[m], composed)) {
            cirrus_query v = cirrus_query_default();
            v.vector = composed;
            v.dim = (size_t)dim;
            v.exact = 1;
            CR_CHECK(cirrus_search(c, &v, &e) == CIRRUS_OK);
            ids_of(r, got, sizeof got);
            ids_of(e, want, sizeof want);
            CR_CHECK_MSG(strcmp(got, want) == 0, "method %d: [%s] vs [%s]", (int)methods[m],
                         got, want);
        } else if (methods[m] != CIRRUS_METHOD_DEFAULT) {
            CR_CHECK_MSG(0, "compose through the escape hatch: %s", cirrus_errmsg(c));
        }
        cirrus_result_free(&r);
        cirrus_result_free(&e);
    }

    /* a composed query from a reference vector, from image bytes, and with an empty caption */
    {
        cirrus_query q = cirrus_query_default();
        cirrus_result *r = NULL;
        q.ref_vector = item_vector(3, dim);
        q.ref_dim = (size_t)dim;
        q.caption = "in blue";
        q.method = CIRRUS_METHOD_SUM;
        CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
        CR_CHECK(cirrus_result_count(r) == 10);
        cirrus_result_free(&r);

        q = cirrus_query_default();
        q.ref_image = png;
        q.ref_image_len = png_len;
        q.caption = "in blue";
        q.method = CIRRUS_METHOD_COMBINER;
        CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
        CR_CHECK(cirrus_result_count(r) == 10);
        cirrus_result_free(&r);

        q = cirrus_query_default();
        q.ref_item_id = "sku-2"; /* no caption: "the same as this" */
        q.method = CIRRUS_METHOD_IMAGE;
        q.exact = 1;
        CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
        CR_CHECK(cirrus_result_count(r) == 10 && strcmp(cirrus_result_id(r, 0), "sku-2") == 0);
        cirrus_result_free(&r);
    }
    free(composed);
}

static void test_filter_group(cirrus *c, int dim)
{
    cirrus_query q = cirrus_query_default();
    cirrus_result *r = NULL;
    int ok = 1;

    q.vector = item_vector(40, dim);
    q.dim = (size_t)dim;
    q.k = 20;
    q.filter = "price < 50 and color in (\"red\", \"green\")";
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    /* price = 10 + 2i < 50: i < 20, and i % 3 != 1: 13 items */
    CR_CHECK_MSG(cirrus_result_count(r) == 13, "%zu hits", cirrus_result_count(r));
    for (size_t i = 0; i < cirrus_result_count(r); i++) {
        cirrus_attr price, color;
        ok &= cirrus_result_attr_find(r, i, "price", &price) == CIRRUS_OK && price.d < 50;
        ok &= cirrus_result_attr_find(r, i, "color", &color) == CIRRUS_OK &&
              strcmp(color.s, "blue") != 0;
    }
    CR_CHECK(ok);
    cirrus_result_free(&r);

    /* a composed query with a filter */
    q = cirrus_query_default();
    q.ref_item_id = "sku-17";
    q.caption = "is red";
    q.method = CIRRUS_METHOD_SEARLE;
    q.filter = "color = \"red\"";
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 10);
    ok = 1;
    for (size_t i = 0; i < cirrus_result_count(r); i++) {
        cirrus_attr color;
        ok &= cirrus_result_attr_find(r, i, "color", &color) == CIRRUS_OK &&
              strcmp(color.s, "red") == 0;
    }
    CR_CHECK(ok);
    cirrus_result_free(&r);

    /* group_by: one hit per product (3 items each), 20 products */
    q = cirrus_query_default();
    q.text = "a red dress";
    q.group_by = "product";
    q.k = 15;
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 15);
    ok = 1;
    for (size_t i = 0; i < cirrus_result_count(r); i++)
        for (size_t j = 0; j < i; j++) {
            cirrus_attr a, b;
            ok &= cirrus_result_attr_find(r, i, "product", &a) == CIRRUS_OK &&
                  cirrus_result_attr_find(r, j, "product", &b) == CIRRUS_OK &&
                  strcmp(a.s, b.s) != 0;
        }
    CR_CHECK(ok);
    cirrus_result_free(&r);

    /* group_size 2: at most two per product */
    q.group_size = 2;
    q.k = 10;
    CR_CHECK(cirrus_search(c, &q, &r) == CIRRUS_OK && cirrus_result_count(r) == 10);
    cirrus_result_free(&r);
}

static void test_partial(int dim, void *ctx)
{
    cirrus_options o = cirrus_default_options();
    cirrus *c = NULL;
    cirrus_query q = cirrus_query_default();
    cirrus_result *r = NULL;
    size_t n = 0;
    const uint32_t *g;

    o.zmq_ctx = ctx;
    CR_CHECK(cirrus_open(&c, "inproc://api-coord-partial", &o) == CIRRUS_OK);
    q.vector = item_vector(5, dim);
    q.dim = (size_t)dim;
    CR_CHECK_MSG(cirrus_search(c, &q, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_partial(r) == 1);
    g = cirrus_result_missing_groups(r, &n);
    CR_CHECK(n == 1 && g && g[0] == N_SHARDS);
    CR_CHECK(cirrus_result_count(r) == 10 && strcmp(cirrus_result_id(r, 0), "sku-5") == 0);
    cirrus_result_free(&r);
    cirrus_close(&c);
    CR_CHECK(c == NULL);
}

/* ---- writes ----------------------------------------------------------------------------- */

static void test_writes(cirrus *c, int dim, const unsigned char *png, size_t png_len)
{
    const char *const tags[] = {"summer", "sale"};
    cirrus_attr attrs[] = {cirrus_attr_string("color", "red"), cirrus_attr_int("stock", 7),
                           cirrus_attr_bool("new", 1), cirrus_attr_strings("tags", tags, 2),
                           cirrus_attr_double("price", 12.5)};
    cirrus_item items[2];
    cirrus_item_status st[2];
    const char *ids[] = {"w-1", "w-2", "w-none"};
    cirrus_result *r = NULL;
    cirrus_attr a;
    size_t d = 0;

    memset(items, 0, sizeof items);
    items[0].id = "w-1";
    items[0].vector = item_vector(1000, dim);
    items[0].dim = (size_t)dim;
    items[0].attrs = attrs;
    items[0].n_attrs = 5;
    items[0].image_uri = "https://img.example/w-1.jpg";
    items[1].id = "w-2";
    items[1].image = png; /* embedded by the encoder */
    items[1].image_len = png_len;
    items[1].attrs = attrs;
    items[1].n_attrs = 1;
    CR_CHECK_MSG(cirrus_upsert(c, items, 2, st) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(st[0].code == CIRRUS_OK && st[1].code == CIRRUS_OK && st[0].version > 0);

    CR_CHECK_MSG(cirrus_get(c, ids, 2, 1, &r) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_result_count(r) == 2 && cirrus_result_missing_count(r) == 0);
    for (size_t i = 0; i < cirrus_result_count(r); i++) {
        if (strcmp(cirrus_result_id(r, i), "w-1") != 0)
            continue;
        CR_CHECK(cirrus_result_version(r, i) == st[0].version);
        CR_CHECK(cirrus_result_vector(r, i, &d) && d == (size_t)dim);
        CR_CHECK(cirrus_result_image_uri(r, i) &&
                 strcmp(cirrus_result_image_uri(r, i), "https://img.example/w-1.jpg") == 0);
        CR_CHECK(cirrus_result_attr_find(r, i, "stock", &a) == CIRRUS_OK &&
                 a.type == CIRRUS_ATTR_INT && a.i == 7);
        CR_CHECK(cirrus_result_attr_find(r, i, "new", &a) == CIRRUS_OK &&
                 a.type == CIRRUS_ATTR_BOOL && a.b == 1);
        CR_CHECK(cirrus_result_attr_find(r, i, "tags", &a) == CIRRUS_OK &&
                 a.type == CIRRUS_ATTR_STRINGS && a.n_strings == 2 &&
                 strcmp(a.strings[1], "sale") == 0);
        CR_CHECK(cirrus_result_score(r, i) == 0.0f);
    }
    cirrus_result_free(&r);

    /* replacing w-1 with an older version is stale, per item, and not an error */
    items[0].version = 1;
    CR_CHECK(cirrus_upsert(c, items, 1, st) == CIRRUS_OK && st[0].code == CIRRUS_STALE);
    items[0].version = 0;

    CR_CHECK_MSG(cirrus_delete(c, ids, 1) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(cirrus_delete(c, &ids[2], 1) == CIRRUS_OK); /* an unknown id: not an error */
    CR_CHECK(cirrus_get(c, ids, 3, 0, &r) == CIRRUS_NOTFOUND);
    CR_CHECK(strstr(cirrus_errmsg(c), "not found") != NULL);
    CR_CHECK(cirrus_result_count(r) == 1 && strcmp(cirrus_result_id(r, 0), "w-2") == 0);
    CR_CHECK(cirrus_result_vector(r, 0, &d) == NULL && d == 0);
    CR_CHECK(cirrus_result_missing_count(r) == 2 && cirrus_result_missing_id(r, 2) == NULL);
    cirrus_result_free(&r);
    CR_CHECK(cirrus_get(c, &ids[2], 1, 0, &r) == CIRRUS_NOTFOUND && r &&
             cirrus_result_count(r) == 0);
    cirrus_result_free(&r);
    CR_CHECK(cirrus_delete(c, &ids[1], 1) == CIRRUS_OK);

    /* per-item failures: a wrong dimension fails that item (or the batch), with its id */
    items[0].id = "w-3";
    items[0].dim = (size_t)dim - 1;
    st[0].code = CIRRUS_OK;
    CR_CHECK(cirrus_upsert(c, items, 1, st) == CIRRUS_ERR_INVALID &&
             st[0].code == CIRRUS_ERR_INVALID);
    CR_CHECK_MSG(strstr(cirrus_errmsg(c), "w-3") || strstr(cirrus_errmsg(c), "dim"), "%s",
                 cirrus_errmsg(c));
}

/* ---- errors on the handle --------------------------------------------------------------- */

static void expect_invalid(cirrus *c, const cirrus_query *q, const char *needle)
{
    cirrus_result *r = NULL;
    cirrus_err rc = cirrus_search(c, q, &r);
    CR_CHECK_MSG(rc == CIRRUS_ERR_INVALID && r == NULL && cirrus_errcode(c) == rc &&
                     strstr(cirrus_errmsg(c), needle) != NULL,
                 "rc %d, want '%s' in '%s'", (int)rc, needle, cirrus_errmsg(c));
}

static void test_errors(cirrus *c, int dim, void *ctx)
{
    cirrus_query q = cirrus_query_default();
    float nan_vec[4] = {1, 2, NAN, 4};
    cirrus_item bad;
    cirrus *d = NULL;
    cirrus_options o = cirrus_default_options();
    int ready = 1;

    q.text = "dress";
    q.filter = "price < ";
    expect_invalid(c, &q, "filter");
    q.filter = "color = \"red\" and and";
    expect_invalid(c, &q, "column");
    q.filter = NULL;
    q.k = 0;
    expect_invalid(c, &q, "k must be");
    q.k = 1001;
    expect_invalid(c, &q, "k must be");
    q = cirrus_query_default();
    expect_invalid(c, &q, "exactly one");
    q.text = "dress";
    q.item_id = "sku-1";
    expect_invalid(c, &q, "exactly one");
    q = cirrus_query_default();
    q.item_id = "nope";
    {
        cirrus_result *r = NULL;
        CR_CHECK(cirrus_search(c, &q, &r) < 0 && r == NULL);
        CR_CHECK_MSG(strstr(cirrus_errmsg(c), "nope") && strstr(cirrus_errmsg(c), "not found"),
                     "%s", cirrus_errmsg(c));
    }
    q = cirrus_query_default();
    q.ref_item_id = "nope";
    q.caption = "red";
    expect_invalid(c, &q, "reference item 'nope' not found");
    q = cirrus_query_default();
    q.caption = "red";
    expect_invalid(c, &q, "reference");
    q.ref_item_id = "sku-1";
    q.ref_vector = item_vector(1, dim);
    q.ref_dim = (size_t)dim;
    expect_invalid(c, &q, "exactly one reference");
    q = cirrus_query_default();
    q.vector = nan_vec;
    q.dim = 4;
    expect_invalid(c, &q, "NaN");
    q.vector = item_vector(1, dim);
    q.dim = 0;
    expect_invalid(c, &q, "dim");
    q.dim = 3; /* the catalog's dimension is not 3: the server says so */
    expect_invalid(c, &q, "dim");
    q = cirrus_query_default();
    q.item_id = "";
    expect_invalid(c, &q, "item_id");

    /* success clears the message */
    q = cirrus_query_default();
    q.item_id = "sku-1";
    {
        cirrus_result *r = NULL;
        CR_CHECK(cirrus_search(c, &q, &r) == CIRRUS_OK && cirrus_errmsg(c)[0] == '\0' &&
                 cirrus_errcode(c) == CIRRUS_OK);
        cirrus_result_free(&r);
    }

    memset(&bad, 0, sizeof bad);
    bad.id = "";
    bad.vector = item_vector(1, dim);
    bad.dim = (size_t)dim;
    CR_CHECK(cirrus_upsert(c, &bad, 1, NULL) == CIRRUS_ERR_INVALID &&
             strstr(cirrus_errmsg(c), "id"));
    bad.id = "x";
    bad.vector = NULL;
    CR_CHECK(cirrus_upsert(c, &bad, 1, NULL) == CIRRUS_ERR_INVALID &&
             strstr(cirrus_errmsg(c), "neither"));
    CR_CHECK(cirrus_upsert(c, &bad, 0, NULL) == CIRRUS_ERR_INVALID);
    CR_CHECK(cirrus_delete(c, NULL, 1) == CIRRUS_ERR_INVALID);

    /* open errors go to the thread's message */
    CR_CHECK(cirrus_open(&d, NULL, NULL) == CIRRUS_ERR_INVALID && d == NULL &&
             cirrus_errmsg(NULL)[0]);
    CR_CHECK(cirrus_open(&d, "bogus://x", NULL) == CIRRUS_ERR_NET && d == NULL);
    CR_CHECK(strcmp(cirrus_strerror(CIRRUS_ERR_INVALID), "invalid argument") == 0);

    /* a timeout: nobody serves this endpoint */
    o.zmq_ctx = ctx;
    o.timeout_ms = 200;
    CR_CHECK(cirrus_open(&d, "inproc://api-nobody-here", &o) == CIRRUS_OK);
    CR_CHECK(cirrus_health(d, &ready) == CIRRUS_TIMEOUT && cirrus_errcode(d) == CIRRUS_TIMEOUT);
    CR_CHECK(strstr(cirrus_errmsg(d), "no reply") != NULL);
    cirrus_close(&d);
    cirrus_close(&d); /* NULL-safe */
}

/* ---- the escape hatch ------------------------------------------------------------------- */

static void test_escape_hatch(cirrus *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT, h[3];
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__HealthRequest hr = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    uint64_t ids[3];
    int seen = 0;

    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    CR_CHECK_MSG(cirrus_call(c, &req, &resp) == CIRRUS_OK, "%s", cirrus_errmsg(c));
    CR_CHECK(resp && resp->stats && resp->stats->count == N_ITEMS);
    cirrus_response_free(resp);

    /* pipelining: three requests in flight, replies matched by id */
    for (int i = 0; i < 3; i++) {
        cirrus__v1__request__init(&h[i]);
        h[i].op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
        h[i].health = &hr;
        CR_CHECK(cirrus_send(c, &h[i], &ids[i]) == CIRRUS_OK);
    }
    for (int i = 0; i < 3; i++) {
        resp = NULL;
        CR_CHECK(cirrus_recv(c, 2000, &resp) == CIRRUS_OK);
        for (int j = 0; resp && j < 3; j++)
            seen |= resp->id == ids[j] ? 1 << j : 0;
        cirrus_response_free(resp);
    }
    CR_CHECK(seen == 7);
    CR_CHECK(cirrus_recv(c, 50, &resp) == CIRRUS_TIMEOUT && resp == NULL);

    /* a pipelined request's reply that comes while a call waits for its own is kept for
     * cirrus_recv, not dropped */
    CR_CHECK(cirrus_send(c, &h[0], &ids[0]) == CIRRUS_OK);
    resp = NULL;
    CR_CHECK(cirrus_call(c, &req, &resp) == CIRRUS_OK && resp && resp->stats);
    cirrus_response_free(resp);
    resp = NULL;
    CR_CHECK(cirrus_recv(c, 2000, &resp) == CIRRUS_OK && resp && resp->id == ids[0] &&
             resp->health);
    cirrus_response_free(resp);
}

/* ---- a broken server: replies that must not pass for success --------------------------- */

enum fake_mode { FAKE_OK_NO_RESULT, FAKE_NOTFOUND_NO_RESULT, FAKE_GARBAGE };

typedef struct fake {
    void *ctx;
    atomic_int mode, stop, bound;
    pthread_t tid;
} fake;

static void *fake_main(void *arg)
{
    fake *f = arg;
    void *s = zmq_socket(f->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    atomic_store(&f->bound, zmq_bind(s, "inproc://api-fake") == 0 ? 1 : -1);
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        zmq_msg_t who, body;
        Cirrus__V1__Request *req;
        Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
        Cirrus__V1__Status st = CIRRUS__V1__STATUS__INIT;
        uint8_t buf[256];
        size_t len;
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        zmq_msg_init(&who);
        zmq_msg_init(&body);
        zmq_msg_recv(&who, s, 0);
        zmq_msg_recv(&body, s, 0);
        req = cirrus__v1__request__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
        resp.id = req ? req->id : 0;
        resp.status = &st;
        st.code = atomic_load(&f->mode) == FAKE_NOTFOUND_NO_RESULT ? CR_NOTFOUND : CR_OK;
        st.message = st.code ? "no such thing here" : "";
        len = cirrus__v1__response__pack(&resp, buf);
        if (atomic_load(&f->mode) == FAKE_GARBAGE) {
            memset(buf, 0xff, 16);
            len = 16;
        }
        zmq_send(s, zmq_msg_data(&who), zmq_msg_size(&who), ZMQ_SNDMORE);
        zmq_send(s, buf, len, 0);
        cirrus__v1__request__free_unpacked(req, NULL);
        zmq_msg_close(&who);
        zmq_msg_close(&body);
    }
    zmq_close(s);
    return NULL;
}

static void test_broken_server(void *ctx, int dim)
{
    fake f;
    cirrus_options o = cirrus_default_options();
    cirrus *c = NULL;
    cirrus_query q = cirrus_query_default();
    cirrus_result *r = NULL;
    const char *id = "sku-1";
    int ready = -1;

    memset(&f, 0, sizeof f);
    f.ctx = ctx;
    pthread_create(&f.tid, NULL, fake_main, &f);
    while (!atomic_load(&f.bound))
        sched_yield();
    CR_CHECK(atomic_load(&f.bound) == 1);
    o.zmq_ctx = ctx;
    o.timeout_ms = 2000;
    CR_CHECK(cirrus_open(&c, "inproc://api-fake", &o) == CIRRUS_OK);
    q.vector = item_vector(1, dim);
    q.dim = (size_t)dim;

    /* status ok, but no result: a protocol error, not an empty success */
    atomic_store(&f.mode, FAKE_OK_NO_RESULT);
    CR_CHECK(cirrus_health(c, &ready) == CIRRUS_ERR_PROTO && ready == -1);
    CR_CHECK(cirrus_search(c, &q, &r) == CIRRUS_ERR_PROTO && r == NULL);
    CR_CHECK(strstr(cirrus_errmsg(c), "without its result") != NULL);
    CR_CHECK(cirrus_get(c, &id, 1, 0, &r) == CIRRUS_ERR_PROTO && r == NULL);

    /* a positive status without a result: that outcome, with the server's message */
    atomic_store(&f.mode, FAKE_NOTFOUND_NO_RESULT);
    CR_CHECK(cirrus_search(c, &q, &r) == CIRRUS_NOTFOUND && r == NULL);
    CR_CHECK(strcmp(cirrus_errmsg(c), "no such thing here") == 0);
    CR_CHECK(cirrus_get(c, &id, 1, 0, &r) == CIRRUS_NOTFOUND && r == NULL);
    CR_CHECK(cirrus_delete(c, &id, 1) == CIRRUS_NOTFOUND);

    /* bytes that are no Response */
    atomic_store(&f.mode, FAKE_GARBAGE);
    CR_CHECK(cirrus_search(c, &q, &r) == CIRRUS_ERR_PROTO && r == NULL);
    CR_CHECK(strstr(cirrus_errmsg(c), "malformed") != NULL);

    cirrus_close(&c);
    atomic_store(&f.stop, 1);
    pthread_join(f.tid, NULL);
}

int main(void)
{
    const char *shared;
    char fix[1100], img[1200], dir[] = "/tmp/cirrus-api-XXXXXX", cmd[64];
    unsigned char *png = NULL;
    size_t png_len = 0;
    cirrus *c = NULL;
    cirrus_options o = cirrus_default_options();
    struct stat sb;

    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    shared = cr_test_shared_dir();
    snprintf(fix, sizeof fix, "%s/fixtures/clip-tiny", shared);
    snprintf(img, sizeof img, "%s/images/img0_40x30_rgb.png", fix);
    if (stat(fix, &sb) != 0 || cr_file_read(img, &png, &png_len) != CR_OK) {
        printf("SKIP: fixture model %s not found\n", fix);
        return 77;
    }
    CR_CHECK(mkdtemp(dir) != NULL);
    node_start(&the_node, fix, dir);

    o.zmq_ctx = the_node.ctx;
    o.timeout_ms = 10000;
    CR_CHECK(cirrus_open(&c, "inproc://api-coord", &o) == CIRRUS_OK);
    CR_CHECK(wait_ready(c));
    load_catalog(c, the_node.dim);
    test_vector_and_item(c, the_node.dim);
    test_text_and_image(c, png, png_len);
    test_composed(c, the_node.dim, png, png_len);
    test_filter_group(c, the_node.dim);
    test_partial(the_node.dim, the_node.ctx);
    test_escape_hatch(c);
    test_writes(c, the_node.dim, png, png_len);
    test_errors(c, the_node.dim, the_node.ctx);
    test_broken_server(the_node.ctx, the_node.dim);
    cirrus_close(&c);

    node_stop(&the_node);
    free(png);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    return CR_TEST_END();
}
