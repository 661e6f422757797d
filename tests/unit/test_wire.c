/* The wire layer over real ZeroMQ sockets (inproc): framing, size caps, malformed and
 * truncated bodies, the bounded allocator, error replies, and the client's id matching. */
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "client/client.h"
#include "common/test.h"
#include "common/validate.h"
#include "common/clock.h"
#include "common/pb_check.h"
#include "common/wire.h"

static size_t pack_search(uint8_t **out, size_t nfloats)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query q = CIRRUS__V1__QUERY__INIT;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    size_t len;
    v.n_values = nfloats;
    v.values = calloc(nfloats ? nfloats : 1, sizeof(float));
    q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    q.vector = &v;
    q.k = 10;
    sr.query = &q;
    req.id = 42;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    len = cirrus__v1__request__get_packed_size(&req);
    *out = malloc(len);
    cirrus__v1__request__pack(&req, *out);
    free(v.values);
    return len;
}

static void send_raw(void *sock, const void *data, size_t len)
{
    zmq_send(sock, data, len, 0);
}

static void test_roundtrip_and_errors(void)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    cr_wire_limits lim = cr_wire_default_limits();
    cr_wire_msg m;
    cr_pb_bounded alloc;
    Cirrus__V1__Request *req = NULL;
    uint8_t *buf = NULL;
    size_t len;

    lim.heartbeat_ivl_ms = 0;
    lim.max_frame = 4096;
    CR_CHECK(cr_wire_socket_setup(router, &lim) == CR_OK);
    CR_CHECK(zmq_bind(router, "inproc://wire") == 0);
    CR_CHECK(zmq_connect(dealer, "inproc://wire") == 0);
    cr_wire_msg_init(&m);

    /* A good request unpacks and its reply finds the way back. */
    len = pack_search(&buf, 8);
    send_raw(dealer, buf, len);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
    CR_CHECK(m.nroute == 1);
    cr_pb_bounded_init(&alloc, 1 << 20);
    CR_CHECK(cr_wire_unpack_request(&m, &alloc, &req) == CR_OK);
    CR_CHECK(req && req->id == 42 && req->search->query->vector->n_values == 8);
    CR_CHECK(alloc.used > 0);
    CR_CHECK(cr_wire_reply_error(router, &m, req->id, CR_ERR_INVALID, "bad k") == CR_OK);
    cirrus__v1__request__free_unpacked(req, &alloc.base);
    CR_CHECK(alloc.used == 0);
    {
        char rbuf[256];
        int n = zmq_recv(dealer, rbuf, sizeof rbuf, 0);
        Cirrus__V1__Response *resp =
            n > 0 ? cirrus__v1__response__unpack(NULL, (size_t)n, (uint8_t *)rbuf) : NULL;
        CR_CHECK(resp && resp->id == 42 && resp->status->code == CR_ERR_INVALID);
        CR_CHECK(resp && strcmp(resp->status->message, "bad k") == 0);
        cirrus__v1__response__free_unpacked(resp, NULL);
    }
    free(buf);

    /* Truncated and garbage bodies: CR_ERR_PROTO, no crash. */
    len = pack_search(&buf, 8);
    for (size_t cut = 1; cut < len; cut += 3) {
        send_raw(dealer, buf, cut);
        CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
        cr_pb_bounded_init(&alloc, 1 << 20);
        req = NULL;
        if (cr_wire_unpack_request(&m, &alloc, &req) == CR_OK)
            cirrus__v1__request__free_unpacked(req, &alloc.base);
        CR_CHECK(alloc.used == 0);
    }
    send_raw(dealer, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
    cr_pb_bounded_init(&alloc, 1 << 20);
    CR_CHECK(cr_wire_unpack_request(&m, &alloc, &req) == CR_ERR_PROTO);
    CR_CHECK(strstr(cr_error_message(), "malformed") != NULL);
    free(buf);

    /* The bounded allocator refuses a body whose decoding would exceed the limit. */
    len = pack_search(&buf, 512);
    send_raw(dealer, buf, len);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
    cr_pb_bounded_init(&alloc, 1024);
    CR_CHECK(cr_wire_unpack_request(&m, &alloc, &req) == CR_ERR_PROTO);
    CR_CHECK(alloc.used == 0);
    free(buf);

    /* A frame over our cap (but under ZeroMQ's) is refused before unpacking. */
    lim.max_frame = 100;
    len = pack_search(&buf, 64);
    send_raw(dealer, buf, len);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_ERR_PROTO);
    CR_CHECK(strstr(cr_error_message(), "exceeds") != NULL);
    CR_CHECK(m.nroute == 1); /* route kept: the caller can still reply */
    free(buf);

    /* Too many frames: refused and drained, the next message is read cleanly. */
    lim.max_frame = 4096;
    for (int i = 0; i < CR_WIRE_MAX_ROUTE + 2; i++)
        zmq_send(dealer, "x", 1, ZMQ_SNDMORE);
    zmq_send(dealer, "end", 3, 0);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_ERR_PROTO);
    send_raw(dealer, "ok", 2);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
    CR_CHECK(zmq_msg_size(&m.body) == 2);

    /* Nothing queued: DONTWAIT gives CR_TIMEOUT. */
    CR_CHECK(cr_wire_recv(router, &m, &lim, ZMQ_DONTWAIT) == CR_TIMEOUT);

    cr_wire_msg_close(&m);
    zmq_close(dealer);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

