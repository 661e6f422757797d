/* The coordinator's event loop over REAL in-process shards (shard_server on inproc://) and
 * small stub backends (bare ROUTERs through common/sock.h) that misbehave on purpose: writes
 * and searches through the loop, deadlines that pass (TIMEOUT, and partial answers when every
 * replica of a group is silent, hedge included), hedging to a second replica when the first is
 * silent or slow (the slow one's late answers are dropped), retry on another replica when one
 * fails and a prompt answer when all fail, partial answers naming a group that is down, and
 * a write refused by a replica's store (a full disk) answered with its code and message, and
 * the pending table (direct index by call id, past 10^6 calls, stale ids rejected, nothing
 * left behind by hedged twins, retries or late answers). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/test.h"
#include "common/wire.h"
#include "coordinator/coord.h"
#include "coordinator/pending.h"
#include "coordinator/timer.h"
#include "shard/engine.h"
#include "shard/server.h"

#define DIM 8
#define N_ITEMS 40

static void *zctx;

/* ---- the pending table and the timers, alone ------------------------------------------------- */

static void test_pending_table(void)
{
    enum { IN_FLIGHT = 64, CALLS = 1200000 };
    coord_pending *t = NULL;
    coord_pending_entry e = {NULL, 0, 0};
    uint64_t ids[IN_FLIGHT], first_ids[IN_FLIGHT], stale = 0, probes0;
    coord_pending_stats st;
    int bad = 0;

    CR_CHECK(coord_pending_new(&t, 1u << 20) == CR_OK);
    CR_CHECK(coord_pending_find(t, 0) == NULL); /* id 0 is never issued */
    for (int i = 0; i < IN_FLIGHT; i++) {
        e.sub = i;
        CR_CHECK(coord_pending_add(t, &e, &ids[i]) == CR_OK);
        first_ids[i] = ids[i];
    }
    /* A sliding window of IN_FLIGHT calls: each answered call is replaced by a new one. */
    probes0 = coord_pending_get_stats(t).probes;
    for (int n = 0; n < CALLS; n++) {
        int i = n % IN_FLIGHT;
        coord_pending_entry *p = coord_pending_find(t, ids[i]);
        bad += !p || p->sub != n;
        bad += coord_pending_del(t, ids[i]) != 1;
        bad += coord_pending_find(t, ids[i]) != NULL; /* a late reply after the free */
        bad += coord_pending_del(t, ids[i]) != 0;
        e.sub = n + IN_FLIGHT;
        bad += coord_pending_add(t, &e, &ids[i]) != CR_OK;
    }
    CR_CHECK_MSG(bad == 0, "%d wrong answers", bad);
    /* O(1): each find, del and add read exactly one slot (5 per round), however many calls
     * came before. */
    CR_CHECK(coord_pending_get_stats(t).probes - probes0 == 5ull * CALLS);
    for (int i = 0; i < IN_FLIGHT; i++) /* ids of the first generation never match again */
        stale += coord_pending_find(t, first_ids[i]) != NULL;
    CR_CHECK(stale == 0);
    CR_CHECK(coord_pending_find(t, ((uint64_t)7 << 32) | 999999) == NULL); /* past the end */
    st = coord_pending_get_stats(t);
    CR_CHECK(st.in_use == IN_FLIGHT);
    CR_CHECK_MSG(st.slots <= 256, "%zu slots after %d calls", st.slots, CALLS);
    {
        uint64_t before = st.probes;
        for (int k = 0; k < 100000; k++)
            (void)coord_pending_find(t, first_ids[k % IN_FLIGHT]); /* misses */
        st = coord_pending_get_stats(t);
        CR_CHECK_MSG(st.probes - before == 100000, "%llu probes for 100000 misses",
                     (unsigned long long)(st.probes - before));
    }
    /* A full table says so; freeing a slot makes room again. */
    coord_pending_free(&t);
    CR_CHECK(t == NULL);
    CR_CHECK(coord_pending_new(&t, 3) == CR_OK);
    for (int i = 0; i < 3; i++)
        CR_CHECK(coord_pending_add(t, &e, &ids[i]) == CR_OK);
    CR_CHECK(coord_pending_add(t, &e, &ids[3]) == CR_ERR_OVERLOADED);
    CR_CHECK(coord_pending_del(t, ids[1]) == 1);
    CR_CHECK(coord_pending_add(t, &e, &ids[3]) == CR_OK);
    CR_CHECK(ids[3] != ids[1] && (uint32_t)ids[3] == (uint32_t)ids[1]); /* same slot, new id */
    coord_pending_free(&t);
}

static int fired[8], fire_order[8], n_fired;

static void on_fire(void *owner)
{
    int i = (int)(intptr_t)owner;
    fired[i]++;
    fire_order[n_fired++] = i;
}

