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
        if (act == ENC_ACT_GELU) {
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
