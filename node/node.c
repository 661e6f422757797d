#include "node/node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/wire.h"
#include "coordinator/clustermap.h"
#include "coordinator/coord.h"
#include "encoder/server.h"
#include "gateway/http.h"
#include "jobs/broker.h"
#include "common/curve.h"
#include "shard/engine.h"
#include "shard/server.h"

#define NODE_DEFAULT_INDEX "HNSW32"
#define NODE_WAIT_SLICE_MS 50

/* A role run on its own thread. `err` is written by that thread before it ends and read only
 * after it is joined or `failed` is seen (cr_error_message() is per thread). */
typedef struct role_thread {
    pthread_t tid;
    int started; /* tid is valid: join it */
    node *n;
    char what[32];
    cr_err rc;
    char err[256];
} role_thread;

typedef struct shard_role {
    shard_engine *engine;
    shard_server_opts o;
    char bind[64];
    shard_server *srv;
} shard_role;

typedef struct enc_role {
    enc_service *svc;
    enc_server_opts o;
    enc_server *srv;
} enc_role;

struct node {
    node_opts o;
    void *zctx;
    shard_role shards[NODE_MAX_SHARDS];
    enc_role enc;
    coord_map *map;
    const char *shard_dir;      /* "shard" (DATA/shard-N), or "group" for a `cirrus build` dir */
    coord_placement placement;  /* legacy for shard-N/ dirs; a build's from its cluster.json */
    coord_server *coord;
    role_thread coord_th;
    gw_http *gw;
    jobs_broker *jobs; /* with --worker-bind: jobs under DATA/jobs */
    volatile sig_atomic_t stop;    /* every role's stop flag */
    _Atomic(role_thread *) failed; /* the first role that ended with an error */
};

node_opts node_default_opts(void)
{
    node_opts o;
    memset(&o, 0, sizeof o);
    o.shards = 1;
    o.bind = "tcp://127.0.0.1:7700";
    o.spin_us = 0; /* every role shares the same cores: spinning slows the searches (measured) */
    o.query_cache = -1;
    return o;
}

/* A role that ends with an error while the others run would leave its shard group (or the
 * encoder) down for good: the whole node stops instead, and reports it. */
static void role_failed(role_thread *t, cr_err rc)
{
    role_thread *none = NULL;
    t->rc = rc;
    snprintf(t->err, sizeof t->err, "%s", cr_error_message());
    atomic_compare_exchange_strong(&t->n->failed, &none, t);
    t->n->stop = 1;
}

static void *coord_main(void *arg)
{
    node *n = arg;
    cr_err rc = coord_server_serve(n->coord, &n->stop);
    if (rc)
        role_failed(&n->coord_th, rc);
    return NULL;
}

/* Starts fn(arg) on a thread; th->started only when it did. */
static cr_err role_start(node *n, role_thread *th, void *(*fn)(void *), void *arg)
{
    int e;
    th->n = n;
    e = pthread_create(&th->tid, NULL, fn, arg);
    if (e != 0)
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the %s thread: %s", th->what,
                            strerror(e));
    th->started = 1;
    return CR_OK;
}

static void role_join(role_thread *th)
{
    if (th->started)
        pthread_join(th->tid, NULL);
    th->started = 0;
}

static cr_err open_encoder(node *n)
{
    const node_opts *o = &n->o;
    enc_service_opts eo = enc_service_default_opts();
    eo.model = o->model;
    eo.phi = o->phi;
    eo.combiner = o->combiner;
    eo.vocab = o->vocab;
    eo.threads = o->threads;
    if (o->precision && enc_clip_parse_precision(o->precision, &eo.precision))
        return CR_ERR_INVALID;
    if (o->preprocess && enc_preprocess_parse(o->preprocess, &eo.preprocess))
        return CR_ERR_INVALID;
    return enc_service_open(&n->enc.svc, &eo);
}

/* 1 when `dir` holds no shard yet (creation-time flags then take their defaults). */
static int shard_dir_is_new(const char *dir)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    return stat(path, &st) != 0;
}

