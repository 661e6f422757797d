/* clip_resnet.c — CLIP's ModifiedResNet image tower: loading (BatchNorm folded) and the forward
 * pass over NHWC activations. See clip_resnet.h. */
#include "encoder/clip_resnet.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/clip_ops.h"

#define BN_EPS 1e-5
/* im2col scratch of one convolution call, in floats (blocks of output rows are unfolded in
 * turn; a block never has fewer than one row). */
#define COL_FLOATS (4u << 20)

typedef struct conv {
    int cin, cout, k, stride, pad;
    float *w; /* [cout, k, k, cin]: BatchNorm folded in */
    float *b; /* [cout] */
} conv;

typedef struct block {
    int cin, planes, stride, size; /* size: input grid side */
    int has_down;
    conv c1, c2, c3, down;
    float *bias; /* [4 planes]: c3's bias plus the shortcut's */
} block;

struct enc_rn {
    int S, width, heads, embed, grid, C; /* C = width * 32, the attention pool's channels */
    int layers[4];
    conv stem[3];
    block *blocks;
    int nblocks;
    float *pos;       /* [grid^2 + 1, C] */
    float *wq, *bq;   /* [C, C], [C] */
    float *wkv, *bkv; /* [2C, C], [2C]: k rows, then v rows */
    float *wc, *bc;   /* [embed, C], [embed] */
    size_t max_act;   /* floats of the largest activation of one image */
    size_t weight_bytes;
    double flops;
};

/* ---- loading ---- */

/* "visual.layer<stage>.<i>.<tail>" into buf ("" if it does not fit: then reported missing). */
static const char *fmt(char *buf, size_t size, int stage, int i, const char *tail)
{
    int n = snprintf(buf, size, "visual.layer%d.%d.%s", stage, i, tail);
    if (n < 0 || (size_t)n >= size)
        buf[0] = '\0';
    return buf;
}

static cr_err get1(const enc_st *st, const char *name, int64_t d0, float **out)
{
    int64_t d[1] = {d0};
    return enc_st_get_f32(st, name, 1, d, out);
}

/* Convolution `wname` [cout, cin, k, k] followed by BatchNorm `bn` (".weight", ".bias",
 * ".running_mean", ".running_var"), folded into one convolution with a bias. */
static cr_err load_conv_bn(enc_rn *rn, conv *c, const enc_st *st, const char *wname,
                           const char *bn, int cin, int cout, int k, int stride)
{
    char nm[256];
    float *raw = NULL, *g = NULL, *be = NULL, *mu = NULL, *var = NULL;
    int64_t wd[4] = {cout, cin, k, k};
    const char *parts[4] = {".weight", ".bias", ".running_mean", ".running_var"};
    float **dst[4] = {&g, &be, &mu, &var};
    size_t kk = (size_t)k * k * cin;
    cr_err rc = enc_st_get_f32(st, wname, 4, wd, &raw);
    for (int i = 0; i < 4 && !rc; i++) {
        int n = snprintf(nm, sizeof nm, "%s%s", bn, parts[i]);
        rc = get1(st, n > 0 && (size_t)n < sizeof nm ? nm : "", cout, dst[i]);
    }
    if (rc)
        goto out;
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->stride = stride;
    c->pad = k / 2;
    c->w = malloc((size_t)cout * kk * sizeof *c->w);
    c->b = malloc((size_t)cout * sizeof *c->b);
    if (!c->w || !c->b) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory for '%s'", wname);
        goto out;
    }
    for (int o = 0; o < cout; o++) {
        double s = (double)g[o] / sqrt((double)var[o] + BN_EPS);
        if (!(var[o] >= 0.f) || !isfinite(s)) {
            rc = cr_error_set(CR_ERR_MODEL, "'%s.running_var'[%d] = %g is not a variance", bn, o,
                              (double)var[o]);
            goto out;
        }
        c->b[o] = (float)((double)be[o] - (double)mu[o] * s);
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                for (int ci = 0; ci < cin; ci++)
                    c->w[(size_t)o * kk + ((size_t)ky * k + kx) * cin + ci] =
                        (float)((double)raw[(((size_t)o * cin + ci) * k + ky) * k + kx] * s);
    }
    rn->weight_bytes += ((size_t)cout * kk + (size_t)cout) * sizeof(float);
out:
    free(raw);
    free(g);
    free(be);
    free(mu);
    free(var);
    return rc;
}

