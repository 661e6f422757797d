/* clip_forward.c — the image and text towers of CLIP over enc_clip_weights (clip_ops.h).
 *
 * Activations of a chunk of images or sequences live in one scratch block, as row-major
 * [rows, width] matrices with every token of every item stacked, so that each linear layer is
 * one cblas_sgemm over all tokens. Attention runs per item (and per head) on its own rows.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/clip_model.h"
#include "encoder/clip_ops.h"
#include "encoder/gemm_bf16.h"

typedef struct scratch {
    float *x;      /* [rows, w] residual stream */
    float *h;      /* [rows, w] LayerNorm output / attention output */
    float *qkv;    /* [rows, 3w] */
    float *mlp;    /* [rows, mlp] (also im2col patches) */
    float *scores; /* [T, T] */
    int *off;      /* [items] first row of each item */
    int *len;      /* [items] its number of rows */
    void *block;
} scratch;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static cr_err scratch_alloc(scratch *s, size_t rows, int w, size_t mlp_floats, int max_t, int items)
{
    size_t nx = round16(rows * (size_t)w), nq = round16(rows * 3 * (size_t)w);
    size_t nm = round16(mlp_floats), ns = round16((size_t)max_t * (size_t)max_t);
    size_t ni = round16(2 * (size_t)items);
    size_t bytes = (2 * nx + nq + nm + ns) * sizeof(float) + ni * sizeof(int);
    memset(s, 0, sizeof *s);
    s->block = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!s->block)
        return cr_error_set(CR_ERR_NOMEM, "out of memory for %zu bytes of encoder scratch", bytes);
    float *p = s->block;
    s->x = p;
    p += nx;
    s->h = p;
    p += nx;
    s->qkv = p;
    p += nq;
    s->mlp = p;
    p += nm;
    s->scores = p;
    p += ns;
    s->off = (int *)p;
    s->len = s->off + items;
    return CR_OK;
}

/* One Linear: the bf16 kernel when the block was packed for it (falls back to fp32 only if
 * its scratch cannot be allocated), else the fp32 path. */
static void linear(int rows, int N, int K, const float *A, const float *W, const uint16_t *W16,
                   const uint16_t *Wbf, float beta, float *C)
{
    if (Wbf && enc_bf16_gemm_nt(rows, N, K, A, K, Wbf, beta, C, N) == 0)
        return;
    enc_op_matmul_nt(rows, N, K, A, K, W, W16, beta, C, N);
}

/* x = blocks(x): `nseq` sequences at rows off[i] .. off[i] + len[i] - 1. */
static void run_blocks(const enc_clip_weights *wt, const enc_clip_tower *t, scratch *s, int rows,
                       int nseq, int causal)
{
    const int W = t->width, M = t->mlp;
    for (int l = 0; l < t->layers; l++) {
        const enc_clip_block *b = &t->blocks[l];
        /* attention: x += out_proj(MHA(ln_1(x))) */
        enc_op_layernorm(s->h, (size_t)W, s->x, (size_t)W, rows, W, b->ln1_w, b->ln1_b, wt->eps);
        linear(rows, 3 * W, W, s->h, b->qkv_w, b->qkv_h, b->qkv_bf, 0.f, s->qkv);
        enc_op_add_bias(s->qkv, 3 * (size_t)W, rows, 3 * W, b->qkv_b);
        for (int i = 0; i < nseq; i++)
            enc_op_attention(s->qkv + (size_t)s->off[i] * 3 * W, s->len[i], W, t->heads, causal,
                             s->scores, s->h + (size_t)s->off[i] * W, (size_t)W);
        enc_op_add_bias(s->x, (size_t)W, rows, W, b->out_b);
        linear(rows, W, W, s->h, b->out_w, b->out_h, b->out_bf, 1.f, s->x);
        /* MLP: x += c_proj(act(c_fc(ln_2(x)))) */
        enc_op_layernorm(s->h, (size_t)W, s->x, (size_t)W, rows, W, b->ln2_w, b->ln2_b, wt->eps);
        linear(rows, M, W, s->h, b->fc_w, b->fc_h, b->fc_bf, 0.f, s->mlp);
        enc_op_bias_act(s->mlp, (size_t)M, rows, M, b->fc_b, wt->act);
        enc_op_add_bias(s->x, (size_t)W, rows, W, b->proj_b);
        linear(rows, W, M, s->mlp, b->proj_w, b->proj_h, b->proj_bf, 1.f, s->x);
    }
}

