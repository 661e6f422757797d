/* cirrus search | stats | health | snapshot */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "cli/cli.h"
#include "gateway/json.h"
#include "gateway/attrs_json.h"
#include "common/config.h"
#include "shard/filter_parse.h"

static int usage_search(FILE *out)
{
    fprintf(out,
            "Usage: cirrus search QUERY [-k K] [--filter EXPR] [--nprobe N] [--ef N] [--exact]\n"
            "                     [--group-by ATTR] [--group-size N] [--offset N] [--no-metadata]\n"
            "QUERY is one of:\n"
            "  --vector F1,F2,...            a raw vector\n"
            "  --text TEXT                   a text query (coordinator)\n"
            "  --image FILE                  an image query (coordinator)\n"
            "  --ref-id ID [--caption TEXT] [--method searle|combiner|sum|text|image]\n"
            "  --image FILE --caption TEXT   a composed query from an image (coordinator)\n"
            "EXPR example: 'category = \"dress\" and price < 50 and color in (\"red\", \"blue\")'\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static int method_parse(const char *s, Cirrus__V1__ComposeMethod *m)
{
    static const struct {
        const char *name;
        Cirrus__V1__ComposeMethod m;
    } names[] = {{"searle", CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SEARLE},
                 {"combiner", CIRRUS__V1__COMPOSE_METHOD__COMPOSE_COMBINER},
                 {"sum", CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SUM},
                 {"text", CIRRUS__V1__COMPOSE_METHOD__COMPOSE_TEXT},
                 {"image", CIRRUS__V1__COMPOSE_METHOD__COMPOSE_IMAGE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *m = names[i].m;
            return 0;
        }
    return -1;
}

typedef struct search_args {
    Cirrus__V1__Query q;
    Cirrus__V1__Vector vec;
    Cirrus__V1__SearchParams params;
    Cirrus__V1__Composed composed;
    Cirrus__V1__Reference ref;
    Cirrus__V1__Filter *filter;
    const char *text, *image_path, *ref_id, *caption;
    int has_caption, has_method;
    uint8_t *image;
    size_t image_len;
} search_args;

/* Fills the Query's oneof from the options given. */
static int search_build_kind(search_args *a)
{
    int kinds = (a->vec.n_values > 0) + (a->text != NULL) + (a->ref_id != NULL) +
                (a->image_path != NULL && !a->has_caption);
    if (a->image_path && cr_file_read(a->image_path, &a->image, &a->image_len)) {
        cli_error("search", "--image: %s", cr_error_message());
        return CLI_FAIL;
    }
    if (a->has_caption || a->ref_id) {
        if (!a->ref_id && !a->image_path) {
            cli_error("search", "--caption needs --ref-id or --image as the reference");
            return CLI_USAGE;
        }
        if (a->ref_id) {
            a->ref.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
            a->ref.item_id = (char *)a->ref_id;
        } else {
            a->ref.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
            a->ref.image.data = a->image;
            a->ref.image.len = a->image_len;
        }
        a->composed.reference = &a->ref;
        a->composed.caption = (char *)(a->caption ? a->caption : "");
        a->q.kind_case = CIRRUS__V1__QUERY__KIND_COMPOSED;
        a->q.composed = &a->composed;
        return kinds > 1 ? (cli_error("search", "give one query"), CLI_USAGE) : -1;
    }
    if (kinds != 1) {
        cli_error("search", "give exactly one of --vector, --text, --image, --ref-id");
        return CLI_USAGE;
    }
    if (a->vec.n_values) {
        a->q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
        a->q.vector = &a->vec;
    } else if (a->text) {
        a->q.kind_case = CIRRUS__V1__QUERY__KIND_TEXT;
        a->q.text = (char *)a->text;
    } else {
        a->q.kind_case = CIRRUS__V1__QUERY__KIND_IMAGE;
        a->q.image.data = a->image;
        a->q.image.len = a->image_len;
    }
    return -1;
}

static int search_parse(cli_ctx *ctx, search_args *a, int argc, char **argv)
{
    static const struct option opts[] = {
        {"vector", required_argument, 0, 'v'},   {"k", required_argument, 0, 'k'},
        {"filter", required_argument, 0, 'f'},   {"nprobe", required_argument, 0, 'n'},
        {"ef", required_argument, 0, 'e'},       {"exact", no_argument, 0, 'x'},
        {"group-by", required_argument, 0, 'g'}, {"group-size", required_argument, 0, 'G'},
        {"offset", required_argument, 0, 'o'},   {"no-metadata", no_argument, 0, 'M'},
        {"text", required_argument, 0, 't'},     {"image", required_argument, 0, 'I'},
        {"ref-id", required_argument, 0, 'r'},   {"caption", required_argument, 0, 'c'},
        {"method", required_argument, 0, 'm'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    long long v;
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "k:", opts)) != -1) {
        switch (c) {
        case 'v':
            free(a->vec.values);
            a->vec.values = NULL;
            if (cli_parse_vector(optarg, &a->vec.values, &a->vec.n_values)) {
                cli_error("search", "--vector: %s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'f':
            if (a->filter)
                cirrus__v1__filter__free_unpacked(a->filter, NULL);
            a->filter = NULL;
            if (cr_filter_parse(optarg, &a->filter)) {
                cli_error("search", "--filter: %s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'k': case 'n': case 'e': case 'G': case 'o':
            if (cr_parse_ll(optarg, 0, 1000000, &v)) {
                cli_error("search", "bad number: %s", cr_error_message());
                return CLI_USAGE;
            }
            if (c == 'k') a->q.k = (uint32_t)v;
            if (c == 'n') a->params.nprobe = (uint32_t)v;
            if (c == 'e') a->params.ef_search = (uint32_t)v;
            if (c == 'G') a->q.group_size = (uint32_t)v;
            if (c == 'o') a->q.offset = (uint32_t)v;
            break;
        case 'x': a->params.exact = 1; break;
        case 'g': a->q.group_by = optarg; break;
        case 'M': a->q.include_metadata = 0; break;
        case 't': a->text = optarg; break;
        case 'I': a->image_path = optarg; break;
        case 'r': a->ref_id = optarg; break;
        case 'c': a->caption = optarg; a->has_caption = 1; break;
        case 'm':
            if (method_parse(optarg, &a->composed.method)) {
                cli_error("search", "--method must be searle|combiner|sum|text|image");
                return CLI_USAGE;
            }
            a->has_method = 1;
            break;
        case 'h': return usage_search(stdout);
        default: return usage_search(stderr);
        }
    }
    return search_build_kind(a);
}

int cli_cmd_search(cli_ctx *ctx, int argc, char **argv)
{
    search_args a;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    int rc;

    memset(&a, 0, sizeof a);
    cirrus__v1__query__init(&a.q);
    cirrus__v1__vector__init(&a.vec);
    cirrus__v1__search_params__init(&a.params);
    cirrus__v1__composed__init(&a.composed);
    cirrus__v1__reference__init(&a.ref);
    a.q.k = 10;
    a.q.include_metadata = 1;
    rc = search_parse(ctx, &a, argc, argv);
    if (rc >= 0)
        goto out;
    a.q.params = &a.params;
    a.q.filter = a.filter;
    sr.query = &a.q;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    rc = CLI_FAIL;
    if (cli_call(ctx, "search", &req, &resp))
        goto out;
    if (!resp->search) {
        cli_error("search", "reply without a result");
        goto out;
    }
    if (ctx->json)
        cli_print_json(cli_hits_json(resp->search));
    else
        cli_print_hits_text(resp->search);
    rc = CLI_OK;
out:
    cirrus_response_free(resp);
    if (a.filter)
        cirrus__v1__filter__free_unpacked(a.filter, NULL);
    free(a.vec.values);
    free(a.image);
    return rc;
}

static int simple_op(cli_ctx *ctx, const char *cmd, Cirrus__V1__Request *req,
                     Cirrus__V1__Response **resp, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'h') {
            printf("Usage: cirrus %s\n", cmd);
            return CLI_OK;
        }
        cli_error(cmd, "bad option (see --help)");
        return CLI_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "takes no arguments");
        return CLI_USAGE;
    }
    return cli_call(ctx, cmd, req, resp) ? CLI_FAIL : -1;
}

int cli_cmd_stats(cli_ctx *ctx, int argc, char **argv)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    int rc;
    json_t *o;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    rc = simple_op(ctx, "stats", &req, &resp, argc, argv);
    if (rc >= 0)
        return rc;
    if (!resp->stats) {
        cirrus_response_free(resp);
        cli_error("stats", "reply without a result");
        return CLI_FAIL;
    }
    o = cirrus_stats_json(resp->stats);
    if (ctx->json) {
        cli_print_json(o);
    } else {
        char *s = cirrus_json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        puts(s ? s : "");
        free(s);
        json_decref(o);
    }
    cirrus_response_free(resp);
    return CLI_OK;
}

int cli_cmd_health(cli_ctx *ctx, int argc, char **argv)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    int rc, ready;
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;
    rc = simple_op(ctx, "health", &req, &resp, argc, argv);
    if (rc >= 0)
        return rc;
    ready = resp->health && resp->health->ready;
    if (ctx->json) {
        json_t *o = json_object();
        json_object_set_new(o, "ready", json_boolean(ready));
        json_object_set_new(o, "role", json_string(resp->health ? resp->health->role : ""));
        json_object_set_new(o, "version",
                            json_string(resp->health ? resp->health->version : ""));
        cli_print_json(o);
    } else {
        printf("%s %s: %s\n", resp->health ? resp->health->role : "?",
               resp->health ? resp->health->version : "?", ready ? "ready" : "not ready");
    }
    cirrus_response_free(resp);
    return ready ? CLI_OK : CLI_FAIL;
}

int cli_cmd_snapshot(cli_ctx *ctx, int argc, char **argv)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SnapshotRequest s = CIRRUS__V1__SNAPSHOT_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    int rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_SNAPSHOT;
    req.snapshot = &s;
    rc = simple_op(ctx, "snapshot", &req, &resp, argc, argv);
    if (rc >= 0)
        return rc;
    if (ctx->json) {
        json_t *o = json_object();
        json_object_set_new(o, "high_water",
                            json_integer(resp->snapshot ? (json_int_t)resp->snapshot->high_water : 0));
        json_object_set_new(o, "bytes",
                            json_integer(resp->snapshot ? (json_int_t)resp->snapshot->bytes : 0));
        json_object_set_new(o, "duration_ms",
                            json_integer(resp->snapshot ? (json_int_t)resp->snapshot->duration_ms : 0));
        cli_print_json(o);
    } else if (resp->snapshot) {
        printf("snapshot: %llu items, %llu bytes, %llu ms\n",
               (unsigned long long)resp->snapshot->high_water,
               (unsigned long long)resp->snapshot->bytes,
               (unsigned long long)resp->snapshot->duration_ms);
    }
    cirrus_response_free(resp);
    return CLI_OK;
}