static void conv_free(conv *c)
{
    free(c->w);
    free(c->b);
}

static int out_size(int in, const conv *c) { return (in + 2 * c->pad - c->k) / c->stride + 1; }

static void add_conv_flops(enc_rn *rn, const conv *c, int in)
{
    double o = out_size(in, c);
    rn->flops += 2.0 * o * o * c->cout * (double)c->k * c->k * c->cin;
}

static void note_act(enc_rn *rn, int size, int channels)
{
    size_t n = (size_t)size * size * channels;
    if (n > rn->max_act)
        rn->max_act = n;
}

/* Blocks per stage: consecutive visual.layer<s>.<i>.conv1.weight. */
static int count_blocks(const enc_st *st, int stage)
{
    char nm[128];
    int n = 0;
    while (enc_st_find(st, fmt(nm, sizeof nm, stage, n, "conv1.weight")))
        n++;
    return n;
}

static cr_err load_block(enc_rn *rn, block *b, const enc_st *st, int stage, int i, int cin,
                         int planes, int stride, int size)
{
    char w[128], bn[128];
    cr_err rc;
    b->cin = cin;
    b->planes = planes;
    b->stride = stride;
    b->size = size;
    b->has_down = stride > 1 || cin != 4 * planes;
    if ((rc = load_conv_bn(rn, &b->c1, st, fmt(w, sizeof w, stage, i, "conv1.weight"),
                           fmt(bn, sizeof bn, stage, i, "bn1"), cin, planes, 1, 1)) ||
        (rc = load_conv_bn(rn, &b->c2, st, fmt(w, sizeof w, stage, i, "conv2.weight"),
                           fmt(bn, sizeof bn, stage, i, "bn2"), planes, planes, 3, 1)) ||
        (rc = load_conv_bn(rn, &b->c3, st, fmt(w, sizeof w, stage, i, "conv3.weight"),
                           fmt(bn, sizeof bn, stage, i, "bn3"), planes, 4 * planes, 1, 1)))
        return rc;
    fmt(w, sizeof w, stage, i, "downsample.0.weight");
    if (b->has_down != (enc_st_find(st, w) != NULL))
        return cr_error_set(CR_ERR_MODEL, "'%s' %s (block of stride %d, %d -> %d channels)", w,
                            b->has_down ? "is missing" : "is unexpected", stride, cin, 4 * planes);
    if (b->has_down &&
        (rc = load_conv_bn(rn, &b->down, st, w, fmt(bn, sizeof bn, stage, i, "downsample.1"),
                           cin, 4 * planes, 1, 1)))
        return rc;
    b->bias = malloc(4 * (size_t)planes * sizeof *b->bias);
    if (!b->bias)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int c = 0; c < 4 * planes; c++)
        b->bias[c] = b->c3.b[c] + (b->has_down ? b->down.b[c] : 0.f);
    rn->weight_bytes += 4 * (size_t)planes * sizeof(float);
    int out = size / stride;
    note_act(rn, size, planes);
    note_act(rn, size, cin);
    note_act(rn, out, 4 * planes);
    add_conv_flops(rn, &b->c1, size);
    add_conv_flops(rn, &b->c2, size);
    add_conv_flops(rn, &b->c3, out);
    if (b->has_down)
        add_conv_flops(rn, &b->down, out);
    return CR_OK;
}

