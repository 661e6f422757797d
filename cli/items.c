/* cirrus upsert | get | delete | search | stats | health | snapshot */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gateway/json.h"
#include "gateway/attrs_json.h"
#include "common/config.h"
#include "shard/filter_parse.h"

#define MAX_IDS 1024

static int usage_upsert(FILE *out)
{
    fprintf(out, "Usage: cirrus upsert --id ID --vector F1,F2,... [--attr NAME=VALUE]... "
                 "[--version N]\n"
                 "VALUE: true/false, an integer, a number, [a,b] (strings) or text.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

/* --version: 1..2^64-1 (the server decides whether it is acceptable). */
static cr_err parse_version(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || s[0] == '+' || v == 0)
        return cr_error_set(CR_ERR_INVALID, "'%s' is not an integer in 1..2^64-1", s);
    *out = (uint64_t)v;
    return CR_OK;
}

int cli_cmd_upsert(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"id", required_argument, 0, 'i'},
                                         {"vector", required_argument, 0, 'v'},
                                         {"attr", required_argument, 0, 'a'},
                                         {"version", required_argument, 0, 'V'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Item item = CIRRUS__V1__ITEM__INIT, *items[1] = {&item};
    Cirrus__V1__Vector vec = CIRRUS__V1__VECTOR__INIT;
    Cirrus__V1__Attribute **attrs = NULL;
    Cirrus__V1__Response *resp = NULL;
    size_t nattrs = 0;
    uint64_t version = 0;
    int c, rc = CLI_USAGE;

    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'i': item.id = optarg; break;
        case 'v':
            free(vec.values);
            vec.values = NULL;
            if (cli_parse_vector(optarg, &vec.values, &vec.n_values)) {
                cli_error("upsert", "--vector: %s", cr_error_message());
                goto out;
            }
            break;
        case 'a':
            if (cr_attr_parse_kv(optarg, &attrs, &nattrs)) {
                cli_error("upsert", "--attr: %s", cr_error_message());
                goto out;
            }
            break;
        case 'V':
            if (parse_version(optarg, &version)) {
                cli_error("upsert", "--version: %s", cr_error_message());
                goto out;
            }
            break;
        case 'h': rc = usage_upsert(stdout); goto out;
        default: usage_upsert(stderr); goto out;
        }
    }
    if (!item.id || !vec.n_values) {
        cli_error("upsert", "--id and --vector are required");
        usage_upsert(stderr);
        goto out;
    }
    item.vector = &vec;
    item.attributes = attrs;
    item.n_attributes = nattrs;
    item.version = (uint64_t)version;
    up.items = items;
    up.n_items = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    rc = CLI_FAIL;
    if (cli_call(ctx, "upsert", &req, &resp))
        goto out;
    {
        const Cirrus__V1__ItemStatus *st = resp->upsert && resp->upsert->n_items
                                               ? resp->upsert->items[0]
                                               : NULL;
        int code = st && st->status ? st->status->code : CR_ERR_PROTO;
        const char *msg = st && st->status ? st->status->message : "no item status";
        if (ctx->json) {
            json_t *o = json_object();
            json_object_set_new(o, "id", json_string(item.id));
            json_object_set_new(o, "code", json_integer(code));
            json_object_set_new(o, "message", json_string(msg ? msg : ""));
            json_object_set_new(o, "version", cirrus_json_u64(st ? st->version : 0));
            cli_print_json(o);
        } else if (code == CR_STALE) {
            printf("%s: ignored, the stored version is newer (%s)\n", item.id, msg);
        } else if (code >= 0) {
            printf("%s: stored (version %llu)\n", item.id,
                   (unsigned long long)(st ? st->version : 0));
        }
        if (code < 0)
            cli_error("upsert", "%s: %s", item.id, msg);
        rc = code < 0 ? CLI_FAIL : CLI_OK;
    }
out:
    cirrus_response_free(resp);
    cr_attrs_free(attrs, nattrs);
    free(vec.values);
    return rc;
}

/* cirrus get --image FILE: the one item's kept image into FILE. */
static int write_image(const char *path, Cirrus__V1__Response *resp)
{
    const Cirrus__V1__Item *it = resp->get->items[0];
    FILE *f;
    int rc = CLI_OK;
    if (!it->image.len) {
        cli_error("get", "%s has no kept image (its shard runs without --keep-images)", it->id);
        rc = CLI_FAIL;
    } else if (!(f = fopen(path, "wb"))) {
        cli_error("get", "cannot write %s", path);
        rc = CLI_FAIL;
    } else {
        int short_write = fwrite(it->image.data, 1, it->image.len, f) != it->image.len;
        if (fclose(f) || short_write) {
            cli_error("get", "cannot write %s", path);
            rc = CLI_FAIL;
        }
    }
    cirrus_response_free(resp);
    return rc;
}

