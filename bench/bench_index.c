/* cirrus-bench index — index quality: recall@k of a shard's index (the real engine in-process:
 * store, backlog, indexer thread) against the same FAISS index built in-process from the same
 * vectors (factory, train on all of them, one add), under three write patterns:
 *   bulk        one write of every item;
 *   batches     writes of --batch items;
 *   interleaved writes of --batch items, a search after each.
 * A third column, "chunked", is the diagnostic: the in-process index fed the way the shard's
 * indexer feeds it (adds of 4,096, training at the default train_size on what came first). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/err.h"
#include "offline/vecfile.h"
#include "shard/engine.h"
#include "shard/index.h"

float *bench_load_rows(const char *path, size_t *rows, size_t *dim, int normalize);

#define MAX_INDEXES 8
#define CHUNK 4096 /* the shard indexer's largest add (backlog.c INDEX_CHUNK) */

typedef struct idx_cfg {
    const char *base, *queries, *truth, *metric, *workdir;
    const char *factories[MAX_INDEXES];
    int n_factories;
    long long k, batch, nprobe, ef, threads;
    int json, no_chunked;
} idx_cfg;

typedef struct data {
    float *base, *q, *qn; /* qn: normalized copy for ip */
    size_t nb, nq, dim, truth_k;
    int32_t *truth;
    shard_index_metric metric;
} data;

static shard_index_search_params params_of(const idx_cfg *c)
{
    shard_index_search_params p = shard_index_default_search_params();
    p.nprobe = (int)c->nprobe;
    p.ef_search = (int)c->ef;
    p.threads = (int)c->threads;
    return p;
}

/* Recall of an in-process index over all queries (one batch call). */
static double index_recall(shard_index *ix, const data *d, const idx_cfg *c)
{
    shard_index_search_params p = params_of(c);
    size_t k = (size_t)c->k;
    float *dist = malloc(d->nq * k * sizeof *dist);
    int64_t *ids = malloc(d->nq * k * sizeof *ids);
    double r = -1;
    if (dist && ids && !shard_index_search(ix, (int64_t)d->nq, d->qn, (int64_t)k, &p, dist, ids))
        r = bench_recall(ids, d->truth, d->nq, k, d->truth_k);
    free(dist);
    free(ids);
    return r;
}

/* FAISS's own build: train on every vector, then one add. `chunked`: adds of CHUNK with the
 * default train_size instead, as the shard's indexer does. */
static double peer_recall(const data *d, const idx_cfg *c, const char *factory, int chunked)
{
    shard_index_opts o = shard_index_default_opts();
    shard_index *ix = NULL;
    int64_t *ids = malloc(d->nb * sizeof *ids);
    double r = -1;
    o.dim = (int)d->dim;
    o.metric = d->metric;
    o.factory = factory;
    o.train_size = chunked ? 0 : (int64_t)d->nb;
    o.hnsw_ef_construction = 40; /* FAISS's default */
    for (size_t i = 0; ids && i < d->nb; i++)
        ids[i] = (int64_t)i;
    if (!ids || shard_index_create(&ix, &o))
        goto out;
    for (size_t at = 0; at < d->nb;) {
        size_t m = chunked ? (d->nb - at < CHUNK ? d->nb - at : CHUNK) : d->nb;
        if (shard_index_add(ix, (int64_t)m, ids + at, d->base + at * d->dim))
            goto out;
        at += m;
    }
    r = index_recall(ix, d, c);
out:
    if (r < 0)
        fprintf(stderr, "cirrus-bench index: peer %s: %s\n", factory, cr_error_message());
    shard_index_close(&ix);
    free(ids);
    return r;
}

/* Writes rows [at, at + m) as items "r<row>" with raw vectors. */
static cr_err engine_put(shard_engine *e, const data *d, size_t at, size_t m, char *names,
                         shard_item *items, shard_engine_write_op *ops,
                         shard_engine_write_result *res)
{
    for (size_t i = 0; i < m; i++) {
        char *nm = names + i * 24;
        snprintf(nm, 24, "r%zu", at + i);
        memset(&items[i], 0, sizeof items[i]);
        items[i].id = nm;
        items[i].vector = d->base + (at + i) * d->dim;
        items[i].dim = d->dim;
        ops[i].is_delete = 0;
        ops[i].item = &items[i];
    }
    cr_err rc = shard_engine_write(e, ops, m, res);
    for (size_t i = 0; rc >= 0 && i < m; i++)
        if (res[i].status)
            return cr_error_set(CR_ERR_INTERNAL, "write r%zu: %s", at + i, res[i].message);
    return rc < 0 ? rc : CR_OK;
}

