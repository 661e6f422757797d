#include "offline/restore.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "coordinator/clustermap.h"
#include "offline/shard_writer.h"

#define RESTORE_PATH_MAX 4096

static int exists(const char *dir, const char *name)
{
    char path[RESTORE_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* One shard: its files into the new directory `to`, then opened. */
static cr_err restore_shard(const char *from, const char *to, offline_restore_fn fn, void *ctx)
{
    static const char *const files[] = {"data.mdb", "index.snap"};
    uint64_t items = 0;
    char factory[1024];
    int dim = 0;
    cr_err rc;
    if (!exists(from, "data.mdb"))
        return cr_error_set(CR_ERR_INVALID, "%s holds no shard backup (no data.mdb)", from);
    if (mkdir(to, 0755) != 0)
        return cr_error_set(CR_ERR_IO, "restore: mkdir %s: %s", to, strerror(errno));
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[RESTORE_PATH_MAX + 64], dst[RESTORE_PATH_MAX + 64];
        if (!exists(from, files[i]))
            continue; /* a backup of a shard that had no snapshot yet */
        snprintf(src, sizeof src, "%s/%s", from, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", to, files[i]);
        if ((rc = cr_file_copy(src, dst, NULL)))
            return rc;
    }
    rc = offline_shard_verify(to, &items, &dim, factory, sizeof factory);
    if (!rc && fn)
        fn(ctx, to, items, dim, factory);
    return rc;
}

/* A cluster: every group of FROM/cluster.json, then the map itself. */
static cr_err restore_cluster(const char *from, const char *to, offline_restore_fn fn,
                              void *ctx)
{
    char map_src[RESTORE_PATH_MAX + 64], map_dst[RESTORE_PATH_MAX + 64];
    static coord_map map; /* large; one restore at a time */
    cr_err rc;
    snprintf(map_src, sizeof map_src, "%s/cluster.json", from);
    snprintf(map_dst, sizeof map_dst, "%s/cluster.json", to);
    if ((rc = coord_map_load(map_src, &map)))
        return rc;
    if (mkdir(to, 0755) != 0)
        return cr_error_set(CR_ERR_IO, "restore: mkdir %s: %s", to, strerror(errno));
    for (int g = 0; g < map.n_groups; g++) {
        char src[RESTORE_PATH_MAX + 64], dst[RESTORE_PATH_MAX + 64];
        snprintf(src, sizeof src, "%s/group-%d", from, g);
        snprintf(dst, sizeof dst, "%s/group-%d", to, g);
        if ((rc = restore_shard(src, dst, fn, ctx)))
            return cr_error_wrap(rc, "group %d", g);
    }
    return cr_file_copy(map_src, map_dst, NULL);
}

cr_err offline_restore(const char *from, const char *to, offline_restore_fn fn, void *ctx)
{
    struct stat sb;
    if (!from || !to || strlen(from) >= RESTORE_PATH_MAX || strlen(to) >= RESTORE_PATH_MAX)
        return cr_error_set(CR_ERR_INVALID, "restore: --from and --to are required");
    if (stat(to, &sb) == 0)
        return cr_error_set(CR_ERR_INVALID, "restore: %s exists (restore into a new directory)",
                            to);
    if (exists(from, "data.mdb"))
        return restore_shard(from, to, fn, ctx);
    if (exists(from, "cluster.json"))
        return restore_cluster(from, to, fn, ctx);
    return cr_error_set(CR_ERR_INVALID, "%s is not a backup (no data.mdb, no cluster.json)",
                        from);
}