static void test_timers(void)
{
    coord_timers h;
    coord_timer t[8];
    static const uint64_t at[8] = {50, 10, 40, 30, 20, 70, 60, 80};
    coord_timers_init(&h);
    for (int i = 0; i < 8; i++) {
        coord_timer_init(&t[i], on_fire, (void *)(intptr_t)i);
        CR_CHECK(coord_timers_arm(&h, &t[i], at[i]) == CR_OK);
    }
    coord_timers_cancel(&h, &t[2]);          /* 40 */
    CR_CHECK(coord_timers_arm(&h, &t[7], 5) == CR_OK); /* moved earlier */
    CR_CHECK(coord_timers_next(&h) == 5);
    CR_CHECK(coord_timers_run(&h, 35) == 4); /* 5, 10, 20, 30 */
    CR_CHECK(fire_order[0] == 7 && fire_order[1] == 1 && fire_order[2] == 4 &&
             fire_order[3] == 3);
    CR_CHECK(coord_timers_run(&h, 1000) == 3); /* 50, 60, 70 */
    CR_CHECK(fired[2] == 0 && fired[0] == 1 && fired[5] == 1 && fired[6] == 1);
    CR_CHECK(coord_timers_next(&h) == UINT64_MAX);
    coord_timers_free(&h);
}

/* ---- real shards ------------------------------------------------------------------------------ */

typedef struct shard {
    char dir[64], ep[64];
    shard_engine *engine;
    shard_server_opts o;
    volatile sig_atomic_t stop;
    pthread_t tid;
} shard;

static void *shard_main(void *arg)
{
    shard *s = arg;
    if (shard_server_run(s->engine, &s->o, &s->stop))
        fprintf(stderr, "shard: %s\n", cr_error_message());
    return NULL;
}

static void shard_start(shard *s)
{
    shard_engine_opts eo = shard_engine_default_opts();
    snprintf(s->dir, sizeof s->dir, "/tmp/cirrus-test-loop-XXXXXX");
    CR_CHECK(mkdtemp(s->dir) != NULL);
    eo.create = 1;
    eo.dim = DIM;
    eo.factory = "Flat";
    CR_CHECK(shard_engine_open(&s->engine, s->dir, &eo) == CR_OK);
    cr_wire_inproc_name(s->ep, sizeof s->ep, "loop-shard");
    s->o = shard_server_default_opts();
    s->o.bind = s->ep;
    s->o.zmq_ctx = zctx;
    s->o.spin_us = 0;
    s->o.workers = 1;
    s->stop = 0;
    CR_CHECK(pthread_create(&s->tid, NULL, shard_main, s) == 0);
}

static void shard_stop(shard *s)
{
    char cmd[128];
    s->stop = 1;
    pthread_join(s->tid, NULL);
    shard_engine_close(&s->engine);
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    CR_CHECK(system(cmd) == 0);
}

/* ---- stub backends that misbehave -------------------------------------------------------------- */

typedef enum stub_mode {
    STUB_SILENT,     /* never answers a search or a get (a paused or stuck replica) */
    STUB_OVERLOADED, /* answers every search and get with OVERLOADED at once */
    STUB_DEAD,       /* answers nothing at all */
    STUB_SLOW,       /* answers every search SLOW_MS late, with the hit SLOW_HIT */
    STUB_DISK_FULL   /* answers every upsert and delete with STORE_FULL_MSG (a full disk) */
} stub_mode;

#define STORE_FULL_MSG "store: write batch: no space left on device (stub: 0 KiB free)"

#define SLOW_MS 300
#define SLOW_HIT "slow-answer"
#define MAX_HELD 64

typedef struct held_call { /* a search a STUB_SLOW holds until due_ms */
    cr_wire_msg route;
    uint64_t id, due_ms;
} held_call;

typedef struct stub {
    char ep[64];
    stub_mode mode;
    void *sock;
    atomic_int stop, calls; /* calls: searches and gets received */
    atomic_int late;        /* STUB_SLOW: late answers sent */
    held_call held[MAX_HELD];
    int n_held;
    pthread_t tid;
} stub;

/* What an empty replica answers to the coordinator's housekeeping: Health, Stats, and the
 * replica repair's scans (an empty page) and copy writes (every item stored), so that the
 * coordinator can prove it current and send it reads. */
