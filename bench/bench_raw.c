/* cirrus-bench raw — sends raw bytes as one frame to an endpoint and prints the reply's status:
 * for tests of how servers answer malformed and oversized messages. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "bench/bench.h"
#include "cirrus.pb-c.h"
#include "common/clock.h"
#include "common/config.h"

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int bench_cmd_raw(int argc, char **argv)
{
    const char *ep = NULL, *hex = NULL;
    long long size = -1;
    unsigned char *buf = NULL;
    size_t len = 0;
    int ret = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--endpoint") == 0) ep = argv[i + 1];
        else if (strcmp(argv[i], "--hex") == 0) hex = argv[i + 1];
        else if (strcmp(argv[i], "--zeros") == 0) size = strtoll(argv[i + 1], NULL, 10);
    }
    if (!ep || (!hex && size < 0)) {
        printf("Usage: cirrus-bench raw --endpoint EP (--hex BYTES | --zeros N)\n"
               "Sends one frame and prints the reply status as {\"id\",\"code\",\"message\"}.\n");
        return 2;
    }
    if (hex) {
        len = strlen(hex) / 2;
        buf = malloc(len + 1);
        for (size_t i = 0; buf && i < len; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                fprintf(stderr, "cirrus-bench raw: bad hex\n");
                free(buf);
                return 2;
            }
            buf[i] = (unsigned char)(hi << 4 | lo);
        }
    } else {
        len = (size_t)size;
        buf = calloc(len + 1, 1);
    }
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int timeout = 5000, linger = 0;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (buf && zmq_connect(s, ep) == 0 && zmq_send(s, buf, len, 0) >= 0) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) >= 0) {
            Cirrus__V1__Response *r =
                cirrus__v1__response__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
            if (r && r->status) {
                printf("{\"id\":%llu,\"code\":%d,\"message\":\"%s\"}\n", (unsigned long long)r->id,
                       r->status->code, r->status->message);
                ret = 0;
            } else {
                printf("{\"error\":\"unreadable reply\"}\n");
            }
            if (r)
                cirrus__v1__response__free_unpacked(r, NULL);
        } else {
            printf("{\"error\":\"no reply: %s\"}\n", zmq_strerror(errno));
        }
        zmq_msg_close(&m);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    free(buf);
    return ret;
}

/* cirrus-bench echo — the floor any ZeroMQ server has on this machine: a DEALER client and a
 * ROUTER echo thread (no proxy, no work) over TCP loopback, round-trip percentiles. */
typedef struct echo_srv {
    void *ctx, *sock;
    volatile int stop;
} echo_srv;

static void *echo_main(void *arg)
{
    echo_srv *e = arg;
    void *r = e->sock;
    while (!e->stop) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, r, 0) >= 0 && zmq_msg_recv(&body, r, 0) >= 0) {
            zmq_msg_send(&id, r, ZMQ_SNDMORE);
            zmq_msg_send(&body, r, 0);
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    zmq_close(r);
    return NULL;
}

int bench_echo_roundtrips(int port, int n, double *lat_ms)
{
    echo_srv e = {0};
    pthread_t tid;
    void *cctx = NULL, *d = NULL;
    int timeout = 100, linger = 0, ret = -1;
    char ep[64], buf[64];
    size_t len = sizeof ep;
    e.ctx = zmq_ctx_new();
    e.sock = e.ctx ? zmq_socket(e.ctx, ZMQ_ROUTER) : NULL;
    if (!e.sock)
        goto out;
    zmq_setsockopt(e.sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(e.sock, ZMQ_LINGER, &linger, sizeof linger);
    if (port)
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    else
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:*");
    if (zmq_bind(e.sock, ep) != 0 || zmq_getsockopt(e.sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0) {
        fprintf(stderr, "cirrus-bench echo: cannot bind %s: %s\n", ep, zmq_strerror(errno));
        zmq_close(e.sock);
        goto out;
    }
    /* the socket moves to the echo thread (pthread_create is a full barrier) */
    if (pthread_create(&tid, NULL, echo_main, &e) != 0) {
        zmq_close(e.sock);
        goto out;
    }
    cctx = zmq_ctx_new();
    d = zmq_socket(cctx, ZMQ_DEALER);
    timeout = 5000;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(d, ep);
    ret = 0;
    for (int i = 0; i < n; i++) {
        uint64_t t0 = cr_clock_mono_us();
        if (zmq_send(d, "ping", 4, 0) < 0 || zmq_recv(d, buf, sizeof buf, 0) < 0) {
            fprintf(stderr, "cirrus-bench echo: round trip %d: %s\n", i, zmq_strerror(errno));
            ret = -1;
            break;
        }
        lat_ms[i] = (double)(cr_clock_mono_us() - t0) / 1000.0;
    }
    zmq_close(d);
    zmq_ctx_term(cctx);
    e.stop = 1;
    pthread_join(tid, NULL);
out:
    if (e.ctx)
        zmq_ctx_term(e.ctx);
    return ret;
}

int bench_cmd_echo(int argc, char **argv)
{
    int n = 5000, port = 17999;
    double *lat;
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        printf("Usage: cirrus-bench echo [--port P]\nRound trips of a bare ZeroMQ DEALER/ROUTER "
               "echo over TCP loopback: the transport floor of any server here.\n");
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "--port") == 0) {
        long long v;
        if (cr_parse_ll(argv[2], 1, 65535, &v)) {
            fprintf(stderr, "cirrus-bench echo: --port: %s\n", cr_error_message());
            return 2;
        }
        port = (int)v;
    }
    lat = malloc((size_t)n * sizeof *lat);
    if (!lat || bench_echo_roundtrips(port, n, lat) != 0) {
        free(lat);
        return 1;
    }
    printf("{\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"round_trips\":%d}\n",
           bench_percentile(lat, (size_t)n, 0.5), bench_percentile(lat, (size_t)n, 0.99), n);
    free(lat);
    return 0;
}
