/* common/service: the server skeleton over real ZeroMQ sockets. open returns bound and ready
 * (a client connects and is answered at once, the real port of tcp://127.0.0.1:0 is read
 * back); ops run where the table says (front, pool, writer in batches); a full pool or writer
 * queue answers OVERLOADED at the edge while the pool is blocked; a request queued past its
 * deadline is answered DEADLINE; close finishes in-flight work and, past drain_ms, cancels and
 * drops a kept call that is released later; a thread that cannot start fails the open with
 * nothing left running or bound; bad frames, unknown ops and requests without one are
 * answered. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "client/client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/service.h"
#include "common/test.h"

/* What the handlers saw, and a gate that holds the pool's handler until opened. */
typedef struct state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t front_tid, pool_tid, writer_tid;
    int front_runs, pool_runs, front_tries, writer_calls, writer_batches, max_batch;
    int idle_calls, final_idle, entered, gate_open, slow_ms;
    int keep; /* the pool's STATS handler keeps its call here instead of answering */
    cr_svc_call *kept;
} state;

static state st;

static void reply_role(cr_svc_call *c, const Cirrus__V1__Request *req, const char *role)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    h.ready = 1;
    h.role = (char *)role;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    cr_svc_reply_ok(c, req->id, &resp);
}

static void on_health(void *ctx, cr_svc_call *c, const Cirrus__V1__Request *req)
{
    state *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->front_tid = pthread_self();
    s->front_runs++;
    pthread_mutex_unlock(&s->mu);
    reply_role(c, req, "front");
}