/* Attention pool: q/k/v/c projections and the positional embedding. */
static cr_err load_pool(enc_rn *rn, const enc_st *st)
{
    const int C = rn->C, T = rn->grid * rn->grid + 1, E = rn->embed;
    int64_t pd[2] = {T, C}, sq[2] = {C, C}, cd[2] = {E, C};
    float *kw = NULL, *vw = NULL, *kb = NULL, *vb = NULL;
    cr_err rc;
    if ((rc = enc_st_get_f32(st, "visual.attnpool.positional_embedding", 2, pd, &rn->pos)) ||
        (rc = enc_st_get_f32(st, "visual.attnpool.q_proj.weight", 2, sq, &rn->wq)) ||
        (rc = get1(st, "visual.attnpool.q_proj.bias", C, &rn->bq)) ||
        (rc = enc_st_get_f32(st, "visual.attnpool.k_proj.weight", 2, sq, &kw)) ||
        (rc = get1(st, "visual.attnpool.k_proj.bias", C, &kb)) ||
        (rc = enc_st_get_f32(st, "visual.attnpool.v_proj.weight", 2, sq, &vw)) ||
        (rc = get1(st, "visual.attnpool.v_proj.bias", C, &vb)) ||
        (rc = enc_st_get_f32(st, "visual.attnpool.c_proj.weight", 2, cd, &rn->wc)) ||
        (rc = get1(st, "visual.attnpool.c_proj.bias", E, &rn->bc)))
        goto out;
    rn->wkv = malloc(2 * (size_t)C * C * sizeof *rn->wkv);
    rn->bkv = malloc(2 * (size_t)C * sizeof *rn->bkv);
    if (!rn->wkv || !rn->bkv) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(rn->wkv, kw, (size_t)C * C * sizeof *kw);
    memcpy(rn->wkv + (size_t)C * C, vw, (size_t)C * C * sizeof *vw);
    memcpy(rn->bkv, kb, (size_t)C * sizeof *kb);
    memcpy(rn->bkv + C, vb, (size_t)C * sizeof *vb);
    rn->weight_bytes += ((size_t)T * C + 3 * (size_t)C * C + 3 * (size_t)C + (size_t)E * C + E) *
                        sizeof(float);
    rn->flops += 2.0 * T * 2.0 * C * C + 2.0 * C * C + 2.0 * C * E + 4.0 * T * C;
out:
    free(kw);
    free(vw);
    free(kb);
    free(vb);
    return rc;
}

int enc_rn_detect(const enc_st *st)
{
    return enc_st_find(st, "visual.layer1.0.conv1.weight") != NULL &&
           enc_st_find(st, "visual.attnpool.positional_embedding") != NULL;
}

/* Stage shapes and the stem, as build_model and ModifiedResNet.__init__ derive them. */
static cr_err load_geometry(enc_rn *rn, const enc_st *st, int heads)
{
    const enc_st_tensor *t = NULL;
    int64_t any4[4] = {-1, -1, 1, 1}, any2[2] = {-1, -1};
    cr_err rc = enc_st_check(st, "visual.layer1.0.conv1.weight", 4, any4, &t);
    if (rc)
        return rc;
    rn->width = (int)t->shape[0];
    for (int s = 0; s < 4; s++) {
        rn->layers[s] = count_blocks(st, s + 1);
        if (rn->layers[s] < 1)
            return cr_error_set(CR_ERR_MODEL, "'visual.layer%d.0.conv1.weight' is missing", s + 1);
        rn->nblocks += rn->layers[s];
    }
    rn->C = rn->width * 32;
    if ((rc = enc_st_check(st, "visual.attnpool.positional_embedding", 2, any2, &t)))
        return rc;
    int np = (int)t->shape[0] - 1;
    rn->grid = (int)lround(sqrt((double)(np > 0 ? np : 0)));
    if (np < 1 || rn->grid * rn->grid != np || t->shape[1] != rn->C)
        return cr_error_set(CR_ERR_MODEL,
                            "'visual.attnpool.positional_embedding' [%lld, %lld] is not "
                            "[1 + a square, %d]",
                            (long long)t->shape[0], (long long)t->shape[1], rn->C);
    rn->S = 32 * rn->grid;
    if ((rc = enc_st_check(st, "visual.attnpool.c_proj.weight", 2, any2, &t)))
        return rc;
    rn->embed = (int)t->shape[0];
    rn->heads = heads > 0 ? heads : rn->width * 32 / 64;
    if (rn->width < 2 || rn->width % 2 || rn->embed < 1 || rn->heads < 1 || rn->C % rn->heads)
        return cr_error_set(CR_ERR_MODEL, "ResNet tower: width %d, %d heads, embedding %d", rn->width,
                            rn->heads, rn->embed);
    return CR_OK;
}

static cr_err load_stem(enc_rn *rn, const enc_st *st)
{
    const int w = rn->width, h = w / 2;
    cr_err rc;
    if ((rc = load_conv_bn(rn, &rn->stem[0], st, "visual.conv1.weight", "visual.bn1", 3, h, 3, 2)) ||
        (rc = load_conv_bn(rn, &rn->stem[1], st, "visual.conv2.weight", "visual.bn2", h, h, 3, 1)) ||
        (rc = load_conv_bn(rn, &rn->stem[2], st, "visual.conv3.weight", "visual.bn3", h, w, 3, 1)))
        return rc;
    int s1 = out_size(rn->S, &rn->stem[0]);
    note_act(rn, rn->S, 3);
    note_act(rn, s1, w);
    add_conv_flops(rn, &rn->stem[0], rn->S);
    add_conv_flops(rn, &rn->stem[1], s1);
    add_conv_flops(rn, &rn->stem[2], s1);
    return CR_OK;
}

