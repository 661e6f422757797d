/* cirrus-bench jobs — the job broker (jobs/) with no-op workers, beside the bare ZeroMQ round
 * trip measured in the same run (issue #12, "Benchmark").
 *
 * The bench connects to a running broker (`cirrus serve --worker-bind`, or
 * `cirrus-coordinator --jobs-dir --worker-bind`; bench/jobs_bench.sh starts one), runs W no-op
 * workers as threads of its own that speak the real worker protocol (docs/protocol.md: a
 * DEALER, Ready with capabilities and concurrency 1, heartbeats, Result with a tiny PNG at once)
 * and submits try-on jobs through libcirrus (cirrus_generate). Every timestamp is taken in this
 * process on one clock (CLOCK_MONOTONIC): a job's seed carries its index, so the worker that
 * receives it knows when it was submitted.
 *
 * For each worker count (--workers 1,4,16):
 *   floor     --floor round trips of a bare DEALER/ROUTER echo (bench_echo_roundtrips);
 *   latency   --latency-jobs jobs submitted one at a time, each once the previous one's result
 *             was sent (an idle worker): submit -> worker receive, and submit -> acknowledged
 *             (the id returned: the record is durable);
 *   load      --jobs jobs from --concurrency submitting threads: jobs/s from the first submit
 *             until the job whose result was sent last reads `succeeded` (cirrus_job_status;
 *             the broker reports it only once the result is durable), and every job is then
 *             checked to have succeeded.
 * --metrics URL (the server's /metrics) adds the broker's store syncs (fdatasync) per job.
 * Targets: overhead p99 (latency p99 - floor p99) <= 2 ms; >= 2,000 jobs/s with 16 workers. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench/bench.h"
#include "cirrus.pb-c.h"
#include "client/cirrus.h"
#include "common/clock.h"
#include "common/config.h"

#define JB_MAX_WORKERS 64
#define JB_MAX_COUNTS 8
#define JB_TARGET_JPS 2000.0
#define JB_TARGET_OVERHEAD_MS 2.0

/* An 8x8 grey RGB PNG (worker/cirrus_worker/backends/noop.py's TINY_PNG). */
static const uint8_t tiny_png[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x02, 0x00, 0x00, 0x00, 0x4b,
    0x6d, 0x29, 0xdc, 0x00, 0x00, 0x00, 0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x68,
    0xc0, 0x01, 0x18, 0x86, 0x96, 0x04, 0x00, 0x82, 0xf3, 0x60, 0x01, 0x25, 0x95, 0xb3, 0x63,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

typedef struct jb_opts {
    const char *endpoint, *worker_endpoint, *metrics, *ids;
    int counts[JB_MAX_COUNTS], n_counts;
    long jobs, latency_jobs, concurrency, floor, heartbeat_ms, timeout_ms, window;
    int json;
} jb_opts;

/* One phase: jobs 0..n, the seed of job i is (tag << 32) | i. */
typedef struct jb_phase {
    uint32_t tag;
    size_t n;
    _Atomic uint64_t *t_sub, *t_recv, *t_ack, *t_res; /* monotonic us; 0 = not yet */
    char (*ids)[64];
    atomic_size_t next, received, errors, overloaded;
    atomic_size_t last_res; /* index of the result sent last */
} jb_phase;

typedef struct jb_shared {
    const jb_opts *o;
    void *ctx;
    FILE *ids;          /* --ids: every acknowledged job id, a line each, flushed at once */
    pthread_mutex_t ids_mu;
    _Atomic(jb_phase *) phase;
    atomic_int stop;
    atomic_size_t ready_workers, worker_errors;
} jb_shared;

typedef struct jb_worker {
    jb_shared *sh;
    int index;
    pthread_t tid;
} jb_worker;

static uint64_t now_us(void)
{
    return cr_clock_mono_us();
}

/* ---- the no-op worker -------------------------------------------------------------------- */

static int wsend(void *s, const Cirrus__V1__WorkerMsg *m)
{
    uint8_t stack[512], *buf = stack;
    size_t len = cirrus__v1__worker_msg__get_packed_size(m);
    int rc;
    if (len > sizeof stack && !(buf = malloc(len)))
        return -1;
    cirrus__v1__worker_msg__pack(m, buf);
    rc = zmq_send(s, buf, len, 0) < 0 ? -1 : 0;
    if (buf != stack)
        free(buf);
    return rc;
}

static int send_ready(void *s, int index)
{
    Cirrus__V1__WorkerMsg m = CIRRUS__V1__WORKER_MSG__INIT;
    Cirrus__V1__WorkerReady r = CIRRUS__V1__WORKER_READY__INIT;
    Cirrus__V1__JobKind caps[] = {CIRRUS__V1__JOB_KIND__JOB_TRYON, CIRRUS__V1__JOB_KIND__JOB_EDIT,
                                  CIRRUS__V1__JOB_KIND__JOB_TEXT2IMAGE};
    char name[32];
    snprintf(name, sizeof name, "bench-noop-%d", index);
    r.worker_id = name;
    r.capabilities = caps;
    r.n_capabilities = 3;
    r.concurrency = 1;
    r.version = (char *)"cirrus-bench jobs (noop)";
    m.msg_case = CIRRUS__V1__WORKER_MSG__MSG_READY;
    m.ready = &r;
    return wsend(s, &m);
}

static int send_heartbeat(void *s)
{
    Cirrus__V1__WorkerMsg m = CIRRUS__V1__WORKER_MSG__INIT;
    Cirrus__V1__WorkerHeartbeat hb = CIRRUS__V1__WORKER_HEARTBEAT__INIT;
    m.msg_case = CIRRUS__V1__WORKER_MSG__MSG_HEARTBEAT;
    m.heartbeat = &hb;
    return wsend(s, &m);
}

static int send_result(void *s, const char *job_id)
{
    Cirrus__V1__WorkerMsg m = CIRRUS__V1__WORKER_MSG__INIT;
    Cirrus__V1__JobResult r = CIRRUS__V1__JOB_RESULT__INIT;
    Cirrus__V1__Status st = CIRRUS__V1__STATUS__INIT;
    r.job_id = (char *)job_id;
    r.status = &st;
    r.image.data = (uint8_t *)tiny_png;
    r.image.len = sizeof tiny_png;
    m.msg_case = CIRRUS__V1__WORKER_MSG__MSG_RESULT;
    m.result = &r;
    return wsend(s, &m);
}

/* A job arrived: timestamp it (before anything else), answer at once. */
static void on_job(jb_worker *w, void *s, const Cirrus__V1__Job *job)
{
    uint64_t t = now_us();
    jb_phase *ph = atomic_load(&w->sh->phase);
    uint64_t seed = job->request ? job->request->seed : 0;
    size_t i = (size_t)(seed & 0xffffffffu);
    int ours = ph && (uint32_t)(seed >> 32) == ph->tag && i < ph->n;
    uint64_t zero = 0;
    if (ours)
        atomic_compare_exchange_strong(&ph->t_recv[i], &zero, t);
    if (send_result(s, job->job_id ? job->job_id : "") != 0) {
        atomic_fetch_add(&w->sh->worker_errors, 1);
        return;
    }
    if (ours) {
        zero = 0;
        if (atomic_compare_exchange_strong(&ph->t_res[i], &zero, now_us())) {
            atomic_store(&ph->last_res, i);
            atomic_fetch_add(&ph->received, 1);
        }
    }
}

static void *worker_main(void *arg)
{
    jb_worker *w = arg;
    jb_shared *sh = w->sh;
    void *s = zmq_socket(sh->ctx, ZMQ_DEALER);
    int linger = 0;
    uint64_t last_hb = 0;
    if (!s) {
        atomic_fetch_add(&sh->worker_errors, 1);
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, sh->o->worker_endpoint) != 0 || send_ready(s, w->index) != 0) {
        fprintf(stderr, "cirrus-bench jobs: worker %d: %s\n", w->index, zmq_strerror(errno));
        atomic_fetch_add(&sh->worker_errors, 1);
        zmq_close(s);
        return NULL;
    }
    atomic_fetch_add(&sh->ready_workers, 1);
    last_hb = now_us();
    while (!atomic_load(&sh->stop)) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        uint64_t t;
        if (zmq_poll(&it, 1, 20) > 0) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            while (zmq_msg_recv(&msg, s, ZMQ_DONTWAIT) >= 0) {
                Cirrus__V1__DispatchMsg *d;
                if (zmq_msg_more(&msg)) /* only the last frame is the body */
                    continue;
                d = cirrus__v1__dispatch_msg__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
                if (!d) {
                    atomic_fetch_add(&sh->worker_errors, 1);
                    continue;
                }
                if (d->msg_case == CIRRUS__V1__DISPATCH_MSG__MSG_JOB)
                    on_job(w, s, d->job);
                else if (d->msg_case == CIRRUS__V1__DISPATCH_MSG__MSG_RECONNECT)
                    send_ready(s, w->index);
                cirrus__v1__dispatch_msg__free_unpacked(d, NULL);
            }
            zmq_msg_close(&msg);
        }
        t = now_us();
        if (t - last_hb >= (uint64_t)sh->o->heartbeat_ms * 1000) {
            send_heartbeat(s);
            last_hb = t;
        }
    }
    {
        Cirrus__V1__WorkerMsg m = CIRRUS__V1__WORKER_MSG__INIT;
        Cirrus__V1__WorkerDisconnect dc = CIRRUS__V1__WORKER_DISCONNECT__INIT;
        dc.reason = (char *)"bench done";
        m.msg_case = CIRRUS__V1__WORKER_MSG__MSG_DISCONNECT;
        m.disconnect = &dc;
        wsend(s, &m);
        linger = 200; /* let the disconnect out */
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    }
    zmq_close(s);
    return NULL;
}

