/* Zero-shot tagging (see tagger.h): the prompt embeddings are computed once at open; each
 * image costs one image forward and a dot product per value. */
#include "cli/tagger.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/clip_model.h"
#include "encoder/safetensors.h"
#include "encoder/tokenizer.h"

#define TAG_SCALE 100.0 /* CLIP's learned logit scale, clamped at 100 in training */

struct cli_tagger {
    enc_service *svc;
    const cli_tag_attr *attrs;
    int na, total, d;
    float *txt; /* total x d, unit rows */
    float *img; /* scratch for cli_tagger_probs */
    size_t img_rows;
};

cr_err cli_tag_attr_parse(const char *spec, cli_tag_attr *a)
{
    char *s = strdup(spec), *eq = s ? strchr(s, '=') : NULL;
    memset(a, 0, sizeof *a);
    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!eq || eq == s || !eq[1]) {
        free(s);
        return cr_error_set(CR_ERR_INVALID, "'%s': NAME=V1,V2,... expected", spec);
    }
    *eq = '\0';
    a->name = s;
    for (char *v = eq + 1; v;) {
        char *comma = strchr(v, ',');
        if (comma)
            *comma = '\0';
        if (!*v || a->n == CLI_TAG_MAX_VALUES) {
            cli_tag_attr_clear(a);
            return cr_error_set(CR_ERR_INVALID, "'%s': NAME=V1,V2,... with 1..%d non-empty "
                                "values expected", spec, CLI_TAG_MAX_VALUES);
        }
        a->values[a->n++] = v;
        v = comma ? comma + 1 : NULL;
    }
    return CR_OK;
}

void cli_tag_attr_clear(cli_tag_attr *a)
{
    free(a->name);
    memset(a, 0, sizeof *a);
}

static void normalize_rows(float *v, size_t rows, int d)
{
    for (size_t r = 0; r < rows; r++) {
        double s = 0;
        for (int k = 0; k < d; k++)
            s += (double)v[r * d + k] * v[r * d + k];
        for (int k = 0; k < d && s > 0; k++)
            v[r * d + k] = (float)(v[r * d + k] / sqrt(s));
    }
}

/* "a photo of a {}." with value -> malloc'd prompt */
static char *fill(const char *tmpl, const char *value)
{
    const char *br = strstr(tmpl, "{}");
    size_t n = strlen(tmpl) + strlen(value) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%.*s%s%s", (int)(br - tmpl), tmpl, value, br + 2);
    return p;
}

/* The normalized mean over the templates of each value's normalized text embedding. */
static cr_err template_texts(cli_tagger *t, const char *const *templates, int nt)
{
    const size_t np = (size_t)t->total * (size_t)nt;
    char **prompts = calloc(np, sizeof *prompts);
    float *e = malloc(np * (size_t)t->d * sizeof *e);
    cr_err rc = prompts && e ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int k = 0, i = 0; !rc && k < nt; k++)
        for (int a = 0; !rc && a < t->na; a++)
            for (int v = 0; v < t->attrs[a].n; v++, i++)
                if (!(prompts[i] = fill(templates[k], t->attrs[a].values[v]))) {
                    rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                    break;
                }
    if (!rc)
        rc = enc_service_embed_texts(t->svc, (const char *const *)prompts, np, 1, e, NULL);
    for (size_t r = 0; !rc && r < (size_t)t->total; r++)
        for (int c = 0; c < t->d; c++) {
            double s = 0;
            for (int k = 0; k < nt; k++)
                s += e[((size_t)k * t->total + r) * t->d + c];
            t->txt[r * t->d + c] = (float)(s / nt);
        }
    for (size_t i = 0; prompts && i < np; i++)
        free(prompts[i]);
    free(prompts);
    free(e);
    return rc;
}

/* CoOp: prompts "X X ... X value." tokenized, positions 1..n_ctx replaced by ctx. */
static cr_err ctx_texts(cli_tagger *t, const char *path)
{
    const enc_clip *m = enc_service_model(t->svc);
    int64_t dims[2] = {-1, enc_clip_text_width(m)};
    enc_st *st = NULL;
    float *ctx = NULL;
    int32_t *ids = malloc((size_t)t->total * ENC_TOKENIZER_CONTEXT * sizeof *ids);
    char *text = NULL;
    cr_err rc = ids ? enc_st_open(&st, path) : cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = enc_st_get_f32(st, "ctx", 2, dims, &ctx);
    if (rc)
        goto out;
    int n_ctx = (int)enc_st_find(st, "ctx")->shape[0];
    for (int a = 0, i = 0; a < t->na && !rc; a++)
        for (int v = 0; v < t->attrs[a].n && !rc; v++, i++) {
            const char *value = t->attrs[a].values[v];
            size_t len = 2 * (size_t)n_ctx + strlen(value) + 2;
            free(text);
            if (!(text = malloc(len))) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                break;
            }
            for (int k = 0; k < n_ctx; k++)
                memcpy(text + 2 * k, "X ", 2);
            snprintf(text + 2 * n_ctx, len - 2 * (size_t)n_ctx, "%s.", value);
            rc = enc_tokenizer_encode(enc_service_tokenizer(t->svc), text,
                                      ids + (size_t)i * ENC_TOKENIZER_CONTEXT, NULL, NULL);
        }
    if (!rc)
        rc = enc_clip_encode_tokens_ctx(m, ids, t->total, ctx, n_ctx, t->txt);