static int stub_housekeeping(stub *s, cr_wire_msg *m, const Cirrus__V1__Request *req)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    Cirrus__V1__StatsResult st = CIRRUS__V1__STATS_RESULT__INIT;
    Cirrus__V1__ScanResult sc = CIRRUS__V1__SCAN_RESULT__INIT;
    Cirrus__V1__WriteResult wr = CIRRUS__V1__WRITE_RESULT__INIT;
    Cirrus__V1__ItemStatus is[64], *isp[64];
    Cirrus__V1__Status ok = CIRRUS__V1__STATUS__INIT;
    size_t n = 0;
    switch (req->op_case) {
    case CIRRUS__V1__REQUEST__OP_HEALTH:
        h.ready = 1;
        h.role = "stub";
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
        resp.health = &h;
        break;
    case CIRRUS__V1__REQUEST__OP_STATS:
        st.role = "stub";
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_STATS;
        resp.stats = &st;
        break;
    case CIRRUS__V1__REQUEST__OP_SCAN:
        sc.done = 1;
        sc.next_cursor = "";
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SCAN;
        resp.scan = &sc;
        break;
    case CIRRUS__V1__REQUEST__OP_UPSERT:
    case CIRRUS__V1__REQUEST__OP_DELETE:
        n = req->upsert ? req->upsert->n_items : req->delete_ ? req->delete_->n_items : 0;
        if (n > 64)
            n = 64;
        for (size_t i = 0; i < n; i++) {
            cirrus__v1__item_status__init(&is[i]);
            is[i].id = req->upsert ? req->upsert->items[i]->id : req->delete_->items[i]->id;
            is[i].version = req->upsert ? req->upsert->items[i]->version
                                        : req->delete_->items[i]->version;
            is[i].status = &ok;
            isp[i] = &is[i];
        }
        wr.items = isp;
        wr.n_items = n;
        resp.result_case = req->upsert ? CIRRUS__V1__RESPONSE__RESULT_UPSERT
                                       : CIRRUS__V1__RESPONSE__RESULT_DELETE;
        resp.upsert = req->upsert ? &wr : NULL;
        resp.delete_ = req->upsert ? NULL : &wr;
        break;
    default:
        return 0;
    }
    ok.message = "";
    cr_wire_reply_ok(s->sock, m, req->id, &resp);
    return 1;
}

static void stub_answer(stub *s, cr_wire_msg *m, const Cirrus__V1__Request *req)
{
    if (s->mode == STUB_DISK_FULL && (req->op_case == CIRRUS__V1__REQUEST__OP_UPSERT ||
                                      req->op_case == CIRRUS__V1__REQUEST__OP_DELETE)) {
        cr_wire_reply_error(s->sock, m, req->id, CR_ERR_STORE, STORE_FULL_MSG);
        return;
    }
    if (s->mode == STUB_DEAD || stub_housekeeping(s, m, req))
        return;
    atomic_fetch_add(&s->calls, 1);
    if (s->mode == STUB_OVERLOADED)
        cr_wire_reply_error(s->sock, m, req->id, CR_ERR_OVERLOADED, "stub: overloaded");
    if (s->mode == STUB_SLOW && req->op_case == CIRRUS__V1__REQUEST__OP_SEARCH &&
        s->n_held < MAX_HELD) {
        held_call *h = &s->held[s->n_held++];
        cr_wire_msg_take_route(&h->route, m);
        h->id = req->id;
        h->due_ms = cr_clock_mono_ms() + SLOW_MS;
    }
}

/* STUB_SLOW: answers the held searches that are due (they come in order), each with one hit
 * the real shards do not hold. */
static void stub_answer_late(stub *s)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchResult sr = CIRRUS__V1__SEARCH_RESULT__INIT;
    Cirrus__V1__Hit hit = CIRRUS__V1__HIT__INIT, *hits[1] = {&hit};
    int n = 0;
    hit.id = SLOW_HIT;
    hit.score = 1e9f;
    sr.hits = hits;
    sr.n_hits = 1;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
    resp.search = &sr;
    while (n < s->n_held && s->held[n].due_ms <= cr_clock_mono_ms()) {
        if (cr_wire_reply_ok(s->sock, &s->held[n].route, s->held[n].id, &resp) == CR_OK)
            atomic_fetch_add(&s->late, 1);
        cr_wire_msg_close(&s->held[n].route);
        n++;
    }
    memmove(s->held, s->held + n, (size_t)(s->n_held - n) * sizeof s->held[0]);
    s->n_held -= n;
}

static void *stub_main(void *arg)
{
    stub *s = arg;
    cr_wire_limits lim = cr_wire_default_limits();
    cr_wire_msg m;
    lim.heartbeat_ivl_ms = 0;
    cr_wire_msg_init(&m);
    while (!atomic_load(&s->stop)) {
        cr_pb_bounded alloc;
        Cirrus__V1__Request *req = NULL;
        int readable = cr_sock_wait_readable(s->sock, s->n_held ? 2 : 20);
        stub_answer_late(s);
        if (readable <= 0 || cr_wire_recv(s->sock, &m, &lim, CR_SOCK_DONTWAIT))
            continue;
        cr_pb_bounded_init(&alloc, 1u << 20);
        if (cr_wire_unpack_request(&m, &alloc, &req) == CR_OK) {
            stub_answer(s, &m, req);
            cirrus__v1__request__free_unpacked(req, &alloc.base);
        }
    }
    for (int i = 0; i < s->n_held; i++)
        cr_wire_msg_close(&s->held[i].route);
    cr_wire_msg_close(&m);
    cr_sock_close(&s->sock);
    return NULL;
}

static void stub_start(stub *s, stub_mode mode)
{
    cr_wire_limits lim = cr_wire_default_limits();
    lim.heartbeat_ivl_ms = 0;
    memset(s, 0, sizeof *s);
    s->mode = mode;
    cr_wire_inproc_name(s->ep, sizeof s->ep, "loop-stub");
    CR_CHECK(cr_sock_open(zctx, CR_SOCK_ROUTER, &lim, &s->sock) == CR_OK);
    CR_CHECK(cr_sock_bind(s->sock, s->ep) == CR_OK); /* bound before a coordinator connects */
    CR_CHECK(pthread_create(&s->tid, NULL, stub_main, s) == 0);
}

