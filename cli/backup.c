/* cirrus backup | restore.
 *
 * backup asks shards for a consistent copy of themselves while they serve (the Backup op,
 * shard/backup.h): `--endpoint SHARD --out DIR` copies one shard into DIR; `--map MAP --out
 * DIR` copies one live replica of each group of the cluster map into DIR/group-G and the map
 * into DIR/cluster.json (the coordinator does not fan the op out: the copy is written on each
 * shard's own file system, so DIR must be a path every shard can write — the same machine, or
 * a shared volume). restore copies a backup into a new directory and opens every shard of it
 * (offline/restore.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/config.h"
#include "common/fileio.h"
#include "coordinator/clustermap.h"
#include "offline/restore.h"

#define BACKUP_WAIT_MS_DEFAULT (3600u * 1000u)
#define BACKUP_PROBE_MS 3000u

/* DIR as an absolute path (its parent must exist): the shard resolves it, not us. */
static cr_err absolute(const char *dir, char *out, size_t cap)
{
    char copy[PATH_MAX], parent[PATH_MAX], real[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", dir);
    snprintf(parent, sizeof parent, "%s", dirname(copy));
    if (!realpath(parent, real))
        return cr_error_set(CR_ERR_IO, "%s: %s", parent, strerror(errno));
    snprintf(copy, sizeof copy, "%s", dir);
    if (snprintf(out, cap, "%s/%s", real, basename(copy)) >= (int)cap)
        return cr_error_set(CR_ERR_INVALID, "%s: path too long", dir);
    return CR_OK;
}

/* Whether `endpoint` answers Health within a few seconds: a dead replica must not hold the
 * backup for the whole --wait-ms (a request to a down peer waits its full deadline). */
static cr_err probe(cli_ctx *ctx)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_client *c;
    cr_err rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;
    req.deadline_ms = BACKUP_PROBE_MS;
    rc = cli_client(ctx, &c);
    if (!rc)
        rc = cirrus_client_call(c, &req, BACKUP_PROBE_MS, &resp);
    if (!rc)
        rc = cirrus_response_error(resp);
    if (resp)
        cirrus_response_free(resp);
    return rc;
}

/* One shard's copy into `dir` through the Backup op; a failure is left in
 * cr_error_message() for the caller to report. */
static cr_err backup_one(cli_ctx *ctx, const char *endpoint, const char *dir, uint32_t wait_ms)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__BackupRequest b = CIRRUS__V1__BACKUP_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_client *c;
    cr_err rc;
    if (!ctx->endpoint || strcmp(ctx->endpoint, endpoint) != 0)
        cirrus_client_close(&ctx->client);
    ctx->endpoint = endpoint;
    b.dir = (char *)dir;
    req.op_case = CIRRUS__V1__REQUEST__OP_BACKUP;
    req.backup = &b;
    req.deadline_ms = wait_ms;
    rc = probe(ctx);
    if (!rc)
        rc = cli_client(ctx, &c);
    if (!rc)
        rc = cirrus_client_call(c, &req, wait_ms, &resp);
    if (!rc && (rc = cirrus_response_error(resp)))
        cirrus_response_free(resp);
    if (rc)
        return rc;
    if (resp->backup && ctx->json) {
        json_t *j = json_pack("{sssssIsIsI}", "endpoint", endpoint, "dir", dir, "items",
                              (json_int_t)resp->backup->items, "bytes",
                              (json_int_t)resp->backup->bytes, "ms",
                              (json_int_t)resp->backup->duration_ms);
        if (j)
            cli_print_json(j);
    } else if (resp->backup) {
        printf("%s: %llu items, %llu bytes in %s (%llu ms)\n", endpoint,
               (unsigned long long)resp->backup->items, (unsigned long long)resp->backup->bytes,
               dir, (unsigned long long)resp->backup->duration_ms);
    }
    cirrus_response_free(resp);
    return CR_OK;
}

