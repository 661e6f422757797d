/* coordinator/: cluster map validation, placement stability, and merging (metric order,
 * group_by, offset, duplicates); item versions through a real coordinator and shard
 * (inproc): client versions beyond the clock are refused and change nothing, the clock is
 * seeded from the shard and never wraps. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "client/client.h"
#include "common/log.h"
#include "common/test.h"
#include "coordinator/clustermap.h"
#include "coordinator/coord.h"
#include "coordinator/merge.h"
#include "shard/engine.h"
#include "shard/server.h"

static void test_map(void)
{
    coord_map *m = malloc(sizeof *m);
    const char *good = "{\"bind\":\"tcp://127.0.0.1:7700\",\"groups\":[[\"tcp://a:1\",\"tcp://b:1\"],"
                       "[\"tcp://c:1\"]],\"encoders\":[\"tcp://e:1\"],\"metric\":\"l2\","
                       "\"write_quorum\":1,\"hedge_ms\":20,\"default_method\":\"combiner\"}";
    CR_CHECK(coord_map_parse(good, m) == CR_OK);
    CR_CHECK(m->n_groups == 2 && m->n_replicas[0] == 2 && m->n_replicas[1] == 1);
    CR_CHECK(m->n_encoders == 1 && m->metric_l2 == 1 && m->write_quorum == 1);
    CR_CHECK(m->hedge_ms == 20 && m->default_method == 2);
    CR_CHECK(strcmp(m->replicas[0][1], "tcp://b:1") == 0);
    static const char *const bad[] = {
        "not json", "[]", "{\"groups\":[]}", "{\"groups\":[[]]}", "{\"groups\":[[\"http://x\"]]}",
        "{\"groups\":[[\"tcp://a:1\"]],\"metric\":\"cos\"}",
        "{\"groups\":[[\"tcp://a:1\"]],\"hedge_ms\":0}",
        "{\"groups\":[[\"tcp://a:1\"]],\"typo\":1}",
        "{\"groups\":[[\"tcp://a:1\"]],\"default_method\":\"magic\"}",
        "{\"groups\":[[1]]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CR_CHECK_MSG(coord_map_parse(bad[i], m) == CR_ERR_INVALID, "%s", bad[i]);
        CR_CHECK(strstr(cr_error_message(), "cluster map") != NULL);
    }
    free(m);
}

static void test_placement(void)
{
    /* Growing from 4 to 5 groups moves about 1/5 of the ids, all to the new group; the same
     * id always lands in the same group. */
    int moved = 0, to_new = 0, counts[4] = {0};
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "sku-%d", i);
        uint64_t h = coord_fnv1a64(id, strlen(id));
        int a = coord_jump_hash(h, 4), b = coord_jump_hash(h, 5);
        CR_CHECK(a >= 0 && a < 4);
        counts[a]++;
        if (a != b) {
            moved++;
            to_new += b == 4;
        }
        CR_CHECK(coord_jump_hash(h, 4) == a);
    }
    CR_CHECK_MSG(moved > 1500 && moved < 2500, "moved %d", moved);
    CR_CHECK(moved == to_new);
    for (int g = 0; g < 4; g++)
        CR_CHECK_MSG(counts[g] > 2200 && counts[g] < 2800, "group %d holds %d", g, counts[g]);
}

static void test_placement_vectors(void)
{
    /* Published FNV-1a 64 test vectors; the legacy variant differs, and a map names which. */
    coord_map *m = calloc(1, sizeof *m);
    coord_placement p;
    CR_CHECK(coord_fnv1a64("", 0) == 0xcbf29ce484222325ull);
    CR_CHECK(coord_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
    CR_CHECK(coord_fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
    CR_CHECK(coord_legacy_fnv64("", 0) == 1469598103934665603ull);
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://a:1\"],[\"tcp://b:1\"]]}", m) == CR_OK);
    CR_CHECK(m->placement == COORD_PLACEMENT_LEGACY);
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://a:1\"]],\"placement\":\"fnv1a64-jump\"}",
                             m) == CR_OK);
    CR_CHECK(m->placement == COORD_PLACEMENT_FNV1A64_JUMP);
    CR_CHECK(coord_map_parse("{\"groups\":[[\"tcp://a:1\"]],\"placement\":\"md5\"}", m) ==
             CR_ERR_INVALID);
    CR_CHECK(coord_placement_parse("legacy-fnv-jump", &p) == CR_OK && p == COORD_PLACEMENT_LEGACY);
    /* Routing follows the map's placement: some id must land differently under the two. */
    int differ = 0;
    char id[32];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "p%d", i);
        differ += coord_placement_group(COORD_PLACEMENT_LEGACY, id, 4) !=
                  coord_placement_group(COORD_PLACEMENT_FNV1A64_JUMP, id, 4);
    }
    CR_CHECK(differ > 0);
    free(m);
}

