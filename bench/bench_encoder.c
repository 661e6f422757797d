/* cirrus-bench encoder — CLIP forward throughput and latency on this machine: images/s at
 * batch 1 and 8, the latency of a 12-token caption, peak RSS, fp32 weight bytes, the GFLOP/s
 * of the image forward against the machine's measured sgemm peak, and, in the same run, the
 * same model in PyTorch (tools/torch_peer.py) when torch is importable. */
#include <cblas.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/clock.h"
#include "common/config.h"
#include "encoder/clip_model.h"

#define DEFAULT_MODEL_F16 "/tmp/cirrus-bench-vit-b-32-f16.safetensors"
#define DEFAULT_MODEL_F32 "/tmp/cirrus-bench-vit-b-32-f32.safetensors"
#define DEFAULT_RN_F16 "/tmp/cirrus-bench-rn50x4-f16.safetensors"
#define DEFAULT_RN_F32 "/tmp/cirrus-bench-rn50x4-f32.safetensors"
#define DEFAULT_L14_F16 "/tmp/cirrus-bench-vit-l-14-f16.safetensors"
#define DEFAULT_L14_F32 "/tmp/cirrus-bench-vit-l-14-f32.safetensors"

typedef struct enc_bench_cfg {
    const char *model, *peer_script, *dtype;
    int rn;  /* --shape rn50x4 */
    int l14; /* --shape vit-l-14 */
    int check_waves; /* --check-images waves (else the garment catalog) */
    long long threads;
    double seconds;
    int json, peer; /* peer: -1 auto, 0 off, 1 on */
    enc_clip_precision precision;
    long long check_images; /* --precision-check N: bf16 vs fp32 over N images, else 0 */
} enc_bench_cfg;

typedef struct enc_bench_result {
    double img_s_b1, img_s_b8, text_ms_12, peak_rss_mb, weights_mb;
    double sgemm_gflops, image_gflop, image_gflops_b8;
    double gemm_sgemm_gflops, gemm_bf16_gflops; /* one c_fc-shaped GEMM (batch 8), both kernels */
    int threads;
} enc_bench_result;

/* ---- a random ViT-B/32 in OpenAI names ---------------------------------------------------- */

typedef struct wtensor {
    char name[96];
    int ndim;
    int64_t shape[4];
    float mean, spread;
} wtensor;

typedef struct wlist {
    wtensor *t;
    int n, cap;
} wlist;

static int wl_add(wlist *l, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                  int64_t d, float mean, float spread)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        wtensor *g = realloc(l->t, (size_t)cap * sizeof *g);
        if (!g)
            return -1;
        l->t = g;
        l->cap = cap;
    }
    snprintf(l->t[l->n].name, sizeof l->t[l->n].name, "%s", name);
    l->t[l->n].ndim = ndim;
    l->t[l->n].shape[0] = a;
    l->t[l->n].shape[1] = b;
    l->t[l->n].shape[2] = c;
    l->t[l->n].shape[3] = d;
    l->t[l->n].mean = mean;
    l->t[l->n].spread = spread;
    l->n++;
    return 0;
}

static int wl_tower(wlist *l, const char *prefix, int layers, int w)
{
    static const struct {
        const char *suffix;
        int ndim, rows, cols; /* multiples of w; cols 0 = 1-D */
        float mean, spread;
    } parts[] = {{"ln_1.weight", 1, 1, 0, 1.f, .1f},         {"ln_1.bias", 1, 1, 0, 0.f, .1f},
                 {"attn.in_proj_weight", 2, 3, 1, 0.f, .04f}, {"attn.in_proj_bias", 1, 3, 0, 0.f, .02f},
                 {"attn.out_proj.weight", 2, 1, 1, 0.f, .04f}, {"attn.out_proj.bias", 1, 1, 0, 0.f, .02f},
                 {"ln_2.weight", 1, 1, 0, 1.f, .1f},         {"ln_2.bias", 1, 1, 0, 0.f, .1f},
                 {"mlp.c_fc.weight", 2, 4, 1, 0.f, .04f},    {"mlp.c_fc.bias", 1, 4, 0, 0.f, .02f},
                 {"mlp.c_proj.weight", 2, 1, 4, 0.f, .02f},  {"mlp.c_proj.bias", 1, 1, 0, 0.f, .02f}};
    char name[96];
    for (int layer = 0; layer < layers; layer++)
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            snprintf(name, sizeof name, "%s%d.%s", prefix, layer, parts[i].suffix);
            if (wl_add(l, name, parts[i].ndim, (int64_t)parts[i].rows * w,
                       (int64_t)parts[i].cols * w, 0, 0, parts[i].mean, parts[i].spread))
                return -1;
        }
    return 0;
}

