/* backup.h — a consistent copy of one shard while it serves (`cirrus backup`): the index
 * snapshot current when the backup starts, then the LMDB environment copied in one read
 * transaction (shard_store_copy: compacted). The index snapshot is never newer than the
 * store copy, so opening the copy (`cirrus-shard --dir`) loads the snapshot and replays what
 * came after it: the copy holds every write committed (acknowledged) before the backup
 * started, possibly some later ones, never part of one. */
#ifndef SHARD_BACKUP_H
#define SHARD_BACKUP_H

#include <stdint.h>

#include "common/err.h"
#include "shard/store.h"

/* Writes the copy into `dir` (made here; it must not exist, its parent must): first into
 * DIR.partial, renamed to DIR when complete, so DIR is either absent or whole. *bytes (may be
 * NULL) gets the bytes written. CR_ERR_INVALID when DIR exists, CR_ERR_IO / CR_ERR_STORE
 * otherwise. Any thread; reads and writes of the shard go on. */
cr_err shard_backup_write(shard_store *st, const char *snap_path, const char *dir,
                          uint64_t *bytes);

#endif
