#include "common/sock.h"
#include "common/pb_check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

/* The flags are ZeroMQ's own values, so that they pass through to wire.h unchanged. */
_Static_assert(CR_SOCK_DONTWAIT == ZMQ_DONTWAIT, "CR_SOCK_DONTWAIT must be ZMQ_DONTWAIT");
_Static_assert(CR_POLL_IN == ZMQ_POLLIN, "CR_POLL_IN must be ZMQ_POLLIN");

struct cr_poll {
    int n, cap;
    zmq_pollitem_t items[];
};

/* ---- sockets ------------------------------------------------------------------------- */

cr_err cr_sock_open(void *ctx, cr_sock_type type, const cr_wire_limits *lim, void **out)
{
    void *sock = zmq_socket(ctx, type == CR_SOCK_ROUTER ? ZMQ_ROUTER : ZMQ_DEALER);
    if (!sock)
        return cr_error_set(CR_ERR_NET, "socket: %s", zmq_strerror(errno));
    if (lim && cr_wire_socket_setup(sock, lim)) {
        zmq_close(sock); /* the setup's message stays */
        return CR_ERR_NET;
    }
    *out = sock;
    return CR_OK;
}

cr_err cr_sock_bind(void *sock, const char *ep)
{
    if (zmq_bind(sock, ep) != 0)
        return cr_error_set(CR_ERR_NET, "cannot bind %s: %s", ep, zmq_strerror(errno));
    return CR_OK;
}

cr_err cr_sock_connect(void *sock, const char *ep)
{
    if (zmq_connect(sock, ep) != 0)
        return cr_error_set(CR_ERR_NET, "connect %s: %s", ep, zmq_strerror(errno));
    return CR_OK;
}

cr_err cr_sock_set_linger(void *sock, int ms)
{
    if (zmq_setsockopt(sock, ZMQ_LINGER, &ms, sizeof ms) != 0)
        return cr_error_set(CR_ERR_NET, "zmq_setsockopt LINGER: %s", zmq_strerror(errno));
    return CR_OK;
}

void cr_sock_close(void **pp)
{
    if (!pp || !*pp)
        return;
    zmq_close(*pp);
    *pp = NULL;
}

/* ---- single-frame messages ------------------------------------------------------------ */

static cr_err send_failed(int e)
{
    return e == EAGAIN ? CR_TIMEOUT : cr_error_set(CR_ERR_NET, "send: %s", zmq_strerror(e));
}

cr_err cr_sock_send(void *sock, const cr_wire_msg *route, const cr_sock_buf *parts, int n,
                    int flags)
{
    zmq_msg_t frame;
    size_t len = 0, at = 0;
    cr_err rc;

    for (int i = 0; i < n; i++)
        len += parts[i].len;
    rc = cr_wire_send_route(sock, route, flags);
    if (rc)
        return rc;
    if (zmq_msg_init_size(&frame, len) != 0)
        return cr_error_set(CR_ERR_NOMEM, "cannot allocate a %zu-byte frame", len);
    for (int i = 0; i < n; i++) {
        if (parts[i].len)
            memcpy((unsigned char *)zmq_msg_data(&frame) + at, parts[i].data, parts[i].len);
        at += parts[i].len;
    }
    if (zmq_msg_send(&frame, sock, flags) < 0) {
        int e = errno;
        zmq_msg_close(&frame);
        return send_failed(e);
    }
    return CR_OK;
}

cr_err cr_sock_recv_unpack(void *sock, const ProtobufCMessageDescriptor *desc,
                           ProtobufCAllocator *alloc, int flags, ProtobufCMessage **out)
{
    ProtobufCMessage *msg;
    zmq_msg_t frame;
    size_t len;

    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, sock, flags) < 0) {
        int e = errno;
        zmq_msg_close(&frame);
        if (e == EAGAIN) /* the common case of a non-blocking read: no message to format */
            return CR_TIMEOUT;
        if (e == EINTR)
            return cr_error_set(CR_TIMEOUT, "interrupted");
        return cr_error_set(CR_ERR_NET, "zmq_msg_recv: %s", zmq_strerror(e));
    }
    len = zmq_msg_size(&frame);
    if (cr_pb_check(desc, zmq_msg_data(&frame), len)) {
        zmq_msg_close(&frame);
        return CR_ERR_PROTO;
    }
    msg = protobuf_c_message_unpack(desc, alloc, len, zmq_msg_data(&frame));
    zmq_msg_close(&frame);
    if (!msg)
        return cr_error_set(CR_ERR_PROTO, "malformed %s message (%zu bytes)", desc->short_name,
                            len);
    *out = msg;
    return CR_OK;
}

/* ---- poll sets ---------------------------------------------------------------------------- */

cr_err cr_poll_new(cr_poll **out, int capacity)
{
    cr_poll *p;
    if (capacity < 1)
        return cr_error_set(CR_ERR_INVALID, "a poll set needs room for a socket");
    p = calloc(1, sizeof *p + (size_t)capacity * sizeof p->items[0]);
    if (!p)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    p->cap = capacity;
    *out = p;
    return CR_OK;
}

void cr_poll_free(cr_poll **pp)
{
    if (!pp)
        return;
    free(*pp);
    *pp = NULL;
}

void cr_poll_clear(cr_poll *p)
{
    p->n = 0;
}

int cr_poll_add(cr_poll *p, void *sock, int events)
{
    if (p->n == p->cap)
        return -1;
    p->items[p->n] = (zmq_pollitem_t){sock, 0, (short)events, 0};
    return p->n++;
}

int cr_poll_wait(cr_poll *p, long timeout_ms, cr_wire_spin *spin)
{
    return spin ? cr_wire_poll_spin(p->items, p->n, timeout_ms, spin)
                : zmq_poll(p->items, p->n, timeout_ms);
}

void cr_poll_set_events(cr_poll *p, int i, int events)
{
    if (i >= 0 && i < p->n)
        p->items[i].events = (short)events;
}

int cr_poll_readable(const cr_poll *p, int i)
{
    return i >= 0 && i < p->n && (p->items[i].revents & ZMQ_POLLIN);
}

int cr_poll_next(const cr_poll *p, int from)
{
    for (int i = from < 0 ? 0 : from; i < p->n; i++)
        if (p->items[i].revents & ZMQ_POLLIN)
            return i;
    return -1;
}

int cr_sock_wait_readable(void *sock, long timeout_ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, timeout_ms);
    return rc < 0 ? -1 : rc > 0 && (it.revents & ZMQ_POLLIN);
}
