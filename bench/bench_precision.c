/* bench_precision.c — the bf16 path measured against fp32 for `cirrus-bench encoder`:
 * GFLOP/s of one large GEMM (OpenBLAS sgemm vs gemm_bf16.h), the worst cosine of bf16 to fp32
 * embeddings, and top-10 agreement of retrieval (text and image queries) over a FAISS Flat
 * index built with bf16 embeddings against the fp32 one. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/clock.h"
#include "encoder/clip_model.h"
#include "encoder/gemm_bf16.h"
#include "encoder/image.h"
#include "shard/index.h"

/* Best of 5 timed runs (after one warm-up) of C[M,N] = A W^T, fp32 OpenBLAS and bf16. */
void bench_gemm_pair(int M, int N, int K, double *sgemm_gflops, double *bf16_gflops)
{
    float *a = malloc((size_t)M * K * sizeof *a), *w = malloc((size_t)N * K * sizeof *w),
          *c = malloc((size_t)M * N * sizeof *c);
    uint16_t *wp = NULL;
    double flop = 2.0 * M * N * (double)K;
    *sgemm_gflops = *bf16_gflops = 0;
    if (!a || !w || !c)
        goto out;
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = (float)(i % 5) * 0.1f;
    for (int rep = 0; rep < 6; rep++) {
        uint64_t t0 = cr_clock_mono_ns();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, a, K, w, K, 0.f, c, N);
        double g = flop / ((double)(cr_clock_mono_ns() - t0) / 1e9) / 1e9;
        if (rep > 0 && g > *sgemm_gflops)
            *sgemm_gflops = g;
    }
    wp = enc_bf16_supported() ? enc_bf16_pack(w, N, K) : NULL;
    for (int rep = 0; wp && rep < 6; rep++) {
        uint64_t t0 = cr_clock_mono_ns();
        if (enc_bf16_gemm_nt(M, N, K, a, K, wp, 0.f, c, N))
            break;
        double g = flop / ((double)(cr_clock_mono_ns() - t0) / 1e9) / 1e9;
        if (rep > 0 && g > *bf16_gflops)
            *bf16_gflops = g;
    }
out:
    free(wp);
    free(a);
    free(w);
    free(c);
}

/* A smooth random picture per image (a few random plane waves per channel, normalized-pixel
 * range): embeddings of random-weight models spread more than with white noise. */
static void synth_image(float *px, int S, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    float f[3][3][3];
    for (int c = 0; c < 3; c++)
        for (int w = 0; w < 3; w++)
            for (int j = 0; j < 3; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                f[c][w][j] = (float)((s >> 40) & 0xffff) / 65536.f;
            }
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                float v = 0;
                for (int w = 0; w < 3; w++)
                    v += sinf(0.3f * (f[c][w][0] * (float)x + f[c][w][1] * (float)y) +
                              6.28f * f[c][w][2]);
                px[((size_t)c * S + y) * S + x] = v / 1.7f;
            }
}

/* Images first..first+n: `catalog` = the garment catalog's items through CLIP's
 * preprocessing, else plane waves at model size. */
static int encode_catalog(const enc_clip *m, int first, int n, int catalog, float *emb)
{
    const int S = enc_clip_image_size(m), E = enc_clip_embed_dim(m), B = 8;
    float *px = malloc((size_t)B * 3 * S * S * sizeof *px);
    unsigned char *rgb = malloc((size_t)BENCH_CATALOG_IMG * BENCH_CATALOG_IMG * 3);
    int rc = px && rgb ? 0 : -1;
    if (rc)
        cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i += B) {
        int b = n - i < B ? n - i : B;
        for (int j = 0; j < b && !rc; j++) {
            float *o = px + (size_t)j * 3 * S * S;
            enc_image *img = NULL;
            if (!catalog) {
                synth_image(o, S, (uint64_t)(first + i + j));
                continue;
            }
            bench_catalog_draw(rgb, first + i + j);
            rc = enc_image_from_pixels(BENCH_CATALOG_IMG, BENCH_CATALOG_IMG, ENC_IMAGE_RGB, rgb,
                                       &img) ||
                         enc_image_preprocess(img, ENC_PREPROCESS_CLIP, S, o)
                     ? -1
                     : 0;
            enc_image_free(&img);
        }
        if (!rc)
            rc = enc_clip_encode_images(m, px, b, emb + (size_t)i * E) ? -1 : 0;
    }
    free(px);
    free(rgb);
    return rc;
}