static cr_err images_chunk(const enc_clip_weights *wt, const float *pixels, int nb, float *out)
{
    const enc_clip_tower *t = &wt->vis;
    const int S = wt->image_size, p = wt->patch, G = wt->grid, P = G * G, T = P + 1;
    const int W = t->width, K = 3 * p * p, E = wt->embed;
    const size_t rows = (size_t)nb * T, npatch = (size_t)nb * P;
    size_t mlp_floats = rows * (size_t)t->mlp;
    if (npatch * (size_t)K > mlp_floats)
        mlp_floats = npatch * (size_t)K;
    scratch s;
    cr_err rc = scratch_alloc(&s, rows, W, mlp_floats, T, nb);
    if (rc)
        return rc;

    /* im2col: row (b, gy, gx) holds the patch's pixels in (c, y, x) order, like conv1. */
    float *col = s.mlp;
    for (int b = 0; b < nb; b++) {
        const float *img = pixels + (size_t)b * 3 * S * S;
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                float *dst = col + ((size_t)b * P + (size_t)gy * G + gx) * K;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(dst + (c * p + ky) * p,
                               img + ((size_t)c * S + (size_t)gy * p + ky) * S + (size_t)gx * p,
                               (size_t)p * sizeof(float));
            }
    }
    /* patch embedding: one GEMM [nb*P, K] x [W, K]^T, into the qkv buffer */
    float *emb = s.qkv;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)npatch, W, K, 1.f, col, K, wt->conv_w,
                K, 0.f, emb, W);
    for (int b = 0; b < nb; b++) {
        float *xb = s.x + (size_t)b * T * W;
        for (int c = 0; c < W; c++)
            xb[c] = wt->cls[c] + t->pos[c];
        for (int i = 0; i < P; i++) {
            const float *e = emb + ((size_t)b * P + i) * W;
            const float *ps = t->pos + (size_t)(i + 1) * W;
            float *xr = xb + (size_t)(i + 1) * W;
            for (int c = 0; c < W; c++)
                xr[c] = e[c] + ps[c];
        }
        s.off[b] = b * T;
        s.len[b] = T;
    }
    enc_op_layernorm(s.x, (size_t)W, s.x, (size_t)W, (int)rows, W, wt->ln_pre_w, wt->ln_pre_b,
                     wt->eps);
    run_blocks(wt, t, &s, (int)rows, nb, 0);
    /* ln_post on each class token, then the projection */
    enc_op_layernorm(s.h, (size_t)W, s.x, (size_t)T * W, nb, W, t->ln_w, t->ln_b, wt->eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, E, W, 1.f, s.h, W, t->proj, W, 0.f,
                out, E);
    free(s.block);
    return CR_OK;
}

cr_err enc_fwd_images(const enc_clip_weights *w, const float *pixels, int n, float *out)
{
    const size_t img = 3 * (size_t)w->image_size * (size_t)w->image_size;
    const int tokens = w->grid * w->grid + 1;
    int per = ENC_CLIP_CHUNK_ROWS / tokens;
    per = per < 1 ? 1 : per > ENC_CLIP_CHUNK ? ENC_CLIP_CHUNK : per;
    for (int b0 = 0; b0 < n; b0 += per) {
        int nb = n - b0 < per ? n - b0 : per;
        cr_err rc = images_chunk(w, pixels + (size_t)b0 * img, nb, out + (size_t)b0 * w->embed);
        if (rc)
            return rc;
    }
    return CR_OK;
}