out:
    if (rc && strncmp(cr_error_message(), path, strlen(path)) != 0)
        cr_error_wrap(rc, "%s", path);
    free(text);
    free(ctx);
    free(ids);
    enc_st_close(&st);
    return rc;
}

cr_err cli_tagger_open(cli_tagger **out, enc_service *svc, const cli_tag_attr *attrs, int na,
                       const char *const *templates, int n_templates, const char *ctx_path)
{
    cli_tagger *t;
    cr_err rc;
    if (na < 1 || na > CLI_TAG_MAX_ATTRS)
        return cr_error_set(CR_ERR_INVALID, "1..%d attributes expected", CLI_TAG_MAX_ATTRS);
    if (ctx_path ? n_templates != 0 : n_templates < 1 || n_templates > CLI_TAG_MAX_TEMPLATES)
        return cr_error_set(CR_ERR_INVALID, ctx_path ? "learned prompts and templates exclude "
                                                       "each other"
                                                     : "1..%d templates expected",
                            CLI_TAG_MAX_TEMPLATES);
    for (int k = 0; k < n_templates; k++) {
        const char *br = strstr(templates[k], "{}");
        if (!br || strstr(br + 2, "{}"))
            return cr_error_set(CR_ERR_INVALID, "template '%s' must contain '{}' exactly once",
                                templates[k]);
    }
    if (!(t = calloc(1, sizeof *t)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    t->svc = svc;
    t->attrs = attrs;
    t->na = na;
    t->d = enc_service_embed_dim(svc);
    for (int a = 0; a < na; a++)
        t->total += attrs[a].n;
    t->txt = malloc((size_t)t->total * t->d * sizeof *t->txt);
    rc = t->txt ? CR_OK : cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = ctx_path ? ctx_texts(t, ctx_path) : template_texts(t, templates, n_templates);
    if (rc) {
        cli_tagger_close(&t);
        return rc;
    }
    normalize_rows(t->txt, (size_t)t->total, t->d);
    *out = t;
    return CR_OK;
}

void cli_tagger_close(cli_tagger **pp)
{
    cli_tagger *t = pp ? *pp : NULL;
    if (!t)
        return;
    free(t->txt);
    free(t->img);
    free(t);
    *pp = NULL;
}

int cli_tagger_total_values(const cli_tagger *t)
{
    return t->total;
}

cr_err cli_tagger_probs(cli_tagger *t, const enc_blob *images, size_t n, double *probs)
{
    if (n > t->img_rows) {
        float *g = realloc(t->img, n * (size_t)t->d * sizeof *g);
        if (!g)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        t->img = g;
        t->img_rows = n;
    }
    cr_err rc = enc_service_embed_images(t->svc, images, n, ENC_SERVICE_PREPROCESS_DEFAULT, 1,
                                         t->img);
    for (size_t i = 0; !rc && i < n; i++) {
        const float *img = t->img + i * (size_t)t->d;
        double *row = probs + i * (size_t)t->total;
        for (int a = 0, off = 0; a < t->na; off += t->attrs[a++].n) {
            double mx = -INFINITY, sum = 0;
            for (int v = 0; v < t->attrs[a].n; v++) {
                double dot = 0;
                for (int k = 0; k < t->d; k++)
                    dot += (double)img[k] * t->txt[(size_t)(off + v) * t->d + k];
                row[off + v] = TAG_SCALE * dot;
                mx = row[off + v] > mx ? row[off + v] : mx;
            }
            for (int v = 0; v < t->attrs[a].n; v++)
                sum += (row[off + v] = exp(row[off + v] - mx));
            for (int v = 0; v < t->attrs[a].n; v++)
                row[off + v] /= sum;
        }
    }
    return rc;
}

int cli_tagger_best(const cli_tagger *t, int a, const double *row, double *p)
{
    int off = 0, best = 0;
    for (int k = 0; k < a; k++)
        off += t->attrs[k].n;
    for (int v = 1; v < t->attrs[a].n; v++)
        if (row[off + v] > row[off + best])
            best = v;
    *p = row[off + best];
    return best;
}