/* POOL: waits at the gate (bounded), or keeps the call when asked to. */
static void on_stats(void *ctx, cr_svc_call *c, const Cirrus__V1__Request *req)
{
    state *s = ctx;
    uint64_t t0 = cr_clock_mono_ms();
    pthread_mutex_lock(&s->mu);
    s->pool_tid = pthread_self();
    s->pool_runs++;
    s->entered++;
    pthread_cond_broadcast(&s->cv);
    while (!s->gate_open && cr_clock_mono_ms() - t0 < 10000) {
        pthread_mutex_unlock(&s->mu);
        cr_clock_sleep_ms(2);
        pthread_mutex_lock(&s->mu);
    }
    if (s->keep) {
        s->kept = cr_svc_call_keep(c);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    if (s->slow_ms)
        cr_clock_sleep_ms((uint64_t)s->slow_ms);
    reply_role(c, req, "pool");
}

/* POOL with a front try: GET is answered on the front when it may be, else on the pool. */
static void on_get(void *ctx, cr_svc_call *c, const Cirrus__V1__Request *req)
{
    (void)ctx;
    reply_role(c, req, "pool");
}

static int try_get(void *ctx, cr_svc_call *c, const Cirrus__V1__Request *req)
{
    state *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->front_tries++;
    pthread_mutex_unlock(&s->mu);
    if (req->get && req->get->n_ids > 0 && strcmp(req->get->ids[0], "defer") == 0)
        return 0;
    reply_role(c, req, "front");
    return 1;
}

static cr_err admit_write(void *ctx, const Cirrus__V1__Request *req)
{
    (void)ctx;
    if (req->upsert && req->upsert->n_items > 3)
        return cr_error_set(CR_ERR_INVALID, "too many items in one write");
    return CR_OK;
}

static size_t write_weight(const Cirrus__V1__Request *req)
{
    return req->upsert ? req->upsert->n_items : 1;
}

static void write_batch(void *ctx, cr_svc_call *const *calls, size_t n)
{
    state *s = ctx;
    uint64_t t0 = cr_clock_mono_ms();
    pthread_mutex_lock(&s->mu);
    if (s->writer_batches && !pthread_equal(s->writer_tid, pthread_self()))
        s->writer_tid = (pthread_t)0; /* a second writer thread: the check below fails */
    else
        s->writer_tid = pthread_self();
    s->writer_batches++;
    s->writer_calls += (int)n;
    s->max_batch = (int)n > s->max_batch ? (int)n : s->max_batch;
    /* the first batch waits at the gate, so that the next writes queue up behind it */
    while (s->writer_batches == 1 && !s->gate_open && cr_clock_mono_ms() - t0 < 10000) {
        pthread_mutex_unlock(&s->mu);
        cr_clock_sleep_ms(2);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++)
        reply_role(calls[i], cr_svc_call_request(calls[i]), "writer");
}

static void write_idle(void *ctx, int final)
{
    state *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->idle_calls++;
    s->final_idle += final;
    pthread_mutex_unlock(&s->mu);
}

static const cr_svc_op test_ops[] = {
    {CIRRUS__V1__REQUEST__OP_HEALTH, CR_SVC_FRONT, on_health, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_STATS, CR_SVC_POOL, on_stats, NULL, NULL},
    {CIRRUS__V1__REQUEST__OP_GET, CR_SVC_POOL, on_get, try_get, NULL},
    {CIRRUS__V1__REQUEST__OP_UPSERT, CR_SVC_WRITER, NULL, NULL, admit_write},
};

static const cr_svc_ops table = {test_ops, sizeof test_ops / sizeof test_ops[0],
                                 "operation not served by the test service", write_batch,
                                 write_idle, write_weight};

static void state_reset(void)
{
    pthread_mutex_lock(&st.mu);
    st.front_runs = st.pool_runs = st.front_tries = 0;
    st.writer_calls = st.writer_batches = st.max_batch = 0;
    st.idle_calls = st.final_idle = st.entered = 0;
    st.gate_open = 1;
    st.slow_ms = 0;
    st.keep = 0;
    st.kept = NULL;
    pthread_mutex_unlock(&st.mu);
}

static void gate(int open)
{
    pthread_mutex_lock(&st.mu);
    st.gate_open = open;
    pthread_mutex_unlock(&st.mu);
}

/* Waits (bounded) until the pool's handler has been entered n times. */
static int wait_entered(int n)
{
    uint64_t t0 = cr_clock_mono_ms();
    int ok;
    pthread_mutex_lock(&st.mu);
    while (st.entered < n && cr_clock_mono_ms() - t0 < 5000) {
        pthread_mutex_unlock(&st.mu);
        cr_clock_sleep_ms(1);
        pthread_mutex_lock(&st.mu);
    }
    ok = st.entered >= n;
    pthread_mutex_unlock(&st.mu);
    return ok;
}

static cr_svc_opts test_opts(const char *bind)
{
    cr_svc_opts o = cr_svc_default_opts();
    o.name = "test";
    o.bind = bind;
    o.workers = 2;
    return o;
}

/* ---- requests -------------------------------------------------------------------------- */

static void req_health(Cirrus__V1__Request *req, Cirrus__V1__HealthRequest *h)
{
    cirrus__v1__request__init(req);
    cirrus__v1__health_request__init(h);
    req->op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req->health = h;
}

static void req_stats(Cirrus__V1__Request *req, Cirrus__V1__StatsRequest *s)
{
    cirrus__v1__request__init(req);
    cirrus__v1__stats_request__init(s);
    req->op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req->stats = s;
}

/* Calls with op `kind` ("health", "stats", "get", "get-defer", "upsertN", "none", "scan");
 * returns the reply's code and copies its role or message into out. */
static int call_op(cirrus_client *c, const char *kind, char *out, size_t len)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__StatsRequest sr = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__GetRequest g = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__ScanRequest sc = CIRRUS__V1__SCAN_REQUEST__INIT;
    Cirrus__V1__Item it[8], *items[8];
    char *ids[1] = {"x"};
    Cirrus__V1__Response *resp = NULL;
    int code;
    if (strcmp(kind, "health") == 0) {
        req_health(&req, &h);
    } else if (strcmp(kind, "stats") == 0) {
        req_stats(&req, &sr);
    } else if (strncmp(kind, "get", 3) == 0) {
        ids[0] = strcmp(kind, "get-defer") == 0 ? "defer" : "x";
        g.ids = ids;
        g.n_ids = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_GET;
        req.get = &g;
    } else if (strncmp(kind, "upsert", 6) == 0) {
        size_t n = (size_t)atoi(kind + 6);
        for (size_t i = 0; i < n && i < 8; i++) {
            cirrus__v1__item__init(&it[i]);
            it[i].id = "i";
            items[i] = &it[i];
        }
        up.items = items;
        up.n_items = n;
        req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
    } else if (strcmp(kind, "scan") == 0) {
        req.op_case = CIRRUS__V1__REQUEST__OP_SCAN;
        req.scan = &sc;
    }
    if (cirrus_client_call(c, &req, 3000, &resp) != CR_OK) {
        snprintf(out, len, "no reply: %s", cr_error_message());
        return 1000;
    }
    code = resp->status ? resp->status->code : 999;
    snprintf(out, len, "%s",
             code == 0 && resp->health ? resp->health->role
                                       : resp->status ? resp->status->message : "");
    cirrus_response_free(resp);
    return code;
}

