#include "client/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/curve.h"
#include "common/pb_check.h"
#include "common/wire.h"

/* A reply kept for cirrus_client_recv: it answers a pipelined request and arrived while
 * cirrus_client_call waited for its own. */
typedef struct stashed {
    Cirrus__V1__Response *resp;
    size_t bytes; /* what unpacking it allocated */
} stashed;

struct cirrus_client {
    void *ctx;
    int own_ctx;
    void *sock;
    uint64_t next_id; /* even; a request's id is next_id | ID_PIPELINED or next_id | 0 */
    cr_wire_limits lim;
    unsigned spin_us;
    stashed stash[CIRRUS_CLIENT_STASH_MAX]; /* FIFO ring */
    size_t stash_head, stash_n, stash_bytes;
};

/* The low bit of a request id tells a call (0) from a pipelined send (1), so a call can keep
 * replies to pipelined requests and drop late replies to its own abandoned predecessors
 * without recording ids. */
#define ID_PIPELINED 1u

cirrus_client_opts cirrus_client_default_opts(void)
{
    cirrus_client_opts o = {.zmq_ctx = NULL, .max_frame = 0, .heartbeats = 1, .spin_us = 0,
                            .max_alloc = 0};
    return o;
}

/* ---- bounded unpacking -------------------------------------------------------------------- */

/* Counts what unpacking one reply allocates and refuses past the limit. Blocks come from
 * malloc, so the message is freed with the default allocator (cirrus_response_free). */
typedef struct reply_alloc {
    ProtobufCAllocator base;
    size_t used, limit;
} reply_alloc;

static void *reply_alloc_fn(void *data, size_t size)
{
    reply_alloc *a = data;
    void *p;
    if (size > a->limit - a->used)
        return NULL;
    p = malloc(size ? size : 1);
    if (p)
        a->used += size;
    return p;
}

static void reply_free_fn(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static cr_err unpack_reply(const cirrus_client *c, const zmq_msg_t *body,
                           Cirrus__V1__Response **out, size_t *bytes)
{
    reply_alloc a = {{reply_alloc_fn, reply_free_fn, NULL}, 0, c->lim.max_alloc};
    Cirrus__V1__Response *r;
    a.base.allocator_data = &a;
    if (cr_pb_check(&cirrus__v1__response__descriptor, zmq_msg_data((zmq_msg_t *)body),
                    zmq_msg_size((zmq_msg_t *)body)))
        return CR_ERR_PROTO;
    r = cirrus__v1__response__unpack(&a.base, zmq_msg_size((zmq_msg_t *)body),
                                     zmq_msg_data((zmq_msg_t *)body));
    if (!r)
        return cr_error_set(CR_ERR_PROTO, "malformed reply, or one that would take more than "
                                          "%zu bytes to unpack", c->lim.max_alloc);
    *out = r;
    *bytes = a.used;
    return CR_OK;
}

/* ---- the stash ----------------------------------------------------------------------------- */

/* Keeps r for cirrus_client_recv, or drops it when the stash is full (count or bytes). */
static void stash_put(cirrus_client *c, Cirrus__V1__Response *r, size_t bytes)
{
    if (c->stash_n == CIRRUS_CLIENT_STASH_MAX || bytes > c->lim.max_alloc - c->stash_bytes) {
        cirrus_response_free(r);
        return;
    }
    c->stash[(c->stash_head + c->stash_n) % CIRRUS_CLIENT_STASH_MAX] = (stashed){r, bytes};
    c->stash_n++;
    c->stash_bytes += bytes;
}

static Cirrus__V1__Response *stash_take(cirrus_client *c)
{
    stashed s;
    if (!c->stash_n)
        return NULL;
    s = c->stash[c->stash_head];
    c->stash_head = (c->stash_head + 1) % CIRRUS_CLIENT_STASH_MAX;
    c->stash_n--;
    c->stash_bytes -= s.bytes;
    return s.resp;
}

/* ---- the handle ---------------------------------------------------------------------------- */

/* CURVE from the options or, when they name none, the environment (so that every in-tree
 * tool gets it without a flag of its own). A key given but unusable fails the open: falling
 * back to plaintext would hide the mistake until the server refused the connection. */
static cr_err client_curve(void *sock, const cirrus_client_opts *o)
{
    const char *sec = getenv("CIRRUS_CURVE_SECRET"), *pub = getenv("CIRRUS_CURVE_SERVER_PUB");
    char server[CR_CURVE_KEY_LEN + 1];
    cr_curve k;
    cr_err rc;
    if (o->curve || o->curve_server_pub) {
        if (!o->curve || !o->curve_server_pub)
            return cr_error_set(CR_ERR_INVALID, "CURVE needs both a key and the server's "
                                                "public key");
        return cr_curve_setup_client(sock, o->curve, o->curve_server_pub);
    }
    if ((!sec || !sec[0]) && (!pub || !pub[0]))
        return CR_OK;
    if (!sec || !sec[0] || !pub || !pub[0])
        return cr_error_set(CR_ERR_INVALID, "CIRRUS_CURVE_SECRET and CIRRUS_CURVE_SERVER_PUB "
                                            "go together");
    rc = cr_curve_load(&k, sec, NULL);
    if (!rc)
        rc = cr_curve_public_arg(pub, server);
    if (!rc)
        rc = cr_curve_setup_client(sock, &k, server);
    memset(&k, 0, sizeof k);
    return rc;
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
    c->lim.max_alloc = o.max_alloc ? o.max_alloc : 4 * c->lim.max_frame;
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
    if (!rc && cr_endpoint_is_tcp(endpoint))
        rc = client_curve(c->sock, &o);
    if (rc)
        goto out;
    if (zmq_connect(c->sock, endpoint) != 0) {
        rc = cr_error_set(CR_ERR_NET, "cannot connect to '%s': %s", endpoint,
                          zmq_strerror(errno));
        goto out;
    }
    /* Ids start from a random-ish point so that replies to an earlier client process that
     * reused the same identity can never match. */
    c->next_id = (uint64_t)cr_clock_mono_ns() << 16;
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
    while (c->stash_n)
        cirrus_response_free(stash_take(c));
    if (c->sock)
        zmq_close(c->sock);
    if (c->own_ctx && c->ctx)
        zmq_ctx_term(c->ctx);
    free(c);
    *pp = NULL;
}

static cr_err send_tagged(cirrus_client *c, Cirrus__V1__Request *req, unsigned tag, uint64_t *id)
{
    cr_err rc;
    req->id = c->next_id | tag;
    c->next_id += 2;
    rc = cr_wire_send(c->sock, NULL, &req->base, 0);
    if (rc == CR_TIMEOUT)
        return cr_error_set(CR_ERR_OVERLOADED, "send queue full");
    if (!rc && id)
        *id = req->id;
    return rc;
}

cr_err cirrus_client_send(cirrus_client *c, Cirrus__V1__Request *req, uint64_t *id)
{
    return send_tagged(c, req, ID_PIPELINED, id);
}

/* Waits up to timeout_ms for the next reply on the socket; *bytes is what unpacking it took. */
static cr_err recv_socket(cirrus_client *c, uint32_t timeout_ms, Cirrus__V1__Response **resp,
                          size_t *bytes)
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
        rc = unpack_reply(c, &m.body, resp, bytes);
        break;
    }
    if (rc == CR_TIMEOUT)
        cr_error_set(CR_TIMEOUT, "no reply within %u ms", timeout_ms);
    cr_wire_msg_close(&m);
    return rc;
}