static uint16_t f32_to_f16(float x)
{
    uint32_t b, sign, mant;
    int e;
    memcpy(&b, &x, sizeof b);
    sign = (b >> 16) & 0x8000u;
    e = (int)((b >> 23) & 0xffu) - 112;
    mant = (b >> 13) & 0x3ffu;
    if (e <= 0)
        return (uint16_t)sign; /* tiny values flush to zero: fine for random weights */
    if (e >= 31)
        return (uint16_t)(sign | 0x7bffu);
    return (uint16_t)(sign | ((uint32_t)e << 10) | mant);
}

/* Writes the tensors of `l` with uniform random weights (fixed seed) as safetensors. */
static cr_err wl_write(const wlist *l, const char *path, int f16)
{
    size_t esz = f16 ? 2 : 4;
    json_t *hdr = json_object();
    char *js = NULL, tmp[512];
    uint64_t off = 0, rng = 0x9e3779b97f4a7c15ull;
    unsigned char *buf = malloc((size_t)1 << 22);
    FILE *f = NULL;
    cr_err rc = CR_OK;

    if (!buf || !hdr) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < l->n; i++) {
        json_t *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < l->t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(l->t[i].shape[d]));
            numel *= (uint64_t)l->t[i].shape[d];
        }
        json_object_set_new(hdr, l->t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", f16 ? "F16" : "F32",
                                      "shape", shape, "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + esz * numel)));
        off += esz * numel;
    }
    js = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    f = fopen(tmp, "wb");
    if (!js || !f) {
        rc = cr_error_set(CR_ERR_IO, "cannot write %s", tmp);
        goto out;
    }
    {
        uint64_t hl = strlen(js);
        unsigned char le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (unsigned char)(hl >> (8 * i));
        fwrite(le, 1, 8, f);
        fwrite(js, 1, hl, f);
    }
    for (int i = 0; i < l->n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < l->t[i].ndim; d++)
            numel *= (uint64_t)l->t[i].shape[d];
        while (numel) {
            size_t k = numel < ((size_t)1 << 20) ? (size_t)numel : ((size_t)1 << 20);
            for (size_t j = 0; j < k; j++) {
                float u, x;
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                u = (float)((double)(rng >> 11) / 9007199254740992.0) * 2.f - 1.f;
                x = l->t[i].mean + l->t[i].spread * u;
                if (f16) {
                    uint16_t h = f32_to_f16(x);
                    memcpy(buf + 2 * j, &h, 2);
                } else {
                    memcpy(buf + 4 * j, &x, 4);
                }
            }
            if (fwrite(buf, esz, k, f) != k) {
                rc = cr_error_set(CR_ERR_IO, "cannot write %s (disk full?)", tmp);
                goto out;
            }
            numel -= k;
        }
    }
    if (fclose(f) != 0) {
        f = NULL;
        rc = cr_error_set(CR_ERR_IO, "cannot write %s", tmp);
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        rc = cr_error_set(CR_ERR_IO, "cannot rename %s to %s", tmp, path);
out:
    if (f) {
        fclose(f);
        unlink(tmp);
    }
    free(js);
    json_decref(hdr);
    free(buf);
    return rc;
}

typedef struct clip_shape {
    int vw, vl, patch, image, tw, tl, embed;
} clip_shape;

/* A CLIP of the given shape in OpenAI names, random weights. */
static cr_err write_clip(const char *path, int f16, const clip_shape *s)
{
    const int vocab = 49408, ctx = 77, grid = s->image / s->patch;
    wlist l = {0};
    cr_err rc;
    if (wl_add(&l, "visual.conv1.weight", 4, s->vw, 3, s->patch, s->patch, 0.f, .02f) ||
        wl_add(&l, "visual.class_embedding", 1, s->vw, 0, 0, 0, 0.f, .05f) ||
        wl_add(&l, "visual.positional_embedding", 2, grid * grid + 1, s->vw, 0, 0, 0.f, .05f) ||
        wl_add(&l, "visual.ln_pre.weight", 1, s->vw, 0, 0, 0, 1.f, .1f) ||
        wl_add(&l, "visual.ln_pre.bias", 1, s->vw, 0, 0, 0, 0.f, .1f) ||
        wl_tower(&l, "visual.transformer.resblocks.", s->vl, s->vw) ||
        wl_add(&l, "visual.ln_post.weight", 1, s->vw, 0, 0, 0, 1.f, .1f) ||
        wl_add(&l, "visual.ln_post.bias", 1, s->vw, 0, 0, 0, 0.f, .1f) ||
        wl_add(&l, "visual.proj", 2, s->vw, s->embed, 0, 0, 0.f, .04f) ||
        wl_add(&l, "token_embedding.weight", 2, vocab, s->tw, 0, 0, 0.f, .02f) ||
        wl_add(&l, "positional_embedding", 2, ctx, s->tw, 0, 0, 0.f, .01f) ||
        wl_tower(&l, "transformer.resblocks.", s->tl, s->tw) ||
        wl_add(&l, "ln_final.weight", 1, s->tw, 0, 0, 0, 1.f, .1f) ||
        wl_add(&l, "ln_final.bias", 1, s->tw, 0, 0, 0, 0.f, .1f) ||
        wl_add(&l, "text_projection", 2, s->tw, s->embed, 0, 0, 0.f, .04f)) {
        free(l.t);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = wl_write(&l, path, f16);
    free(l.t);
    return rc;
}

static cr_err write_vit_b32(const char *path, int f16)
{
    const clip_shape b32 = {768, 12, 32, 224, 512, 12, 512};
    return write_clip(path, f16, &b32);
}

/* OpenAI's ViT-L/14: image tower width 1024, 24 layers, patch 14 at 224 px (304M params);
 * text tower width 768, 12 layers; embedding 768. */
static cr_err write_vit_l14(const char *path, int f16)
{
    const clip_shape l14 = {1024, 24, 14, 224, 768, 12, 768};
    return write_clip(path, f16, &l14);
}

/* conv [cout, cin, k, k] (uniform with unit output variance) + BatchNorm `bn` */
static int wl_conv_bn(wlist *l, const char *conv, const char *bn, int cout, int cin, int k,
                      float gamma)
{
    static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
    const float mean[4] = {gamma, 0.f, 0.f, 1.f}, spread[4] = {.1f * gamma, .1f, .1f, .2f};
    char name[96];
    if (wl_add(l, conv, 4, cout, cin, k, k, 0.f, sqrtf(3.f / (float)(cin * k * k))))
        return -1;
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", bn, parts[i]);
        if (wl_add(l, name, 1, cout, 0, 0, 0, mean[i], spread[i]))
            return -1;
    }
    return 0;
}

