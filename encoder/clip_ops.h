/* clip_ops.h — the compute layer under clip_model.h (internal to the encoder module).
 *
 * 1. Kernels (clip_ops.c): LayerNorm, softmax, activations, multi-head attention. All work on
 *    row-major fp32 matrices with an explicit leading dimension (`ld`, in floats), run on the
 *    calling thread (attention calls cblas_sgemm, which uses OpenBLAS's threads), and keep no
 *    state: any number of threads may call them on distinct buffers.
 * 2. The fp32 weight layout of a loaded CLIP (enc_clip_weights, filled by clip_model.c) and
 *    the tower forward passes over it (clip_forward.c). The forward functions only read the
 *    weights and allocate their own scratch, so they may run concurrently on one model.
 */
#ifndef ENC_CLIP_OPS_H
#define ENC_CLIP_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum enc_act {
    ENC_ACT_QUICK_GELU = 0, /* x * sigmoid(1.702 x) — OpenAI CLIP */
    ENC_ACT_GELU = 1,       /* x * Phi(x), exact (erf) — most LAION OpenCLIP models */
    ENC_ACT_RELU = 2,       /* max(x, 0) — the ResNet towers */
} enc_act;

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b for each of `rows` rows of `dim` floats.
 * y may equal x (in place). */
void enc_op_layernorm(float *y, size_t ldy, const float *x, size_t ldx, int rows, int dim,
                      const float *w, const float *b, float eps);

/* x[r][c] = act(x[r][c] + bias[c]) (bias may be NULL), in place. */
void enc_op_bias_act(float *x, size_t ld, int rows, int cols, const float *bias, enc_act act);

/* x[r][c] += bias[c], in place. */
void enc_op_add_bias(float *x, size_t ld, int rows, int cols, const float *bias);

/* C[rows x N] = A[rows x K] · W[N x K]^T + beta · C (W row-major, as CLIP stores Linear
 * weights). Few rows (a short caption) take a kernel that streams W once without packing it —
 * there the weights, not the arithmetic, are the cost; otherwise cblas_sgemm. */
void enc_op_matmul_nt(int rows, int N, int K, const float *A, int lda, const float *W,
                      const uint16_t *W16, float beta, float *C, int ldc);
/* W16 (may be NULL): the same W in IEEE half precision, used by the few-rows kernel (half the
 * bytes to stream). Only ever given when every weight is exactly representable in fp16. */

/* Converts n floats to IEEE half precision into out; returns 1 when every value round-trips
 * exactly (so the half copy is the same weights), 0 otherwise or without F16C. */
int enc_op_to_f16_exact(const float *x, size_t n, uint16_t *out);
/* out[0..n) = the floats of n halves. */
void enc_op_from_f16(const uint16_t *h, size_t n, float *out);

/* Softmax of each row in place. With `causal`, row r uses columns [0, r] only and the rest of
 * the row is set to 0. */
void enc_op_softmax_rows(float *x, size_t ld, int rows, int cols, int causal);

/* Multi-head self-attention of one sequence of T tokens.
 * qkv: [T, 3*width] (q | k | v, each split into `heads` blocks of width/heads);
 * out: [T, width] (ldo floats per row), written, not accumulated;
 * scores: scratch of T*T floats. Scale 1/sqrt(head_dim). */
void enc_op_attention(const float *qkv, int T, int width, int heads, int causal, float *scores,
                      float *out, size_t ldo);

/* ---- weight layout ---- */

/* One pre-LN residual block. Linear weights are [out, in] row-major (y = x W^T + b). */
typedef struct enc_clip_block {
    float *ln1_w, *ln1_b;   /* [w] */
    float *qkv_w, *qkv_b;   /* [3w, w], [3w]: q rows, then k, then v */
    float *out_w, *out_b;   /* [w, w], [w] */
    float *ln2_w, *ln2_b;   /* [w] */
    float *fc_w, *fc_b;     /* [mlp, w], [mlp] */
    float *proj_w, *proj_b; /* [w, mlp], [w] */
    /* Exact fp16 copies of the four matrices (text tower, when representable), else NULL. */
    uint16_t *qkv_h, *out_h, *fc_h, *proj_h;
    /* --precision bf16: the four matrices packed for gemm_bf16.h, else NULL (fp32 path). */
    uint16_t *qkv_bf, *out_bf, *fc_bf, *proj_bf;
} enc_clip_block;

typedef struct enc_clip_tower {
    int width, layers, heads, mlp;
    enc_clip_block *blocks; /* layers entries */
    float *pos;             /* [positions, width] */
    float *ln_w, *ln_b;     /* ln_post (vision) / ln_final (text) */
    float *proj;            /* [embed, width] */
} enc_clip_tower;

typedef struct enc_clip_weights {
    enc_clip_tower vis, txt;
    int embed, patch, grid, image_size; /* grid = image_size / patch */
    int vocab, context;
    float *conv_w; /* [vis.width, 3 * patch * patch], patch pixels in (c, y, x) order */
    float *cls;    /* [vis.width] */
    float *ln_pre_w, *ln_pre_b;
    float *tok_emb;      /* [vocab, txt.width]; NULL when tok_emb_h holds it */
    uint16_t *tok_emb_h; /* the same in fp16, when every value is exactly representable */
    enc_act act;
    float eps;
} enc_clip_weights;

/* Forward passes (clip_forward.c); arguments as the enc_clip_encode_* functions of
 * clip_model.h, already validated for NULLs. Return CR_OK, CR_ERR_NOMEM or CR_ERR_INVALID
 * (token id out of range). */
cr_err enc_fwd_images(const enc_clip_weights *w, const float *pixels, int n, float *out);
cr_err enc_fwd_tokens(const enc_clip_weights *w, const int32_t *tokens, int n, const float *pseudo,
                      int32_t pseudo_id, const float *ctx, int n_ctx, float *out);

#endif
