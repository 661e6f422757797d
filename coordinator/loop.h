/* loop.h — the coordinator's event loop: ONE thread owns every socket of the coordinator
 * (the public ROUTER and one DEALER per backend) and drives every client request as a small
 * state machine. Nothing in it blocks and no request crosses a thread.
 *
 *   coord_loop_opts o = {.bind = "tcp://0.0.0.0:7700", .on_request = start, .request_ctx = app};
 *   coord_loop *L; rc = coord_loop_new(&L, &map, &o);  // returns once bound
 *   rc = coord_loop_run(L, &stop);                      // on the thread that owns L
 *   coord_loop_free(&L);
 *
 * A request handler (search.c, write.c, ops.c) starts backend calls with coord_loop_call():
 * a call is a set of sub-requests (coord_sub), each to one target; the loop sends them,
 * hedges slow reads to a second replica after the map's hedge_ms, retries one that fails
 * (network error, overloaded, unavailable) on another replica, times out what does not answer
 * in its timeout_ms, and runs the call's `done` function once every sub has an answer, an
 * error or its timeout. `done` always runs from the loop's ready list, never inside
 * coord_loop_call, so a handler's steps never nest.
 *
 * Each iteration: apply a reloaded map; run the ready list; poll the sockets until the next
 * timer (deadlines, hedges, the health heartbeat); read backend answers, then new requests;
 * fire due timers. Backend calls in flight sit in a table indexed by call id (pending.h).
 *
 * Thread rules: everything runs on the loop thread except the functions marked "any thread".
 */
#ifndef COORD_LOOP_H
#define COORD_LOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"
#include "common/wire.h"
#include "coordinator/backend.h"
#include "coordinator/clustermap.h"
#include "coordinator/pending.h"
#include "coordinator/timer.h"

#define COORD_MAX_ATTEMPTS 4

typedef struct coord_loop coord_loop;

typedef struct coord_sub {
    coord_target target;
    int group, replica;
    const uint8_t *body; /* a packed Request, borrowed until the call is done; its id is
                            replaced by the loop's call id */
    size_t len;
    uint32_t timeout_ms; /* 0 = 10 s */
    int hedge;           /* reads: allow a second replica after hedge_ms */
    /* results, valid once the call is done */
    cr_err rc;           /* CR_OK: resp is set (its status may still be an error) */
    char msg[200];
    Cirrus__V1__Response *resp; /* owned by the caller: cirrus__v1__response__free_unpacked */
    int replica_used;
    /* the loop's */
    int done, attempts;
    uint32_t tried; /* bitmask of replica (or encoder) indexes */
    uint64_t deadline_us, hedge_at_us;
    uint64_t ids[COORD_MAX_ATTEMPTS];
} coord_sub;

typedef void (*coord_call_fn)(void *arg);

/* Embedded by a handler in its request state; the fields are the loop's. */
typedef struct coord_call {
    coord_sub *subs;
    size_t n, remaining;
    coord_call_fn done;
    void *arg;
    coord_loop *loop;
    coord_timer timer; /* the earliest deadline or hedge of its subs */
    struct coord_call *next_ready;
    int state; /* 0 idle, 1 in flight, 2 on the ready list */
} coord_call;

/* A new client request: m holds its routing frames and body (framing already checked);
 * the function takes the frames it keeps (the rest are closed by the loop afterwards). */
typedef void (*coord_request_fn)(void *ctx, cr_wire_msg *m, uint64_t recv_us);

typedef struct coord_loop_opts {
    const char *bind;        /* public endpoint */
    void *zmq_ctx;           /* shared context (inproc) or NULL = own */
    unsigned spin_us;        /* busy-poll this long after traffic before sleeping (0 = never) */
    coord_request_fn on_request;
    void *request_ctx;
    coord_up_fn on_replica_up; /* a shard replica returned (replica repair) */
    void *up_ctx;
    uint32_t max_calls;      /* backend calls in flight at most (0 = 1 << 20) */
    const struct cr_curve *curve; /* CURVE on the tcp:// front and backends (common/curve.h;
                                     borrowed until free); NULL = plaintext */
} coord_loop_opts;

