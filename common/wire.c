#include "wire.h"

#include "common/clock.h"
#include "common/pb_check.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

cr_wire_limits cr_wire_default_limits(void)
{
    cr_wire_limits l = {
        .max_frame = CR_WIRE_DEFAULT_MAX_FRAME,
        .max_alloc = 4 * (size_t)CR_WIRE_DEFAULT_MAX_FRAME,
        .sndhwm = 10000,
        .rcvhwm = 10000,
        .heartbeat_ivl_ms = 2000,
        .heartbeat_timeout_ms = 6000,
    };
    return l;
}

static cr_err sockopt_int(void *sock, int opt, int value, const char *name)
{
    if (zmq_setsockopt(sock, opt, &value, sizeof value) != 0)
        return cr_error_set(CR_ERR_NET, "zmq_setsockopt %s: %s", name, zmq_strerror(errno));
    return CR_OK;
}

cr_err cr_wire_socket_setup(void *sock, const cr_wire_limits *lim)
{
    /* ZeroMQ drops a connection that sends a frame over MAXMSGSIZE, silently. Set it a quarter
     * above our own cap so that a frame somewhat too big is read and answered with a clear
     * error; only absurd frames cost the sender its connection. */
    int64_t maxmsg = lim->max_frame > (size_t)INT64_MAX / 2 ? -1
                                                             : (int64_t)(lim->max_frame + lim->max_frame / 4);
    cr_err rc;

    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        return cr_error_set(CR_ERR_NET, "zmq_setsockopt MAXMSGSIZE: %s", zmq_strerror(errno));
    rc = sockopt_int(sock, ZMQ_SNDHWM, lim->sndhwm, "SNDHWM");
    if (!rc)
        rc = sockopt_int(sock, ZMQ_RCVHWM, lim->rcvhwm, "RCVHWM");
    if (!rc)
        rc = sockopt_int(sock, ZMQ_LINGER, 0, "LINGER");
    if (!rc && lim->heartbeat_ivl_ms > 0) {
        rc = sockopt_int(sock, ZMQ_HEARTBEAT_IVL, lim->heartbeat_ivl_ms, "HEARTBEAT_IVL");
        if (!rc)
            rc = sockopt_int(sock, ZMQ_HEARTBEAT_TIMEOUT, lim->heartbeat_timeout_ms,
                             "HEARTBEAT_TIMEOUT");
        if (!rc)
            rc = sockopt_int(sock, ZMQ_HEARTBEAT_TTL, lim->heartbeat_timeout_ms,
                             "HEARTBEAT_TTL");
    }
    return rc;
}

void cr_wire_msg_init(cr_wire_msg *m)
{
    m->nroute = 0;
    m->has_body = 0;
}

void cr_wire_msg_close(cr_wire_msg *m)
{
    for (int i = 0; i < m->nroute; i++)
        zmq_msg_close(&m->route[i]);
    if (m->has_body)
        zmq_msg_close(&m->body);
    m->nroute = 0;
    m->has_body = 0;
}

const uint8_t *cr_wire_msg_body(const cr_wire_msg *m, size_t *len)
{
    if (!m->has_body) {
        *len = 0;
        return NULL;
    }
    *len = zmq_msg_size((zmq_msg_t *)&m->body);
    return zmq_msg_data((zmq_msg_t *)&m->body);
}

void cr_wire_msg_take_route(cr_wire_msg *dst, cr_wire_msg *src)
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

static void drain_parts(void *sock)
{
    int more = 1;
    size_t len = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len) == 0 && more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            return;
        }
        zmq_msg_close(&part);
        len = sizeof more;
    }
}