/* ---- the submitters ---------------------------------------------------------------------- */

typedef struct jb_submitter {
    jb_shared *sh;
    jb_phase *ph;
    int serial; /* one at a time, each after the previous one's result */
    pthread_t tid;
} jb_submitter;

static int submit_one(jb_shared *sh, cirrus *c, jb_phase *ph, size_t i)
{
    cirrus_generate_params p = cirrus_generate_default();
    cirrus_job *j = NULL;
    cirrus_err rc;
    p.kind = CIRRUS_JOB_TRYON;
    p.person_image = tiny_png;
    p.person_image_len = sizeof tiny_png;
    p.garment_image = tiny_png;
    p.garment_image_len = sizeof tiny_png;
    p.category = "upper_body";
    p.seed = ((uint64_t)ph->tag << 32) | i;
    for (int tries = 0;; tries++) {
        atomic_store(&ph->t_sub[i], now_us());
        rc = cirrus_generate(c, &p, &j);
        atomic_store(&ph->t_ack[i], now_us());
        if (rc != CIRRUS_ERR_OVERLOADED || tries == 1000)
            break;
        atomic_fetch_add(&ph->overloaded, 1); /* the queue is full: as a client would, again */
        usleep(1000);
    }
    if (rc != CIRRUS_OK) {
        if (atomic_fetch_add(&ph->errors, 1) < 5)
            fprintf(stderr, "cirrus-bench jobs: submit %zu: %s\n", i, cirrus_errmsg(c));
        return -1;
    }
    snprintf(ph->ids[i], sizeof ph->ids[i], "%s", cirrus_job_id(j));
    cirrus_job_free(&j);
    if (sh->ids) {
        pthread_mutex_lock(&sh->ids_mu);
        fprintf(sh->ids, "%s\n", ph->ids[i]);
        fflush(sh->ids);
        pthread_mutex_unlock(&sh->ids_mu);
    }
    return 0;
}