static void stub_stop(stub *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->tid, NULL);
}

/* ---- a coordinator -------------------------------------------------------------------------- */

typedef struct coord {
    coord_map map;
    coord_server *s;
    volatile sig_atomic_t stop;
    pthread_t tid;
    cirrus_client *c;
} coord;

static void *coord_main(void *arg)
{
    coord *k = arg;
    if (coord_server_serve(k->s, &k->stop))
        fprintf(stderr, "coordinator: %s\n", cr_error_message());
    return NULL;
}

/* groups[g] lists the endpoints of group g's replicas, NULL-terminated. */
static void coord_start(coord *k, const char *const *const *groups, int n_groups, int hedge_ms,
                        uint32_t backend_timeout_ms)
{
    coord_server_opts o = coord_server_default_opts();
    cirrus_client_opts co = cirrus_client_default_opts();
    memset(k, 0, sizeof *k);
    cr_wire_inproc_name(k->map.bind, sizeof k->map.bind, "loop-coord");
    k->map.n_groups = n_groups;
    for (int g = 0; g < n_groups; g++)
        for (int r = 0; groups[g][r]; r++) {
            snprintf(k->map.replicas[g][r], COORD_MAX_ENDPOINT, "%s", groups[g][r]);
            k->map.n_replicas[g] = r + 1;
        }
    k->map.hedge_ms = hedge_ms;
    k->map.default_method = 3;
    o.map = &k->map;
    o.zmq_ctx = zctx;
    o.backend_timeout_ms = backend_timeout_ms;
    CR_CHECK(coord_server_open(&k->s, &o) == CR_OK); /* bound when it returns */
    CR_CHECK(pthread_create(&k->tid, NULL, coord_main, k) == 0);
    co.zmq_ctx = zctx;
    CR_CHECK(cirrus_client_open(&k->c, k->map.bind, &co) == CR_OK);
}

static coord_pending_stats coord_stop(coord *k)
{
    coord_pending_stats st;
    cirrus_client_close(&k->c);
    k->stop = 1;
    pthread_join(k->tid, NULL);
    st = coord_server_pending_stats(k->s);
    coord_server_close(&k->s);
    return st;
}

/* ---- requests --------------------------------------------------------------------------------- */

static void vec_of(int i, float *v)
{
    for (int d = 0; d < DIM; d++)
        v[d] = (float)((i * 7 + d * 3) % 11) - 5.0f + (d == i % DIM ? 10.0f : 0.0f);
}

static int upsert(cirrus_client *c, int from, int to)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item it[N_ITEMS], *items[N_ITEMS];
    Cirrus__V1__Vector vec[N_ITEMS];
    float v[N_ITEMS][DIM];
    char id[N_ITEMS][16];
    Cirrus__V1__Response *resp = NULL;
    int ok = 0;
    for (int i = from; i < to; i++) {
        int j = i - from;
        cirrus__v1__item__init(&it[j]);
        cirrus__v1__vector__init(&vec[j]);
        vec_of(i, v[j]);
        vec[j].values = v[j];
        vec[j].n_values = DIM;
        snprintf(id[j], sizeof id[j], "it-%d", i);
        it[j].id = id[j];
        it[j].vector = &vec[j];
        items[j] = &it[j];
    }
    up.items = items;
    up.n_items = (size_t)(to - from);
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    if (cirrus_client_call(c, &req, 5000, &resp) != CR_OK)
        return -1;
    if (resp->status->code == 0 && resp->upsert) {
        ok = 1;
        for (size_t i = 0; i < resp->upsert->n_items; i++)
            ok &= resp->upsert->items[i]->status->code == 0 && resp->upsert->items[i]->version;
    }
    cirrus_response_free(resp);
    return ok ? to - from : 0;
}

/* Searches for item i's vector; the reply (free it) or NULL; *ms is how long it took. */
static Cirrus__V1__Response *search(cirrus_client *c, int i, uint32_t deadline_ms, double *ms)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query q = CIRRUS__V1__QUERY__INIT;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__Response *resp = NULL;
    float vec[DIM];
    uint64_t t0 = cr_clock_mono_us();
    vec_of(i, vec);
    v.values = vec;
    v.n_values = DIM;
    q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    q.vector = &v;
    q.k = 3;
    sr.query = &q;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    req.deadline_ms = deadline_ms;
    if (cirrus_client_call(c, &req, 10000, &resp) != CR_OK)
        resp = NULL;
    if (ms)
        *ms = (double)(cr_clock_mono_us() - t0) / 1000.0;
    return resp;
}

static int top_is(const Cirrus__V1__Response *r, int i)
{
    char id[16];
    snprintf(id, sizeof id, "it-%d", i);
    return r && r->status->code == 0 && r->search && r->search->n_hits > 0 &&
           strcmp(r->search->hits[0]->id, id) == 0;
}