static Cirrus__V1__Hit *hit(const char *id, float score, const char *product)
{
    Cirrus__V1__Hit *h = calloc(1, sizeof *h);
    cirrus__v1__hit__init(h);
    h->id = strdup(id);
    h->score = score;
    if (product) {
        Cirrus__V1__Attribute *a = calloc(1, sizeof *a);
        Cirrus__V1__AttrValue *v = calloc(1, sizeof *v);
        cirrus__v1__attribute__init(a);
        cirrus__v1__attr_value__init(v);
        a->name = strdup("product");
        v->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        v->s = strdup(product);
        a->value = v;
        h->attributes = calloc(1, sizeof *h->attributes);
        h->attributes[0] = a;
        h->n_attributes = 1;
    }
    return h;
}

static void test_merge(void)
{
    Cirrus__V1__SearchResult r1 = CIRRUS__V1__SEARCH_RESULT__INIT,
                             r2 = CIRRUS__V1__SEARCH_RESULT__INIT, out;
    Cirrus__V1__Hit *a[3] = {hit("a", 0.9f, "p1"), hit("b", 0.7f, "p1"), hit("c", 0.5f, "p2")};
    Cirrus__V1__Hit *b[3] = {hit("d", 0.8f, "p3"), hit("e", 0.6f, "p1"), hit("a", 0.9f, "p1")};
    const Cirrus__V1__SearchResult *parts[2] = {&r1, &r2};
    coord_merge_params p = {0, 4, 0, NULL, 0};
    r1.hits = a;
    r1.n_hits = 3;
    r2.hits = b;
    r2.n_hits = 3;

    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 4);
    CR_CHECK(strcmp(out.hits[0]->id, "a") == 0 && strcmp(out.hits[1]->id, "d") == 0);
    CR_CHECK(strcmp(out.hits[2]->id, "b") == 0 && strcmp(out.hits[3]->id, "e") == 0);
    free(out.hits);

    p.offset = 2; /* page 2 */
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 3 && strcmp(out.hits[0]->id, "b") == 0);
    free(out.hits);

    p.offset = 0; /* one hit per product */
    p.group_by = "product";
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 3);
    CR_CHECK(strcmp(out.hits[0]->id, "a") == 0 && strcmp(out.hits[1]->id, "d") == 0 &&
             strcmp(out.hits[2]->id, "c") == 0);
    free(out.hits);

    p.group_size = 2;
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(out.n_hits == 4 && strcmp(out.hits[2]->id, "b") == 0);
    free(out.hits);

    p.group_by = NULL; /* L2: smaller first */
    p.metric_l2 = 1;
    CR_CHECK(coord_merge(parts, 2, &p, &out) == CR_OK);
    CR_CHECK(strcmp(out.hits[0]->id, "c") == 0);
    free(out.hits);

    CR_CHECK(coord_merge_fetch_k(10, 0, NULL, 0) == 10);
    CR_CHECK(coord_merge_fetch_k(10, 5, "product", 1) == 60);
    CR_CHECK(coord_merge_fetch_k(900, 0, "product", 2) == 1000);
    for (int i = 0; i < 3; i++) {
        cirrus__v1__hit__free_unpacked(a[i], NULL);
        cirrus__v1__hit__free_unpacked(b[i], NULL);
    }
}

/* ---- versions through a coordinator and a shard ------------------------------------------ */

typedef struct vnode {
    void *ctx;
    shard_engine *engine;
    shard_server_opts so;
    coord_server_opts co;
    coord_map map;
    volatile sig_atomic_t stop_shard, stop_coord;
    pthread_t shard_tid, coord_tid;
    cirrus_client *shard, *coord;
} vnode;

static void *vshard_main(void *arg)
{
    vnode *n = arg;
    if (shard_server_run(n->engine, &n->so, &n->stop_shard))
        fprintf(stderr, "shard: %s\n", cr_error_message());
    return NULL;
}

