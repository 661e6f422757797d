/* gemm_bf16.c — see gemm_bf16.h. Only this file is compiled with AVX-512 flags; callers reach
 * it after enc_bf16_supported() said yes. */
#include "encoder/gemm_bf16.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__AVX512BF16__)
#include <immintrin.h>

int enc_bf16_supported(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512bf16");
    }
    return cached;
}

static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);        /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

size_t enc_bf16_packed_len(int N, int K)
{
    return (size_t)round_up(N, 16) * (size_t)round_up(K, 2);
}

uint16_t *enc_bf16_pack(const float *W, int N, int K)
{
    if (!enc_bf16_supported() || N <= 0 || K <= 0)
        return NULL;
    const int Kp = round_up(K, 2), panels = round_up(N, 16) / 16;
    uint16_t *p = calloc(enc_bf16_packed_len(N, K), sizeof *p);
    if (!p)
        return NULL;
    for (int j = 0; j < panels; j++)
        for (int c = 0; c < 16 && 16 * j + c < N; c++) {
            const float *row = W + (size_t)(16 * j + c) * (size_t)K;
            uint16_t *dst = p + (size_t)j * (size_t)Kp * 16 + 2 * c;
            for (int k = 0; k < K; k++)
                dst[(size_t)(k / 2) * 32 + (k & 1)] = to_bf16(row[k]);
        }
    return p;
}

/* rows x K fp32 -> rows x Kp bf16, zero-padded. */
static void convert_a(int rows, int K, const float *A, int lda, uint16_t *out, int Kp)
{
    for (int r = 0; r < rows; r++) {
        const float *a = A + (size_t)r * (size_t)lda;
        uint16_t *o = out + (size_t)r * (size_t)Kp;
        int k = 0;
        for (; k + 32 <= K; k += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(a + k));
            _mm512_storeu_si512((void *)(o + k), (__m512i)v);
        }
        for (; k < K; k++)
            o[k] = to_bf16(a[k]);
        if (K < Kp)
            o[K] = 0;
    }
}

/* MR rows x NP panels (16 columns each) of C; MR and NP are constants at every call site so
 * the accumulators live in registers (8 x 2 = 16 zmm). */
static inline __attribute__((always_inline)) void tile(int MR, int NP, int pairs,
                                                       const uint32_t *a, int lda32,
                                                       const uint16_t *w, size_t wstride,
                                                       float beta, float *C, int ldc,
                                                       __mmask16 m0, __mmask16 m1)
{
    __m512 acc[8][2];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NP; j++)
            acc[r][j] = _mm512_setzero_ps();
    const uint16_t *w0 = w, *w1 = w + wstride;
    for (int p = 0; p < pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(w0 + (size_t)p * 32));
        __m512bh b1 = b0;
        if (NP > 1)
            b1 = (__m512bh)_mm512_loadu_si512((const void *)(w1 + (size_t)p * 32));
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * (size_t)lda32 + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            if (NP > 1)
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NP; j++) {
            float *c = C + (size_t)r * (size_t)ldc + 16 * j;
            __mmask16 m = j ? m1 : m0;
            __m512 v = acc[r][j];
            if (beta != 0.f)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, c));
            _mm512_mask_storeu_ps(c, m, v);
        }
}

static inline __mmask16 mask_for(int cols) { return cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1); }

#define ROWS_CASE(NP)                                                                      \
    switch (mr) {                                                                          \
    case 8: tile(8, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    case 7: tile(7, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    case 6: tile(6, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    case 5: tile(5, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    case 4: tile(4, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    case 3: tile(3, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    case 2: tile(2, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;        \
    default: tile(1, NP, pairs, a, lda32, w, wstride, beta, c, ldc, m0, m1); break;       \
    }

/* Column block [16 * j0, 16 * (j0 + np)) for all rows: the two panels (2 x Kp x 32 bytes)
 * stay in L1/L2 while every row of A streams past them. */
static void column_block(int rows, int N, int Kp, const uint16_t *A16, const uint16_t *Wp,
                         int j0, int np, float beta, float *C, int ldc)
{
    const int pairs = Kp / 2, lda32 = Kp / 2;
    const size_t wstride = (size_t)Kp * 16;
    const uint16_t *w = Wp + (size_t)j0 * wstride;
    __mmask16 m0 = mask_for(N - 16 * j0), m1 = np > 1 ? mask_for(N - 16 * (j0 + 1)) : 0;
    for (int r0 = 0; r0 < rows; r0 += 8) {
        int mr = rows - r0 < 8 ? rows - r0 : 8;
        const uint32_t *a = (const uint32_t *)(const void *)(A16 + (size_t)r0 * (size_t)Kp);
        float *c = C + (size_t)r0 * (size_t)ldc + 16 * j0;
        if (np > 1) {
            ROWS_CASE(2)
        } else {
            ROWS_CASE(1)
        }
    }
}

int enc_bf16_gemm_nt(int rows, int N, int K, const float *A, int lda, const uint16_t *Wp,
                     float beta, float *C, int ldc)
{
    if (rows <= 0 || N <= 0)
        return 0;
    const int Kp = round_up(K, 2), panels = round_up(N, 16) / 16, blocks = (panels + 1) / 2;
    uint16_t *A16 = malloc((size_t)rows * (size_t)Kp * sizeof *A16 + 64);
    if (!A16)
        return -1;
    int threads = openblas_get_num_threads();
    int parts = threads < 2 || (double)rows * N * K < (double)(1 << 18) ? 1 : threads;
    if (parts > 1 && rows >= 64) {
#pragma omp parallel for num_threads(parts) schedule(static)
        for (int r = 0; r < parts; r++) {
            int r0 = (int)((long)rows * r / parts), r1 = (int)((long)rows * (r + 1) / parts);
            convert_a(r1 - r0, K, A + (size_t)r0 * (size_t)lda, lda, A16 + (size_t)r0 * Kp, Kp);
        }
    } else {
        convert_a(rows, K, A, lda, A16, Kp);
    }
#pragma omp parallel for num_threads(parts) schedule(static)
    for (int b = 0; b < blocks; b++) {
        int j0 = 2 * b, np = panels - j0 >= 2 ? 2 : 1;
        column_block(rows, N, Kp, A16, Wp, j0, np, beta, C, ldc);
    }
    free(A16);
    return 0;
}

#else /* no AVX512_BF16 compiler support */

int enc_bf16_supported(void) { return 0; }
size_t enc_bf16_packed_len(int N, int K) { (void)N, (void)K; return 0; }
uint16_t *enc_bf16_pack(const float *W, int N, int K) { (void)W, (void)N, (void)K; return NULL; }
int enc_bf16_gemm_nt(int rows, int N, int K, const float *A, int lda, const uint16_t *Wp,
                     float beta, float *C, int ldc)
{
    (void)rows, (void)N, (void)K, (void)A, (void)lda, (void)Wp, (void)beta, (void)C, (void)ldc;
    return -1;
}
#endif