/* Searches every query through the engine; hits are resolved to rows via their ext ids. */
static double engine_recall(shard_engine *e, const data *d, const idx_cfg *c)
{
    size_t k = (size_t)c->k;
    int64_t *got = malloc(d->nq * k * sizeof *got);
    shard_engine_hit *hits = malloc(k * sizeof *hits);
    shard_hit **res = malloc(k * sizeof *res);
    double r = -1;
    if (!got || !hits || !res)
        goto out;
    for (size_t qi = 0; qi < d->nq; qi++) {
        shard_engine_query sq;
        size_t nh = 0, nr = 0;
        memset(&sq, 0, sizeof sq);
        sq.vector = d->q + qi * d->dim;
        sq.k = (uint32_t)k;
        sq.nprobe = (uint32_t)c->nprobe;
        sq.ef_search = (uint32_t)c->ef;
        sq.threads = 1;
        for (size_t j = 0; j < k; j++)
            got[qi * k + j] = -1;
        if (shard_engine_search(e, &sq, hits, &nh) ||
            shard_engine_hits_fill(e, hits, nh, 0, 0, res, &nr))
            goto out;
        for (size_t j = 0; j < nr && j < k; j++) {
            long long row;
            if (!cr_parse_ll(res[j]->id + 1, 0, (long long)d->nb, &row))
                got[qi * k + j] = row;
            shard_hit_free(&res[j]);
        }
    }
    r = bench_recall(got, d->truth, d->nq, k, d->truth_k);
out:
    free(got);
    free(hits);
    free(res);
    return r;
}

static const char *pattern_names[] = {"bulk", "batches", "interleaved"};

/* Builds a fresh shard under one write pattern and returns its recall (-1 on failure). */
static double shard_recall(const data *d, const idx_cfg *c, const char *factory, int pattern,
                           double *load_s)
{
    char dir[4096];
    shard_engine_opts eo = shard_engine_default_opts();
    shard_engine *e = NULL;
    size_t bsz = pattern == 0 ? d->nb : (size_t)c->batch;
    char *names = malloc(bsz * 24);
    shard_item *items = malloc(bsz * sizeof *items);
    shard_engine_write_op *ops = malloc(bsz * sizeof *ops);
    shard_engine_write_result *res = malloc(bsz * sizeof *res);
    shard_engine_hit hit[10];
    double r = -1;
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc = CR_OK;

    snprintf(dir, sizeof dir, "%s/shard-%d", c->workdir, pattern);
    eo.create = 1;
    eo.dim = (int)d->dim;
    eo.metric = d->metric;
    eo.metric_set = 1;
    eo.factory = factory;
    eo.index_backlog_bytes = (uint64_t)d->nb * d->dim * sizeof(float) + (64u << 20);
    if (!names || !items || !ops || !res || shard_engine_open(&e, dir, &eo))
        goto out;
    for (size_t at = 0; rc == CR_OK && at < d->nb; at += bsz) {
        size_t m = d->nb - at < bsz ? d->nb - at : bsz;
        rc = engine_put(e, d, at, m, names, items, ops, res);
        if (rc == CR_OK && pattern == 2) { /* a search between writes, as clients do */
            shard_engine_query sq;
            size_t nh;
            memset(&sq, 0, sizeof sq);
            sq.vector = d->q + (at / bsz % d->nq) * d->dim;
            sq.k = 10;
            sq.threads = 1;
            rc = shard_engine_search(e, &sq, hit, &nh);
        }
    }
    if (rc == CR_OK)
        rc = shard_engine_index_drain(e);
    *load_s = (double)(cr_clock_mono_us() - t0) / 1e6;
    if (rc == CR_OK)
        r = engine_recall(e, d, c);
out:
    if (r < 0)
        fprintf(stderr, "cirrus-bench index: shard %s %s: %s\n", factory, pattern_names[pattern],
                cr_error_message());
    shard_engine_close(&e);
    free(names);
    free(items);
    free(ops);
    free(res);
    return r;
}

static int load_data(const idx_cfg *c, data *d)
{
    size_t dq, tr, tk;
    cr_vecfile *tf = NULL;
    d->base = bench_load_rows(c->base, &d->nb, &d->dim, 0);
    d->q = bench_load_rows(c->queries, &d->nq, &dq, 0);
    d->qn = bench_load_rows(c->queries, &d->nq, &dq, d->metric == SHARD_INDEX_METRIC_IP);
    if (!d->base || !d->q || !d->qn || dq != d->dim)
        return -1;
    if (d->metric == SHARD_INDEX_METRIC_IP) { /* as the shard's index sees them */
        float *bn = bench_load_rows(c->base, &d->nb, &d->dim, 1);
        if (!bn)
            return -1;
        free(d->base);
        d->base = bn;
    }
    if (cr_vecfile_open(&tf, c->truth))
        return -1;
    tr = cr_vecfile_rows(tf);
    tk = cr_vecfile_dim(tf);
    d->truth = malloc(tr * tk * sizeof *d->truth);
    for (size_t i = 0; d->truth && i < tr; i++)
        cr_vecfile_row_i32(tf, i, d->truth + i * tk);
    cr_vecfile_close(&tf);
    d->truth_k = tk;
    return d->truth && tr == d->nq && tk >= (size_t)c->k ? 0 : -1;
}