static Cirrus__V1__Response *get(cirrus_client *c, const char *id, uint32_t deadline_ms,
                                 double *ms)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest g = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    char *ids[1] = {(char *)id};
    uint64_t t0 = cr_clock_mono_us();
    g.ids = ids;
    g.n_ids = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &g;
    req.deadline_ms = deadline_ms;
    if (cirrus_client_call(c, &req, 10000, &resp) != CR_OK)
        resp = NULL;
    if (ms)
        *ms = (double)(cr_clock_mono_us() - t0) / 1000.0;
    return resp;
}

static int ready(cirrus_client *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    int r = -1;
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;
    if (cirrus_client_call(c, &req, 2000, &resp) == CR_OK) {
        r = resp->health ? (int)resp->health->ready : -1;
        cirrus_response_free(resp);
    }
    return r;
}

/* Writes items [from, to) straight into a shard (bypassing the coordinator). */
static void seed_shard(const char *ep, int from, int to)
{
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    co.zmq_ctx = zctx;
    CR_CHECK(cirrus_client_open(&c, ep, &co) == CR_OK);
    CR_CHECK(upsert(c, from, to) == to - from);
    cirrus_client_close(&c);
}

/* A two-replica group is read only once repair has proven its replicas current (after the
 * coordinator starts nothing is known of them): searches (with deadline_ms, 0 = the default)
 * until the stub replica is asked too, at most 10 s. */
static void wait_readable(cirrus_client *c, const stub *st, uint32_t deadline_ms)
{
    uint64_t until = cr_clock_mono_ms() + 10000;
    while (atomic_load(&st->calls) == 0 && cr_clock_mono_ms() < until) {
        Cirrus__V1__Response *r = search(c, 0, deadline_ms, NULL);
        if (r)
            cirrus_response_free(r);
        cr_clock_sleep_ms(20);
    }
    CR_CHECK(atomic_load(&st->calls) > 0);
}

/* Both stubs of a two-replica group readable: searches (deadline_ms each) until each has been
 * asked, at most 10 s. Stubs answer Health, so once readable they stay so. */
static void wait_both_readable(cirrus_client *c, const stub *a, const stub *b,
                               uint32_t deadline_ms)
{
    uint64_t until = cr_clock_mono_ms() + 10000;
    while ((atomic_load(&a->calls) == 0 || atomic_load(&b->calls) == 0) &&
           cr_clock_mono_ms() < until) {
        Cirrus__V1__Response *r = search(c, 0, deadline_ms, NULL);
        if (r)
            cirrus_response_free(r);
    }
    CR_CHECK(atomic_load(&a->calls) > 0 && atomic_load(&b->calls) > 0);
}

static int has_hit(const Cirrus__V1__Response *r, const char *id)
{
    for (size_t i = 0; r && r->search && i < r->search->n_hits; i++)
        if (strcmp(r->search->hits[i]->id, id) == 0)
            return 1;
    return 0;
}

/* ---- the loop's behaviours ------------------------------------------------------------------- */

/* Two groups of one real replica: writes are routed and searches merged; many requests
 * leave the pending table as small as the calls in flight. */
static void test_search_and_write(void)
{
    shard a, b;
    coord k;
    const char *g0[] = {a.ep, NULL}, *g1[] = {b.ep, NULL};
    const char *const *groups[] = {g0, g1};
    coord_pending_stats st;
    int wrong = 0;
    shard_start(&a);
    shard_start(&b);
    coord_start(&k, groups, 2, 30, 2000);
    CR_CHECK(upsert(k.c, 0, N_ITEMS) == N_ITEMS);
    for (int i = 0; i < 3000; i++) {
        Cirrus__V1__Response *r = search(k.c, i % N_ITEMS, 0, NULL);
        wrong += !top_is(r, i % N_ITEMS) || r->search->partial;
        if (r)
            cirrus_response_free(r);
    }
    CR_CHECK_MSG(wrong == 0, "%d of 3000 searches wrong", wrong);
    {
        Cirrus__V1__Response *r = get(k.c, "it-7", 0, NULL);
        CR_CHECK(r && r->status->code == 0 && r->get && r->get->n_items == 1);
        if (r)
            cirrus_response_free(r);
    }
    st = coord_stop(&k);
    CR_CHECK_MSG(st.slots <= 256, "%zu slots", st.slots);
    shard_stop(&a);
    shard_stop(&b);
}

