/* libcirrus against a real ROUTER (inproc) served by a thread that answers out of order:
 * replies to pipelined requests that arrive while cirrus_client_call waits are kept for
 * cirrus_client_recv (boundedly), late replies to abandoned calls are dropped, replies are
 * unpacked through a bounded allocator, and a status without its result is not success. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "client/client.h"
#include "common/test.h"
#include "common/wire.h"

#define MAX_MSGS 80

/* A server script: receive n requests, then answer them in the order `order` gives (indexes
 * into arrival order), each with an ok status, or with big_hits empty hits when big_hits. */
typedef struct server {
    void *router;
    int n;
    int order[MAX_MSGS];
    size_t big_hits;
    uint64_t ids[MAX_MSGS];
} server;

static void reply_big(void *router, const cr_wire_msg *m, uint64_t id, size_t n_hits)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchResult res = CIRRUS__V1__SEARCH_RESULT__INIT;
    Cirrus__V1__Hit *hits = calloc(n_hits, sizeof *hits);
    Cirrus__V1__Hit **ptrs = calloc(n_hits, sizeof *ptrs);
    for (size_t i = 0; hits && ptrs && i < n_hits; i++) {
        cirrus__v1__hit__init(&hits[i]);
        ptrs[i] = &hits[i];
    }
    res.hits = ptrs;
    res.n_hits = hits && ptrs ? n_hits : 0;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
    resp.search = &res;
    cr_wire_reply_ok(router, m, id, &resp);
    free(hits);
    free(ptrs);
}

static void *serve(void *arg)
{
    server *s = arg;
    cr_wire_limits lim = cr_wire_default_limits();
    cr_wire_msg *m = calloc((size_t)s->n, sizeof *m);
    for (int i = 0; m && i < s->n; i++) {
        cr_pb_bounded alloc;
        Cirrus__V1__Request *req = NULL;
        cr_wire_msg_init(&m[i]);
        cr_pb_bounded_init(&alloc, 1 << 20);
        if (cr_wire_recv(s->router, &m[i], &lim, 0) ||
            cr_wire_unpack_request(&m[i], &alloc, &req))
            break;
        s->ids[i] = req->id;
        cirrus__v1__request__free_unpacked(req, &alloc.base);
    }
    for (int i = 0; m && i < s->n; i++) {
        int k = s->order[i];
        if (s->big_hits)
            reply_big(s->router, &m[k], s->ids[k], s->big_hits);
        else
            cr_wire_reply_error(s->router, &m[k], s->ids[k], CR_OK, "");
    }
    for (int i = 0; m && i < s->n; i++)
        cr_wire_msg_close(&m[i]);
    free(m);
    return NULL;
}

typedef struct fixture {
    void *ctx, *router;
    cirrus_client *c;
    Cirrus__V1__Request req;
    Cirrus__V1__HealthRequest health;
} fixture;

static void fixture_open(fixture *f, const char *ep, size_t max_frame, size_t max_alloc)
{
    cirrus_client_opts o = cirrus_client_default_opts();
    int zero = 0;
    memset(f, 0, sizeof *f);
    f->ctx = zmq_ctx_new();
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    CR_CHECK(zmq_bind(f->router, ep) == 0);
    o.zmq_ctx = f->ctx;
    o.max_frame = max_frame;
    o.max_alloc = max_alloc;
    CR_CHECK(cirrus_client_open(&f->c, ep, &o) == CR_OK);
    cirrus__v1__request__init(&f->req);
    cirrus__v1__health_request__init(&f->health);
    f->req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    f->req.health = &f->health;
}

static void fixture_close(fixture *f)
{
    cirrus_client_close(&f->c);
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
}

static void start(pthread_t *t, server *s)
{
    CR_CHECK(pthread_create(t, NULL, serve, s) == 0);
}

/* send A, send C, call B; the server answers C, A, then B: the call returns B and recv then
 * returns C and A (in arrival order), then nothing. */
static void test_pipelined_replies_kept(void)
{
    fixture f;
    server s = {.n = 3, .order = {1, 0, 2}};
    pthread_t t;
    uint64_t a = 0, c = 0;
    Cirrus__V1__Response *r = NULL;

    fixture_open(&f, "inproc://client-pipelined", 0, 0);
    s.router = f.router;
    start(&t, &s);
    CR_CHECK(cirrus_client_send(f.c, &f.req, &a) == CR_OK);
    CR_CHECK(cirrus_client_send(f.c, &f.req, &c) == CR_OK);
    f.req.deadline_ms = 0;
    CR_CHECK(cirrus_client_call(f.c, &f.req, 5000, &r) == CR_OK);
    CR_CHECK(r && r->id != a && r->id != c && cirrus_response_error(r) == CR_OK);
    cirrus_response_free(r);
    r = NULL;
    CR_CHECK_MSG(cirrus_client_recv(f.c, 200, &r) == CR_OK, "%s", cr_error_message());
    CR_CHECK(r && r->id == c);
    cirrus_response_free(r);
    r = NULL;
    CR_CHECK(cirrus_client_recv(f.c, 200, &r) == CR_OK);
    CR_CHECK(r && r->id == a);
    cirrus_response_free(r);
    r = NULL;
    CR_CHECK(cirrus_client_recv(f.c, 50, &r) == CR_TIMEOUT);
    pthread_join(t, NULL);
    fixture_close(&f);
}

