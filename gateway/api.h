/* api.h — the resources of the HTTP API, served through libcirrus on the gateway's worker
 * threads (http.c owns the connections, limits and threads; this file owns what each
 * endpoint means):
 *
 *   POST   /v1/search        a query (search_body.h) -> {"hits": [...], "partial", ...}
 *   GET    /v1/items/{id}    one item {"id","version","attributes","vector"}; 404 if absent
 *   DELETE /v1/items/{id}    {"id","version"} once the delete is durable on the write quorum
 *   GET    /v1/items/{id}/image  the item's original image as the shards kept it (run with
 *                            --keep-images), with its media type; else a 302 to its image_uri
 *                            attribute; else 404
 *   POST   /v1/items         {"items": [{"id", "vector": [..] | "image": "<base64>",
 *                            "attributes": {..}, "image_uri": "..", "version": n}]} (1..1024
 *                            items) -> {"items": [{"id","version","status"}]}; 200 when every
 *                            item was written (or was stale), else the first failure's status
 *                            with "error" beside "items" (items go to their own groups, so
 *                            the others may be written). A body that does not parse, or any
 *                            item with a bad field, is a 400 and nothing is written.
 *   GET    /v1/stats         the coordinator's stats, one entry per shard group
 *   GET    /v1/schema        the attributes the items hold (json.h), merged over the groups:
 *                            for each, its types and its 100 most frequent string values or
 *                            its numeric range, so that a client can build filters
 *
 * Errors: {"error": {"code": "<name>", "message": ".."}} everywhere (gw_error_name):
 *   400 invalid_argument   a body that does not parse, nests deeper than GW_JSON_DEPTH_MAX,
 *                          or has a bad field (the message names it)
 *   404 not_found          no such item or endpoint
 *   409 version_conflict   a write whose version is not newer than the stored item's (LWW:
 *                          nothing was written for that item; its status says "stale")
 *   409 not_ready          the image of a generation job still queued or running
 *   413 too_large          a body over the gateway's limit, an image over GW_IMAGE_MAX
 *   429 overloaded         too many requests waiting (at the gateway or the coordinator);
 *                          Retry-After says when to retry
 *   501 unsupported, 503 unavailable (no live backend; Retry-After), 504 deadline_exceeded (a
 *   backend or the deadline timed out), 500 otherwise (internal, storage, index, model, io).
 */
#ifndef GW_API_H
#define GW_API_H

#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#include "client/client.h"
#include "common/err.h"
#include "gateway/limits.h"

typedef enum gw_op {
    GW_OP_NONE = 0, /* not an API resource */
    GW_OP_SEARCH,
    GW_OP_ITEM_GET,
    GW_OP_ITEM_DELETE,
    GW_OP_ITEMS_UPSERT,
    GW_OP_STATS,
    GW_OP_ITEM_IMAGE, /* GET /v1/items/{id}/image */
    GW_OP_SCHEMA,
    /* generation jobs: jobs_api.h */
    GW_OP_GENERATE,
    GW_OP_JOB_GET,
    GW_OP_JOB_IMAGE,
    GW_OP_JOB_CANCEL,
    GW_OP_JOBS_LIST
} gw_op;

/* One worker's way to the coordinator: its own client, opened on first use and reopened
 * after a transport failure; a call gives up early once *stopping is set. */
typedef struct gw_caller {
    const char *endpoint;
    const cirrus_client_opts *copts; /* how to open the client (CURVE); NULL = defaults */
    const atomic_int *stopping;
    cirrus_client *cl;
} gw_caller;

void gw_caller_close(gw_caller *c);

/* An answer: status and a malloc'd body, JSON unless `type` says otherwise (a static string,
 * e.g. "image/png"); `location` (malloc'd, or NULL) becomes a Location header. */
typedef struct gw_answer {
    unsigned status;
    char *out;
    size_t out_len;
    const char *type;
    char *location;
} gw_answer;

/* Which resource (method, url) names. For /v1/items/{id}, *id gets the id (malloc'd; free
 * it). CR_ERR_INVALID for a bad id (too long, not UTF-8); GW_OP_NONE in *op when the URL is
 * no API resource (or the method is not one it takes). */
cr_err gw_api_match(const char *method, const char *url, gw_op *op, char **id);

/* Serves one API request (a worker thread) and fills *a. */
void gw_api_serve(gw_caller *c, gw_op op, const char *id, const char *body, size_t len,
                  gw_answer *a);

/* The HTTP status of a cr_err, its error name, and the error body; both http.c and the
 * handlers answer with them. */
unsigned gw_http_status(cr_err code);
const char *gw_error_name(cr_err code);
json_t *gw_error_json(cr_err code, const char *msg); /* new reference */
/* CR_OK when s[0..len) nests arrays and objects at most max deep; else CR_ERR_INVALID. A scan
 * of the raw text (strings skipped), before jansson builds anything. */
cr_err gw_json_depth_check(const char *s, size_t len, int max);
void gw_answer_error(gw_answer *a, cr_err code, const char *msg);
/* Serializes j (consumed) as a JSON answer with `status`. */
void gw_answer_json(gw_answer *a, unsigned status, json_t *j);
/* The request body as a JSON object, or NULL after answering 400 (not JSON, too deep, not an
 * object). New reference. */
json_t *gw_body_object(const char *body, size_t len, gw_answer *a);
/* One request to the coordinator on the worker's client: CR_OK only with the result `want`
 * in *resp (free it with cirrus_response_free); else the error, its message recorded. */
cr_err gw_api_call(gw_caller *g, Cirrus__V1__Request *req, Cirrus__V1__Response__ResultCase want,
                   Cirrus__V1__Response **resp);

#endif