static void *vcoord_main(void *arg)
{
    vnode *n = arg;
    if (coord_server_run(&n->co, &n->stop_coord))
        fprintf(stderr, "coordinator: %s\n", cr_error_message());
    return NULL;
}

static Cirrus__V1__Response *vcall(cirrus_client *c, Cirrus__V1__Request *req)
{
    Cirrus__V1__Response *resp = NULL;
    req->deadline_ms = 0;
    CR_CHECK(cirrus_client_call(c, req, 5000, &resp) == CR_OK);
    return resp;
}

/* Waits (bounded) until `c` answers Health. */
static int vwait(cirrus_client *c)
{
    for (int i = 0; i < 200; i++) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
        Cirrus__V1__Response *resp = NULL;
        req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
        req.health = &h;
        if (cirrus_client_call(c, &req, 100, &resp) == CR_OK) {
            cirrus_response_free(resp);
            return 1;
        }
    }
    return 0;
}

static void vcoord_start(vnode *n, int k)
{
    cirrus_client_opts o = cirrus_client_default_opts();
    snprintf(n->map.bind, sizeof n->map.bind, "inproc://test-versions-coord-%d", k);
    n->co = coord_server_default_opts();
    n->co.map = &n->map;
    n->co.zmq_ctx = n->ctx;
    n->co.workers = 2;
    n->stop_coord = 0;
    pthread_create(&n->coord_tid, NULL, vcoord_main, n);
    o.zmq_ctx = n->ctx;
    CR_CHECK(cirrus_client_open(&n->coord, n->map.bind, &o) == CR_OK);
    CR_CHECK(vwait(n->coord));
}

static void vcoord_stop(vnode *n)
{
    cirrus_client_close(&n->coord);
    n->stop_coord = 1;
    pthread_join(n->coord_tid, NULL);
}

/* Upserts items ids[0..n) (vector e_i, version versions[i]) through `c`; returns the request
 * status code, the first item's code in *item_code and its version in *version. */
static int vupsert(cirrus_client *c, const char *const *ids, const uint64_t *versions, size_t n,
                   int *item_code, uint64_t *version, char *msg, size_t msglen)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item it[4], *items[4];
    Cirrus__V1__Vector vec[4];
    float v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    Cirrus__V1__Response *resp;
    int code;
    for (size_t i = 0; i < n && i < 4; i++) {
        cirrus__v1__item__init(&it[i]);
        cirrus__v1__vector__init(&vec[i]);
        vec[i].values = v[i];
        vec[i].n_values = 4;
        it[i].id = (char *)ids[i];
        it[i].vector = &vec[i];
        it[i].version = versions[i];
        items[i] = &it[i];
    }
    up.items = items;
    up.n_items = n;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    if (!(resp = vcall(c, &req)))
        return -100;
    code = resp->status->code;
    snprintf(msg, msglen, "%s", resp->status->message);
    *item_code = resp->upsert && resp->upsert->n_items ? resp->upsert->items[0]->status->code
                                                       : -100;
    *version = resp->upsert && resp->upsert->n_items ? resp->upsert->items[0]->version : 0;
    if (resp->upsert && resp->upsert->n_items)
        snprintf(msg, msglen, "%s", resp->upsert->items[0]->status->message);
    cirrus_response_free(resp);
    return code;
}

static int vdelete(cirrus_client *c, const char *id, uint64_t version, char *msg, size_t msglen)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    Cirrus__V1__DeleteItem it = CIRRUS__V1__DELETE_ITEM__INIT, *items[1] = {&it};
    Cirrus__V1__Response *resp;
    int code;
    it.id = (char *)id;
    it.version = version;
    del.items = items;
    del.n_items = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    if (!(resp = vcall(c, &req)))
        return -100;
    code = resp->status->code;
    snprintf(msg, msglen, "%s", resp->status->message);
    if (!code && resp->delete_ && resp->delete_->n_items)
        code = resp->delete_->items[0]->status->code;
    cirrus_response_free(resp);
    return code;
}

/* The version the shard holds for `id` (0 = none). */
static uint64_t vversion(cirrus_client *c, const char *id)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    char *ids[1] = {(char *)id};
    Cirrus__V1__Response *resp;
    uint64_t v = 0;
    get.ids = ids;
    get.n_ids = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    if (!(resp = vcall(c, &req)))
        return 0;
    if (resp->get && resp->get->n_items)
        v = resp->get->items[0]->version;
    cirrus_response_free(resp);
    return v;
}