/* CLIP's RN50x4 (ModifiedResNet: width 80, blocks 4, 6, 10, 6, 288 px, embedding 640; text
 * width 640, 12 layers) in OpenAI names, random weights. */
static cr_err write_rn50x4(const char *path, int f16)
{
    const int width = 80, blocks[4] = {4, 6, 10, 6}, embed = 640, tw = 640, C = width * 32;
    const int grid = 9, vocab = 49408, ctx = 77;
    char a[96], b[96];
    wlist l = {0};
    cr_err rc;
    int bad = wl_conv_bn(&l, "visual.conv1.weight", "visual.bn1", width / 2, 3, 3, 1.f) ||
              wl_conv_bn(&l, "visual.conv2.weight", "visual.bn2", width / 2, width / 2, 3, 1.f) ||
              wl_conv_bn(&l, "visual.conv3.weight", "visual.bn3", width, width / 2, 3, 1.f);
    for (int s = 0, cin = width; s < 4 && !bad; s++) {
        int p = width << s;
        for (int i = 0; i < blocks[s] && !bad; i++) {
            static const char *const cv[3] = {"conv1", "conv2", "conv3"};
            const int co[3] = {p, p, 4 * p}, ci[3] = {cin, p, p}, k[3] = {1, 3, 1};
            for (int j = 0; j < 3 && !bad; j++) {
                snprintf(a, sizeof a, "visual.layer%d.%d.%s.weight", s + 1, i, cv[j]);
                snprintf(b, sizeof b, "visual.layer%d.%d.bn%d", s + 1, i, j + 1);
                /* a small last gamma keeps the residual stream bounded over 26 blocks */
                bad = wl_conv_bn(&l, a, b, co[j], ci[j], k[j], j == 2 ? .2f : 1.f);
            }
            if (!bad && i == 0) {
                snprintf(a, sizeof a, "visual.layer%d.%d.downsample.0.weight", s + 1, i);
                snprintf(b, sizeof b, "visual.layer%d.%d.downsample.1", s + 1, i);
                bad = wl_conv_bn(&l, a, b, 4 * p, cin, 1, 1.f);
            }
            cin = 4 * p;
        }
    }
    static const char *const pj[3] = {"q_proj", "k_proj", "v_proj"};
    for (int j = 0; j < 3 && !bad; j++) {
        snprintf(a, sizeof a, "visual.attnpool.%s.weight", pj[j]);
        snprintf(b, sizeof b, "visual.attnpool.%s.bias", pj[j]);
        bad = wl_add(&l, a, 2, C, C, 0, 0, 0.f, sqrtf(3.f / (float)C)) ||
              wl_add(&l, b, 1, C, 0, 0, 0, 0.f, .02f);
    }
    if (bad || wl_add(&l, "visual.attnpool.positional_embedding", 2, grid * grid + 1, C, 0, 0, 0.f,
                      .02f) ||
        wl_add(&l, "visual.attnpool.c_proj.weight", 2, embed, C, 0, 0, 0.f, .02f) ||
        wl_add(&l, "visual.attnpool.c_proj.bias", 1, embed, 0, 0, 0, 0.f, .02f) ||
        wl_add(&l, "token_embedding.weight", 2, vocab, tw, 0, 0, 0.f, .02f) ||
        wl_add(&l, "positional_embedding", 2, ctx, tw, 0, 0, 0.f, .01f) ||
        wl_tower(&l, "transformer.resblocks.", 12, tw) ||
        wl_add(&l, "ln_final.weight", 1, tw, 0, 0, 0, 1.f, .1f) ||
        wl_add(&l, "ln_final.bias", 1, tw, 0, 0, 0, 0.f, .1f) ||
        wl_add(&l, "text_projection", 2, tw, embed, 0, 0, 0.f, .04f)) {
        free(l.t);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = wl_write(&l, path, f16);
    free(l.t);
    return rc;
}

/* A random SEARLE phi head for a CLIP of embedding `embed` and text width `tw`. */
static cr_err write_phi(const char *path, int embed, int hidden, int tw)
{
    wlist l = {0};
    cr_err rc;
    if (wl_add(&l, "layers.0.weight", 2, hidden, embed, 0, 0, 0.f, .1f) ||
        wl_add(&l, "layers.0.bias", 1, hidden, 0, 0, 0, 0.f, .02f) ||
        wl_add(&l, "layers.3.weight", 2, hidden, hidden, 0, 0, 0.f, .05f) ||
        wl_add(&l, "layers.3.bias", 1, hidden, 0, 0, 0, 0.f, .02f) ||
        wl_add(&l, "layers.6.weight", 2, tw, hidden, 0, 0, 0.f, .05f) ||
        wl_add(&l, "layers.6.bias", 1, tw, 0, 0, 0, 0.f, .02f)) {
        free(l.t);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = wl_write(&l, path, 0);
    free(l.t);
    return rc;
}

/* cirrus-bench tiny-model --out DIR: a small random CLIP (and phi head) for demos on a
 * machine without real weights. Its rankings are NOT semantic. */
int bench_cmd_tiny_model(int argc, char **argv)
{
    const clip_shape tiny = {128, 2, 16, 64, 128, 2, 64}, b32 = {768, 12, 32, 224, 512, 12, 512};
    int big = argc == 4 && strcmp(argv[3], "--vit-b-32") == 0;
    const clip_shape *shape = big ? &b32 : &tiny;
    char path[4096];
    if ((argc != 3 && !big) || strcmp(argv[1], "--out") != 0) {
        printf("Usage: cirrus-bench tiny-model --out DIR [--vit-b-32]\n"
               "Writes DIR/model.safetensors (a random CLIP: 64x64 images, patch 16, width 128,\n"
               "2+2 layers, embed 64; with --vit-b-32 the ViT-B/32 shapes) and\n"
               "DIR/phi.safetensors. Random weights: rankings made with it are not semantic.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    mkdir(argv[2], 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", argv[2]);
    if (write_clip(path, big, shape)) {
        fprintf(stderr, "cirrus-bench tiny-model: %s\n", cr_error_message());
        return 1;
    }
    snprintf(path, sizeof path, "%s/phi.safetensors", argv[2]);
    if (write_phi(path, shape->embed, big ? 2048 : 256, shape->tw)) {
        fprintf(stderr, "cirrus-bench tiny-model: %s\n", cr_error_message());
        return 1;
    }
    printf("wrote a tiny random CLIP and phi head to %s\n", argv[2]);
    return 0;
}

/* ---- measurements -------------------------------------------------------------------------- */

static double sgemm_peak_gflops(void)
{
    const int n = 1536;
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b),
          *c = malloc((size_t)n * n * sizeof *c);
    double best = 0;
    if (!a || !b || !c)
        goto out;
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = cr_clock_mono_ns();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c,
                    n);
        double s = (double)(cr_clock_mono_ns() - t0) / 1e9, g = 2.0 * n * n * (double)n / s / 1e9;
        if (rep > 0 && g > best) /* the first run warms up the threads */
            best = g;
    }
out:
    free(a);
    free(b);
    free(c);
    return best;
}

