/* cirrus-shard — serves one partition of a catalog: LMDB store + FAISS index. */
#include <stdio.h>
#include <string.h>

#include "common/curve_zap.h"
#include "common/daemon.h"
#include "common/log.h"
#include "shard/engine.h"
#include "shard/server.h"

int main(int argc, char **argv)
{
    char *dir, *bind, *metric, *factory, *template_path, *log_level, *curve_secret, *curve_allow;
    long long dim, train_size, workers, snap_writes, snap_interval, queue, spin_us, backlog_mb;
    long long merge_max;
    double exact_fraction;
    int create, keep_images;
    cr_opt opts[] = {
        {"dir", CR_OPT_STRING, &dir, NULL, 0, 0, 1, "shard data directory"},
        {"bind", CR_OPT_STRING, &bind, "tcp://127.0.0.1:7701", 0, 0, 0, "endpoint to serve on"},
        {"create", CR_OPT_BOOL, &create, "false", 0, 0, 0,
         "create the shard if DIR holds none (needs --dim and --index)"},
        /* Creation-time parameters have no defaults here: an existing shard keeps the ones it
         * was created with, and only those given (flag, environment or file) are checked. */
        {"dim", CR_OPT_INT, &dim, "0", 0, 65536, 0,
         "vector dimension (with --create; else checked when given)"},
        {"metric", CR_OPT_STRING, &metric, NULL, 0, 0, 0,
         "ip (cosine, the default at --create) or l2; checked when given"},
        {"index", CR_OPT_STRING, &factory, NULL, 0, 0, 0,
         "FAISS factory string, e.g. HNSW32, IVF1024,Flat (with --create; else checked when "
         "given)"},
        {"train-size", CR_OPT_INT, &train_size, "0", 0, 100000000, 0,
         "vectors to train IVF/PQ indexes on (0 = auto)"},
        {"template", CR_OPT_STRING, &template_path, NULL, 0, 0, 0,
         "trained template index file (skips training)"},
        {"workers", CR_OPT_INT, &workers, "2", 1, 64, 0, "search threads"},
        {"write-queue", CR_OPT_INT, &queue, "1024", 1, 1000000, 0,
         "queued write requests before 'overloaded'"},
        {"snapshot-writes", CR_OPT_INT, &snap_writes, "100000", 1, 1000000000, 0,
         "snapshot the index after this many changes"},
        {"snapshot-interval", CR_OPT_INT, &snap_interval, "300", 1, 86400, 0,
         "...or after this many seconds with changes"},
        {"exact-fraction", CR_OPT_DOUBLE, &exact_fraction, "0.02", 0, 0, 0,
         "filters matching at most this fraction of items are searched exactly"},
        {"index-backlog-mb", CR_OPT_INT, &backlog_mb, "256", 0, 1048576, 0,
         "vectors of acknowledged writes that may wait for the ANN index (searched exactly "
         "meanwhile); 0 = index inside each commit"},
        {"keep-images", CR_OPT_BOOL, &keep_images, "false", 0, 0, 0,
         "store each upserted item's original image bytes beside it (GET "
         "/v1/items/{id}/image, garment ids of generation jobs)"},
        {"spin-us", CR_OPT_INT, &spin_us, "300", 0, 100000, 0,
         "busy-poll this long after traffic before sleeping (0 = never; lower latency for CPU)"},
        {"merge-max", CR_OPT_INT, &merge_max, "1", 1, 4096, 0,
         "most concurrent searches queued together that run as one index search (1 = each "
         "alone)"},
        {"log-level", CR_OPT_STRING, &log_level, "info", 0, 0, 0, "debug|info|warn|error"},
        CR_CURVE_SERVER_OPTS(curve_secret, curve_allow),
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    shard_engine_opts eo = shard_engine_default_opts();
    shard_server_opts so = shard_server_default_opts();
    shard_engine *engine = NULL;
    shard_server *srv = NULL;
    cr_curve curve;
    int curve_on = 0;
    int ret = cr_daemon_begin("cirrus-shard", "CIRRUS_SHARD", opts, nopts, argc, argv);
    cr_err rc;

    if (ret >= 0)
        return ret;
    if (cr_curve_flags(&curve, curve_secret, curve_allow, 1, &curve_on))
        return cr_daemon_end("shard", cr_daemon_fail("%s", cr_error_message()));
    so.curve = curve_on ? &curve : NULL;
    eo.create = create;
    eo.dim = (int)dim;
    if (metric && shard_index_metric_parse(metric, &eo.metric))
        return cr_daemon_end("shard", cr_daemon_fail("--metric: %s", cr_error_message()));
    eo.metric_set = metric != NULL;
    eo.factory = factory;
    eo.train_size = train_size;
    eo.template_path = template_path;
    eo.exact_fraction = exact_fraction;
    eo.index_backlog_bytes = (uint64_t)backlog_mb << 20;
    eo.keep_images = keep_images;
    rc = shard_engine_open(&engine, dir, &eo);
    if (rc) {
        ret = cr_daemon_fail("%s", cr_error_message());
        if (rc == CR_ERR_INVALID && (dim || metric || factory))
            cr_daemon_fail("an existing shard keeps the --dim, --metric and --index it was "
                           "created with: give none of them to use those");
        return cr_daemon_end("shard", ret);
    }
    so.bind = bind;
    so.workers = (int)workers;
    so.spin_us = (unsigned)spin_us;
    so.merge_max = (int)merge_max;
    so.write_queue = (int)queue;
    so.snapshot_writes = (uint64_t)snap_writes;
    so.snapshot_interval_s = (uint64_t)snap_interval;
    rc = shard_server_open(&srv, engine, &so);
    if (rc) {
        ret = cr_daemon_fail("%s", cr_error_message());
    } else {
        cr_daemon_wait();
        rc = shard_server_close(&srv);
        ret = rc ? cr_daemon_fail("%s", cr_error_message()) : 0;
    }
    if (rc != CR_TIMEOUT) /* else a search thread still uses the engine */
        shard_engine_close(&engine);
    return cr_daemon_end("shard", ret);
}
