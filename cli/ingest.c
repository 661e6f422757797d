/* cirrus ingest — a JSONL catalog of images and attributes into a coordinator (or `cirrus
 * serve`), which encodes each image and routes it to its shard group:
 *   {"id": "sku-1", "image": "path/relative/to/DIR.jpg", "attributes": {"category": "dress"}}
 * Per-item errors are reported and do not stop the ingest; the exit status says whether any
 * item failed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "cli/cli.h"
#include "gateway/attrs_json.h"
#include "common/config.h"
#include "cli/progress.h"

typedef struct ingest_item {
    char *id;
    uint8_t *image;
    size_t image_len;
    Cirrus__V1__Attribute **attrs;
    size_t n_attrs;
    long line;
} ingest_item;

static void item_clear(ingest_item *it)
{
    free(it->id);
    free(it->image);
    cr_attrs_free(it->attrs, it->n_attrs);
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
    if (rc)
        cr_error_wrap(rc, "line %ld (%s)", lineno, it->id ? it->id : "?");
out:
    json_decref(j);
    return rc;
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
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *catalog = NULL, *dir = ".";
    long long batch = 16;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0, n = 0, total = 0, failed = 0, lines = 0;
    ingest_item *items = NULL;
    int *ok = NULL, c, ret = CLI_FAIL;
    cr_progress prog;

    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'c') catalog = optarg;
        else if (c == 'i') dir = optarg;
        else if (c == 'b' && !cr_parse_ll(optarg, 1, 1024, &batch)) ;
        else {
            printf("Usage: cirrus ingest --catalog FILE.jsonl [--images DIR] [--batch N]\n"
                   "Each line: {\"id\": \"sku-1\", \"image\": \"relative/path.jpg\", "
                   "\"attributes\": {\"category\": \"dress\", \"price\": 19.9}}\n");
            return c == 'h' ? CLI_OK : CLI_USAGE;
        }
    }
    if (!catalog) {
        cli_error("ingest", "--catalog is required");
        return CLI_USAGE;
    }
    if (!(f = fopen(catalog, "r"))) {
        cli_error("ingest", "cannot open %s", catalog);
        return CLI_FAIL;
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
            if (send_items(ctx, items, n, ok, &failed)) {
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
        cli_print_json(j);
    } else {
        printf("ingested %zu of %zu items\n", total - failed, total);
    }
    ret = failed ? CLI_FAIL : CLI_OK;
out:
    free(line);
    free(items);
    free(ok);
    fclose(f);
    return ret;
}