static void *submitter_main(void *arg)
{
    jb_submitter *s = arg;
    jb_phase *ph = s->ph;
    cirrus_options co = cirrus_default_options();
    cirrus *c = NULL;
    co.timeout_ms = (uint32_t)s->sh->o->timeout_ms;
    if (cirrus_open(&c, s->sh->o->endpoint, &co) != CIRRUS_OK) {
        fprintf(stderr, "cirrus-bench jobs: %s\n", cirrus_errmsg(NULL));
        atomic_fetch_add(&ph->errors, 1);
        return NULL;
    }
    for (;;) {
        size_t i;
        /* at most --window jobs submitted and not yet answered by a worker */
        while (atomic_load(&ph->next) >= atomic_load(&ph->received) + (size_t)s->sh->o->window &&
               atomic_load(&ph->next) < ph->n && !atomic_load(&ph->errors))
            usleep(20);
        i = atomic_fetch_add(&ph->next, 1);
        if (i >= ph->n)
            break;
        if (submit_one(s->sh, c, ph, i) != 0)
            break; /* the phase failed: do not wait out a timeout per job left */
        if (s->serial) { /* wait for its result before the next: the worker is idle again */
            uint64_t until = now_us() + (uint64_t)s->sh->o->timeout_ms * 1000;
            while (!atomic_load(&ph->t_res[i]) && now_us() < until)
                usleep(50);
            usleep(200); /* and for the broker to take the result in */
        }
    }
    cirrus_close(&c);
    return NULL;
}

