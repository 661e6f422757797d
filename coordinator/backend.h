/* backend.h — the coordinator's backends: one DEALER per shard replica and per encoder, their
 * health (up / down), what is known of each replica's contents (freshness) and the choice of
 * a replica for each call.
 *
 * Health: a backend is down after PING_MISSES_DOWN missed Health pings (the loop pings every
 * COORD_PING_EVERY_MS) or when a call to it times out with no reply from it for
 * COORD_SILENT_DOWN_MS; it is up again at its first answer, which is reported to the up hook
 * (replica repair). Writes go to every replica that is up, readable or not.
 *
 * Freshness: each shard replica carries what the coordinator can prove about its contents
 * (coord_replica_state; the rule and its reasons are in repair.c). This module keeps the
 * state, applies the write path's reports of missed writes at once (a replica that missed an
 * acknowledged write stops serving reads before the client hears the ack), and picks reads
 * only from replicas that are not behind.
 *
 * Thread rules: the loop thread owns the connections and health; the freshness fields are
 * under state_mu (the repair thread reads and updates them through the functions marked "any
 * thread"); `live`, `readable` and `answering` are atomics other threads read.
 */
#ifndef COORD_BACKEND_H
#define COORD_BACKEND_H

#include <pthread.h>
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
    char pub[41]; /* the CURVE key it was connected with ("" = plaintext) */
    void *sock;
    int outstanding; /* calls and pings in flight */
    int up, ever_up;
    /* Freshness, under coord_backends.state_mu; `readable` and `answering` are also read
     * without it, by pick() and the repair thread. */
    _Atomic int readable;  /* may serve reads: not behind, or its group's only replica */
    _Atomic int answering; /* up, and has answered since it was (re)connected */
    int group_size;        /* replicas in its group (1: always readable) */
    int behind, known, repair_running, fresh_behind;
    uint64_t mark, fresh_mark;
    int missed_pings;
    uint64_t ping_id, ping_sent_ms, last_reply_ms;
    int is_encoder, group, replica;
} coord_backend;

/* Called on the loop thread when shard replica (group, replica) answers for the first time or
 * again after being down. Must not block. */
typedef void (*coord_up_fn)(void *ctx, int group, int replica);

typedef struct coord_replica_state {
    int up;        /* has answered since it was last (re)connected or seen down */
    int behind;    /* may lack an acknowledged write: serves no reads */
    int known;     /* 0: nothing is known of its contents (coordinator start, new in the map) */
    uint64_t mark; /* it may lack only writes with a version > mark; UINT64_MAX: none */
    char ep[COORD_MAX_ENDPOINT];
} coord_replica_state;

typedef struct coord_backends {
    coord_backend *be; /* COORD_MAX_BACKENDS */
    int n;
    int group_be[COORD_MAX_GROUPS][COORD_MAX_REPLICAS]; /* backend index */
    int enc_be[COORD_MAX_ENCODERS];
    atomic_int live[COORD_MAX_GROUPS][COORD_MAX_REPLICAS]; /* up and readable */
    pthread_mutex_t state_mu; /* the replicas' freshness fields, and coord_backends_build */
    void *ctx;
    cr_wire_limits lim;
    const struct cr_curve *curve; /* this coordinator's key for tcp:// backends; NULL = off */
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
 * indexes): for groups the up and readable replica with the fewest calls outstanding, for
 * encoders the up one; for a replica that replica when it is up. -1 when there is none. */
int coord_backends_pick(const coord_backends *s, const coord_map *map, coord_target target,
                        int group, int replica, uint32_t tried);

/* ---- any thread ---------------------------------------------------------------------- */

/* 1 when the replica is up and readable (published by the loop every heartbeat tick). */
int coord_backends_live(coord_backends *s, int group, int replica);

/* The write path reports that replica (group, replica) of the caller's map, at endpoint `ep`,
 * did not durably apply a write whose lowest version is `min_version`; `acked`: the write was
 * acknowledged to the client without it. Lowers the replica's mark below min_version and,
 * when acked, makes it behind (no reads) at once. Returns 1 when the replica is up (worth a
 * repair now). Call before replying to the client. */
int coord_backends_replica_missed(coord_backends *s, int group, int replica, const char *ep,
                                  uint64_t min_version, int acked);

/* Fills *out; 0 when (group, replica) is not in the current map. */
int coord_backends_replica_state(coord_backends *s, int group, int replica,
                                 coord_replica_state *out);

/* A repair of (group, replica): begin fills *out and starts recording the misses that happen
 * while it runs (returns 0 when not in the map). end applies the outcome if `ep` still is
 * (group, replica): `complete` (it now holds what every other replica held when the repair
 * began): mark = UINT64_MAX and known, unless it missed writes meanwhile (mark = below the
 * lowest of those); `proven` (it now holds every acknowledged write): not behind, unless it
 * missed an acknowledged write meanwhile. Both 0 = the repair was abandoned. Returns 1 when
 * it missed writes while the repair ran (run it again). */
int coord_backends_repair_begin(coord_backends *s, int group, int replica,
                                coord_replica_state *out);
int coord_backends_repair_end(coord_backends *s, int group, int replica, const char *ep,
                              int proven, int complete);

#endif
