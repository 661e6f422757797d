/* clip_model.c — loading a CLIP from safetensors (OpenAI/OpenCLIP or Hugging Face names),
 * hyper-parameters, and the public encode entry points. See clip_model.h. */
#include "encoder/clip_model.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder/clip_ops.h"
#include "encoder/clip_resnet.h"
#include "encoder/gemm_bf16.h"

struct enc_clip {
    enc_clip_weights w;
    enc_rn *rn;     /* the ModifiedResNet image tower, else NULL (ViT: w.vis) */
    float **allocs; /* every weight array, freed at close */
    size_t nallocs, cap;
    size_t weight_bytes;
    int threads;
    enc_clip_precision precision;
};

/* The tensor names of one naming scheme. Block names are prefix (with the layer) + suffix. */
typedef struct scheme {
    const char *name;
    int hf; /* q/k/v split; projections stored [embed, width] */
    const char *conv, *cls, *vpos, *ln_pre, *ln_post, *vproj;
    const char *tok, *tpos, *ln_final, *tproj;
    const char *vblk, *tblk; /* block prefixes, followed by "<layer>." */
    const char *ln1, *ln2, *out, *fc, *pj;
    const char *qkv_w, *qkv_b; /* OpenAI fused */
    const char *q, *k, *v;     /* HF split (+ ".weight"/".bias") */
} scheme;

static const scheme scheme_openai = {
    .name = "OpenAI",
    .hf = 0,
    .conv = "visual.conv1.weight",
    .cls = "visual.class_embedding",
    .vpos = "visual.positional_embedding",
    .ln_pre = "visual.ln_pre",
    .ln_post = "visual.ln_post",
    .vproj = "visual.proj",
    .tok = "token_embedding.weight",
    .tpos = "positional_embedding",
    .ln_final = "ln_final",
    .tproj = "text_projection",
    .vblk = "visual.transformer.resblocks.",
    .tblk = "transformer.resblocks.",
    .ln1 = "ln_1",
    .ln2 = "ln_2",
    .out = "attn.out_proj",
    .fc = "mlp.c_fc",
    .pj = "mlp.c_proj",
    .qkv_w = "attn.in_proj_weight",
    .qkv_b = "attn.in_proj_bias",
};

static const scheme scheme_hf = {
    .name = "Hugging Face",
    .hf = 1,
    .conv = "vision_model.embeddings.patch_embedding.weight",
    .cls = "vision_model.embeddings.class_embedding",
    .vpos = "vision_model.embeddings.position_embedding.weight",
    .ln_pre = "vision_model.pre_layrnorm",
    .ln_post = "vision_model.post_layernorm",
    .vproj = "visual_projection.weight",
    .tok = "text_model.embeddings.token_embedding.weight",
    .tpos = "text_model.embeddings.position_embedding.weight",
    .ln_final = "text_model.final_layer_norm",
    .tproj = "text_projection.weight",
    .vblk = "vision_model.encoder.layers.",
    .tblk = "text_model.encoder.layers.",
    .ln1 = "layer_norm1",
    .ln2 = "layer_norm2",
    .out = "self_attn.out_proj",
    .fc = "mlp.fc1",
    .pj = "mlp.fc2",
    .q = "self_attn.q_proj",
    .k = "self_attn.k_proj",
    .v = "self_attn.v_proj",
};

/* Values read from config.json; 0 / -1 when absent. */
typedef struct hf_config {
    int vis_heads, txt_heads;
    int act; /* -1 absent, else enc_act */
    float eps;
    int image_size, patch_size, vis_layers, txt_layers;
} hf_config;

enc_clip_params enc_clip_default_params(void)
{
    enc_clip_params p;
    memset(&p, 0, sizeof p);
    p.activation = ENC_CLIP_ACT_AUTO;
    return p;
}

cr_err enc_clip_parse_precision(const char *s, enc_clip_precision *out)
{
    if (s && strcmp(s, "fp32") == 0)
        *out = ENC_CLIP_FP32;
    else if (s && strcmp(s, "bf16") == 0)
        *out = ENC_CLIP_BF16;
    else
        return cr_error_set(CR_ERR_INVALID, "precision '%s': expected fp32 or bf16",
                            s ? s : "(null)");
    return CR_OK;
}

