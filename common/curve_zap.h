/* curve_zap.h — the ZAP handler (ZeroMQ's RFC 27 authentication protocol) that decides which
 * CURVE clients a server accepts, and the warning for servers reachable without protection.
 *
 * A handler is one thread with a REP socket on inproc://zeromq.zap.01 of one ZeroMQ context:
 * every CURVE server socket of that context asks it about each connecting client. A client is
 * accepted when its public key is the server's own (the process talking to itself, e.g. the
 * HTTP gateway in front of its coordinator) or is the key of a *.pub file in the allow
 * directory. The directory is read again at each handshake, so a key file removed from it is
 * refused from the next connection on; connections already made stay up until they close
 * (restart the server to cut them). A refused client gets no reply at all (its handshake
 * fails and its requests stay queued on its side).
 *
 *   cr_zap *z; rc = cr_zap_start(&z, ctx, &curve);   // before binding the CURVE socket
 *   ...; close the CURVE sockets; cr_zap_stop(&z);
 *
 * One handler per context: a second start in the same context with the same key and allow
 * directory shares the running one (counted: the last stop ends it; e.g. a coordinator and
 * the job broker in its process); with another key or directory it is CR_ERR_INVALID.
 */
#ifndef CR_CURVE_ZAP_H
#define CR_CURVE_ZAP_H

#include "common/config.h"
#include "common/curve.h"
#include "common/err.h"

/* The two entries of a server's option table (common/config.h), filling char *secret and
 * char *allow; then cr_curve_flags(&c, secret, allow, 1, &on). */
#define CR_CURVE_SERVER_OPTS(secret, allow)                                                 \
    {"curve-secret", CR_OPT_STRING, &(secret), NULL, 0, 0, 0,                               \
     "CURVE secret key file (cirrus keygen): encrypt and authenticate the tcp:// endpoint"}, \
    {                                                                                       \
        "curve-allow", CR_OPT_STRING, &(allow), NULL, 0, 0, 0,                              \
            "directory of the client public keys (*.pub) allowed in, with --curve-secret"   \
    }

typedef struct cr_zap cr_zap;

/* Binds the ZAP endpoint in ctx and starts the thread; returns once it serves. c is copied. */
cr_err cr_zap_start(cr_zap **out, void *ctx, const cr_curve *c);
/* Stops the thread (within 100 ms) and closes its socket. NULL-safe; sets *pp = NULL. */
void cr_zap_stop(cr_zap **pp);

/* Logs a WARN as `component` when `ep` is reachable from other hosts (not
 * cr_endpoint_is_local) and `is_protected` is 0 ("... without CURVE"). `what` names the
 * missing protection. */
void cr_warn_exposed(const char *component, const char *ep, int is_protected, const char *what);

#endif
