/* server.h — the encoder's network front: EncodeImage, EncodeText, Compose, Health and Stats
 * over ZeroMQ, on the service skeleton (common/service.h), in front of the batching service
 * (encoder/batcher.h, included here).
 *
 *     enc_server_opts so = enc_server_default_opts();
 *     so.bind = "tcp://127.0.0.1:0";              // or inproc://encoder with so.zmq_ctx set
 *     enc_server *srv;
 *     if (enc_server_open(&srv, svc, &so)) die(cr_error_message());
 *     ... clients connect to enc_server_endpoint(srv) (the real port) ...
 *     rc = enc_server_close(&srv);
 *     enc_service_close(&svc);
 *
 * Threads. The front thread owns the ROUTER and answers Health itself; `workers` pool threads
 * decode, preprocess and tokenize a request and queue it for the service's inference thread,
 * whose completed replies the front thread forwards, so it never waits for a forward pass.
 */
#ifndef ENC_SERVER_H
#define ENC_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "encoder/batcher.h"

typedef struct enc_server_opts {
    const char *bind;             /* e.g. tcp://127.0.0.1:7702 or inproc://encoder */
    void *zmq_ctx;                /* share a context (needed for inproc); NULL = own */
    int workers;                  /* decode / tokenize threads (default 2) */
    uint32_t default_deadline_ms; /* for requests without one (default 30000) */
    size_t max_frame;             /* largest request; 0 = CR_WIRE_DEFAULT_MAX_FRAME */
    uint32_t drain_ms;            /* longest wait for in-flight requests at close (default
                                     30000; 0 = the default) */
    const struct cr_curve *curve; /* CURVE on a tcp:// bind (common/curve.h; borrowed until
                                     close); NULL = plaintext */
} enc_server_opts;

enc_server_opts enc_server_default_opts(void);

typedef struct enc_server enc_server;

/* Serves the service s (borrowed; it must outlive the server) on o->bind and returns once
 * bound and every thread runs; *out only on success, nothing left running on failure. Every
 * request gets a reply: results, or a Status naming what was wrong. A request's deadline (its
 * deadline_ms, or default_deadline_ms) holds from when the front received it: it is checked
 * when a worker takes it, before each image is decoded and before each forward pass, and a
 * request past it is answered CR_ERR_DEADLINE without further work. Compose references given
 * as item ids are refused (CR_ERR_INVALID): the coordinator resolves them. Errors:
 * CR_ERR_INVALID, CR_ERR_NET ("cannot bind ..."), CR_ERR_INTERNAL ("cannot start worker
 * thread 2 of 2"). */
cr_err enc_server_open(enc_server **out, enc_service *s, const enc_server_opts *o);

/* The endpoint bound (tcp://...:0 gives the port chosen); valid until close. */
const char *enc_server_endpoint(const enc_server *srv);

/* Stops intake, lets queued requests finish and forwards their replies, for at most drain_ms:
 * what is still in flight then is cancelled (dropped at its next step) and its reply dropped;
 * it completes later without touching the server. CR_TIMEOUT when a worker did not stop (it is
 * left running). NULL-safe; sets *pp to NULL. */
cr_err enc_server_close(enc_server **pp);

/* open, serve until *stop becomes non-zero, close: for a caller that gives a thread to it. */
cr_err enc_server_run(enc_service *s, const enc_server_opts *o, volatile sig_atomic_t *stop);

#endif
