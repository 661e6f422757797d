/* api.c — the cirrus handle: options, open/close, errors on the handle, health, and the raw
 * escape hatch (cirrus_call/send/recv), all on top of the transport in client.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/api_impl.h"
#include "common/curve.h"

/* The public codes are the wire's and cr_err's. */
_Static_assert((int)CIRRUS_OK == (int)CR_OK, "codes");
_Static_assert((int)CIRRUS_NOTFOUND == (int)CR_NOTFOUND, "codes");
_Static_assert((int)CIRRUS_TIMEOUT == (int)CR_TIMEOUT, "codes");
_Static_assert((int)CIRRUS_STALE == (int)CR_STALE, "codes");
_Static_assert((int)CIRRUS_ERR_NOMEM == (int)CR_ERR_NOMEM, "codes");
_Static_assert((int)CIRRUS_ERR_INVALID == (int)CR_ERR_INVALID, "codes");
_Static_assert((int)CIRRUS_ERR_PROTO == (int)CR_ERR_PROTO, "codes");
_Static_assert((int)CIRRUS_ERR_NET == (int)CR_ERR_NET, "codes");
_Static_assert((int)CIRRUS_ERR_STORE == (int)CR_ERR_STORE, "codes");
_Static_assert((int)CIRRUS_ERR_INDEX == (int)CR_ERR_INDEX, "codes");
_Static_assert((int)CIRRUS_ERR_MODEL == (int)CR_ERR_MODEL, "codes");
_Static_assert((int)CIRRUS_ERR_IO == (int)CR_ERR_IO, "codes");
_Static_assert((int)CIRRUS_ERR_OVERLOADED == (int)CR_ERR_OVERLOADED, "codes");
_Static_assert((int)CIRRUS_ERR_DEADLINE == (int)CR_ERR_DEADLINE, "codes");
_Static_assert((int)CIRRUS_ERR_UNSUPPORTED == (int)CR_ERR_UNSUPPORTED, "codes");
_Static_assert((int)CIRRUS_ERR_INTERNAL == (int)CR_ERR_INTERNAL, "codes");
_Static_assert((int)CIRRUS_ERR_UNAVAILABLE == (int)CR_ERR_UNAVAILABLE, "codes");

#define DEFAULT_TIMEOUT_MS 5000u

const char *cirrus_strerror(cirrus_err code)
{
    return cr_strerror((cr_err)code);
}

cirrus_err api_fail(cirrus *c, cr_err code)
{
    const char *m = cr_error_message();
    c->code = (cirrus_err)code;
    snprintf(c->errmsg, sizeof c->errmsg, "%s", m[0] ? m : cr_strerror(code));
    return c->code;
}

cirrus_err api_failf(cirrus *c, cr_err code, const char *fmt, ...)
{
    va_list ap;
    c->code = (cirrus_err)code;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return c->code;
}

cirrus_err api_ok(cirrus *c, cirrus_err code)
{
    c->code = code;
    c->errmsg[0] = '\0';
    return code;
}

/* The reply's outcome: CR_OK when its status is ok and it carries the result `req` asks for
 * (Response.result mirrors Request.op); else the status code (a failure, or an expected
 * outcome such as CR_NOTFOUND, which comes without a result) or CR_ERR_PROTO, with the
 * message in the calling thread's cr_error_message(). */
static cr_err reply_check(const Cirrus__V1__Request *req, const Cirrus__V1__Response *resp)
{
    return cirrus_response_expect(resp, (Cirrus__V1__Response__ResultCase)req->op_case);
}

cirrus_err api_call(cirrus *c, Cirrus__V1__Request *req, uint32_t timeout_ms,
                    Cirrus__V1__Response **resp)
{
    uint32_t t = timeout_ms ? timeout_ms : c->timeout_ms;
    Cirrus__V1__Response *r = NULL;
    cr_err rc;

    *resp = NULL;
    req->deadline_ms = t;
    rc = cirrus_client_call(c->cl, req, t, &r);
    if (rc)
        return api_fail(c, rc);
    rc = reply_check(req, r);
    if (rc) {
        cirrus_response_free(r);
        return api_fail(c, rc);
    }
    *resp = r;
    return api_ok(c, CIRRUS_OK);
}

cirrus_options cirrus_default_options(void)
{
    cirrus_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = DEFAULT_TIMEOUT_MS;
    o.heartbeats = 1;
    return o;
}

