/* compose.c — composition heads (SEARLE phi, CLIP4Cir Combiner, sum, baselines).
 *
 * Every head runs batched: one GEMM per linear layer over all the rows of a call. The text
 * tower sees every caption of the call in (at most) two passes, one for the SEARLE prompts
 * (with pseudo-word embeddings) and one for the plain captions.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "encoder/compose.h"
#include "encoder/safetensors.h"

#define CTX ENC_TOKENIZER_CONTEXT
/* SEARLE's placeholder: the token of "$" followed by a word break. */
#define DOLLAR_TOKEN "$</w>"

/* A torch nn.Linear: y = x W^T + b, W [out, in]. */
typedef struct linear {
    float *w;
    float *b;
    int out, in;
} linear;

struct enc_composer {
    const enc_clip *model;
    const enc_tokenizer *tok;
    int dim;        /* CLIP embed_dim */
    int text_width; /* text tower width = phi output */
    int32_t dollar; /* id of "$</w>" (259) */
    int has_phi, has_comb;
    linear phi[3];
    linear tproj, iproj, comb, outl, ds0, ds3; /* Combiner */
    char phi_why[320], comb_why[320];          /* why a head is absent */
};

/* ---- small helpers ---- */

static void linear_free(linear *l)
{
    free(l->w);
    free(l->b);
    l->w = l->b = NULL;
}

/* Dimension `axis` of 2-D tensor `name`; CR_ERR_MODEL when missing or not 2-D. */
static cr_err tensor_dim(const enc_st *st, const char *name, int axis, int *out)
{
    int64_t any[2] = {-1, -1};
    const enc_st_tensor *t = NULL;
    cr_err rc = enc_st_check(st, name, 2, any, &t);
    if (rc)
        return rc;
    if (t->shape[axis] <= 0 || t->shape[axis] > (1 << 20))
        return cr_error_set(CR_ERR_MODEL, "tensor '%s': implausible size %lld", name,
                            (long long)t->shape[axis]);
    *out = (int)t->shape[axis];
    return CR_OK;
}

/* Loads `prefix`.weight [out, in] and `prefix`.bias [out], shape-checked. */
static cr_err linear_load(linear *l, const enc_st *st, const char *prefix, int out, int in)
{
    char name[128];
    int64_t wshape[2] = {out, in}, bshape[1] = {out};
    cr_err rc;

    snprintf(name, sizeof name, "%s.weight", prefix);
    rc = enc_st_get_f32(st, name, 2, wshape, &l->w);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    rc = enc_st_get_f32(st, name, 1, bshape, &l->b);
    if (rc) {
        linear_free(l);
        return rc;
    }
    l->out = out;
    l->in = in;
    return CR_OK;
}

/* y[i, :out] = x[i, :in] W^T + b for n rows; x has leading dimension ldx, y ldy. */
static void linear_fwd(const linear *l, const float *x, int ldx, int n, float *y, int ldy)
{
    if (n <= 0)
        return;
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * ldy, l->b, (size_t)l->out * sizeof *y);
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, l->out, l->in, 1.f, l->w, l->in, x, 1, 1.f, y,
                    1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->in, 1.f, x, ldx, l->w,
                    l->in, 1.f, y, ldy);
}

static void relu_rows(float *y, int n, int cols, int ld)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < cols; j++)
            if (!(y[(size_t)i * ld + j] > 0.f))
                y[(size_t)i * ld + j] = 0.f;
}

/* Exact (erf) GELU, torch.nn.GELU() default. */
static void gelu_erf(float *y, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        double x = y[i];
        y[i] = (float)(0.5 * x * (1.0 + erf(x * 0.70710678118654752440)));
    }
}

/* F.normalize: x / max(||x||, 1e-12). */
static void normalize(float *x, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++)
        s += (double)x[j] * x[j];
    double nrm = sqrt(s);
    if (nrm < 1e-12)
        nrm = 1e-12;
    for (int j = 0; j < d; j++)
        x[j] = (float)(x[j] / nrm);
}

static int path_missing(const char *path)
{
    struct stat sb;
    return stat(path, &sb) != 0 && errno == ENOENT;
}

/* ---- head loading ---- */

