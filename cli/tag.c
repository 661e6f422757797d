/* cirrus tag — zero-shot attribute tagging of images with the CLIP model, in-process: each
 * value of an attribute becomes a prompt from a template, and the image's value is the softmax
 * over 100 x the cosine of the image and prompt embeddings (CLIP's zero-shot classifier; the
 * classifier itself is cli/tagger.c, shared with `cirrus ingest --tag`). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/tagger.h"
#include "common/config.h"
#include "common/fileio.h"
#include "encoder/server.h"

static int usage_tag(FILE *out)
{
    fprintf(out,
            "Usage: cirrus tag --model PATH --attribute NAME=V1,V2,... [--attribute ...]\n"
            "                  [--template T [--template T2 ...] | --prompts FILE.safetensors]\n"
            "                  [--vocab PATH] [--threads T] IMAGE...\n"
            "For each IMAGE prints one JSON object:\n"
            "  {\"image\":FILE,\"attributes\":{NAME:{\"value\":V,\"p\":P,\"probs\":{V1:P1,...}}}}\n"
            "P = softmax over the values of 100 x cos(image, text(T with {} = value)).\n"
            "--template: a prompt with one '{}' (default \"a photo of a {}.\"); given several\n"
            "times, each value's text embedding is the normalized mean over the templates.\n"
            "--prompts: learned context vectors in CoOp's layout, tensor `ctx` [n_ctx, text\n"
            "width]: each prompt is \"X ... X <value>.\" with the n_ctx placeholders' token\n"
            "embeddings replaced by ctx (as CoOp / KDPL train them).\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
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
    cli_tagger *tg = NULL;
    cli_tag_attr attrs[CLI_TAG_MAX_ATTRS];
    const char *tmpl[CLI_TAG_MAX_TEMPLATES] = {CLI_TAG_DEFAULT_TEMPLATE}, *ctx_path = NULL;
    enc_blob *blobs = NULL;
    double *probs = NULL;
    int na = 0, nt = 0, rc = CLI_USAGE, c, nimg = 0, np;
    long long v;

    memset(attrs, 0, sizeof attrs);
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'm': eo.model = optarg; break;
        case 'v': eo.vocab = optarg; break;
        case 't':
            if (nt == CLI_TAG_MAX_TEMPLATES) {
                cli_error("tag", "at most %d --template", CLI_TAG_MAX_TEMPLATES);
                goto out;
            }
            tmpl[nt++] = optarg;
            break;
        case 'p': ctx_path = optarg; break;
        case 'a':
            if (na == CLI_TAG_MAX_ATTRS) {
                cli_error("tag", "at most %d --attribute", CLI_TAG_MAX_ATTRS);
                goto out;
            }
            if (cli_tag_attr_parse(optarg, &attrs[na])) {
                cli_error("tag", "--attribute %s", cr_error_message());
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
    if (ctx_path && nt) {
        cli_error("tag", "--prompts and --template exclude each other");
        goto out;
    }
    if (!ctx_path && !nt)
        nt = 1; /* the default template */
    rc = CLI_FAIL;
    blobs = calloc((size_t)nimg, sizeof *blobs);
    if (!blobs) {
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
    if (enc_service_open(&svc, &eo) ||
        cli_tagger_open(&tg, svc, attrs, na, tmpl, ctx_path ? 0 : nt, ctx_path)) {
        cli_error("tag", "%s", cr_error_message());
        goto out;
    }
    np = cli_tagger_total_values(tg);
    if (!(probs = malloc((size_t)nimg * np * sizeof *probs))) {
        cli_error("tag", "out of memory");
        goto out;
    }
    if (cli_tagger_probs(tg, blobs, (size_t)nimg, probs)) {
        cli_error("tag", "%s", cr_error_message());
        goto out;
    }
    for (int i = 0; i < nimg; i++) {
        const double *row = probs + (size_t)i * np;
        json_t *o = json_object(), *ao = json_object();
        for (int a = 0, off = 0; a < na; off += attrs[a++].n) {
            json_t *ov = json_object(), *pv = json_object();
            double p;
            int best = cli_tagger_best(tg, a, row, &p);
            for (int j = 0; j < attrs[a].n; j++)
                json_object_set_new(pv, attrs[a].values[j], json_real(row[off + j]));
            json_object_set_new(ov, "value", json_string(attrs[a].values[best]));
            json_object_set_new(ov, "p", json_real(p));
            json_object_set_new(ov, "probs", pv);
            json_object_set_new(ao, attrs[a].name, ov);
        }
        json_object_set_new(o, "image", json_string(argv[optind + i]));
        json_object_set_new(o, "attributes", ao);
        cli_print_json(o);
    }
    rc = CLI_OK;
out:
    cli_tagger_close(&tg);
    enc_service_close(&svc);
    for (int i = 0; blobs && i < nimg; i++)
        free((void *)blobs[i].data);
    for (int a = 0; a < na; a++)
        cli_tag_attr_clear(&attrs[a]);
    free(blobs);
    free(probs);
    return rc;
}