/* Row embeddings come from the token table, except the first `pseudo_id` of each row (its
 * pseudo row) and, with ctx, positions 1 .. n_ctx (the shared learned context, CoOp). */
static cr_err tokens_chunk(const enc_clip_weights *wt, const int32_t *tokens, int nb,
                           const float *pseudo, int32_t pseudo_id, const float *ctx, int n_ctx,
                           float *out)
{
    const enc_clip_tower *t = &wt->txt;
    const int C = wt->context, W = t->width, E = wt->embed;
    int rows = 0, max_t = 1;
    int eot[ENC_CLIP_CHUNK];
    for (int i = 0; i < nb; i++) {
        const int32_t *row = tokens + (size_t)i * C;
        int e = 0;
        for (int j = 0; j < C; j++) {
            if (row[j] < 0 || row[j] >= wt->vocab)
                return cr_error_set(CR_ERR_INVALID,
                                    "token id %ld at position %d is outside the "
                                    "vocabulary of %d",
                                    (long)row[j], j, wt->vocab);
            if (row[j] > row[e])
                e = j;
        }
        eot[i] = e;
        rows += e + 1;
        if (e + 1 > max_t)
            max_t = e + 1;
    }
    scratch s;
    cr_err rc = scratch_alloc(&s, (size_t)rows, W, (size_t)rows * t->mlp, max_t, nb);
    if (rc)
        return rc;
    int r = 0;
    for (int i = 0; i < nb; i++) {
        const int32_t *row = tokens + (size_t)i * C;
        int len = eot[i] + 1, pj = -1;
        if (pseudo)
            for (int j = 0; j < C && pj < 0; j++)
                if (row[j] == pseudo_id)
                    pj = j;
        s.off[i] = r;
        s.len[i] = len;
        for (int j = 0; j < len; j++, r++) {
            const float *ps = t->pos + (size_t)j * W;
            float *xr = s.x + (size_t)r * W;
            if (ctx && j >= 1 && j <= n_ctx) {
                for (int c = 0; c < W; c++)
                    xr[c] = ctx[(size_t)(j - 1) * W + c] + ps[c];
                continue;
            }
            if (j != pj && wt->tok_emb_h) {
                enc_op_from_f16(wt->tok_emb_h + (size_t)row[j] * W, (size_t)W, xr);
                for (int c = 0; c < W; c++)
                    xr[c] += ps[c];
                continue;
            }
            const float *e = j == pj ? pseudo + (size_t)i * W : wt->tok_emb + (size_t)row[j] * W;
            for (int c = 0; c < W; c++)
                xr[c] = e[c] + ps[c];
        }
    }
    run_blocks(wt, t, &s, rows, nb, 1);
    for (int i = 0; i < nb; i++)
        enc_op_layernorm(s.h + (size_t)i * W, (size_t)W,
                         s.x + (size_t)(s.off[i] + s.len[i] - 1) * W, (size_t)W, 1, W, t->ln_w,
                         t->ln_b, wt->eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, E, W, 1.f, s.h, W, t->proj, W, 0.f,
                out, E);
    free(s.block);
    return CR_OK;
}

cr_err enc_fwd_tokens(const enc_clip_weights *w, const int32_t *tokens, int n, const float *pseudo,
                      int32_t pseudo_id, const float *ctx, int n_ctx, float *out)
{
    for (int b0 = 0; b0 < n; b0 += ENC_CLIP_CHUNK) {
        int nb = n - b0 < ENC_CLIP_CHUNK ? n - b0 : ENC_CLIP_CHUNK;
        cr_err rc = tokens_chunk(w, tokens + (size_t)b0 * w->context, nb,
                                 pseudo ? pseudo + (size_t)b0 * w->txt.width : NULL, pseudo_id,
                                 ctx, n_ctx, out + (size_t)b0 * w->embed);
        if (rc)
            return rc;
    }
    return CR_OK;
}
