/* clustermap.h — the coordinator's view of the cluster, loaded from a JSON file:
 *
 *   {
 *     "bind": "tcp://0.0.0.0:7700",
 *     "groups": [ ["tcp://10.0.0.1:7701", "tcp://10.0.0.2:7701"],     // group 0: replicas
 *                 ["tcp://10.0.0.3:7701", "tcp://10.0.0.4:7701"] ],   // group 1
 *     "encoders": ["tcp://10.0.0.9:7710"],
 *     "jobs": "tcp://10.0.0.8:7720", // a job broker (a cirrus-coordinator with --jobs-dir)
 *     // any node may instead be {"endpoint": "tcp://...", "curve_pub": "<Z85 public key>"}:
 *     // the key the coordinator (started with --curve-secret) expects of it
 *     "metric": "ip",            // how shard scores order: ip (higher first) or l2
 *     "write_quorum": 0,         // replicas that must be durable per write; 0 = all live, >= 1
 *     "hedge_ms": 30,            // re-send a search to another replica after this long
 *     "default_method": "searle", // composition method when a query names none
 *     "placement": "fnv1a64-jump", // item -> group function; absent = "legacy-fnv-jump"
 *     "moving_from": {"groups": 2, "placement": "legacy-fnv-jump", "reads": "old"}
 *   }
 *
 * "moving_from" is present only while `cirrus rebalance` moves items from the placement it
 * names (the first `groups` groups of this map, under `placement`) to this map's. Then a write
 * goes to the item's owner under both placements (both must reach the quorum), and reads (get,
 * the reference of a composed query) go to the old owner, or with "reads": "new" to the new
 * one. Searches always count a group's hit only when that group is the item's read owner, so a
 * copy made by a move (or one not yet deleted after it) is never a second result.
 *
 * Item placement: see placement.h. It depends only on the id and the NUMBER of groups — never
 * on replicas or their addresses — so adding, removing or replacing replicas moves nothing.
 */
#ifndef COORD_CLUSTERMAP_H
#define COORD_CLUSTERMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coordinator/placement.h"

#define COORD_MAX_GROUPS 256
#define COORD_MAX_REPLICAS 8
#define COORD_MAX_ENCODERS 16
#define COORD_MAX_ENDPOINT 256

typedef struct coord_map {
    char bind[COORD_MAX_ENDPOINT];
    int n_groups;
    int n_replicas[COORD_MAX_GROUPS];
    char replicas[COORD_MAX_GROUPS][COORD_MAX_REPLICAS][COORD_MAX_ENDPOINT];
    int n_encoders;
    char encoders[COORD_MAX_ENCODERS][COORD_MAX_ENDPOINT];
    char jobs[COORD_MAX_ENDPOINT]; /* the job broker; "" = none */
    /* CURVE public keys (Z85) of the nodes, "" when the map names none. */
    char replica_pub[COORD_MAX_GROUPS][COORD_MAX_REPLICAS][41];
    char encoder_pub[COORD_MAX_ENCODERS][41];
    char jobs_pub[41];
    int metric_l2;      /* 0: ip (higher is better), 1: l2 (lower is better) */
    int write_quorum;   /* 0 = all live replicas (at least one) */
    int hedge_ms;
    int default_method; /* Cirrus__V1__ComposeMethod */
    coord_placement placement; /* absent from the JSON: legacy (see placement.h) */
    int move_groups;           /* "moving_from": groups of the old placement; 0 = no move */
    coord_placement move_placement;
    int move_reads_new;        /* reads follow the new placement */
} coord_map;

/* Parses and validates a map from JSON text / a file. *out is written only on success;
 * errors (CR_ERR_INVALID) say which field is wrong. */
cr_err coord_map_parse(const char *json, coord_map *out);
cr_err coord_map_load(const char *path, coord_map *out);

/* The group that owns an external id for reads (during a move: see "moving_from"). */
int coord_map_group_of(const coord_map *m, const char *ext_id);

/* The groups a write of ext_id goes to: out[0] and, during a move when the old and new owners
 * differ, out[1]. Returns how many (1 or 2). */
int coord_map_write_groups(const coord_map *m, const char *ext_id, int out[2]);


#endif