cr_err enc_rn_load(enc_rn **out, const enc_st *st, int heads)
{
    enc_rn *rn = calloc(1, sizeof *rn);
    if (!rn)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    cr_err rc = load_geometry(rn, st, heads);
    if (!rc)
        rc = load_stem(rn, st);
    if (!rc && !(rn->blocks = calloc((size_t)rn->nblocks, sizeof *rn->blocks)))
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    int size = out_size(rn->S, &rn->stem[0]) / 2, cin = rn->width, bi = 0;
    for (int s = 0; s < 4 && !rc; s++) {
        int planes = rn->width << s;
        for (int i = 0; i < rn->layers[s] && !rc; i++, bi++) {
            int stride = i == 0 && s > 0 ? 2 : 1;
            rc = load_block(rn, &rn->blocks[bi], st, s + 1, i, cin, planes, stride, size);
            size /= stride;
            cin = 4 * planes;
        }
    }
    if (!rc && size != rn->grid)
        rc = cr_error_set(CR_ERR_MODEL, "ResNet tower: a %d px image ends on a %dx%d grid, not %dx%d",
                          rn->S, size, size, rn->grid, rn->grid);
    if (!rc)
        rc = load_pool(rn, st);
    if (rc) {
        enc_rn_close(&rn);
        return rc;
    }
    *out = rn;
    return CR_OK;
}

void enc_rn_close(enc_rn **pp)
{
    if (!pp || !*pp)
        return;
    enc_rn *rn = *pp;
    for (int i = 0; i < 3; i++)
        conv_free(&rn->stem[i]);
    for (int i = 0; rn->blocks && i < rn->nblocks; i++) {
        block *b = &rn->blocks[i];
        conv_free(&b->c1);
        conv_free(&b->c2);
        conv_free(&b->c3);
        conv_free(&b->down);
        free(b->bias);
    }
    free(rn->blocks);
    free(rn->pos);
    free(rn->wq);
    free(rn->bq);
    free(rn->wkv);
    free(rn->bkv);
    free(rn->wc);
    free(rn->bc);
    free(rn);
    *pp = NULL;
}

int enc_rn_image_size(const enc_rn *rn) { return rn->S; }
int enc_rn_embed_dim(const enc_rn *rn) { return rn->embed; }
int enc_rn_width(const enc_rn *rn) { return rn->width; }
int enc_rn_heads(const enc_rn *rn) { return rn->heads; }
int enc_rn_blocks(const enc_rn *rn, int stage)
{
    return stage >= 0 && stage < 4 ? rn->layers[stage] : 0;
}
size_t enc_rn_weight_bytes(const enc_rn *rn) { return rn->weight_bytes; }
double enc_rn_flops(const enc_rn *rn) { return rn->flops; }

/* ---- forward ---- */

/* y[nb * So * So, cout] = conv(x[nb * s * s, cin]) + beta * y, without the bias. */
static void conv_gemm(const conv *c, const float *x, int nb, int s, float beta, float *y,
                      float *col)
{
    const int so = out_size(s, c), cin = c->cin, k = c->k, K = k * k * cin;
    const size_t rows = (size_t)nb * so * so;
    if (k == 1 && c->stride == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, c->cout, cin, 1.f, x, cin,
                    c->w, cin, beta, y, c->cout);
        return;
    }
    size_t step = COL_FLOATS / (size_t)K;
    step = step < 1 ? 1 : step;
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        size_t n = rows - r0 < step ? rows - r0 : step;
        for (size_t r = 0; r < n; r++) {
            size_t q = r0 + r;
            int b = (int)(q / ((size_t)so * so)), oy = (int)(q / so % so), ox = (int)(q % so);
            float *dst = col + r * K;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * c->stride - c->pad + ky;
                for (int kx = 0; kx < k; kx++, dst += cin) {
                    int ix = ox * c->stride - c->pad + kx;
                    if (iy < 0 || iy >= s || ix < 0 || ix >= s)
                        memset(dst, 0, (size_t)cin * sizeof *dst);
                    else
                        memcpy(dst, x + (((size_t)b * s + iy) * s + ix) * cin,
                               (size_t)cin * sizeof *dst);
                }
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, c->cout, K, 1.f, col, K, c->w,
                    K, beta, y + r0 * c->cout, c->cout);
    }
}

