/* cirrus serve — the embedded mode: a coordinator, N shards and (with --model) an encoder in
 * one process, joined by inproc:// sockets, data in one directory. Clients use the same
 * Requests on the public endpoint as with a distributed cluster. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "client/cli.h"
#include "common/config.h"
#include "common/log.h"
#include "coordinator/coord.h"
#include "encoder/server.h"
#include "shard/engine.h"
#include "shard/server.h"

#define SERVE_MAX_SHARDS 64
#define SERVE_DEFAULT_INDEX "HNSW32"

static volatile sig_atomic_t serve_stop;

static void on_signal(int sig)
{
    (void)sig;
    serve_stop = 1;
}

typedef struct serve_opts {
    const char *data, *model, *phi, *combiner, *index, *bind, *metric, *preprocess, *vocab, *http;
    long long shards, dim, threads, spin_us;
} serve_opts;

/* A server run on its own thread. `err` is written by that thread before it ends and read
 * only after it is joined (cr_error_message() is per thread). */
typedef struct serve_thread {
    pthread_t tid;
    int started; /* tid is valid: join it */
    cr_err rc;
    char err[256];
} serve_thread;

typedef struct shard_thread {
    shard_engine *engine;
    shard_server_opts o;
    char bind[64];
    serve_thread th;
} shard_thread;

typedef struct enc_thread {
    enc_service *svc;
    enc_server_opts o;
    serve_thread th;
} enc_thread;

/* A server that ends with an error while the others run would leave its shard group (or the
 * encoder) down for good: stop the whole process instead, and exit non-zero. */
static void thread_failed(serve_thread *t, cr_err rc)
{
    t->rc = rc;
    snprintf(t->err, sizeof t->err, "%s", cr_error_message());
    serve_stop = 1;
}

static void *shard_main(void *arg)
{
    shard_thread *t = arg;
    cr_err rc = shard_server_run(t->engine, &t->o, &serve_stop);
    if (rc)
        thread_failed(&t->th, rc);
    return NULL;
}

static void *encoder_main(void *arg)
{
    enc_thread *t = arg;
    cr_err rc = enc_server_run(t->svc, &t->o, &serve_stop);
    if (rc)
        thread_failed(&t->th, rc);
    return NULL;
}

/* Starts fn(arg) on a thread; th->started only when it did. */
static cr_err thread_start(serve_thread *th, void *(*fn)(void *), void *arg, const char *what)
{
    int e = pthread_create(&th->tid, NULL, fn, arg);
    if (e != 0)
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the %s thread: %s", what, strerror(e));
    th->started = 1;
    return CR_OK;
}

/* Joins the thread if it was started; CLI_FAIL (after saying why) if its server failed. */
static int thread_join(serve_thread *th, const char *what)
{
    if (!th->started)
        return CLI_OK;
    pthread_join(th->tid, NULL);
    th->started = 0;
    if (!th->rc)
        return CLI_OK;
    cli_error("serve", "%s: %s", what, th->err);
    return CLI_FAIL;
}

/* ZeroMQ starts its I/O and reaper threads with a context's first socket and aborts the
 * process when it cannot. Start them here, first, so that every later thread start that
 * fails is one of ours, reported and survived. */
static cr_err zmq_start(void *zctx)
{
    void *s = zmq_socket(zctx, ZMQ_PAIR);
    if (!s)
        return cr_error_set(CR_ERR_NET, "zmq_socket: %s", zmq_strerror(errno));
    zmq_close(s);
    return CR_OK;
}