/* Replica 0 holds every search (paused); after hedge_ms the loop asks replica 1 too. */
static void test_hedge(void)
{
    shard a;
    stub slow;
    coord k;
    const char *g0[3];
    const char *const *groups[] = {g0};
    int ok = 0;
    double ms, max_ms = 0, min_ms = 1e9;
    shard_start(&a);
    stub_start(&slow, STUB_SILENT);
    g0[0] = slow.ep;
    g0[1] = a.ep;
    g0[2] = NULL;
    seed_shard(a.ep, 0, N_ITEMS);
    coord_start(&k, groups, 1, 40, 3000);
    wait_readable(k.c, &slow, 0);
    atomic_store(&slow.calls, 0);
    for (int i = 0; i < 5; i++) {
        Cirrus__V1__Response *r = search(k.c, i, 0, &ms);
        ok += top_is(r, i) && !r->search->partial;
        if (ms > max_ms)
            max_ms = ms;
        if (ms < min_ms)
            min_ms = ms;
        if (r)
            cirrus_response_free(r);
    }
    CR_CHECK_MSG(ok == 5, "%d of 5 hedged searches answered", ok);
    CR_CHECK(atomic_load(&slow.calls) >= 5); /* the slow replica was asked first each time */
    CR_CHECK_MSG(min_ms >= 35, "a hedged search took %.1f ms (< hedge_ms)", min_ms);
    CR_CHECK_MSG(max_ms < 1500, "a hedged search took %.1f ms", max_ms);
    coord_stop(&k);
    stub_stop(&slow);
    shard_stop(&a);
}

/* Replica 0 answers every search, SLOW_MS late; after hedge_ms the loop asks replica 1 (a real
 * shard), whose answer comes first and is the one the client gets. The slow answers still come
 * and are dropped (the ids of their attempts were freed when the hedge won): no client sees
 * SLOW_HIT, and the pending table keeps nothing of them. */
static void test_hedge_slow(void)
{
    enum { N = 10 };
    shard a;
    stub slow;
    coord k;
    const char *g0[3];
    const char *const *groups[] = {g0};
    coord_pending_stats st;
    int ok = 0, slow_seen = 0, late0;
    double ms, max_ms = 0, min_ms = 1e9;
    uint64_t until;
    shard_start(&a);
    stub_start(&slow, STUB_SLOW);
    g0[0] = slow.ep;
    g0[1] = a.ep;
    g0[2] = NULL;
    seed_shard(a.ep, 0, N_ITEMS);
    coord_start(&k, groups, 1, 40, 3000);
    wait_readable(k.c, &slow, 0);
    atomic_store(&slow.calls, 0);
    late0 = atomic_load(&slow.late);
    for (int i = 0; i < N; i++) {
        Cirrus__V1__Response *r = search(k.c, i, 0, &ms);
        ok += top_is(r, i) && !r->search->partial;
        slow_seen += has_hit(r, SLOW_HIT);
        if (ms > max_ms)
            max_ms = ms;
        if (ms < min_ms)
            min_ms = ms;
        if (r)
            cirrus_response_free(r);
    }
    CR_CHECK_MSG(ok == N, "%d of %d searches answered by the hedge", ok, N);
    CR_CHECK(atomic_load(&slow.calls) >= N); /* the slow replica was asked first each time */
    CR_CHECK_MSG(min_ms >= 35, "a hedged search took %.1f ms (< hedge_ms)", min_ms);
    CR_CHECK_MSG(max_ms < SLOW_MS - 50, "a search took %.1f ms: the slow answer won?", max_ms);
    /* Every late answer reaches the coordinator; later searches still get the right answer. */
    until = cr_clock_mono_ms() + 5000;
    while (atomic_load(&slow.late) - late0 < N && cr_clock_mono_ms() < until)
        cr_clock_sleep_ms(20); /* polling a counter: the answers are due SLOW_MS after asking */
    CR_CHECK_MSG(atomic_load(&slow.late) - late0 >= N, "%d late answers sent",
                 atomic_load(&slow.late) - late0);
    for (int i = 0; i < 5; i++) {
        Cirrus__V1__Response *r = search(k.c, i + N, 0, NULL);
        CR_CHECK(top_is(r, i + N));
        slow_seen += has_hit(r, SLOW_HIT);
        if (r)
            cirrus_response_free(r);
    }
    CR_CHECK_MSG(slow_seen == 0, "%d replies carried the slow replica's late answer", slow_seen);
    st = coord_stop(&k);
    CR_CHECK_MSG(st.in_use <= 2, "%zu calls left in the pending table (pings: at most 2)",
                 st.in_use);
    stub_stop(&slow);
    shard_stop(&a);
}

/* Replica 0 answers OVERLOADED: the loop retries on replica 1 at once (hedge_ms is far). */
static void test_retry(void)
{
    shard a;
    stub busy;
    coord k;
    const char *g0[3];
    const char *const *groups[] = {g0};
    int ok = 0;
    double ms, max_ms = 0;
    shard_start(&a);
    stub_start(&busy, STUB_OVERLOADED);
    g0[0] = busy.ep;
    g0[1] = a.ep;
    g0[2] = NULL;
    seed_shard(a.ep, 0, N_ITEMS);
    coord_start(&k, groups, 1, 2000, 3000);
    wait_readable(k.c, &busy, 0);
    atomic_store(&busy.calls, 0);
    for (int i = 0; i < 5; i++) {
        Cirrus__V1__Response *r = search(k.c, i, 0, &ms);
        ok += top_is(r, i) && !r->search->partial;
        if (ms > max_ms)
            max_ms = ms;
        if (r)
            cirrus_response_free(r);
    }
    CR_CHECK_MSG(ok == 5, "%d of 5 retried searches answered", ok);
    CR_CHECK(atomic_load(&busy.calls) >= 5);
    CR_CHECK_MSG(max_ms < 1000, "a retried search took %.1f ms (waited for a hedge?)", max_ms);
    coord_stop(&k);
    stub_stop(&busy);
    shard_stop(&a);
}

