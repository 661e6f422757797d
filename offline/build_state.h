/* build_state.h — what a build keeps in DIR/.build/ to resume after kill -9:
 *   build.json     the parameters (a rerun with other ones is refused, naming the field)
 *   group-G.json   per group: the input position every record below which is committed in
 *                  the group's shard, the error count and error-log length at that point,
 *                  and whether the group is finished (indexed, snapshotted)
 *   group-G.errors the group's bad input lines, one "line N (id): why" per line
 *   template.faiss the trained index template shared by every group (trained indexes only)
 * Each JSON file is replaced atomically (file.tmp, fsync, rename, fsync of the directory). A
 * progress record is written only after the shard commits it covers, so it never runs ahead
 * of the data; replaying from it re-puts items with the same versions, which the shard
 * ignores. */
#ifndef OFFLINE_BUILD_STATE_H
#define OFFLINE_BUILD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

typedef struct offline_group_state {
    uint64_t next;         /* records below this one are committed (or failed, and logged) */
    uint64_t side_offset;  /* byte offset of the side file at record `next` */
    uint64_t errors;       /* bad records below `next` */
    uint64_t errors_bytes; /* length of group-G.errors at that point */
    uint64_t stored;       /* items put below `next` (new or already present) */
    int done;              /* indexed and snapshotted: nothing left to do */
    uint64_t items;        /* live items when done */
} offline_group_state;

/* Writes `j` (not consumed) to path atomically. */
cr_err offline_json_save(const char *path, const json_t *j);

/* CR_NOTFOUND when absent (a fresh group: *st zeroed). */
cr_err offline_state_load(const char *path, offline_group_state *st);
cr_err offline_state_save(const char *path, const offline_group_state *st);

/* Writes `want` to path when absent; else every key of `want` must have an equal value in
 * the file (CR_ERR_INVALID: "DIR was built with index "HNSW32", not "Flat" ..."). */
cr_err offline_manifest_check(const char *path, const json_t *want);

#endif
