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
 *   ... resp->status->code, resp->search->hits ...
 *   cirrus_response_free(resp);
 *   cirrus_client_close(&c);
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
} cirrus_client_opts;

cirrus_client_opts cirrus_client_default_opts(void);

/* Connects (lazily, as ZeroMQ does) to `endpoint`. */
cr_err cirrus_client_open(cirrus_client **out, const char *endpoint,
                          const cirrus_client_opts *opts);
void cirrus_client_close(cirrus_client **pp);

/* Sets req->id (a fresh one) and req->deadline_ms (= timeout_ms when 0), sends, and waits up
 * to timeout_ms for the matching reply. On CR_OK *resp is the reply (free it with
 * cirrus_response_free); its status may still carry a server error — see
 * cirrus_response_error(). Returns CR_TIMEOUT when no reply came in time. */
cr_err cirrus_client_call(cirrus_client *c, Cirrus__V1__Request *req, uint32_t timeout_ms,
                          Cirrus__V1__Response **resp);

/* Pipelining: send without waiting (sets req->id and returns it in *id), then receive
 * replies in any order. recv returns CR_TIMEOUT when none arrived within timeout_ms. */
cr_err cirrus_client_send(cirrus_client *c, Cirrus__V1__Request *req, uint64_t *id);
cr_err cirrus_client_recv(cirrus_client *c, uint32_t timeout_ms, Cirrus__V1__Response **resp);

/* CR_OK when resp->status is ok or an expected outcome; else the server's code, with
 * its message recorded for cr_error_message(). */
cr_err cirrus_response_error(const Cirrus__V1__Response *resp);

void cirrus_response_free(Cirrus__V1__Response *resp);

#endif
