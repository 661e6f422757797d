/* bench_precision.c — the bf16 path measured against fp32 for `cirrus-bench encoder`:
 * GFLOP/s of one large GEMM (OpenBLAS sgemm vs gemm_bf16.h), the worst cosine of bf16 to fp32
 * embeddings, and top-10 agreement of retrieval over an index built with bf16 embeddings. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/clock.h"
#include "encoder/clip_model.h"
#include "encoder/gemm_bf16.h"

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

static int encode_catalog(const enc_clip *m, int n, float *emb)
{
    const int S = enc_clip_image_size(m), E = enc_clip_embed_dim(m), B = 8;
    float *px = malloc((size_t)B * 3 * S * S * sizeof *px);
    int rc = px ? 0 : -1;
    for (int i = 0; !rc && i < n; i += B) {
        int b = n - i < B ? n - i : B;
        for (int j = 0; j < b; j++)
            synth_image(px + (size_t)j * 3 * S * S, S, (uint64_t)(i + j));
        rc = enc_clip_encode_images(m, px, b, emb + (size_t)i * E) ? -1 : 0;
    }
    free(px);
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

/* Indices of the 10 best scores of row q (descending), brute force. */
static void top10(const float *scores, int n, int *out)
{
    float best[10];
    for (int k = 0; k < 10; k++)
        best[k] = -INFINITY, out[k] = -1;
    for (int i = 0; i < n; i++) {
        if (scores[i] <= best[9])
            continue;
        int k = 9;
        while (k > 0 && best[k - 1] < scores[i]) {
            best[k] = best[k - 1];
            out[k] = out[k - 1];
            k--;
        }
        best[k] = scores[i];
        out[k] = i;
    }
}

static int same_set(const int *a, const int *b)
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

/* Fraction of queries whose top-10 over the bf16 index (bf16 queries) is the fp32 one. */
static double agreement(const float *cat32, const float *cat16, const float *q32,
                        const float *q16, int n, int nq, int E, double *overlap)
{
    float *s32 = malloc((size_t)nq * n * sizeof *s32), *s16 = malloc((size_t)nq * n * sizeof *s16);
    int same = 0;
    long hits = 0;
    if (!s32 || !s16) {
        free(s32);
        free(s16);
        return -1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, E, 1.f, q32, E, cat32, E, 0.f,
                s32, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, E, 1.f, q16, E, cat16, E, 0.f,
                s16, n);
    for (int q = 0; q < nq; q++) {
        int a[10], b[10];
        top10(s32 + (size_t)q * n, n, a);
        top10(s16 + (size_t)q * n, n, b);
        same += same_set(a, b);
        for (int i = 0; i < 10; i++)
            for (int j = 0; j < 10; j++)
                hits += a[i] == b[j];
    }
    free(s32);
    free(s16);
    *overlap = (double)hits / (10.0 * nq);
    return (double)same / nq;
}

int bench_precision_check(const char *model, int threads, int n, int nq, bench_precision_result *r)
{
    enc_clip *m32 = NULL, *m16 = NULL;
    enc_clip_params p = enc_clip_default_params();
    float *c32 = NULL, *c16 = NULL, *q32 = NULL, *q16 = NULL;
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
    if (!c32 || !c16 || !q32 || !q16) {
        cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t t0 = cr_clock_mono_us();
    if (encode_catalog(m32, n, c32) || encode_queries(m32, nq, q32))
        goto out;
    uint64_t t1 = cr_clock_mono_us();
    if (encode_catalog(m16, n, c16) || encode_queries(m16, nq, q16))
        goto out;
    uint64_t t2 = cr_clock_mono_us();
    normalize(c32, (size_t)n, E);
    normalize(c16, (size_t)n, E);
    normalize(q32, (size_t)nq, E);
    normalize(q16, (size_t)nq, E);
    r->worst_cos_images = worst_cos(c32, c16, (size_t)n, E);
    r->worst_cos_text = worst_cos(q32, q16, (size_t)nq, E);
    r->top10_same = agreement(c32, c16, q32, q16, n, nq, E, &r->top10_overlap);
    r->seconds_fp32 = (double)(t1 - t0) / 1e6;
    r->seconds_bf16 = (double)(t2 - t1) / 1e6;
    r->images = n;
    r->queries = nq;
    rc = r->top10_same < 0 ? -1 : 0;
out:
    enc_clip_close(&m32);
    enc_clip_close(&m16);
    free(c32);
    free(c16);
    free(q32);
    free(q16);
    return rc;
}
