/* cirrus-coordinator — the public endpoint of a cirrus cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/curve_zap.h"
#include "common/daemon.h"
#include "common/wire.h"
#include "common/log.h"
#include "coordinator/coord.h"
#include "gateway/http.h"
#include "jobs/broker.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define SKEW_DEFAULT STRINGIFY(CR_HLC_MAX_SKEW_MS)

/* What the HTTP front's hooks see: the coordinator and, with --jobs-dir, its job broker. */
typedef struct front_ctx {
    coord_server *s;
    jobs_broker *jobs;
} front_ctx;

static int gw_ready(void *ctx)
{
    return coord_server_ready(((front_ctx *)ctx)->s);
}

/* The coordinator's metrics, then the job broker's (cirrus_jobs_*) when it runs here. */
static cr_err gw_metrics(void *ctx, char **text, size_t *len)
{
    front_ctx *f = ctx;
    cr_err rc = coord_server_metrics(f->s, text, len);
    if (!rc && f->jobs)
        rc = jobs_broker_metrics(f->jobs, text, len);
    return rc;
}

/* The coordinator and, with --http, the HTTP API in front of its public endpoint. */
/* --http-keys, --http-tls-cert, --http-tls-key */
typedef struct http_sec {
    const char *keys, *cert, *key;
} http_sec;

static cr_err serve(const coord_server_opts *o, const char *http, const char *cors,
                    const http_sec *sec, jobs_broker *jobs)
{
    coord_server *s = NULL;
    gw_http *gw = NULL;
    cr_err rc = coord_server_open(&s, o);
    front_ctx fc = {s, jobs};
    if (!rc && http) {
        gw_hooks hooks = {.ctx = &fc, .ready = gw_ready, .metrics = gw_metrics};
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

/* The endpoint this process reaches its own bind on: a wildcard tcp host (`*`, 0.0.0.0)
 * becomes 127.0.0.1. */
static const char *local_endpoint(const char *bind, char *buf, size_t cap)
{
    const char *host = strncmp(bind, "tcp://", 6) == 0 ? bind + 6 : NULL;
    if (host && (strncmp(host, "*:", 2) == 0 || strncmp(host, "0.0.0.0:", 8) == 0)) {
        snprintf(buf, cap, "tcp://127.0.0.1%s", strchr(host, ':'));
        return buf;
    }
    snprintf(buf, cap, "%s", bind);
    return buf;
}

int main(int argc, char **argv)
{
    char *map_path, *bind, *log_level, *http, *cors, *curve_secret, *curve_allow;
    char *http_keys, *tls_cert, *tls_key, *jobs_dir, *worker_bind;
    long long workers, deadline, backend_timeout, spin_us, qcache, qcache_mb, skew_ms, job_attempts, job_queue,
        job_hb, job_ttl, job_mb;
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
        {"query-cache", CR_OPT_INT, &qcache, "1024", 0, 1000000, 0,
         "composed query vectors kept, LRU (0 = off): a repeated composed query skips the encoder"},
        {"query-cache-mb", CR_OPT_INT, &qcache_mb, "64", 1, 65536, 0,
         "bytes the query cache may hold, in MiB"},
        {"version-skew-ms", CR_OPT_INT, &skew_ms, SKEW_DEFAULT, 0, 86400000, 0,
         "how far a client-chosen item version may lead this server's clock (later: rejected)"},
        {"jobs-dir", CR_OPT_STRING, &jobs_dir, NULL, 0, 0, 0,
         "run the generation job broker here (its LMDB job store); needs --worker-bind"},
        {"worker-bind", CR_OPT_STRING, &worker_bind, NULL, 0, 0, 0,
         "endpoint diffusion workers connect to (with --jobs-dir; CURVE with --curve-secret: "
         "workers' keys in --curve-allow)"},
        {"job-attempts", CR_OPT_INT, &job_attempts, "3", 1, 100, 0, "attempts per job"},
        {"job-queue", CR_OPT_INT, &job_queue, "1000", 1, 100000000, 0,
         "most queued jobs (OVERLOADED past it)"},
        {"job-heartbeat-ms", CR_OPT_INT, &job_hb, "1000", 10, 60000, 0,
         "worker heartbeat interval (a worker silent for 3 is dead)"},
        {"job-result-ttl", CR_OPT_INT, &job_ttl, "3600", 1, 100000000, 0,
         "seconds a result is kept"},
        {"job-store-mb", CR_OPT_INT, &job_mb, "1024", 1, 1000000, 0,
         "job store size in MiB (results may use half)"},
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
    jobs_broker *jobs = NULL;
    void *zctx = NULL;
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
    if (!jobs_dir != !worker_bind) {
        ret = cr_daemon_fail("--jobs-dir and --worker-bind go together");
        goto out;
    }
    if (jobs_dir) {
        jobs_broker_opts jo = jobs_broker_default_opts();
        char ep[64], items_ep[256];
        cr_wire_inproc_name(ep, sizeof ep, "coord-jobs");
        jo.dir = jobs_dir;
        jo.bind = ep;
        jo.worker_bind = worker_bind;
        /* garment item ids: looked up through this coordinator's own front (plaintext only) */
        jo.items = curve_on ? NULL : local_endpoint(map->bind, items_ep, sizeof items_ep);
        jo.curve = o.curve; /* workers on a tcp:// --worker-bind: keys of --curve-allow */
        jo.attempts = (uint32_t)job_attempts;
        jo.queue = (uint32_t)job_queue;
        jo.heartbeat_ms = (uint32_t)job_hb;
        jo.result_ttl_ms = (uint64_t)job_ttl * 1000;
        jo.store_mb = (size_t)job_mb;
        if (cr_wire_ctx_new(&zctx) || (jo.zmq_ctx = zctx, jobs_broker_open(&jobs, &jo))) {
            ret = cr_daemon_fail("job broker: %s", cr_error_message());
            goto out;
        }
        snprintf(map->jobs, sizeof map->jobs, "%s", jobs_broker_endpoint(jobs));
        o.jobs_endpoint = jobs_broker_endpoint(jobs);
        o.zmq_ctx = zctx;
    }
    o.map = map;
    o.workers = (int)workers;
    o.spin_us = (unsigned)spin_us;
    o.query_cache = (size_t)qcache;
    o.query_cache_bytes = (size_t)qcache_mb << 20;
    o.default_deadline_ms = (uint32_t)deadline;
    o.backend_timeout_ms = (uint32_t)backend_timeout;
    o.version_skew_ms = (uint64_t)skew_ms;
    o.map_path = map_path;
    o.reload = cr_daemon_reload_flag();
    http_sec sec = {http_keys, tls_cert, tls_key};
    ret = serve(&o, http, cors, &sec, jobs) ? cr_daemon_fail("%s", cr_error_message()) : 0;
out:
    jobs_broker_close(&jobs);
    if (zctx)
        cr_wire_ctx_term(&zctx);
    free(map);
    return cr_daemon_end("coordinator", ret);
}
