/* client.h — libcirrus's raw transport, for code inside the tree (the CLI, eval, bench, tests).
 * Programs outside the tree use client/cirrus.h (installed as <cirrus/cirrus.h>), whose
 * cirrus handle and escape hatch (cirrus_call/send/recv) are built on this.
 *
 * A client is one DEALER socket connected to a cirrus endpoint (a coordinator, a shard, an
 * encoder or `cirrus serve`; all speak the same Request/Response messages of
 * proto/cirrus.proto). Requests are matched to replies by id, so a lost or late reply never
 * wedges the socket, and many requests may be in flight (cirrus_client_send/recv).
 *
 *   cirrus_client *c;
 *   if (cirrus_client_open(&c, "tcp://127.0.0.1:7700", NULL)) die(cr_error_message());
 *   Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;  ... set req.op_case and the op ...
 *   Cirrus__V1__Response *resp;
 *   rc = cirrus_client_call(c, &req, 5000, &resp);   // CR_TIMEOUT after 5 s
 *   if (!rc) rc = cirrus_response_expect(resp, CIRRUS__V1__RESPONSE__RESULT_SEARCH);
 *   if (!rc) ... resp->search->hits ...              // present: expect checked it
 *   cirrus_response_free(resp);
 *   cirrus_client_close(&c);
 *
 * Replies are unpacked through a bounded allocator (at most max_alloc bytes per reply), so a
 * hostile or broken server can make the client neither crash nor allocate without limit.
 *
 * Thread rules: a client handle is used by one thread at a time.
 */
#ifndef CIRRUS_CLIENT_H
#define CIRRUS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "client/cirrus.h"
#include "common/err.h"

typedef struct cirrus_client cirrus_client;

typedef struct cirrus_client_opts {
    void *zmq_ctx;        /* share a ZeroMQ context (needed for inproc://); NULL = own one */
    size_t max_frame;     /* largest reply accepted; 0 = default (64 MiB) */
    int heartbeats;       /* ZMTP heartbeats on the connection (default on) */
    unsigned spin_us;     /* busy-poll this long for a reply before sleeping (default 0);
                             trades CPU for a scheduler wake-up per reply */
    size_t max_alloc;     /* largest total allocation while unpacking one reply;
                             0 = 4 x max_frame */
    /* CURVE on a tcp:// endpoint (common/curve.h): this client's key and the server's public
     * key (Z85). NULL = from the environment: CIRRUS_CURVE_SECRET (a .key file) and
     * CIRRUS_CURVE_SERVER_PUB (a key or a .pub file); neither set = plaintext. */
    const struct cr_curve *curve;
    const char *curve_server_pub;
} cirrus_client_opts;

cirrus_client_opts cirrus_client_default_opts(void);

/* Connects (lazily, as ZeroMQ does) to `endpoint`. */
cr_err cirrus_client_open(cirrus_client **out, const char *endpoint,
                          const cirrus_client_opts *opts);
void cirrus_client_close(cirrus_client **pp);

/* Sets req->id (a fresh one) and req->deadline_ms (= timeout_ms when 0), sends, and waits up
 * to timeout_ms for the matching reply. On CR_OK *resp is the reply (free it with
 * cirrus_response_free); its status may still carry a server error or come without a result
 * — see cirrus_response_expect(). Returns CR_TIMEOUT when no reply came in time.
 * Replies that arrive meanwhile to requests pipelined with cirrus_client_send on this handle
 * are kept (up to CIRRUS_CLIENT_STASH_MAX replies and max_alloc bytes; past that they are
 * dropped) and returned first by cirrus_client_recv; late replies to earlier calls that timed
 * out are dropped. */
cr_err cirrus_client_call(cirrus_client *c, Cirrus__V1__Request *req, uint32_t timeout_ms,
                          Cirrus__V1__Response **resp);

/* Pipelining: send without waiting (sets req->id and returns it in *id), then receive
 * replies in any order (match them by resp->id; a late reply to a call that timed out may
 * also come). recv returns CR_TIMEOUT when none arrived within timeout_ms. */
#define CIRRUS_CLIENT_STASH_MAX 64
cr_err cirrus_client_send(cirrus_client *c, Cirrus__V1__Request *req, uint64_t *id);
cr_err cirrus_client_recv(cirrus_client *c, uint32_t timeout_ms, Cirrus__V1__Response **resp);

/* CR_OK when resp->status is ok; else the server's code with its message recorded for
 * cr_error_message(): negative for failures, positive for expected outcomes (CR_NOTFOUND,
 * CR_TIMEOUT: the server's backend did not answer in time), which come without a result. */
cr_err cirrus_response_error(const Cirrus__V1__Response *resp);

/* cirrus_response_error(), and then CR_ERR_PROTO unless resp carries the result `want`. Use it
 * before reading a result: CR_OK guarantees the result pointer (resp->search, resp->get, ...)
 * is set. Response.result mirrors Request.op field for field, so a request's expected result
 * is (Cirrus__V1__Response__ResultCase)req->op_case. */
cr_err cirrus_response_expect(const Cirrus__V1__Response *resp,
                              Cirrus__V1__Response__ResultCase want);

void cirrus_response_free(Cirrus__V1__Response *resp);

#endif