const char *enc_clip_precision_name(enc_clip_precision p)
{
    return p == ENC_CLIP_BF16 ? "bf16" : "fp32";
}

/* ---- loading helpers ---- */

typedef struct loader {
    enc_clip *m;
    const enc_st *st;
    const scheme *sc;
} loader;

static cr_err track(enc_clip *m, float *p, size_t count)
{
    if (m->nallocs == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        float **a = realloc(m->allocs, cap * sizeof *a);
        if (!a) {
            free(p);
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        }
        m->allocs = a;
        m->cap = cap;
    }
    m->allocs[m->nallocs++] = p;
    m->weight_bytes += count * sizeof(float);
    return CR_OK;
}

static cr_err alloc_floats(loader *ld, float **out, size_t count)
{
    float *p = malloc(count ? count * sizeof(float) : 1);
    if (!p)
        return cr_error_set(CR_ERR_NOMEM, "out of memory for %zu weights", count);
    cr_err rc = track(ld->m, p, count);
    if (rc)
        return rc;
    *out = p;
    return CR_OK;
}

/* Loads tensor `name` of shape [d0] (d1 == 0) or [d0, d1] into a fresh tracked array. */
static cr_err load(loader *ld, float **out, const char *name, int64_t d0, int64_t d1)
{
    int64_t dims[2] = {d0, d1};
    float *p = NULL;
    cr_err rc = enc_st_get_f32(ld->st, name, d1 ? 2 : 1, dims, &p);
    if (rc)
        return rc;
    rc = track(ld->m, p, (size_t)d0 * (size_t)(d1 ? d1 : 1));
    if (rc)
        return rc;
    *out = p;
    return CR_OK;
}

/* "<prefix><layer>.<suffix><ext>" into buf ("" if it does not fit: then reported missing). */
static const char *bname(char *buf, size_t size, const char *prefix, int layer, const char *suffix,
                         const char *ext)
{
    int n = snprintf(buf, size, "%s%d.%s%s", prefix, layer, suffix, ext);
    if (n < 0 || (size_t)n >= size)
        buf[0] = '\0';
    return buf;
}

static const char *cat2(char *buf, size_t size, const char *a, const char *b)
{
    int n = snprintf(buf, size, "%s%s", a, b);
    if (n < 0 || (size_t)n >= size)
        buf[0] = '\0';
    return buf;
}

static cr_err load_ln(loader *ld, float **w, float **b, const char *base, int width)
{
    char nm[256];
    cr_err rc = load(ld, w, cat2(nm, sizeof nm, base, ".weight"), width, 0);
    if (!rc)
        rc = load(ld, b, cat2(nm, sizeof nm, base, ".bias"), width, 0);
    return rc;
}

/* Projection into [embed, width] layout. */
static cr_err load_proj(loader *ld, float **out, const char *name, int width, int embed)
{
    if (ld->sc->hf)
        return load(ld, out, name, embed, width);
    float *src = NULL, *dst = NULL;
    cr_err rc = load(ld, &src, name, width, embed);
    if (rc)
        return rc;
    rc = alloc_floats(ld, &dst, (size_t)width * embed);
    if (rc)
        return rc;
    for (int i = 0; i < width; i++)
        for (int j = 0; j < embed; j++)
            dst[(size_t)j * width + i] = src[(size_t)i * embed + j];
    /* drop the source copy (last tracked before dst) */
    ld->m->allocs[ld->m->nallocs - 2] = dst;
    ld->m->nallocs--;
    ld->m->weight_bytes -= (size_t)width * embed * sizeof(float);
    free(src);
    *out = dst;
    return CR_OK;
}

/* Number of consecutive blocks 0, 1, ... that have their first LayerNorm weight. */
static int count_layers(const loader *ld, const char *prefix)
{
    char nm[256];
    int n = 0;
    while (enc_st_find(ld->st, bname(nm, sizeof nm, prefix, n, ld->sc->ln1, ".weight")))
        n++;
    return n;
}

