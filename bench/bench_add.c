/* cirrus-bench add — the in-process FAISS peer of `cirrus build` (issue #13): the same vectors
 * into G indexes of the same factory, trained once on the same even sample the build draws
 * (offline/train.h), each group's rows added in one call, nothing else (no store, no
 * placement hash, no snapshot). Prints items/s of train + adds and the peak RSS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/clock.h"
#include "common/err.h"
#include "offline/train.h"
#include "shard/index.h"

float *bench_load_rows(const char *path, size_t *rows, size_t *dim, int normalize);

typedef struct add_cfg {
    const char *base, *factory, *workdir;
    int groups, metric_l2, threads;
    long long train_size;
} add_cfg;

/* Trains the shared template into path when the factory needs it; *trained says whether. */
static cr_err add_train(const add_cfg *c, const float *x, size_t n, size_t d, const char *path,
                        bool *trained)
{
    uint64_t sample = 0;
    cr_err rc = offline_train_plan((int)d, c->metric_l2, c->factory, c->train_size, n, trained,
                                   &sample);
    if (rc || !*trained)
        return rc;
    float *s = malloc(sample * d * sizeof *s);
    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "train sample of %llu rows", (unsigned long long)sample);
    for (uint64_t i = 0; i < sample; i++)
        memcpy(s + i * d, x + offline_train_pick(i, n, sample) * d, d * sizeof *s);
    rc = offline_train_write((int)d, c->metric_l2, c->factory, sample, s, c->threads, path);
    free(s);
    return rc;
}

/* Group g's rows [g*n/G, (g+1)*n/G) into a fresh index from the template, one add. */
static cr_err add_group(const add_cfg *c, const float *x, size_t n, size_t d, int g,
                        const char *tmpl)
{
    size_t lo = (size_t)g * n / (size_t)c->groups, hi = (size_t)(g + 1) * n / (size_t)c->groups;
    shard_index_opts o = shard_index_default_opts();
    o.dim = (int)d;
    o.metric = c->metric_l2 ? SHARD_INDEX_METRIC_L2 : SHARD_INDEX_METRIC_IP;
    o.factory = c->factory;
    o.template_path = tmpl;
    shard_index *ix = NULL;
    int64_t *ids = malloc((hi - lo + 1) * sizeof *ids);
    cr_err rc = ids ? shard_index_create(&ix, &o) : cr_error_set(CR_ERR_NOMEM, "ids");
    for (size_t i = lo; ids && i < hi; i++)
        ids[i - lo] = (int64_t)i;
    if (!rc)
        rc = shard_index_add(ix, (int64_t)(hi - lo), ids, x + lo * d);
    shard_index_close(&ix);
    free(ids);
    return rc;
}

int bench_cmd_add(int argc, char **argv)
{
    add_cfg c = {.groups = 4, .metric_l2 = 1, .workdir = "/tmp"};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--base") == 0) c.base = argv[i + 1];
        else if (strcmp(argv[i], "--index") == 0) c.factory = argv[i + 1];
        else if (strcmp(argv[i], "--groups") == 0) c.groups = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--metric") == 0) c.metric_l2 = strcmp(argv[i + 1], "ip") != 0;
        else if (strcmp(argv[i], "--train-size") == 0) c.train_size = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0) c.threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--workdir") == 0) c.workdir = argv[i + 1];
    }
    if (!c.base || !c.factory || c.groups < 1) {
        printf("Usage: cirrus-bench add --base B.fvecs --index FACTORY [--groups G] [--metric l2|ip]\n"
               "         [--train-size N] [--threads T] [--workdir DIR]\n"
               "In-process FAISS peer of cirrus build: one shared training, G indexes, one add\n"
               "each. Prints one JSON line {items, seconds, items_per_s, peak_rss_mb}.\n");
        return 2;
    }
    size_t n = 0, d = 0;
    float *x = bench_load_rows(c.base, &n, &d, !c.metric_l2);
    if (!x) {
        fprintf(stderr, "cirrus-bench add: cannot read %s (%s)\n", c.base, cr_error_message());
        return 1;
    }
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/cirrus-bench-add-%d.tmpl", c.workdir, (int)getpid());
    bool trained = false;
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc = add_train(&c, x, n, d, tmpl, &trained);
    for (int g = 0; !rc && g < c.groups; g++)
        rc = add_group(&c, x, n, d, g, trained ? tmpl : NULL);
    double s = (double)(cr_clock_mono_us() - t0) / 1e6;
    if (trained)
        unlink(tmpl);
    free(x);
    if (rc) {
        fprintf(stderr, "cirrus-bench add: %s: %s\n", c.factory, cr_error_message());
        return 1;
    }
    printf("{\"index\":\"%s\",\"items\":%zu,\"seconds\":%.3f,\"items_per_s\":%.0f,"
           "\"peak_rss_mb\":%.0f}\n", c.factory, n, s, (double)n / s, bench_peak_rss_mb());
    return 0;
}
