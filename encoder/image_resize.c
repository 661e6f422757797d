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
 */
#include "encoder/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREC_BITS (32 - 8 - 2)

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* A plain interleaved 8-bit buffer. */
typedef struct buf8 {
    int w, h, c;
    uint8_t *px;
} buf8;

/* Fixed-point filter weights for a run of output indices [first, first + count). */
typedef struct coeffs {
    int ksize;
    int *bounds;  /* per output: first input index, number of taps */
    int32_t *k;   /* per output: ksize weights */
} coeffs;

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

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

static cr_err coeffs_build(coeffs *c, int in_size, int out_size, int first, int count)
{
    double scale = (double)(float)in_size / out_size; /* Pillow: (in1 - in0) as float box */
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fscale;
    double *tmp = NULL;
    int i, x;

    c->ksize = (int)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)count);
    c->k = malloc(sizeof(int32_t) * (size_t)c->ksize * (size_t)count);
    tmp = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->bounds || !c->k || !tmp) {
        free(tmp);
        coeffs_free(c);
        return cr_error_set(CR_ERR_NOMEM, "resize: out of memory for coefficients");
    }
    for (i = 0; i < count; i++) {
        int xx = first + i;
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / fscale;
        int xmin = (int)(center - support + 0.5);
        int xmax = (int)(center + support + 0.5);
        int32_t *k = c->k + (size_t)i * (size_t)c->ksize;
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            tmp[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += tmp[x];
        }
        for (x = 0; x < c->ksize; x++) {
            double v = 0.0;
            if (x < xmax)
                v = ww != 0.0 ? tmp[x] / ww : tmp[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS))
                         : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        c->bounds[2 * i] = xmin;
        c->bounds[2 * i + 1] = xmax;
    }
    free(tmp);
    return CR_OK;
}

static inline uint8_t clip8(int32_t v)
{
    if (v < 0)
        return 0;
    v >>= PREC_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Output columns [x0, x0+nx) of a width-`ow` horizontal resample, rows [y0, y0+ny). */
static void resample_h(const buf8 *in, int y0, int ny, const coeffs *c, int nx, buf8 *out)
{
    int ch = in->c;
    for (int y = 0; y < ny; y++) {
        const uint8_t *row = in->px + (size_t)(y0 + y) * (size_t)in->w * (size_t)ch;
        uint8_t *dst = out->px + (size_t)y * (size_t)nx * (size_t)ch;
        for (int xx = 0; xx < nx; xx++) {
            int xmin = c->bounds[2 * xx], xn = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * (size_t)c->ksize;
            for (int b = 0; b < ch; b++) {
                int32_t ss = 1 << (PREC_BITS - 1);
                for (int x = 0; x < xn; x++)
                    ss += (int32_t)row[(size_t)(x + xmin) * (size_t)ch + (size_t)b] * k[x];
                dst[(size_t)xx * (size_t)ch + (size_t)b] = clip8(ss);
            }
        }
    }
}

/* Vertical resample of `in` (rows shifted by -row_off) into out rows [0, ny). */
static void resample_v(const buf8 *in, int row_off, const coeffs *c, int ny, buf8 *out)
{
    int ch = in->c;
    size_t stride = (size_t)in->w * (size_t)ch;
    for (int yy = 0; yy < ny; yy++) {
        int ymin = c->bounds[2 * yy] - row_off, yn = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * (size_t)c->ksize;
        uint8_t *dst = out->px + (size_t)yy * stride;
        for (size_t xb = 0; xb < stride; xb++) {
            int32_t ss = 1 << (PREC_BITS - 1);
            for (int y = 0; y < yn; y++)
                ss += (int32_t)in->px[(size_t)(y + ymin) * stride + xb] * k[y];
            dst[xb] = clip8(ss);
        }
    }
}

/* Pillow's ImagingScaleAffine nearest-neighbour table for out indices [first, first+n):
 * the source position accumulates in double exactly as Pillow's loop does. */
static void nearest_table(int in_size, int out_size, int first, int n, int *tab)
{
    double a = (double)(float)in_size / out_size;
    double pos = a * 0.5;
    for (int i = 0; i < first + n; i++) {
        if (i >= first) {
            int v = pos < 0.0 ? -1 : (int)pos;
            tab[i - first] = v >= 0 && v < in_size ? v : -1;
        }
        pos += a;
    }
}

static cr_err resize_nearest(const buf8 *in, int ow, int oh, int x0, int y0, int S, buf8 *out)
{
    int *tx = malloc(sizeof(int) * (size_t)S), *ty = malloc(sizeof(int) * (size_t)S);
    if (!tx || !ty) {
        free(tx);
        free(ty);
        return cr_error_set(CR_ERR_NOMEM, "resize: out of memory");
    }
    nearest_table(in->w, ow, x0, S, tx);
    nearest_table(in->h, oh, y0, S, ty);
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            uint8_t *d = out->px + ((size_t)y * (size_t)S + (size_t)x) * (size_t)in->c;
            if (tx[x] < 0 || ty[y] < 0) {
                memset(d, 0, (size_t)in->c);
                continue;
            }
            memcpy(d, in->px + ((size_t)ty[y] * (size_t)in->w + (size_t)tx[x]) * (size_t)in->c,
                   (size_t)in->c);
        }
    }
    free(tx);
    free(ty);
    return CR_OK;
}

