/* test_gemm_bf16.c — the bf16 GEMM against a double-precision product of the same bf16-rounded
 * inputs (odd shapes, both betas, 1 and 2 threads), and --precision bf16 embeddings of the
 * parity fixtures (clip-tiny, clip-rn-tiny) against fp32: every cosine >= 0.999. Exits 77 on
 * a CPU without AVX512_BF16 after checking that bf16 is refused there with a clear error. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/test.h"
#include "encoder/clip_model.h"
#include "encoder/gemm_bf16.h"
#include "encoder/safetensors.h"

#define MIN_COS 0.999

static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 8388608.f - 1.f;
}

/* One shape: max |C - ref| / (|A||W| row-col scale) must be at fp32-accumulation level. */
static void check_shape(int rows, int N, int K, float beta)
{
    uint64_t s = (uint64_t)rows * 1000003u + (uint64_t)N * 101u + (uint64_t)K;
    int lda = K + 3, ldc = N + 5;
    float *A = malloc((size_t)rows * lda * sizeof *A), *W = malloc((size_t)N * K * sizeof *W);
    float *C = malloc((size_t)rows * ldc * sizeof *C), *C0 = malloc((size_t)rows * ldc * sizeof *C);
    for (int i = 0; i < rows * lda; i++)
        A[i] = frand(&s);
    for (int i = 0; i < N * K; i++)
        W[i] = frand(&s);
    for (int i = 0; i < rows * ldc; i++)
        C[i] = C0[i] = frand(&s);
    uint16_t *wp = enc_bf16_pack(W, N, K);
    CR_CHECK(wp != NULL);
    CR_CHECK(enc_bf16_gemm_nt(rows, N, K, A, lda, wp, beta, C, ldc) == 0);
    double worst = 0;
    for (int r = 0; r < rows; r++)
        for (int n = 0; n < ldc; n++) {
            if (n >= N) { /* the padding of C is never written */
                if (C[r * ldc + n] != C0[r * ldc + n])
                    worst = 1e9;
                continue;
            }
            double ref = beta * C0[r * ldc + n], scale = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)bf16_round(A[r * lda + k]) * bf16_round(W[n * K + k]);
                ref += p;
                scale += fabs(p);
            }
            double e = fabs(C[r * ldc + n] - ref) / (scale + 1.0);
            if (e > worst || e != e)
                worst = e;
        }
    CR_CHECK_MSG(worst < 1e-5, "rows %d N %d K %d beta %g: error %g", rows, N, K, beta, worst);
    free(wp);
    free(A);
    free(W);
    free(C);
    free(C0);
}

static void test_kernel(void)
{
    static const int shapes[][3] = {{1, 1, 1},   {3, 17, 5},   {8, 32, 64},   {9, 33, 65},
                                    {19, 48, 7}, {50, 96, 128}, {130, 200, 300}, {7, 2304, 768}};
    for (int t = 1; t <= 2; t++) {
        openblas_set_num_threads(t);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int b = 0; b < 2; b++)
                check_shape(shapes[i][0], shapes[i][1], shapes[i][2], (float)b);
    }
    openblas_set_num_threads(1);
}

static double worst_cos(const float *a, const float *b, int rows, int dim)
{
    double worst = 1;
    for (int r = 0; r < rows; r++) {
        double ab = 0, aa = 0, bb = 0;
        for (int c = 0; c < dim; c++) {
            ab += (double)a[r * dim + c] * b[r * dim + c];
            aa += (double)a[r * dim + c] * a[r * dim + c];
            bb += (double)b[r * dim + c] * b[r * dim + c];
        }
        double cs = ab / sqrt(aa * bb + 1e-30);
        if (cs < worst || cs != cs)
            worst = cs;
    }
    return worst;
}

