/* limits.h — the HTTP API's request limits, and the one outcome of its own beside cr_err's. */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

#include "common/err.h"

/* What the gateway itself refuses before any call: a body or image over its limit (413). Never
 * on the wire; gw_http_status / gw_error_name know it. */
#define GW_ERR_TOO_LARGE ((cr_err)-100)
/* The image of a generation job that has not ended yet (409 not_ready). Never on the wire. */
#define GW_ERR_NOT_READY ((cr_err)-101)

#define GW_BODY_MAX_DEFAULT (48u << 20) /* bytes of a request body (a batch of base64 images) */
#define GW_IMAGE_MAX (16u << 20)        /* bytes of one decoded image (item or query) */
#define GW_JSON_DEPTH_MAX 32            /* arrays and objects nested in a request body */
/* Bytes of request bodies held at once, all connections together (the first
 * GW_BODY_FREE_BYTES of each body do not count): past it a body is dropped as it comes and
 * answered 429, so that slow or abusive uploads cannot hold 512 x GW_BODY_MAX_DEFAULT. */
#define GW_BODY_BUDGET (128u << 20)
#define GW_BODY_FREE_BYTES (64u << 10)

#endif
