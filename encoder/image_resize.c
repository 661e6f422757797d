/* image_resize.c — CLIP preprocessing: pad, Pillow-exact resize, center crop, normalize.
 *
 * Written from the documented behaviour of the reference pipeline:
 *  - torchvision Resize(S): shortest side -> S, long side int(S * long / short); no-op when
 *    the size is unchanged (Pillow's resize copies).
 *  - Pillow ImagingResample, 8-bit path: separable, horizontal pass first; bicubic kernel
 *    a = -0.5 with support 2 * max(1, in/out); each output's weights normalized to sum 1,
 *    then turned into 22-bit fixed point (round half away from zero); accumulators start
 *    at 1/2 and are clamped to 0..255 after each pass (so the intermediate image is
 *    uint8). Modes "RGBA"/"LA" are premultiplied (x*a/255, rounded) before and
 *    un-premultiplied (255*x/a, truncated, clamped) after. Modes "P" and "1" use nearest.
 *  - CenterCrop(S): top = round((h - S) / 2) with Python's half-to-even rounding.
 *  - convert("RGB") after the crop; ToTensor (x / 255) and Normalize in float32.
 * Only the outputs inside the crop are computed; each one is the same arithmetic Pillow does
 * for it, so the result is identical while extreme aspect ratios stay cheap.
 *
 * SquarePad / TargetPad are never materialized (a 150-byte BMP of 32272 x 16 would pad to
 * 32272^2 x 3 bytes): the border is zero, so its filter taps add nothing and are skipped
 * (the weights are still normalized over the whole canvas window, as Pillow does), and the
 * two passes stream the source rows the crop needs into S x S accumulators. The work is
 * then linear in the source, and enc_image_preprocess_cost() gives it from the size alone.
 */
#include "encoder/image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREC_BITS (32 - 8 - 2)

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* The geometry of one run, from the image size alone (so that its cost is known before any
 * pixel is decoded). The padded canvas is cw x ch with the source at (hp, vp); it is never
 * materialized: its border is zero (black, alpha 0), so a filter tap over it adds nothing,
 * and an output whose taps all fall on it is 0. */
typedef struct plan {
    int w, h, c;    /* source */
    int nearest;    /* modes P and 1 */
    int premul;     /* RGBA / LA that is resized: premultiplied around the resize */
    int identity;   /* the resize is a no-op (Pillow copies) */
    int hp, vp;     /* padding left and right / top and bottom */
    int cw, ch;     /* the padded canvas */
    int ow, oh;     /* Resize(S) of the canvas */
    int x0, y0;     /* CenterCrop(S) offset in the resized image */
    int S;
} plan;

/* Filter taps of one axis for the S outputs of the crop, restricted to the source. */
typedef struct axis {
    int in, out, first, n, pad, len; /* canvas size, resized size, crop offset, S, source */
    int identity;                    /* in == out: output i is canvas index first + i */
    double scale, fscale, support;
    int *lo, *hi;  /* per output: source taps [lo, hi); lo == hi: none (the output is 0) */
    size_t *off;   /* per output: its weights at k + off */
    int32_t *k;
    int used_lo, used_hi;  /* outputs with taps: [used_lo, used_hi) */
    int src_lo, src_hi;    /* source indices read: [src_lo, src_hi) */
    size_t taps;           /* sum of hi - lo */
    uint64_t evals;        /* kernel evaluations to build the weights */
    int max_taps;
} axis;

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static void axis_init(axis *a, int in, int out, int first, int n, int pad, int len)
{
    memset(a, 0, sizeof *a);
    a->in = in, a->out = out, a->first = first, a->n = n, a->pad = pad, a->len = len;
    a->identity = in == out;
    a->scale = (double)(float)in / out; /* Pillow: (in1 - in0) as a float box */
    a->fscale = a->scale < 1.0 ? 1.0 : a->scale;
    a->support = 2.0 * a->fscale;
}