static cr_err phi_load(enc_composer *c, const enc_st *st)
{
    int h0 = 0, h1 = 0;
    cr_err rc;
    if ((rc = tensor_dim(st, "layers.0.weight", 0, &h0)) ||
        (rc = linear_load(&c->phi[0], st, "layers.0", h0, c->dim)) ||
        (rc = tensor_dim(st, "layers.3.weight", 0, &h1)) ||
        (rc = linear_load(&c->phi[1], st, "layers.3", h1, h0)) ||
        (rc = linear_load(&c->phi[2], st, "layers.6", c->text_width, h1)))
        return rc;
    return CR_OK;
}

static cr_err combiner_load(enc_composer *c, const enc_st *st)
{
    int p = 0, h = 0, hd = 0;
    cr_err rc;
    if ((rc = tensor_dim(st, "text_projection_layer.weight", 0, &p)) ||
        (rc = linear_load(&c->tproj, st, "text_projection_layer", p, c->dim)) ||
        (rc = linear_load(&c->iproj, st, "image_projection_layer", p, c->dim)) ||
        (rc = tensor_dim(st, "combiner_layer.weight", 0, &h)) ||
        (rc = linear_load(&c->comb, st, "combiner_layer", h, 2 * p)) ||
        (rc = linear_load(&c->outl, st, "output_layer", c->dim, h)) ||
        (rc = tensor_dim(st, "dynamic_scalar.0.weight", 0, &hd)) ||
        (rc = linear_load(&c->ds0, st, "dynamic_scalar.0", hd, 2 * p)) ||
        (rc = linear_load(&c->ds3, st, "dynamic_scalar.3", 1, hd)))
        return rc;
    return CR_OK;
}

/* Opens one head file. A path that does not exist leaves the head absent (with the reason in
 * `why`); any other failure is an error. */
static cr_err head_open(enc_composer *c, const char *path, const char *what, int is_phi,
                        int *has, char *why, size_t why_size)
{
    enc_st *st = NULL;
    cr_err rc;

    if (!path) {
        snprintf(why, why_size, "no %s head was configured", what);
        return CR_OK;
    }
    if (path_missing(path)) {
        snprintf(why, why_size, "%s head file %s does not exist", what, path);
        CR_WARN("compose", "%s: method unavailable", why);
        return CR_OK;
    }
    rc = enc_st_open(&st, path);
    if (!rc)
        rc = is_phi ? phi_load(c, st) : combiner_load(c, st);
    if (rc)
        cr_error_wrap(rc, "%s head %s does not fit the CLIP model (embed_dim %d, text width %d)",
                      what, path, c->dim, c->text_width);
    else
        *has = 1;
    enc_st_close(&st);
    return rc;
}

cr_err enc_composer_open(enc_composer **out, const enc_clip *model, const enc_tokenizer *tok,
                         const char *phi_path, const char *combiner_path)
{
    enc_composer *c = NULL;
    cr_err rc;

    if (!out || !model || !tok)
        return cr_error_set(CR_ERR_INVALID, "enc_composer_open: NULL argument");
    c = calloc(1, sizeof *c);
    if (!c)
        return cr_error_set(CR_ERR_NOMEM, "enc_composer_open: out of memory");
    c->model = model;
    c->tok = tok;
    c->dim = enc_clip_embed_dim(model);
    c->text_width = enc_clip_text_width(model);
    rc = enc_tokenizer_token_id(tok, DOLLAR_TOKEN, &c->dollar);
    if (rc) {
        rc = cr_error_set(CR_ERR_MODEL, "vocabulary has no '%s' token for SEARLE", DOLLAR_TOKEN);
        goto out;
    }
    rc = head_open(c, phi_path, "phi", 1, &c->has_phi, c->phi_why, sizeof c->phi_why);
    if (rc)
        goto out;
    rc = head_open(c, combiner_path, "combiner", 0, &c->has_comb, c->comb_why,
                   sizeof c->comb_why);
out:
    if (rc)
        enc_composer_close(&c);
    else
        *out = c;
    return rc;
}

