/* common/sock over real ZeroMQ sockets (inproc): open, bind and connect with their errors,
 * a frame gathered from pieces and routed back along a moved route, a one-frame reply
 * received and unpacked (and a malformed one refused), non-blocking reads, poll sets (indexes,
 * capacity, timeouts, unwatched entries, events changed in place, iteration over the ready
 * ones), closing NULL-safe. */
#include <string.h>

#include "common/clock.h"
#include "common/sock.h"
#include "common/test.h"
#include "common/wire.h"

static void *ctx;

static cr_wire_limits inproc_limits(void)
{
    cr_wire_limits lim = cr_wire_default_limits();
    lim.heartbeat_ivl_ms = 0;
    return lim;
}

static void test_open_errors(void)
{
    cr_wire_limits lim = inproc_limits();
    void *s = NULL, *t = NULL;
    char ep[64];
    cr_wire_inproc_name(ep, sizeof ep, "sock-test");
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_ROUTER, &lim, &s) == CR_OK && s);
    CR_CHECK(cr_sock_bind(s, ep) == CR_OK);
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_ROUTER, NULL, &t) == CR_OK && t);
    CR_CHECK(cr_sock_bind(t, ep) == CR_ERR_NET); /* taken */
    CR_CHECK(strstr(cr_error_message(), "cannot bind") && strstr(cr_error_message(), ep));
    CR_CHECK(cr_sock_connect(t, "nonsense://x") == CR_ERR_NET);
    CR_CHECK(strstr(cr_error_message(), "connect nonsense://x") != NULL);
    CR_CHECK(cr_sock_set_linger(t, 0) == CR_OK);
    lim.sndhwm = -5; /* ZeroMQ refuses it: the open fails and leaves nothing */
    {
        void *u = (void *)&lim;
        CR_CHECK(cr_sock_open(ctx, CR_SOCK_DEALER, &lim, &u) == CR_ERR_NET);
        CR_CHECK(u == (void *)&lim); /* *out untouched on failure */
    }
    cr_sock_close(&s);
    cr_sock_close(&t);
    CR_CHECK(s == NULL && t == NULL);
    cr_sock_close(&s); /* NULL-safe */
    cr_sock_close(NULL);
}

static void test_frames(void)
{
    cr_wire_limits lim = inproc_limits();
    void *srv = NULL, *cli = NULL;
    cr_wire_msg m, route;
    const uint8_t *body;
    size_t len;
    char ep[64];
    ProtobufCMessage *msg = NULL;
    cr_wire_inproc_name(ep, sizeof ep, "sock-frames");
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_ROUTER, &lim, &srv) == CR_OK);
    CR_CHECK(cr_sock_bind(srv, ep) == CR_OK);
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_DEALER, &lim, &cli) == CR_OK);
    CR_CHECK(cr_sock_connect(cli, ep) == CR_OK);

    /* Nothing queued: a non-blocking read says so, and a wait times out. */
    CR_CHECK(cr_sock_recv_unpack(cli, &cirrus__v1__response__descriptor, NULL,
                                 CR_SOCK_DONTWAIT, &msg) == CR_TIMEOUT && msg == NULL);
    {
        uint64_t t0 = cr_clock_mono_ms();
        CR_CHECK(cr_sock_wait_readable(cli, 50) == 0);
        CR_CHECK(cr_clock_mono_ms() - t0 >= 40);
    }

    /* Three pieces arrive as one frame, behind the caller's routing identity. */
    CR_CHECK(cr_sock_send(cli, NULL,
                          (cr_sock_buf[]){{"abc", 3}, {"", 0}, {"defgh", 5}}, 3, 0) == CR_OK);
    CR_CHECK(cr_sock_wait_readable(srv, 2000) == 1);
    cr_wire_msg_init(&m);
    CR_CHECK(cr_wire_recv(srv, &m, &lim, CR_SOCK_DONTWAIT) == CR_OK);
    CR_CHECK(m.nroute == 1);
    body = cr_wire_msg_body(&m, &len);
    CR_CHECK(body && len == 8 && memcmp(body, "abcdefgh", 8) == 0);

    /* The route outlives its message; a reply along it reaches the caller. */
    cr_wire_msg_take_route(&route, &m);
    CR_CHECK(route.nroute == 1 && m.nroute == 0 && m.has_body);
    cr_wire_msg_close(&m);
    CR_CHECK(cr_wire_msg_body(&m, &len) == NULL && len == 0);
    {
        Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
        Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
        h.ready = 1;
        h.role = "sock-test";
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
        resp.health = &h;
        CR_CHECK(cr_wire_reply_ok(srv, &route, 77, &resp) == CR_OK);
    }
    CR_CHECK(cr_sock_wait_readable(cli, 2000) == 1);
    CR_CHECK(cr_sock_recv_unpack(cli, &cirrus__v1__response__descriptor, NULL,
                                 CR_SOCK_DONTWAIT, &msg) == CR_OK);
    if (msg) {
        Cirrus__V1__Response *r = (Cirrus__V1__Response *)msg;
        CR_CHECK(r->id == 77 && r->health && r->health->ready &&
                 strcmp(r->health->role, "sock-test") == 0);
        protobuf_c_message_free_unpacked(msg, NULL);
        msg = NULL;
    }

    /* A frame that is not a Response is read (consumed) and refused. */
    CR_CHECK(cr_sock_send(srv, &route, (cr_sock_buf[]){{"\xff\xff\xff", 3}}, 1, 0) == CR_OK);
    CR_CHECK(cr_sock_wait_readable(cli, 2000) == 1);
    CR_CHECK(cr_sock_recv_unpack(cli, &cirrus__v1__response__descriptor, NULL,
                                 CR_SOCK_DONTWAIT, &msg) == CR_ERR_PROTO && msg == NULL);
    CR_CHECK(strstr(cr_error_message(), "malformed") != NULL);
    CR_CHECK(cr_sock_wait_readable(cli, 0) == 0); /* it is gone */

    cr_wire_msg_close(&route);
    cr_sock_close(&cli);
    cr_sock_close(&srv);
}