static cirrus_client *client(const char *ep)
{
    cirrus_client *c = NULL;
    CR_CHECK_MSG(cirrus_client_open(&c, ep, NULL) == CR_OK, "%s", cr_error_message());
    return c;
}

/* ---- tests ------------------------------------------------------------------------------ */

/* Bound at return: no sleep, no retry; the port of :0 is the real one. Ops run where the
 * table says. */
static void test_open_and_routes(void)
{
    cr_svc_opts o = test_opts("tcp://127.0.0.1:0");
    cr_service *svc = NULL;
    cirrus_client *c;
    char out[256];
    uint64_t t0;

    state_reset();
    CR_CHECK_MSG(cr_service_open(&svc, &o, &table, &st) == CR_OK, "%s", cr_error_message());
    if (!svc)
        return;
    CR_CHECK_MSG(strncmp(cr_service_endpoint(svc), "tcp://127.0.0.1:", 16) == 0 &&
                     atoi(cr_service_endpoint(svc) + 16) > 0,
                 "%s", cr_service_endpoint(svc));
    t0 = cr_clock_mono_ms();
    c = client(cr_service_endpoint(svc));
    CR_CHECK(call_op(c, "health", out, sizeof out) == 0 && strcmp(out, "front") == 0);
    printf("first reply %llu ms after open returned (%s)\n",
           (unsigned long long)(cr_clock_mono_ms() - t0), cr_service_endpoint(svc));
    CR_CHECK(call_op(c, "stats", out, sizeof out) == 0 && strcmp(out, "pool") == 0);
    /* A lone GET is answered on the front; one its front function declines, on the pool. */
    CR_CHECK(call_op(c, "get", out, sizeof out) == 0 && strcmp(out, "front") == 0);
    CR_CHECK(call_op(c, "get-defer", out, sizeof out) == 0 && strcmp(out, "pool") == 0);
    CR_CHECK(st.front_tries == 2);
    CR_CHECK(call_op(c, "upsert1", out, sizeof out) == 0 && strcmp(out, "writer") == 0);
    CR_CHECK(call_op(c, "upsert2", out, sizeof out) == 0 && strcmp(out, "writer") == 0);
    CR_CHECK(st.front_runs == 1 && st.pool_runs == 1 && st.writer_calls == 2);
    CR_CHECK(!pthread_equal(st.front_tid, st.pool_tid) &&
             !pthread_equal(st.front_tid, st.writer_tid) &&
             !pthread_equal(st.pool_tid, st.writer_tid) &&
             !pthread_equal(st.writer_tid, (pthread_t)0));
    CR_CHECK(!pthread_equal(st.front_tid, pthread_self()));
    /* admit refuses on the front; ops not in the table and requests without one. */
    CR_CHECK(call_op(c, "upsert5", out, sizeof out) == CR_ERR_INVALID &&
             strcmp(out, "too many items in one write") == 0);
    CR_CHECK(call_op(c, "scan", out, sizeof out) == CR_ERR_UNSUPPORTED &&
             strcmp(out, "operation not served by the test service") == 0);
    CR_CHECK(call_op(c, "none", out, sizeof out) == CR_ERR_INVALID &&
             strcmp(out, "request without an operation") == 0);
    /* Raw frames: a malformed body is answered (id 0, PROTO). */
    {
        void *zc = zmq_ctx_new(), *raw = zmq_socket(zc, ZMQ_DEALER);
        int tmo = 3000, n;
        char buf[512];
        Cirrus__V1__Response *resp;
        zmq_setsockopt(raw, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
        zmq_connect(raw, cr_service_endpoint(svc));
        zmq_send(raw, "\x0a\xff\xff\xff\xff\xff", 6, 0);
        n = zmq_recv(raw, buf, sizeof buf, 0);
        resp = n > 0 ? cirrus__v1__response__unpack(NULL, (size_t)n, (uint8_t *)buf) : NULL;
        CR_CHECK(resp && resp->status && resp->status->code == CR_ERR_PROTO && resp->id == 0);
        cirrus__v1__response__free_unpacked(resp, NULL);
        zmq_close(raw);
        zmq_ctx_term(zc);
    }
    cirrus_client_close(&c);
    CR_CHECK(cr_service_close(&svc) == CR_OK && svc == NULL);
    CR_CHECK(st.final_idle == 1 && st.idle_calls >= 3);
}

/* The pool's one thread is held at the gate with two requests queued behind it: the next
 * ones are refused OVERLOADED at once, while it is still held; the writer likewise; and a
 * queued request whose deadline passes is answered DEADLINE once the pool gets to it. */
static void test_overload(void)
{
    cr_svc_opts o = test_opts("inproc://test-service-overload");
    cr_service *svc = NULL;
    cirrus_client *c;
    cirrus_client_opts co = cirrus_client_default_opts();
    void *zc = zmq_ctx_new();
    int ok = 0, over = 0, late = 0, other = 0;
    uint64_t ids[6];

    state_reset();
    o.zmq_ctx = zc;
    o.workers = 1;
    o.pool_queue = 2;
    o.writer_queue = 2;
    CR_CHECK_MSG(cr_service_open(&svc, &o, &table, &st) == CR_OK, "%s", cr_error_message());
    co.zmq_ctx = zc;
    CR_CHECK(cirrus_client_open(&c, "inproc://test-service-overload", &co) == CR_OK);
    gate(0);
    for (int i = 0; i < 6; i++) {
        Cirrus__V1__Request req;
        Cirrus__V1__StatsRequest sr;
        req_stats(&req, &sr);
        req.deadline_ms = i == 1 ? 50 : 10000; /* the first queued one will wait longer */
        CR_CHECK(cirrus_client_send(c, &req, &ids[i]) == CR_OK);
        if (i == 0)
            CR_CHECK(wait_entered(1)); /* the pool's thread holds it: the rest queue */
    }
    /* 1 running, 2 queued, 3 refused: the refusals come while the gate is still shut. */
    for (int i = 0; i < 3; i++) {
        Cirrus__V1__Response *r = NULL;
        CR_CHECK(cirrus_client_recv(c, 3000, &r) == CR_OK);
        CR_CHECK_MSG(r && r->status->code == CR_ERR_OVERLOADED && r->id >= ids[3] &&
                         strstr(r->status->message, "overloaded"),
                     "%d %s", r ? r->status->code : 0, r ? r->status->message : "");
        cirrus_response_free(r);
    }
    CR_CHECK(st.pool_runs == 1);
    cr_clock_sleep_ms(100); /* past the 50 ms deadline of the first queued request */
    gate(1);
    for (int i = 0; i < 3; i++) {
        Cirrus__V1__Response *r = NULL;
        if (cirrus_client_recv(c, 3000, &r) != CR_OK) {
            other++;
            continue;
        }
        if (r->status->code == 0)
            ok++;
        else if (r->status->code == CR_ERR_DEADLINE && r->id == ids[1] &&
                 strstr(r->status->message, "deadline passed while queued"))
            late++;
        else
            over++;
        cirrus_response_free(r);
    }
    CR_CHECK_MSG(ok == 2 && late == 1 && over == 0 && other == 0, "%d ok, %d late, %d, %d", ok,
                 late, over, other);

    /* The writer: its first batch held at the gate, two queued, the rest refused. */
    state_reset();
    gate(0);
    {
        Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
        Cirrus__V1__Item it = CIRRUS__V1__ITEM__INIT, *items[1] = {&it};
        int full = 0, done = 0;
        it.id = "w";
        up.items = items;
        up.n_items = 1;
        for (int i = 0; i < 5; i++) {
            Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
            req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
            req.upsert = &up;
            CR_CHECK(cirrus_client_send(c, &req, &ids[i]) == CR_OK);
            for (uint64_t t0 = cr_clock_mono_ms(); i == 0 && cr_clock_mono_ms() - t0 < 5000;) {
                int b;
                pthread_mutex_lock(&st.mu);
                b = st.writer_batches;
                pthread_mutex_unlock(&st.mu);
                if (b)
                    break;
                cr_clock_sleep_ms(1);
            }
        }
        for (int i = 0; i < 2; i++) {
            Cirrus__V1__Response *r = NULL;
            CR_CHECK(cirrus_client_recv(c, 3000, &r) == CR_OK);
            full += r && r->status->code == CR_ERR_OVERLOADED &&
                    strstr(r->status->message, "write queue full (2 requests)");
            cirrus_response_free(r);
        }
        CR_CHECK(full == 2);
        gate(1);
        for (int i = 0; i < 3; i++) {
            Cirrus__V1__Response *r = NULL;
            CR_CHECK(cirrus_client_recv(c, 3000, &r) == CR_OK);
            done += r && r->status->code == 0;
            cirrus_response_free(r);
        }
        CR_CHECK(done == 3);
        /* the two that queued behind the first batch ran as one batch */
        CR_CHECK_MSG(st.writer_batches == 2 && st.max_batch == 2, "%d batches, max %d",
                     st.writer_batches, st.max_batch);
    }
    cirrus_client_close(&c);
    CR_CHECK(cr_service_close(&svc) == CR_OK);
    zmq_ctx_term(zc);
}

/* close answers what is in flight: one request running and two queued on the one pool
 * thread (200 ms each) all get their replies. */
static void test_drain(void)
{
    cr_svc_opts o = test_opts("tcp://127.0.0.1:0");
    cr_service *svc = NULL;
    cirrus_client *c;
    uint64_t t0, ms;
    int ok = 0;

    state_reset();
    o.workers = 1;
    CR_CHECK_MSG(cr_service_open(&svc, &o, &table, &st) == CR_OK, "%s", cr_error_message());
    if (!svc)
        return;
    st.slow_ms = 200;
    c = client(cr_service_endpoint(svc));
    for (int i = 0; i < 3; i++) {
        Cirrus__V1__Request req;
        Cirrus__V1__StatsRequest sr;
        uint64_t id;
        req_stats(&req, &sr);
        CR_CHECK(cirrus_client_send(c, &req, &id) == CR_OK);
    }
    CR_CHECK(wait_entered(1));
    t0 = cr_clock_mono_ms();
    CR_CHECK(cr_service_close(&svc) == CR_OK);
    ms = cr_clock_mono_ms() - t0;
    for (int i = 0; i < 3; i++) {
        Cirrus__V1__Response *r = NULL;
        if (cirrus_client_recv(c, 3000, &r) == CR_OK && r->status->code == 0)
            ok++;
        cirrus_response_free(r);
    }
    printf("close with 3 requests in flight: %llu ms, %d answered\n", (unsigned long long)ms,
           ok);
    CR_CHECK(ok == 3);
    CR_CHECK_MSG(ms >= 350 && ms < 5000, "%llu ms", (unsigned long long)ms);
    cirrus_client_close(&c);
}

/* A kept call never answered: close gives up after drain_ms, raises the call's cancel flag,
 * and a release after close neither crashes nor sends. */
static void test_drain_timeout(void)
{
    cr_svc_opts o = test_opts("inproc://test-service-drain");
    cr_service *svc = NULL;
    cirrus_client *c;
    cirrus_client_opts co = cirrus_client_default_opts();
    void *zc = zmq_ctx_new();
    const atomic_int *cancel;
    uint64_t t0, ms, id;
    Cirrus__V1__Request req;
    Cirrus__V1__StatsRequest sr;

    state_reset();
    st.keep = 1;
    o.zmq_ctx = zc;
    o.drain_ms = 300;
    CR_CHECK_MSG(cr_service_open(&svc, &o, &table, &st) == CR_OK, "%s", cr_error_message());
    co.zmq_ctx = zc;
    CR_CHECK(cirrus_client_open(&c, "inproc://test-service-drain", &co) == CR_OK);
    req_stats(&req, &sr);
    CR_CHECK(cirrus_client_send(c, &req, &id) == CR_OK);
    CR_CHECK(wait_entered(1));
    for (t0 = cr_clock_mono_ms(); cr_clock_mono_ms() - t0 < 3000;) {
        int kept;
        pthread_mutex_lock(&st.mu);
        kept = st.kept != NULL;
        pthread_mutex_unlock(&st.mu);
        if (kept)
            break;
        cr_clock_sleep_ms(1);
    }
    CR_CHECK(st.kept != NULL);
    cancel = st.kept ? cr_svc_call_cancel(st.kept) : NULL;
    CR_CHECK(cancel && atomic_load(cancel) == 0);
    t0 = cr_clock_mono_ms();
    CR_CHECK(cr_service_close(&svc) == CR_OK);
    ms = cr_clock_mono_ms() - t0;
    printf("close with a kept call never answered: %llu ms (drain 300 ms)\n",
           (unsigned long long)ms);
    CR_CHECK_MSG(ms >= 300 && ms < 2000, "%llu ms", (unsigned long long)ms);
    CR_CHECK(cancel && atomic_load(cancel) == 1); /* the call still holds the service */
    if (st.kept) {
        Cirrus__V1__Response *r = NULL;
        CR_CHECK(cr_svc_reply_error(st.kept, id, CR_ERR_INTERNAL, "too late") == CR_OK);
        cr_svc_call_release(&st.kept);
        CR_CHECK(st.kept == NULL);
        CR_CHECK(cirrus_client_recv(c, 200, &r) == CR_TIMEOUT); /* dropped, not sent */
    }
    cirrus_client_close(&c);
    zmq_ctx_term(zc);
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Joined threads leave /proc a moment after pthread_join returns: wait for it (bounded). */
static int threads_settle(int want)
{
    int n = count_threads();
    for (uint64_t t0 = cr_clock_mono_ms(); n != want && cr_clock_mono_ms() - t0 < 2000;) {
        cr_clock_sleep_ms(5);
        n = count_threads();
    }
    return n;
}

static atomic_int spawn_calls, spawn_fail_at;

static int failing_spawn(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    if (atomic_fetch_add(&spawn_calls, 1) + 1 == atomic_load(&spawn_fail_at))
        return 11; /* EAGAIN, as under RLIMIT_NPROC */
    return pthread_create(t, a, fn, arg);
}

/* Every thread start that fails fails the open, naming the thread; nothing is left running
 * and the endpoint is free again. Also: an endpoint in use. */
static void test_start_failures(void)
{
    cr_svc_opts o = test_opts("tcp://127.0.0.1:0");
    cr_service *svc = NULL;
    char ep[256];
    int before, k;

    /* a port known to be free: bind :0, read it, close */
    CR_CHECK(cr_service_open(&svc, &o, &table, &st) == CR_OK);
    snprintf(ep, sizeof ep, "%s", svc ? cr_service_endpoint(svc) : "");
    /* in use: the second bind fails with the endpoint named */
    {
        cr_svc_opts o2 = test_opts(ep);
        cr_service *svc2 = NULL;
        CR_CHECK(cr_service_open(&svc2, &o2, &table, &st) == CR_ERR_NET && !svc2);
        CR_CHECK_MSG(strstr(cr_error_message(), "cannot bind") &&
                         strstr(cr_error_message(), ep), "%s", cr_error_message());
    }
    cr_service_close(&svc);
    /* Its own ZeroMQ context, which close terminates: its threads are gone and its port
     * released when open returns (a shared context releases a port asynchronously). */
    o = test_opts(ep);
    o.workers = 3;
    o.spawn = failing_spawn;
    before = count_threads();
    for (k = 1; k <= 5; k++) { /* writer, 3 workers, front */
        atomic_store(&spawn_calls, 0);
        atomic_store(&spawn_fail_at, k);
        state_reset();
        CR_CHECK(cr_service_open(&svc, &o, &table, &st) == CR_ERR_INTERNAL && !svc);
        CR_CHECK_MSG(strstr(cr_error_message(), "cannot start") != NULL, "%s",
                     cr_error_message());
        printf("thread start %d fails: %s\n", k, cr_error_message());
        CR_CHECK_MSG(threads_settle(before) == before, "%d threads, %d before",
                     count_threads(), before);
        CR_CHECK(k != 1 || strstr(cr_error_message(), "writer"));
        CR_CHECK(k != 3 || strstr(cr_error_message(), "worker thread 2 of 3"));
        CR_CHECK(k != 5 || strstr(cr_error_message(), "front"));
    }
    /* nothing is left bound: the same endpoint opens and serves */
    atomic_store(&spawn_fail_at, 0);
    state_reset();
    CR_CHECK_MSG(cr_service_open(&svc, &o, &table, &st) == CR_OK, "%s", cr_error_message());
    if (svc) {
        cirrus_client *c = client(ep);
        char out[64];
        CR_CHECK(call_op(c, "health", out, sizeof out) == 0);
        cirrus_client_close(&c);
        CR_CHECK(cr_service_close(&svc) == CR_OK);
    }
    CR_CHECK(threads_settle(before) == before);
}

int main(void)
{
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_ERROR);
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    test_open_and_routes();
    test_overload();
    test_drain();
    test_drain_timeout();
    test_start_failures();
    return CR_TEST_END();
}