/* Output i's window [*xmin, *xmax) on the canvas (Pillow's precompute_coeffs bounds). */
static void axis_window(const axis *a, int i, double *center, int *xmin, int *xmax)
{
    if (a->identity) {
        *center = 0.0;
        *xmin = a->first + i;
        *xmax = *xmin + 1;
        return;
    }
    *center = (a->first + i + 0.5) * a->scale;
    *xmin = (int)(*center - a->support + 0.5);
    *xmax = (int)(*center + a->support + 0.5);
    if (*xmin < 0)
        *xmin = 0;
    if (*xmax > a->in)
        *xmax = a->in;
}

/* The source part [lo, hi) of a canvas window; windows move monotonically with i, and so
 * do lo and hi. */
static void window_source(const axis *a, int xmin, int xmax, int *lo, int *hi)
{
    int l = (xmin > a->pad ? xmin : a->pad) - a->pad;
    int h = (xmax < a->pad + a->len ? xmax : a->pad + a->len) - a->pad;
    *lo = l;
    *hi = h > l ? h : l;
}

/* Sizes only: taps, evaluations and the source range, without allocating. */
static void axis_count(axis *a)
{
    a->used_lo = a->n;
    a->used_hi = 0;
    a->src_lo = a->len;
    a->src_hi = 0;
    for (int i = 0; i < a->n; i++) {
        double center;
        int xmin, xmax, lo, hi;
        axis_window(a, i, &center, &xmin, &xmax);
        window_source(a, xmin, xmax, &lo, &hi);
        if (hi == lo)
            continue;
        if (i < a->used_lo)
            a->used_lo = i, a->src_lo = lo;
        a->used_hi = i + 1;
        a->src_hi = hi;
        a->taps += (size_t)(hi - lo);
        a->evals += (uint64_t)(xmax - xmin);
        if (hi - lo > a->max_taps)
            a->max_taps = hi - lo;
    }
    if (a->used_hi == 0)
        a->used_lo = a->src_lo = a->src_hi = 0;
}

static void axis_free(axis *a)
{
    free(a->lo);
    free(a->hi);
    free(a->off);
    free(a->k);
    a->lo = a->hi = NULL;
    a->off = NULL;
    a->k = NULL;
}

static int32_t to_fixed(double v)
{
    return v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS)) : (int32_t)(0.5 + v * (1 << PREC_BITS));
}

/* Builds the weights. Each output's kernel is evaluated once per canvas tap, in Pillow's
 * order, so that its normalization (the sum over the whole window, border included) is
 * the same double; only the weights over the source are kept. */
static cr_err axis_build(axis *a)
{
    double *t = NULL;
    size_t off = 0;

    axis_count(a);
    a->lo = malloc(sizeof(int) * (size_t)a->n);
    a->hi = malloc(sizeof(int) * (size_t)a->n);
    a->off = malloc(sizeof(size_t) * (size_t)a->n);
    a->k = malloc(sizeof(int32_t) * (a->taps ? a->taps : 1));
    t = malloc(sizeof(double) * (size_t)(a->max_taps ? a->max_taps : 1));
    if (!a->lo || !a->hi || !a->off || !a->k || !t) {
        free(t);
        axis_free(a);
        return cr_error_set(CR_ERR_NOMEM, "resize: out of memory for filter weights");
    }
    for (int i = 0; i < a->n; i++) {
        double center, ww = 0.0, ss = 1.0 / a->fscale;
        int xmin, xmax, lo, hi;
        axis_window(a, i, &center, &xmin, &xmax);
        window_source(a, xmin, xmax, &lo, &hi);
        a->lo[i] = lo;
        a->hi[i] = hi;
        a->off[i] = off;
        if (hi == lo)
            continue;
        if (a->identity) {
            a->k[off++] = (int32_t)1 << PREC_BITS; /* (v << 22 + 1 << 21) >> 22 == v */
            continue;
        }
        for (int x = xmin; x < xmax; x++) {
            double v = bicubic((x - center + 0.5) * ss);
            ww += v;
            if (x >= a->pad + lo && x < a->pad + hi)
                t[x - a->pad - lo] = v;
        }
        for (int x = 0; x < hi - lo; x++)
            a->k[off++] = to_fixed(ww != 0.0 ? t[x] / ww : t[x]);
    }
    free(t);
    return CR_OK;
}