static int usage(FILE *out)
{
    fprintf(out,
            "Usage: cirrus serve --data DIR [--model PATH] [--phi FILE] [--combiner FILE]\n"
            "                    [--shards N] [--index FACTORY] [--bind ENDPOINT] [--dim D]\n"
            "                    [--metric ip|l2] [--preprocess clip|targetpad|squarepad]\n"
            "                    [--threads T] [--http HOST:PORT] [--spin-us N]\n"
            "Runs a coordinator, N shards (DIR/shard-I) and, with --model, a CLIP encoder in one\n"
            "process. The first run creates the shards (dimension from the model, or --dim);\n"
            "later runs reopen them. Stop with Ctrl-C or SIGTERM (writes are finished and the\n"
            "indexes snapshotted). --spin-us: busy-poll this long after traffic (lower latency\n"
            "for CPU; 0 = never). Defaults: --shards 1 --index HNSW32 --bind "
            "tcp://127.0.0.1:7700 --spin-us 0.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static int parse(cli_ctx *ctx, serve_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},     {"model", required_argument, 0, 'm'},
        {"phi", required_argument, 0, 'p'},      {"combiner", required_argument, 0, 'c'},
        {"shards", required_argument, 0, 's'},   {"index", required_argument, 0, 'i'},
        {"bind", required_argument, 0, 'b'},     {"dim", required_argument, 0, 'D'},
        {"metric", required_argument, 0, 'M'},   {"preprocess", required_argument, 0, 'P'},
        {"threads", required_argument, 0, 't'},  {"vocab", required_argument, 0, 'v'},
        {"http", required_argument, 0, 'H'},     {"spin-us", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int c;
    o->shards = 1;
    o->index = NULL; /* as the shard was made (HNSW32 for a new one) */
    o->bind = "tcp://127.0.0.1:7700";
    o->metric = NULL; /* as the shard was made (ip for a new one) */
    o->spin_us = 0; /* every node shares the same cores: spinning slows the searches (measured) */
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        long long *t = c == 's' ? &o->shards : c == 'D' ? &o->dim : c == 't' ? &o->threads
                     : c == 'S' ? &o->spin_us : NULL;
        if (t) {
            if (cr_parse_ll(optarg, c == 's' ? 1 : 0,
                            c == 's' ? SERVE_MAX_SHARDS : c == 'S' ? 100000 : 65536, t)) {
                cli_error("serve", "%s", cr_error_message());
                return CLI_USAGE;
            }
            continue;
        }
        switch (c) {
        case 'd': o->data = optarg; break;
        case 'm': o->model = optarg; break;
        case 'p': o->phi = optarg; break;
        case 'c': o->combiner = optarg; break;
        case 'i': o->index = optarg; break;
        case 'b': o->bind = optarg; break;
        case 'M': o->metric = optarg; break;
        case 'P': o->preprocess = optarg; break;
        case 'v': o->vocab = optarg; break;
        case 'H': o->http = optarg; break;
        case 'h': return usage(stdout);
        default: return usage(stderr);
        }
    }
    if (!o->data) {
        cli_error("serve", "--data is required");
        return usage(stderr);
    }
    return -1;
}

static cr_err open_encoder(const serve_opts *o, enc_service **svc)
{
    enc_service_opts eo = enc_service_default_opts();
    eo.model = o->model;
    eo.phi = o->phi;
    eo.combiner = o->combiner;
    eo.vocab = o->vocab;
    eo.threads = (int)o->threads;
    if (o->preprocess && enc_preprocess_parse(o->preprocess, &eo.preprocess))
        return CR_ERR_INVALID;
    return enc_service_open(svc, &eo);
}

/* 1 when `dir` holds no shard yet (creation-time flags then take their defaults). */
static int shard_dir_is_new(const char *dir)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    return stat(path, &st) != 0;
}

static cr_err open_shards(const serve_opts *o, int dim, shard_thread *st, void *ctx)
{
    char dir[4096];
    if (mkdir(o->data, 0755) != 0 && errno != EEXIST)
        return cr_error_set(CR_ERR_IO, "cannot create %s", o->data);
    for (int i = 0; i < (int)o->shards; i++) {
        shard_engine_opts eo = shard_engine_default_opts();
        cr_err rc;
        snprintf(dir, sizeof dir, "%s/shard-%d", o->data, i);
        eo.create = 1;
        eo.dim = dim;
        eo.factory = o->index ? o->index : shard_dir_is_new(dir) ? SERVE_DEFAULT_INDEX : NULL;
        /* An existing shard keeps the metric it was made with; only an explicit --metric is
         * checked against it (a new one is made with ip when none is given). */
        eo.metric_set = o->metric != NULL;
        if (eo.metric_set && shard_index_metric_parse(o->metric, &eo.metric))
            return CR_ERR_INVALID;
        rc = shard_engine_open(&st[i].engine, dir, &eo);
        if (rc)
            return cr_error_wrap(rc, "shard %d", i);
        snprintf(st[i].bind, sizeof st[i].bind, "inproc://serve-shard-%d", i);
        st[i].o = shard_server_default_opts();
        st[i].o.bind = st[i].bind;
        st[i].o.zmq_ctx = ctx;
        st[i].o.spin_us = (unsigned)o->spin_us;
    }
    return CR_OK;
}

