#include "shard/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"

/* A leftover DIR.partial of a failed backup: its files, then itself. */
static void partial_remove(const char *tmp)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", "index.snap"};
    char path[4200];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
    }
    rmdir(tmp);
}

static void dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

cr_err shard_backup_write(shard_store *st, const char *snap_path, const char *dir,
                          uint64_t *bytes)
{
    char tmp[4096], snap[4200], parent[4096], *slash;
    uint64_t snap_bytes = 0, db_bytes = 0;
    struct stat sb;
    cr_err rc;

    if (!dir || !*dir || snprintf(tmp, sizeof tmp, "%s.partial", dir) >= (int)sizeof tmp)
        return cr_error_set(CR_ERR_INVALID, "backup: a directory is required (at most 4000 "
                                            "bytes)");
    if (stat(dir, &sb) == 0)
        return cr_error_set(CR_ERR_INVALID, "backup: %s exists (a backup goes to a new "
                                            "directory)", dir);
    partial_remove(tmp);
    if (mkdir(tmp, 0755) != 0)
        return cr_error_set(CR_ERR_IO, "backup: mkdir %s: %s", tmp, strerror(errno));
    snprintf(snap, sizeof snap, "%s/index.snap", tmp);
    /* The snapshot first: the store copy taken after it holds everything it covers. */
    rc = cr_file_copy(snap_path, snap, &snap_bytes);
    if (rc && access(snap_path, F_OK) != 0)
        rc = CR_OK; /* no snapshot yet: the copy's index is rebuilt from the store at open */
    if (!rc)
        rc = shard_store_copy(st, tmp, &db_bytes);
    if (!rc && rename(tmp, dir) != 0)
        rc = cr_error_set(CR_ERR_IO, "backup: rename %s: %s", tmp, strerror(errno));
    if (rc) {
        partial_remove(tmp);
        return rc;
    }
    snprintf(parent, sizeof parent, "%s", dir);
    slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = 0;
    dir_sync(dir);
    dir_sync(slash ? parent : ".");
    if (bytes)
        *bytes = snap_bytes + db_bytes;
    return CR_OK;
}