/* The only replica refuses a write with a storage error (its disk is full): each item of the
 * answer carries that code and the replica's message, not "unavailable, retry". */
static void test_write_refused(void)
{
    stub full;
    coord k;
    const char *g0[2];
    const char *const *groups[] = {g0};
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item it = CIRRUS__V1__ITEM__INIT, *items[1] = {&it};
    Cirrus__V1__Vector vec = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__Response *resp = NULL;
    float v[DIM];
    stub_start(&full, STUB_DISK_FULL);
    g0[0] = full.ep;
    g0[1] = NULL;
    coord_start(&k, groups, 1, 2000, 3000);
    vec_of(1, v);
    vec.values = v;
    vec.n_values = DIM;
    it.id = "it-1";
    it.vector = &vec;
    up.items = items;
    up.n_items = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    CR_CHECK(cirrus_client_call(k.c, &req, 5000, &resp) == CR_OK);
    CR_CHECK(resp && resp->upsert && resp->upsert->n_items == 1);
    if (resp && resp->upsert && resp->upsert->n_items == 1) {
        const Cirrus__V1__Status *st = resp->upsert->items[0]->status;
        CR_CHECK_MSG(st->code == CR_ERR_STORE, "code %d: %s", st->code, st->message);
        CR_CHECK_MSG(strstr(st->message, "no space left on device") &&
                         strstr(st->message, "group 0"),
                     "message: %s", st->message);
        CR_CHECK(resp->upsert->items[0]->version == 0);
    }
    cirrus_response_free(resp);
    coord_stop(&k);
    stub_stop(&full);
}

/* Both replicas are OVERLOADED: the loop tries each once and answers at once, not at the
 * deadline: a get with the OVERLOADED status, a search partial, naming the group. */
static void test_retry_exhausted(void)
{
    stub b0, b1;
    coord k;
    const char *g0[3];
    const char *const *groups[] = {g0};
    coord_pending_stats st;
    Cirrus__V1__Response *r;
    double ms;
    int c0, c1;
    stub_start(&b0, STUB_OVERLOADED);
    stub_start(&b1, STUB_OVERLOADED);
    g0[0] = b0.ep;
    g0[1] = b1.ep;
    g0[2] = NULL;
    coord_start(&k, groups, 1, 2000, 3000);
    wait_both_readable(k.c, &b0, &b1, 0);
    c0 = atomic_load(&b0.calls);
    c1 = atomic_load(&b1.calls);
    r = get(k.c, "it-1", 3000, &ms);
    CR_CHECK(r && r->status->code == CR_ERR_OVERLOADED);
    CR_CHECK_MSG(ms < 1000, "OVERLOADED after %.1f ms (waited for the deadline?)", ms);
    CR_CHECK(atomic_load(&b0.calls) == c0 + 1 && atomic_load(&b1.calls) == c1 + 1);
    if (r)
        cirrus_response_free(r);
    r = search(k.c, 1, 3000, &ms);
    CR_CHECK(r && r->status->code == 0 && r->search && r->search->partial &&
             r->search->n_missing_groups == 1 && r->search->missing_groups[0] == 0);
    CR_CHECK_MSG(ms < 1000, "partial after %.1f ms (waited for the deadline?)", ms);
    CR_CHECK(atomic_load(&b0.calls) == c0 + 2 && atomic_load(&b1.calls) == c1 + 2);
    if (r)
        cirrus_response_free(r);
    st = coord_stop(&k);
    CR_CHECK_MSG(st.in_use <= 2, "%zu calls left in the pending table", st.in_use);
    stub_stop(&b0);
    stub_stop(&b1);
}

/* The only replica never answers: a get is answered TIMEOUT when its deadline passes, a
 * search is answered partial, naming the group, at its deadline — never by silence. */
static void test_deadline(void)
{
    stub stuck;
    coord k;
    const char *g0[2];
    const char *const *groups[] = {g0};
    Cirrus__V1__Response *r;
    double ms;
    stub_start(&stuck, STUB_SILENT);
    g0[0] = stuck.ep;
    g0[1] = NULL;
    coord_start(&k, groups, 1, 30, 5000);
    r = get(k.c, "it-1", 300, &ms);
    CR_CHECK(r && r->status->code == CR_TIMEOUT);
    CR_CHECK_MSG(ms >= 250 && ms < 2000, "TIMEOUT after %.1f ms for a 300 ms deadline", ms);
    if (r) {
        CR_CHECK(strstr(r->status->message, "in time") != NULL);
        cirrus_response_free(r);
    }
    r = search(k.c, 1, 300, &ms);
    CR_CHECK(r && r->status->code == 0 && r->search && r->search->partial);
    CR_CHECK(r && r->search && r->search->n_missing_groups == 1 &&
             r->search->missing_groups[0] == 0);
    CR_CHECK_MSG(ms >= 250 && ms < 2000, "partial after %.1f ms for a 300 ms deadline", ms);
    if (r)
        cirrus_response_free(r);
    CR_CHECK(atomic_load(&stuck.calls) >= 2);
    coord_stop(&k);
    stub_stop(&stuck);
}

