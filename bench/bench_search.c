/* cirrus-bench search — QPS, latency percentiles, recall@k and NDCG@k through a cirrus
 * endpoint and, side by side in the same run, the same FAISS index in-process (--peer).
 * --concurrency 1,2,4,8 sweeps (a row per level, --plot draws QPS against p99); --json
 * carries VectorDBBench's result fields beside cirrus's own. */
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <dirent.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/client.h"
#include "common/clock.h"
#include "common/config.h"
#include "shard/filter_parse.h"
#include "offline/vecfile.h"
#include "shard/index.h"

float *bench_load_rows(const char *path, size_t *rows, size_t *dim, int normalize);

enum { SEARCH_MAX_LEVELS = 16 };

typedef struct search_cfg {
    const char *endpoint, *queries, *truth, *prefix, *peer_base, *peer_index, *metric, *filter;
    const char *load, *plot;
    const char *peer_cache; /* the built peer index, reused across runs */
    long long k, duration_s, nprobe, ef, peer_threads, spin_us;
    long long peer_batch; /* > 0: the peer searches this many queries per index call */
    long long server_pid; /* > 0: the endpoint's process, for its CPU time and switches */
    long long levels[SEARCH_MAX_LEVELS]; /* --concurrency 1,2,4: one endpoint run each */
    int n_levels;
    int json, ping;
} search_cfg;

typedef struct run_result {
    double qps, p50, p95, p99, p999, mean, recall, ndcg;
    double server_search_ms; /* mean of the search time the server reports (timing) */
    /* per query: CPU us (user + system) and context switches of this process (the clients,
     * or the peer) and of --server-pid; -1 = not measured */
    double cpu_us, cs, srv_cpu_us, srv_cs;
    uint64_t done, errors;
} run_result;

typedef struct shared {
    const search_cfg *cfg;
    float *q;          /* nq x dim, raw */
    float *qn;         /* normalized copy for the in-process IP peer */
    size_t nq, dim;
    int64_t *answers;  /* nq x k row numbers, last answer per query */
    int32_t *exact;    /* --filter: exact filtered top-k from the endpoint (the truth) */
    Cirrus__V1__Filter *filter;
    shard_index *peer;
    uint64_t end_us;
    atomic_uint_fast64_t next;
} shared;

typedef struct worker {
    shared *sh;
    double *lat_ms;
    size_t n_lat, cap_lat;
    uint64_t errors;
    uint64_t server_us, server_n; /* from the answers' timing.search_us */
} worker;

static void lat_push(worker *w, double ms)
{
    if (w->n_lat == w->cap_lat) {
        size_t cap = w->cap_lat ? 2 * w->cap_lat : 4096;
        double *g = realloc(w->lat_ms, cap * sizeof *g);
        if (!g)
            return;
        w->lat_ms = g;
        w->cap_lat = cap;
    }
    w->lat_ms[w->n_lat++] = ms;
}

static int64_t id_to_row(const char *id, const char *prefix)
{
    size_t plen = strlen(prefix);
    long long r;
    if (strncmp(id, prefix, plen) != 0 || cr_parse_ll(id + plen, 0, INT64_MAX, &r))
        return -1;
    return r;
}

/* The next query row, or SIZE_MAX when the run is over: after --duration, and only once every
 * query was sent at least once (so recall covers the whole query set even on a slow system). */
static size_t next_query(shared *sh)
{
    size_t i = atomic_fetch_add(&sh->next, 1);
    if (cr_clock_mono_us() >= sh->end_us && i >= sh->nq)
        return SIZE_MAX;
    return i % sh->nq;
}