/* conv + bias + ReLU */
static void conv_relu(const conv *c, const float *x, int nb, int s, float *y, float *col)
{
    int so = out_size(s, c);
    conv_gemm(c, x, nb, s, 0.f, y, col);
    enc_op_bias_act(y, (size_t)c->cout, nb * so * so, c->cout, c->b, ENC_ACT_RELU);
}

/* AvgPool2d(k): y[nb, s/k, s/k, ch] from x[nb, s, s, ch]. */
static void avgpool(const float *x, int nb, int s, int ch, int k, float *y)
{
    const int so = s / k;
    const float inv = 1.f / (float)(k * k);
    for (int b = 0; b < nb; b++)
        for (int oy = 0; oy < so; oy++)
            for (int ox = 0; ox < so; ox++) {
                float *d = y + (((size_t)b * so + oy) * so + ox) * ch;
                memset(d, 0, (size_t)ch * sizeof *d);
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        const float *p =
                            x + (((size_t)b * s + oy * k + ky) * s + ox * k + kx) * ch;
                        for (int c = 0; c < ch; c++)
                            d[c] += p[c];
                    }
                for (int c = 0; c < ch; c++)
                    d[c] *= inv;
            }
}

typedef struct bufs {
    float *x, *y, *t1, *t2, *col;
} bufs;

/* x (block input) -> y (block output); t1, t2 scratch. */
static void block_run(const block *b, int nb, bufs *B)
{
    const int s = b->size, so = s / b->stride, P = b->planes;
    const size_t rows_out = (size_t)nb * so * so;
    conv_relu(&b->c1, B->x, nb, s, B->t1, B->col);
    conv_relu(&b->c2, B->t1, nb, s, B->t2, B->col);
    const float *mid = B->t2;
    if (b->stride > 1) {
        avgpool(B->t2, nb, s, P, b->stride, B->t1);
        mid = B->t1;
        if (b->has_down) {
            avgpool(B->x, nb, s, b->cin, b->stride, B->t2);
            conv_gemm(&b->down, B->t2, nb, so, 0.f, B->y, B->col);
        }
    } else if (b->has_down) {
        conv_gemm(&b->down, B->x, nb, s, 0.f, B->y, B->col);
    }
    if (!b->has_down)
        memcpy(B->y, B->x, rows_out * 4 * (size_t)P * sizeof *B->y);
    conv_gemm(&b->c3, mid, nb, so, 1.f, B->y, B->col);
    enc_op_bias_act(B->y, (size_t)(4 * P), (int)rows_out, 4 * P, b->bias, ENC_ACT_RELU);
    float *t = B->x;
    B->x = B->y;
    B->y = t;
}