static inline uint8_t clip8(int32_t v)
{
    if (v < 0)
        return 0;
    v >>= PREC_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Pillow's RGBA -> RGBa: MULDIV255 with rounding, n pixels of c channels. */
static void premultiply(uint8_t *px, size_t n, int c)
{
    int ac = c - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = px + i * (size_t)c;
        unsigned a = p[ac];
        for (int j = 0; j < ac; j++) {
            unsigned t = p[j] * a + 128;
            p[j] = (uint8_t)(((t >> 8) + t) >> 8);
        }
    }
}

/* Pillow's RGBa -> RGBA: 255 * x / a, truncated, clamped; alpha 0 or 255 untouched. */
static void unpremultiply(uint8_t *px, size_t n, int c)
{
    int ac = c - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = px + i * (size_t)c;
        unsigned a = p[ac];
        if (a == 0 || a == 255)
            continue;
        for (int j = 0; j < ac; j++) {
            unsigned v = 255u * p[j] / a;
            p[j] = v > 255 ? 255 : (uint8_t)v;
        }
    }
}

/* Horizontal pass over one source row: outputs [used_lo, used_hi) of `ax` into dst (the
 * others stay 0). `row` holds source columns from `col0` on. */
static void pass_h(const axis *ax, const uint8_t *row, int col0, int c, uint8_t *dst)
{
    for (int xx = ax->used_lo; xx < ax->used_hi; xx++) {
        const int32_t *k = ax->k + ax->off[xx];
        const uint8_t *in = row + (size_t)(ax->lo[xx] - col0) * (size_t)c;
        int xn = ax->hi[xx] - ax->lo[xx];
        for (int b = 0; b < c; b++) {
            int32_t ss = 1 << (PREC_BITS - 1);
            for (int x = 0; x < xn; x++)
                ss += (int32_t)in[(size_t)x * (size_t)c + (size_t)b] * k[x];
            dst[(size_t)xx * (size_t)c + (size_t)b] = clip8(ss);
        }
    }
}

/* Pillow's two-pass bicubic resize of the padded canvas, only the S x S crop, streaming
 * source rows: each row's horizontal result is added at once to the vertical accumulators
 * of the output rows whose taps include it (integer sums: the same values in any order),
 * so no intermediate image is kept and border rows, which would add zeros, are skipped. */
static cr_err resize_bicubic(const plan *p, const uint8_t *src, uint8_t *crop)
{
    axis ax, ay;
    int S = p->S, c = p->c, yl = 0;
    size_t rowlen = (size_t)S * (size_t)c, ncols;
    int32_t *acc = NULL;
    uint8_t *hrow = NULL, *row = NULL;
    cr_err rc;

    axis_init(&ax, p->cw, p->ow, p->x0, S, p->hp, p->w);
    axis_init(&ay, p->ch, p->oh, p->y0, S, p->vp, p->h);
    rc = axis_build(&ax);
    if (!rc)
        rc = axis_build(&ay);
    if (rc)
        goto out;
    ncols = (size_t)(ax.src_hi - ax.src_lo);
    acc = malloc(sizeof(int32_t) * rowlen * (size_t)S);
    hrow = calloc(rowlen, 1);
    row = p->premul ? malloc(ncols * (size_t)c + 1) : NULL;
    if (!acc || !hrow || (p->premul && !row)) {
        rc = cr_error_set(CR_ERR_NOMEM, "resize: out of memory");
        goto out;
    }
    for (size_t i = 0; i < rowlen * (size_t)S; i++)
        acc[i] = 1 << (PREC_BITS - 1);
    for (int r = ay.src_lo; r < ay.src_hi; r++) {
        const uint8_t *in = src + ((size_t)r * (size_t)p->w + (size_t)ax.src_lo) * (size_t)c;
        size_t a0 = (size_t)ax.used_lo * (size_t)c, a1 = (size_t)ax.used_hi * (size_t)c;
        if (row) {
            memcpy(row, in, ncols * (size_t)c);
            premultiply(row, ncols, c);
            in = row;
        }
        pass_h(&ax, in, ax.src_lo, c, hrow);
        while (yl < S && ay.hi[yl] <= r)
            yl++;
        for (int yy = yl; yy < S && ay.lo[yy] <= r; yy++) {
            int32_t kk = ay.k[ay.off[yy] + (size_t)(r - ay.lo[yy])];
            int32_t *a = acc + (size_t)yy * rowlen;
            for (size_t i = a0; i < a1; i++)
                a[i] += kk * (int32_t)hrow[i];
        }
    }
    for (size_t i = 0; i < rowlen * (size_t)S; i++)
        crop[i] = clip8(acc[i]);
out:
    free(row);
    free(hrow);
    free(acc);
    axis_free(&ax);
    axis_free(&ay);
    return rc;
}