static cr_err load_block(loader *ld, enc_clip_block *b, const char *prefix, int layer, int W, int M)
{
    char nm[256], base[256];
    cr_err rc;
    const scheme *sc = ld->sc;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc)                                                                                    \
            return rc;                                                                             \
    } while (0)
    TRY(load_ln(ld, &b->ln1_w, &b->ln1_b, bname(base, sizeof base, prefix, layer, sc->ln1, ""), W));
    TRY(load_ln(ld, &b->ln2_w, &b->ln2_b, bname(base, sizeof base, prefix, layer, sc->ln2, ""), W));
    if (sc->hf) {
        const char *parts[3] = {sc->q, sc->k, sc->v};
        int64_t wd[2] = {W, W}, bd[1] = {W};
        TRY(alloc_floats(ld, &b->qkv_w, 3 * (size_t)W * W));
        TRY(alloc_floats(ld, &b->qkv_b, 3 * (size_t)W));
        for (int i = 0; i < 3; i++) {
            TRY(enc_st_read_f32(ld->st, bname(nm, sizeof nm, prefix, layer, parts[i], ".weight"), 2,
                                wd, b->qkv_w + (size_t)i * W * W, (size_t)W * W));
            TRY(enc_st_read_f32(ld->st, bname(nm, sizeof nm, prefix, layer, parts[i], ".bias"), 1,
                                bd, b->qkv_b + (size_t)i * W, (size_t)W));
        }
    } else {
        TRY(load(ld, &b->qkv_w, bname(nm, sizeof nm, prefix, layer, sc->qkv_w, ""), 3 * W, W));
        TRY(load(ld, &b->qkv_b, bname(nm, sizeof nm, prefix, layer, sc->qkv_b, ""), 3 * W, 0));
    }
    TRY(load(ld, &b->out_w, bname(nm, sizeof nm, prefix, layer, sc->out, ".weight"), W, W));
    TRY(load(ld, &b->out_b, bname(nm, sizeof nm, prefix, layer, sc->out, ".bias"), W, 0));
    TRY(load(ld, &b->fc_w, bname(nm, sizeof nm, prefix, layer, sc->fc, ".weight"), M, W));
    TRY(load(ld, &b->fc_b, bname(nm, sizeof nm, prefix, layer, sc->fc, ".bias"), M, 0));
    TRY(load(ld, &b->proj_w, bname(nm, sizeof nm, prefix, layer, sc->pj, ".weight"), W, M));
    TRY(load(ld, &b->proj_b, bname(nm, sizeof nm, prefix, layer, sc->pj, ".bias"), W, 0));
#undef TRY
    return CR_OK;
}

/* Heads: params, else config, else width / 64; must divide the width. */
static cr_err pick_heads(int *out, const char *tower, int width, int param, int cfg)
{
    int h = param > 0 ? param : cfg > 0 ? cfg : (width >= 64 ? width / 64 : 1);
    if (h <= 0 || width % h)
        return cr_error_set(CR_ERR_MODEL, "%s tower: %d heads do not divide width %d", tower, h,
                            width);
    *out = h;
    return CR_OK;
}

static cr_err load_tower(loader *ld, enc_clip_tower *t, const char *tower, const char *prefix,
                         int width, int heads)
{
    char nm[256];
    const enc_st_tensor *fc = NULL;
    int64_t fcd[2] = {-1, width};
    t->width = width;
    t->heads = heads;
    t->layers = count_layers(ld, prefix);
    if (t->layers < 1)
        return cr_error_set(CR_ERR_MODEL, "%s tower: no blocks (tensor '%s' is missing)", tower,
                            bname(nm, sizeof nm, prefix, 0, ld->sc->ln1, ".weight"));
    /* every "<prefix>N." tensor must belong to a block 0 .. layers-1 */
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < enc_st_count(ld->st); i++) {
        const char *tn = enc_st_tensor_at(ld->st, i)->name;
        char *end = NULL;
        if (strncmp(tn, prefix, pl) != 0)
            continue;
        long l = strtol(tn + pl, &end, 10);
        if (end != tn + pl && *end == '.' && l >= t->layers)
            return cr_error_set(CR_ERR_MODEL,
                                "%s tower: '%s' belongs to block %ld but tensor "
                                "'%s' is missing",
                                tower, tn, l,
                                bname(nm, sizeof nm, prefix, t->layers, ld->sc->ln1, ".weight"));
    }
    cr_err rc =
        enc_st_check(ld->st, bname(nm, sizeof nm, prefix, 0, ld->sc->fc, ".weight"), 2, fcd, &fc);
    if (rc)
        return rc;
    t->mlp = (int)fc->shape[0];
    if (t->mlp < 1)
        return cr_error_set(CR_ERR_MODEL, "%s tower: empty MLP", tower);
    t->blocks = calloc((size_t)t->layers, sizeof *t->blocks);
    if (!t->blocks)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int l = 0; l < t->layers; l++) {
        rc = load_block(ld, &t->blocks[l], prefix, l, width, t->mlp);
        if (rc)
            return rc;
    }
    return CR_OK;
}