/* Images per second at batch `b`, over at least `seconds` and 3 passes after a warm-up. */
static double images_per_s(const enc_clip *m, int b, double seconds)
{
    int s = enc_clip_image_size(m), d = enc_clip_embed_dim(m), passes = 0;
    size_t n = (size_t)b * 3 * (size_t)s * (size_t)s;
    float *px = malloc(n * sizeof *px), *out = malloc((size_t)b * (size_t)d * sizeof *out);
    uint64_t t0, el;
    double r = 0;
    if (!px || !out)
        goto out;
    for (size_t i = 0; i < n; i++)
        px[i] = (float)((i * 2654435761u) % 1000) / 500.f - 1.f;
    if (enc_clip_encode_images(m, px, b, out))
        goto out;
    t0 = cr_clock_mono_us();
    do {
        if (enc_clip_encode_images(m, px, b, out))
            goto out;
        passes++;
        el = cr_clock_mono_us() - t0;
    } while (passes < 3 || (double)el < seconds * 1e6);
    r = (double)passes * b / ((double)el / 1e6);
out:
    free(px);
    free(out);
    return r;
}

/* Median latency (ms) of one caption of `len` tokens (sot, len-2 words, eot). */
static double text_ms(const enc_clip *m, int len, double seconds)
{
    int32_t tok[77] = {0};
    float out[4096];
    double lat[512];
    int n = 0;
    uint64_t start;
    if (enc_clip_embed_dim(m) > 4096 || enc_clip_context_length(m) != 77)
        return 0;
    tok[0] = 49406;
    for (int i = 1; i < len - 1; i++)
        tok[i] = 320 + 37 * i;
    tok[len - 1] = 49407;
    enc_clip_encode_tokens(m, tok, 1, out);
    start = cr_clock_mono_us();
    while (n < 512 && (n < 5 || (double)(cr_clock_mono_us() - start) < seconds * 1e6)) {
        uint64_t t0 = cr_clock_mono_us();
        if (enc_clip_encode_tokens(m, tok, 1, out))
            return 0;
        lat[n++] = (double)(cr_clock_mono_us() - t0) / 1000.0;
    }
    return bench_percentile(lat, (size_t)n, 0.5);
}

