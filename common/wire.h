/* wire.h — the ZeroMQ + protobuf-c wire layer (the only module that calls zmq_*).
 *
 * A message is: routing frames (added by ROUTER sockets) then exactly one body frame
 * holding one protobuf message. Receiving checks the frame count and the body size
 * BEFORE unpacking; unpacking runs through a bounded allocator, so a hostile frame can
 * neither crash a node nor make it allocate without limit.
 *
 * Server loop sketch (ROUTER):
 *     cr_wire_msg m; cr_wire_msg_init(&m);
 *     rc = cr_wire_recv(sock, &m, 0);                      // CR_ERR_PROTO: bad framing
 *     rc = cr_wire_unpack_request(&m, &lim, &req);          // CR_ERR_PROTO: bad body
 *     if (rc) cr_wire_reply_error(sock, &m, 0, rc, cr_error_message());
 *     ...  cr_wire_send(sock, &m, &resp.base);             // reply along m's route
 *     cr_wire_msg_close(&m);
 *
 * Thread rules: a socket belongs to one thread (ZeroMQ's rule); these functions keep
 * no state of their own.
 */
#ifndef CR_WIRE_H
#define CR_WIRE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <zmq.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

#define CR_WIRE_MAX_ROUTE 8                   /* routing frames kept for a reply */
#define CR_WIRE_DEFAULT_MAX_FRAME (64u << 20) /* bytes; covers batches of images */

typedef struct cr_wire_msg {
    zmq_msg_t route[CR_WIRE_MAX_ROUTE];
    int nroute;
    zmq_msg_t body;
    int has_body;
} cr_wire_msg;

/* Per-socket limits, applied by cr_wire_socket_setup and checked on receive. */
typedef struct cr_wire_limits {
    size_t max_frame;         /* largest body accepted (ZMQ_MAXMSGSIZE as well) */
    size_t max_alloc;         /* largest total allocation while unpacking one body */
    int sndhwm, rcvhwm;       /* queue bounds, in messages */
    int heartbeat_ivl_ms;     /* ZMTP heartbeats; 0 = off (inproc) */
    int heartbeat_timeout_ms;
} cr_wire_limits;

cr_wire_limits cr_wire_default_limits(void);

/* Applies MAXMSGSIZE, HWMs, LINGER 0, ZMTP heartbeats and, for ROUTER sockets,
 * ZMQ_ROUTER_MANDATORY off (a vanished peer's reply is dropped, not an error). */
cr_err cr_wire_socket_setup(void *sock, const cr_wire_limits *lim);

/* A ZeroMQ context whose I/O and reaper threads are already running: ZeroMQ starts them with
 * a context's first socket and aborts the process when it cannot, so a process that starts
 * them first knows that every later thread start that fails is its own, reported and
 * survived. CR_ERR_NET when the context or its threads cannot be made. */
cr_err cr_wire_ctx_new(void **out);
void cr_wire_ctx_term(void **ctx);

void cr_wire_msg_init(cr_wire_msg *m);
void cr_wire_msg_close(cr_wire_msg *m);

/* m's body frame: its bytes (valid until m is closed or received into) and *len; NULL (and
 * *len = 0) when m has no body. */
const uint8_t *cr_wire_msg_body(const cr_wire_msg *m, size_t *len);

/* Routing frame i of m (0 = the first, a ROUTER's peer identity): its bytes (valid until m is
 * closed) and *len; NULL (and *len = 0) when m has no such frame. */
const uint8_t *cr_wire_msg_route_frame(const cr_wire_msg *m, int i, size_t *len);

/* Moves src's routing frames into dst (initialised here), leaving src without any; src keeps
 * its body. For a request answered after its message is gone. */
void cr_wire_msg_take_route(cr_wire_msg *dst, cr_wire_msg *src);

/* Receives one whole multipart message. `flags` may be ZMQ_DONTWAIT (then CR_TIMEOUT
 * when nothing is queued). Framing errors (too many parts, body over the limit) drain the
 * remaining parts and return CR_ERR_PROTO with m's route kept, so the caller can reply. */
cr_err cr_wire_recv(void *sock, cr_wire_msg *m, const cr_wire_limits *lim, int flags);

