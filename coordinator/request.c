/* The helpers every request handler shares: replies, deadlines, sub-calls (intake.c takes
 * requests in and dispatches them). */
#include "coordinator/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

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
    if (r->peer)
        coord_peer_release(app, r->peer);
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
                   target == COORD_TO_GROUP || target == COORD_TO_ENCODER);
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