/* The client ignores late replies to abandoned requests and times out cleanly. */
static void test_client_matching(void)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    cirrus_client_opts o = cirrus_client_default_opts();
    cirrus_client *c = NULL;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__HealthRequest h = CIRRUS__V1__HEALTH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cr_wire_limits lim = cr_wire_default_limits();
    cr_wire_msg m;
    cr_pb_bounded alloc;
    Cirrus__V1__Request *got = NULL;

    lim.heartbeat_ivl_ms = 0;
    zmq_bind(router, "inproc://client");
    o.zmq_ctx = ctx;
    CR_CHECK(cirrus_client_open(&c, "inproc://client", &o) == CR_OK);
    req.op_case = CIRRUS__V1__REQUEST__OP_HEALTH;
    req.health = &h;

    /* No server reply: timeout, not a hang. */
    CR_CHECK(cirrus_client_call(c, &req, 50, &resp) == CR_TIMEOUT);
    cr_wire_msg_init(&m);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
    cr_pb_bounded_init(&alloc, 1 << 20);
    CR_CHECK(cr_wire_unpack_request(&m, &alloc, &got) == CR_OK);
    uint64_t stale_id = got->id;
    cirrus__v1__request__free_unpacked(got, &alloc.base);

    /* Second call: the server first answers the stale request, then the new one. */
    req.deadline_ms = 0;
    uint64_t id2 = 0;
    CR_CHECK(cirrus_client_send(c, &req, &id2) == CR_OK);
    CR_CHECK(cr_wire_recv(router, &m, &lim, 0) == CR_OK);
    CR_CHECK(cr_wire_reply_error(router, &m, stale_id, CR_ERR_INTERNAL, "late") == CR_OK);
    CR_CHECK(cr_wire_reply_error(router, &m, id2, CR_NOTFOUND, "fresh") == CR_OK);
    CR_CHECK(cirrus_client_recv(c, 1000, &resp) == CR_OK);
    CR_CHECK(resp && resp->id == stale_id);
    CR_CHECK(cirrus_response_error(resp) == CR_ERR_INTERNAL);
    cirrus_response_free(resp);
    CR_CHECK(cirrus_client_recv(c, 1000, &resp) == CR_OK);
    /* A positive status is an expected outcome, not success: it comes without a result. */
    CR_CHECK(resp && resp->id == id2 && cirrus_response_error(resp) == CR_NOTFOUND);
    cirrus_response_free(resp);

    cr_wire_msg_close(&m);
    cirrus_client_close(&c);
    CR_CHECK(c == NULL);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

static void test_validate(void)
{
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    float x[3] = {1, 2, 3};
    char longid[300];
    v.values = x;
    v.n_values = 3;
    CR_CHECK(cr_validate_vector(&v, 3, "q") == CR_OK);
    CR_CHECK(cr_validate_vector(&v, 4, "q") == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "3 dimensions, expected 4") != NULL);
    x[1] = NAN;
    CR_CHECK(cr_validate_vector(&v, 3, "q") == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "NaN") != NULL);
    x[1] = INFINITY;
    CR_CHECK(cr_validate_vector(&v, 3, "q") == CR_ERR_INVALID);
    CR_CHECK(cr_validate_vector(NULL, 3, "q") == CR_ERR_INVALID);
    CR_CHECK(cr_validate_id("sku-1") == CR_OK);
    CR_CHECK(cr_validate_id("") == CR_ERR_INVALID);
    memset(longid, 'a', sizeof longid);
    longid[257] = '\0';
    CR_CHECK(cr_validate_id(longid) == CR_ERR_INVALID);
    longid[256] = '\0';
    CR_CHECK(cr_validate_id(longid) == CR_OK);
    CR_CHECK(cr_validate_id("caf\xc3\xa9") == CR_OK);
    CR_CHECK(cr_validate_id("bad\xc3") == CR_ERR_INVALID);
    CR_CHECK(cr_validate_id("\xed\xa0\x80") == CR_ERR_INVALID); /* surrogate */
    CR_CHECK(cr_validate_id("\xc0\xaf") == CR_ERR_INVALID);     /* overlong */
    CR_CHECK(cr_validate_k(10, CR_MAX_K) == CR_OK);
    CR_CHECK(cr_validate_k(0, CR_MAX_K) == CR_ERR_INVALID);
    CR_CHECK(cr_validate_k(1001, CR_MAX_K) == CR_ERR_INVALID);
}

/* Busy-polling: nothing ready waits out the timeout and leaves the window shut; a ready
 * message is seen and opens the window; inside it an empty poll returns at the window's end,
 * not after the (long) timeout. */