/* Sends `route` (may be NULL: no routing frames) then the packed message.
 * Returns CR_ERR_NET on a socket error, CR_TIMEOUT if the HWM blocks (EAGAIN). */
cr_err cr_wire_send(void *sock, const cr_wire_msg *route, const ProtobufCMessage *msg, int flags);

/* Sends only the routing frames of `route` (NULL: none), each with ZMQ_SNDMORE | flags: what
 * precedes a reply's body (cr_wire_send, cr_sock_send). Errors as cr_wire_send. */
cr_err cr_wire_send_route(void *sock, const cr_wire_msg *route, int flags);

/* Bounded protobuf allocator: refuses allocations past `limit` total bytes. Keep it
 * alive until the message unpacked through it is freed with the same allocator. */
typedef struct cr_pb_bounded {
    ProtobufCAllocator base;
    size_t used, limit;
} cr_pb_bounded;

void cr_pb_bounded_init(cr_pb_bounded *b, size_t limit);

/* Unpacks a body of type `desc` through `alloc`; CR_ERR_PROTO on malformed input. */
cr_err cr_wire_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                      cr_pb_bounded *alloc, ProtobufCMessage **out);

/* Unpacks m's body as a Request (the common case for servers). */
cr_err cr_wire_unpack_request(const cr_wire_msg *m, cr_pb_bounded *alloc,
                              Cirrus__V1__Request **out);

/* Replies a Response carrying only a Status {code, message} for request `id`. Used on
 * every failure path so no request is answered by silence. */
cr_err cr_wire_reply_error(void *sock, const cr_wire_msg *route, uint64_t id, cr_err code,
                           const char *message);

/* ---- server fronts: a ROUTER thread receiving requests ----------------------------------- */

/* Receives one message on the public `front` ROUTER without waiting. CR_OK: m holds a
 * well-framed request (not yet unpacked). Framing errors are answered on `front` at once and
 * returned; CR_TIMEOUT when nothing was queued. */
cr_err cr_wire_front_recv(void *front, cr_wire_msg *m, const cr_wire_limits *lim);

/* Adaptive busy-polling. A thread that blocks in poll pays a scheduler wake-up for each
 * message (30-50 us on small VMs, several per round trip); for spin_us after its last message
 * it polls without sleeping instead, yielding the core to any runnable thread between polls.
 * An idle thread blocks as before, so the cost is CPU only while traffic flows. */
typedef struct cr_wire_spin {
    unsigned spin_us;      /* 0 = never spin */
    uint64_t hot_until_us; /* monotonic; polls before this time do not sleep */
} cr_wire_spin;

/* zmq_poll with spinning: returns what zmq_poll returns; a ready item renews the window. */
int cr_wire_poll_spin(zmq_pollitem_t *items, int n, long timeout_ms, cr_wire_spin *spin);

/* Writes a fresh "inproc://<what>-N" name into buf. Names are never reused within a process:
 * ZeroMQ releases a closed inproc endpoint asynchronously, so a server restarted in the same
 * process (at, say, the same stack address) must not bind the name its predecessor used. */
void cr_wire_inproc_name(char *buf, size_t len, const char *what);

/* Sends `resp` as the ok answer to request `id`: sets its id and an ok Status, then sends it
 * along `route`. */
cr_err cr_wire_reply_ok(void *sock, const cr_wire_msg *route, uint64_t id,
                        Cirrus__V1__Response *resp);

/* Fills `st` (caller's storage) with code + message; message must outlive the send. */
void cr_wire_status_set(Cirrus__V1__Status *st, cr_err code, const char *message);

/* A Response carrying only a Status, with the storage it points into (so not to be copied):
 * what cr_wire_reply_error and the service skeleton's error replies send. */
typedef struct cr_wire_error {
    Cirrus__V1__Response resp;
    Cirrus__V1__Status st;
    char msg[1024];
} cr_wire_error;

/* Fills *e as the answer `code` to request `id`, with a copy of `message` (cr_strerror(code)
 * when NULL or empty): it is often cr_error_message(), which a failing send overwrites. */
void cr_wire_error_init(cr_wire_error *e, uint64_t id, cr_err code, const char *message);

#endif
