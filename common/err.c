#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CR_ERRMSG_MAX 1024

static _Thread_local char errmsg[CR_ERRMSG_MAX];

const char *cr_strerror(cr_err code)
{
    switch (code) {
    case CR_OK: return "ok";
    case CR_NOTFOUND: return "not found";
    case CR_TIMEOUT: return "timeout";
    case CR_STALE: return "stale version";
    case CR_ERR_NOMEM: return "out of memory";
    case CR_ERR_INVALID: return "invalid argument";
    case CR_ERR_PROTO: return "protocol error";
    case CR_ERR_NET: return "network error";
    case CR_ERR_STORE: return "storage error";
    case CR_ERR_INDEX: return "index error";
    case CR_ERR_MODEL: return "model error";
    case CR_ERR_IO: return "I/O error";
    case CR_ERR_OVERLOADED: return "overloaded";
    case CR_ERR_DEADLINE: return "deadline exceeded";
    case CR_ERR_UNSUPPORTED: return "unsupported";
    case CR_ERR_INTERNAL: return "internal error";
    case CR_ERR_UNAVAILABLE: return "unavailable";
    }
    return "unknown error";
}

cr_err cr_error_set(cr_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return code;
}

cr_err cr_error_wrap(cr_err code, const char *fmt, ...)
{
    char prefix[256];
    char old[CR_ERRMSG_MAX];
    va_list ap;

    memcpy(old, errmsg, sizeof old);
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (old[0]) {
        /* Built by hand: snprintf("%s: %s") into a buffer of the same size trips
         * -Wformat-truncation, and truncating here is intended. */
        size_t a = strlen(prefix), b = strlen(old);
        if (a > CR_ERRMSG_MAX - 3)
            a = CR_ERRMSG_MAX - 3;
        if (b > CR_ERRMSG_MAX - 3 - a)
            b = CR_ERRMSG_MAX - 3 - a;
        memcpy(errmsg, prefix, a);
        memcpy(errmsg + a, ": ", 2);
        memcpy(errmsg + a + 2, old, b);
        errmsg[a + 2 + b] = '\0';
    } else {
        snprintf(errmsg, sizeof errmsg, "%s", prefix);
    }
    return code;
}

const char *cr_error_message(void)
{
    return errmsg;
}

void cr_error_clear(void)
{
    errmsg[0] = '\0';
}