static int collect_ids(cli_ctx *ctx, int argc, char **argv, const char *cmd, char **ids, size_t *n,
                       int *with_vector, const char **image)
{
    static const struct option opts[] = {{"id", required_argument, 0, 'i'},
                                         {"no-vector", no_argument, 0, 'n'},
                                         {"image", required_argument, 0, 'I'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    *n = 0;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'i' && *n < MAX_IDS) {
            ids[(*n)++] = optarg;
        } else if (c == 'n' && with_vector) {
            *with_vector = 0;
        } else if (c == 'I' && image) {
            *image = optarg;
        } else if (c == 'h') {
            printf("Usage: cirrus %s --id ID [--id ID]...%s\n", cmd,
                   with_vector ? " [--no-vector] [--image FILE]\n"
                                 "  --image FILE: write the item's kept image (shards with "
                                 "--keep-images) to FILE (one --id)" : "");
            return CLI_OK;
        } else {
            cli_error(cmd, "bad option (see --help)");
            return CLI_USAGE;
        }
    }
    for (int i = optind; i < argc && *n < MAX_IDS; i++)
        ids[(*n)++] = argv[i];
    if (*n == 0) {
        cli_error(cmd, "at least one --id is required");
        return CLI_USAGE;
    }
    return -1;
}

int cli_cmd_get(cli_ctx *ctx, int argc, char **argv)
{
    char *ids[MAX_IDS];
    size_t n;
    int with_vector = 1;
    const char *image = NULL;
    int rc = collect_ids(ctx, argc, argv, "get", ids, &n, &with_vector, &image);
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;

    if (rc >= 0)
        return rc;
    if (image && n != 1) {
        cli_error("get", "--image takes exactly one --id");
        return CLI_USAGE;
    }
    get.ids = ids;
    get.n_ids = n;
    get.include_vector = with_vector;
    get.include_image = image != NULL;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    if (cli_call(ctx, "get", &req, &resp))
        return CLI_FAIL;
    if (image && resp->get && resp->get->n_items)
        return write_image(image, resp);
    for (size_t i = 0; resp->get && i < resp->get->n_items; i++) {
        json_t *o = cirrus_item_json(resp->get->items[i]);
        cli_print_json(o);
    }
    for (size_t i = 0; resp->get && i < resp->get->n_missing; i++) {
        if (ctx->json) {
            json_t *o = json_object();
            json_object_set_new(o, "id", json_string(resp->get->missing[i]));
            json_object_set_new(o, "missing", json_true());
            cli_print_json(o);
        } else {
            fprintf(stderr, "cirrus get: %s: not found\n", resp->get->missing[i]);
        }
    }
    rc = resp->get && resp->get->n_missing ? CLI_FAIL : CLI_OK;
    cirrus_response_free(resp);
    return rc;
}

int cli_cmd_delete(cli_ctx *ctx, int argc, char **argv)
{
    char *ids[MAX_IDS];
    size_t n;
    int rc = collect_ids(ctx, argc, argv, "delete", ids, &n, NULL, NULL);
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    Cirrus__V1__DeleteItem items[MAX_IDS], *ptrs[MAX_IDS];
    Cirrus__V1__Response *resp = NULL;

    if (rc >= 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        cirrus__v1__delete_item__init(&items[i]);
        items[i].id = ids[i];
        ptrs[i] = &items[i];
    }
    del.items = ptrs;
    del.n_items = n;
    req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    if (cli_call(ctx, "delete", &req, &resp))
        return CLI_FAIL;
    rc = CLI_OK;
    for (size_t i = 0; resp->delete_ && i < resp->delete_->n_items; i++) {
        const Cirrus__V1__ItemStatus *st = resp->delete_->items[i];
        int code = st->status ? st->status->code : 0;
        if (ctx->json) {
            json_t *o = json_object();
            json_object_set_new(o, "id", json_string(st->id));
            json_object_set_new(o, "code", json_integer(code));
            json_object_set_new(o, "deleted", json_boolean(code == 0));
            cli_print_json(o);
        } else {
            printf("%s: %s\n", st->id,
                   code == 0 ? "deleted" : (code == CR_NOTFOUND ? "not found" : "failed"));
        }
        if (code < 0)
            rc = CLI_FAIL;
    }
    cirrus_response_free(resp);
    return rc;
}