static int32_t *tokens_of(enc_st *st, int *rows)
{
    const enc_st_tensor *t = enc_st_find(st, "caption_tokens");
    if (!t || t->ndim != 2)
        return NULL;
    size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
    int32_t *tok = malloc(n * sizeof *tok);
    if (t->dtype == ENC_ST_I32) {
        memcpy(tok, t->data, n * sizeof *tok);
    } else { /* clip-rn-tiny stores them as F32 */
        int64_t shape[2] = {-1, -1};
        float *f = NULL;
        if (enc_st_get_f32(st, "caption_tokens", 2, shape, &f) != CR_OK) {
            free(tok);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            tok[i] = (int32_t)f[i];
        free(f);
    }
    *rows = (int)t->shape[0];
    return tok;
}

/* Images and captions of a fixture, fp32 vs bf16 (and fp32 vs the fixture's reference). */
static void test_fixture(const char *dir, const char *model)
{
    char path[1200];
    enc_st *st = NULL;
    enc_clip *m32 = NULL, *m16 = NULL;
    float *px = NULL, *want = NULL;
    int64_t any4[4] = {-1, -1, -1, -1}, any2[2] = {-1, -1};
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CR_CHECK_MSG(enc_st_open(&st, path) == CR_OK, "%s", cr_error_message());
    if (!st)
        return;
    CR_CHECK(enc_st_get_f32(st, "pixels", 4, any4, &px) == CR_OK);
    CR_CHECK(enc_st_get_f32(st, "image_embeds", 2, any2, &want) == CR_OK);
    int ncap = 0, nimg = (int)enc_st_find(st, "pixels")->shape[0];
    int32_t *tok = tokens_of(st, &ncap);
    CR_CHECK(tok != NULL);
    snprintf(path, sizeof path, "%s/%s", dir, model);
    enc_clip_params p = enc_clip_default_params();
    CR_CHECK(enc_clip_open(&m32, path, &p) == CR_OK);
    p.precision = ENC_CLIP_BF16;
    CR_CHECK_MSG(enc_clip_open(&m16, path, &p) == CR_OK, "%s", cr_error_message());
    if (!m32 || !m16 || !px || !tok)
        goto out;
    CR_CHECK(enc_clip_get_precision(m16) == ENC_CLIP_BF16);
    int E = enc_clip_embed_dim(m32), n = nimg > ncap ? nimg : ncap;
    float *a = calloc((size_t)n * E, sizeof *a), *b = calloc((size_t)n * E, sizeof *b);
    CR_CHECK(enc_clip_encode_images(m32, px, nimg, a) == CR_OK);
    CR_CHECK(enc_clip_encode_images(m16, px, nimg, b) == CR_OK);
    double ci = worst_cos(a, b, nimg, E), cref = worst_cos(b, want, nimg, E);
    CR_CHECK(enc_clip_encode_tokens(m32, tok, ncap, a) == CR_OK);
    CR_CHECK(enc_clip_encode_tokens(m16, tok, ncap, b) == CR_OK);
    double ct = worst_cos(a, b, ncap, E);
    printf("%s: worst cosine bf16 vs fp32: images %.6f, captions %.6f; bf16 images vs "
           "reference %.6f\n", model, ci, ct, cref);
    CR_CHECK_MSG(ci >= MIN_COS && ct >= MIN_COS && cref >= MIN_COS,
                 "%s: cosines %g %g %g below %g", model, ci, ct, cref, MIN_COS);
    free(a);
    free(b);
out:
    enc_clip_close(&m32);
    enc_clip_close(&m16);
    free(px);
    free(want);
    free(tok);
    enc_st_close(&st);
}

int main(void)
{
    CR_TEST_BEGIN();
    if (!enc_bf16_supported()) {
        char path[1200];
        enc_clip *m = NULL;
        enc_clip_params p = enc_clip_default_params();
        p.precision = ENC_CLIP_BF16;
        snprintf(path, sizeof path, "%s/fixtures/clip-tiny/clip-openai-names.safetensors",
                 cr_test_shared_dir());
        CR_CHECK(enc_clip_open(&m, path, &p) == CR_ERR_UNSUPPORTED && m == NULL);
        printf("no AVX512_BF16 on this CPU: bf16 refused as it should be; kernel not tested\n");
        int rc = CR_TEST_END();
        return rc ? rc : 77;
    }
    test_kernel();
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/fixtures/clip-tiny", cr_test_shared_dir());
    test_fixture(dir, "clip-openai-names.safetensors");
    test_fixture(dir, "clip-hf-names.safetensors");
    snprintf(dir, sizeof dir, "%s/fixtures/clip-rn-tiny", cr_test_shared_dir());
    test_fixture(dir, "clip-rn-openai-names.safetensors");
    return CR_TEST_END();
}
