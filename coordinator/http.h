/* http.h — the coordinator's HTTP/JSON API (libmicrohttpd; the only file that includes it).
 *
 *   GET  /healthz           200 while the process runs
 *   GET  /readyz            200 when every shard group has a live replica, else 503
 *   GET  /metrics           Prometheus text format (requests, errors, latency, replicas up)
 *   POST /v1/search         JSON query in, the CLI's --json search shape out
 *   GET  /v1/items/{id}     one item (attributes and vector), 404 when absent
 *
 * Search body: exactly one of "vector": [..], "text": "..", "image": "<base64>",
 * "item_id": "..", or a composed query "ref_id": ".." (or "image") with "caption",
 * optional "caption2" and "method" (searle|combiner|sum|text|image); plus optional "k" (10),
 * "filter" (the text filter language), "group_by", "group_size", "offset", "nprobe", "ef",
 * "exact", "include_metadata" (true). Errors: {"error": message, "code": n} with 400 for bad
 * input, 404 not found, 503 overloaded/unavailable, 504 deadline, 500 otherwise.
 * API requests go to the coordinator's own public endpoint through libcirrus, so they take
 * exactly the path ZeroMQ clients take.
 */
#ifndef COORD_HTTP_H
#define COORD_HTTP_H

#include "common/err.h"

typedef struct coord_http coord_http;
struct coord_app;

/* Listens on `bind` ("host:port" or ":port"); `endpoint` is the coordinator's ZeroMQ endpoint
 * the API forwards to. */
cr_err coord_http_start(coord_http **out, const char *bind, const char *endpoint,
                        struct coord_app *app);
void coord_http_stop(coord_http **pp);

#endif