/* Connects the backends of `map` (copied) and binds the public endpoint. */
cr_err coord_loop_new(coord_loop **out, const coord_map *map, const coord_loop_opts *o);
/* Closes every socket; calls still in flight are dropped (cancel them first). */
void coord_loop_free(coord_loop **pp);

/* Runs until *stop, then stops reading requests and finishes the calls in flight (at most
 * 2 s). Call it on one thread; that thread is the loop thread from then on. */
cr_err coord_loop_run(coord_loop *L, volatile sig_atomic_t *stop);

/* Starts a call of n sub-requests (n may be 0: done then runs at the next turn of the loop).
 * On CR_OK done(arg) runs exactly once, later, from the loop; on an error it never runs. */
cr_err coord_loop_call(coord_loop *L, coord_call *c, coord_sub *subs, size_t n,
                       coord_call_fn done, void *arg);
/* Forgets a call in flight: its done never runs; late answers are dropped. */
void coord_loop_call_cancel(coord_loop *L, coord_call *c);
/* Calls in flight (started, done not yet run). */
size_t coord_loop_active_calls(const coord_loop *L);

/* Replies on the public socket along `route`. */
cr_err coord_loop_reply(coord_loop *L, const cr_wire_msg *route, const Cirrus__V1__Response *r);
cr_err coord_loop_reply_error(coord_loop *L, const cr_wire_msg *route, uint64_t id, cr_err code,
                              const char *msg);

coord_pending_stats coord_loop_pending_stats(const coord_loop *L);

/* Sets the replica-up hook (before coord_loop_run). */
void coord_loop_set_up_hook(coord_loop *L, coord_up_fn fn, void *ctx);

/* ---- any thread ---------------------------------------------------------------------- */

/* The current map. The pointer stays valid until coord_loop_free: a map replaced by a reload
 * is retired, not freed, so requests in flight keep a consistent view. */
const coord_map *coord_loop_map(coord_loop *L);
/* Replaces the map (SIGHUP); applied by the loop between events. Backends present in both
 * maps keep their connections. */
void coord_loop_set_map(coord_loop *L, const coord_map *map);
/* 1 while a map given to coord_loop_set_map is not applied yet. */
int coord_loop_map_pending(coord_loop *L);
/* 1 when the shard replica is up and readable. */
int coord_loop_replica_live(coord_loop *L, int group, int replica);
void *coord_loop_zmq_ctx(coord_loop *L);

/* Replica freshness (backend.h has the contracts). */
int coord_loop_replica_missed(coord_loop *L, int group, int replica, const char *ep,
                              uint64_t min_version, int acked);
int coord_loop_replica_state(coord_loop *L, int group, int replica, coord_replica_state *out);
int coord_loop_repair_begin(coord_loop *L, int group, int replica, coord_replica_state *out);
int coord_loop_repair_end(coord_loop *L, int group, int replica, const char *ep, int proven,
                          int complete);

/* ---- calls from another thread (replica repair) ----------------------------------------
 *
 * A background thread that needs backend calls (replica repair) opens a caller: an inproc
 * socket to the loop. coord_caller_call() hands one sub-request to the loop, which runs it
 * like its own calls (same connections, so it is ordered with the loop's writes to the same
 * replica; same health, replica choice and timeout) and wakes the caller when it is done.
 * Client requests never take this path. */
typedef struct coord_caller coord_caller;

/* Any thread; one caller per thread. */
cr_err coord_caller_open(coord_loop *L, coord_caller **out);
void coord_caller_close(coord_caller **pp);

/* Runs s (fill it with coord_sub fields target..hedge; s->body is borrowed until return) and
 * waits: at most s->timeout_ms plus a margin. CR_OK: s->rc/s->resp hold the outcome as for a
 * loop call (free s->resp). CR_ERR_UNAVAILABLE at once when the loop has stopped. */
cr_err coord_caller_call(coord_caller *c, coord_sub *s);

/* Callers get CR_ERR_UNAVAILABLE from now on (coord_loop_run does this when it returns). */
void coord_loop_close_callers(coord_loop *L);

#endif
