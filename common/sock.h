/* sock.h — ZeroMQ sockets and poll sets for code that must not see ZeroMQ itself (DESIGN §2:
 * only common/ wraps ZeroMQ).
 *
 * wire.h frames protocol messages (routing frames, then one protobuf body, checked and
 * unpacked with a bounded allocator) and makes contexts (cr_wire_ctx_new); this module owns
 * the rest of what a ZeroMQ user does: a ROUTER or DEALER opened with the wire limits, bind
 * and connect, a poll set with a timeout, single-frame sends of bytes already packed (a
 * request body with its id appended, a pointer handed between threads over inproc), the
 * receive of a one-frame reply, and closing.
 *
 *   void *ctx; rc = cr_wire_ctx_new(&ctx);                       // wire.h
 *   void *s;   rc = cr_sock_open(ctx, CR_SOCK_ROUTER, &lim, &s);  // limits: see wire.h
 *   rc = cr_sock_bind(s, "tcp://127.0.0.1:7700");
 *   cr_poll *p; rc = cr_poll_new(&p, 8);
 *   cr_poll_clear(p); int i = cr_poll_add(p, s, CR_POLL_IN);
 *   if (cr_poll_wait(p, 100, NULL) > 0 && cr_poll_readable(p, i))
 *       rc = cr_wire_recv(s, &m, &lim, CR_SOCK_DONTWAIT);
 *   cr_poll_free(&p); cr_sock_close(&s); cr_wire_ctx_term(&ctx);
 *
 * Sockets and contexts are ZeroMQ's own opaque pointers (void *), so that wire.h's functions
 * take them unchanged. Errors are cr_err codes with the detail in cr_error_message().
 *
 * Thread rules: a socket belongs to one thread at a time (ZeroMQ's rule); a context is
 * shared by every thread; a poll set belongs to the thread that owns its sockets.
 */
#ifndef CR_SOCK_H
#define CR_SOCK_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "common/err.h"
#include "common/wire.h"

/* Flags of the send and receive functions here and in wire.h. */
#define CR_SOCK_DONTWAIT 1 /* do not block: CR_TIMEOUT when nothing is queued / queue full */

/* Events of a poll set entry. */
#define CR_POLL_IN 1 /* a message can be read */

typedef enum cr_sock_type {
    CR_SOCK_DEALER = 0, /* callers: many requests in flight, matched by id (never REQ) */
    CR_SOCK_ROUTER = 1  /* servers: replies routed back by the caller's identity */
} cr_sock_type;

/* ---- sockets ------------------------------------------------------------------------- */

/* Opens a socket of `type` in ctx. lim != NULL: cr_wire_socket_setup(lim) is applied
 * (MAXMSGSIZE, HWMs, LINGER 0, heartbeats); NULL: ZeroMQ's defaults. *out is written only
 * on success; CR_ERR_NET otherwise (nothing is left open). */
cr_err cr_sock_open(void *ctx, cr_sock_type type, const cr_wire_limits *lim, void **out);
/* CR_ERR_NET "cannot bind EP: why" on failure. */
cr_err cr_sock_bind(void *sock, const char *ep);
/* CR_ERR_NET "connect EP: why" on failure (a TCP peer need not be up yet). */
cr_err cr_sock_connect(void *sock, const char *ep);
/* How long a closed socket keeps trying to deliver queued messages (0 = drop them; -1 =
 * forever, ZeroMQ's default, which makes cr_wire_ctx_term wait for them). */
cr_err cr_sock_set_linger(void *sock, int ms);
/* The endpoint a socket last bound (a tcp port 0 resolved to the port chosen) into buf.
 * CR_ERR_NET when ZeroMQ cannot say. */
cr_err cr_sock_endpoint(void *sock, char *buf, size_t len);
/* Closes the socket with its linger. NULL-safe; sets *pp = NULL. */
void cr_sock_close(void **pp);

/* ---- single-frame messages ------------------------------------------------------------ */

/* A piece of a frame to send; the pieces of one send are gathered into one frame. */
typedef struct cr_sock_buf {
    const void *data;
    size_t len;
} cr_sock_buf;

/* Sends route's routing frames (copies; route may be NULL: none) and then one frame made of
 * parts[0..n) back to back. flags: 0 or CR_SOCK_DONTWAIT. CR_TIMEOUT when the send queue is
 * full (HWM, with CR_SOCK_DONTWAIT), CR_ERR_NOMEM when the frame cannot be allocated,
 * CR_ERR_NET on other socket errors. */
cr_err cr_sock_send(void *sock, const cr_wire_msg *route, const cr_sock_buf *parts, int n,
                    int flags);

/* Receives one frame (a DEALER's reply: no routing frames) and unpacks it as `desc` through
 * `alloc` (NULL: protobuf-c's default allocator). CR_OK: *out is set; free it with
 * protobuf_c_message_free_unpacked(*out, alloc). CR_TIMEOUT when nothing is queued (with
 * CR_SOCK_DONTWAIT; no message is set then), CR_ERR_PROTO when the frame was read but is not
 * a valid `desc` (it is consumed), CR_ERR_NET on socket errors. */
cr_err cr_sock_recv_unpack(void *sock, const ProtobufCMessageDescriptor *desc,
                           ProtobufCAllocator *alloc, int flags, ProtobufCMessage **out);

/* ---- poll sets ---------------------------------------------------------------------------- */

typedef struct cr_poll cr_poll;

/* A poll set of at most `capacity` sockets (>= 1). */
cr_err cr_poll_new(cr_poll **out, int capacity);
void cr_poll_free(cr_poll **pp);
/* Empties the set (refill it when the sockets change; a set is kept from wait to wait). */
void cr_poll_clear(cr_poll *p);
/* Adds sock with `events` (CR_POLL_IN, or 0: in the set but not watched); returns its index
 * in the set, -1 when the set is full. */
int cr_poll_add(cr_poll *p, void *sock, int events);
/* Waits at most timeout_ms (0: do not wait; -1: no limit, avoid it) for an event, busy-polling
 * first as `spin` says (wire.h; NULL: never spin). Returns the number of sockets ready, 0 when
 * the time passed, -1 on an error (a signal, a terminated context). */
int cr_poll_wait(cr_poll *p, long timeout_ms, cr_wire_spin *spin);
/* Changes the events watched on entry i (a set kept from wait to wait). */
void cr_poll_set_events(cr_poll *p, int i, int events);
/* 1 when entry i had CR_POLL_IN at the last wait. */
int cr_poll_readable(const cr_poll *p, int i);
/* The first entry >= from that had CR_POLL_IN at the last wait, or -1:
 *     for (int i = cr_poll_next(p, 0); i >= 0; i = cr_poll_next(p, i + 1)) ... */
int cr_poll_next(const cr_poll *p, int from);

/* One socket: 1 when a message can be read within timeout_ms, 0 when not, -1 on an error. */
int cr_sock_wait_readable(void *sock, long timeout_ms);

#endif
