/* intake.c — a client request enters the coordinator here: it is unpacked, given its deadline
 * and dispatched by op to its handler (search.c, write.c, ops.c), which drives it from then
 * on. Kept apart from request.c, the helpers every handler uses, so that the handlers depend
 * on those helpers and only the intake depends on the handlers. */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "coordinator/handlers.h"
#include "coordinator/request.h"

#define UNPACK_LIMIT (256u << 20)
#define MAX_REQUESTS 10000 /* in flight; more are answered OVERLOADED at once */
/* In flight from one client connection; more are answered OVERLOADED at once. A client that
 * pipelines without reading its replies (or floods) holds at most this many of the shards'
 * queue slots, so the others' requests wait behind a bounded queue. */
#define MAX_CLIENT_REQUESTS 256

static size_t peer_bucket(const uint8_t *id, size_t len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    return (size_t)(h % COORD_PEER_BUCKETS);
}

/* The peer of routing id `id`, made when it has nothing in flight; NULL when out of memory. */
static coord_peer *peer_get(coord_app *app, const uint8_t *id, size_t len)
{
    size_t b = peer_bucket(id, len);
    coord_peer *p;
    for (p = app->peers[b]; p; p = p->next)
        if (p->len == len && memcmp(p->id, id, len) == 0)
            return p;
    if (len > sizeof p->id || !(p = calloc(1, sizeof *p)))
        return NULL;
    memcpy(p->id, id, len);
    p->len = len;
    p->next = app->peers[b];
    app->peers[b] = p;
    return p;
}

void coord_peer_release(coord_app *app, coord_peer *p)
{
    coord_peer **pp;
    if (--p->n)
        return;
    for (pp = &app->peers[peer_bucket(p->id, p->len)]; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p);
}

static void dispatch(coord_rq *r)
{
    switch (r->req->op_case) {
    case CIRRUS__V1__REQUEST__OP_SEARCH: coord_search_start(r); break;
    case CIRRUS__V1__REQUEST__OP_SEARCH_BATCH: coord_search_batch_start(r); break;
    case CIRRUS__V1__REQUEST__OP_UPSERT: coord_upsert_start(r); break;
    case CIRRUS__V1__REQUEST__OP_DELETE: coord_delete_start(r); break;
    case CIRRUS__V1__REQUEST__OP_GET: coord_get_start(r); break;
    case CIRRUS__V1__REQUEST__OP_STATS: coord_stats_start(r); break;
    case CIRRUS__V1__REQUEST__OP_SCHEMA: coord_schema_start(r); break;
    case CIRRUS__V1__REQUEST__OP_HEALTH: coord_health_start(r); break;
    case CIRRUS__V1__REQUEST__OP_SNAPSHOT: coord_snapshot_start(r); break;
    case CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE:
    case CIRRUS__V1__REQUEST__OP_ENCODE_TEXT:
    case CIRRUS__V1__REQUEST__OP_COMPOSE: coord_passthrough_start(r); break;
    case CIRRUS__V1__REQUEST__OP_GENERATE:
    case CIRRUS__V1__REQUEST__OP_JOB_STATUS:
    case CIRRUS__V1__REQUEST__OP_CANCEL_JOB:
    case CIRRUS__V1__REQUEST__OP_LIST_JOBS: coord_jobs_start(r); break;
    case CIRRUS__V1__REQUEST__OP_RELOAD: coord_reload_start(r); break;
    case CIRRUS__V1__REQUEST__OP_BACKUP:
        coord_rq_fail_end(r, CR_ERR_UNSUPPORTED,
                          "backup is a shard operation: back up one replica of each group "
                          "(cirrus backup --map MAP)");
        break;
    case CIRRUS__V1__REQUEST__OP__NOT_SET:
        coord_rq_fail_end(r, CR_ERR_INVALID, "request without an operation");
        break;
    default:
        coord_rq_fail_end(r, CR_ERR_UNSUPPORTED,
                          "operation not served by this coordinator (generation jobs need a "
                          "worker endpoint, which this build does not run)");
        break;
    }
}

void coord_request_start(void *ctx, cr_wire_msg *m, uint64_t recv_us)
{
    coord_app *app = ctx;
    coord_rq *r;
    coord_peer *peer = NULL;
    const uint8_t *who;
    size_t who_len;
    uint32_t budget;
    cr_err rc;

    if (app->n_requests >= MAX_REQUESTS) {
        coord_loop_reply_error(app->loop, m, 0, CR_ERR_OVERLOADED,
                               "coordinator overloaded: too many requests in flight; retry later");
        return;
    }
    who = cr_wire_msg_route_frame(m, 0, &who_len);
    if (who && !(peer = peer_get(app, who, who_len))) {
        coord_loop_reply_error(app->loop, m, 0, CR_ERR_NOMEM, "out of memory");
        return;
    }
    if (peer && peer->n >= MAX_CLIENT_REQUESTS) {
        coord_loop_reply_error(app->loop, m, 0, CR_ERR_OVERLOADED,
                               "too many requests in flight on this connection (at most "
                               "256): read the replies; retry later");
        return;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        if (peer && !peer->n) {
            peer->n = 1;
            coord_peer_release(app, peer);
        }
        coord_loop_reply_error(app->loop, m, 0, CR_ERR_NOMEM, "out of memory");
        return;
    }
    if (peer) {
        peer->n++;
        r->peer = peer;
    }
    r->app = app;
    r->loop = app->loop;
    r->recv_us = recv_us;
    r->next = app->requests;
    if (app->requests)
        app->requests->prev = r;
    app->requests = r;
    app->n_requests++;
    cr_pb_bounded_init(&r->alloc, UNPACK_LIMIT);
    rc = cr_wire_unpack_request(m, &r->alloc, &r->req);
    cr_wire_msg_take_route(&r->route, m);
    if (rc) {
        coord_rq_fail_end(r, rc, cr_error_message());
        return;
    }
    r->map = coord_loop_map(app->loop);
    budget = r->req->deadline_ms ? r->req->deadline_ms : app->o.default_deadline_ms;
    r->deadline_ms = recv_us / 1000 + budget;
    if (cr_clock_mono_ms() >= r->deadline_ms) {
        coord_rq_fail_end(r, CR_ERR_DEADLINE, "deadline passed while queued");
        return;
    }
    dispatch(r);
}

void coord_requests_abort(coord_app *app)
{
    while (app->requests) {
        coord_rq *r = app->requests;
        if (!r->replied)
            coord_rq_fail(r, CR_ERR_UNAVAILABLE, "coordinator stopping");
        coord_rq_end(r); /* state_free cancels the request's calls */
    }
}
