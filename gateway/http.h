/* http.h — the HTTP/JSON API (libmicrohttpd; the only file that includes it), a client of the
 * coordinator: it calls the coordinator's public ZeroMQ endpoint through libcirrus.
 *
 *   GET  /healthz           200 while the process runs
 *   GET  /readyz            200 when every shard group has a live replica, else 503
 *   GET  /metrics           Prometheus text format (requests, errors, latency, replicas up)
 *   GET  /                  the web page for composed search (gateway/web/index.html)
 *   GET  /openapi.json      the OpenAPI 3 document of every endpoint (gateway/openapi.json)
 *   /v1/...                 the API resources: see api.h (search, items, stats)
 *
 * Serving: one event-loop thread reads requests and answers the operations endpoints itself;
 * API requests go to 8 worker threads (64 more may wait; past that, 429), which call the
 * coordinator's own public endpoint through libcirrus, so they take exactly the path ZeroMQ
 * clients take. A slow or hung backend holds workers, never the health endpoints. Limits: 512
 * connections, 128 per client address; the request line and headers must arrive within 10 s
 * (of the accept or the previous answer), the body within 30 s more; 15 s without a byte
 * closes a connection.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stddef.h>

#include "common/err.h"

typedef struct gw_http gw_http;

/* What the process behind the API reports: /readyz and /metrics ask these (from the HTTP
 * thread, so they must be thread-safe). Either may be NULL: ready, and no metrics but the
 * gateway's own. */
typedef struct gw_hooks {
    void *ctx;
    int (*ready)(void *ctx);                               /* 1 = ready */
    cr_err (*metrics)(void *ctx, char **text, size_t *len); /* malloc'd Prometheus text */
} gw_hooks;

/* Options (gw_http_default_opts; NULL to gw_http_start means those). */
typedef struct gw_http_opts {
    /* --http-cors: NULL or "" = CORS off (no Access-Control-* headers; OPTIONS is a 404);
     * "*" = any origin; else a comma-separated list of origins ("https://a.example,
     * http://localhost:8080"), each allowed by echoing it. When on, every answer to an allowed
     * origin carries Access-Control-Allow-Origin and OPTIONS preflights are answered 204. */
    const char *cors_origin;
    size_t body_max; /* bytes of a request body; past it 413 (0 = GW_BODY_MAX_DEFAULT) */
    /* CURVE toward the coordinator's tcp:// endpoint (common/curve.h; copied): the key the
     * API's client uses and the coordinator's public key. NULL = the environment's
     * (client/client.h), else plaintext. */
    const struct cr_curve *curve;
    const char *curve_server_pub;
    /* --http-keys: the API keys file (auth.h); NULL = no keys, every route open. Read again
     * on SIGHUP (gw_http_start installs common/daemon.h's handler). */
    const char *keys_file;
    /* --http-tls-cert / --http-tls-key: PEM files; both = HTTPS only (GnuTLS, through
     * libmicrohttpd), neither = plain HTTP. */
    const char *tls_cert, *tls_key;
} gw_http_opts;

gw_http_opts gw_http_default_opts(void);

/* Listens on `bind` ("HOST:PORT", or ":PORT" for 127.0.0.1:PORT: serving every interface
 * takes an explicit 0.0.0.0); `endpoint` is the coordinator's ZeroMQ endpoint the API
 * forwards to. */
cr_err gw_http_start(gw_http **out, const char *bind, const char *endpoint,
                     const gw_hooks *hooks, const gw_http_opts *o);
void gw_http_stop(gw_http **pp);

#endif