void enc_composer_close(enc_composer **pp)
{
    enc_composer *c;
    if (!pp || !*pp)
        return;
    c = *pp;
    for (int i = 0; i < 3; i++)
        linear_free(&c->phi[i]);
    linear_free(&c->tproj);
    linear_free(&c->iproj);
    linear_free(&c->comb);
    linear_free(&c->outl);
    linear_free(&c->ds0);
    linear_free(&c->ds3);
    free(c);
    *pp = NULL;
}

/* ---- methods ---- */

static const char *const method_names[] = {NULL, "searle", "combiner", "sum", "text", "image"};

cr_err enc_compose_method_parse(const char *name, enc_compose_method *out)
{
    if (!name || !out)
        return cr_error_set(CR_ERR_INVALID, "compose method: NULL argument");
    for (int m = ENC_COMPOSE_SEARLE; m <= ENC_COMPOSE_IMAGE; m++)
        if (strcmp(name, method_names[m]) == 0) {
            *out = (enc_compose_method)m;
            return CR_OK;
        }
    return cr_error_set(CR_ERR_INVALID,
                        "unknown compose method '%s' (searle|combiner|sum|text|image)", name);
}

const char *enc_compose_method_name(enc_compose_method m)
{
    return m >= ENC_COMPOSE_SEARLE && m <= ENC_COMPOSE_IMAGE ? method_names[m] : "unknown";
}

int enc_composer_has(const enc_composer *c, enc_compose_method m)
{
    if (!c)
        return 0;
    switch (m) {
    case ENC_COMPOSE_SEARLE: return c->has_phi;
    case ENC_COMPOSE_COMBINER: return c->has_comb;
    case ENC_COMPOSE_SUM:
    case ENC_COMPOSE_TEXT:
    case ENC_COMPOSE_IMAGE: return 1;
    }
    return 0;
}

/* ---- head forwards ---- */

cr_err enc_composer_phi(const enc_composer *c, const float *ref, size_t n, float *out)
{
    float *h0 = NULL, *h1 = NULL;
    cr_err rc = CR_OK;

    if (!c || (n && (!ref || !out)))
        return cr_error_set(CR_ERR_INVALID, "enc_composer_phi: NULL argument");
    if (!c->has_phi)
        return cr_error_set(CR_ERR_UNSUPPORTED, "searle: %s", c->phi_why);
    if (n == 0)
        return CR_OK;
    if (n > INT32_MAX / 4)
        return cr_error_set(CR_ERR_INVALID, "enc_composer_phi: batch too large");
    h0 = malloc(n * (size_t)c->phi[0].out * sizeof *h0);
    h1 = malloc(n * (size_t)c->phi[1].out * sizeof *h1);
    if (!h0 || !h1) {
        rc = cr_error_set(CR_ERR_NOMEM, "enc_composer_phi: out of memory");
        goto out;
    }
    /* Linear, GELU, (Dropout), Linear, GELU, (Dropout), Linear */
    linear_fwd(&c->phi[0], ref, c->dim, (int)n, h0, c->phi[0].out);
    gelu_erf(h0, n * (size_t)c->phi[0].out);
    linear_fwd(&c->phi[1], h0, c->phi[0].out, (int)n, h1, c->phi[1].out);
    gelu_erf(h1, n * (size_t)c->phi[1].out);
    linear_fwd(&c->phi[2], h1, c->phi[1].out, (int)n, out, c->text_width);
out:
    free(h0);
    free(h1);
    return rc;
}

