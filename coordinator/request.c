/* Taking in a client request, dispatching it by op, and the helpers its handlers share. */
#include "coordinator/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

#define UNPACK_LIMIT (256u << 20)
#define MAX_REQUESTS 10000 /* in flight; more are answered OVERLOADED at once */

cr_err coord_status_keep(coord_status *st, cr_err rc)
{
    st->rc = rc;
    snprintf(st->msg, sizeof st->msg, "%s", rc ? cr_error_message() : "");
    return rc;
}

uint32_t coord_rq_deadline_left(const coord_rq *r)
{
    uint64_t now = cr_clock_mono_ms();
    return (uint32_t)(r->deadline_ms > now ? r->deadline_ms - now : 1);
}

uint32_t coord_rq_sub_timeout(const coord_rq *r)
{
    uint32_t left = coord_rq_deadline_left(r);
    return left < r->app->o.backend_timeout_ms ? left : r->app->o.backend_timeout_ms;
}

void coord_rq_reply(coord_rq *r, Cirrus__V1__Response *resp)
{
    Cirrus__V1__Status st;
    cr_wire_status_set(&st, CR_OK, "");
    resp->id = r->req->id;
    resp->status = &st;
    r->replied = 1;
    if (coord_loop_reply(r->loop, &r->route, resp))
        CR_WARN("coordinator", "reply %llu: %s", (unsigned long long)r->req->id,
                cr_error_message());
    resp->status = NULL;
}

void coord_rq_fail(coord_rq *r, cr_err code, const char *msg)
{
    r->failed = 1;
    r->replied = 1;
    coord_loop_reply_error(r->loop, &r->route, r->req ? r->req->id : 0, code, msg);
}

void coord_rq_end(coord_rq *r)
{
    coord_app *app = r->app;
    if (!r->replied) /* a handler bug: never answer by silence */
        coord_rq_fail(r, CR_ERR_INTERNAL, "request ended without an answer");
    if (r->state && r->state_free)
        r->state_free(r->state);
    if (r->req) {
        coord_metrics_observe(&app->metrics, (int)r->req->op_case, r->failed,
                              cr_clock_mono_us() - r->recv_us, r->partial);
        cirrus__v1__request__free_unpacked(r->req, &r->alloc.base);
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        app->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    app->n_requests--;
    cr_wire_msg_close(&r->route);
    free(r);
}

void coord_rq_fail_end(coord_rq *r, cr_err code, const char *msg)
{
    coord_rq_fail(r, code, msg);
    coord_rq_end(r);
}

/* ---- backend call helpers ------------------------------------------------------------------ */

cr_err coord_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    *buf = malloc(*len ? *len : 1);
    if (!*buf)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    protobuf_c_message_pack(m, *buf);
    return CR_OK;
}

void coord_sub_init(coord_sub *s, coord_target t, int group, int replica, const uint8_t *body,
                    size_t len, uint32_t timeout, int hedge)
{
    memset(s, 0, sizeof *s);
    s->target = t;
    s->group = group;
    s->replica = replica;
    s->body = body;
    s->len = len;
    s->timeout_ms = timeout;
    s->hedge = hedge;
}

void coord_sub_free(coord_sub *s)
{
    if (s->resp)
        cirrus__v1__response__free_unpacked(s->resp, NULL);
    s->resp = NULL;
}

cr_err coord_sub_check(const coord_sub *s, const char *what)
{
    if (s->rc)
        return cr_error_set(s->rc, "%s: %s", what, s->msg[0] ? s->msg : cr_strerror(s->rc));
    if (!s->resp || !s->resp->status)
        return cr_error_set(CR_ERR_PROTO, "%s: answer without a status", what);
    if (s->resp->status->code < 0)
        return cr_error_set((cr_err)s->resp->status->code, "%s", s->resp->status->message);
    return CR_OK;
}

int coord_outage(cr_err code)
{
    return code == CR_TIMEOUT || code == CR_ERR_UNAVAILABLE || code == CR_ERR_NET ||
           code == CR_ERR_OVERLOADED || code == CR_ERR_DEADLINE || code == CR_ERR_INTERNAL;
}

cr_err coord_one_start(coord_one *o, coord_rq *r, coord_target target, int group,
                       Cirrus__V1__Request *req, coord_call_fn done, void *arg)
{
    size_t len;
    cr_err rc;
    coord_one_free(o);
    rc = coord_pack(&req->base, &o->body, &len);
    if (rc)
        return rc;
    coord_sub_init(&o->sub, target, group, 0, o->body, len, coord_rq_sub_timeout(r),
                   target != COORD_TO_REPLICA);
    return coord_loop_call(r->loop, &o->call, &o->sub, 1, done, arg);
}

cr_err coord_one_check(const coord_one *o, const char *what)
{
    return coord_sub_check(&o->sub, what);
}

void coord_one_free(coord_one *o)
{
    coord_sub_free(&o->sub);
    free(o->body);
    o->body = NULL;
}

/* ---- intake ---------------------------------------------------------------------------- */

static void move_route(cr_wire_msg *dst, cr_wire_msg *src)
{
    cr_wire_msg_init(dst);
    for (int i = 0; i < src->nroute; i++) {
        zmq_msg_init(&dst->route[i]);
        zmq_msg_move(&dst->route[i], &src->route[i]);
        zmq_msg_close(&src->route[i]);
    }
    dst->nroute = src->nroute;
    src->nroute = 0;
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
    case CIRRUS__V1__REQUEST__OP_HEALTH: coord_health_start(r); break;
    case CIRRUS__V1__REQUEST__OP_SNAPSHOT: coord_snapshot_start(r); break;
    case CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE:
    case CIRRUS__V1__REQUEST__OP_ENCODE_TEXT:
    case CIRRUS__V1__REQUEST__OP_COMPOSE: coord_passthrough_start(r); break;
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
    uint32_t budget;
    cr_err rc;

    if (app->n_requests >= MAX_REQUESTS) {
        coord_loop_reply_error(app->loop, m, 0, CR_ERR_OVERLOADED,
                               "coordinator overloaded: too many requests in flight; retry later");
        return;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        coord_loop_reply_error(app->loop, m, 0, CR_ERR_NOMEM, "out of memory");
        return;
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
    move_route(&r->route, m);
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