static cr_err open_shard(node *n, int i, int dim)
{
    const node_opts *o = &n->o;
    shard_role *r = &n->shards[i];
    shard_engine_opts eo = shard_engine_default_opts();
    char dir[4096];
    cr_err rc;
    snprintf(dir, sizeof dir, "%s/%s-%d", o->data, n->shard_dir, i);
    eo.create = 1;
    eo.keep_images = o->keep_images;
    eo.dim = dim;
    eo.factory = o->index ? o->index : shard_dir_is_new(dir) ? NODE_DEFAULT_INDEX : NULL;
    /* An existing shard keeps the metric it was made with; only an explicit metric is checked
     * against it (a new one is made with ip when none is given). */
    eo.metric_set = o->metric != NULL;
    if (eo.metric_set && shard_index_metric_parse(o->metric, &eo.metric))
        return CR_ERR_INVALID;
    rc = shard_engine_open(&r->engine, dir, &eo);
    if (rc)
        return cr_error_wrap(rc, "shard %d%s", i,
                             dim ? "" : " (give --model or --dim for a new catalog)");
    snprintf(r->bind, sizeof r->bind, "inproc://serve-shard-%d", i);
    r->o = shard_server_default_opts();
    r->o.bind = r->bind;
    r->o.zmq_ctx = n->zctx;
    r->o.spin_us = o->spin_us;
    return CR_OK;
}

/* A directory written by `cirrus build` (DATA/cluster.json beside DATA/group-G/) is served
 * with its groups and its placement; any other keeps DATA/shard-N/ and the legacy placement. */