/* ---- the PyTorch peer ---------------------------------------------------------------------- */

/* The first interpreter that imports torch and numpy: $CIRRUS_PYTHON, python3, then Debian's
 * /usr/bin/python3 (python3-torch installs there, which a pyenv/venv python3 may shadow). */
static const char *torch_python(void)
{
    static char found[512];
    const char *cands[3] = {getenv("CIRRUS_PYTHON"), "python3", "/usr/bin/python3"};
    char cmd[700];
    if (found[0])
        return found;
    for (int i = 0; i < 3; i++) {
        if (!cands[i] || !cands[i][0] || strchr(cands[i], '\'') != NULL)
            continue;
        snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) {
            snprintf(found, sizeof found, "%s", cands[i]);
            return found;
        }
    }
    return NULL;
}

static const char *peer_script(const enc_bench_cfg *c, char *buf, size_t cap)
{
    const char *src = getenv("CIRRUS_SOURCE_DIR");
    struct stat st;
    if (c->peer_script)
        return c->peer_script;
    if (src && *src) {
        snprintf(buf, cap, "%s/tools/torch_peer.py", src);
        if (stat(buf, &st) == 0)
            return buf;
    }
    /* beside this source file: bench/../tools */
    snprintf(buf, cap, "%s", __FILE__);
    {
        char *slash = strrchr(buf, '/');
        if (slash)
            snprintf(slash, cap - (size_t)(slash - buf), "/../tools/torch_peer.py");
    }
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* Runs the peer and returns its JSON (NULL + a message on stderr when unavailable). */
static json_t *run_peer(const enc_bench_cfg *c, const char *model)
{
    char script_buf[1024], cmd[4096];
    const char *script = peer_script(c, script_buf, sizeof script_buf);
    json_error_t err;
    json_t *j;
    FILE *p;
    char *out = NULL;
    size_t len = 0, cap = 0;

    if (!script) {
        fprintf(stderr, "cirrus-bench encoder: tools/torch_peer.py not found (--peer-script)\n");
        return NULL;
    }
    if (!torch_python()) {
        fprintf(stderr, "cirrus-bench encoder: PyTorch not available (no python3 imports torch "
                        "and numpy; `make bench-deps` installs them)\n");
        return NULL;
    }
    snprintf(cmd, sizeof cmd, "'%s' '%s' --model '%s' --seconds %g --json", torch_python(),
             script, model, c->seconds);
    p = popen(cmd, "r");
    if (!p)
        return NULL;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            char *g = realloc(out, cap + 65536);
            if (!g)
                break;
            out = g;
            cap += 65536;
        }
        size_t k = fread(out + len, 1, 4096, p);
        if (k == 0)
            break;
        len += k;
    }
    if (pclose(p) != 0 || !out) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    j = json_loads(out, 0, &err);
    if (!j)
        fprintf(stderr, "cirrus-bench encoder: peer output unreadable: %s\n", err.text);
    free(out);
    return j;
}

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v && json_is_number(v) ? json_number_value(v) : 0;
}