static int act_parse(const char *s)
{
    if (strcmp(s, "quick_gelu") == 0)
        return ENC_ACT_QUICK_GELU;
    if (strcmp(s, "gelu") == 0)
        return ENC_ACT_GELU;
    return -2;
}

static int cfg_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

static cr_err read_config(const char *path, hf_config *c)
{
    cr_err rc = CR_OK;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    memset(c, 0, sizeof *c);
    c->act = -1;
    if (!root)
        return cr_error_set(CR_ERR_MODEL, "%s: line %d: %s", path, jerr.line, jerr.text);
    json_t *tc = json_object_get(root, "text_config");
    json_t *vc = json_object_get(root, "vision_config");
    if (!json_is_object(tc) || !json_is_object(vc)) {
        rc = cr_error_set(CR_ERR_MODEL,
                          "%s: no text_config / vision_config objects (not a "
                          "Hugging Face CLIP config)",
                          path);
        goto out;
    }
    c->txt_heads = cfg_int(tc, "num_attention_heads");
    c->vis_heads = cfg_int(vc, "num_attention_heads");
    c->txt_layers = cfg_int(tc, "num_hidden_layers");
    c->vis_layers = cfg_int(vc, "num_hidden_layers");
    c->image_size = cfg_int(vc, "image_size");
    c->patch_size = cfg_int(vc, "patch_size");
    const char *ta = json_string_value(json_object_get(tc, "hidden_act"));
    const char *va = json_string_value(json_object_get(vc, "hidden_act"));
    if (ta && va && strcmp(ta, va) != 0) {
        rc = cr_error_set(CR_ERR_UNSUPPORTED,
                          "%s: text hidden_act '%s' differs from vision "
                          "hidden_act '%s'",
                          path, ta, va);
        goto out;
    }
    if (ta || va) {
        c->act = act_parse(ta ? ta : va);
        if (c->act < 0) {
            rc = cr_error_set(CR_ERR_UNSUPPORTED,
                              "%s: hidden_act '%s' is not supported (quick_gelu "
                              "or gelu)",
                              path, ta ? ta : va);
            goto out;
        }
    }
    json_t *eps = json_object_get(vc, "layer_norm_eps");
    if (json_is_number(eps))
        c->eps = (float)json_number_value(eps);
out:
    json_decref(root);
    return rc;
}

static cr_err check_cfg(const char *what, int cfg, int have)
{
    if (cfg > 0 && cfg != have)
        return cr_error_set(CR_ERR_MODEL, "config.json %s %d disagrees with the weights (%d)", what,
                            cfg, have);
    return CR_OK;
}

/* An fp16 copy of `n` weights when they are all exactly representable (tracked with the
 * model's allocations; the fp32 accounting of weight_bytes is unchanged). NULL otherwise. */
static uint16_t *half_copy(enc_clip *m, const float *w, size_t n)
{
    uint16_t *h = malloc(n * sizeof *h + 1);
    if (!h)
        return NULL;
    if (!enc_op_to_f16_exact(w, n, h) || track(m, (float *)(void *)h, 0)) {
        free(h);
        return NULL;
    }
    return h;
}

/* bf16 packed copies of one tower's block matrices (tracked like every weight; the fp32
 * ones stay, for the allocation-failure fallback and the fp32 products elsewhere). */
static cr_err pack_bf16_tower(enc_clip *m, enc_clip_tower *t)
{
    const int W = t->width, M = t->mlp;
    for (int l = 0; l < t->layers; l++) {
        enc_clip_block *b = &t->blocks[l];
        struct { uint16_t **dst; const float *w; int n, k; } mats[4] = {
            {&b->qkv_bf, b->qkv_w, 3 * W, W}, {&b->out_bf, b->out_w, W, W},
            {&b->fc_bf, b->fc_w, M, W},       {&b->proj_bf, b->proj_w, W, M}};
        for (int i = 0; i < 4; i++) {
            uint16_t *p = enc_bf16_pack(mats[i].w, mats[i].n, mats[i].k);
            if (!p)
                return cr_error_set(CR_ERR_NOMEM, "out of memory packing bf16 weights");
            if (track(m, (float *)(void *)p, 0))
                return CR_ERR_NOMEM;
            *mats[i].dst = p;
        }
    }
    return CR_OK;
}

