/* cirrus — the command-line tool: talks to a shard, an encoder, a coordinator or
 * `cirrus serve` over the same protocol, and runs local tools (embed, tokenize, eval). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

static const cli_cmd commands[] = {
    {"upsert", cli_cmd_upsert, "insert or replace one item (--id, --vector, --attr k=v)"},
    {"get", cli_cmd_get, "fetch items by id, with their vectors"},
    {"delete", cli_cmd_delete, "delete items by id"},
    {"search", cli_cmd_search, "k nearest items to a vector, with an optional --filter"},
    {"stats", cli_cmd_stats, "counts, dimension, index, disk use, uptime"},
    {"health", cli_cmd_health, "is the endpoint ready"},
    {"snapshot", cli_cmd_snapshot, "serialize the index now"},
    {"load", cli_cmd_load, "bulk upsert from .fvecs/.npy with a progress bar"},
    {"verify", cli_cmd_verify, "check that every acknowledged id is stored exactly"},
    {"embed", cli_cmd_embed, "CLIP embeddings of images and texts, in-process (--model)"},
    {"tokenize", cli_cmd_tokenize, "CLIP token ids of texts (77 per text)"},
    {"tag", cli_cmd_tag, "zero-shot attribute values of images (--model, --attribute k=v1,v2)"},
    {"compose", cli_cmd_compose, "compose an image and a caption into a query vector"},
    {"keygen", cli_cmd_keygen, "CURVE key pairs (--out NAME) and HTTP API keys (--http ROLES)"},
    {"serve", cli_cmd_serve, "coordinator + shards + encoder in one process (embedded mode)"},
    {"ingest", cli_cmd_ingest, "ingest a JSONL catalog of images and attributes"},
    {"dump", cli_cmd_dump, "every item of a shard as JSON lines, in id order (Scan)"},
    {"backup", cli_cmd_backup, "a consistent copy of a shard (or a cluster) while it serves"},
    {"restore", cli_cmd_restore, "a backup copied into a new directory and checked"},
    {"build", cli_cmd_build, "shard directories from vectors or a catalog, without servers"},
    {"rebalance", cli_cmd_rebalance, "move a live cluster to more groups or another placement"},
    {"eval", cli_cmd_eval, "CIR benchmark metrics from prediction files (circo, fashioniq, cirr)"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: cirrus [--endpoint EP] [--json] [--timeout MS] COMMAND [ARGS]\n\n"
                 "Global options (before or after the command):\n"
                 "  --endpoint EP   server to talk to (default $CIRRUS_ENDPOINT or "
                 "tcp://127.0.0.1:7700)\n"
                 "  --json          print JSON (one object per line) for scripts\n"
                 "  --timeout MS    per-request timeout (default 10000)\n"
                 "  --log LEVEL     debug|info|warn|error (default warn)\n"
                 "  --curve-secret FILE, --curve-server-pub KEY|FILE\n"
                 "                  CURVE to a tcp:// endpoint (or $CIRRUS_CURVE_SECRET and\n"
                 "                  $CIRRUS_CURVE_SERVER_PUB; docs/security.md)\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'cirrus COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {0};
    int i = 1, rc;
    const char *env = getenv("CIRRUS_ENDPOINT");

    ctx.endpoint = env && *env ? env : "tcp://127.0.0.1:7700";
    ctx.timeout_ms = 10000;
    cr_log_set_level(CR_LOG_WARN);
    /* Global options before the command; cli_getopt() takes them after it too. */
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const struct option *g = cli_global_opts;
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return CLI_OK;
        }
        while (g->name && strcmp(argv[i] + 2, g->name) != 0)
            g++;
        if (!g->name || (g->has_arg == required_argument && i + 1 >= argc)) {
            cli_error("cirrus", "unknown or incomplete option '%s'", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
        if (cli_global_apply(&ctx, g->val, g->has_arg == required_argument ? argv[++i] : NULL))
            return CLI_USAGE;
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
        if (strcmp(argv[i], commands[c].name) == 0) {
            optind = 1;
            rc = commands[c].fn(&ctx, argc - i, argv + i);
            cirrus_client_close(&ctx.client);
            return rc;
        }
    }
    cli_error("cirrus", "unknown command '%s'", argv[i]);
    usage(stderr);
    return CLI_USAGE;
}
