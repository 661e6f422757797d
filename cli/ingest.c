/* cirrus ingest — a JSONL catalog of images and attributes into a coordinator (or `cirrus
 * serve`), which encodes each image and routes it to its shard group:
 *   {"id": "sku-1", "image": "path/relative/to/DIR.jpg", "attributes": {"category": "dress"}}
 * Per-item errors are reported and do not stop the ingest; the exit status says whether any
 * item failed. With --tag, attributes an item lacks are filled from its image by zero-shot
 * tagging (cli/tagger.c, the classifier of `cirrus tag`) with a model loaded here: NAME gets
 * the most probable value and NAME_prob its probability, when that is above --tag-threshold;
 * attributes the catalog sets are kept. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "cli/cli.h"
#include "gateway/attrs_json.h"
#include "common/config.h"
#include "cli/progress.h"
#include "cli/tagger.h"
#include "encoder/server.h"

typedef struct ingest_item {
    char *id;
    uint8_t *image;
    size_t image_len;
    Cirrus__V1__Attribute **attrs;
    size_t n_attrs;
    json_t *json; /* the attributes object as read (for tagging) */
    long line;
} ingest_item;

/* --tag: the classifier and what it fills. */
typedef struct ingest_tag {
    enc_service *svc;
    cli_tagger *tg;
    cli_tag_attr attrs[CLI_TAG_MAX_ATTRS];
    int na;
    double threshold;
    double *probs; /* batch x total values */
    enc_blob *blobs;
    size_t *which;
    size_t tagged, below; /* attribute values stored / left missing (under the threshold) */
} ingest_tag;

static void item_clear(ingest_item *it)
{
    free(it->id);
    free(it->image);
    cr_attrs_free(it->attrs, it->n_attrs);
    json_decref(it->json);
    memset(it, 0, sizeof *it);
}

/* Parses one catalog line; errors name the line. */
static cr_err parse_line(const char *line, long lineno, const char *dir, ingest_item *it)
{
    json_error_t err;
    json_t *j = json_loads(line, 0, &err), *id, *img;
    char path[4096];
    cr_err rc = CR_OK;
    memset(it, 0, sizeof *it);
    it->line = lineno;
    if (!j)
        return cr_error_set(CR_ERR_INVALID, "line %ld: %s", lineno, err.text);
    id = json_object_get(j, "id");
    img = json_object_get(j, "image");
    if (!json_is_string(id) || !json_is_string(img)) {
        rc = cr_error_set(CR_ERR_INVALID, "line %ld: needs string fields \"id\" and \"image\"",
                          lineno);
        goto out;
    }
    it->id = strdup(json_string_value(id));
    if (strstr(json_string_value(img), "..")) {
        rc = cr_error_set(CR_ERR_INVALID, "line %ld: image path may not contain '..'", lineno);
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(img));
    rc = cr_file_read(path, &it->image, &it->image_len);
    if (!rc)
        rc = cr_attrs_from_json(json_object_get(j, "attributes"), &it->attrs, &it->n_attrs);
    if (!rc) {
        json_t *a = json_object_get(j, "attributes");
        it->json = a ? json_incref(a) : json_object();
    }
    if (rc)
        cr_error_wrap(rc, "line %ld (%s)", lineno, it->id ? it->id : "?");
out:
    json_decref(j);
    return rc;
}

/* Tags the images of items[0..n) that lack one of the tag attributes; an item whose image
 * cannot be tagged is reported, counted in *failed and dropped from items (n shrinks). */