static cr_err pack_bf16(enc_clip *m)
{
    if (!enc_bf16_supported())
        return cr_error_set(CR_ERR_UNSUPPORTED,
                            "--precision bf16 needs a CPU with AVX512_BF16 (and a build with "
                            "-mavx512bf16); this one has none: use --precision fp32");
    /* A ResNet tower's vis.layers counts Bottlenecks, not enc_clip_blocks: its convolutions
     * stay fp32. */
    cr_err rc = m->rn ? CR_OK : pack_bf16_tower(m, &m->w.vis);
    return rc ? rc : pack_bf16_tower(m, &m->w.txt);
}

/* Short captions are bound by streaming the text tower's weights, so when they are exactly
 * fp16 (OpenAI's checkpoints are) the tower also keeps fp16 copies for the few-rows kernel —
 * half the bytes, the same numbers — and the token table keeps only fp16 (rows are converted
 * as they are gathered), which pays for the copies in memory. Nothing changes otherwise. */
static void make_half_copies(enc_clip *m)
{
    enc_clip_weights *w = &m->w;
    const int W = w->txt.width, M = w->txt.mlp;
    size_t ntok = (size_t)w->vocab * (size_t)W;
    uint16_t *tok = half_copy(m, w->tok_emb, ntok);
    if (!tok)
        return;
    for (size_t i = 0; i < m->nallocs; i++)
        if (m->allocs[i] == w->tok_emb) {
            free(m->allocs[i]);
            m->allocs[i] = m->allocs[--m->nallocs];
            break;
        }
    w->tok_emb = NULL;
    w->tok_emb_h = tok;
    for (int l = 0; l < w->txt.layers; l++) {
        enc_clip_block *b = &w->txt.blocks[l];
        b->qkv_h = half_copy(m, b->qkv_w, 3 * (size_t)W * W);
        b->out_h = half_copy(m, b->out_w, (size_t)W * W);
        b->fc_h = half_copy(m, b->fc_w, (size_t)M * W);
        b->proj_h = half_copy(m, b->proj_w, (size_t)W * M);
    }
}

static cr_err vit_load(loader *ld, int vw, int np, int vh)
{
    enc_clip_weights *w = &ld->m->w;
    const scheme *sc = ld->sc;
    cr_err rc = load(ld, &w->cls, sc->cls, vw, 0);
    if (!rc)
        rc = load(ld, &w->vis.pos, sc->vpos, np + 1, vw);
    if (!rc)
        rc = load_ln(ld, &w->ln_pre_w, &w->ln_pre_b, sc->ln_pre, vw);
    if (!rc)
        rc = load_tower(ld, &w->vis, "vision", sc->vblk, vw, vh);
    if (!rc)
        rc = load_ln(ld, &w->vis.ln_w, &w->vis.ln_b, sc->ln_post, vw);
    if (!rc)
        rc = load_proj(ld, &w->vis.proj, sc->vproj, vw, w->embed);
    return rc;
}

/* ViT hyper-parameters from conv1, the positional embedding and the projection. */
static cr_err vit_geometry(loader *ld, int *vw_out, int *np_out)
{
    const enc_st *st = ld->st;
    const scheme *sc = ld->sc;
    enc_clip_weights *w = &ld->m->w;
    const enc_st_tensor *t = NULL;
    int64_t any4[4] = {-1, 3, -1, -1}, any2[2] = {-1, -1};
    cr_err rc;
    rc = enc_st_check(st, sc->conv, 4, any4, &t);
    if (rc)
        return rc;
    if (t->shape[2] != t->shape[3] || t->shape[2] < 1 || t->shape[0] < 1)
        return cr_error_set(CR_ERR_MODEL, "'%s': patch kernel must be square", sc->conv);
    int vw = *vw_out = (int)t->shape[0];
    w->patch = (int)t->shape[2];
    int64_t posd[2] = {-1, vw};
    rc = enc_st_check(st, sc->vpos, 2, posd, &t);
    if (rc)
        return rc;
    int np = *np_out = (int)t->shape[0] - 1;
    w->grid = (int)lround(sqrt((double)(np > 0 ? np : 0)));
    if (np < 1 || w->grid * w->grid != np)
        return cr_error_set(CR_ERR_MODEL, "'%s': %d positions is not 1 + a square number of patches",
                            sc->vpos, np + 1);
    w->image_size = w->grid * w->patch;
    rc = enc_st_check(st, sc->vproj, 2, any2, &t);
    if (rc)
        return rc;
    w->embed = (int)(sc->hf ? t->shape[0] : t->shape[1]);
    return CR_OK;
}