static int parse_args(int argc, char **argv, idx_cfg *c)
{
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},    {"queries", required_argument, 0, 'q'},
        {"truth", required_argument, 0, 't'},   {"index", required_argument, 0, 'i'},
        {"metric", required_argument, 0, 'm'},  {"k", required_argument, 0, 'k'},
        {"batch", required_argument, 0, 'B'},   {"nprobe", required_argument, 0, 'n'},
        {"ef", required_argument, 0, 'f'},      {"threads", required_argument, 0, 'T'},
        {"workdir", required_argument, 0, 'w'}, {"json", no_argument, 0, 'j'},
        {"no-chunked", no_argument, 0, 'C'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    c->metric = "l2";
    c->k = 10;
    c->batch = 256;
    c->threads = 2;
    c->workdir = "/tmp";
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        long long *t = ch == 'k' ? &c->k : ch == 'B' ? &c->batch : ch == 'n' ? &c->nprobe
                     : ch == 'f' ? &c->ef : ch == 'T' ? &c->threads : NULL;
        if (t && !cr_parse_ll(optarg, ch == 'n' || ch == 'f' ? 0 : 1, 1000000, t))
            continue;
        switch (ch) {
        case 'b': c->base = optarg; continue;
        case 'q': c->queries = optarg; continue;
        case 't': c->truth = optarg; continue;
        case 'm': c->metric = optarg; continue;
        case 'w': c->workdir = optarg; continue;
        case 'j': c->json = 1; continue;
        case 'C': c->no_chunked = 1; continue;
        case 'i':
            if (c->n_factories < MAX_INDEXES) {
                c->factories[c->n_factories++] = optarg;
                continue;
            }
            break;
        default: break;
        }
        printf("Usage: cirrus-bench index --base B --queries Q --truth T.ivecs --index FACTORY\n"
               "         [--index FACTORY ...] [--metric l2|ip] [--k 10] [--batch 256]\n"
               "         [--nprobe N] [--ef N] [--threads 2] [--workdir /tmp] [--no-chunked]"
               " [--json]\n"
               "Recall@k of a shard's index (engine in-process) under three write patterns\n"
               "(bulk, batches, interleaved) beside the same FAISS index built in-process\n"
               "(trained on every vector, one add); 'chunked' = in-process adds of 4096.\n");
        return ch == 'h' ? 1 : 2;
    }
    return c->base && c->queries && c->truth && c->n_factories > 0 ? 0 : 2;
}

int bench_cmd_index(int argc, char **argv)
{
    idx_cfg c;
    data d;
    char tmpl[4096];
    int ret = 1, worst_fail = 0;
    memset(&c, 0, sizeof c);
    memset(&d, 0, sizeof d);
    int pa = parse_args(argc, argv, &c);
    if (pa)
        return pa == 1 ? 0 : 2;
    if (shard_index_metric_parse(c.metric, &d.metric) || load_data(&c, &d)) {
        fprintf(stderr, "cirrus-bench index: cannot read the data (%s)\n", cr_error_message());
        goto out;
    }
    snprintf(tmpl, sizeof tmpl, "%s/cirrus-idx-XXXXXX", c.workdir);
    if (!mkdtemp(tmpl)) {
        perror("cirrus-bench index: mkdtemp");
        goto out;
    }
    c.workdir = tmpl;
    if (!c.json) {
        printf("%zu x %zu-d, %zu queries, recall@%lld, metric %s, nprobe %lld, ef %lld\n",
               d.nb, d.dim, d.nq, c.k, c.metric, c.nprobe, c.ef);
        printf("| index | pattern | shard | in-process | diff | in-process chunked | load s |\n"
               "|---|---|---|---|---|---|---|\n");
    } else {
        printf("[");
    }
    for (int f = 0; f < c.n_factories; f++) {
        double peer = peer_recall(&d, &c, c.factories[f], 0);
        double chunk = c.no_chunked ? -1 : peer_recall(&d, &c, c.factories[f], 1);
        for (int p = 0; p < 3; p++) {
            double load_s = 0, r = shard_recall(&d, &c, c.factories[f], p, &load_s);
            char cmd[8200];
            if (r < 0 || peer < 0 || r < peer - 0.01)
                worst_fail = 1;
            if (c.json)
                printf("%s{\"index\":\"%s\",\"pattern\":\"%s\",\"recall\":%.4f,"
                       "\"peer_recall\":%.4f,\"diff\":%.4f,\"chunked_recall\":%.4f,"
                       "\"load_duration\":%.2f}",
                       f || p ? "," : "", c.factories[f], pattern_names[p], r, peer, r - peer,
                       chunk, load_s);
            else
                printf("| %s | %s | %.4f | %.4f | %+.4f | %.4f | %.1f |\n", c.factories[f],
                       pattern_names[p], r, peer, r - peer, chunk, load_s);
            fflush(stdout);
            snprintf(cmd, sizeof cmd, "rm -rf '%s/shard-%d'", c.workdir, p);
            if (system(cmd) != 0)
                fprintf(stderr, "cirrus-bench index: cannot remove %s/shard-%d\n", c.workdir, p);
        }
    }
    if (c.json)
        printf("]\n");
    rmdir(c.workdir);
    ret = worst_fail ? 3 : 0; /* 3: some shard recall fell more than 0.01 below the peer */
out:
    free(d.base);
    free(d.q);
    free(d.qn);
    free(d.truth);
    return ret;
}