/* Frames are: route..., [empty delimiter], body. The body is the last frame. */
cr_err cr_wire_recv(void *sock, cr_wire_msg *m, const cr_wire_limits *lim, int flags)
{
    zmq_msg_t part;

    cr_wire_msg_close(m);
    for (;;) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, flags) < 0) {
            int e = errno;
            zmq_msg_close(&part);
            if (e == EAGAIN)
                return CR_TIMEOUT;
            if (e == EINTR)
                return cr_error_set(CR_TIMEOUT, "interrupted");
            return cr_error_set(CR_ERR_NET, "zmq_msg_recv: %s", zmq_strerror(e));
        }
        flags &= ~ZMQ_DONTWAIT; /* the rest of a multipart message is already here */
        if (!zmq_msg_more(&part))
            break;
        if (m->nroute == CR_WIRE_MAX_ROUTE) {
            zmq_msg_close(&part);
            drain_parts(sock);
            return cr_error_set(CR_ERR_PROTO, "message has more than %d routing frames",
                                CR_WIRE_MAX_ROUTE);
        }
        m->route[m->nroute++] = part;
    }
    m->body = part;
    m->has_body = 1;
    if (zmq_msg_size(&m->body) > lim->max_frame)
        return cr_error_set(CR_ERR_PROTO, "frame of %zu bytes exceeds the %zu-byte limit",
                            zmq_msg_size(&m->body), lim->max_frame);
    return CR_OK;
}

static cr_err send_failed(int e)
{
    return e == EAGAIN ? CR_TIMEOUT : cr_error_set(CR_ERR_NET, "send: %s", zmq_strerror(e));
}

cr_err cr_wire_send_route(void *sock, const cr_wire_msg *route, int flags)
{
    for (int i = 0; route && i < route->nroute; i++) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, (zmq_msg_t *)&route->route[i]);
        if (zmq_msg_send(&copy, sock, ZMQ_SNDMORE | flags) < 0) {
            int e = errno;
            zmq_msg_close(&copy);
            return send_failed(e);
        }
    }
    return CR_OK;
}

cr_err cr_wire_send(void *sock, const cr_wire_msg *route, const ProtobufCMessage *msg, int flags)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    zmq_msg_t body;
    cr_err rc = cr_wire_send_route(sock, route, flags);

    if (rc)
        return rc;
    if (zmq_msg_init_size(&body, len) != 0)
        return cr_error_set(CR_ERR_NOMEM, "cannot allocate a %zu-byte frame", len);
    protobuf_c_message_pack(msg, zmq_msg_data(&body));
    if (zmq_msg_send(&body, sock, flags) < 0) {
        int e = errno;
        zmq_msg_close(&body);
        return send_failed(e);
    }
    return CR_OK;
}

/* Each block carries its size in front so frees can be accounted. */
typedef struct {
    size_t size;
    _Alignas(16) unsigned char data[];
} bounded_hdr;

static void *bounded_alloc(void *data, size_t size)
{
    cr_pb_bounded *b = data;
    bounded_hdr *h;
    if (size > b->limit || b->used > b->limit - size)
        return NULL;
    h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    b->used += size;
    return h->data;
}

static void bounded_free(void *data, void *ptr)
{
    cr_pb_bounded *b = data;
    bounded_hdr *h;
    if (!ptr)
        return;
    h = (bounded_hdr *)((unsigned char *)ptr - offsetof(bounded_hdr, data));
    b->used -= h->size;
    free(h);
}

void cr_pb_bounded_init(cr_pb_bounded *b, size_t limit)
{
    b->base.alloc = bounded_alloc;
    b->base.free = bounded_free;
    b->base.allocator_data = b;
    b->used = 0;
    b->limit = limit;
}

cr_err cr_wire_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                      cr_pb_bounded *alloc, ProtobufCMessage **out)
{
    ProtobufCMessage *msg;
    cr_err rc = cr_pb_check(desc, data, len);
    if (rc)
        return rc;
    msg = protobuf_c_message_unpack(desc, &alloc->base, len, data);
    if (!msg)
        return cr_error_set(CR_ERR_PROTO, "malformed %s message (%zu bytes)", desc->short_name,
                            len);
    *out = msg;
    return CR_OK;
}

cr_err cr_wire_unpack_request(const cr_wire_msg *m, cr_pb_bounded *alloc,
                              Cirrus__V1__Request **out)
{
    ProtobufCMessage *msg = NULL;
    cr_err rc;
    if (!m->has_body)
        return cr_error_set(CR_ERR_PROTO, "message without a body frame");
    rc = cr_wire_unpack(&cirrus__v1__request__descriptor,
                        zmq_msg_data((zmq_msg_t *)&m->body), zmq_msg_size((zmq_msg_t *)&m->body),
                        alloc, &msg);
    if (rc)
        return rc;
    *out = (Cirrus__V1__Request *)msg;
    return CR_OK;
}