/* Pillow's ImagingScaleAffine nearest-neighbour table for out indices [first, first+n):
 * the source position accumulates in double exactly as Pillow's loop does (so this costs
 * first + n steps). Canvas indices are mapped to the source; -1 = border or outside. */
static void nearest_table(int in_size, int out_size, int first, int n, int pad, int len,
                          int identity, int *tab)
{
    double a = (double)(float)in_size / out_size;
    double pos = a * 0.5;
    for (int i = 0; i < n; i++)
        tab[i] = -1;
    for (int i = identity ? first : 0; i < first + n; i++) {
        if (i >= first) {
            int v = identity ? i : pos < 0.0 ? -1 : (int)pos;
            if (v >= pad && v < pad + len && v < in_size)
                tab[i - first] = v - pad;
        }
        pos += a;
    }
}

static cr_err resize_nearest(const plan *p, const uint8_t *src, uint8_t *crop)
{
    int S = p->S, c = p->c;
    int *tx = malloc(sizeof(int) * (size_t)S), *ty = malloc(sizeof(int) * (size_t)S);
    if (!tx || !ty) {
        free(tx);
        free(ty);
        return cr_error_set(CR_ERR_NOMEM, "resize: out of memory");
    }
    nearest_table(p->cw, p->ow, p->x0, S, p->hp, p->w, p->identity, tx);
    nearest_table(p->ch, p->oh, p->y0, S, p->vp, p->h, p->identity, ty);
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            uint8_t *d = crop + ((size_t)y * (size_t)S + (size_t)x) * (size_t)c;
            if (tx[x] < 0 || ty[y] < 0) {
                memset(d, 0, (size_t)c);
                continue;
            }
            memcpy(d, src + ((size_t)ty[y] * (size_t)p->w + (size_t)tx[x]) * (size_t)c,
                   (size_t)c);
        }
    }
    free(tx);
    free(ty);
    return CR_OK;
}

/* Python's int(round(d / 2.0)) for an integer d >= 0 (round half to even). */
static int half_round_even(int d)
{
    int q = d / 2;
    if (d % 2 == 0)
        return q;
    return q % 2 == 0 ? q : q + 1;
}