static void test_poll(void)
{
    cr_wire_limits lim = inproc_limits();
    void *srv = NULL, *a = NULL, *b = NULL;
    cr_poll *p = NULL;
    cr_wire_spin spin = {.spin_us = 200};
    char ep[64];
    int ia, ib, is;
    cr_wire_inproc_name(ep, sizeof ep, "sock-poll");
    CR_CHECK(cr_poll_new(&p, 0) == CR_ERR_INVALID && p == NULL);
    CR_CHECK(cr_poll_new(&p, 3) == CR_OK && p);
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_ROUTER, &lim, &srv) == CR_OK);
    CR_CHECK(cr_sock_bind(srv, ep) == CR_OK);
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_DEALER, &lim, &a) == CR_OK);
    CR_CHECK(cr_sock_open(ctx, CR_SOCK_DEALER, &lim, &b) == CR_OK);
    CR_CHECK(cr_sock_connect(a, ep) == CR_OK && cr_sock_connect(b, ep) == CR_OK);

    ia = cr_poll_add(p, a, CR_POLL_IN);
    ib = cr_poll_add(p, b, CR_POLL_IN);
    is = cr_poll_add(p, srv, 0); /* in the set, not watched */
    CR_CHECK(ia == 0 && ib == 1 && is == 2);
    CR_CHECK(cr_poll_add(p, srv, CR_POLL_IN) == -1); /* full */
    {
        uint64_t t0 = cr_clock_mono_ms();
        CR_CHECK(cr_poll_wait(p, 30, NULL) == 0);
        CR_CHECK(cr_clock_mono_ms() - t0 >= 25);
    }
    /* b asks; the server, unwatched, is not reported; it answers b only. */
    CR_CHECK(cr_sock_send(b, NULL, (cr_sock_buf[]){{"x", 1}}, 1, 0) == CR_OK);
    CR_CHECK(cr_poll_wait(p, 50, NULL) == 0 && !cr_poll_readable(p, is));
    CR_CHECK(cr_sock_wait_readable(srv, 2000) == 1);
    {
        cr_wire_msg m;
        cr_wire_msg_init(&m);
        CR_CHECK(cr_wire_recv(srv, &m, &lim, CR_SOCK_DONTWAIT) == CR_OK);
        CR_CHECK(cr_sock_send(srv, &m, (cr_sock_buf[]){{"y", 1}}, 1, 0) == CR_OK);
        cr_wire_msg_close(&m);
    }
    CR_CHECK(cr_poll_wait(p, 2000, &spin) == 1);
    CR_CHECK(!cr_poll_readable(p, ia) && cr_poll_readable(p, ib));
    CR_CHECK(!cr_poll_readable(p, 7) && !cr_poll_readable(p, -1)); /* out of the set */
    CR_CHECK(cr_poll_next(p, 0) == ib && cr_poll_next(p, ib + 1) == -1);
    CR_CHECK(spin.hot_until_us > 0); /* traffic renews the spin window */
    /* Watching the server now: b's "x" was read, so only b (still unread) is ready; a new
     * request from a makes the server ready too. */
    cr_poll_set_events(p, is, CR_POLL_IN);
    CR_CHECK(cr_sock_send(a, NULL, (cr_sock_buf[]){{"z", 1}}, 1, 0) == CR_OK);
    CR_CHECK(cr_sock_wait_readable(srv, 2000) == 1);
    CR_CHECK(cr_poll_wait(p, 0, NULL) == 2);
    CR_CHECK(cr_poll_next(p, 0) == ib && cr_poll_next(p, ib + 1) == is);
    CR_CHECK(cr_poll_next(p, is + 1) == -1);
    cr_poll_clear(p);
    CR_CHECK(cr_poll_add(p, a, CR_POLL_IN) == 0);

    cr_poll_free(&p);
    CR_CHECK(p == NULL);
    cr_poll_free(&p);
    cr_sock_close(&a);
    cr_sock_close(&b);
    cr_sock_close(&srv);
}

int main(void)
{
    CR_TEST_BEGIN();
    CR_CHECK(cr_wire_ctx_new(&ctx) == CR_OK);
    test_open_errors();
    test_frames();
    test_poll();
    cr_wire_ctx_term(&ctx);
    CR_CHECK(ctx == NULL);
    return CR_TEST_END();
}