static cr_err find_layout(node *n)
{
    char path[4200];
    struct stat st;
    coord_map *m;
    cr_err rc;
    n->shard_dir = "shard";
    n->placement = COORD_PLACEMENT_LEGACY;
    snprintf(path, sizeof path, "%s/cluster.json", n->o.data);
    if (stat(path, &st) != 0)
        return CR_OK;
    if (!(m = calloc(1, sizeof *m)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = coord_map_load(path, m);
    if (!rc && n->o.shards != 1 && n->o.shards != m->n_groups)
        rc = cr_error_set(CR_ERR_INVALID, "%s names %d groups, not --shards %d", path,
                          m->n_groups, n->o.shards);
    if (!rc && m->n_groups > NODE_MAX_SHARDS)
        rc = cr_error_set(CR_ERR_INVALID, "%s: more than %d groups", path, NODE_MAX_SHARDS);
    if (!rc) {
        n->o.shards = m->n_groups;
        n->placement = m->placement;
        n->shard_dir = "group";
    }
    free(m);
    return rc;
}

static cr_err open_shards(node *n, int dim)
{
    cr_err rc = find_layout(n);
    if (rc)
        return rc;
    if (mkdir(n->o.data, 0755) != 0 && errno != EEXIST)
        return cr_error_set(CR_ERR_IO, "cannot create %s", n->o.data);
    for (int i = 0; i < n->o.shards && !rc; i++)
        rc = open_shard(n, i, dim);
    return rc;
}

/* Each server returns from open bound and serving. */
static cr_err start_backends(node *n)
{
    cr_err rc;
    for (int i = 0; i < n->o.shards; i++) {
        shard_role *r = &n->shards[i];
        if ((rc = shard_server_open(&r->srv, r->engine, &r->o)))
            return cr_error_wrap(rc, "shard %d", i);
    }
    if (!n->enc.svc)
        return CR_OK;
    n->enc.o = enc_server_default_opts();
    n->enc.o.bind = "inproc://serve-encoder";
    n->enc.o.zmq_ctx = n->zctx;
    if ((rc = enc_server_open(&n->enc.srv, n->enc.svc, &n->enc.o)))
        return cr_error_wrap(rc, "encoder");
    return CR_OK;
}

/* The job broker (DATA/jobs), reached by the coordinator through an inproc endpoint. */
static cr_err start_jobs(node *n)
{
    jobs_broker_opts o = jobs_broker_default_opts();
    char dir[4096], bind[64];
    cr_err rc;
    if (!n->o.worker_bind)
        return CR_OK;
    snprintf(dir, sizeof dir, "%s/jobs", n->o.data);
    cr_wire_inproc_name(bind, sizeof bind, "serve-jobs");
    o.dir = dir;
    o.bind = bind;
    o.worker_bind = n->o.worker_bind;
    o.zmq_ctx = n->zctx;
    /* Garment item ids are looked up through the node's own coordinator (the broker's DEALER
     * speaks plaintext: with CURVE on the bind they are refused with a clear error). */
    o.items = n->o.curve ? NULL : n->o.bind;
    o.curve = n->o.curve; /* CURVE workers on a tcp:// --worker-bind (shares the node's ZAP) */
    if (n->o.job_attempts)
        o.attempts = n->o.job_attempts;
    if (n->o.job_queue)
        o.queue = n->o.job_queue;
    if (n->o.job_heartbeat_ms)
        o.heartbeat_ms = n->o.job_heartbeat_ms;
    if (n->o.job_result_ttl_ms)
        o.result_ttl_ms = n->o.job_result_ttl_ms;
    if (n->o.job_store_mb)
        o.store_mb = n->o.job_store_mb;
    if ((rc = jobs_broker_open(&n->jobs, &o)))
        return cr_error_wrap(rc, "job broker");
    return CR_OK;
}

static void fill_map(node *n)
{
    coord_map *map = n->map;
    if (n->jobs)
        snprintf(map->jobs, sizeof map->jobs, "%s", jobs_broker_endpoint(n->jobs));
    if (n->enc.svc) {
        snprintf(map->encoders[0], sizeof map->encoders[0], "%s", n->enc.o.bind);
        map->n_encoders = 1;
    }
    snprintf(map->bind, sizeof map->bind, "%s", n->o.bind);
    map->n_groups = n->o.shards;
    for (int i = 0; i < n->o.shards; i++) {
        map->n_replicas[i] = 1;
        snprintf(map->replicas[i][0], sizeof map->replicas[i][0], "%s", n->shards[i].bind);
    }
    map->metric_l2 = shard_engine_metric(n->shards[0].engine) == SHARD_INDEX_METRIC_L2;
    map->hedge_ms = 1000; /* one replica per group: nothing to hedge to */
    map->placement = n->placement;
    map->default_method = n->enc.svc ? (int)enc_service_default_method(n->enc.svc) : 3;
}

static int gw_ready(void *ctx)
{
    return coord_server_ready(((node *)ctx)->coord);
}

/* The coordinator's metrics, then the job broker's (cirrus_jobs_*) when it runs. */
static cr_err gw_metrics(void *ctx, char **text, size_t *len)
{
    node *n = ctx;
    cr_err rc = coord_server_metrics(n->coord, text, len);
    if (!rc && n->jobs)
        rc = jobs_broker_metrics(n->jobs, text, len);
    return rc;
}

static cr_err start_front(node *n)
{
    coord_server_opts co = coord_server_default_opts();
    cr_err rc;
    fill_map(n);
    co.map = n->map;
    co.zmq_ctx = n->zctx;
    co.spin_us = n->o.spin_us;
    if (n->o.query_cache >= 0)
        co.query_cache = (size_t)n->o.query_cache;
    co.curve = n->o.curve;
    if ((rc = coord_server_open(&n->coord, &co)))
        return rc;
    snprintf(n->coord_th.what, sizeof n->coord_th.what, "coordinator");
    if ((rc = role_start(n, &n->coord_th, coord_main, n)))
        return rc;
    if (n->o.http) {
        gw_hooks hooks = {.ctx = n, .ready = gw_ready, .metrics = gw_metrics};
        gw_http_opts ho = gw_http_default_opts();
        ho.cors_origin = n->o.http_cors;
        ho.curve = n->o.curve; /* its own key: the ZAP handler accepts it */
        ho.curve_server_pub = n->o.curve ? n->o.curve->pub : NULL;
        ho.keys_file = n->o.http_keys;
        ho.tls_cert = n->o.http_tls_cert;
        ho.tls_key = n->o.http_tls_key;
        rc = gw_http_start(&n->gw, n->o.http, n->o.bind, &hooks, &ho);
    }
    return rc;
}

static cr_err check_opts(const node_opts *o)
{
    if (!o->data)
        return cr_error_set(CR_ERR_INVALID, "a data directory is required");
    if (o->shards < 1 || o->shards > NODE_MAX_SHARDS)
        return cr_error_set(CR_ERR_INVALID, "shards must be 1..%d", NODE_MAX_SHARDS);
    if (!o->bind)
        return cr_error_set(CR_ERR_INVALID, "a bind endpoint is required");
    return CR_OK;
}

static cr_err node_start(node *n)
{
    int dim;
    cr_err rc;
    if (n->o.model && (rc = open_encoder(n)))
        return rc;
    dim = n->enc.svc ? enc_service_embed_dim(n->enc.svc) : n->o.dim;
    if (n->o.dim && n->enc.svc && n->o.dim != dim)
        return cr_error_set(CR_ERR_INVALID, "--dim %d differs from the model's embedding size %d",
                            n->o.dim, dim);
    if ((rc = cr_wire_ctx_new(&n->zctx)) || (rc = open_shards(n, dim)) || (rc = start_backends(n)) ||
        (rc = start_jobs(n)) || (rc = start_front(n)))
        return rc;
    CR_INFO("serve", "cirrus serve: %d shard(s) of dim %d (%s, %s)%s on %s", n->o.shards, dim,
            shard_engine_factory(n->shards[0].engine), n->map->metric_l2 ? "l2" : "ip",
            n->enc.svc ? " with a CLIP encoder" : " (vectors only: no --model)", n->o.bind);
    return CR_OK;
}

cr_err node_open(node **out, const node_opts *o)
{
    node *n;
    cr_err rc = check_opts(o);
    if (rc)
        return rc;
    n = calloc(1, sizeof *n);
    if (!n || !(n->map = calloc(1, sizeof *n->map))) {
        free(n);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    n->o = *o;
    if ((rc = node_start(n))) {
        char why[512];
        snprintf(why, sizeof why, "%s", cr_error_message());
        node_close(&n);
        return cr_error_set(rc, "%s", why);
    }
    *out = n;
    return CR_OK;
}

const char *node_endpoint(const node *n)
{
    return n->o.bind;
}

static cr_err failure(node *n)
{
    role_thread *t = atomic_load(&n->failed);
    return t ? cr_error_set(t->rc, "%s: %s", t->what, t->err) : CR_OK;
}

cr_err node_wait(node *n, volatile sig_atomic_t *stop)
{
    while (!*stop && !n->stop)
        cr_clock_sleep_ms(NODE_WAIT_SLICE_MS);
    return failure(n);
}

cr_err node_close(node **pp)
{
    node *n = pp ? *pp : NULL;
    cr_err rc;
    if (!n)
        return CR_OK;
    n->stop = 1; /* the roles started so far stop, finishing queued writes */
    gw_http_stop(&n->gw);
    role_join(&n->coord_th);
    coord_server_close(&n->coord);
    jobs_broker_close(&n->jobs);
    rc = failure(n);
    /* A server whose threads did not stop still uses its engine or service: leave those. */
    for (int i = 0; i < NODE_MAX_SHARDS; i++)
        if (shard_server_close(&n->shards[i].srv) != CR_TIMEOUT)
            shard_engine_close(&n->shards[i].engine);
    if (enc_server_close(&n->enc.srv) != CR_TIMEOUT)
        enc_service_close(&n->enc.svc);
    cr_wire_ctx_term(&n->zctx);
    free(n->map);
    free(n);
    *pp = NULL;
    return rc;
}