/* Random 12-token captions (sot, 10 words, eot), query q. */
static int encode_queries(const enc_clip *m, int nq, float *emb)
{
    const int L = enc_clip_context_length(m), V = enc_clip_vocab_size(m);
    int32_t *tok = calloc((size_t)L, sizeof *tok);
    int rc = tok && L >= 12 && V > 1000 ? 0 : -1;
    for (int q = 0; !rc && q < nq; q++) {
        uint64_t s = (uint64_t)q * 2654435761u + 7;
        tok[0] = V - 2;
        for (int i = 1; i < 11; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            tok[i] = 256 + (int)((s >> 33) % (uint64_t)(V - 1000));
        }
        tok[11] = V - 1;
        rc = enc_clip_encode_tokens(m, tok, 1, emb + (size_t)q * enc_clip_embed_dim(m)) ? -1 : 0;
    }
    free(tok);
    return rc;
}

static void normalize(float *v, size_t rows, int E)
{
    for (size_t r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < E; c++)
            s += (double)v[r * E + c] * v[r * E + c];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.f;
        for (int c = 0; c < E; c++)
            v[r * E + c] *= inv;
    }
}

static double worst_cos(const float *a, const float *b, size_t rows, int E)
{
    double worst = 1; /* rows are unit length */
    for (size_t r = 0; r < rows; r++) {
        double d = 0;
        for (int c = 0; c < E; c++)
            d += (double)a[r * E + c] * b[r * E + c];
        if (d < worst || d != d)
            worst = d;
    }
    return worst;
}

static int same_set(const int64_t *a, const int64_t *b)
{
    for (int i = 0; i < 10; i++) {
        int hit = 0;
        for (int j = 0; j < 10 && !hit; j++)
            hit = a[i] == b[j];
        if (!hit)
            return 0;
    }
    return 1;
}