cr_err enc_composer_combine(const enc_composer *c, const float *image, const float *text,
                            size_t n, float *out)
{
    float *raw = NULL, *hid = NULL, *dsh = NULL, *lam = NULL;
    int d, p;
    cr_err rc = CR_OK;

    if (!c || (n && (!image || !text || !out)))
        return cr_error_set(CR_ERR_INVALID, "enc_composer_combine: NULL argument");
    if (!c->has_comb)
        return cr_error_set(CR_ERR_UNSUPPORTED, "combiner: %s", c->comb_why);
    if (n == 0)
        return CR_OK;
    if (n > INT32_MAX / 4)
        return cr_error_set(CR_ERR_INVALID, "enc_composer_combine: batch too large");
    d = c->dim;
    p = c->tproj.out;
    raw = malloc(n * 2 * (size_t)p * sizeof *raw);
    hid = malloc(n * (size_t)c->comb.out * sizeof *hid);
    dsh = malloc(n * (size_t)c->ds0.out * sizeof *dsh);
    lam = malloc(n * sizeof *lam);
    if (!raw || !hid || !dsh || !lam) {
        rc = cr_error_set(CR_ERR_NOMEM, "enc_composer_combine: out of memory");
        goto out;
    }
    /* raw = [relu(text_proj(t)) | relu(image_proj(i))], text first */
    linear_fwd(&c->tproj, text, d, (int)n, raw, 2 * p);
    linear_fwd(&c->iproj, image, d, (int)n, raw + p, 2 * p);
    relu_rows(raw, (int)n, 2 * p, 2 * p);
    /* combined = relu(combiner_layer(raw)) */
    linear_fwd(&c->comb, raw, 2 * p, (int)n, hid, c->comb.out);
    relu_rows(hid, (int)n, c->comb.out, c->comb.out);
    /* lambda = sigmoid(ds3(relu(ds0(raw)))) */
    linear_fwd(&c->ds0, raw, 2 * p, (int)n, dsh, c->ds0.out);
    relu_rows(dsh, (int)n, c->ds0.out, c->ds0.out);
    linear_fwd(&c->ds3, dsh, c->ds0.out, (int)n, lam, 1);
    /* out = normalize(output_layer(combined) + lambda text + (1 - lambda) image) */
    linear_fwd(&c->outl, hid, c->comb.out, (int)n, out, d);
    for (size_t i = 0; i < n; i++) {
        float l = 1.f / (1.f + expf(-lam[i]));
        float *o = out + i * (size_t)d;
        const float *t = text + i * (size_t)d, *im = image + i * (size_t)d;
        for (int j = 0; j < d; j++)
            o[j] += l * t[j] + (1.f - l) * im[j];
        normalize(o, d);
    }
out:
    free(raw);
    free(hid);
    free(dsh);
    free(lam);
    return rc;
}

/* ---- prompt building ---- */

/* Checks a SEARLE template: exactly one '$' and exactly one "{}". */
static cr_err template_check(const char *t)
{
    const char *brace = strstr(t, "{}");
    size_t dollars = 0;
    for (const char *s = t; *s; s++)
        dollars += *s == '$';
    if (dollars != 1)
        return cr_error_set(CR_ERR_INVALID,
                            "prompt template '%s' must contain exactly one '$' (has %zu)", t,
                            dollars);
    if (!brace || strstr(brace + 2, "{}"))
        return cr_error_set(CR_ERR_INVALID,
                            "prompt template '%s' must contain exactly one '{}' (the caption)",
                            t);
    return CR_OK;
}

/* Appends text to a growing buffer. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static cr_err sbuf_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return cr_error_set(CR_ERR_NOMEM, "compose: out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return CR_OK;
}

/* The caption of variant v: c1 alone, or "{c1} and {c2}" (v = 0) / "{c2} and {c1}" (v = 1). */
static cr_err caption_build(sbuf *b, const char *c1, const char *c2, int v)
{
    cr_err rc;
    b->len = 0;
    if (!c2)
        return sbuf_add(b, c1, strlen(c1));
    const char *x = v ? c2 : c1, *y = v ? c1 : c2;
    if ((rc = sbuf_add(b, x, strlen(x))) || (rc = sbuf_add(b, " and ", 5)) ||
        (rc = sbuf_add(b, y, strlen(y))))
        return rc;
    return CR_OK;
}

/* Template with "{}" replaced by the caption; up to the '$' only when `prefix`. */
static cr_err prompt_build(sbuf *b, const char *tmpl, const char *caption, int prefix)
{
    const char *brace = strstr(tmpl, "{}"), *dollar = strchr(tmpl, '$');
    const char *end = prefix ? dollar : tmpl + strlen(tmpl);
    cr_err rc;
    b->len = 0;
    if (brace + 2 <= end) {
        if ((rc = sbuf_add(b, tmpl, (size_t)(brace - tmpl))) ||
            (rc = sbuf_add(b, caption, strlen(caption))) ||
            (rc = sbuf_add(b, brace + 2, (size_t)(end - brace - 2))))
            return rc;
        return CR_OK;
    }
    return sbuf_add(b, tmpl, (size_t)(end - tmpl));
}

