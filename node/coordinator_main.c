/* cirrus-coordinator — the public endpoint of a cirrus cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/curve_zap.h"
#include "common/daemon.h"
#include "common/log.h"
#include "coordinator/coord.h"
#include "gateway/http.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define SKEW_DEFAULT STRINGIFY(CR_HLC_MAX_SKEW_MS)

static int gw_ready(void *ctx)
{
    return coord_server_ready(ctx);
}

static cr_err gw_metrics(void *ctx, char **text, size_t *len)
{
    return coord_server_metrics(ctx, text, len);
}

/* The coordinator and, with --http, the HTTP API in front of its public endpoint. */
/* --http-keys, --http-tls-cert, --http-tls-key */
typedef struct http_sec {
    const char *keys, *cert, *key;
} http_sec;

static cr_err serve(const coord_server_opts *o, const char *http, const char *cors,
                    const http_sec *sec)
{
    coord_server *s = NULL;
    gw_http *gw = NULL;
    cr_err rc = coord_server_open(&s, o);
    if (!rc && http) {
        gw_hooks hooks = {.ctx = s, .ready = gw_ready, .metrics = gw_metrics};
        gw_http_opts ho = gw_http_default_opts();
        ho.cors_origin = cors;
        /* The API calls this coordinator's own endpoint: with its own key, which the ZAP
         * handler always accepts. */
        ho.curve = o->curve;
        ho.curve_server_pub = o->curve ? o->curve->pub : NULL;
        ho.keys_file = sec->keys;
        ho.tls_cert = sec->cert;
        ho.tls_key = sec->key;
        rc = gw_http_start(&gw, http, o->map->bind, &hooks, &ho);
    }
    if (!rc)
        rc = coord_server_serve(s, cr_daemon_stop_flag());
    gw_http_stop(&gw);
    coord_server_close(&s);
    return rc;
}

int main(int argc, char **argv)
{
    char *map_path, *bind, *log_level, *http, *cors, *curve_secret, *curve_allow;
    char *http_keys, *tls_cert, *tls_key;
    long long workers, deadline, backend_timeout, spin_us, skew_ms;
    cr_opt opts[] = {
        {"map", CR_OPT_STRING, &map_path, NULL, 0, 0, 1,
         "cluster map JSON file (shard groups, encoders; reloaded on SIGHUP)"},
        {"bind", CR_OPT_STRING, &bind, NULL, 0, 0, 0, "public endpoint (overrides the map's)"},
        {"workers", CR_OPT_INT, &workers, "8", 1, 64, 0, "ignored: the coordinator runs every request on one event loop"},
        {"deadline-ms", CR_OPT_INT, &deadline, "10000", 1, 600000, 0,
         "deadline of requests that carry none"},
        {"backend-timeout-ms", CR_OPT_INT, &backend_timeout, "5000", 1, 600000, 0,
         "longest wait for one backend answer"},
        {"http", CR_OPT_STRING, &http, NULL, 0, 0, 0,
         "HOST:PORT for the HTTP/JSON API, /metrics, /healthz, /readyz"},
        {"http-cors", CR_OPT_STRING, &cors, NULL, 0, 0, 0,
         "CORS for the HTTP API: \"*\" or comma-separated origins allowed (default: off)"},
        {"spin-us", CR_OPT_INT, &spin_us, "0", 0, 100000, 0,
         "busy-poll this long after traffic before sleeping (0 = never; lower latency for CPU)"},
        {"version-skew-ms", CR_OPT_INT, &skew_ms, SKEW_DEFAULT, 0, 86400000, 0,
         "how far a client-chosen item version may lead this server's clock (later: rejected)"},
        {"log-level", CR_OPT_STRING, &log_level, "info", 0, 0, 0, "debug|info|warn|error"},
        CR_CURVE_SERVER_OPTS(curve_secret, curve_allow),
        {"http-keys", CR_OPT_STRING, &http_keys, NULL, 0, 0, 0,
         "HTTP API keys file (lines 'ROLES SHA256 NAME': cirrus keygen --http; reloaded on "
         "SIGHUP); without it the HTTP API takes any caller"},
        {"http-tls-cert", CR_OPT_STRING, &tls_cert, NULL, 0, 0, 0,
         "PEM certificate (chain) for HTTPS on --http, with --http-tls-key"},
        {"http-tls-key", CR_OPT_STRING, &tls_key, NULL, 0, 0, 0, "PEM private key for HTTPS"},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    coord_server_opts o = coord_server_default_opts();
    coord_map *map = NULL;
    cr_curve curve;
    int curve_on = 0;
    int ret = cr_daemon_begin("cirrus-coordinator", "CIRRUS_COORDINATOR", opts, nopts, argc,
                              argv);
    if (ret >= 0)
        return ret;
    if (cr_curve_flags(&curve, curve_secret, curve_allow, 1, &curve_on))
        return cr_daemon_end("coordinator", cr_daemon_fail("%s", cr_error_message()));
    o.curve = curve_on ? &curve : NULL;
    map = malloc(sizeof *map);
    if (!map)
        ret = cr_daemon_fail("out of memory");
    else if (coord_map_load(map_path, map))
        ret = cr_daemon_fail("%s", cr_error_message());
    if (ret >= 0)
        goto out;
    if (bind)
        snprintf(map->bind, sizeof map->bind, "%s", bind);
    if (!map->bind[0]) {
        ret = cr_daemon_fail("no bind endpoint (map 'bind' or --bind)");
        goto out;
    }
    o.map = map;
    o.workers = (int)workers;
    o.spin_us = (unsigned)spin_us;
    o.default_deadline_ms = (uint32_t)deadline;
    o.backend_timeout_ms = (uint32_t)backend_timeout;
    o.version_skew_ms = (uint64_t)skew_ms;
    o.map_path = map_path;
    o.reload = cr_daemon_reload_flag();
    http_sec sec = {http_keys, tls_cert, tls_key};
    ret = serve(&o, http, cors, &sec) ? cr_daemon_fail("%s", cr_error_message()) : 0;
out:
    free(map);
    return cr_daemon_end("coordinator", ret);
}
