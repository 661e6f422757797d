/* common/service: requests of opts.batch_op queued together run as one opts.batch call (up to
 * pool_batch), each answered; other pool ops and a lone request run alone; pool_batch out of
 * range fails the open. Real ZeroMQ sockets (inproc), real threads. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "client/client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/service.h"
#include "common/test.h"

typedef struct state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_open, entered, singles, batches, batched, max_n;
} state;

static state st;

static void answer(cr_svc_call *c, const Cirrus__V1__Request *req, const char *role)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    h.ready = 1;
    h.role = (char *)role;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    cr_svc_reply_ok(c, req->id, &resp);
}

/* STATS alone: waits at the gate (bounded), so that others queue behind it. */
static void on_stats(void *ctx, cr_svc_call *c, const Cirrus__V1__Request *req)
{
    state *s = ctx;
    uint64_t t0 = cr_clock_mono_ms();
    pthread_mutex_lock(&s->mu);
    s->singles++;
    s->entered++;
    pthread_cond_broadcast(&s->cv);
    while (!s->gate_open && cr_clock_mono_ms() - t0 < 5000) {
        pthread_mutex_unlock(&s->mu);
        cr_clock_sleep_ms(2);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    answer(c, req, "single");
}

static void on_batch(void *ctx, cr_svc_call *const *calls, size_t n)
{
    state *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->batches++;
    s->batched += (int)n;
    s->max_n = (int)n > s->max_n ? (int)n : s->max_n;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++)
        answer(calls[i], cr_svc_call_request(calls[i]), "batch");
}

static const cr_svc_op ops[] = {
    {CIRRUS__V1__REQUEST__OP_STATS, CR_SVC_POOL, on_stats, NULL, NULL},
};
static const cr_svc_ops table = {ops, 1, "not here", NULL, NULL, NULL};

typedef struct caller {
    void *ctx;
    const char *ep;
    int ok;
    char role[16];
} caller;

static void *call_main(void *arg)
{
    caller *a = arg;
    cirrus_client *c = NULL;
    cirrus_client_opts co = cirrus_client_default_opts();
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest sr = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    co.zmq_ctx = a->ctx;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &sr;
    if (cirrus_client_open(&c, a->ep, &co) == CR_OK &&
        cirrus_client_call(c, &req, 10000, &resp) == CR_OK && resp->status &&
        resp->status->code == 0 && resp->health) {
        a->ok = 1;
        snprintf(a->role, sizeof a->role, "%s", resp->health->role);
    }
    cirrus_response_free(resp);
    cirrus_client_close(&c);
    return NULL;
}

/* One request held at the gate, `n` more queued behind it, then the gate opens. */
static void run_queued(void *ctx, const char *ep, int pool_batch, int n, int want_batches,
                       int want_max)
{
    cr_svc_opts o = cr_svc_default_opts();
    cr_service *svc = NULL;
    caller a[9];
    pthread_t t[9];
    int singles, batched = 0;
    memset(a, 0, sizeof a);
    pthread_mutex_lock(&st.mu);
    st.gate_open = st.entered = st.singles = st.batches = st.batched = st.max_n = 0;
    pthread_mutex_unlock(&st.mu);
    o.name = "test";
    o.bind = ep;
    o.zmq_ctx = ctx;
    o.workers = 1;
    o.batch_op = CIRRUS__V1__REQUEST__OP_STATS;
    o.batch = on_batch;
    o.pool_batch = pool_batch;
    CR_CHECK_MSG(cr_service_open(&svc, &o, &table, &st) == CR_OK, "%s", cr_error_message());
    if (!svc)
        return;
    a[0] = (caller){.ctx = ctx, .ep = ep};
    pthread_create(&t[0], NULL, call_main, &a[0]);
    for (int i = 0; i < 500 && !st.entered; i++)
        cr_clock_sleep_ms(5);
    CR_CHECK(st.entered == 1);
    for (int i = 1; i <= n; i++) {
        a[i] = (caller){.ctx = ctx, .ep = ep};
        pthread_create(&t[i], NULL, call_main, &a[i]);
    }
    cr_clock_sleep_ms(300); /* all queued behind the held one */
    pthread_mutex_lock(&st.mu);
    st.gate_open = 1;
    pthread_mutex_unlock(&st.mu);
    for (int i = 0; i <= n; i++) {
        pthread_join(t[i], NULL);
        CR_CHECK_MSG(a[i].ok, "request %d not answered", i);
        batched += strcmp(a[i].role, "batch") == 0;
    }
    singles = st.singles;
    printf("pool_batch %d, %d queued: %d alone, %d batches of at most %d (%d requests)\n",
           pool_batch, n, singles, st.batches, st.max_n, st.batched);
    CR_CHECK_MSG(singles == 1 && st.batches == want_batches && st.max_n == want_max &&
                 st.batched == n && batched == n,
                 "%d alone, %d batches, largest %d", singles, st.batches, st.max_n);
    CR_CHECK(cr_service_close(&svc) == CR_OK);
}

int main(void)
{
    void *ctx = zmq_ctx_new();
    cr_svc_opts o = cr_svc_default_opts();
    cr_service *svc = NULL;
    CR_TEST_BEGIN();
    cr_log_set_level(CR_LOG_ERROR);
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    run_queued(ctx, "inproc://batch-a", 32, 6, 1, 6);
    run_queued(ctx, "inproc://batch-b", 4, 6, 2, 4);
    /* pool_batch out of 1..4096: refused */
    o.bind = "inproc://batch-c";
    o.zmq_ctx = ctx;
    o.batch_op = CIRRUS__V1__REQUEST__OP_STATS;
    o.batch = on_batch;
    o.pool_batch = 0;
    CR_CHECK(cr_service_open(&svc, &o, &table, &st) == CR_ERR_INVALID && svc == NULL);
    o.pool_batch = 5000;
    CR_CHECK(cr_service_open(&svc, &o, &table, &st) == CR_ERR_INVALID && svc == NULL);
    zmq_ctx_term(ctx);
    return CR_TEST_END();
}