/* --precision-check N: bf16 against fp32 on `model` (text or JSON). */
static int precision_check(const enc_bench_cfg *c, const char *model)
{
    bench_precision_result pr;
    const int nq = c->check_images < 1000 ? (int)c->check_images : 1000;
    if (bench_precision_check(model, (int)c->threads, (int)c->check_images, nq, !c->check_waves,
                              &pr)) {
        fprintf(stderr, "cirrus-bench encoder: %s\n", cr_error_message());
        return 1;
    }
    if (c->json) {
        printf("{\"model\":\"%s\",\"source\":\"%s\",\"images\":%d,\"queries\":%d,"
               "\"worst_cos_images\":%.6f,\"worst_cos_text\":%.6f,\"top10_same\":%.4f,"
               "\"top10_same_text\":%.4f,\"top10_same_image\":%.4f,\"top10_overlap\":%.4f,"
               "\"top10_overlap_image\":%.4f,\"differ_within_rounding\":%ld,"
               "\"top10_same_fp32_queries_text\":%.4f,\"top10_same_fp32_queries_image\":%.4f,"
               "\"seconds_fp32\":%.1f,\"seconds_bf16\":%.1f}\n",
               model, c->check_waves ? "waves" : "catalog", pr.images, pr.queries,
               pr.worst_cos_images, pr.worst_cos_text, pr.top10_same, pr.top10_same_text,
               pr.top10_same_image, pr.top10_overlap, pr.top10_overlap_image,
               pr.differ_within_rounding, pr.top10_same_fp32q_text, pr.top10_same_fp32q_image,
               pr.seconds_fp32, pr.seconds_bf16);
    } else {
        printf("model %s: %d %s images in a Flat index, %d random 12-token captions and %d "
               "held-out image queries\n", model, pr.images,
               c->check_waves ? "plane-wave" : "garment-catalog", pr.queries, pr.queries);
        printf("worst cosine bf16 vs fp32: images %.6f, captions %.6f\n", pr.worst_cos_images,
               pr.worst_cos_text);
        printf("top-10 over the bf16 index equal to fp32's: %.2f%% of queries (text %.2f%%, "
               "image %.2f%%; mean overlap %.2f%%)\n", 100 * pr.top10_same,
               100 * pr.top10_same_text, 100 * pr.top10_same_image, 100 * pr.top10_overlap);
        printf("queries whose top-10 differs: %ld, of which %ld have fp32's 10th-11th score "
               "margin below the bf16 score error (a swap within bf16 rounding)\n",
               (long)(2 * pr.queries * (1 - pr.top10_same) + 0.5), pr.differ_within_rounding);
        printf("fp32 query vectors on the bf16 index: top-10 equal for %.2f%% of text and "
               "%.2f%% of image queries\n", 100 * pr.top10_same_fp32q_text,
               100 * pr.top10_same_fp32q_image);
        printf("encode time: fp32 %.1f s, bf16 %.1f s\n", pr.seconds_fp32, pr.seconds_bf16);
    }
    return pr.worst_cos_images >= 0.999 && pr.worst_cos_text >= 0.999 &&
                   pr.top10_same_text >= 0.99 && pr.top10_same_image >= 0.99
               ? 0
               : 3;
}

/* ---- command ------------------------------------------------------------------------------- */

static int parse(enc_bench_cfg *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"threads", required_argument, 0, 't'},
        {"json", no_argument, 0, 'j'},          {"peer", no_argument, 0, 'p'},
        {"no-peer", no_argument, 0, 'P'},       {"peer-script", required_argument, 0, 'S'},
        {"seconds", required_argument, 0, 's'}, {"dtype", required_argument, 0, 'd'},
        {"shape", required_argument, 0, 'x'},   {"help", no_argument, 0, 'h'},
        {"precision", required_argument, 0, 'r'}, {"precision-check", required_argument, 0, 'c'},
        {"check-images", required_argument, 0, 'I'}, {0, 0, 0, 0}};
    int ch;
    c->peer = -1;
    c->seconds = 3;
    c->dtype = "f16";
    c->threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (c->threads < 1)
        c->threads = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': c->model = optarg; break;
        case 't':
            if (cr_parse_ll(optarg, 1, 256, &c->threads)) {
                fprintf(stderr, "cirrus-bench encoder: --threads: %s\n", cr_error_message());
                return 2;
            }
            break;
        case 'j': c->json = 1; break;
        case 'r':
            if (enc_clip_parse_precision(optarg, &c->precision)) {
                fprintf(stderr, "cirrus-bench encoder: --precision: %s\n", cr_error_message());
                return 2;
            }
            break;
        case 'c':
            if (cr_parse_ll(optarg, 10, 1000000, &c->check_images)) {
                fprintf(stderr, "cirrus-bench encoder: --precision-check: %s\n",
                        cr_error_message());
                return 2;
            }
            break;
        case 'x':
            if (strcmp(optarg, "vit-b-32") != 0 && strcmp(optarg, "rn50x4") != 0 &&
                strcmp(optarg, "vit-l-14") != 0) {
                fprintf(stderr, "cirrus-bench encoder: --shape must be vit-b-32, vit-l-14 or "
                                "rn50x4\n");
                return 2;
            }
            c->rn = strcmp(optarg, "rn50x4") == 0;
            c->l14 = strcmp(optarg, "vit-l-14") == 0;
            break;
        case 'I':
            if (strcmp(optarg, "catalog") != 0 && strcmp(optarg, "waves") != 0) {
                fprintf(stderr, "cirrus-bench encoder: --check-images must be catalog or "
                                "waves\n");
                return 2;
            }
            c->check_waves = strcmp(optarg, "waves") == 0;
            break;
        case 'p': c->peer = 1; break;
        case 'P': c->peer = 0; break;
        case 'S': c->peer_script = optarg; break;
        case 's':
            if (cr_parse_double(optarg, &c->seconds) || c->seconds <= 0 || c->seconds > 600) {
                fprintf(stderr, "cirrus-bench encoder: --seconds must be in (0, 600]\n");
                return 2;
            }
            break;
        case 'd':
            if (strcmp(optarg, "f16") != 0 && strcmp(optarg, "f32") != 0) {
                fprintf(stderr, "cirrus-bench encoder: --dtype must be f16 or f32\n");
                return 2;
            }
            c->dtype = optarg;
            break;
        default:
            printf("Usage: cirrus-bench encoder [--model PATH |\n"
                   "                            --shape vit-b-32|vit-l-14|rn50x4]\n"
                   "         [--threads T] [--seconds S] [--dtype f16|f32]\n"
                   "         [--peer | --no-peer] [--peer-script PY] [--json]\n"
                   "         [--precision fp32|bf16] [--precision-check N]\n"
                   "         [--check-images catalog|waves]\n"
                   "--precision-check N: N synthetic images (`cirrus-bench catalog`'s garments,\n"
                   "or random plane waves), min(N, 1000) random captions and as many held-out\n"
                   "image queries in fp32 and bf16; prints the worst cosine and the top-10\n"
                   "agreement of retrieval over a Flat index of bf16 embeddings.\n"
                   "Without --model a random model of --shape (OpenAI names; default vit-b-32,\n"
                   "rn50x4: CLIP's RN50x4 ResNet at 288 px) is written once to\n"
                   "%s or %s (or the f32 ones). The PyTorch peer\n"
                   "runs when torch imports (or with --peer), on the same file in the same run.\n",
                   DEFAULT_MODEL_F16, DEFAULT_RN_F16);
            return ch == 'h' ? 0 : 2;
        }
    }
    return -1;
}