/* Tokenizes a SEARLE prompt and marks the template's '$' token by the id `mark` (a sentinel
 * unused in the row is substituted later). The template's '$' is at 1 + the number of tokens
 * of the text before it; when the tokenizer joined it to its neighbours, the first 259 of the
 * row is taken, as SEARLE does. Returns the position in *pos. */
static cr_err prompt_tokens(const enc_composer *c, const char *tmpl, const char *caption,
                            sbuf *b, int32_t *ids, int *truncated, int *pos)
{
    size_t before = 0;
    int p = -1;
    cr_err rc;

    if ((rc = prompt_build(b, tmpl, caption, 1)) ||
        (rc = enc_tokenizer_tokenize(c->tok, b->p, NULL, 0, &before)))
        return rc;
    if ((rc = prompt_build(b, tmpl, caption, 0)) ||
        (rc = enc_tokenizer_encode(c->tok, b->p, ids, NULL, truncated)))
        return rc;
    if (before + 1 < CTX - 1 && ids[before + 1] == c->dollar) {
        p = (int)before + 1;
    } else {
        for (int j = 1; j < CTX - 1 && p < 0; j++)
            if (ids[j] == c->dollar)
                p = j;
    }
    if (p < 0)
        return cr_error_set(CR_ERR_INVALID,
                            "prompt '%.80s': the template's '$' is not a separate token or was "
                            "cut off at %d tokens",
                            b->p, CTX);
    *pos = p;
    return CR_OK;
}

/* ---- run ---- */

/* One text row: input `in`, FashionIQ variant `v`. */
typedef struct row {
    size_t in;
    int v;
    int pseudo; /* SEARLE prompt */
    size_t idx; /* row index within its pass (pseudo or plain) */
} row;

static int needs_text(enc_compose_method m)
{
    return m != ENC_COMPOSE_IMAGE;
}

/* Encodes the pseudo rows: replaces each marked position by a sentinel id absent from every
 * row of the chunk, so that "first occurrence" is exactly the marked position. */
static cr_err encode_pseudo(const enc_composer *c, int32_t *tok, const int *pos, size_t n,
                            const float *pseudo, float *feat)
{
    int32_t vocab = enc_tokenizer_vocab_size(c->tok), eot = enc_tokenizer_eot(c->tok);
    unsigned char *used = NULL;
    cr_err rc = CR_OK;

    if (n == 0)
        return CR_OK;
    used = malloc((size_t)vocab);
    if (!used)
        return cr_error_set(CR_ERR_NOMEM, "compose: out of memory");
    for (size_t s = 0; s < n; s += ENC_CLIP_CHUNK) {
        size_t m = n - s < ENC_CLIP_CHUNK ? n - s : ENC_CLIP_CHUNK;
        int32_t sentinel = -1;
        memset(used, 0, (size_t)vocab);
        for (size_t i = s * CTX; i < (s + m) * CTX; i++)
            if (tok[i] >= 0 && tok[i] < vocab)
                used[tok[i]] = 1;
        for (int32_t id = 1; id < eot && id < vocab && sentinel < 0; id++)
            if (!used[id])
                sentinel = id;
        if (sentinel < 0) {
            rc = cr_error_set(CR_ERR_INTERNAL, "compose: no free token id for the pseudo-word");
            break;
        }
        for (size_t i = s; i < s + m; i++)
            tok[i * CTX + pos[i]] = sentinel;
        rc = enc_clip_encode_tokens_pseudo(c->model, tok + s * CTX, (int)m,
                                           pseudo + s * (size_t)c->text_width, sentinel,
                                           feat + s * (size_t)c->dim);
        if (rc)
            break;
    }
    free(used);
    return rc;
}