/* AttentionPool2d over x [nb, g*g, C] into out [nb, embed]. */
static cr_err attnpool(const enc_rn *rn, const float *x, int nb, float *out)
{
    const int C = rn->C, G = rn->grid * rn->grid, T = G + 1, H = rn->heads, hd = C / H;
    const float scale = 1.f / sqrtf((float)hd);
    float *xa = malloc((size_t)nb * T * C * sizeof *xa);
    float *kv = malloc((size_t)nb * T * 2 * C * sizeof *kv);
    float *q = malloc((size_t)nb * C * sizeof *q);
    float *o = malloc((size_t)nb * C * sizeof *o);
    float *sc = malloc((size_t)T * sizeof *sc);
    cr_err rc = CR_OK;
    if (!xa || !kv || !q || !o || !sc) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory for the attention pool");
        goto out;
    }
    for (int b = 0; b < nb; b++) {
        float *xb = xa + (size_t)b * T * C;
        const float *src = x + (size_t)b * G * C;
        memset(xb, 0, (size_t)C * sizeof *xb);
        for (int i = 0; i < G; i++)
            for (int c = 0; c < C; c++)
                xb[c] += src[(size_t)i * C + c];
        for (int c = 0; c < C; c++)
            xb[c] /= (float)G;
        memcpy(xb + C, src, (size_t)G * C * sizeof *xb);
        for (size_t i = 0; i < (size_t)T * C; i++)
            xb[i] += rn->pos[i];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb * T, 2 * C, C, 1.f, xa, C, rn->wkv, C,
                0.f, kv, 2 * C);
    /* the query is the mean token only: rows 0, T, 2T, ... of xa */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, C, C, 1.f, xa, T * C, rn->wq, C, 0.f, q,
                C);
    for (size_t r = 0; r < (size_t)nb * T; r++)
        for (int c = 0; c < 2 * C; c++)
            kv[r * 2 * C + c] += rn->bkv[c];
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < C; c++)
            q[(size_t)b * C + c] = (q[(size_t)b * C + c] + rn->bq[c]) * scale;
    for (int b = 0; b < nb; b++) {
        const float *kb = kv + (size_t)b * T * 2 * C;
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)b * C + (size_t)h * hd;
            float m = -INFINITY, sum = 0.f;
            for (int t = 0; t < T; t++) {
                const float *kt = kb + (size_t)t * 2 * C + (size_t)h * hd;
                float d = 0.f;
                for (int j = 0; j < hd; j++)
                    d += qh[j] * kt[j];
                sc[t] = d;
                m = sc[t] > m ? sc[t] : m;
            }
            for (int t = 0; t < T; t++) {
                sc[t] = expf(sc[t] - m);
                sum += sc[t];
            }
            float *oh = o + (size_t)b * C + (size_t)h * hd;
            memset(oh, 0, (size_t)hd * sizeof *oh);
            for (int t = 0; t < T; t++) {
                const float *vt = kb + (size_t)t * 2 * C + C + (size_t)h * hd;
                float p = sc[t] / sum;
                for (int j = 0; j < hd; j++)
                    oh[j] += p * vt[j];
            }
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, rn->embed, C, 1.f, o, C, rn->wc, C,
                0.f, out, rn->embed);
    for (int b = 0; b < nb; b++)
        for (int e = 0; e < rn->embed; e++)
            out[(size_t)b * rn->embed + e] += rn->bc[e];
out:
    free(xa);
    free(kv);
    free(q);
    free(o);
    free(sc);
    return rc;
}

static cr_err chunk_run(const enc_rn *rn, const float *pixels, int nb, float *out)
{
    const int S = rn->S;
    const size_t act = (size_t)nb * rn->max_act;
    cr_err rc = CR_OK;
    bufs B;
    float *mem[5] = {NULL};
    for (int i = 0; i < 4; i++)
        mem[i] = malloc(act * sizeof(float));
    mem[4] = malloc((size_t)COL_FLOATS * sizeof(float));
    for (int i = 0; i < 5; i++)
        if (!mem[i]) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory for %zu floats of ResNet scratch",
                              5 * act);
            goto out;
        }
    B = (bufs){mem[0], mem[1], mem[2], mem[3], mem[4]};
    /* NCHW pixels -> NHWC */
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < (size_t)S * S; i++)
                B.y[((size_t)b * S * S + i) * 3 + c] = pixels[((size_t)b * 3 + c) * S * S + i];
    int s1 = out_size(S, &rn->stem[0]);
    conv_relu(&rn->stem[0], B.y, nb, S, B.t1, B.col);
    conv_relu(&rn->stem[1], B.t1, nb, s1, B.t2, B.col);
    conv_relu(&rn->stem[2], B.t2, nb, s1, B.t1, B.col);
    avgpool(B.t1, nb, s1, rn->width, 2, B.x);
    for (int i = 0; i < rn->nblocks; i++)
        block_run(&rn->blocks[i], nb, &B);
    rc = attnpool(rn, B.x, nb, out);
out:
    for (int i = 0; i < 5; i++)
        free(mem[i]);
    return rc;
}

cr_err enc_rn_forward(const enc_rn *rn, const float *pixels, int n, float *out)
{
    const size_t img = 3 * (size_t)rn->S * rn->S;
    size_t per = ENC_RN_CHUNK_FLOATS / rn->max_act;
    per = per < 1 ? 1 : per > 32 ? 32 : per;
    for (int b0 = 0; b0 < n; b0 += (int)per) {
        int nb = n - b0 < (int)per ? n - b0 : (int)per;
        cr_err rc = chunk_run(rn, pixels + (size_t)b0 * img, nb, out + (size_t)b0 * rn->embed);
        if (rc)
            return rc;
    }
    return CR_OK;
}