static void *endpoint_worker(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    const search_cfg *c = sh->cfg;
    cirrus_client *cl = NULL;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query q = CIRRUS__V1__QUERY__INIT;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__SearchParams p = CIRRUS__V1__SEARCH_PARAMS__INIT;
    cirrus_client_opts co = cirrus_client_default_opts();

    co.spin_us = (unsigned)c->spin_us;
    if (cirrus_client_open(&cl, c->endpoint, &co)) {
        w->errors++;
        return NULL;
    }
    p.nprobe = (uint32_t)c->nprobe;
    p.ef_search = (uint32_t)c->ef;
    q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    q.vector = &v;
    q.k = (uint32_t)c->k;
    q.params = &p;
    q.filter = sh->filter;
    Cirrus__V1__HealthRequest hr = CIRRUS__V1__HEALTH_REQUEST__INIT;
    sr.query = &q;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    if (c->ping) { /* the transport floor: a round trip that does no work */
        req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
        req.health = &hr;
    }
    v.n_values = sh->dim;
    for (;;) {
        size_t i = next_query(sh);
        Cirrus__V1__Response *resp = NULL;
        if (i == SIZE_MAX)
            break;
        uint64_t t0 = cr_clock_mono_us();
        v.values = sh->q + i * sh->dim;
        req.deadline_ms = 0;
        if (cirrus_client_call(cl, &req, 10000, &resp) || cirrus_response_error(resp) ||
            (!c->ping && !resp->search)) {
            if (w->errors++ < 3) /* what went wrong, not only how often */
                fprintf(stderr, "search error: %s\n", cr_error_message());
            cirrus_response_free(resp);
            continue;
        }
        lat_push(w, (double)(cr_clock_mono_us() - t0) / 1000.0);
        if (!c->ping && resp->search->timing && resp->search->timing->search_us) {
            w->server_us += resp->search->timing->search_us;
            w->server_n++;
        }
        for (size_t j = 0; !c->ping && j < (size_t)c->k; j++)
            sh->answers[i * (size_t)c->k + j] =
                j < resp->search->n_hits ? id_to_row(resp->search->hits[j]->id, c->prefix) : -1;
        cirrus_response_free(resp);
    }
    cirrus_client_close(&cl);
    return NULL;
}

static void *peer_worker(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    const search_cfg *c = sh->cfg;
    shard_index_search_params p = shard_index_default_search_params();
    float *dist = malloc((size_t)c->k * sizeof *dist);
    int64_t *ids = malloc((size_t)c->k * sizeof *ids);
    p.nprobe = (int)c->nprobe;
    p.ef_search = (int)c->ef;
    p.threads = 1;
    while (dist && ids) {
        size_t i = next_query(sh);
        uint64_t t0 = cr_clock_mono_us();
        if (i == SIZE_MAX)
            break;
        if (shard_index_search(sh->peer, 1, sh->qn + i * sh->dim, c->k, &p, dist, ids)) {
            w->errors++;
            continue;
        }
        lat_push(w, (double)(cr_clock_mono_us() - t0) / 1000.0);
        memcpy(sh->answers + i * (size_t)c->k, ids, (size_t)c->k * sizeof *ids);
    }
    free(dist);
    free(ids);
    return NULL;
}

/* The peer as a batch user runs it: one caller, --peer-batch queries per index call, on
 * --peer-threads OpenMP threads; each query's latency is its batch's. */
static void *peer_batch_worker(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    const search_cfg *c = sh->cfg;
    size_t nb = (size_t)c->peer_batch, k = (size_t)c->k;
    shard_index_search_params p = shard_index_default_search_params();
    float *q = malloc(nb * sh->dim * sizeof *q), *dist = malloc(nb * k * sizeof *dist);
    int64_t *ids = malloc(nb * k * sizeof *ids);
    size_t *rows = malloc(nb * sizeof *rows);
    p.nprobe = (int)c->nprobe;
    p.ef_search = (int)c->ef;
    p.threads = (int)c->peer_threads;
    while (q && dist && ids && rows) {
        size_t n = 0;
        uint64_t t0 = cr_clock_mono_us();
        for (; n < nb; n++) {
            size_t i = next_query(sh);
            if (i == SIZE_MAX)
                break;
            rows[n] = i;
            memcpy(q + n * sh->dim, sh->qn + i * sh->dim, sh->dim * sizeof *q);
        }
        if (n == 0)
            break;
        if (shard_index_search(sh->peer, (int64_t)n, q, (int64_t)k, &p, dist, ids)) {
            w->errors += n;
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            lat_push(w, (double)(cr_clock_mono_us() - t0) / 1000.0);
            memcpy(sh->answers + rows[j] * k, ids + j * k, k * sizeof *ids);
        }
    }
    free(q);
    free(dist);
    free(ids);
    free(rows);
    return NULL;
}

/* CPU us (user + system) and context switches (voluntary + not) of this process. */
static void self_usage(double *cpu_us, double *cs)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
              (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
    *cs = (double)ru.ru_nvcsw + (double)ru.ru_nivcsw;
}