/* The top-K of nq queries over a FAISS Flat (inner product) index of the n catalog rows. */
#define CHECK_K 11 /* the top-10 and the first item after it */
static int flat_topk(const float *cat, int n, const float *q, int nq, int E, int64_t *ids,
                     float *dist)
{
    shard_index_opts o = shard_index_default_opts();
    shard_index *ix = NULL;
    int64_t *lab = malloc((size_t)n * sizeof *lab);
    int rc = -1;
    o.dim = E;
    o.factory = "Flat";
    if (!lab) {
        cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        lab[i] = i;
    if (!shard_index_create(&ix, &o) && !shard_index_add(ix, n, lab, cat) &&
        !shard_index_search(ix, nq, q, CHECK_K, NULL, dist, ids))
        rc = 0;
out:
    shard_index_close(&ix);
    free(lab);
    return rc;
}

static double dot(const float *a, const float *b, int E)
{
    double d = 0;
    for (int c = 0; c < E; c++)
        d += (double)a[c] * b[c];
    return d;
}

/* Fraction of queries whose top-10 over the bf16 index (bf16 queries) is the fp32 one; adds
 * the top-10 hits of bf16 in fp32's to *hits, and to *tie the differing queries where fp32's
 * margin between its 10th and 11th score is below the largest bf16 score error on fp32's
 * top-11 (the swap is within bf16 rounding). */
static double agreement(const float *cat32, const float *cat16, const float *q32,
                        const float *q16, int n, int nq, int E, long *hits, long *tie)
{
    const size_t K = CHECK_K;
    int64_t *a = malloc((size_t)nq * K * sizeof *a), *b = malloc((size_t)nq * K * sizeof *b);
    float *da = malloc((size_t)nq * K * sizeof *da), *db = malloc((size_t)nq * K * sizeof *db);
    int same = 0;
    double r = -1;
    if (!a || !b || !da || !db || flat_topk(cat32, n, q32, nq, E, a, da) ||
        flat_topk(cat16, n, q16, nq, E, b, db))
        goto out;
    for (int q = 0; q < nq; q++) {
        const int64_t *ra = a + (size_t)q * K, *rb = b + (size_t)q * K;
        int s = same_set(ra, rb);
        same += s;
        for (int i = 0; i < 10; i++)
            for (int j = 0; j < 10; j++)
                *hits += ra[i] == rb[j];
        if (!s && ra[10] >= 0) {
            double err = 0, margin = da[(size_t)q * K + 9] - da[(size_t)q * K + 10];
            for (size_t i = 0; i < K; i++) {
                double e = fabs(dot(q16 + (size_t)q * E, cat16 + (size_t)ra[i] * E, E) -
                                da[(size_t)q * K + i]);
                err = e > err ? e : err;
            }
            *tie += margin < err;
        }
    }
    r = (double)same / nq;
out:
    free(a);
    free(b);
    free(da);
    free(db);
    return r;
}

int bench_precision_check(const char *model, int threads, int n, int nq, int catalog,
                          bench_precision_result *r)
{
    enc_clip *m32 = NULL, *m16 = NULL;
    enc_clip_params p = enc_clip_default_params();
    float *c32 = NULL, *c16 = NULL, *q32 = NULL, *q16 = NULL, *i32 = NULL, *i16 = NULL;
    long hits = 0, tie = 0;
    int rc = -1;
    memset(r, 0, sizeof *r);
    p.threads = threads;
    if (enc_clip_open(&m32, model, &p))
        goto out;
    p.precision = ENC_CLIP_BF16;
    if (enc_clip_open(&m16, model, &p))
        goto out;
    const int E = enc_clip_embed_dim(m32);
    c32 = malloc((size_t)n * E * sizeof *c32);
    c16 = malloc((size_t)n * E * sizeof *c16);
    q32 = malloc((size_t)nq * E * sizeof *q32);
    q16 = malloc((size_t)nq * E * sizeof *q16);
    i32 = malloc((size_t)nq * E * sizeof *i32);
    i16 = malloc((size_t)nq * E * sizeof *i16);
    if (!c32 || !c16 || !q32 || !q16 || !i32 || !i16) {
        cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t t0 = cr_clock_mono_us();
    if (encode_catalog(m32, 0, n, catalog, c32) || encode_queries(m32, nq, q32) ||
        encode_catalog(m32, n, nq, catalog, i32))
        goto out;
    uint64_t t1 = cr_clock_mono_us();
    if (encode_catalog(m16, 0, n, catalog, c16) || encode_queries(m16, nq, q16) ||
        encode_catalog(m16, n, nq, catalog, i16))
        goto out;
    uint64_t t2 = cr_clock_mono_us();
    normalize(c32, (size_t)n, E);
    normalize(c16, (size_t)n, E);
    normalize(q32, (size_t)nq, E);
    normalize(q16, (size_t)nq, E);
    normalize(i32, (size_t)nq, E);
    normalize(i16, (size_t)nq, E);
    r->worst_cos_images = worst_cos(c32, c16, (size_t)n, E);
    r->worst_cos_text = worst_cos(q32, q16, (size_t)nq, E);
    r->worst_cos_queries = worst_cos(i32, i16, (size_t)nq, E);
    if (r->worst_cos_queries < r->worst_cos_images)
        r->worst_cos_images = r->worst_cos_queries;
    r->top10_same_text = agreement(c32, c16, q32, q16, n, nq, E, &hits, &tie);
    long text_hits = hits;
    r->top10_same_image = agreement(c32, c16, i32, i16, n, nq, E, &hits, &tie);
    r->top10_overlap_image = (double)(hits - text_hits) / (10.0 * nq);
    if (r->top10_same_text < 0 || r->top10_same_image < 0)
        goto out;
    r->top10_same = (r->top10_same_text + r->top10_same_image) / 2;
    {   /* the same indexes searched with the fp32 query vectors */
        long h2 = 0, tie2 = 0;
        double a = agreement(c32, c16, q32, q32, n, nq, E, &h2, &tie2),
               b = agreement(c32, c16, i32, i32, n, nq, E, &h2, &tie2);
        if (a < 0 || b < 0)
            goto out;
        r->top10_same_fp32q_text = a;
        r->top10_same_fp32q_image = b;
    }
    r->top10_overlap = (double)hits / (20.0 * nq);
    r->differ_within_rounding = tie;
    r->seconds_fp32 = (double)(t1 - t0) / 1e6;
    r->seconds_bf16 = (double)(t2 - t1) / 1e6;
    r->images = n;
    r->queries = nq;
    rc = 0;
out:
    enc_clip_close(&m32);
    enc_clip_close(&m16);
    free(c32);
    free(c16);
    free(q32);
    free(q16);
    free(i32);
    free(i16);
    return rc;
}