static cr_err plan_make(int w, int h, enc_image_mode mode, enc_preprocess pp, int S, plan *p)
{
    int64_t ow, oh;
    memset(p, 0, sizeof *p);
    if (S <= 0 || S > 4096)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: bad size %d", S);
    if ((int)pp < ENC_PREPROCESS_CLIP || pp > ENC_PREPROCESS_SQUAREPAD)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: bad mode %d", (int)pp);
    if (w <= 0 || h <= 0 || enc_image_mode_channels(mode) == 0)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: bad image %dx%d mode %d", w,
                            h, (int)mode);
    p->w = w, p->h = h, p->S = S, p->c = enc_image_mode_channels(mode);
    p->nearest = mode == ENC_IMAGE_P || mode == ENC_IMAGE_1;

    /* 1. padding (CLIP4Cir SquarePad / TargetPad): its amounts only */
    if (pp == ENC_PREPROCESS_SQUAREPAD) {
        int m = w > h ? w : h;
        p->hp = (m - w) / 2;
        p->vp = (m - h) / 2;
    } else if (pp == ENC_PREPROCESS_TARGETPAD) {
        int mx = w > h ? w : h, mn = w < h ? w : h;
        if ((double)mx / mn >= ENC_TARGETPAD_RATIO) {
            double scaled = (double)mx / ENC_TARGETPAD_RATIO;
            p->hp = (int)((scaled - w) / 2);
            p->vp = (int)((scaled - h) / 2);
            p->hp = p->hp < 0 ? 0 : p->hp;
            p->vp = p->vp < 0 ? 0 : p->vp;
        }
    }
    p->cw = w + 2 * p->hp; /* <= max(w, h): no overflow */
    p->ch = h + 2 * p->vp;

    /* 2. Resize(S): shortest side to S, long side int(S * long / short), in 64 bits */
    if (p->cw <= p->ch) {
        ow = S;
        oh = (int64_t)((double)((int64_t)S * p->ch) / p->cw);
    } else {
        oh = S;
        ow = (int64_t)((double)((int64_t)S * p->cw) / p->ch);
    }
    if (ow > INT_MAX || oh > INT_MAX)
        return cr_error_set(CR_ERR_INVALID,
                            "%s preprocessing of a %dx%d image at size %d resizes it to "
                            "%lldx%lld pixels: a side over %d cannot be represented",
                            enc_preprocess_name(pp), w, h, S, (long long)ow, (long long)oh,
                            INT_MAX);
    p->ow = (int)ow;
    p->oh = (int)oh;
    p->identity = p->ow == p->cw && p->oh == p->ch;
    p->premul = !p->identity && (mode == ENC_IMAGE_RGBA || mode == ENC_IMAGE_LA);
    /* 3. CenterCrop(S) offsets in the resized image */
    p->x0 = half_round_even(p->ow - S);
    p->y0 = half_round_even(p->oh - S);
    return CR_OK;
}

cr_err enc_image_preprocess_cost(int width, int height, enc_image_mode mode, enc_preprocess pp,
                                 int size, enc_image_cost *out)
{
    plan p;
    cr_err rc;
    if (!out)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess_cost: NULL argument");
    rc = plan_make(width, height, mode, pp, size, &p);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->decoded_px = (uint64_t)p.w * (uint64_t)p.h;
    out->padded_px = (uint64_t)p.cw * (uint64_t)p.ch;
    out->work = out->decoded_px + (uint64_t)p.S * (uint64_t)p.S;
    if (p.nearest) {
        /* the two tables step from 0 to the end of the crop */
        out->work += (p.identity ? 0 : (uint64_t)p.x0 + (uint64_t)p.y0) + 2u * (uint64_t)p.S;
        out->scratch_bytes = 2 * sizeof(int) * (size_t)p.S;
    } else {
        axis ax, ay;
        uint64_t rows, cols, vtaps;
        axis_init(&ax, p.cw, p.ow, p.x0, p.S, p.hp, p.w);
        axis_init(&ay, p.ch, p.oh, p.y0, p.S, p.vp, p.h);
        axis_count(&ax);
        axis_count(&ay);
        rows = (uint64_t)(ay.src_hi - ay.src_lo);
        cols = (uint64_t)(ax.used_hi - ax.used_lo);
        vtaps = (uint64_t)ay.taps;
        out->work += ax.evals + ay.evals;                     /* filter weights */
        out->work += rows * ((uint64_t)ax.taps + (p.premul ? (uint64_t)(ax.src_hi - ax.src_lo) : 0));
        out->work += vtaps * cols;                            /* vertical accumulation */
        out->scratch_bytes = sizeof(int32_t) * (ax.taps + ay.taps) +
                             sizeof(double) * (size_t)(ax.max_taps > ay.max_taps ? ax.max_taps
                                                                                  : ay.max_taps) +
                             (p.premul ? (size_t)(ax.src_hi - ax.src_lo) * (size_t)p.c : 0);
    }
    return CR_OK;
}

