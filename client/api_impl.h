/* api_impl.h — what the files of libcirrus's high-level API (api.c, query.c, result.c,
 * write.c) share: the bodies of the cirrus and cirrus_result handles and the error helpers.
 * Not installed. */
#ifndef CIRRUS_API_IMPL_H
#define CIRRUS_API_IMPL_H

#include "client/client.h"
#include "common/err.h"

#define CIRRUS_ERRMSG_MAX 1024

struct cirrus {
    cirrus_client *cl;
    uint32_t timeout_ms;
    cirrus_err code;               /* what the last call returned */
    char errmsg[CIRRUS_ERRMSG_MAX];
};

typedef enum result_kind { RESULT_SEARCH, RESULT_GET } result_kind;

struct cirrus_result {
    result_kind kind;
    Cirrus__V1__Response *resp; /* owned; hits or items point into it */
};

/* Records `code` with the calling thread's cr_error_message() as the handle's last error and
 * returns it. */
cirrus_err api_fail(cirrus *c, cr_err code);

/* Records `code` with a formatted message and returns it. */
cirrus_err api_failf(cirrus *c, cr_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records success: code CIRRUS_OK (or a positive outcome) and an empty message. */
cirrus_err api_ok(cirrus *c, cirrus_err code);

/* Sends req and waits for its reply with timeout_ms (0 = the handle's) as timeout and
 * deadline. On CIRRUS_OK *resp holds an ok reply carrying the result req's op asks for;
 * otherwise (a failure, a positive outcome such as CIRRUS_NOTFOUND or CIRRUS_TIMEOUT) *resp is
 * NULL and the handle's message says why. */
cirrus_err api_call(cirrus *c, Cirrus__V1__Request *req, uint32_t timeout_ms,
                    Cirrus__V1__Response **resp);

/* Wraps a reply as a result (takes ownership of resp). */
cirrus_err api_result_new(cirrus *c, result_kind kind, Cirrus__V1__Response *resp,
                          cirrus_result **out);

#endif