static void test_versions(void)
{
    vnode *n = calloc(1, sizeof *n);
    char dir[] = "/tmp/cirrus-test-versions-XXXXXX", cmd[300], msg[300];
    shard_engine_opts eo = shard_engine_default_opts();
    cirrus_client_opts o = cirrus_client_default_opts();
    const char *ab[2] = {"a", "b"}, *one[1];
    uint64_t vs[2], v = 0, va;
    int ic;

    CR_CHECK(n && mkdtemp(dir));
    n->ctx = zmq_ctx_new();
    eo.create = 1;
    eo.dim = 4;
    eo.factory = "Flat";
    CR_CHECK(shard_engine_open(&n->engine, dir, &eo) == CR_OK);
    n->so = shard_server_default_opts();
    n->so.bind = "inproc://test-versions-shard";
    n->so.zmq_ctx = n->ctx;
    pthread_create(&n->shard_tid, NULL, vshard_main, n);
    o.zmq_ctx = n->ctx;
    CR_CHECK(cirrus_client_open(&n->shard, n->so.bind, &o) == CR_OK);
    CR_CHECK(vwait(n->shard));
    n->map.n_groups = 1;
    n->map.n_replicas[0] = 1;
    snprintf(n->map.replicas[0][0], sizeof n->map.replicas[0][0], "%s", n->so.bind);
    n->map.hedge_ms = 30;
    vcoord_start(n, 0);

    /* A batch whose second item carries 2^63: refused as a whole, naming the item; the first
     * item is not written and the clock does not move. */
    vs[0] = 0;
    vs[1] = (uint64_t)1 << 63;
    CR_CHECK(vupsert(n->coord, ab, vs, 2, &ic, &v, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "item 'b'") && strstr(msg, "beyond"), "%s", msg);
    CR_CHECK(vversion(n->shard, "a") == 0);
    one[0] = "a";
    vs[0] = 0;
    CR_CHECK(vupsert(n->coord, one, vs, 1, &ic, &va, msg, sizeof msg) == CR_OK && ic == CR_OK);
    CR_CHECK_MSG(va < (uint64_t)1 << 62, "a got %llu", (unsigned long long)va);
    /* Deletes too: 2^64-1 refused, a stays. */
    CR_CHECK(vdelete(n->coord, "a", UINT64_MAX, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "item 'a'"), "%s", msg);
    CR_CHECK(vversion(n->shard, "a") == va);
    /* A version a little ahead (client clock skew) is fine. */
    vs[0] = va + ((uint64_t)1000 << 16);
    CR_CHECK(vupsert(n->coord, one, vs, 1, &ic, &v, msg, sizeof msg) == CR_OK && ic == CR_OK);
    CR_CHECK(v == vs[0] && vversion(n->shard, "a") == vs[0]);

    /* The shard holds 2^64-2 on "c" (written to it directly); a restarted coordinator is
     * seeded with it: the next write gets 2^64-1, the one after is refused, never wrapped. */
    vcoord_stop(n);
    one[0] = "c";
    vs[0] = UINT64_MAX - 1;
    CR_CHECK(vupsert(n->shard, one, vs, 1, &ic, &v, msg, sizeof msg) == CR_OK && ic == CR_OK);
    vcoord_start(n, 1);
    vs[0] = 0;
    CR_CHECK(vupsert(n->coord, one, vs, 1, &ic, &v, msg, sizeof msg) == CR_OK);
    CR_CHECK_MSG(ic == CR_OK && v == UINT64_MAX, "code %d version %llu: %s", ic,
                 (unsigned long long)v, msg);
    CR_CHECK(vversion(n->shard, "c") == UINT64_MAX);
    one[0] = "a";
    CR_CHECK(vupsert(n->coord, one, vs, 1, &ic, &v, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK_MSG(strstr(msg, "no version left"), "%s", msg);
    CR_CHECK(vdelete(n->coord, "a", 0, msg, sizeof msg) == CR_ERR_INVALID);
    CR_CHECK(vversion(n->shard, "a") == va + ((uint64_t)1000 << 16));

    vcoord_stop(n);
    cirrus_client_close(&n->shard);
    n->stop_shard = 1;
    pthread_join(n->shard_tid, NULL);
    shard_engine_close(&n->engine);
    zmq_ctx_term(n->ctx);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    free(n);
}

int main(void)
{
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_WARN);
    test_map();
    test_placement();
    test_placement_vectors();
    test_merge();
    test_versions();
    return CR_TEST_END();
}
