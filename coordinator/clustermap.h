/* clustermap.h — the coordinator's view of the cluster, loaded from a JSON file:
 *
 *   {
 *     "bind": "tcp://0.0.0.0:7700",
 *     "groups": [ ["tcp://10.0.0.1:7701", "tcp://10.0.0.2:7701"],     // group 0: replicas
 *                 ["tcp://10.0.0.3:7701", "tcp://10.0.0.4:7701"] ],   // group 1
 *     "encoders": ["tcp://10.0.0.9:7710"],
 *     "metric": "ip",            // how shard scores order: ip (higher first) or l2
 *     "write_quorum": 0,         // replicas that must be durable per write; 0 = all live, >= 1
 *     "hedge_ms": 30,            // re-send a search to another replica after this long
 *     "default_method": "searle", // composition method when a query names none
 *     "placement": "fnv1a64-jump" // item -> group function; absent = "legacy-fnv-jump"
 *   }
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
    int metric_l2;      /* 0: ip (higher is better), 1: l2 (lower is better) */
    int write_quorum;   /* 0 = all live replicas (at least one) */
    int hedge_ms;
    int default_method; /* Cirrus__V1__ComposeMethod */
    coord_placement placement; /* absent from the JSON: legacy (see placement.h) */
} coord_map;

/* Parses and validates a map from JSON text / a file. *out is written only on success;
 * errors (CR_ERR_INVALID) say which field is wrong. */
cr_err coord_map_parse(const char *json, coord_map *out);
cr_err coord_map_load(const char *path, coord_map *out);

/* The group that owns an external id. */
int coord_map_group_of(const coord_map *m, const char *ext_id);


#endif