static void test_poll_spin(void)
{
    void *ctx = zmq_ctx_new(), *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    cr_wire_spin spin = {2000, 0};
    zmq_pollitem_t it = {b, 0, ZMQ_POLLIN, 0};
    char buf[8];
    uint64_t t0;
    int linger = 0;
    zmq_setsockopt(a, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(b, ZMQ_LINGER, &linger, sizeof linger);
    CR_CHECK(zmq_bind(b, "inproc://spin-test") == 0 && zmq_connect(a, "inproc://spin-test") == 0);
    t0 = cr_clock_mono_us();
    CR_CHECK(cr_wire_poll_spin(&it, 1, 20, &spin) == 0);
    CR_CHECK(cr_clock_mono_us() - t0 >= 15000 && spin.hot_until_us == 0);
    CR_CHECK(zmq_send(a, "x", 1, 0) == 1);
    CR_CHECK(cr_wire_poll_spin(&it, 1, 1000, &spin) == 1 && (it.revents & ZMQ_POLLIN));
    CR_CHECK(spin.hot_until_us > cr_clock_mono_us());
    CR_CHECK(zmq_recv(b, buf, sizeof buf, 0) == 1);
    /* Inside the window: spins to its end, then sleeps in poll for the 30 ms timeout. */
    t0 = cr_clock_mono_us();
    CR_CHECK(cr_wire_poll_spin(&it, 1, 30, &spin) == 0);
    CR_CHECK(cr_clock_mono_us() - t0 >= 25000);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}

/* Prepends a length-delimited field (one tag byte + varint length) to buf[0..n) in place;
 * buf has room for 6 more bytes. Returns the new length. */
static size_t wrap_field(uint8_t *buf, size_t n, uint8_t tag)
{
    uint8_t head[6];
    size_t h = 0, l = n;
    head[h++] = tag;
    do {
        head[h++] = (uint8_t)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
        l >>= 7;
    } while (l);
    memmove(buf + h, buf, n);
    memcpy(buf, head, h);
    return n + h;
}

/* Request{search: {query: {filter: not not ... (depth times) {}}}}, without protobuf-c (which
 * would recurse to pack it): Filter.not_expr = 6, Query.filter = 11, SearchRequest.query = 1,
 * Request.search = 10. */
static uint8_t *deep_filter_request(int depth, size_t *len)
{
    uint8_t *buf = malloc((size_t)(depth + 3) * 6);
    size_t n = 0;
    for (int i = 0; i < depth - 1; i++)
        n = wrap_field(buf, n, 0x32);
    n = wrap_field(buf, n, 0x5a);
    n = wrap_field(buf, n, 0x0a);
    *len = wrap_field(buf, n, 0x52);
    return buf;
}

/* protobuf-c recurses per nesting level: a deep message must be refused before it unpacks
 * (200,000 levels crashed every node); legitimate depth still unpacks; field number 0 and
 * groups are refused. */
static void test_pb_check(void)
{
    cr_pb_bounded alloc;
    ProtobufCMessage *m = NULL;
    size_t len;
    uint8_t *deep = deep_filter_request(200000, &len), *ok;
    cr_pb_bounded_init(&alloc, 256u << 20);
    CR_CHECK(cr_wire_unpack(&cirrus__v1__request__descriptor, deep, len, &alloc, &m) ==
             CR_ERR_PROTO);
    CR_CHECK(strstr(cr_error_message(), "nested deeper") != NULL);
    free(deep);
    ok = deep_filter_request(64, &len);
    CR_CHECK(cr_wire_unpack(&cirrus__v1__request__descriptor, ok, len, &alloc, &m) == CR_OK);
    if (m) {
        Cirrus__V1__Request *r = (Cirrus__V1__Request *)m;
        CR_CHECK(r->search && r->search->query && r->search->query->filter);
        protobuf_c_message_free_unpacked(m, &alloc.base);
    }
    free(ok);
    ok = deep_filter_request(CR_PB_MAX_DEPTH, &len);
    CR_CHECK(cr_pb_check(&cirrus__v1__request__descriptor, ok, len) == CR_ERR_PROTO);
    free(ok);
    const uint8_t field0[] = {0x08, 0x01, 0x82, 0x00, 0x01, 0x41}; /* 2-byte tag of field 0 */
    CR_CHECK(cr_pb_check(&cirrus__v1__request__descriptor, field0, sizeof field0) == CR_ERR_PROTO);
    CR_CHECK(strstr(cr_error_message(), "field number 0") != NULL);
    const uint8_t group[] = {0x0b, 0x0c}; /* start/end group of field 1 */
    CR_CHECK(cr_pb_check(&cirrus__v1__request__descriptor, group, sizeof group) == CR_ERR_PROTO);
    const uint8_t trunc[] = {0x52, 0x05, 0x0a}; /* length past the end */
    CR_CHECK(cr_pb_check(&cirrus__v1__request__descriptor, trunc, sizeof trunc) == CR_ERR_PROTO);
    CR_CHECK(cr_pb_check(&cirrus__v1__request__descriptor, NULL, 0) == CR_OK);
}

int main(void)
{
    CR_TEST_BEGIN();
    test_pb_check();
    test_roundtrip_and_errors();
    test_client_matching();
    test_validate();
    test_poll_spin();
    return CR_TEST_END();
}
