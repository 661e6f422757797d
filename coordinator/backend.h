/* backend.h — the coordinator's backends: one DEALER per shard replica and per encoder, their
 * health (up / down / repairing) and the choice of a replica for each call.
 *
 * Health: a backend is down after PING_MISSES_DOWN missed Health pings (the loop pings every
 * COORD_PING_EVERY_MS) or when a call to it times out with no reply from it for
 * COORD_SILENT_DOWN_MS; it is up again at its first answer. A shard replica that comes back
 * after being down is marked repairing and handed to the up hook (replica repair); it takes
 * writes but no reads until coord_backends_repair_done().
 *
 * Thread rules: the loop thread owns everything here except `live` and `repairing`, which
 * other threads read (coord_backends_live) or clear (coord_backends_repair_done).
 */
#ifndef COORD_BACKEND_H
#define COORD_BACKEND_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/err.h"
#include "common/wire.h"
#include "coordinator/clustermap.h"

#define COORD_MAX_BACKENDS (COORD_MAX_GROUPS * COORD_MAX_REPLICAS + COORD_MAX_ENCODERS)
#define COORD_PING_EVERY_MS 500
#define COORD_PING_MISSES_DOWN 3
#define COORD_SILENT_DOWN_MS 1500

typedef enum coord_target {
    COORD_TO_GROUP = 0,   /* any live replica of `group` (reads) */
    COORD_TO_REPLICA = 1, /* exactly replica `replica` of `group` (writes, snapshots) */
    COORD_TO_ENCODER = 2  /* any live encoder */
} coord_target;

typedef struct coord_backend {
    char ep[COORD_MAX_ENDPOINT];
    void *sock;
    int outstanding; /* calls and pings in flight */
    int up, ever_up;
    _Atomic int repairing; /* set by the loop, cleared by the repair thread */
    int missed_pings;
    uint64_t ping_id, ping_sent_ms, last_reply_ms;
    int is_encoder, group, replica;
} coord_backend;

/* Called on the loop thread when shard replica (group, replica) returns after being down. */
typedef void (*coord_up_fn)(void *ctx, int group, int replica);

typedef struct coord_backends {
    coord_backend *be; /* COORD_MAX_BACKENDS */
    int n;
    int group_be[COORD_MAX_GROUPS][COORD_MAX_REPLICAS]; /* backend index */
    int enc_be[COORD_MAX_ENCODERS];
    atomic_int live[COORD_MAX_GROUPS][COORD_MAX_REPLICAS]; /* up and not repairing */
    void *ctx;
    cr_wire_limits lim;
    coord_up_fn on_up;
    void *up_ctx;
} coord_backends;

cr_err coord_backends_init(coord_backends *s, void *zmq_ctx, const cr_wire_limits *lim);
void coord_backends_free(coord_backends *s);

/* Connects the backends of `map`, keeping the connections (and health) of endpoints present
 * before; closes the others. */
cr_err coord_backends_build(coord_backends *s, const coord_map *map);

/* Sends a packed Request with `id` as its id (appended as field 1: protobuf keeps the last
 * value, so the backend sees our id whatever the body carries). CR_ERR_OVERLOADED when the
 * backend's send queue is full. */
cr_err coord_backend_send(coord_backend *b, const uint8_t *body, size_t len, uint64_t id);

/* Records an answer (up = 1) or a failure (up = 0) of backend b. */
void coord_backends_mark(coord_backends *s, coord_backend *b, int up);

/* Publishes b's read liveness for other threads. */
void coord_backends_publish(coord_backends *s, const coord_backend *b);

/* A backend for a call to `target` not yet tried (`tried`: a bitmask of replica or encoder
 * indexes): for groups and encoders the live one with the fewest calls outstanding; for a
 * replica that replica when it is up. -1 when there is none. */
int coord_backends_pick(const coord_backends *s, const coord_map *map, coord_target target,
                        int group, int replica, uint32_t tried);

/* Any thread. */
int coord_backends_live(coord_backends *s, int group, int replica);
void coord_backends_repair_done(coord_backends *s, int group, int replica);

#endif
