#include "client/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/wire.h"

struct cirrus_client {
    void *ctx;
    int own_ctx;
    void *sock;
    uint64_t next_id;
    cr_wire_limits lim;
    unsigned spin_us;
};

cirrus_client_opts cirrus_client_default_opts(void)
{
    cirrus_client_opts o = {NULL, 0, 1, 0};
    return o;
}

cr_err cirrus_client_open(cirrus_client **out, const char *endpoint,
                          const cirrus_client_opts *opts)
{
    cirrus_client_opts o = opts ? *opts : cirrus_client_default_opts();
    cirrus_client *c = calloc(1, sizeof *c);
    cr_err rc = CR_OK;

    if (!c)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    c->lim = cr_wire_default_limits();
    if (o.max_frame)
        c->lim.max_frame = o.max_frame;
    if (!o.heartbeats || strncmp(endpoint, "inproc://", 9) == 0)
        c->lim.heartbeat_ivl_ms = 0;
    c->spin_us = o.spin_us;
    c->ctx = o.zmq_ctx;
    if (!c->ctx) {
        c->ctx = zmq_ctx_new();
        c->own_ctx = 1;
    }
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    if (!c->sock) {
        rc = cr_error_set(CR_ERR_NET, "cannot create a socket: %s", zmq_strerror(errno));
        goto out;
    }
    rc = cr_wire_socket_setup(c->sock, &c->lim);
    if (rc)
        goto out;
    if (zmq_connect(c->sock, endpoint) != 0) {
        rc = cr_error_set(CR_ERR_NET, "cannot connect to '%s': %s", endpoint,
                          zmq_strerror(errno));
        goto out;
    }
    /* Ids start from a random-ish point so that replies to an earlier client process that
     * reused the same identity can never match. */
    c->next_id = ((uint64_t)cr_clock_mono_ns() << 16) | 1u;
    *out = c;
    c = NULL;
out:
    if (c)
        cirrus_client_close(&c);
    return rc;
}

void cirrus_client_close(cirrus_client **pp)
{
    cirrus_client *c = pp ? *pp : NULL;
    if (!c)
        return;
    if (c->sock)
        zmq_close(c->sock);
    if (c->own_ctx && c->ctx)
        zmq_ctx_term(c->ctx);
    free(c);
    *pp = NULL;
}

cr_err cirrus_client_send(cirrus_client *c, Cirrus__V1__Request *req, uint64_t *id)
{
    cr_err rc;
    req->id = c->next_id++;
    rc = cr_wire_send(c->sock, NULL, &req->base, 0);
    if (rc == CR_TIMEOUT)
        return cr_error_set(CR_ERR_OVERLOADED, "send queue full");
    if (!rc && id)
        *id = req->id;
    return rc;
}

cr_err cirrus_client_recv(cirrus_client *c, uint32_t timeout_ms, Cirrus__V1__Response **resp)
{
    uint64_t deadline = cr_clock_mono_ms() + timeout_ms;
    cr_wire_msg m;
    cr_err rc = CR_TIMEOUT;
    cr_wire_spin spin = {c->spin_us, cr_clock_mono_us() + c->spin_us};

    cr_wire_msg_init(&m);
    for (;;) {
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        uint64_t now = cr_clock_mono_ms();
        int n;
        if (now >= deadline)
            break;
        n = cr_wire_poll_spin(&item, 1, (long)(deadline - now), &spin);
        if (n < 0 && errno != EINTR) {
            rc = cr_error_set(CR_ERR_NET, "poll: %s", zmq_strerror(errno));
            break;
        }
        if (n <= 0)
            continue;
        rc = cr_wire_recv(c->sock, &m, &c->lim, ZMQ_DONTWAIT);
        if (rc == CR_TIMEOUT)
            continue;
        if (rc)
            break;
        /* Replies are unpacked with the default allocator: they come from a server we
         * chose, and the frame size is already capped. */
        *resp = cirrus__v1__response__unpack(NULL, zmq_msg_size(&m.body), zmq_msg_data(&m.body));
        rc = *resp ? CR_OK : cr_error_set(CR_ERR_PROTO, "malformed reply");
        break;
    }
    if (rc == CR_TIMEOUT)
        cr_error_set(CR_TIMEOUT, "no reply within %u ms", timeout_ms);
    cr_wire_msg_close(&m);
    return rc;
}

cr_err cirrus_client_call(cirrus_client *c, Cirrus__V1__Request *req, uint32_t timeout_ms,
                          Cirrus__V1__Response **resp)
{
    uint64_t id = 0, deadline;
    cr_err rc;

    if (req->deadline_ms == 0)
        req->deadline_ms = timeout_ms;
    rc = cirrus_client_send(c, req, &id);
    if (rc)
        return rc;
    deadline = cr_clock_mono_ms() + timeout_ms;
    for (;;) {
        uint64_t now = cr_clock_mono_ms();
        Cirrus__V1__Response *r = NULL;
        rc = cirrus_client_recv(c, now < deadline ? (uint32_t)(deadline - now) : 0, &r);
        if (rc)
            return rc;
        if (r->id == id) {
            *resp = r;
            return CR_OK;
        }
        cirrus_response_free(r); /* a late reply to an earlier, abandoned request */
    }
}

cr_err cirrus_response_error(const Cirrus__V1__Response *resp)
{
    if (!resp->status)
        return cr_error_set(CR_ERR_PROTO, "reply without a status");
    if (resp->status->code >= 0)
        return CR_OK;
    return cr_error_set((cr_err)resp->status->code, "%s",
                        resp->status->message && resp->status->message[0]
                            ? resp->status->message
                            : cr_strerror((cr_err)resp->status->code));
}

void cirrus_response_free(Cirrus__V1__Response *resp)
{
    if (resp)
        cirrus__v1__response__free_unpacked(resp, NULL);
}
