/* err.h — the one error enum of cirrus, and a per-thread error message.
 *
 * Every fallible function returns cr_err. Positive codes are expected outcomes
 * (not found, timeout, stale version), negative codes are failures. A function
 * that fails records a human message with cr_error_set(); the caller reads it
 * with cr_error_message() on the same thread before its next cirrus call.
 *
 *     rc = shard_store_open(&st, dir, &opts);
 *     if (rc < 0) fprintf(stderr, "open: %s\n", cr_error_message());
 */
#ifndef CR_ERR_H
#define CR_ERR_H

#include <stddef.h>

typedef enum cr_err {
    CR_OK = 0,
    CR_NOTFOUND = 1,     /* the thing asked for does not exist */
    CR_TIMEOUT = 2,      /* a wait ended without an answer */
    CR_STALE = 3,        /* a write carried an older version and was ignored */
    CR_ERR_NOMEM = -1,
    CR_ERR_INVALID = -2, /* bad argument, bad input from a user or peer */
    CR_ERR_PROTO = -3,   /* malformed or oversized wire message */
    CR_ERR_NET = -4,     /* socket or transport failure */
    CR_ERR_STORE = -5,   /* LMDB failure */
    CR_ERR_INDEX = -6,   /* FAISS failure */
    CR_ERR_MODEL = -7,   /* model weights missing, wrong shape, corrupt */
    CR_ERR_IO = -8,      /* file system */
    CR_ERR_OVERLOADED = -9,
    CR_ERR_DEADLINE = -10,
    CR_ERR_UNSUPPORTED = -11,
    CR_ERR_INTERNAL = -12,
    CR_ERR_UNAVAILABLE = -13 /* no live backend to serve the request */
} cr_err;

/* Static English name of a code ("invalid argument", ...). Never NULL. */
const char *cr_strerror(cr_err code);

/* Records a printf-style message for the calling thread and returns `code`,
 * so that failures read `return cr_error_set(CR_ERR_INVALID, "dim %d", d);`. */
cr_err cr_error_set(cr_err code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last message; "" when none. Valid until the next
 * cr_error_set() on this thread. */
const char *cr_error_message(void);

/* Prefixes the current message with context: "open shard: <old message>". */
cr_err cr_error_wrap(cr_err code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void cr_error_clear(void);

#endif