void cr_wire_status_set(Cirrus__V1__Status *st, cr_err code, const char *message)
{
    cirrus__v1__status__init(st);
    st->code = code;
    st->message = (char *)(message ? message : "");
}

cr_err cr_wire_reply_ok(void *sock, const cr_wire_msg *route, uint64_t id,
                        Cirrus__V1__Response *resp)
{
    Cirrus__V1__Status st;
    cr_wire_status_set(&st, CR_OK, "");
    resp->id = id;
    resp->status = &st;
    return cr_wire_send(sock, route, &resp->base, 0);
}

void cr_wire_error_init(cr_wire_error *e, uint64_t id, cr_err code, const char *message)
{
    Cirrus__V1__Response init = CIRRUS__V1__RESPONSE__INIT;

    /* Copy first: `message` is often cr_error_message(), which a failing send overwrites. */
    snprintf(e->msg, sizeof e->msg, "%s", message && message[0] ? message : cr_strerror(code));
    cr_wire_status_set(&e->st, code, e->msg);
    e->resp = init;
    e->resp.id = id;
    e->resp.status = &e->st;
}

cr_err cr_wire_reply_error(void *sock, const cr_wire_msg *route, uint64_t id, cr_err code,
                           const char *message)
{
    cr_wire_error e;

    cr_wire_error_init(&e, id, code, message);
    return cr_wire_send(sock, route, &e.resp.base, 0);
}

/* A Request's id without unpacking it: protobuf-c writes fields in number order, so a set id
 * (field 1, varint) comes first. 0 when absent or malformed. */
static uint64_t peek_request_id(const zmq_msg_t *body)
{
    const uint8_t *p = zmq_msg_data((zmq_msg_t *)body);
    size_t n = zmq_msg_size((zmq_msg_t *)body);
    uint64_t id = 0;
    if (n < 2 || p[0] != 0x08)
        return 0;
    for (size_t i = 1, shift = 0; i < n && i < 11; i++, shift += 7) {
        id |= (uint64_t)(p[i] & 0x7f) << shift;
        if (!(p[i] & 0x80))
            return id;
    }
    return 0;
}

cr_err cr_wire_front_recv(void *front, cr_wire_msg *m, const cr_wire_limits *lim)
{
    cr_err rc = cr_wire_recv(front, m, lim, ZMQ_DONTWAIT);
    if (rc == CR_ERR_PROTO && m->nroute > 0) {
        cr_wire_reply_error(front, m, m->has_body ? peek_request_id(&m->body) : 0, rc,
                            cr_error_message());
    } else if (rc == CR_OK && m->nroute == CR_WIRE_MAX_ROUTE) {
        rc = CR_ERR_PROTO;
        cr_wire_reply_error(front, m, 0, rc, "too many routing frames");
    }
    return rc;
}

int cr_wire_poll_spin(zmq_pollitem_t *items, int n, long timeout_ms, cr_wire_spin *spin)
{
    int rc;
    if (spin->spin_us) {
        uint64_t now = cr_clock_mono_us();
        while (now < spin->hot_until_us) {
            rc = zmq_poll(items, n, 0);
            if (rc != 0)
                goto done;
            sched_yield(); /* hand the core to any thread that has real work */
            now = cr_clock_mono_us();
        }
    }
    rc = zmq_poll(items, n, timeout_ms);
done:
    if (rc > 0 && spin->spin_us)
        spin->hot_until_us = cr_clock_mono_us() + spin->spin_us;
    return rc;
}

void cr_wire_inproc_name(char *buf, size_t len, const char *what)
{
    /* The one piece of process-wide state here: a counter, only ever incremented. */
    static _Atomic uint64_t next;
    snprintf(buf, len, "inproc://%s-%llu", what, (unsigned long long)atomic_fetch_add(&next, 1));
}

cr_err cr_wire_ctx_new(void **out)
{
    void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, ZMQ_PAIR) : NULL;
    if (!s) {
        cr_err rc = cr_error_set(CR_ERR_NET, "cannot start ZeroMQ: %s", zmq_strerror(errno));
        if (ctx)
            zmq_ctx_term(ctx);
        return rc;
    }
    zmq_close(s);
    *out = ctx;
    return CR_OK;
}

void cr_wire_ctx_term(void **ctx)
{
    if (ctx && *ctx) {
        zmq_ctx_term(*ctx);
        *ctx = NULL;
    }
}
