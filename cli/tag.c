/* cirrus tag — zero-shot attribute tagging of images with the CLIP model, in-process: each
 * value of an attribute becomes a prompt from a template, and the image's value is the softmax
 * over 100 x the cosine of the image and prompt embeddings (CLIP's zero-shot classifier). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/config.h"
#include "common/fileio.h"
#include "encoder/clip_model.h"
#include "encoder/safetensors.h"
#include "encoder/server.h"
#include "encoder/tokenizer.h"

#define TAG_MAX_ATTRS 16
#define TAG_MAX_VALUES 256
#define TAG_SCALE 100.0 /* CLIP's learned logit scale, clamped at 100 in training */

typedef struct tag_attr {
    char *name;               /* "color" (owned: the split --attribute copy) */
    char *values[TAG_MAX_VALUES];
    int n;
} tag_attr;

static int usage_tag(FILE *out)
{
    fprintf(out,
            "Usage: cirrus tag --model PATH --attribute NAME=V1,V2,... [--attribute ...]\n"
            "                  [--template T | --prompts FILE.safetensors] [--vocab PATH]\n"
            "                  [--threads T] IMAGE...\n"
            "For each IMAGE prints one JSON object:\n"
            "  {\"image\":FILE,\"attributes\":{NAME:{\"value\":V,\"p\":P,\"probs\":{V1:P1,...}}}}\n"
            "P = softmax over the values of 100 x cos(image, text(T with {} = value)).\n"
            "--template: a prompt with one '{}' (default \"a photo of a {}.\").\n"
            "--prompts: learned context vectors in CoOp's layout, tensor `ctx` [n_ctx, text\n"
            "width]: each prompt is \"X ... X <value>.\" with the n_ctx placeholders' token\n"
            "embeddings replaced by ctx (as CoOp / KDPL train them).\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

/* CoOp: prompts "X X ... X value." tokenized, positions 1..n_ctx replaced by ctx; out
 * normalized rows. */
static cr_err ctx_texts(enc_service *svc, const char *path, char **values, int n, float *out)
{
    const enc_clip *m = enc_service_model(svc);
    const int d = enc_clip_embed_dim(m);
    int64_t dims[2] = {-1, enc_clip_text_width(m)};
    enc_st *st = NULL;
    float *ctx = NULL;
    int32_t *ids = malloc((size_t)n * ENC_TOKENIZER_CONTEXT * sizeof *ids);
    char *text = NULL;
    cr_err rc = ids ? enc_st_open(&st, path) : cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = enc_st_get_f32(st, "ctx", 2, dims, &ctx);
    if (rc)
        goto out;
    int n_ctx = (int)enc_st_find(st, "ctx")->shape[0];
    for (int v = 0; v < n && !rc; v++) {
        size_t len = 2 * (size_t)n_ctx + strlen(values[v]) + 2;
        free(text);
        if (!(text = malloc(len))) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        for (int k = 0; k < n_ctx; k++)
            memcpy(text + 2 * k, "X ", 2);
        snprintf(text + 2 * n_ctx, len - 2 * (size_t)n_ctx, "%s.", values[v]);
        rc = enc_tokenizer_encode(enc_service_tokenizer(svc), text,
                                  ids + (size_t)v * ENC_TOKENIZER_CONTEXT, NULL, NULL);
    }
    if (!rc)
        rc = enc_clip_encode_tokens_ctx(m, ids, n, ctx, n_ctx, out);
    for (int v = 0; v < n && !rc; v++) {
        double s = 0;
        for (int k = 0; k < d; k++)
            s += (double)out[(size_t)v * d + k] * out[(size_t)v * d + k];
        for (int k = 0; k < d && s > 0; k++)
            out[(size_t)v * d + k] = (float)(out[(size_t)v * d + k] / sqrt(s));
    }
out:
    if (rc && strncmp(cr_error_message(), path, strlen(path)) != 0)
        cr_error_wrap(rc, "%s", path);
    free(text);
    free(ctx);
    free(ids);
    enc_st_close(&st);
    return rc;
}

/* "color=red,blue" -> attr (the copy is owned by attr->name). */
static int parse_attr(const char *arg, tag_attr *a)
{
    char *s = strdup(arg), *eq = s ? strchr(s, '=') : NULL;
    if (!s || !eq || eq == s || !eq[1]) {
        free(s);
        return -1;
    }
    *eq = '\0';
    a->name = s;
    a->n = 0;
    for (char *v = eq + 1; v;) {
        char *comma = strchr(v, ',');
        if (comma)
            *comma = '\0';
        if (!*v || a->n == TAG_MAX_VALUES)
            return -1;
        a->values[a->n++] = v;
        v = comma ? comma + 1 : NULL;
    }
    return a->n >= 1 ? 0 : -1;
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

static void attr_print(json_t *attrs, const tag_attr *a, const float *img, const float *txt,
                       int d)
{
    double logits[TAG_MAX_VALUES], mx = -INFINITY, sum = 0;
    int best = 0;
    for (int v = 0; v < a->n; v++) {
        double dot = 0;
        for (int k = 0; k < d; k++)
            dot += (double)img[k] * txt[(size_t)v * d + k];
        logits[v] = TAG_SCALE * dot;
        if (logits[v] > mx) {
            mx = logits[v];
            best = v;
        }
    }
    for (int v = 0; v < a->n; v++)
        sum += exp(logits[v] - mx);
    json_t *o = json_object(), *probs = json_object();
    for (int v = 0; v < a->n; v++)
        json_object_set_new(probs, a->values[v], json_real(exp(logits[v] - mx) / sum));
    json_object_set_new(o, "value", json_string(a->values[best]));
    json_object_set_new(o, "p", json_real(1.0 / sum));
    json_object_set_new(o, "probs", probs);
    json_object_set_new(attrs, a->name, o);
}

int cli_cmd_tag(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"vocab", required_argument, 0, 'v'},
        {"attribute", required_argument, 0, 'a'}, {"template", required_argument, 0, 't'},
        {"threads", required_argument, 0, 'T'},   {"prompts", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    enc_service_opts eo = enc_service_default_opts();
    enc_service *svc = NULL;
    tag_attr attrs[TAG_MAX_ATTRS];
    const char *tmpl = "a photo of a {}.", *ctx_path = NULL;
    char **prompts = NULL, **values = NULL; /* values: borrowed from attrs */
    enc_blob *blobs = NULL;
    float *img = NULL, *txt = NULL;
    int na = 0, rc = CLI_USAGE, c, d, nimg = 0, np = 0;
    long long v;

    memset(attrs, 0, sizeof attrs);
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'm': eo.model = optarg; break;
        case 'v': eo.vocab = optarg; break;
        case 't': tmpl = optarg; break;
        case 'p': ctx_path = optarg; break;
        case 'a':
            if (na == TAG_MAX_ATTRS || parse_attr(optarg, &attrs[na])) {
                cli_error("tag", "--attribute '%s': NAME=V1,V2,... (at most %d attributes of "
                          "%d values)", optarg, TAG_MAX_ATTRS, TAG_MAX_VALUES);
                free(attrs[na].name);
                attrs[na].name = NULL;
                goto out;
            }
            na++;
            break;
        case 'T':
            if (cr_parse_ll(optarg, 0, 256, &v)) {
                cli_error("tag", "--threads: %s", cr_error_message());
                goto out;
            }
            eo.threads = (int)v;
            break;
        case 'h': rc = usage_tag(stdout); goto out;
        default: rc = usage_tag(stderr); goto out;
        }
    }
    nimg = argc - optind;
    if (!eo.model || na == 0 || nimg < 1) {
        cli_error("tag", "--model, at least one --attribute and one IMAGE are required");
        rc = usage_tag(stderr);
        goto out;
    }
    if (!strstr(tmpl, "{}") || strstr(strstr(tmpl, "{}") + 2, "{}")) {
        cli_error("tag", "--template must contain '{}' exactly once");
        goto out;
    }
    rc = CLI_FAIL;
    for (int a = 0; a < na; a++)
        np += attrs[a].n;
    prompts = calloc((size_t)np, sizeof *prompts);
    values = calloc((size_t)np, sizeof *values);
    blobs = calloc((size_t)nimg, sizeof *blobs);
    if (!prompts || !values || !blobs) {
        cli_error("tag", "out of memory");
        goto out;
    }
    for (int a = 0, k = 0; a < na; a++)
        for (int j = 0; j < attrs[a].n; j++, k++)
            if (!(values[k] = attrs[a].values[j]) || !(prompts[k] = fill(tmpl, values[k]))) {
                cli_error("tag", "out of memory");
                goto out;
            }
    for (int i = 0; i < nimg; i++)
        if (cr_file_read(argv[optind + i], (uint8_t **)&blobs[i].data, &blobs[i].len)) {
            cli_error("tag", "%s", cr_error_message());
            goto out;
        }
    eo.batch_wait_ms = 0;
    eo.max_batch = 1024;
    if (enc_service_open(&svc, &eo)) {
        cli_error("tag", "%s", cr_error_message());
        goto out;
    }
    d = enc_service_embed_dim(svc);
    img = malloc((size_t)nimg * d * sizeof *img);
    txt = malloc((size_t)np * d * sizeof *txt);
    if (!img || !txt) {
        cli_error("tag", "out of memory");
        goto out;
    }
    if (enc_service_embed_images(svc, blobs, (size_t)nimg, ENC_SERVICE_PREPROCESS_DEFAULT, 1,
                                 img) ||
        (ctx_path ? ctx_texts(svc, ctx_path, values, np, txt)
                  : enc_service_embed_texts(svc, (const char **)prompts, (size_t)np, 1, txt,
                                            NULL))) {
        cli_error("tag", "%s", cr_error_message());
        goto out;
    }
    for (int i = 0; i < nimg; i++) {
        json_t *o = json_object(), *ao = json_object();
        for (int a = 0, off = 0; a < na; off += attrs[a++].n)
            attr_print(ao, &attrs[a], img + (size_t)i * d, txt + (size_t)off * d, d);
        json_object_set_new(o, "image", json_string(argv[optind + i]));
        json_object_set_new(o, "attributes", ao);
        cli_print_json(o);
    }
    rc = CLI_OK;
out:
    enc_service_close(&svc);
    for (int i = 0; blobs && i < nimg; i++)
        free((void *)blobs[i].data);
    for (int i = 0; prompts && i < np; i++)
        free(prompts[i]);
    for (int a = 0; a < TAG_MAX_ATTRS; a++)
        free(attrs[a].name);
    free(prompts);
    free(values);
    free(blobs);
    free(img);
    free(txt);
    return rc;
}