static jb_phase *phase_new(uint32_t tag, size_t n)
{
    jb_phase *ph = calloc(1, sizeof *ph);
    if (!ph)
        return NULL;
    ph->tag = tag;
    ph->n = n;
    ph->t_sub = calloc(n, sizeof *ph->t_sub);
    ph->t_recv = calloc(n, sizeof *ph->t_recv);
    ph->t_ack = calloc(n, sizeof *ph->t_ack);
    ph->t_res = calloc(n, sizeof *ph->t_res);
    ph->ids = calloc(n, sizeof *ph->ids);
    if (!ph->t_sub || !ph->t_recv || !ph->t_ack || !ph->t_res || !ph->ids) {
        free(ph->t_sub), free(ph->t_recv), free(ph->t_ack), free(ph->t_res), free(ph->ids);
        free(ph);
        return NULL;
    }
    return ph;
}

static void phase_free(jb_phase *ph)
{
    if (!ph)
        return;
    free(ph->t_sub), free(ph->t_recv), free(ph->t_ack), free(ph->t_res), free(ph->ids);
    free(ph);
}

/* Runs the phase with `threads` submitters; waits until every accepted job's result was sent
 * (or the timeout). Returns 0 when every job was submitted and received. */
static int phase_run(jb_shared *sh, jb_phase *ph, int threads, int serial)
{
    jb_submitter subs[256];
    uint64_t until;
    int started = 0;
    if (threads > 256)
        threads = 256;
    atomic_store(&sh->phase, ph);
    for (int i = 0; i < threads; i++) {
        subs[i].sh = sh;
        subs[i].ph = ph;
        subs[i].serial = serial;
        if (pthread_create(&subs[i].tid, NULL, submitter_main, &subs[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(subs[i].tid, NULL);
    until = now_us() + (uint64_t)sh->o->timeout_ms * 1000;
    while (atomic_load(&ph->received) + atomic_load(&ph->errors) < ph->n && now_us() < until)
        usleep(200);
    return started == threads && !atomic_load(&ph->errors) && atomic_load(&ph->received) == ph->n
               ? 0 : -1;
}

/* ---- metrics (the broker's store syncs), read with curl ---------------------------------- */

static double metric_read(const char *url, const char *name)
{
    char cmd[1024], line[512];
    double v = -1;
    FILE *f;
    size_t nl = strlen(name);
    if (!url)
        return -1;
    snprintf(cmd, sizeof cmd, "curl -sf --max-time 5 '%s'", url);
    if (!(f = popen(cmd, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ')
            v = strtod(line + nl + 1, NULL);
    pclose(f);
    return v;
}

/* ---- one worker count -------------------------------------------------------------------- */

typedef struct jb_row {
    int workers;
    double lat_p50, lat_p99, ack_p50, ack_p99, floor_p50, floor_p99;
    double load_lat_p50, load_lat_p99, load_ack_p99;
    double jps, seconds, syncs_per_job;
    size_t jobs, latency_jobs, failed, overloaded;
    int ok;
} jb_row;

static void deltas(const jb_phase *ph, _Atomic uint64_t *const to, double *out, size_t *n_out)
{
    size_t n = 0;
    for (size_t i = 0; i < ph->n; i++) {
        uint64_t a = atomic_load(&ph->t_sub[i]), b = atomic_load(&to[i]);
        if (a && b && b >= a)
            out[n++] = (double)(b - a) / 1000.0;
    }
    *n_out = n;
}

/* Until the job whose result was sent last reads succeeded; then checks every job. */
static int confirm(const jb_opts *o, jb_phase *ph, uint64_t *t_end, size_t *failed)
{
    cirrus_options co = cirrus_default_options();
    cirrus *c = NULL;
    cirrus_job *j = NULL;
    size_t last = atomic_load(&ph->last_res);
    uint64_t until = now_us() + (uint64_t)o->timeout_ms * 1000;
    int ok = 0;
    co.timeout_ms = (uint32_t)o->timeout_ms;
    *failed = 0;
    if (cirrus_open(&c, o->endpoint, &co) != CIRRUS_OK)
        return -1;
    while (now_us() < until) {
        if (cirrus_job_status(c, ph->ids[last], 0, &j) == CIRRUS_OK &&
            cirrus_job_get_state(j) == CIRRUS_JOB_SUCCEEDED)
            ok = 1;
        cirrus_job_free(&j);
        if (ok)
            break;
        usleep(100);
    }
    *t_end = now_us();
    for (size_t i = 0; i < ph->n; i++) {
        int good = 0;
        for (int tries = 0; tries < 200 && !good; tries++) {
            if (cirrus_job_status(c, ph->ids[i], 0, &j) == CIRRUS_OK &&
                cirrus_job_get_state(j) == CIRRUS_JOB_SUCCEEDED)
                good = 1;
            else if (j && cirrus_job_ended(j))
                tries = 200;
            else
                usleep(1000);
            cirrus_job_free(&j);
        }
        if (!good && (*failed)++ < 5)
            fprintf(stderr, "cirrus-bench jobs: job %zu (%s) did not succeed\n", i, ph->ids[i]);
    }
    cirrus_close(&c);
    return ok && !*failed ? 0 : -1;
}

static int run_count(jb_shared *sh, int workers, uint32_t tag, jb_row *row)
{
    const jb_opts *o = sh->o;
    jb_worker *ws = calloc((size_t)workers, sizeof *ws);
    jb_phase *warm = NULL, *lat = NULL, *load = NULL;
    size_t nmax = (size_t)(o->jobs > o->latency_jobs ? o->jobs : o->latency_jobs);
    size_t floor_n = (size_t)o->floor, n;
    double *buf = malloc((nmax > floor_n ? nmax : floor_n) * sizeof *buf);
    double syncs0, syncs1;
    uint64_t t0 = 0, t_end = 0;
    int started = 0, ret = -1;
    memset(row, 0, sizeof *row);
    row->workers = workers;
    row->syncs_per_job = -1;
    if (!ws || !buf)
        goto out;
    atomic_store(&sh->stop, 0);
    atomic_store(&sh->ready_workers, 0);
    for (int i = 0; i < workers; i++) {
        ws[i].sh = sh;
        ws[i].index = i;
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0)
            goto out;
        started++;
    }
    while (atomic_load(&sh->ready_workers) + atomic_load(&sh->worker_errors) < (size_t)workers)
        usleep(1000);
    usleep(200000); /* the Ready frames reach the broker */

    /* warm-up: a few jobs per worker, not measured (connections made, pages touched) */
    if (!(warm = phase_new(tag, (size_t)workers * 8)) || phase_run(sh, warm, workers, 0)) {
        fprintf(stderr, "cirrus-bench jobs: the warm-up with %d workers failed\n", workers);
        goto out;
    }

    /* the floor, in this run, just before */
    if (bench_echo_roundtrips(0, (int)floor_n, buf) != 0)
        goto out;
    row->floor_p50 = bench_percentile(buf, floor_n, 0.5);
    row->floor_p99 = bench_percentile(buf, floor_n, 0.99);

    /* latency: one job at a time to an idle worker */
    if (!(lat = phase_new(tag + 1, (size_t)o->latency_jobs)) || phase_run(sh, lat, 1, 1)) {
        fprintf(stderr, "cirrus-bench jobs: the latency phase with %d workers failed\n", workers);
        goto out;
    }
    deltas(lat, lat->t_recv, buf, &n);
    row->lat_p50 = bench_percentile(buf, n, 0.5);
    row->lat_p99 = bench_percentile(buf, n, 0.99);
    deltas(lat, lat->t_ack, buf, &n);
    row->ack_p50 = bench_percentile(buf, n, 0.5);
    row->ack_p99 = bench_percentile(buf, n, 0.99);
    row->latency_jobs = lat->n;

    /* load: jobs/s end to end */
    if (!(load = phase_new(tag + 2, (size_t)o->jobs)))
        goto out;
    syncs0 = metric_read(o->metrics, "cirrus_jobs_store_syncs_total");
    t0 = now_us();
    if (phase_run(sh, load, (int)o->concurrency, 0)) {
        fprintf(stderr, "cirrus-bench jobs: the load phase with %d workers failed (%zu errors, "
                "%zu of %zu received)\n", workers, atomic_load(&load->errors),
                atomic_load(&load->received), load->n);
        goto out;
    }
    if (confirm(o, load, &t_end, &row->failed))
        goto out;
    syncs1 = metric_read(o->metrics, "cirrus_jobs_store_syncs_total");
    for (size_t i = 0; i < load->n; i++) /* the first submit's own time, not the thread start */
        if (atomic_load(&load->t_sub[i]) && atomic_load(&load->t_sub[i]) < t0)
            t0 = atomic_load(&load->t_sub[i]);
    row->jobs = load->n;
    row->overloaded = atomic_load(&load->overloaded);
    row->seconds = (double)(t_end - t0) / 1e6;
    row->jps = (double)load->n / row->seconds;
    deltas(load, load->t_recv, buf, &n);
    row->load_lat_p50 = bench_percentile(buf, n, 0.5);
    row->load_lat_p99 = bench_percentile(buf, n, 0.99);
    deltas(load, load->t_ack, buf, &n);
    row->load_ack_p99 = bench_percentile(buf, n, 0.99);
    if (syncs0 >= 0 && syncs1 >= syncs0)
        row->syncs_per_job = (syncs1 - syncs0) / (double)load->n;
    row->ok = 1;
    ret = 0;
out:
    atomic_store(&sh->stop, 1);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    atomic_store(&sh->phase, NULL);
    phase_free(warm);
    phase_free(lat);
    phase_free(load);
    free(ws);
    free(buf);
    usleep(300000); /* the broker drops the workers before the next count */
    return ret;
}

/* ---- the command ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cirrus-bench jobs --endpoint EP --worker-endpoint WEP [--workers 1,4,16]\n"
            "         [--jobs N] [--latency-jobs N] [--concurrency C] [--window N] [--floor N]\n"
            "         [--heartbeat-ms MS] [--timeout-ms MS] [--metrics URL] [--ids FILE] [--json]\n"
            "Runs no-op workers (threads speaking the worker protocol) against a job broker\n"
            "(cirrus serve --worker-bind, cirrus-coordinator --jobs-dir --worker-bind) and\n"
            "submits try-on jobs through libcirrus. Per worker count: submit -> worker receive\n"
            "and submit -> acknowledged latency (one job at a time, an idle worker), the bare\n"
            "ZeroMQ round trip (the floor) measured just before, jobs/s end to end under\n"
            "--concurrency submitters (at most --window jobs not yet received by a worker; an\n"
            "OVERLOADED submit is retried after 1 ms and counted) and, with --metrics (the\n"
            "server's /metrics URL), the store's syncs per job. --ids FILE appends each\n"
            "acknowledged job id as it comes (tests of what a broker killed under load keeps).\n"
            "Defaults: --jobs 3000 --latency-jobs 500 --concurrency 32 --window 512\n"
            "--floor 3000 --heartbeat-ms 1000 --timeout-ms 30000. Targets: overhead p99 <= 2 ms\n"
            "above the floor's p99; >= 2000 jobs/s with 16 workers. Exit 1 when a job is lost\n"
            "or fails (not when a target is missed).\n");
}

static int parse_counts(const char *s, jb_opts *o)
{
    char *end;
    o->n_counts = 0;
    while (*s) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > JB_MAX_WORKERS || o->n_counts == JB_MAX_COUNTS)
            return -1;
        o->counts[o->n_counts++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return o->n_counts ? 0 : -1;
}

static int parse_long(const char *flag, const char *v, long long lo, long long hi, long *out)
{
    long long x;
    if (cr_parse_ll(v, lo, hi, &x)) {
        fprintf(stderr, "cirrus-bench jobs: %s: %s\n", flag, cr_error_message());
        return -1;
    }
    *out = (long)x;
    return 0;
}

int bench_cmd_jobs(int argc, char **argv)
{
    jb_opts o = {0};
    jb_shared sh;
    jb_row rows[JB_MAX_COUNTS];
    int bad = 0, all_ok = 1;
    o.jobs = 3000;
    o.latency_jobs = 500;
    o.concurrency = 32;
    o.window = 512;
    o.floor = 3000;
    o.heartbeat_ms = 1000;
    o.timeout_ms = 30000;
    o.counts[0] = 1, o.counts[1] = 4, o.counts[2] = 16, o.n_counts = 3;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "cirrus-bench jobs: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--endpoint") == 0) o.endpoint = v;
        else if (strcmp(a, "--worker-endpoint") == 0) o.worker_endpoint = v;
        else if (strcmp(a, "--metrics") == 0) o.metrics = v;
        else if (strcmp(a, "--ids") == 0) o.ids = v;
        else if (strcmp(a, "--workers") == 0) {
            if (parse_counts(v, &o)) {
                fprintf(stderr, "cirrus-bench jobs: --workers: a list like 1,4,16 (1..%d)\n",
                        JB_MAX_WORKERS);
                bad = 1;
            }
        } else if (strcmp(a, "--jobs") == 0) bad = parse_long(a, v, 1, 1000000, &o.jobs);
        else if (strcmp(a, "--latency-jobs") == 0) bad = parse_long(a, v, 1, 1000000, &o.latency_jobs);
        else if (strcmp(a, "--concurrency") == 0) bad = parse_long(a, v, 1, 256, &o.concurrency);
        else if (strcmp(a, "--window") == 0) bad = parse_long(a, v, 1, 1000000, &o.window);
        else if (strcmp(a, "--floor") == 0) bad = parse_long(a, v, 1, 1000000, &o.floor);
        else if (strcmp(a, "--heartbeat-ms") == 0) bad = parse_long(a, v, 10, 60000, &o.heartbeat_ms);
        else if (strcmp(a, "--timeout-ms") == 0) bad = parse_long(a, v, 100, 3600000, &o.timeout_ms);
        else {
            fprintf(stderr, "cirrus-bench jobs: unknown option %s\n", a);
            bad = 1;
        }
    }
    if (bad || !o.endpoint || !o.worker_endpoint) {
        if (!bad)
            usage(stderr);
        return 2;
    }
    memset(&sh, 0, sizeof sh);
    sh.o = &o;
    pthread_mutex_init(&sh.ids_mu, NULL);
    if (o.ids && !(sh.ids = fopen(o.ids, "a"))) {
        fprintf(stderr, "cirrus-bench jobs: --ids %s: %s\n", o.ids, strerror(errno));
        return 2;
    }
    if (!(sh.ctx = zmq_ctx_new()))
        return 1;
    for (int k = 0; k < o.n_counts; k++) {
        /* tags: a fresh range per run (a restarted bench never matches an old job's seed) */
        uint32_t tag = (uint32_t)(time(NULL) & 0xffffff) * 16 + (uint32_t)k * 4;
        if (run_count(&sh, o.counts[k], tag, &rows[k]))
            all_ok = 0;
        if (!o.json && k == 0)
            printf("%7s %9s %9s %9s %9s %11s %9s %9s %9s %8s %8s %10s %9s\n", "workers",
                   "lat_p50", "lat_p99", "floor_p50", "floor_p99", "overhead99", "ack_p50",
                   "ack_p99", "jobs/s", "x_target", "load_p99", "syncs/job", "ok");
        if (!o.json) {
            jb_row *r = &rows[k];
            printf("%7d %9.3f %9.3f %9.3f %9.3f %11.3f %9.3f %9.3f %9.0f %8.2f %8.2f %10.3f %9s\n",
                   r->workers, r->lat_p50, r->lat_p99, r->floor_p50, r->floor_p99,
                   r->lat_p99 - r->floor_p99, r->ack_p50, r->ack_p99, r->jps,
                   r->jps / JB_TARGET_JPS, r->load_lat_p99, r->syncs_per_job,
                   r->ok ? "yes" : "FAILED");
            fflush(stdout);
        }
    }
    if (o.json) {
        printf("{\"target_jobs_per_s\":%.0f,\"target_overhead_p99_ms\":%.1f,\"jobs\":%ld,"
               "\"latency_jobs\":%ld,\"concurrency\":%ld,\"runs\":[",
               JB_TARGET_JPS, JB_TARGET_OVERHEAD_MS, o.jobs, o.latency_jobs, o.concurrency);
        for (int k = 0; k < o.n_counts; k++) {
            jb_row *r = &rows[k];
            printf("%s{\"workers\":%d,\"ok\":%s,\"latency_p50_ms\":%.4f,\"latency_p99_ms\":%.4f,"
                   "\"ack_p50_ms\":%.4f,\"ack_p99_ms\":%.4f,\"floor_p50_ms\":%.4f,"
                   "\"floor_p99_ms\":%.4f,\"overhead_p99_ms\":%.4f,\"jobs_per_s\":%.1f,"
                   "\"ratio_to_target\":%.3f,\"seconds\":%.3f,\"load_latency_p50_ms\":%.4f,"
                   "\"load_latency_p99_ms\":%.4f,\"load_ack_p99_ms\":%.4f,\"failed\":%zu,"
                   "\"overloaded_retries\":%zu,"
                   "\"syncs_per_job\":%.4f}",
                   k ? "," : "", r->workers, r->ok ? "true" : "false", r->lat_p50, r->lat_p99,
                   r->ack_p50, r->ack_p99, r->floor_p50, r->floor_p99, r->lat_p99 - r->floor_p99,
                   r->jps, r->jps / JB_TARGET_JPS, r->seconds, r->load_lat_p50, r->load_lat_p99,
                   r->load_ack_p99, r->failed, r->overloaded, r->syncs_per_job);
        }
        printf("]}\n");
    }
    zmq_ctx_term(sh.ctx);
    if (sh.ids)
        fclose(sh.ids);
    pthread_mutex_destroy(&sh.ids_mu);
    return all_ok ? 0 : 1;
}