/* Both replicas of the only group are silent: the loop hedges to the second after hedge_ms,
 * and when the deadline passes the search is answered partial, naming the group, and a get
 * TIMEOUT; each replica was asked once per request, and no attempt stays pending. */
static void test_deadline_hedged(void)
{
    stub s0, s1;
    coord k;
    const char *g0[3];
    const char *const *groups[] = {g0};
    coord_pending_stats st;
    Cirrus__V1__Response *r;
    double ms;
    int c0, c1;
    stub_start(&s0, STUB_SILENT);
    stub_start(&s1, STUB_SILENT);
    g0[0] = s0.ep;
    g0[1] = s1.ep;
    g0[2] = NULL;
    coord_start(&k, groups, 1, 30, 5000);
    wait_both_readable(k.c, &s0, &s1, 200);
    c0 = atomic_load(&s0.calls);
    c1 = atomic_load(&s1.calls);
    r = search(k.c, 1, 300, &ms);
    CR_CHECK(r && r->status->code == 0 && r->search && r->search->partial &&
             r->search->n_missing_groups == 1 && r->search->missing_groups[0] == 0);
    CR_CHECK_MSG(ms >= 250 && ms < 2000, "partial after %.1f ms for a 300 ms deadline", ms);
    CR_CHECK_MSG(atomic_load(&s0.calls) == c0 + 1 && atomic_load(&s1.calls) == c1 + 1,
                 "asked %d and %d times (want once each: first try and hedge)",
                 atomic_load(&s0.calls) - c0, atomic_load(&s1.calls) - c1);
    if (r)
        cirrus_response_free(r);
    r = get(k.c, "it-1", 300, &ms);
    CR_CHECK(r && r->status->code == CR_TIMEOUT);
    CR_CHECK_MSG(ms >= 250 && ms < 2000, "TIMEOUT after %.1f ms for a 300 ms deadline", ms);
    if (r)
        cirrus_response_free(r);
    st = coord_stop(&k);
    CR_CHECK_MSG(st.in_use <= 2, "%zu calls left in the pending table", st.in_use);
    stub_stop(&s0);
    stub_stop(&s1);
}

/* Group 1's only replica is dead (no answers, not even pings): once the heartbeat has marked
 * it down, searches come back at once, partial, naming group 1, with group 0's hits. */
static void test_partial(void)
{
    shard a;
    stub dead;
    coord k;
    const char *g0[2], *g1[2];
    const char *const *groups[] = {g0, g1};
    Cirrus__V1__Response *r;
    uint64_t until;
    double ms;
    int found = 0;
    shard_start(&a);
    stub_start(&dead, STUB_DEAD);
    g0[0] = a.ep;
    g0[1] = NULL;
    g1[0] = dead.ep;
    g1[1] = NULL;
    coord_start(&k, groups, 2, 30, 5000);
    /* The items group 0 owns, written straight into its shard; `found` is one of them. */
    for (int i = 0; i < N_ITEMS; i++) {
        char id[16];
        snprintf(id, sizeof id, "it-%d", i);
        if (coord_map_group_of(&k.map, id) != 0)
            continue;
        seed_shard(a.ep, i, i + 1);
        if (!found)
            found = i + 1;
    }
    CR_CHECK(found > 0);
    until = cr_clock_mono_ms() + 5000;
    while (ready(k.c) != 0 && cr_clock_mono_ms() < until)
        cr_clock_sleep_ms(50); /* polling the answer, not sleeping for readiness */
    CR_CHECK(ready(k.c) == 0);
    r = search(k.c, found - 1, 3000, &ms);
    CR_CHECK(top_is(r, found - 1));
    CR_CHECK(r && r->search && r->search->partial && r->search->n_missing_groups == 1 &&
             r->search->missing_groups[0] == 1);
    CR_CHECK_MSG(ms < 500, "partial answer took %.1f ms with the group known down", ms);
    if (r)
        cirrus_response_free(r);
    coord_stop(&k);
    stub_stop(&dead);
    shard_stop(&a);
}

int main(void)
{
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_ERROR);
    test_pending_table();
    test_timers();
    CR_CHECK(cr_wire_ctx_new(&zctx) == CR_OK);
    test_search_and_write();
    test_hedge();
    test_hedge_slow();
    test_retry();
    test_retry_exhausted();
    test_write_refused();
    test_deadline();
    test_deadline_hedged();
    test_partial();
    cr_wire_ctx_term(&zctx);
    return CR_TEST_END();
}