/* Every group of the map: its first replica that makes the copy. */
static int backup_map(cli_ctx *ctx, const char *map_path, const char *out, uint32_t wait_ms)
{
    static coord_map map;
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (coord_map_load(map_path, &map)) {
        cli_error("backup", "%s", cr_error_message());
        return CLI_FAIL;
    }
    if (absolute(out, dir, sizeof dir) || mkdir(dir, 0755) != 0) {
        cli_error("backup", "%s: %s", out, errno ? strerror(errno) : cr_error_message());
        return CLI_FAIL;
    }
    for (int g = 0; g < map.n_groups; g++) {
        cr_err rc = CR_ERR_UNAVAILABLE;
        snprintf(path, sizeof path, "%s/group-%d", dir, g);
        for (int r = 0; r < map.n_replicas[g] && rc; r++) {
            rc = backup_one(ctx, map.replicas[g][r], path, wait_ms);
            if (rc)
                fprintf(stderr, "cirrus backup: group %d replica %s: %s\n", g,
                        map.replicas[g][r], cr_error_message());
        }
        if (rc) {
            cli_error("backup", "group %d: no replica made a copy", g);
            return CLI_FAIL;
        }
    }
    snprintf(path, sizeof path, "%s/cluster.json", dir);
    if (cr_file_copy(map_path, path, NULL)) {
        cli_error("backup", "%s", cr_error_message());
        return CLI_FAIL;
    }
    return CLI_OK;
}

int cli_cmd_backup(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"map", required_argument, 0, 'm'},
                                         {"wait-ms", required_argument, 0, 'w'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *map = NULL;
    long long wait = BACKUP_WAIT_MS_DEFAULT;
    char dir[PATH_MAX];
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'o') out = optarg;
        else if (c == 'm') map = optarg;
        else if (c == 'w' && !cr_parse_ll(optarg, 1, 24ll * 3600 * 1000, &wait)) ;
        else {
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: cirrus --endpoint SHARD backup --out DIR [--wait-ms MS]\n"
                    "       cirrus backup --map cluster.json --out DIR [--wait-ms MS]\n"
                    "A consistent copy of a shard (or of one replica per group) while it "
                    "serves, written\nby the shard itself: DIR must be writable by every "
                    "shard (the same machine or a\nshared volume). Serve a copy with "
                    "cirrus-shard --dir, or copy it back with cirrus restore.\n");
            return c == 'h' ? CLI_OK : CLI_USAGE;
        }
    }
    if (!out) {
        cli_error("backup", "--out is required");
        return CLI_USAGE;
    }
    if (map)
        return backup_map(ctx, map, out, (uint32_t)wait);
    if (absolute(out, dir, sizeof dir)) {
        cli_error("backup", "%s", cr_error_message());
        return CLI_FAIL;
    }
    if (backup_one(ctx, ctx->endpoint, dir, (uint32_t)wait)) {
        cli_error("backup", "%s (endpoint %s)", cr_error_message(), ctx->endpoint);
        return CLI_FAIL;
    }
    return CLI_OK;
}

static void restored(void *ctx, const char *dir, uint64_t items, int dim, const char *factory)
{
    cli_ctx *c = ctx;
    if (c->json) {
        json_t *j = json_pack("{sssIsiss}", "dir", dir, "items", (json_int_t)items, "dim", dim,
                              "index", factory);
        if (j)
            cli_print_json(j);
    } else {
        printf("%s: %llu items, dim %d, %s\n", dir, (unsigned long long)items, dim, factory);
    }
}

int cli_cmd_restore(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, 0, 'f'},
                                         {"to", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *from = NULL, *to = NULL;
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'f') from = optarg;
        else if (c == 't') to = optarg;
        else {
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: cirrus restore --from BACKUP --to DIR\n"
                    "Copies a backup (one shard's, or a cluster's with its cluster.json) into "
                    "the new\ndirectory DIR and opens every shard of it. Then: cirrus-shard "
                    "--dir DIR (or DIR/group-G),\nor cirrus serve --data DIR.\n");
            return c == 'h' ? CLI_OK : CLI_USAGE;
        }
    }
    if (!from || !to) {
        cli_error("restore", "--from and --to are required");
        return CLI_USAGE;
    }
    if (offline_restore(from, to, restored, ctx)) {
        cli_error("restore", "%s", cr_error_message());
        return CLI_FAIL;
    }
    return CLI_OK;
}