cr_err enc_image_preprocess(const enc_image *img, enc_preprocess mode, int size, float *out)
{
    plan p;
    uint8_t *crop = NULL;
    const uint8_t *src;
    cr_err rc;

    if (!img || !out)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: NULL argument");
    rc = plan_make(enc_image_width(img), enc_image_height(img), enc_image_get_mode(img), mode,
                   size, &p);
    if (rc)
        return rc;
    src = enc_image_pixels(img);
    crop = malloc((size_t)p.S * (size_t)p.S * (size_t)p.c);
    if (!crop)
        return cr_error_set(CR_ERR_NOMEM, "preprocess: out of memory");
    rc = p.nearest ? resize_nearest(&p, src, crop) : resize_bicubic(&p, src, crop);
    if (rc)
        goto out;
    if (p.premul)
        unpremultiply(crop, (size_t)p.S * (size_t)p.S, p.c);

    /* 4. convert("RGB"), ToTensor, Normalize — float32 arithmetic as torch does it */
    {
        size_t plane = (size_t)p.S * (size_t)p.S;
        for (size_t i = 0; i < plane; i++) {
            const uint8_t *q = crop + i * (size_t)p.c;
            uint8_t rgb[3];
            if (p.c >= 3) {
                rgb[0] = q[0], rgb[1] = q[1], rgb[2] = q[2];
            } else {
                rgb[0] = rgb[1] = rgb[2] = q[0];
            }
            for (int ch = 0; ch < 3; ch++) {
                float v = (float)rgb[ch] / 255.0f;
                v = v - clip_mean[ch];
                out[(size_t)ch * plane + i] = v / clip_std[ch];
            }
        }
    }
out:
    free(crop);
    return rc;
}

cr_err enc_preprocess_parse(const char *name, enc_preprocess *out)
{
    if (!name || !out)
        return cr_error_set(CR_ERR_INVALID, "enc_preprocess_parse: NULL argument");
    if (strcmp(name, "clip") == 0)
        *out = ENC_PREPROCESS_CLIP;
    else if (strcmp(name, "targetpad") == 0)
        *out = ENC_PREPROCESS_TARGETPAD;
    else if (strcmp(name, "squarepad") == 0)
        *out = ENC_PREPROCESS_SQUAREPAD;
    else
        return cr_error_set(CR_ERR_INVALID,
                            "unknown preprocessing '%s' (expected clip, targetpad or squarepad)",
                            name);
    return CR_OK;
}

cr_err enc_preprocess_parse_list(const char *names, unsigned *mask)
{
    unsigned m = 0;
    const char *p = names;
    if (!names || !mask)
        return cr_error_set(CR_ERR_INVALID, "enc_preprocess_parse_list: NULL argument");
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char one[32];
        enc_preprocess pp;
        if (len == 0 || len >= sizeof one)
            return cr_error_set(CR_ERR_INVALID,
                                "bad preprocessing list '%s' (expected names among clip, "
                                "targetpad, squarepad, separated by commas)", names);
        memcpy(one, p, len);
        one[len] = '\0';
        if (enc_preprocess_parse(one, &pp))
            return CR_ERR_INVALID;
        m |= 1u << pp;
        p += len;
        if (*p == ',' && !*++p)
            return cr_error_set(CR_ERR_INVALID, "bad preprocessing list '%s': trailing comma",
                                names);
    }
    *mask = m;
    return CR_OK;
}

const char *enc_preprocess_name(enc_preprocess mode)
{
    switch (mode) {
    case ENC_PREPROCESS_CLIP: return "clip";
    case ENC_PREPROCESS_TARGETPAD: return "targetpad";
    case ENC_PREPROCESS_SQUAREPAD: return "squarepad";
    }
    return "unknown";
}