static cr_err tag_items(ingest_tag *t, ingest_item *items, size_t *n, size_t *failed)
{
    const int np = cli_tagger_total_values(t->tg);
    size_t m = 0, keep = 0;
    cr_err rc = CR_OK;
    for (size_t i = 0; i < *n; i++) {
        int missing = 0;
        for (int a = 0; a < t->na && !missing; a++)
            missing = json_object_get(items[i].json, t->attrs[a].name) == NULL;
        if (missing) {
            t->blobs[m].data = items[i].image;
            t->blobs[m].len = items[i].image_len;
            t->which[m++] = i;
        }
    }
    if (!m)
        return CR_OK;
    if (cli_tagger_probs(t->tg, t->blobs, m, t->probs)) {
        /* one bad image fails the batch: tag one by one so that only the bad ones fail */
        for (size_t k = 0; k < m; k++)
            if (cli_tagger_probs(t->tg, &t->blobs[k], 1, t->probs + k * (size_t)np)) {
                ingest_item *it = &items[t->which[k]];
                fprintf(stderr, "cirrus ingest: line %ld (%s): tagging: %s\n", it->line, it->id,
                        cr_error_message());
                (*failed)++;
                item_clear(it); /* id NULL: dropped below */
            }
    }
    for (size_t k = 0; k < m && !rc; k++) {
        ingest_item *it = &items[t->which[k]];
        const double *row = t->probs + k * (size_t)np;
        int changed = 0;
        if (!it->id)
            continue;
        for (int a = 0; a < t->na; a++) {
            char name[512];
            double p;
            int best = cli_tagger_best(t->tg, a, row, &p);
            if (json_object_get(it->json, t->attrs[a].name))
                continue;
            if (!(p > t->threshold)) {
                t->below++;
                continue;
            }
            snprintf(name, sizeof name, "%s_prob", t->attrs[a].name);
            json_object_set_new(it->json, t->attrs[a].name,
                                json_string(t->attrs[a].values[best]));
            json_object_set_new(it->json, name, json_real(p));
            t->tagged++;
            changed = 1;
        }
        if (changed) {
            cr_attrs_free(it->attrs, it->n_attrs);
            it->attrs = NULL;
            it->n_attrs = 0;
            rc = cr_attrs_from_json(it->json, &it->attrs, &it->n_attrs);
        }
    }
    for (size_t i = 0; i < *n; i++)
        if (items[i].id)
            items[keep++] = items[i];
    *n = keep;
    return rc;
}

static void tag_close(ingest_tag *t)
{
    cli_tagger_close(&t->tg);
    enc_service_close(&t->svc);
    for (int a = 0; a < t->na; a++)
        cli_tag_attr_clear(&t->attrs[a]);
    free(t->probs);
    free(t->blobs);
    free(t->which);
}

/* Upserts items[0..n); fills ok[i]. Returns non-OK only when the server could not be asked. */
static cr_err send_items(cli_ctx *ctx, ingest_item *items, size_t n, int *ok, size_t *failed)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item *pb = calloc(n, sizeof *pb), **ptrs = calloc(n, sizeof *ptrs);
    Cirrus__V1__Response *resp = NULL;
    cirrus_client *c;
    cr_err rc;

    if (!pb || !ptrs) {
        free(pb);
        free(ptrs);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        cirrus__v1__item__init(&pb[i]);
        pb[i].id = items[i].id;
        pb[i].image.data = items[i].image;
        pb[i].image.len = items[i].image_len;
        pb[i].attributes = items[i].attrs;
        pb[i].n_attributes = items[i].n_attrs;
        ptrs[i] = &pb[i];
    }
    up.items = ptrs;
    up.n_items = n;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    rc = cli_client(ctx, &c);
    if (!rc)
        rc = cirrus_client_call(c, &req, ctx->timeout_ms, &resp);
    if (!rc && cirrus_response_error(resp)) {
        /* The whole batch failed (e.g. one undecodable image): try the items one by one so
         * that only the bad ones are reported. */
        cirrus_response_free(resp);
        resp = NULL;
        free(pb);
        free(ptrs);
        if (n == 1) {
            fprintf(stderr, "cirrus ingest: line %ld (%s): %s\n", items[0].line, items[0].id,
                    cr_error_message());
            ok[0] = 0;
            (*failed)++;
            return CR_OK;
        }
        for (size_t i = 0; i < n; i++) {
            rc = send_items(ctx, &items[i], 1, &ok[i], failed);
            if (rc)
                return rc;
        }
        return CR_OK;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const Cirrus__V1__ItemStatus *st =
            resp->upsert && i < resp->upsert->n_items ? resp->upsert->items[i] : NULL;
        int code = st && st->status ? st->status->code : CR_ERR_PROTO;
        ok[i] = code >= 0;
        if (code < 0) {
            (*failed)++;
            fprintf(stderr, "cirrus ingest: line %ld (%s): %s\n", items[i].line, items[i].id,
                    st && st->status ? st->status->message : "no status");
        }
    }
    cirrus_response_free(resp);
    free(pb);
    free(ptrs);
    return rc;
}

