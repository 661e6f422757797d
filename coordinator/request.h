/* request.h — one client request in flight, and the helpers its handlers share.
 *
 * A handler's start function gets the request, keeps its own state in r->state (freed by
 * r->state_free when the request ends), starts backend calls (coord_loop_call) whose `done`
 * functions continue it, and finally replies (coord_rq_reply / coord_rq_fail) and ends it
 * (coord_rq_end). Exactly one reply per request; every path ends in coord_rq_end.
 *
 * Errors cross a handler's steps in a coord_status: cr_error_message() is the loop thread's
 * last error and belongs to whichever request set it last.
 *
 * Loop thread only.
 */
#ifndef COORD_REQUEST_H
#define COORD_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"
#include "common/wire.h"
#include "coordinator/handlers.h"

typedef struct coord_rq {
    coord_app *app;
    coord_loop *loop;
    cr_wire_msg route;     /* the client's routing frames */
    cr_pb_bounded alloc;   /* req was unpacked through it */
    Cirrus__V1__Request *req;
    const coord_map *map;  /* the map when the request arrived (see coord_loop_map) */
    uint64_t recv_us;      /* monotonic */
    uint64_t deadline_ms;  /* absolute, monotonic */
    int failed, partial;   /* for the metrics */
    int replied;
    void *state;
    void (*state_free)(void *state);
    struct coord_rq *prev, *next;
    coord_peer *peer;      /* the client connection it came on (NULL: not counted) */
} coord_rq;

typedef struct coord_status {
    cr_err rc;
    char msg[256];
} coord_status;

/* Records rc with the current error message (when rc is not CR_OK); returns rc. */
cr_err coord_status_keep(coord_status *st, cr_err rc);

/* What is left of the request's deadline (at least 1 ms). */
uint32_t coord_rq_deadline_left(const coord_rq *r);
/* The timeout of one backend call: the deadline left, at most --backend-timeout-ms. */
uint32_t coord_rq_sub_timeout(const coord_rq *r);

/* Sends resp with an ok status and the request's id. */
void coord_rq_reply(coord_rq *r, Cirrus__V1__Response *resp);
/* Sends an error status. */
void coord_rq_fail(coord_rq *r, cr_err code, const char *msg);
/* Records the metrics and frees the request and its state. */
void coord_rq_end(coord_rq *r);
/* coord_rq_fail then coord_rq_end. */
void coord_rq_fail_end(coord_rq *r, cr_err code, const char *msg);

/* Packs m into a new buffer (free it). */
cr_err coord_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len);

void coord_sub_init(coord_sub *s, coord_target t, int group, int replica, const uint8_t *body,
                    size_t len, uint32_t timeout, int hedge);
void coord_sub_free(coord_sub *s);
/* CR_OK when the backend answered with a non-error status; else the error, set. */
cr_err coord_sub_check(const coord_sub *s, const char *what);
/* A backend outage (rather than a bad request). */
int coord_outage(cr_err code);

/* One request to one target. */
typedef struct coord_one {
    coord_call call;
    coord_sub sub;
    uint8_t *body;
} coord_one;

/* Packs req and sends it to `target` (reads hedge; replica targets do not). */
cr_err coord_one_start(coord_one *o, coord_rq *r, coord_target target, int group,
                       Cirrus__V1__Request *req, coord_call_fn done, void *arg);
/* In `done`: CR_OK when the answer is a success (o->sub.resp), else the error, set. */
cr_err coord_one_check(const coord_one *o, const char *what);
/* Frees the body and the answer; safe on a zeroed or finished coord_one. */
void coord_one_free(coord_one *o);

/* The handlers, by op (search.c, write.c, ops.c). */
void coord_search_start(coord_rq *r);
void coord_search_batch_start(coord_rq *r);
void coord_upsert_start(coord_rq *r);
void coord_delete_start(coord_rq *r);
void coord_get_start(coord_rq *r);
void coord_stats_start(coord_rq *r);
void coord_schema_start(coord_rq *r); /* schema.c */
void coord_health_start(coord_rq *r);
void coord_snapshot_start(coord_rq *r);
void coord_passthrough_start(coord_rq *r);
/* Generate, JobStatus, CancelJob, ListJobs: forwarded to the map's job broker. */
void coord_jobs_start(coord_rq *r);
void coord_reload_start(coord_rq *r);

#endif
