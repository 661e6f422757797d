/* restore.h — `cirrus restore`: a backup (`cirrus backup`) copied into place and checked.
 * FROM is either one shard's copy (FROM/data.mdb, FROM/index.snap) or a cluster's
 * (FROM/cluster.json and FROM/group-G/ for each group of the map); TO must not exist. Each
 * shard is copied file by file (fsynced), then opened as a server opens it, so a restore that
 * returns CR_OK is servable: `cirrus-shard --dir TO` (or TO/group-G), or `cirrus serve --data
 * TO` for a cluster's. */
#ifndef OFFLINE_RESTORE_H
#define OFFLINE_RESTORE_H

#include <stdint.h>

#include "common/err.h"

/* Called once per shard restored: its directory under TO, live items, dimension, index. */
typedef void (*offline_restore_fn)(void *ctx, const char *dir, uint64_t items, int dim,
                                   const char *factory);

cr_err offline_restore(const char *from, const char *to, offline_restore_fn fn, void *ctx);

#endif
