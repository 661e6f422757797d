/* cirrus-bench gen | truth | restart */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/err.h"
#include "offline/vecfile.h"
#include "shard/engine.h"
#include "shard/index.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double rng_gauss(uint64_t *s)
{
    double u = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* Points scattered around `clusters` random centers: closer to real embeddings than
 * uniform noise, which makes every ANN index look bad. */
static void gen_points(float *out, size_t n, size_t dim, const float *centers, size_t clusters,
                       double spread, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++) {
        const float *c = centers + (rng_next(rng) % clusters) * dim;
        for (size_t j = 0; j < dim; j++)
            out[i * dim + j] = c[j] + (float)(spread * rng_gauss(rng));
    }
}

int bench_cmd_gen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"n", required_argument, 0, 'n'},       {"dim", required_argument, 0, 'd'},
        {"clusters", required_argument, 0, 'c'}, {"queries", required_argument, 0, 'q'},
        {"out", required_argument, 0, 'o'},     {"query-out", required_argument, 0, 'Q'},
        {"seed", required_argument, 0, 's'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    long long n = 10000, dim = 128, clusters = 100, nq = 1000, seed = 42;
    const char *out = NULL, *qout = NULL;
    float *centers, *base, *queries;
    uint64_t rng;
    int c, ret = 1;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        long long *t = c == 'n' ? &n : c == 'd' ? &dim : c == 'c' ? &clusters
                     : c == 'q' ? &nq : c == 's' ? &seed : NULL;
        if (t) {
            if (cr_parse_ll(optarg, 1, 100000000, t)) {
                fprintf(stderr, "cirrus-bench gen: %s\n", cr_error_message());
                return 2;
            }
        } else if (c == 'o') {
            out = optarg;
        } else if (c == 'Q') {
            qout = optarg;
        } else {
            printf("Usage: cirrus-bench gen --out BASE.fvecs [--query-out Q.fvecs] [--n N] "
                   "[--dim D]\n                        [--clusters C] [--queries NQ] [--seed S]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!out) {
        fprintf(stderr, "cirrus-bench gen: --out is required\n");
        return 2;
    }
    rng = (uint64_t)seed * 2654435761u + 1;
    centers = malloc((size_t)(clusters * dim) * sizeof *centers);
    base = malloc((size_t)(n * dim) * sizeof *base);
    queries = malloc((size_t)(nq * dim) * sizeof *queries);
    if (!centers || !base || !queries) {
        fprintf(stderr, "cirrus-bench gen: out of memory\n");
        goto out;
    }
    for (long long i = 0; i < clusters * dim; i++)
        centers[i] = (float)rng_gauss(&rng);
    gen_points(base, (size_t)n, (size_t)dim, centers, (size_t)clusters, 0.35, &rng);
    gen_points(queries, (size_t)nq, (size_t)dim, centers, (size_t)clusters, 0.35, &rng);
    if (cr_fvecs_write(out, base, (size_t)n, (size_t)dim) ||
        (qout && cr_fvecs_write(qout, queries, (size_t)nq, (size_t)dim))) {
        fprintf(stderr, "cirrus-bench gen: %s\n", cr_error_message());
        goto out;
    }
    printf("wrote %lld x %lld to %s%s%s\n", n, dim, out, qout ? " and queries to " : "",
           qout ? qout : "");
    ret = 0;
out:
    free(centers);
    free(base);
    free(queries);
    return ret;
}

static float *load_rows(const char *path, size_t *rows, size_t *dim, int normalize)
{
    cr_vecfile *f = NULL;
    float *x;
    if (cr_vecfile_open(&f, path)) {
        fprintf(stderr, "cirrus-bench: %s\n", cr_error_message());
        return NULL;
    }
    *rows = cr_vecfile_rows(f);
    *dim = cr_vecfile_dim(f);
    x = malloc(*rows * *dim * sizeof *x);
    for (size_t i = 0; x && i < *rows; i++) {
        float *v = x + i * *dim;
        cr_vecfile_row_f32(f, i, v);
        if (normalize) {
            double s = 0;
            for (size_t j = 0; j < *dim; j++)
                s += (double)v[j] * v[j];
            s = sqrt(s);
            for (size_t j = 0; s > 0 && j < *dim; j++)
                v[j] = (float)(v[j] / s);
        }
    }
    cr_vecfile_close(&f);
    return x;
}

/* Exported for bench_search.c: the peer builds the same index in-process. */
float *bench_load_rows(const char *path, size_t *rows, size_t *dim, int normalize);
float *bench_load_rows(const char *path, size_t *rows, size_t *dim, int normalize)
{
    return load_rows(path, rows, dim, normalize);
}

int bench_cmd_truth(int argc, char **argv)
{
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'}, {"queries", required_argument, 0, 'q'},
        {"k", required_argument, 0, 'k'},    {"metric", required_argument, 0, 'm'},
        {"out", required_argument, 0, 'o'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *base_path = NULL, *q_path = NULL, *out = NULL, *metric = "ip";
    long long k = 100;
    size_t nb, d, nq, dq;
    float *base = NULL, *q = NULL, *dist = NULL;
    int64_t *ids = NULL, *all = NULL;
    int32_t *truth = NULL;
    shard_index *ix = NULL;
    shard_index_opts io = shard_index_default_opts();
    shard_index_search_params p = shard_index_default_search_params();
    int c, ret = 1;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'b') base_path = optarg;
        else if (c == 'q') q_path = optarg;
        else if (c == 'o') out = optarg;
        else if (c == 'm') metric = optarg;
        else if (c == 'k' && !cr_parse_ll(optarg, 1, 10000, &k)) ;
        else {
            printf("Usage: cirrus-bench truth --base B.fvecs --queries Q.fvecs --out T.ivecs "
                   "[--k 100] [--metric ip|l2]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!base_path || !q_path || !out || shard_index_metric_parse(metric, &io.metric)) {
        fprintf(stderr, "cirrus-bench truth: --base, --queries, --out and a valid --metric are "
                        "required\n");
        return 2;
    }
    base = load_rows(base_path, &nb, &d, io.metric == SHARD_INDEX_METRIC_IP);
    q = load_rows(q_path, &nq, &dq, io.metric == SHARD_INDEX_METRIC_IP);
    if (!base || !q || d != dq) {
        fprintf(stderr, "cirrus-bench truth: cannot read the files or dimensions differ\n");
        goto out;
    }
    io.dim = (int)d;
    io.factory = "Flat";
    all = malloc(nb * sizeof *all);
    ids = malloc(nq * (size_t)k * sizeof *ids);
    dist = malloc(nq * (size_t)k * sizeof *dist);
    truth = malloc(nq * (size_t)k * sizeof *truth);
    for (size_t i = 0; all && i < nb; i++)
        all[i] = (int64_t)i;
    p.threads = 2;
    if (!all || !ids || !dist || !truth || shard_index_create(&ix, &io) ||
        shard_index_add(ix, (int64_t)nb, all, base) ||
        shard_index_search(ix, (int64_t)nq, q, k, &p, dist, ids)) {
        fprintf(stderr, "cirrus-bench truth: %s\n", cr_error_message());
        goto out;
    }
    for (size_t i = 0; i < nq * (size_t)k; i++)
        truth[i] = (int32_t)ids[i];
    if (cr_ivecs_write(out, truth, nq, (size_t)k)) {
        fprintf(stderr, "cirrus-bench truth: %s\n", cr_error_message());
        goto out;
    }
    printf("wrote top-%lld of %zu queries over %zu vectors to %s\n", k, nq, nb, out);
    ret = 0;
out:
    shard_index_close(&ix);
    free(base);
    free(q);
    free(dist);
    free(ids);
    free(all);
    free(truth);
    return ret;
}

/* Opens a shard directory in-process and reports the time to ready; with --queries, also the
 * engine's own search latency over the loaded index (no transport), to separate the cost of
 * the index from the cost of the server around it. */
int bench_cmd_restart(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, 0, 'd'},
                                         {"queries", required_argument, 0, 'q'},
                                         {"ef", required_argument, 0, 'e'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    shard_engine_opts eo = shard_engine_default_opts();
    shard_engine *e = NULL;
    const char *dir = NULL, *qpath = NULL;
    long long ef = 0;
    int json = 0, c;
    uint64_t t0;
    double ms, p50 = 0;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd') dir = optarg;
        else if (c == 'q') qpath = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'e' && !cr_parse_ll(optarg, 0, 100000, &ef)) ;
        else {
            printf("Usage: cirrus-bench restart --dir SHARD_DIR [--queries Q.fvecs [--ef N]] "
                   "[--json]\nOpens the shard (snapshot load + replay + attribute index) and "
                   "reports the time to ready;\nwith --queries, the engine's own p50 search "
                   "latency (k = 10, one thread).\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "cirrus-bench restart: --dir is required\n");
        return 2;
    }
    t0 = cr_clock_mono_us();
    if (shard_engine_open(&e, dir, &eo)) {
        fprintf(stderr, "cirrus-bench restart: %s\n", cr_error_message());
        return 1;
    }
    ms = (double)(cr_clock_mono_us() - t0) / 1000.0;
    if (qpath) {
        size_t nq, d;
        float *q = load_rows(qpath, &nq, &d, 0);
        double *lat = q ? malloc(nq * sizeof *lat) : NULL;
        shard_engine_hit hits[10];
        for (size_t i = 0; lat && d == (size_t)shard_engine_dim(e) && i < nq; i++) {
            shard_engine_query sq;
            size_t n;
            memset(&sq, 0, sizeof sq);
            sq.vector = q + i * d;
            sq.k = 10;
            sq.ef_search = (uint32_t)ef;
            sq.threads = 1;
            t0 = cr_clock_mono_us();
            shard_engine_search(e, &sq, hits, &n);
            lat[i] = (double)(cr_clock_mono_us() - t0) / 1000.0;
        }
        p50 = lat ? bench_percentile(lat, nq, 0.5) : 0;
        free(lat);
        free(q);
    }
    shard_engine_close(&e);
    if (json)
        printf("{\"restart_ms\":%.1f,\"engine_search_p50_ms\":%.4f,\"peak_rss_mb\":%.1f}\n", ms,
               p50, bench_peak_rss_mb());
    else
        printf("restart-to-ready: %.1f ms (peak RSS %.0f MiB)%s", ms, bench_peak_rss_mb(),
               qpath ? "" : "\n");
    if (!json && qpath)
        printf("; engine search p50 %.3f ms\n", p50);
    return 0;
}