cr_err enc_clip_load(enc_clip **out, const enc_st *st, const char *config_path,
                     const enc_clip_params *params)
{
    cr_err rc = CR_OK;
    enc_clip *m = NULL;
    enc_clip_params p = params ? *params : enc_clip_default_params();
    hf_config cfg;
    loader ld;
    const enc_st_tensor *t = NULL;
    int64_t any2[2] = {-1, -1};

    memset(&cfg, 0, sizeof cfg);
    cfg.act = -1;
    if (!out || !st)
        return cr_error_set(CR_ERR_INVALID, "enc_clip_load: NULL argument");
    if (config_path) {
        rc = read_config(config_path, &cfg);
        if (rc)
            return rc;
    }
    m = calloc(1, sizeof *m);
    if (!m)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    enc_clip_weights *w = &m->w;
    ld.m = m;
    ld.st = st;
    if (enc_st_find(st, scheme_openai.conv))
        ld.sc = &scheme_openai;
    else if (enc_st_find(st, scheme_hf.conv))
        ld.sc = &scheme_hf;
    else {
        rc = cr_error_set(CR_ERR_MODEL, "not a CLIP checkpoint: neither '%s' nor '%s' is present",
                          scheme_openai.conv, scheme_hf.conv);
        goto out;
    }
    const scheme *sc = ld.sc;

    int vw = 0, np = 0;
    if (enc_rn_detect(st)) {
        rc = enc_rn_load(&m->rn, st, p.vision_heads);
        if (rc)
            goto out;
        w->embed = enc_rn_embed_dim(m->rn);
        w->image_size = enc_rn_image_size(m->rn);
        w->vis.width = enc_rn_width(m->rn);
        w->vis.heads = enc_rn_heads(m->rn);
        for (int s4 = 0; s4 < 4; s4++)
            w->vis.layers += enc_rn_blocks(m->rn, s4);
        m->weight_bytes += enc_rn_weight_bytes(m->rn);
    } else {
        rc = vit_geometry(&ld, &vw, &np);
        if (rc)
            goto out;
    }

    /* text hyper-parameters from the token and positional embeddings */
    rc = enc_st_check(st, sc->tok, 2, any2, &t);
    if (rc)
        goto out;
    w->vocab = (int)t->shape[0];
    int tw = (int)t->shape[1];
    int64_t tposd[2] = {-1, tw};
    rc = enc_st_check(st, sc->tpos, 2, tposd, &t);
    if (rc)
        goto out;
    w->context = (int)t->shape[0];
    if (w->vocab < 1 || tw < 1 || w->context < 1 || w->embed < 1) {
        rc = cr_error_set(CR_ERR_MODEL, "empty text tower or projection");
        goto out;
    }

    int vh = 0, th = 0;
    rc = m->rn ? CR_OK : pick_heads(&vh, "vision", vw, p.vision_heads, cfg.vis_heads);
    if (!rc)
        rc = pick_heads(&th, "text", tw, p.text_heads, cfg.txt_heads);
    if (rc)
        goto out;
    if (p.activation != ENC_CLIP_ACT_AUTO)
        w->act = p.activation == ENC_CLIP_ACT_GELU ? ENC_ACT_GELU : ENC_ACT_QUICK_GELU;
    else
        w->act = cfg.act >= 0 ? (enc_act)cfg.act : ENC_ACT_QUICK_GELU;
    w->eps = p.layer_norm_eps > 0 ? p.layer_norm_eps : cfg.eps > 0 ? cfg.eps : 1e-5f;

    /* vision weights (a ResNet tower is loaded already) */
    if (!m->rn) {
        int64_t cd[4] = {vw, 3, w->patch, w->patch};
        float *cw = NULL;
        rc = enc_st_get_f32(st, sc->conv, 4, cd, &cw);
        if (!rc)
            rc = track(m, cw, (size_t)vw * 3 * w->patch * w->patch);
        if (!rc)
            w->conv_w = cw;
    }
    if (!rc && !m->rn)
        rc = vit_load(&ld, vw, np, vh);
    /* text weights */
    if (!rc)
        rc = load(&ld, &w->tok_emb, sc->tok, w->vocab, tw);
    if (!rc)
        rc = load(&ld, &w->txt.pos, sc->tpos, w->context, tw);
    if (!rc)
        rc = load_tower(&ld, &w->txt, "text", sc->tblk, tw, th);
    if (!rc)
        rc = load_ln(&ld, &w->txt.ln_w, &w->txt.ln_b, sc->ln_final, tw);
    if (!rc)
        rc = load_proj(&ld, &w->txt.proj, sc->tproj, tw, w->embed);
    if (rc)
        goto out;

    rc = check_cfg("vision_config.image_size", cfg.image_size, w->image_size);
    if (!rc)
        rc = check_cfg("vision_config.patch_size", cfg.patch_size, w->patch);
    if (!rc)
        rc = check_cfg("vision_config.num_hidden_layers", cfg.vis_layers, w->vis.layers);
    if (!rc)
        rc = check_cfg("text_config.num_hidden_layers", cfg.txt_layers, w->txt.layers);
    if (rc)
        goto out;

    make_half_copies(m);
    m->precision = p.precision;
    if (p.precision == ENC_CLIP_BF16 && (rc = pack_bf16(m)) != CR_OK)
        goto out;
    m->threads = p.threads > 0 ? p.threads : openblas_get_num_threads();
    if (p.threads > 0)
        openblas_set_num_threads(p.threads);
    *out = m;
    m = NULL;
out:
    enc_clip_close(&m);
    return rc;
}