/* The options' CURVE files into co (NULL there: the environment's, see client.h). */
static cr_err api_curve(const cirrus_options *o, cr_curve *k, char *server,
                        cirrus_client_opts *co)
{
    cr_err rc;
    if (!o->curve_secret_file && !o->curve_server_pub)
        return CR_OK;
    if (!o->curve_secret_file || !o->curve_server_pub)
        return cr_error_set(CR_ERR_INVALID, "cirrus_open: curve_secret_file and "
                                            "curve_server_pub go together");
    rc = cr_curve_load(k, o->curve_secret_file, NULL);
    if (!rc)
        rc = cr_curve_public_arg(o->curve_server_pub, server);
    if (!rc) {
        co->curve = k;
        co->curve_server_pub = server;
    }
    return rc;
}

cirrus_err cirrus_open(cirrus **out, const char *endpoint, const cirrus_options *opts)
{
    cirrus_options o = opts ? *opts : cirrus_default_options();
    cirrus_client_opts co = cirrus_client_default_opts();
    cirrus *c = NULL;
    cr_curve curve;
    char server[CR_CURVE_KEY_LEN + 1];
    cr_err rc;

    if (!out || !endpoint || !endpoint[0])
        return (cirrus_err)cr_error_set(CR_ERR_INVALID, "cirrus_open: %s is NULL",
                                        !out ? "out" : "endpoint");
    c = calloc(1, sizeof *c);
    if (!c)
        return (cirrus_err)cr_error_set(CR_ERR_NOMEM, "out of memory");
    co.zmq_ctx = o.zmq_ctx;
    co.max_frame = o.max_reply_bytes;
    co.max_alloc = o.max_reply_alloc;
    co.heartbeats = o.heartbeats;
    co.spin_us = o.spin_us;
    rc = api_curve(&o, &curve, server, &co);
    if (!rc)
        rc = cirrus_client_open(&c->cl, endpoint, &co);
    memset(&curve, 0, sizeof curve);
    if (rc) {
        free(c);
        return (cirrus_err)rc;
    }
    c->timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
    cr_error_clear();
    *out = c;
    return CIRRUS_OK;
}

void cirrus_close(cirrus **pc)
{
    cirrus *c = pc ? *pc : NULL;
    if (!c)
        return;
    cirrus_client_close(&c->cl);
    free(c);
    *pc = NULL;
}

const char *cirrus_errmsg(const cirrus *c)
{
    return c ? c->errmsg : cr_error_message();
}

cirrus_err cirrus_errcode(const cirrus *c)
{
    return c ? c->code : CIRRUS_ERR_INVALID;
}

cirrus_err cirrus_health(cirrus *c, int *ready)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cirrus_err rc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;
    rc = api_call(c, &req, 0, &resp);
    if (rc)
        return rc;
    if (ready)
        *ready = resp->health->ready;
    cirrus_response_free(resp);
    return CIRRUS_OK;
}

cirrus_err cirrus_call(cirrus *c, Cirrus__V1__Request *req, Cirrus__V1__Response **resp)
{
    Cirrus__V1__Response *r = NULL;
    uint32_t t;
    cr_err rc;

    if (resp)
        *resp = NULL;
    if (!c || !req || !resp)
        return c ? api_failf(c, CR_ERR_INVALID, "cirrus_call: NULL argument")
                 : CIRRUS_ERR_INVALID;
    t = req->deadline_ms ? req->deadline_ms : c->timeout_ms;
    rc = cirrus_client_call(c->cl, req, t, &r);
    if (rc)
        return api_fail(c, rc);
    *resp = r;
    rc = reply_check(req, r);
    return rc ? api_fail(c, rc) : api_ok(c, CIRRUS_OK);
}

cirrus_err cirrus_send(cirrus *c, Cirrus__V1__Request *req, uint64_t *id)
{
    cr_err rc;
    if (!c || !req)
        return c ? api_failf(c, CR_ERR_INVALID, "cirrus_send: NULL argument")
                 : CIRRUS_ERR_INVALID;
    if (!req->deadline_ms)
        req->deadline_ms = c->timeout_ms;
    rc = cirrus_client_send(c->cl, req, id);
    return rc ? api_fail(c, rc) : api_ok(c, CIRRUS_OK);
}

cirrus_err cirrus_recv(cirrus *c, uint32_t timeout_ms, Cirrus__V1__Response **resp)
{
    cr_err rc;
    if (resp)
        *resp = NULL;
    if (!c || !resp)
        return c ? api_failf(c, CR_ERR_INVALID, "cirrus_recv: NULL argument")
                 : CIRRUS_ERR_INVALID;
    rc = cirrus_client_recv(c->cl, timeout_ms, resp);
    if (rc) {
        *resp = NULL;
        return api_fail(c, rc);
    }
    return api_ok(c, CIRRUS_OK);
}