/* The same for another process, from /proc (utime + stime of /proc/PID/stat; the switches
 * of every thread in /proc/PID/task/N/status). 0 on success. */
static int pid_usage(long long pid, double *cpu_us, double *cs)
{
    char path[64], line[256], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    DIR *d;
    struct dirent *de;
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
    fclose(f);
    /* after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return -1;
    *cpu_us = (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
    *cs = 0;
    snprintf(path, sizeof path, "/proc/%lld/task", pid);
    d = opendir(path);
    while (d && (de = readdir(d))) {
        char tp[320];
        if (de->d_name[0] == '.')
            continue;
        snprintf(tp, sizeof tp, "/proc/%lld/task/%s/status", pid, de->d_name);
        f = fopen(tp, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long v;
            if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
                *cs += (double)v;
        }
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return 0;
}

/* With --filter the truth is the endpoint's own exact search under the same filter. */
static cr_err exact_truth(shared *sh, const search_cfg *c)
{
    cirrus_client *cl = NULL;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query q = CIRRUS__V1__QUERY__INIT;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__SearchParams p = CIRRUS__V1__SEARCH_PARAMS__INIT;
    cr_err rc = cirrus_client_open(&cl, c->endpoint, NULL);
    sh->exact = malloc(sh->nq * (size_t)c->k * sizeof *sh->exact);
    if (!rc && !sh->exact)
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    p.exact = 1;
    q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    q.vector = &v;
    q.k = (uint32_t)c->k;
    q.params = &p;
    q.filter = sh->filter;
    sr.query = &q;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    v.n_values = sh->dim;
    for (size_t i = 0; !rc && i < sh->nq; i++) {
        Cirrus__V1__Response *resp = NULL;
        v.values = sh->q + i * sh->dim;
        req.deadline_ms = 0;
        rc = cirrus_client_call(cl, &req, 60000, &resp);
        if (!rc)
            rc = cirrus_response_expect(resp, CIRRUS__V1__RESPONSE__RESULT_SEARCH);
        for (size_t j = 0; !rc && j < (size_t)c->k; j++)
            sh->exact[i * (size_t)c->k + j] =
                j < resp->search->n_hits ? (int32_t)id_to_row(resp->search->hits[j]->id, c->prefix)
                                         : -1;
        cirrus_response_free(resp);
    }
    cirrus_client_close(&cl);
    return rc;
}

/* recall@k (and, against a truth file, NDCG@k) of the last answers; -1 = not measured. */
static void quality_of(shared *sh, const search_cfg *c, double *recall, double *ndcg)
{
    *ndcg = -1;
    if (sh->exact) {
        /* Filtered: of the exact top-k (fewer when fewer match), how many were found. */
        size_t hit = 0, total = 0, k = (size_t)c->k;
        for (size_t i = 0; i < sh->nq; i++)
            for (size_t j = 0; j < k; j++) {
                int32_t t = sh->exact[i * k + j];
                if (t < 0)
                    continue;
                total++;
                for (size_t m = 0; m < k; m++)
                    if (sh->answers[i * k + m] == t) {
                        hit++;
                        break;
                    }
            }
        *recall = total ? (double)hit / (double)total : -1;
        return;
    }
    cr_vecfile *t = NULL;
    int32_t *truth;
    size_t tk;
    *recall = -1;
    if (!c->truth || cr_vecfile_open(&t, c->truth))
        return;
    tk = cr_vecfile_dim(t);
    truth = malloc(sh->nq * tk * sizeof *truth);
    if (truth && cr_vecfile_rows(t) >= sh->nq) {
        for (size_t i = 0; i < sh->nq; i++)
            cr_vecfile_row_i32(t, i, truth + i * tk);
        *recall = bench_recall(sh->answers, truth, sh->nq, (size_t)c->k, tk);
        *ndcg = bench_ndcg(sh->answers, truth, sh->nq, (size_t)c->k, tk);
    }
    free(truth);
    cr_vecfile_close(&t);
}

static run_result run(shared *sh, void *(*fn)(void *), int threads)
{
    const search_cfg *c = sh->cfg;
    worker *ws = calloc((size_t)threads, sizeof *ws);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    run_result r = {0};
    double *all;
    size_t n = 0;
    uint64_t t0, server_us = 0, server_n = 0;
    double cpu0, cs0, cpu1, cs1, scpu0 = 0, scs0 = 0, scpu1 = 0, scs1 = 0;
    int srv = fn == endpoint_worker && c->server_pid > 0;

    for (size_t i = 0; i < sh->nq * (size_t)c->k; i++)
        sh->answers[i] = -1;
    atomic_store(&sh->next, 0);
    self_usage(&cpu0, &cs0);
    if (srv && pid_usage(c->server_pid, &scpu0, &scs0))
        srv = 0;
    t0 = cr_clock_mono_us();
    sh->end_us = t0 + (uint64_t)c->duration_s * 1000000u;
    for (int i = 0; i < threads; i++) {
        ws[i].sh = sh;
        pthread_create(&tids[i], NULL, fn, &ws[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        n += ws[i].n_lat;
        r.errors += ws[i].errors;
        server_us += ws[i].server_us;
        server_n += ws[i].server_n;
    }
    r.server_search_ms = server_n ? (double)server_us / (double)server_n / 1000.0 : 0;
    self_usage(&cpu1, &cs1);
    if (srv && pid_usage(c->server_pid, &scpu1, &scs1))
        srv = 0;
    all = malloc((n ? n : 1) * sizeof *all);
    n = 0;
    for (int i = 0; i < threads; i++) {
        if (all)
            memcpy(all + n, ws[i].lat_ms, ws[i].n_lat * sizeof *all);
        n += ws[i].n_lat;
        free(ws[i].lat_ms);
    }
    r.done = n;
    r.cpu_us = n ? (cpu1 - cpu0) / (double)n : -1;
    r.cs = n ? (cs1 - cs0) / (double)n : -1;
    r.srv_cpu_us = srv && n ? (scpu1 - scpu0) / (double)n : -1;
    r.srv_cs = srv && n ? (scs1 - scs0) / (double)n : -1;
    r.qps = (double)n / ((double)(cr_clock_mono_us() - t0) / 1e6);
    r.p50 = bench_percentile(all, n, 0.50);
    r.p95 = bench_percentile(all, n, 0.95);
    r.p99 = bench_percentile(all, n, 0.99);
    r.p999 = bench_percentile(all, n, 0.999);
    for (size_t i = 0; all && i < n; i++)
        r.mean += all[i] / (double)n;
    quality_of(sh, c, &r.recall, &r.ndcg);
    free(all);
    free(ws);
    free(tids);
    return r;
}

static cr_err peer_build(shared *sh, const search_cfg *c)
{
    shard_index_opts io = shard_index_default_opts();
    size_t nb, d;
    float *base;
    int64_t *ids;
    cr_err rc;
    if (shard_index_metric_parse(c->metric, &io.metric))
        return CR_ERR_INVALID;
    io.dim = (int)sh->dim;
    io.factory = c->peer_index;
    if (c->peer_cache) { /* the same base and factory, built by an earlier run */
        rc = shard_index_load(&sh->peer, c->peer_cache, &io, NULL);
        if (rc != CR_NOTFOUND) {
            if (!rc)
                fprintf(stderr, "peer: %s loaded from %s\n", c->peer_index, c->peer_cache);
            return rc;
        }
    }
    base = bench_load_rows(c->peer_base, &nb, &d, io.metric == SHARD_INDEX_METRIC_IP);
    if (!base || d != sh->dim) {
        free(base);
        return cr_error_set(CR_ERR_INVALID, "peer base file unreadable or of another dimension");
    }
    ids = malloc(nb * sizeof *ids);
    for (size_t i = 0; ids && i < nb; i++)
        ids[i] = (int64_t)i;
    io.dim = (int)d;
    io.factory = c->peer_index;
    io.train_size = (int64_t)nb; /* train on everything, as the shard does at this size */
    rc = ids ? shard_index_create(&sh->peer, &io) : CR_ERR_NOMEM;
    if (!rc) {
        uint64_t t0 = cr_clock_mono_us();
        rc = shard_index_add(sh->peer, (int64_t)nb, ids, base);
        double secs = (double)(cr_clock_mono_us() - t0) / 1e6;
        /* The in-process build rate bounds what any server can ingest into this index. */
        fprintf(stderr, "peer: %s built in-process from %zu vectors in %.1f s (%.0f vectors/s)\n",
                c->peer_index, nb, secs, secs > 0 ? (double)nb / secs : 0);
    }
    if (!rc && c->peer_cache)
        rc = shard_index_snapshot(sh->peer, c->peer_cache, (int64_t)nb);
    free(ids);
    free(base);
    return rc;
}

static json_t *result_json(const run_result *r, int conc)
{
    json_t *o = json_object();
    json_object_set_new(o, "qps", json_real(r->qps));
    json_object_set_new(o, "p50_ms", json_real(r->p50));
    json_object_set_new(o, "p95_ms", json_real(r->p95));
    json_object_set_new(o, "p99_ms", json_real(r->p99));
    json_object_set_new(o, "p999_ms", json_real(r->p999));
    json_object_set_new(o, "mean_ms", json_real(r->mean));
    json_object_set_new(o, "recall", json_real(r->recall));
    if (r->ndcg >= 0)
        json_object_set_new(o, "ndcg", json_real(r->ndcg));
    json_object_set_new(o, "concurrency", json_integer(conc));
    json_object_set_new(o, "queries", json_integer((json_int_t)r->done));
    json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
    if (r->server_search_ms > 0)
        json_object_set_new(o, "server_search_ms", json_real(r->server_search_ms));
    json_object_set_new(o, "cpu_us_per_query", json_real(r->cpu_us));
    json_object_set_new(o, "cswitch_per_query", json_real(r->cs));
    if (r->srv_cpu_us >= 0) {
        json_object_set_new(o, "server_cpu_us_per_query", json_real(r->srv_cpu_us));
        json_object_set_new(o, "server_cswitch_per_query", json_real(r->srv_cs));
    }
    return o;
}

static void print_row(const char *name, const run_result *r, int conc)
{
    printf("%-10s %5d %10.1f %9.3f %9.3f %9.3f %9.3f %8.4f %6llu %7.1f %7.2f", name, conc, r->qps,
           r->p50, r->p95, r->p99, r->p999, r->recall, (unsigned long long)r->errors, r->cpu_us,
           r->cs);
    if (r->srv_cpu_us >= 0)
        printf(" %7.1f %7.2f", r->srv_cpu_us, r->srv_cs);
    printf("\n");
}

/* "1,2,4,8": up to SEARCH_MAX_LEVELS levels, each 1..1024. */
static int parse_levels(search_cfg *c, const char *arg)
{
    char buf[256], *save = NULL;
    c->n_levels = 0;
    if (strlen(arg) >= sizeof buf)
        return cr_error_set(CR_ERR_INVALID, "--concurrency: list too long");
    strcpy(buf, arg);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (c->n_levels == SEARCH_MAX_LEVELS)
            return cr_error_set(CR_ERR_INVALID, "--concurrency: at most %d levels",
                                SEARCH_MAX_LEVELS);
        if (cr_parse_ll(t, 1, 1024, &c->levels[c->n_levels]))
            return cr_error_set(CR_ERR_INVALID, "--concurrency: '%s' is not in 1..1024", t);
        c->n_levels++;
    }
    return c->n_levels ? 0 : cr_error_set(CR_ERR_INVALID, "--concurrency: empty list");
}

static int parse(search_cfg *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, 0, 'e'},  {"queries", required_argument, 0, 'q'},
        {"truth", required_argument, 0, 't'},     {"id-prefix", required_argument, 0, 'p'},
        {"k", required_argument, 0, 'k'},         {"concurrency", required_argument, 0, 'c'},
        {"duration", required_argument, 0, 'd'},  {"nprobe", required_argument, 0, 'n'},
        {"ef", required_argument, 0, 'f'},        {"peer-base", required_argument, 0, 'B'},
        {"peer-index", required_argument, 0, 'I'}, {"metric", required_argument, 0, 'm'},
        {"peer-threads", required_argument, 0, 'T'}, {"json", no_argument, 0, 'j'},
        {"filter", required_argument, 0, 'F'},   {"ping", no_argument, 0, 'P'},
        {"spin-us", required_argument, 0, 'S'},  {"load", required_argument, 0, 'L'},
        {"plot", required_argument, 0, 'G'},      {"peer-batch", required_argument, 0, 'b'},
        {"server-pid", required_argument, 0, 's'}, {"peer-cache", required_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int ch;
    c->k = 10;
    c->levels[0] = 1;
    c->n_levels = 1;
    c->duration_s = 10;
    c->prefix = "";
    c->metric = "ip";
    c->peer_threads = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        long long *t = ch == 'k' ? &c->k : ch == 'd' ? &c->duration_s
                     : ch == 'n' ? &c->nprobe : ch == 'f' ? &c->ef : ch == 'T' ? &c->peer_threads
                     : ch == 'S' ? &c->spin_us : ch == 'b' ? &c->peer_batch : NULL;
        if (t) {
            if (cr_parse_ll(optarg, 0, 100000, t)) {
                fprintf(stderr, "cirrus-bench search: %s\n", cr_error_message());
                return 2;
            }
            continue;
        }
        switch (ch) {
        case 'c':
            if (parse_levels(c, optarg)) {
                fprintf(stderr, "cirrus-bench search: %s\n", cr_error_message());
                return 2;
            }
            break;
        case 's':
            if (cr_parse_ll(optarg, 1, INT32_MAX, &c->server_pid)) {
                fprintf(stderr, "cirrus-bench search: --server-pid: %s\n", cr_error_message());
                return 2;
            }
            break;
        case 'C': c->peer_cache = optarg; break;
        case 'L': c->load = optarg; break;
        case 'G': c->plot = optarg; break;
        case 'e': c->endpoint = optarg; break;
        case 'q': c->queries = optarg; break;
        case 't': c->truth = optarg; break;
        case 'p': c->prefix = optarg; break;
        case 'B': c->peer_base = optarg; break;
        case 'I': c->peer_index = optarg; break;
        case 'm': c->metric = optarg; break;
        case 'F': c->filter = optarg; break;
        case 'P': c->ping = 1; break;
        case 'j': c->json = 1; break;
        default:
            printf("Usage: cirrus-bench search --queries Q.fvecs [--endpoint EP] [--truth T.ivecs]\n"
                   "         [--id-prefix P] [--k 10] [--concurrency C[,C...]] [--duration S]\n"
                   "         [--nprobe N] [--ef N] [--peer-base B.fvecs --peer-index FACTORY\n"
                   "         [--metric ip|l2] [--peer-threads 2]] [--filter EXPR] [--spin-us N]\n"
                   "         [--load BASE] [--plot FILE.png] [--json] [--peer-batch N]\n"
                   "         [--server-pid PID] [--peer-cache FILE]\n"
                   "Vector files: .fvecs/.ivecs, .npy, or FILE.hdf5:DATASET (ann-benchmarks).\n"
                   "--concurrency 1,2,4,8,16 runs the endpoint once per level (a row each);\n"
                   "--plot draws QPS against p99 over the levels (gnuplot). --load writes BASE\n"
                   "through the endpoint first, as --id-prefix<row>, waits until it is all\n"
                   "indexed (Stats unindexed 0), and reports the time (load_duration; until\n"
                   "acknowledged: insert_duration). --json adds VectorDBBench's fields: qps\n"
                   "(the best level; the top level is that level's run), serial_latency_p99\n"
                   "(s, at concurrency 1), recall, ndcg, load_duration (s), conc_num_list,\n"
                   "conc_qps_list, conc_latency_p99_list (s).\n"
                   "With --filter, recall is measured against the endpoint's exact search under\n"
                   "the same filter. --ping sends Health requests instead (the transport floor).\n"
                   "--spin-us: clients busy-poll this long for each reply before sleeping.\n"
                   "With --peer-base the same FAISS index is built in-process from the same\n"
                   "file and measured in the same run, single queries from --peer-threads "
                   "threads;\nwith --peer-batch N, one caller searching N queries per index "
                   "call on\n--peer-threads OpenMP threads (a query's latency is its batch's).\n"
                   "cpu_us and cs per query: this process's CPU time and context switches over "
                   "a run\n(the clients; the peer's own), and with --server-pid the server's "
                   "(/proc).\n--peer-cache FILE: load the peer index from FILE, or build it and "
                   "save it there.\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if ((c->load || c->plot || c->n_levels > 1) && !c->endpoint) {
        fprintf(stderr, "cirrus-bench search: --load, --plot and a --concurrency list need "
                        "--endpoint\n");
        return 2;
    }
    if (!c->queries || (!c->endpoint && !c->peer_base) || c->k < 1) {
        fprintf(stderr, "cirrus-bench search: --queries and --endpoint or --peer-base are "
                        "required\n");
        return 2;
    }
    if (c->peer_base && !c->peer_index) {
        fprintf(stderr, "cirrus-bench search: --peer-index is required with --peer-base\n");
        return 2;
    }
    return -1;
}

/* VectorDBBench's result fields (its Metric), from the sweep: qps is the best level's, the
 * serial p99 the concurrency-1 level's (seconds, as VectorDBBench stores them). */
static void vdb_fields(json_t *o, const search_cfg *c, const run_result *lv, const double *load_s)
{
    json_t *nums = json_array(), *qps = json_array(), *p99 = json_array();
    double best = 0;
    for (int i = 0; i < c->n_levels; i++) {
        json_array_append_new(nums, json_integer(c->levels[i]));
        json_array_append_new(qps, json_real(lv[i].qps));
        json_array_append_new(p99, json_real(lv[i].p99 / 1000.0));
        if (lv[i].qps > best)
            best = lv[i].qps;
        if (c->levels[i] == 1)
            json_object_set_new(o, "serial_latency_p99", json_real(lv[i].p99 / 1000.0));
    }
    json_object_set_new(o, "qps", json_real(best));
    json_object_set_new(o, "conc_num_list", nums);
    json_object_set_new(o, "conc_qps_list", qps);
    json_object_set_new(o, "conc_latency_p99_list", p99);
    if (load_s[0] >= 0) {
        json_object_set_new(o, "load_duration", json_real(load_s[0]));
        json_object_set_new(o, "insert_duration", json_real(load_s[1]));
    }
}

static void print_json(const search_cfg *c, const run_result *lv, const run_result *peer,
                       const double *load_s)
{
    /* Top level: the endpoint's best level by QPS, so qps and its percentiles and concurrency
     * describe one run (or the peer alone); every level in "levels". */
    int b = 0;
    for (int i = 1; c->endpoint && i < c->n_levels; i++)
        if (lv[i].qps > lv[b].qps)
            b = i;
    json_t *o = c->endpoint ? result_json(&lv[b], (int)c->levels[b])
                            : result_json(peer, (int)c->peer_threads);
    if (c->endpoint) {
        json_t *levels = json_array();
        for (int i = 0; i < c->n_levels; i++)
            json_array_append_new(levels, result_json(&lv[i], (int)c->levels[i]));
        json_object_set_new(o, "levels", levels);
        vdb_fields(o, c, lv, load_s);
    }
    if (c->endpoint && c->peer_base) {
        json_object_set_new(o, "peer", result_json(peer, (int)c->peer_threads));
        json_object_set_new(o, "qps_ratio", json_real(peer->qps > 0 ? lv[0].qps / peer->qps : 0));
        json_object_set_new(o, "p50_added_ms", json_real(lv[0].p50 - peer->p50));
    }
    char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    puts(txt ? txt : "{}");
    free(txt);
    json_decref(o);
}

/* QPS against p99 over the levels, each point labelled with its concurrency. */
static void plot_levels(const search_cfg *c, const run_result *lv)
{
    FILE *g = popen("gnuplot > /dev/null 2>&1", "w");
    if (!g) {
        fprintf(stderr, "cirrus-bench search: no gnuplot: no plot\n");
        return;
    }
    fprintf(g, "set terminal pngcairo size 900,560\nset output '%s'\nset grid\n"
               "set xlabel 'p99 latency (ms)'\nset ylabel 'QPS'\nset key off\n"
               "set title 'cirrus-bench search: QPS against p99 by concurrency'\n"
               "set xrange [0:*]\nset yrange [0:*]\n"
               "plot '-' using 1:2 with linespoints pt 7, '-' using 1:2:3 with labels offset 1,1\n",
            c->plot);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->n_levels; i++)
            fprintf(g, "%f %f c=%lld\n", lv[i].p99, lv[i].qps, c->levels[i]);
        fprintf(g, "e\n");
    }
    if (pclose(g) != 0)
        fprintf(stderr, "cirrus-bench search: gnuplot failed: no plot\n");
    else if (!c->json)
        printf("plot: %s\n", c->plot);
}

static int run_peer(shared *sh, const search_cfg *c, run_result *peer)
{
    if (peer_build(sh, c)) {
        fprintf(stderr, "cirrus-bench search: peer: %s\n", cr_error_message());
        return 1;
    }
    *peer = c->peer_batch > 0 ? run(sh, peer_batch_worker, 1)
                              : run(sh, peer_worker, (int)c->peer_threads);
    if (!c->json)
        print_row("in-process", peer, (int)c->peer_threads);
    shard_index_close(&sh->peer);
    return 0;
}

static void free_shared(shared *sh)
{
    free(sh->q);
    free(sh->qn);
    free(sh->answers);
    free(sh->exact);
    if (sh->filter)
        cirrus__v1__filter__free_unpacked(sh->filter, NULL);
}

/* load_s[0]: the load until indexed, load_s[1]: until its writes were acknowledged. */
static int setup(shared *sh, search_cfg *c, double *load_s)
{
    size_t loaded = 0;
    if (c->load) {
        if (bench_endpoint_load(c->endpoint, c->load, c->prefix, &load_s[0], &load_s[1], &loaded))
            return 1;
        if (!c->json)
            printf("loaded %zu vectors through %s: acknowledged in %.2f s, indexed in %.2f s "
                   "(%.0f vectors/s)\n", loaded, c->endpoint, load_s[1], load_s[0],
                   load_s[0] > 0 ? (double)loaded / load_s[0] : 0);
    }
    sh->cfg = c;
    sh->q = bench_load_rows(c->queries, &sh->nq, &sh->dim, 0);
    sh->qn = bench_load_rows(c->queries, &sh->nq, &sh->dim, strcmp(c->metric, "ip") == 0);
    sh->answers = sh->q ? malloc(sh->nq * (size_t)c->k * sizeof *sh->answers) : NULL;
    if (!sh->q || !sh->qn || !sh->answers) {
        fprintf(stderr, "cirrus-bench search: cannot read %s\n", c->queries);
        return 1;
    }
    if (c->filter && (!c->endpoint || c->peer_base)) {
        fprintf(stderr, "cirrus-bench search: --filter needs --endpoint and no peer\n");
        return 2;
    }
    if (c->filter && (cr_filter_parse(c->filter, &sh->filter) || exact_truth(sh, c))) {
        fprintf(stderr, "cirrus-bench search: --filter: %s\n", cr_error_message());
        return 1;
    }
    return 0;
}

int bench_cmd_search(int argc, char **argv)
{
    search_cfg c = {0};
    shared sh;
    run_result lv[SEARCH_MAX_LEVELS] = {0}, peer = {0};
    double load_s[2] = {-1, -1};
    uint64_t errors = 0;
    int ret = parse(&c, argc, argv);
    if (ret >= 0)
        return ret;
    memset(&sh, 0, sizeof sh);
    if ((ret = setup(&sh, &c, load_s)) != 0)
        goto out;
    if (!c.json)
        printf("%-10s %5s %10s %9s %9s %9s %9s %8s %6s %7s %7s%s\n", "target", "conc", "QPS",
               "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "recall", "errors", "cpu_us", "cs",
               c.server_pid > 0 ? " srv_cpu  srv_cs" : "");
    for (int i = 0; c.endpoint && i < c.n_levels; i++) {
        lv[i] = run(&sh, endpoint_worker, (int)c.levels[i]);
        errors += lv[i].errors;
        if (!c.json)
            print_row("endpoint", &lv[i], (int)c.levels[i]);
    }
    if (c.peer_base && (ret = run_peer(&sh, &c, &peer)) != 0)
        goto out;
    errors += peer.errors;
    if (c.json)
        print_json(&c, lv, &peer, load_s);
    else if (c.endpoint && c.peer_base)
        printf("endpoint/in-process QPS ratio %.3f; p50 added by the server %.1f us\n",
               peer.qps > 0 ? lv[0].qps / peer.qps : 0, (lv[0].p50 - peer.p50) * 1000);
    if (!c.json && lv[0].ndcg >= 0)
        printf("ndcg@%lld %.4f (first level)\n", c.k, lv[0].ndcg);
    if (c.plot)
        plot_levels(&c, lv);
    ret = errors ? 1 : 0;
out:
    free_shared(&sh);
    return ret;
}