int cli_cmd_serve(cli_ctx *ctx, int argc, char **argv)
{
    serve_opts o = {0};
    shard_thread st[SERVE_MAX_SHARDS];
    enc_thread et;
    coord_map *map = calloc(1, sizeof *map);
    coord_server_opts co = coord_server_default_opts();
    struct sigaction sa;
    void *zctx = NULL;
    int ret = parse(ctx, &o, argc, argv), dim;
    cr_err rc;

    memset(st, 0, sizeof st);
    memset(&et, 0, sizeof et);
    if (ret >= 0 || !map) {
        free(map);
        return ret >= 0 ? ret : CLI_FAIL;
    }
    ret = CLI_FAIL;
    if (cr_log_threshold > CR_LOG_INFO)
        cr_log_set_level(CR_LOG_INFO);
    if (o.model && open_encoder(&o, &et.svc)) {
        cli_error("serve", "%s", cr_error_message());
        goto out;
    }
    dim = et.svc ? enc_service_embed_dim(et.svc) : (int)o.dim;
    if (o.dim && et.svc && o.dim != dim) {
        cli_error("serve", "--dim %lld differs from the model's embedding size %d", o.dim, dim);
        goto out;
    }
    zctx = zmq_ctx_new();
    if (!zctx || zmq_start(zctx)) {
        cli_error("serve", "cannot start ZeroMQ: %s", zmq_strerror(errno));
        goto out;
    }
    rc = open_shards(&o, dim, st, zctx);
    if (rc) {
        cli_error("serve", "%s%s", cr_error_message(),
                  dim ? "" : " (give --model or --dim for a new catalog)");
        goto out;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < (int)o.shards; i++) {
        char what[32];
        snprintf(what, sizeof what, "shard %d", i);
        if (thread_start(&st[i].th, shard_main, &st[i], what)) {
            cli_error("serve", "%s", cr_error_message());
            goto out;
        }
    }
    if (et.svc) {
        et.o = enc_server_default_opts();
        et.o.bind = "inproc://serve-encoder";
        et.o.zmq_ctx = zctx;
        if (thread_start(&et.th, encoder_main, &et, "encoder")) {
            cli_error("serve", "%s", cr_error_message());
            goto out;
        }
        snprintf(map->encoders[0], sizeof map->encoders[0], "%s", et.o.bind);
        map->n_encoders = 1;
    }
    snprintf(map->bind, sizeof map->bind, "%s", o.bind);
    map->n_groups = (int)o.shards;
    for (int i = 0; i < (int)o.shards; i++) {
        map->n_replicas[i] = 1;
        snprintf(map->replicas[i][0], sizeof map->replicas[i][0], "%s", st[i].bind);
    }
    map->metric_l2 = shard_engine_metric(st[0].engine) == SHARD_INDEX_METRIC_L2;
    map->hedge_ms = 1000; /* one replica per group: nothing to hedge to */
    map->default_method = et.svc ? (int)enc_service_default_method(et.svc) : 3;
    co.map = map;
    co.zmq_ctx = zctx;
    co.spin_us = (unsigned)o.spin_us;
    co.http_bind = o.http;
    CR_INFO("serve", "cirrus serve: %lld shard(s) of dim %d (%s, %s)%s on %s", o.shards, dim,
            shard_engine_factory(st[0].engine), map->metric_l2 ? "l2" : "ip", et.svc ? " with a CLIP encoder" : " (vectors only: no --model)",
            o.bind);
    rc = coord_server_run(&co, &serve_stop);
    if (rc)
        cli_error("serve", "%s", cr_error_message());
    else
        ret = CLI_OK;
out:
    serve_stop = 1; /* the servers started so far stop, finishing queued writes */
    for (int i = 0; i < SERVE_MAX_SHARDS; i++) {
        char what[32];
        snprintf(what, sizeof what, "shard %d", i);
        if (thread_join(&st[i].th, what) != CLI_OK)
            ret = CLI_FAIL;
    }
    if (thread_join(&et.th, "encoder") != CLI_OK)
        ret = CLI_FAIL;
    for (int i = 0; i < SERVE_MAX_SHARDS; i++)
        shard_engine_close(&st[i].engine);
    enc_service_close(&et.svc);
    if (zctx)
        zmq_ctx_term(zctx);
    free(map);
    return ret;
}
