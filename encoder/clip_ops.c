/* clip_ops.c — LayerNorm, softmax, activations, attention. See clip_ops.h. */
#include "encoder/clip_ops.h"

#include <cblas.h>
#include <math.h>

void enc_op_layernorm(float *y, size_t ldy, const float *x, size_t ldx, int rows, int dim,
                      const float *w, const float *b, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        float *yr = y + (size_t)r * ldy;
        float s = 0.f;
        for (int c = 0; c < dim; c++)
            s += xr[c];
        float mean = s / (float)dim;
        float v = 0.f;
        for (int c = 0; c < dim; c++) {
            float d = xr[c] - mean;
            v += d * d;
        }
        float inv = 1.f / sqrtf(v / (float)dim + eps);
        for (int c = 0; c < dim; c++)
            yr[c] = (xr[c] - mean) * inv * w[c] + b[c];
    }
}

static inline float quick_gelu(float x) { return x / (1.f + expf(-1.702f * x)); }

static inline float gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }

void enc_op_bias_act(float *x, size_t ld, int rows, int cols, const float *bias, enc_act act)
{
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * ld;
        if (act == ENC_ACT_RELU) {
            for (int c = 0; c < cols; c++) {
                float v = bias ? xr[c] + bias[c] : xr[c];
                xr[c] = v > 0.f ? v : 0.f;
            }
        } else if (act == ENC_ACT_GELU) {
            if (bias)
                for (int c = 0; c < cols; c++)
                    xr[c] = gelu(xr[c] + bias[c]);
            else
                for (int c = 0; c < cols; c++)
                    xr[c] = gelu(xr[c]);
        } else {
            if (bias)
                for (int c = 0; c < cols; c++)
                    xr[c] = quick_gelu(xr[c] + bias[c]);
            else
                for (int c = 0; c < cols; c++)
                    xr[c] = quick_gelu(xr[c]);
        }
    }
}

void enc_op_add_bias(float *x, size_t ld, int rows, int cols, const float *bias)
{
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * ld;
        for (int c = 0; c < cols; c++)
            xr[c] += bias[c];
    }
}

void enc_op_softmax_rows(float *x, size_t ld, int rows, int cols, int causal)
{
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * ld;
        int n = causal ? (r + 1 < cols ? r + 1 : cols) : cols;
        float m = xr[0];
        for (int c = 1; c < n; c++)
            m = xr[c] > m ? xr[c] : m;
        float s = 0.f;
        for (int c = 0; c < n; c++) {
            float e = expf(xr[c] - m);
            xr[c] = e;
            s += e;
        }
        float inv = 1.f / s;
        for (int c = 0; c < n; c++)
            xr[c] *= inv;
        for (int c = n; c < cols; c++)
            xr[c] = 0.f;
    }
}