cr_err cirrus_client_recv(cirrus_client *c, uint32_t timeout_ms, Cirrus__V1__Response **resp)
{
    size_t bytes;
    Cirrus__V1__Response *r = stash_take(c);
    if (r) {
        *resp = r;
        return CR_OK;
    }
    return recv_socket(c, timeout_ms, resp, &bytes);
}

cr_err cirrus_client_call(cirrus_client *c, Cirrus__V1__Request *req, uint32_t timeout_ms,
                          Cirrus__V1__Response **resp)
{
    uint64_t id = 0, deadline;
    cr_err rc;

    if (req->deadline_ms == 0)
        req->deadline_ms = timeout_ms;
    rc = send_tagged(c, req, 0, &id);
    if (rc)
        return rc;
    deadline = cr_clock_mono_ms() + timeout_ms;
    for (;;) {
        uint64_t now = cr_clock_mono_ms();
        Cirrus__V1__Response *r = NULL;
        size_t bytes = 0;
        rc = recv_socket(c, now < deadline ? (uint32_t)(deadline - now) : 0, &r, &bytes);
        if (rc)
            return rc;
        if (r->id == id) {
            *resp = r;
            return CR_OK;
        }
        if (r->id & ID_PIPELINED)
            stash_put(c, r, bytes); /* the pipelining caller's: cirrus_client_recv returns it */
        else
            cirrus_response_free(r); /* a late reply to an earlier, abandoned call */
    }
}

cr_err cirrus_response_error(const Cirrus__V1__Response *resp)
{
    if (!resp->status)
        return cr_error_set(CR_ERR_PROTO, "reply without a status");
    if (resp->status->code == CR_OK)
        return CR_OK;
    return cr_error_set((cr_err)resp->status->code, "%s",
                        resp->status->message && resp->status->message[0]
                            ? resp->status->message
                            : cr_strerror((cr_err)resp->status->code));
}

cr_err cirrus_response_expect(const Cirrus__V1__Response *resp,
                              Cirrus__V1__Response__ResultCase want)
{
    cr_err rc = cirrus_response_error(resp);
    if (rc)
        return rc;
    if (resp->result_case != want)
        return cr_error_set(CR_ERR_PROTO, "reply without its result (result %d, expected %d)",
                            (int)resp->result_case, (int)want);
    return CR_OK;
}

void cirrus_response_free(Cirrus__V1__Response *resp)
{
    if (resp)
        cirrus__v1__response__free_unpacked(resp, NULL);
}