int bench_cmd_encoder(int argc, char **argv)
{
    enc_bench_cfg c;
    enc_bench_result r;
    enc_clip_params p = enc_clip_default_params();
    enc_clip *m = NULL;
    json_t *peer = NULL, *o;
    const char *model;
    struct stat st;
    int ret;

    memset(&c, 0, sizeof c);
    memset(&r, 0, sizeof r);
    ret = parse(&c, argc, argv);
    if (ret >= 0)
        return ret;
    model = c.model;
    if (!model) {
        int f16 = strcmp(c.dtype, "f16") == 0;
        if (c.rn)
            model = f16 ? DEFAULT_RN_F16 : DEFAULT_RN_F32;
        else if (c.l14)
            model = f16 ? DEFAULT_L14_F16 : DEFAULT_L14_F32;
        else
            model = f16 ? DEFAULT_MODEL_F16 : DEFAULT_MODEL_F32;
        if (stat(model, &st) != 0) {
            if (!c.json)
                printf("writing a random %s (%s) to %s ...\n",
                       c.rn ? "RN50x4" : c.l14 ? "ViT-L/14" : "ViT-B/32", c.dtype, model);
            if (c.rn    ? write_rn50x4(model, f16)
                : c.l14 ? write_vit_l14(model, f16)
                        : write_vit_b32(model, f16)) {
                fprintf(stderr, "cirrus-bench encoder: %s\n", cr_error_message());
                return 1;
            }
        }
    }
    p.threads = (int)c.threads;
    p.precision = c.precision;
    if (c.check_images)
        return precision_check(&c, model);
    if (enc_clip_open(&m, model, &p)) {
        fprintf(stderr, "cirrus-bench encoder: %s\n", cr_error_message());
        return 1;
    }
    r.threads = enc_clip_threads(m);
    r.weights_mb = (double)enc_clip_weight_bytes(m) / 1048576.0;
    r.sgemm_gflops = sgemm_peak_gflops();
    /* the MLP's c_fc of ViT-B/32 at batch 8: 8 x 50 tokens, 3072 x 768 */
    bench_gemm_pair(400, 3072, 768, &r.gemm_sgemm_gflops, &r.gemm_bf16_gflops);
    r.img_s_b1 = images_per_s(m, 1, c.seconds);
    r.img_s_b8 = images_per_s(m, 8, c.seconds);
    r.text_ms_12 = text_ms(m, 12, c.seconds);
    r.image_gflop = enc_clip_image_flops(m) / 1e9;
    r.image_gflops_b8 = r.image_gflop * r.img_s_b8;
    r.peak_rss_mb = bench_peak_rss_mb();
    enc_clip_close(&m);

    if (c.peer == 1 || (c.peer == -1 && torch_python())) {
        peer = run_peer(&c, model);
        if (!peer)
            fprintf(stderr, "cirrus-bench encoder: the PyTorch peer did not run\n");
    } else if (c.peer == -1 && !c.json) {
        printf("PyTorch not available (no python3 imports torch): no peer; "
               "`make bench-deps` installs it\n");
    }

    if (!c.json) {
        printf("model %s, precision %s, OpenBLAS threads %d, fp32 weights %.1f MB, peak RSS "
               "%.1f MB\n", model, enc_clip_precision_name(c.precision), r.threads, r.weights_mb,
               r.peak_rss_mb);
        printf("GEMM 400x3072x768 (c_fc at batch 8): sgemm %.1f GFLOP/s, bf16 kernel %.1f "
               "GFLOP/s (%.2fx)\n", r.gemm_sgemm_gflops, r.gemm_bf16_gflops,
               r.gemm_sgemm_gflops > 0 ? r.gemm_bf16_gflops / r.gemm_sgemm_gflops : 0);
        printf("sgemm peak (1536^3): %.1f GFLOP/s; image forward %.2f GFLOP\n", r.sgemm_gflops,
               r.image_gflop);
        printf("%-10s %14s %14s %16s %14s\n", "engine", "img/s batch1", "img/s batch8",
               "text ms (12 tok)", "GFLOP/s (b8)");
        printf("%-10s %14.2f %14.2f %16.2f %14.1f\n", "cirrus", r.img_s_b1, r.img_s_b8,
               r.text_ms_12, r.image_gflops_b8);
        if (peer) {
            printf("%-10s %14.2f %14.2f %16.2f %14.1f   (torch %s, %d threads; 77-token text "
                   "%.2f ms)\n", "pytorch", jnum(peer, "images_per_s_batch1"),
                   jnum(peer, "images_per_s_batch8"), jnum(peer, "text_ms_12_tokens"),
                   r.image_gflop * jnum(peer, "images_per_s_batch8"),
                   json_string_value(json_object_get(peer, "torch_version"))
                       ? json_string_value(json_object_get(peer, "torch_version")) : "?",
                   (int)jnum(peer, "threads"), jnum(peer, "text_ms_77_tokens"));
            printf("cirrus / pytorch: images/s batch 1 %.2fx, batch 8 %.2fx; text speed-up "
                   "%.2fx vs 12 tokens, %.2fx vs CLIP's 77-token forward\n",
                   jnum(peer, "images_per_s_batch1") > 0
                       ? r.img_s_b1 / jnum(peer, "images_per_s_batch1") : 0,
                   jnum(peer, "images_per_s_batch8") > 0
                       ? r.img_s_b8 / jnum(peer, "images_per_s_batch8") : 0,
                   r.text_ms_12 > 0 ? jnum(peer, "text_ms_12_tokens") / r.text_ms_12 : 0,
                   r.text_ms_12 > 0 ? jnum(peer, "text_ms_77_tokens") / r.text_ms_12 : 0);
        }
    } else {
        o = json_object();
        json_object_set_new(o, "model", json_string(model));
        json_object_set_new(o, "threads", json_integer(r.threads));
        json_object_set_new(o, "precision", json_string(enc_clip_precision_name(c.precision)));
        json_object_set_new(o, "gemm_400x3072x768_sgemm_gflops", json_real(r.gemm_sgemm_gflops));
        json_object_set_new(o, "gemm_400x3072x768_bf16_gflops", json_real(r.gemm_bf16_gflops));
        json_object_set_new(o, "images_per_s_batch1", json_real(r.img_s_b1));
        json_object_set_new(o, "images_per_s_batch8", json_real(r.img_s_b8));
        json_object_set_new(o, "text_ms_12_tokens", json_real(r.text_ms_12));
        json_object_set_new(o, "peak_rss_mb", json_real(r.peak_rss_mb));
        json_object_set_new(o, "weights_mb", json_real(r.weights_mb));
        json_object_set_new(o, "sgemm_peak_gflops", json_real(r.sgemm_gflops));
        json_object_set_new(o, "image_gflop", json_real(r.image_gflop));
        json_object_set_new(o, "image_gflops_batch8", json_real(r.image_gflops_b8));
        json_object_set_new(o, "fraction_of_sgemm_peak",
                            json_real(r.sgemm_gflops > 0 ? r.image_gflops_b8 / r.sgemm_gflops
                                                         : 0));
        if (peer) {
            json_object_set(o, "peer", peer);
            json_object_set_new(o, "ratio_images_batch1",
                                json_real(jnum(peer, "images_per_s_batch1") > 0
                                              ? r.img_s_b1 / jnum(peer, "images_per_s_batch1")
                                              : 0));
            json_object_set_new(o, "ratio_images_batch8",
                                json_real(jnum(peer, "images_per_s_batch8") > 0
                                              ? r.img_s_b8 / jnum(peer, "images_per_s_batch8")
                                              : 0));
            json_object_set_new(o, "text_speedup_vs_peer_12_tokens",
                                json_real(r.text_ms_12 > 0
                                              ? jnum(peer, "text_ms_12_tokens") / r.text_ms_12
                                              : 0));
            json_object_set_new(o, "text_speedup_vs_peer_77_tokens",
                                json_real(r.text_ms_12 > 0
                                              ? jnum(peer, "text_ms_77_tokens") / r.text_ms_12
                                              : 0));
        } else {
            json_object_set_new(o, "peer", json_null());
        }
        char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
        puts(txt ? txt : "{}");
        free(txt);
        json_decref(o);
    }
    json_decref(peer);
    return 0;
}