/* Pillow's RGBA -> RGBa: MULDIV255 with rounding. */
static void premultiply(buf8 *b)
{
    size_t n = (size_t)b->w * (size_t)b->h;
    int ac = b->c - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = b->px + i * (size_t)b->c;
        unsigned a = p[ac];
        for (int j = 0; j < ac; j++) {
            unsigned t = p[j] * a + 128;
            p[j] = (uint8_t)(((t >> 8) + t) >> 8);
        }
    }
}

/* Pillow's RGBa -> RGBA: 255 * x / a, truncated, clamped; alpha 0 or 255 untouched. */
static void unpremultiply(buf8 *b)
{
    size_t n = (size_t)b->w * (size_t)b->h;
    int ac = b->c - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = b->px + i * (size_t)b->c;
        unsigned a = p[ac];
        if (a == 0 || a == 255)
            continue;
        for (int j = 0; j < ac; j++) {
            unsigned v = 255u * p[j] / a;
            p[j] = v > 255 ? 255 : (uint8_t)v;
        }
    }
}

/* Bicubic resize of `in` to ow x oh, computing only the S x S window at (x0, y0). */
static cr_err resize_bicubic(const buf8 *in, int ow, int oh, int x0, int y0, int S, buf8 *out)
{
    coeffs ch = {0}, cv = {0};
    buf8 tmp = {0};
    int need_h = ow != in->w, need_v = oh != in->h;
    int yfirst = y0, ylast = y0 + S;
    cr_err rc;

    if (need_v) {
        rc = coeffs_build(&cv, in->h, oh, y0, S);
        if (rc)
            return rc;
        yfirst = cv.bounds[0];
        ylast = cv.bounds[2 * (S - 1)] + cv.bounds[2 * (S - 1) + 1];
        for (int i = 1; i < S; i++)
            if (cv.bounds[2 * i] < yfirst)
                yfirst = cv.bounds[2 * i];
    }
    /* Horizontal pass (or a plain column crop) over the rows the vertical pass reads. */
    tmp.w = S;
    tmp.h = ylast - yfirst;
    tmp.c = in->c;
    tmp.px = malloc((size_t)tmp.w * (size_t)tmp.h * (size_t)tmp.c);
    if (!tmp.px) {
        rc = cr_error_set(CR_ERR_NOMEM, "resize: out of memory");
        goto out;
    }
    if (need_h) {
        rc = coeffs_build(&ch, in->w, ow, x0, S);
        if (rc)
            goto out;
        resample_h(in, yfirst, tmp.h, &ch, S, &tmp);
    } else {
        for (int y = 0; y < tmp.h; y++)
            memcpy(tmp.px + (size_t)y * (size_t)S * (size_t)in->c,
                   in->px + ((size_t)(yfirst + y) * (size_t)in->w + (size_t)x0) * (size_t)in->c,
                   (size_t)S * (size_t)in->c);
    }
    if (need_v)
        resample_v(&tmp, yfirst, &cv, S, out);
    else
        memcpy(out->px, tmp.px, (size_t)S * (size_t)S * (size_t)in->c);
    rc = CR_OK;
out:
    free(tmp.px);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return rc;
}

/* Python's int(round(d / 2.0)) for an integer d >= 0 (round half to even). */
static int half_round_even(int d)
{
    int q = d / 2;
    if (d % 2 == 0)
        return q;
    return q % 2 == 0 ? q : q + 1;
}

/* Zero padding (black, alpha 0) by hp columns left and right, vp rows top and bottom. */
static cr_err pad_image(const buf8 *in, int hp, int vp, buf8 *out)
{
    out->w = in->w + 2 * hp;
    out->h = in->h + 2 * vp;
    out->c = in->c;
    out->px = calloc((size_t)out->w * (size_t)out->h, (size_t)out->c);
    if (!out->px)
        return cr_error_set(CR_ERR_NOMEM, "pad: out of memory for %dx%d", out->w, out->h);
    for (int y = 0; y < in->h; y++)
        memcpy(out->px + ((size_t)(y + vp) * (size_t)out->w + (size_t)hp) * (size_t)out->c,
               in->px + (size_t)y * (size_t)in->w * (size_t)in->c,
               (size_t)in->w * (size_t)in->c);
    return CR_OK;
}