cr_err enc_composer_run(const enc_composer *c, const enc_compose_input *in, size_t n,
                        float *out, int *truncated)
{
    row *rows = NULL;
    int32_t *tok_p = NULL, *tok_t = NULL;
    int *pos = NULL;
    float *refs_s = NULL, *phi_s = NULL, *pseudo = NULL, *feat_p = NULL, *feat_t = NULL;
    float *comp = NULL, *cimg = NULL, *ctxt = NULL, *cout = NULL;
    size_t *phi_of = NULL;
    sbuf cap = {0}, prompt = {0};
    size_t nr = 0, np = 0, nt = 0, ns = 0, nc = 0, d;
    cr_err rc = CR_OK;

    if (!c || (n && (!in || !out)))
        return cr_error_set(CR_ERR_INVALID, "enc_composer_run: NULL argument");
    if (n == 0)
        return CR_OK;
    if (n > (size_t)INT32_MAX / 8)
        return cr_error_set(CR_ERR_INVALID, "enc_composer_run: batch too large");
    d = (size_t)c->dim;

    /* Validate, count rows. */
    for (size_t i = 0; i < n; i++) {
        enc_compose_method m = in[i].method;
        if (m < ENC_COMPOSE_SEARLE || m > ENC_COMPOSE_IMAGE)
            return cr_error_set(CR_ERR_INVALID, "input %zu: unknown compose method %d", i,
                                (int)m);
        if (!enc_composer_has(c, m))
            return cr_error_set(CR_ERR_UNSUPPORTED, "input %zu: method %s unavailable: %s", i,
                                enc_compose_method_name(m),
                                m == ENC_COMPOSE_SEARLE ? c->phi_why : c->comb_why);
        if (!in[i].ref)
            return cr_error_set(CR_ERR_INVALID, "input %zu: no reference embedding", i);
        for (size_t j = 0; j < d; j++)
            if (!isfinite(in[i].ref[j]))
                return cr_error_set(CR_ERR_INVALID,
                                    "input %zu: reference embedding has a non-finite value", i);
        if (m == ENC_COMPOSE_SEARLE) {
            rc = template_check(in[i].prompt_template ? in[i].prompt_template
                                                      : ENC_COMPOSE_DEFAULT_TEMPLATE);
            if (rc)
                return cr_error_wrap(rc, "input %zu", i);
            ns++;
        }
        if (needs_text(m))
            nr += in[i].caption2 ? 2 : 1;
        if (truncated)
            truncated[i] = 0;
    }

    rows = calloc(nr ? nr : 1, sizeof *rows);
    tok_p = malloc((nr ? nr : 1) * CTX * sizeof *tok_p);
    tok_t = malloc((nr ? nr : 1) * CTX * sizeof *tok_t);
    pos = malloc((nr ? nr : 1) * sizeof *pos);
    comp = malloc((nr ? nr : 1) * d * sizeof *comp);
    phi_of = malloc(n * sizeof *phi_of);
    refs_s = malloc((ns ? ns : 1) * d * sizeof *refs_s);
    phi_s = malloc((ns ? ns : 1) * (size_t)c->text_width * sizeof *phi_s);
    if (!rows || !tok_p || !tok_t || !pos || !comp || !phi_of || !refs_s || !phi_s) {
        rc = cr_error_set(CR_ERR_NOMEM, "compose: out of memory");
        goto out;
    }

    /* Tokenize every row. */
    ns = 0;
    for (size_t i = 0, r = 0; i < n; i++) {
        enc_compose_method m = in[i].method;
        const char *c1 = in[i].caption ? in[i].caption : "";
        if (m == ENC_COMPOSE_SEARLE) {
            memcpy(refs_s + ns * d, in[i].ref, d * sizeof *refs_s);
            phi_of[i] = ns++;
        }
        if (!needs_text(m))
            continue;
        for (int v = 0; v < (in[i].caption2 ? 2 : 1); v++, r++) {
            int tr = 0;
            rows[r].in = i;
            rows[r].v = v;
            rows[r].pseudo = m == ENC_COMPOSE_SEARLE;
            rc = caption_build(&cap, c1, in[i].caption2, v);
            if (rc)
                goto out;
            if (rows[r].pseudo) {
                const char *t = in[i].prompt_template ? in[i].prompt_template
                                                      : ENC_COMPOSE_DEFAULT_TEMPLATE;
                rows[r].idx = np;
                rc = prompt_tokens(c, t, cap.p, &prompt, tok_p + np * CTX, &tr, &pos[np]);
                np++;
            } else {
                rows[r].idx = nt;
                rc = enc_tokenizer_encode(c->tok, cap.p, tok_t + nt * CTX, NULL, &tr);
                nt++;
            }
            if (rc) {
                cr_error_wrap(rc, "input %zu", i);
                goto out;
            }
            if (truncated && tr)
                truncated[i] = 1;
        }
    }

    /* SEARLE: phi over the distinct references, then the prompts through the text tower. */
    if (np) {
        pseudo = malloc(np * (size_t)c->text_width * sizeof *pseudo);
        feat_p = malloc(np * d * sizeof *feat_p);
        if (!pseudo || !feat_p) {
            rc = cr_error_set(CR_ERR_NOMEM, "compose: out of memory");
            goto out;
        }
        rc = enc_composer_phi(c, refs_s, ns, phi_s);
        if (rc)
            goto out;
        for (size_t r = 0; r < nr; r++)
            if (rows[r].pseudo)
                memcpy(pseudo + rows[r].idx * (size_t)c->text_width,
                       phi_s + phi_of[rows[r].in] * (size_t)c->text_width,
                       (size_t)c->text_width * sizeof *pseudo);
        rc = encode_pseudo(c, tok_p, pos, np, pseudo, feat_p);
        if (rc)
            goto out;
    }
    if (nt) {
        feat_t = malloc(nt * d * sizeof *feat_t);
        if (!feat_t) {
            rc = cr_error_set(CR_ERR_NOMEM, "compose: out of memory");
            goto out;
        }
        rc = enc_clip_encode_tokens(c->model, tok_t, (int)nt, feat_t);
        if (rc)
            goto out;
    }

    /* Per-row composition (normalized), the Combiner rows batched. */
    for (size_t r = 0; r < nr; r++)
        nc += in[rows[r].in].method == ENC_COMPOSE_COMBINER;
    if (nc) {
        cimg = malloc(nc * d * sizeof *cimg);
        ctxt = malloc(nc * d * sizeof *ctxt);
        cout = malloc(nc * d * sizeof *cout);
        if (!cimg || !ctxt || !cout) {
            rc = cr_error_set(CR_ERR_NOMEM, "compose: out of memory");
            goto out;
        }
        for (size_t r = 0, k = 0; r < nr; r++)
            if (in[rows[r].in].method == ENC_COMPOSE_COMBINER) {
                memcpy(cimg + k * d, in[rows[r].in].ref, d * sizeof *cimg);
                memcpy(ctxt + k * d, feat_t + rows[r].idx * d, d * sizeof *ctxt);
                k++;
            }
        rc = enc_composer_combine(c, cimg, ctxt, nc, cout);
        if (rc)
            goto out;
    }
    for (size_t r = 0, k = 0; r < nr; r++) {
        const enc_compose_input *x = &in[rows[r].in];
        float *o = comp + r * d;
        const float *t = rows[r].pseudo ? feat_p + rows[r].idx * d : feat_t + rows[r].idx * d;
        if (x->method == ENC_COMPOSE_COMBINER) {
            memcpy(o, cout + k++ * d, d * sizeof *o);
            continue;
        }
        for (size_t j = 0; j < d; j++)
            o[j] = x->method == ENC_COMPOSE_SUM ? x->ref[j] + t[j] : t[j];
        normalize(o, (int)d);
    }

    /* Per input: one row, the mean of two (then normalized), or the image alone. */
    for (size_t i = 0, r = 0; i < n; i++) {
        float *o = out + i * d;
        if (!needs_text(in[i].method)) {
            memcpy(o, in[i].ref, d * sizeof *o);
        } else if (in[i].caption2) {
            for (size_t j = 0; j < d; j++)
                o[j] = 0.5f * (comp[r * d + j] + comp[(r + 1) * d + j]);
            r += 2;
        } else {
            memcpy(o, comp + r * d, d * sizeof *o);
            r++;
            continue;
        }
        normalize(o, (int)d);
    }
out:
    free(rows);
    free(tok_p);
    free(tok_t);
    free(pos);
    free(refs_s);
    free(phi_s);
    free(phi_of);
    free(pseudo);
    free(feat_p);
    free(feat_t);
    free(comp);
    free(cimg);
    free(ctxt);
    free(cout);
    free(cap.p);
    free(prompt.p);
    return rc;
}