int cli_cmd_ingest(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"catalog", required_argument, 0, 'c'},
                                         {"images", required_argument, 0, 'i'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"tag", required_argument, 0, 'a'},
                                         {"tag-model", required_argument, 0, 'm'},
                                         {"tag-vocab", required_argument, 0, 'v'},
                                         {"tag-template", required_argument, 0, 't'},
                                         {"tag-prompts", required_argument, 0, 'p'},
                                         {"tag-threshold", required_argument, 0, 'P'},
                                         {"tag-threads", required_argument, 0, 'T'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *catalog = NULL, *dir = ".", *tmpl[CLI_TAG_MAX_TEMPLATES] = {0},
               *ctx_path = NULL;
    enc_service_opts eo = enc_service_default_opts();
    ingest_tag tag;
    int nt = 0, tag_opts = 0;
    long long batch = 16, threads;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0, n = 0, total = 0, failed = 0, lines = 0;
    ingest_item *items = NULL;
    int *ok = NULL, c, ret = CLI_FAIL;
    cr_progress prog;

    memset(&tag, 0, sizeof tag);
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'c') catalog = optarg;
        else if (c == 'i') dir = optarg;
        else if (c == 'b' && !cr_parse_ll(optarg, 1, 1024, &batch)) ;
        else if (c == 'm') eo.model = optarg, tag_opts++;
        else if (c == 'v') eo.vocab = optarg, tag_opts++;
        else if (c == 'p') ctx_path = optarg, tag_opts++;
        else if (c == 'T' && !cr_parse_ll(optarg, 0, 256, &threads))
            eo.threads = (int)threads, tag_opts++;
        else if (c == 'P' && !cr_parse_double(optarg, &tag.threshold) && tag.threshold >= 0 &&
                 tag.threshold < 1) tag_opts++;
        else if (c == 't' && nt < CLI_TAG_MAX_TEMPLATES) tmpl[nt++] = optarg, tag_opts++;
        else if (c == 'a' && tag.na < CLI_TAG_MAX_ATTRS &&
                 !cli_tag_attr_parse(optarg, &tag.attrs[tag.na])) tag.na++;
        else {
            if (c == 'a' || c == 'P' || c == 't' || c == 'T' || c == 'b')
                cli_error("ingest", "bad value for --%s: '%s'%s", c == 'a' ? "tag"
                          : c == 'P' ? "tag-threshold" : c == 't' ? "tag-template"
                          : c == 'T' ? "tag-threads" : "batch", optarg,
                          c == 'a' ? " (NAME=V1,V2,...)" : c == 'P' ? " (0 <= P < 1)" : "");
            printf("Usage: cirrus ingest --catalog FILE.jsonl [--images DIR] [--batch N]\n"
                   "         [--tag NAME=V1,V2,... [--tag ...] --tag-model PATH\n"
                   "          [--tag-template T [--tag-template T2 ...] | --tag-prompts F]\n"
                   "          [--tag-threshold P] [--tag-vocab PATH] [--tag-threads N]]\n"
                   "Each line: {\"id\": \"sku-1\", \"image\": \"relative/path.jpg\", "
                   "\"attributes\": {\"category\": \"dress\", \"price\": 19.9}}\n"
                   "--tag fills attribute NAME of items that lack it by zero-shot tagging of the\n"
                   "image with the model --tag-model (as `cirrus tag`): NAME = the most probable\n"
                   "value and NAME_prob = its probability, when above --tag-threshold (default\n"
                   "0). Attributes the catalog sets are kept.\n");
            for (int a = 0; a < tag.na; a++)
                cli_tag_attr_clear(&tag.attrs[a]);
            return c == 'h' ? CLI_OK : CLI_USAGE;
        }
    }
    if (!catalog || (tag.na && !eo.model) || (!tag.na && tag_opts) || (ctx_path && nt)) {
        cli_error("ingest", !catalog  ? "--catalog is required"
                            : tag.na  ? (eo.model ? "--tag-prompts and --tag-template exclude "
                                                    "each other"
                                                  : "--tag needs --tag-model")
                                      : "--tag-* options need --tag");
        tag_close(&tag);
        return CLI_USAGE;
    }
    if (!(f = fopen(catalog, "r"))) {
        cli_error("ingest", "cannot open %s", catalog);
        tag_close(&tag);
        return CLI_FAIL;
    }
    if (tag.na) {
        if (!ctx_path && !nt)
            tmpl[nt++] = CLI_TAG_DEFAULT_TEMPLATE;
        eo.batch_wait_ms = 0;
        eo.max_batch = (int)batch;
        if (enc_service_open(&tag.svc, &eo) ||
            cli_tagger_open(&tag.tg, tag.svc, tag.attrs, tag.na, tmpl, ctx_path ? 0 : nt,
                            ctx_path)) {
            cli_error("ingest", "--tag: %s", cr_error_message());
            tag_close(&tag);
            fclose(f);
            return CLI_FAIL;
        }
        tag.probs = malloc((size_t)batch * cli_tagger_total_values(tag.tg) *
                           sizeof *tag.probs);
        tag.blobs = calloc((size_t)batch, sizeof *tag.blobs);
        tag.which = calloc((size_t)batch, sizeof *tag.which);
        if (!tag.probs || !tag.blobs || !tag.which) {
            cli_error("ingest", "out of memory");
            tag_close(&tag);
            fclose(f);
            return CLI_FAIL;
        }
    }
    while (getline(&line, &cap, f) > 0)
        lines++;
    rewind(f);
    items = calloc((size_t)batch, sizeof *items);
    ok = calloc((size_t)batch, sizeof *ok);
    if (!items || !ok)
        goto out;
    cr_progress_begin(&prog, "ingest", lines, ctx->json);
    for (long lineno = 1;; lineno++) {
        ssize_t len = getline(&line, &cap, f);
        if (len > 0 && strspn(line, " \t\r\n") != (size_t)len) {
            if (parse_line(line, lineno, dir, &items[n])) {
                fprintf(stderr, "cirrus ingest: %s\n", cr_error_message());
                item_clear(&items[n]);
                failed++;
                total++;
                cr_progress_add(&prog, 1);
            } else {
                n++;
            }
        }
        if (n == (size_t)batch || (len <= 0 && n)) {
            size_t before = n;
            if (tag.na && tag_items(&tag, items, &n, &failed)) {
                cli_error("ingest", "--tag: %s", cr_error_message());
                for (size_t i = 0; i < n; i++)
                    item_clear(&items[i]);
                goto out;
            }
            total += before - n;
            cr_progress_add(&prog, before - n);
            if (n && send_items(ctx, items, n, ok, &failed)) {
                cli_error("ingest", "%s (endpoint %s)", cr_error_message(), ctx->endpoint);
                for (size_t i = 0; i < n; i++)
                    item_clear(&items[i]);
                goto out;
            }
            cr_progress_add(&prog, n);
            total += n;
            for (size_t i = 0; i < n; i++)
                item_clear(&items[i]);
            n = 0;
        }
        if (len <= 0)
            break;
    }
    cr_progress_end(&prog);
    if (ctx->json) {
        json_t *j = json_object();
        json_object_set_new(j, "items", json_integer((json_int_t)total));
        json_object_set_new(j, "failed", json_integer((json_int_t)failed));
        if (tag.na) {
            json_object_set_new(j, "tagged", json_integer((json_int_t)tag.tagged));
            json_object_set_new(j, "below_threshold", json_integer((json_int_t)tag.below));
        }
        cli_print_json(j);
    } else {
        printf("ingested %zu of %zu items\n", total - failed, total);
        if (tag.na)
            printf("tagged %zu attribute values; %zu below --tag-threshold left missing\n",
                   tag.tagged, tag.below);
    }
    ret = failed ? CLI_FAIL : CLI_OK;
out:
    tag_close(&tag);
    free(line);
    free(items);
    free(ok);
    fclose(f);
    return ret;
}