cr_err enc_image_preprocess(const enc_image *img, enc_preprocess mode, int size, float *out)
{
    buf8 src = {0}, padded = {0}, premul = {0}, crop = {0};
    const buf8 *cur;
    enc_image_mode im;
    int S = size, w, h, ow, oh, x0, y0, hp = 0, vp = 0;
    cr_err rc = CR_OK;

    if (!img || !out)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: NULL argument");
    if (size <= 0 || size > 4096)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: bad size %d", size);
    if ((int)mode < ENC_PREPROCESS_CLIP || mode > ENC_PREPROCESS_SQUAREPAD)
        return cr_error_set(CR_ERR_INVALID, "enc_image_preprocess: bad mode %d", (int)mode);

    im = enc_image_get_mode(img);
    src.w = enc_image_width(img);
    src.h = enc_image_height(img);
    src.c = enc_image_channels(img);
    src.px = (uint8_t *)enc_image_pixels(img); /* read only below */
    cur = &src;

    /* 1. padding (CLIP4Cir SquarePad / TargetPad), in the image's own mode */
    w = src.w;
    h = src.h;
    if (mode == ENC_PREPROCESS_SQUAREPAD) {
        int m = w > h ? w : h;
        hp = (m - w) / 2;
        vp = (m - h) / 2;
    } else if (mode == ENC_PREPROCESS_TARGETPAD) {
        int mx = w > h ? w : h, mn = w < h ? w : h;
        if ((double)mx / mn >= ENC_TARGETPAD_RATIO) {
            double scaled = (double)mx / ENC_TARGETPAD_RATIO;
            hp = (int)((scaled - w) / 2);
            vp = (int)((scaled - h) / 2);
            hp = hp < 0 ? 0 : hp;
            vp = vp < 0 ? 0 : vp;
        }
    }
    if (hp || vp) {
        rc = pad_image(&src, hp, vp, &padded);
        if (rc)
            goto out;
        cur = &padded;
    }
    w = cur->w;
    h = cur->h;

    /* 2. Resize(S): shortest side to S, long side int(S * long / short) */
    if (w <= h) {
        ow = S;
        oh = (int)((double)((long long)S * h) / w);
    } else {
        oh = S;
        ow = (int)((double)((long long)S * w) / h);
    }
    /* 3. CenterCrop(S) offsets in the resized image */
    x0 = half_round_even(ow - S);
    y0 = half_round_even(oh - S);

    crop.w = S;
    crop.h = S;
    crop.c = cur->c;
    crop.px = malloc((size_t)S * (size_t)S * (size_t)crop.c);
    if (!crop.px) {
        rc = cr_error_set(CR_ERR_NOMEM, "preprocess: out of memory");
        goto out;
    }
    if (ow == w && oh == h) {
        for (int y = 0; y < S; y++)
            memcpy(crop.px + (size_t)y * (size_t)S * (size_t)crop.c,
                   cur->px + ((size_t)(y + y0) * (size_t)w + (size_t)x0) * (size_t)crop.c,
                   (size_t)S * (size_t)crop.c);
    } else if (im == ENC_IMAGE_P || im == ENC_IMAGE_1) {
        rc = resize_nearest(cur, ow, oh, x0, y0, S, &crop);
    } else if (im == ENC_IMAGE_RGBA || im == ENC_IMAGE_LA) {
        premul = *cur;
        premul.px = malloc((size_t)w * (size_t)h * (size_t)cur->c);
        if (!premul.px) {
            rc = cr_error_set(CR_ERR_NOMEM, "preprocess: out of memory");
            goto out;
        }
        memcpy(premul.px, cur->px, (size_t)w * (size_t)h * (size_t)cur->c);
        premultiply(&premul);
        rc = resize_bicubic(&premul, ow, oh, x0, y0, S, &crop);
        if (rc == CR_OK)
            unpremultiply(&crop);
    } else {
        rc = resize_bicubic(cur, ow, oh, x0, y0, S, &crop);
    }
    if (rc)
        goto out;

    /* 4. convert("RGB"), ToTensor, Normalize — float32 arithmetic as torch does it */
    {
        size_t plane = (size_t)S * (size_t)S;
        for (size_t i = 0; i < plane; i++) {
            const uint8_t *p = crop.px + i * (size_t)crop.c;
            uint8_t rgb[3];
            if (crop.c >= 3) {
                rgb[0] = p[0], rgb[1] = p[1], rgb[2] = p[2];
            } else {
                rgb[0] = rgb[1] = rgb[2] = p[0];
            }
            for (int ch = 0; ch < 3; ch++) {
                float v = (float)rgb[ch] / 255.0f;
                v = v - clip_mean[ch];
                out[(size_t)ch * plane + i] = v / clip_std[ch];
            }
        }
    }
out:
    free(crop.px);
    free(premul.px);
    free(padded.px);
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

const char *enc_preprocess_name(enc_preprocess mode)
{
    switch (mode) {
    case ENC_PREPROCESS_CLIP: return "clip";
    case ENC_PREPROCESS_TARGETPAD: return "targetpad";
    case ENC_PREPROCESS_SQUAREPAD: return "squarepad";
    }
    return "unknown";
}