cr_err enc_clip_open(enc_clip **out, const char *path, const enc_clip_params *params)
{
    cr_err rc = CR_OK;
    enc_st *st = NULL;
    char *file = NULL, *cfg = NULL;
    struct stat sb;

    if (!out || !path)
        return cr_error_set(CR_ERR_INVALID, "enc_clip_open: NULL argument");
    if (stat(path, &sb) != 0)
        return cr_error_set(CR_ERR_IO, "%s: %s", path, strerror(errno));
    size_t n = strlen(path);
    file = malloc(n + 32);
    cfg = malloc(n + 32);
    if (!file || !cfg) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    int is_dir = S_ISDIR(sb.st_mode);
    if (is_dir) {
        snprintf(file, n + 32, "%s/model.safetensors", path);
        snprintf(cfg, n + 32, "%s/config.json", path);
    } else {
        snprintf(file, n + 32, "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(cfg, n + 32, "%.*s/config.json", (int)(slash - path), path);
        else
            snprintf(cfg, n + 32, "config.json");
    }
    rc = enc_st_open(&st, file);
    if (rc)
        goto out;
    /* config.json: always in a model directory; beside a file only for Hugging Face names */
    int use_cfg = stat(cfg, &sb) == 0 && S_ISREG(sb.st_mode) &&
                  (is_dir || enc_st_find(st, scheme_hf.conv) != NULL);
    rc = enc_clip_load(out, st, use_cfg ? cfg : NULL, params);
    if (rc && strncmp(cr_error_message(), file, strlen(file)) != 0)
        cr_error_wrap(rc, "%s", file);
out:
    enc_st_close(&st);
    free(file);
    free(cfg);
    return rc;
}

void enc_clip_close(enc_clip **pp)
{
    if (!pp || !*pp)
        return;
    enc_clip *m = *pp;
    for (size_t i = 0; i < m->nallocs; i++)
        free(m->allocs[i]);
    free(m->allocs);
    free(m->w.vis.blocks);
    free(m->w.txt.blocks);
    enc_rn_close(&m->rn);
    free(m);
    *pp = NULL;
}

int enc_clip_embed_dim(const enc_clip *m) { return m->w.embed; }
int enc_clip_image_size(const enc_clip *m) { return m->w.image_size; }
int enc_clip_patch_size(const enc_clip *m) { return m->w.patch; }
int enc_clip_vision_width(const enc_clip *m) { return m->w.vis.width; }
int enc_clip_vision_layers(const enc_clip *m) { return m->w.vis.layers; }
int enc_clip_vision_heads(const enc_clip *m) { return m->w.vis.heads; }
int enc_clip_text_width(const enc_clip *m) { return m->w.txt.width; }
int enc_clip_text_layers(const enc_clip *m) { return m->w.txt.layers; }
int enc_clip_text_heads(const enc_clip *m) { return m->w.txt.heads; }
int enc_clip_context_length(const enc_clip *m) { return m->w.context; }
int enc_clip_vocab_size(const enc_clip *m) { return m->w.vocab; }
size_t enc_clip_weight_bytes(const enc_clip *m) { return m->weight_bytes; }

int enc_clip_is_resnet(const enc_clip *m) { return m->rn != NULL; }

int enc_clip_resnet_blocks(const enc_clip *m, int stage)
{
    return m->rn ? enc_rn_blocks(m->rn, stage) : 0;
}

double enc_clip_image_flops(const enc_clip *m)
{
    if (m->rn)
        return enc_rn_flops(m->rn);
    /* patch embedding; per block qkv, out, two MLP GEMMs and attention; projection */
    const enc_clip_weights *w = &m->w;
    double W = w->vis.width, M = w->vis.mlp, T = (double)w->grid * w->grid + 1;
    double blk = 2 * T * W * (3 * W + W + 2 * M) + 4 * T * T * W;
    return 2 * (T - 1) * W * 3.0 * w->patch * w->patch + w->vis.layers * blk + 2 * W * w->embed;
}

enc_clip_act enc_clip_activation(const enc_clip *m)
{
    return m->w.act == ENC_ACT_GELU ? ENC_CLIP_ACT_GELU : ENC_CLIP_ACT_QUICK_GELU;
}

void enc_clip_set_threads(enc_clip *m, int n)
{
    if (n < 1)
        n = 1;
    m->threads = n;
    openblas_set_num_threads(n);
}

int enc_clip_threads(const enc_clip *m) { return m->threads; }

enc_clip_precision enc_clip_get_precision(const enc_clip *m) { return m->precision; }

cr_err enc_clip_encode_images(const enc_clip *m, const float *pixels, int n, float *out)
{
    if (!m || n < 0 || (n && (!pixels || !out)))
        return cr_error_set(CR_ERR_INVALID, "enc_clip_encode_images: bad argument");
    if (m->rn)
        return enc_rn_forward(m->rn, pixels, n, out);
    return enc_fwd_images(&m->w, pixels, n, out);
}

cr_err enc_clip_encode_tokens(const enc_clip *m, const int32_t *tokens, int n, float *out)
{
    if (!m || n < 0 || (n && (!tokens || !out)))
        return cr_error_set(CR_ERR_INVALID, "enc_clip_encode_tokens: bad argument");
    return enc_fwd_tokens(&m->w, tokens, n, NULL, 0, NULL, 0, out);
}

cr_err enc_clip_encode_tokens_pseudo(const enc_clip *m, const int32_t *tokens, int n,
                                     const float *pseudo, int32_t pseudo_id, float *out)
{
    if (!m || n < 0 || (n && (!tokens || !out || !pseudo)))
        return cr_error_set(CR_ERR_INVALID, "enc_clip_encode_tokens_pseudo: bad argument");
    return enc_fwd_tokens(&m->w, tokens, n, pseudo, pseudo_id, NULL, 0, out);
}

cr_err enc_clip_encode_tokens_ctx(const enc_clip *m, const int32_t *tokens, int n,
                                  const float *ctx, int n_ctx, float *out)
{
    if (!m || n < 0 || (n && (!tokens || !out || !ctx)) || n_ctx < 1)
        return cr_error_set(CR_ERR_INVALID, "enc_clip_encode_tokens_ctx: bad argument");
    for (int i = 0; i < n; i++) {
        const int32_t *row = tokens + (size_t)i * m->w.context;
        int eot = 0;
        for (int j = 1; j < m->w.context; j++)
            eot = row[j] > row[eot] ? j : eot;
        if (eot <= n_ctx)
            return cr_error_set(CR_ERR_INVALID,
                                "row %d: the end of text (position %d) is inside the %d context "
                                "vectors",
                                i, eot, n_ctx);
    }
    return enc_fwd_tokens(&m->w, tokens, n, NULL, 0, ctx, n_ctx, out);
}
