/* bench_load.c — `cirrus-bench search --load FILE`: the base vectors written through the
 * endpoint under test (libcirrus upserts, acknowledged when durable), so that one run
 * reports VectorDBBench's load_duration beside its search figures. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "client/cirrus.h"
#include "common/clock.h"

float *bench_load_rows(const char *path, size_t *rows, size_t *dim, int normalize);

/* Polls Stats until the endpoint reports no committed item waiting for the ANN index, so that
 * the searches after a load measure the index, not the exact scan of a backlog (and the load's
 * time includes building the index, as VectorDBBench's load_duration does). */
static int wait_indexed(cirrus *c)
{
    enum { LIMIT_S = 3600, POLL_MS = 50 };
    uint64_t until = cr_clock_mono_ms() + LIMIT_S * 1000ull;
    for (;;) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
        Cirrus__V1__Response *resp = NULL;
        req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
        req.stats = &st;
        if (cirrus_call(c, &req, &resp) != CIRRUS_OK) {
            fprintf(stderr, "cirrus-bench search: --load: stats: %s\n", cirrus_errmsg(c));
            cirrus_response_free(resp);
            return -1;
        }
        uint64_t left = resp->stats->unindexed;
        cirrus_response_free(resp);
        if (left == 0)
            return 0;
        if (cr_clock_mono_ms() > until) {
            fprintf(stderr, "cirrus-bench search: --load: %llu items still unindexed after %d s\n",
                    (unsigned long long)left, LIMIT_S);
            return -1;
        }
        cr_clock_sleep_ms(POLL_MS);
    }
}

int bench_endpoint_load(const char *endpoint, const char *path, const char *prefix,
                        double *seconds, double *insert_seconds, size_t *loaded)
{
    enum { BATCH = 512 };
    cirrus *c = NULL;
    cirrus_options o = cirrus_default_options();
    cirrus_item it[BATCH];
    char ids[BATCH][64];
    size_t nb = 0, d = 0;
    float *base = bench_load_rows(path, &nb, &d, 0);
    int rc = 1;
    uint64_t t0;

    o.timeout_ms = 60000;
    if (!base) {
        fprintf(stderr, "cirrus-bench search: --load: cannot read %s\n", path);
        return 1;
    }
    if (cirrus_open(&c, endpoint, &o) != CIRRUS_OK) {
        fprintf(stderr, "cirrus-bench search: --load: cannot connect to %s\n", endpoint);
        goto out;
    }
    t0 = cr_clock_mono_us();
    for (size_t done = 0; done < nb;) {
        size_t n = nb - done < BATCH ? nb - done : BATCH;
        for (size_t i = 0; i < n; i++) {
            snprintf(ids[i], sizeof ids[i], "%s%zu", prefix, done + i);
            it[i] = (cirrus_item){.id = ids[i], .vector = base + (done + i) * d, .dim = d};
        }
        if (cirrus_upsert(c, it, n, NULL) != CIRRUS_OK) {
            fprintf(stderr, "cirrus-bench search: --load: row %zu: %s\n", done, cirrus_errmsg(c));
            goto out;
        }
        done += n;
    }
    *insert_seconds = (double)(cr_clock_mono_us() - t0) / 1e6;
    if (wait_indexed(c) != 0)
        goto out;
    *seconds = (double)(cr_clock_mono_us() - t0) / 1e6;
    *loaded = nb;
    rc = 0;
out:
    cirrus_close(&c);
    free(base);
    return rc;
}