/* A call that timed out gets its reply during the next call: dropped, not kept. */
static void test_abandoned_call_dropped(void)
{
    fixture f;
    server s = {.n = 2, .order = {0, 1}};
    pthread_t t;
    Cirrus__V1__Response *r = NULL;

    fixture_open(&f, "inproc://client-abandoned", 0, 0);
    s.router = f.router;
    start(&t, &s);
    CR_CHECK(cirrus_client_call(f.c, &f.req, 50, &r) == CR_TIMEOUT);
    f.req.deadline_ms = 0;
    CR_CHECK(cirrus_client_call(f.c, &f.req, 5000, &r) == CR_OK);
    CR_CHECK(r && r->id == f.req.id);
    cirrus_response_free(r);
    r = NULL;
    CR_CHECK(cirrus_client_recv(f.c, 50, &r) == CR_TIMEOUT);
    pthread_join(t, NULL);
    fixture_close(&f);
}

/* More pipelined replies than the stash holds arrive during a call: the call still gets its
 * own, and exactly CIRRUS_CLIENT_STASH_MAX are kept. */
static void test_stash_bounded(void)
{
    fixture f;
    server s = {.n = CIRRUS_CLIENT_STASH_MAX + 6};
    pthread_t t;
    Cirrus__V1__Response *r = NULL;
    int kept = 0;

    for (int i = 0; i < s.n; i++)
        s.order[i] = i;
    fixture_open(&f, "inproc://client-stash", 0, 0);
    s.router = f.router;
    start(&t, &s);
    for (int i = 0; i < s.n - 1; i++)
        CR_CHECK(cirrus_client_send(f.c, &f.req, NULL) == CR_OK);
    f.req.deadline_ms = 0;
    CR_CHECK(cirrus_client_call(f.c, &f.req, 5000, &r) == CR_OK);
    CR_CHECK(r && r->id == f.req.id);
    cirrus_response_free(r);
    while (cirrus_client_recv(f.c, 50, &r) == CR_OK) {
        kept++;
        cirrus_response_free(r);
    }
    CR_CHECK_MSG(kept == CIRRUS_CLIENT_STASH_MAX, "kept %d", kept);
    pthread_join(t, NULL);
    fixture_close(&f);
}

/* A 40 KB reply of 20,000 empty hits takes ~1 MB to unpack: refused under a 256 KiB bound
 * (4 x a 64 KiB max_frame), accepted under a larger one. */
static void test_bounded_unpack(void)
{
    for (int big = 0; big < 2; big++) {
        fixture f;
        server s = {.n = 1, .order = {0}, .big_hits = 20000};
        pthread_t t;
        Cirrus__V1__Response *r = NULL;
        cr_err rc;

        fixture_open(&f, big ? "inproc://client-unpack-big" : "inproc://client-unpack",
                     64 << 10, big ? 64u << 20 : 0);
        s.router = f.router;
        start(&t, &s);
        rc = cirrus_client_call(f.c, &f.req, 5000, &r);
        if (big) {
            CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
            CR_CHECK(r && cirrus_response_expect(r, CIRRUS__V1__RESPONSE__RESULT_SEARCH) ==
                              CR_OK && r->search->n_hits == 20000);
        } else {
            CR_CHECK_MSG(rc == CR_ERR_PROTO, "rc %d", rc);
            CR_CHECK(strstr(cr_error_message(), "to unpack") != NULL);
        }
        cirrus_response_free(r);
        pthread_join(t, NULL);
        fixture_close(&f);
    }
}

/* A positive status (CR_TIMEOUT, CR_NOTFOUND) comes without a result: not success. */
static void test_response_expect(void)
{
    Cirrus__V1__Response r = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__Status st = CIRRUS__V1__STATUS__INIT;
    Cirrus__V1__SearchResult res = CIRRUS__V1__SEARCH_RESULT__INIT;

    CR_CHECK(cirrus_response_error(&r) == CR_ERR_PROTO); /* no status at all */
    r.status = &st;
    st.code = CR_TIMEOUT;
    st.message = "backend did not answer in time";
    CR_CHECK(cirrus_response_error(&r) == CR_TIMEOUT);
    CR_CHECK(cirrus_response_expect(&r, CIRRUS__V1__RESPONSE__RESULT_SEARCH) == CR_TIMEOUT);
    CR_CHECK(strcmp(cr_error_message(), "backend did not answer in time") == 0);
    st.code = CR_NOTFOUND;
    st.message = "";
    CR_CHECK(cirrus_response_expect(&r, CIRRUS__V1__RESPONSE__RESULT_GET) == CR_NOTFOUND);
    st.code = CR_ERR_UNAVAILABLE;
    CR_CHECK(cirrus_response_expect(&r, CIRRUS__V1__RESPONSE__RESULT_GET) == CR_ERR_UNAVAILABLE);
    st.code = CR_OK;
    CR_CHECK(cirrus_response_error(&r) == CR_OK);
    CR_CHECK(cirrus_response_expect(&r, CIRRUS__V1__RESPONSE__RESULT_SEARCH) == CR_ERR_PROTO);
    r.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
    r.search = &res;
    CR_CHECK(cirrus_response_expect(&r, CIRRUS__V1__RESPONSE__RESULT_SEARCH) == CR_OK);
    CR_CHECK(cirrus_response_expect(&r, CIRRUS__V1__RESPONSE__RESULT_GET) == CR_ERR_PROTO);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_pipelined_replies_kept();
    test_abandoned_call_dropped();
    test_stash_bounded();
    test_bounded_unpack();
    test_response_expect();
    return CR_TEST_END();
}
