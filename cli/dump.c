/* cirrus dump — every item of a shard, one JSON line each in external-id order (id, version,
 * attributes, vector; tombstones with "deleted": true), through the Scan op that replica
 * repair uses. For comparing shards (a resumed build against an uninterrupted one, a restored
 * backup against its source) and for exporting. A shard answers Scan; a coordinator does not:
 * dump each group's shard. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/config.h"
#include "gateway/json.h"

static int usage_dump(FILE *out)
{
    fprintf(out, "Usage: cirrus --endpoint SHARD dump [--no-vector] [--deleted]\n"
                 "One JSON line per item, in external-id order; --deleted includes "
                 "tombstones.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

/* Prints one page; *next gets its cursor (malloc'd). */
static int dump_page(cli_ctx *ctx, const char *after, int with_vector, int deleted,
                     char **next, int *done)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ScanRequest scan = CIRRUS__V1__SCAN_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    const Cirrus__V1__ScanResult *r;
    scan.after_id = (char *)after;
    scan.limit = 512;
    scan.include_vector = with_vector;
    scan.order = CIRRUS__V1__SCAN_ORDER__SCAN_BY_EXTERNAL_ID;
    req.op_case = CIRRUS__V1__REQUEST__OP_SCAN;
    req.scan = &scan;
    if (cli_call(ctx, "dump", &req, &resp))
        return CLI_FAIL;
    if (!(r = resp->scan)) {
        cli_error("dump", "reply without a scan result");
        cirrus_response_free(resp);
        return CLI_FAIL;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        int dead = i < r->n_deleted && r->deleted[i];
        json_t *o;
        if (dead && !deleted)
            continue;
        o = cirrus_item_json(r->items[i]);
        if (dead)
            json_object_set_new(o, "deleted", json_true());
        cli_print_json(o);
    }
    *done = r->done;
    *next = strdup(r->next_cursor ? r->next_cursor : "");
    cirrus_response_free(resp);
    return *next ? CLI_OK : CLI_FAIL;
}

int cli_cmd_dump(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"no-vector", no_argument, 0, 'n'},
                                         {"deleted", no_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c, with_vector = 1, deleted = 0, done = 0, rc = CLI_OK;
    char *cursor = strdup("");
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'n') with_vector = 0;
        else if (c == 'd') deleted = 1;
        else {
            free(cursor);
            return usage_dump(c == 'h' ? stdout : stderr);
        }
    }
    ctx->json = 1; /* the output is JSON lines whatever was asked */
    while (cursor && !done && rc == CLI_OK) {
        char *next = NULL;
        rc = dump_page(ctx, cursor, with_vector, deleted, &next, &done);
        free(cursor);
        cursor = next;
    }
    if (!cursor && rc == CLI_OK) {
        cli_error("dump", "out of memory");
        rc = CLI_FAIL;
    }
    free(cursor);
    return rc;
}