void enc_op_attention(const float *qkv, int T, int width, int heads, int causal, float *scores,
                      float *out, size_t ldo)
{
    int hd = width / heads;
    int ld = 3 * width;
    float scale = 1.f / sqrtf((float)hd);
    for (int h = 0; h < heads; h++) {
        const float *q = qkv + (size_t)h * hd;
        const float *k = qkv + (size_t)width + (size_t)h * hd;
        const float *v = qkv + 2 * (size_t)width + (size_t)h * hd;
        /* scores = scale * q k^T (causal: the upper triangle is computed but masked) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.f,
                    scores, T);
        enc_op_softmax_rows(scores, (size_t)T, T, T, causal);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.f, scores, T, v, ld, 0.f,
                    out + (size_t)h * hd, (int)ldo);
    }
}

/* ---- small-M matmul ------------------------------------------------------------------------ */

#define SMALL_ROWS 16

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

static float hsum256(__m256 v) __attribute__((target("avx2,fma")));
static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

static void store_dot(float *c, float sum, float beta)
{
    *c = beta == 0.f ? sum : sum + beta * *c;
}

static float half_to_float(uint16_t h) __attribute__((target("f16c")));
static float half_to_float(uint16_t h)
{
    return _cvtsh_ss(h);
}

#define LDH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))

/* fp32 weights */
static void small_nt_avx2(int rows, int N, int K, const float *A, int lda, const float *W,
                          float beta, float *C, int ldc) __attribute__((target("avx2,fma")));
#define SMALL_NT_NAME small_nt_avx2
#define SMALL_NT_W float
#define SMALL_NT_LOAD8(p) _mm256_loadu_ps(p)
#define SMALL_NT_LOAD1(x) (x)
#include "encoder/small_nt.inc"
#undef SMALL_NT_NAME
#undef SMALL_NT_W
#undef SMALL_NT_LOAD8
#undef SMALL_NT_LOAD1

/* fp16 weights (F16C converts 8 at a time): half the bytes to stream */
static void small_nt_avx2_h(int rows, int N, int K, const float *A, int lda, const uint16_t *W,
                            float beta, float *C, int ldc)
    __attribute__((target("avx2,fma,f16c")));
#define SMALL_NT_NAME small_nt_avx2_h
#define SMALL_NT_W uint16_t
#define SMALL_NT_LOAD8(p) LDH(p)
#define SMALL_NT_LOAD1(x) half_to_float(x)
#include "encoder/small_nt.inc"
#undef SMALL_NT_NAME
#undef SMALL_NT_W
#undef SMALL_NT_LOAD8
#undef SMALL_NT_LOAD1

/* CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c"). */
static int have_f16c(void)
{
    static int cached = -1;
    unsigned a, b, c, d;
    if (cached < 0)
        cached = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    return cached;
}

static int have_avx2_fma(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

#if defined(__x86_64__)
/* Streaming the weights is bound by one core's memory bandwidth: a second thread streaming the
 * other half of W nearly halves the time. OpenMP's persistent team hands the halves out in a
 * few microseconds (a pthread per call cost ~50 us, 48 times per caption). OpenBLAS is idle
 * meanwhile, so the two do not oversubscribe the cores. */
static void small_nt(int rows, int N, int K, const float *A, int lda, const float *W,
                     const uint16_t *W16, float beta, float *C, int ldc)
{
    int threads = openblas_get_num_threads();
    int split = (N / 2) & ~1;
    int parts = threads < 2 || (size_t)N * (size_t)K < (1u << 17) || split == 0 ? 1 : 2;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int part = 0; part < parts; part++) {
        int n0 = part ? split : 0, n = parts == 1 ? N : (part ? N - split : split);
        if (W16)
            small_nt_avx2_h(rows, n, K, A, lda, W16 + (size_t)n0 * (size_t)K, beta, C + n0, ldc);
        else
            small_nt_avx2(rows, n, K, A, lda, W + (size_t)n0 * (size_t)K, beta, C + n0, ldc);
    }
}
#endif

void enc_op_matmul_nt(int rows, int N, int K, const float *A, int lda, const float *W,
                      const uint16_t *W16, float beta, float *C, int ldc)
{
#if defined(__x86_64__)
    if (rows <= SMALL_ROWS && have_avx2_fma()) {
        small_nt(rows, N, K, A, lda, W, W16 && have_f16c() ? W16 : NULL, beta, C, ldc);
        return;
    }
#else
    (void)W16;
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, N, K, 1.f, A, lda, W, K, beta, C,
                ldc);
}

/* ---- fp16 copies -------------------------------------------------------------------------- */

#if defined(__x86_64__)
static int to_f16_exact_f16c(const float *x, size_t n, uint16_t *out)
    __attribute__((target("avx2,f16c")));
static int to_f16_exact_f16c(const float *x, size_t n, uint16_t *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 back = _mm256_cvtph_ps(h);
        if (_mm256_movemask_ps(_mm256_cmp_ps(back, v, _CMP_NEQ_UQ)))
            return 0;
        _mm_storeu_si128((__m128i *)(void *)(out + i), h);
    }
    for (; i < n; i++) {
        uint16_t h = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
        if (_cvtsh_ss(h) != x[i])
            return 0;
        out[i] = h;
    }
    return 1;
}

static void from_f16_f16c(const uint16_t *h, size_t n, float *out)
    __attribute__((target("avx2,f16c")));
static void from_f16_f16c(const uint16_t *h, size_t n, float *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, LDH(h + i));
    for (; i < n; i++)
        out[i] = _cvtsh_ss(h[i]);
}
#endif

int enc_op_to_f16_exact(const float *x, size_t n, uint16_t *out)
{
#if defined(__x86_64__)
    if (have_f16c() && have_avx2_fma())
        return to_f16_exact_f16c(x, n, out);
#endif
    (void)x, (void)n, (void)out;
    return 0;
}

void enc_op_from_f16(const uint16_t *h, size_t n, float *out)
{
#if defined(__x86_64__)
    from_f16_f16c(h, n, out); /* only ever called when enc_op_to_f16_exact succeeded */
#else
    (void)h, (void)n, (void)out;
#endif
}
