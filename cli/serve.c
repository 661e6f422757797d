/* cirrus serve — the embedded mode (node/node.h) from the command line: a coordinator, N
 * shards and (with --model) an encoder in one process, data in one directory. Clients use the
 * same Requests on the public endpoint as with a distributed cluster. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/daemon.h"
#include "common/log.h"
#include "encoder/clip_model.h"
#include "node/node.h"

static volatile sig_atomic_t serve_stop;

static void on_signal(int sig)
{
    (void)sig;
    serve_stop = 1;
}

typedef struct serve_opts {
    const char *data, *model, *phi, *combiner, *index, *bind, *metric, *preprocess, *vocab, *http,
        *http_cors, *worker_bind, *precision;
    const char *curve_secret, *curve_allow, *http_keys, *tls_cert, *tls_key; /* security.md */
    long long shards, dim, threads, spin_us, query_cache, job_attempts, job_queue, job_hb, job_ttl, job_mb;
    int keep_images;
} serve_opts;

static int usage(FILE *out)
{
    fprintf(out,
            "Usage: cirrus serve --data DIR [--model PATH] [--phi FILE] [--combiner FILE]\n"
            "                    [--shards N] [--index FACTORY] [--bind ENDPOINT] [--dim D]\n"
            "                    [--metric ip|l2] [--preprocess clip|targetpad|squarepad]\n"
            "                    [--threads T] [--precision fp32|bf16] [--http HOST:PORT] [--http-cors ORIGINS]\n"
            "                    [--spin-us N] [--curve-secret FILE --curve-allow DIR]\n"
            "                    [--http-keys FILE] [--http-tls-cert PEM --http-tls-key PEM]\n"
            "                    [--worker-bind EP] [--job-attempts N]\n"
            "                    [--job-queue N] [--job-heartbeat-ms MS] [--job-result-ttl S]\n"
            "                    [--job-store-mb MB] [--keep-images] [--query-cache N]\n"
            "Runs a coordinator, N shards (DIR/shard-I) and, with --model, a CLIP encoder in one\n"
            "process. The first run creates the shards (dimension from the model, or --dim);\n"
            "later runs reopen them. Stop with Ctrl-C or SIGTERM (writes are finished and the\n"
            "indexes snapshotted). --spin-us: busy-poll this long after traffic (lower latency\n"
            "for CPU; 0 = never). --http-cors: \"*\" or comma-separated origins the HTTP API\n"
            "allows (CORS headers, OPTIONS preflights); off by default. Defaults: --shards 1 --index HNSW32 --bind "
            "tcp://127.0.0.1:7700 --spin-us 0.\n"
            "--curve-secret/--curve-allow: CURVE on a tcp:// --bind (allowed client keys: the\n"
            "*.pub files of DIR); --http-keys: API keys with roles for --http (reloaded on\n"
            "SIGHUP); --http-tls-*: HTTPS. See docs/security.md. --worker-bind: run the\n"
            "generation job broker (jobs in DIR/jobs; diffusion workers connect here; defaults\n"
            "--job-attempts 3 --job-queue 1000 --job-heartbeat-ms 1000 --job-result-ttl 3600\n"
            "--job-store-mb 1024). --keep-images: the shards keep each upserted item's original\n"
            "image (GET /v1/items/{id}/image, garment ids of jobs; disk cost: docs/operations.md).\n"
            "--query-cache N: composed query vectors kept (LRU, at most 64 MiB; default 1024,\n"
            "0 = off); a repeated composed query skips the encoder (docs/performance.md).\n");
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
        {"http-cors", required_argument, 0, 'C'}, {"help", no_argument, 0, 'h'},
        {"curve-secret", required_argument, 0, 'K'}, {"curve-allow", required_argument, 0, 'A'},
        {"http-keys", required_argument, 0, 'k'}, {"http-tls-cert", required_argument, 0, 'T'},
        {"http-tls-key", required_argument, 0, 'Y'},
        {"worker-bind", required_argument, 0, 'W'}, {"job-attempts", required_argument, 0, 'N'},
        {"job-queue", required_argument, 0, 'Q'}, {"job-heartbeat-ms", required_argument, 0, 'B'},
        {"job-result-ttl", required_argument, 0, 'L'}, {"job-store-mb", required_argument, 0, 'J'},
        {"keep-images", no_argument, 0, 'I'}, {"precision", required_argument, 0, 'R'},
        {"query-cache", required_argument, 0, 'q'},
        {0, 0, 0, 0}};
    int c;
    o->shards = 1;
    o->index = NULL; /* as the shard was made (HNSW32 for a new one) */
    o->bind = "tcp://127.0.0.1:7700";
    o->metric = NULL; /* as the shard was made (ip for a new one) */
    o->spin_us = 0; /* every node shares the same cores: spinning slows the searches (measured) */
    o->query_cache = -1;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        long long *t = c == 's' ? &o->shards : c == 'D' ? &o->dim : c == 't' ? &o->threads
                     : c == 'S' ? &o->spin_us : c == 'q' ? &o->query_cache : NULL;
        long long *jt = c == 'N' ? &o->job_attempts : c == 'Q' ? &o->job_queue
                      : c == 'B' ? &o->job_hb : c == 'L' ? &o->job_ttl : c == 'J' ? &o->job_mb
                                                                         : NULL;
        if (jt) {
            if (cr_parse_ll(optarg, c == 'B' ? 10 : 1, c == 'N' ? 100 : c == 'B' ? 60000
                                                        : 100000000, jt)) {
                cli_error("serve", "--%s: %s", c == 'N' ? "job-attempts" : c == 'Q' ? "job-queue"
                          : c == 'B' ? "job-heartbeat-ms" : c == 'L' ? "job-result-ttl"
                                     : "job-store-mb", cr_error_message());
                return CLI_USAGE;
            }
            continue;
        }
        if (t) {
            if (cr_parse_ll(optarg, c == 's' ? 1 : 0,
                            c == 's' ? NODE_MAX_SHARDS : c == 'S' ? 100000 : c == 'q' ? 1000000 : 65536,
                            t)) {
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
        case 'C': o->http_cors = optarg; break;
        case 'W': o->worker_bind = optarg; break;
        case 'I': o->keep_images = 1; break;
        case 'R': {
            enc_clip_precision pr;
            if (enc_clip_parse_precision(optarg, &pr)) {
                cli_error("serve", "--precision: %s", cr_error_message());
                return CLI_USAGE;
            }
            o->precision = optarg;
            break;
        }
        case 'K': o->curve_secret = optarg; break;
        case 'A': o->curve_allow = optarg; break;
        case 'k': o->http_keys = optarg; break;
        case 'T': o->tls_cert = optarg; break;
        case 'Y': o->tls_key = optarg; break;
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

static node_opts node_opts_of(const serve_opts *s)
{
    node_opts o = node_default_opts();
    o.data = s->data;
    o.model = s->model;
    o.phi = s->phi;
    o.combiner = s->combiner;
    o.vocab = s->vocab;
    o.preprocess = s->preprocess;
    o.index = s->index;
    o.metric = s->metric;
    o.bind = s->bind;
    o.http = s->http;
    o.http_cors = s->http_cors;
    o.http_keys = s->http_keys;
    o.http_tls_cert = s->tls_cert;
    o.http_tls_key = s->tls_key;
    o.shards = (int)s->shards;
    o.dim = (int)s->dim;
    o.threads = (int)s->threads;
    o.precision = s->precision;
    o.spin_us = (unsigned)s->spin_us;
    o.query_cache = s->query_cache;
    o.worker_bind = s->worker_bind;
    o.job_attempts = (uint32_t)s->job_attempts;
    o.job_queue = (uint32_t)s->job_queue;
    o.job_heartbeat_ms = (uint32_t)s->job_hb;
    o.job_result_ttl_ms = (uint64_t)s->job_ttl * 1000;
    o.job_store_mb = (size_t)s->job_mb;
    o.keep_images = s->keep_images;
    return o;
}

int cli_cmd_serve(cli_ctx *ctx, int argc, char **argv)
{
    serve_opts so = {0};
    node_opts o;
    node *n = NULL;
    cr_curve curve;
    int curve_on = 0;
    struct sigaction sa;
    int ret = parse(ctx, &so, argc, argv);
    cr_err rc;

    if (ret >= 0)
        return ret;
    cr_daemon_tune_malloc(); /* before the node's threads: see common/daemon.h */
    if (cr_log_threshold > CR_LOG_INFO)
        cr_log_set_level(CR_LOG_INFO);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    o = node_opts_of(&so);
    if (cr_curve_flags(&curve, so.curve_secret, so.curve_allow, 1, &curve_on)) {
        cli_error("serve", "%s", cr_error_message());
        return CLI_USAGE;
    }
    o.curve = curve_on ? &curve : NULL;
    if (node_open(&n, &o)) {
        cli_error("serve", "%s", cr_error_message());
        return CLI_FAIL;
    }
    rc = node_wait(n, &serve_stop);
    if (rc)
        cli_error("serve", "%s", cr_error_message());
    if (node_close(&n) && !rc) {
        cli_error("serve", "%s", cr_error_message());
        rc = CR_ERR_INTERNAL;
    }
    return rc ? CLI_FAIL : CLI_OK;
}
