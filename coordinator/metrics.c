#include "coordinator/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cirrus.pb-c.h"

static const double bucket_ms[COORD_METRICS_BUCKETS] = {0.5, 1,   2,   5,    10,   25,
                                                        50,  100, 250, 500,  1000, 2500};

void coord_metrics_init(coord_metrics *m)
{
    memset(m, 0, sizeof *m);
}

void coord_metrics_observe(coord_metrics *m, int op, int failed, uint64_t micros, int partial)
{
    int b = 0;
    if (op < 0 || op >= COORD_METRICS_OPS)
        op = 0;
    while (b < COORD_METRICS_BUCKETS && (double)micros > bucket_ms[b] * 1000.0)
        b++;
    atomic_fetch_add(&m->requests[op], 1);
    atomic_fetch_add(&m->buckets[op][b], 1);
    atomic_fetch_add(&m->sum_us[op], micros);
    if (failed)
        atomic_fetch_add(&m->errors[op], 1);
    if (partial)
        atomic_fetch_add(&m->partial, 1);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void put(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (s->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            s->failed = 1;
            return;
        }
        if ((size_t)n < s->cap - s->len) {
            s->len += (size_t)n;
            return;
        }
        char *g = realloc(s->p, 2 * s->cap + (size_t)n);
        if (!g) {
            s->failed = 1;
            return;
        }
        s->p = g;
        s->cap = 2 * s->cap + (size_t)n;
    }
}

static const char *op_name(int op)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&cirrus__v1__request__descriptor, (unsigned)op);
    return f ? f->name : "other";
}

int coord_metrics_render(const coord_metrics *m, const coord_map *map,
                         int (*live)(void *ctx, int group, int replica), void *ctx, char **buf,
                         size_t *len)
{
    sbuf s = {malloc(8192), 0, 8192, 0};
    if (!s.p)
        return -1;
    put(&s, "# HELP cirrus_requests_total Requests answered, by operation.\n"
            "# TYPE cirrus_requests_total counter\n");
    for (int op = 0; op < COORD_METRICS_OPS; op++)
        if (atomic_load(&m->requests[op]))
            put(&s, "cirrus_requests_total{op=\"%s\"} %llu\n", op_name(op),
                (unsigned long long)atomic_load(&m->requests[op]));
    put(&s, "# HELP cirrus_request_errors_total Requests answered with an error status.\n"
            "# TYPE cirrus_request_errors_total counter\n");
    for (int op = 0; op < COORD_METRICS_OPS; op++)
        if (atomic_load(&m->requests[op]))
            put(&s, "cirrus_request_errors_total{op=\"%s\"} %llu\n", op_name(op),
                (unsigned long long)atomic_load(&m->errors[op]));
    put(&s, "# HELP cirrus_request_duration_seconds Time from receipt to reply.\n"
            "# TYPE cirrus_request_duration_seconds histogram\n");
    for (int op = 0; op < COORD_METRICS_OPS; op++) {
        uint64_t cum = 0;
        if (!atomic_load(&m->requests[op]))
            continue;
        for (int b = 0; b <= COORD_METRICS_BUCKETS; b++) {
            cum += atomic_load(&m->buckets[op][b]);
            if (b < COORD_METRICS_BUCKETS)
                put(&s, "cirrus_request_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %llu\n",
                    op_name(op), bucket_ms[b] / 1000.0, (unsigned long long)cum);
            else
                put(&s, "cirrus_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %llu\n",
                    op_name(op), (unsigned long long)cum);
        }
        put(&s, "cirrus_request_duration_seconds_sum{op=\"%s\"} %.6f\n", op_name(op),
            (double)atomic_load(&m->sum_us[op]) / 1e6);
        put(&s, "cirrus_request_duration_seconds_count{op=\"%s\"} %llu\n", op_name(op),
            (unsigned long long)cum);
    }
    put(&s, "# HELP cirrus_partial_answers_total Searches answered without every shard group.\n"
            "# TYPE cirrus_partial_answers_total counter\ncirrus_partial_answers_total %llu\n",
        (unsigned long long)atomic_load(&m->partial));
    put(&s, "# HELP cirrus_query_cache_hits_total Composed queries answered from the cache.\n"
            "# TYPE cirrus_query_cache_hits_total counter\ncirrus_query_cache_hits_total %llu\n"
            "# HELP cirrus_query_cache_misses_total Composed queries sent to an encoder.\n"
            "# TYPE cirrus_query_cache_misses_total counter\n"
            "cirrus_query_cache_misses_total %llu\n"
            "# HELP cirrus_query_cache_evictions_total Entries dropped by the size bound.\n"
            "# TYPE cirrus_query_cache_evictions_total counter\n"
            "cirrus_query_cache_evictions_total %llu\n"
            "# HELP cirrus_query_cache_entries Composed query vectors cached.\n"
            "# TYPE cirrus_query_cache_entries gauge\ncirrus_query_cache_entries %llu\n"
            "# HELP cirrus_query_cache_bytes Bytes the cached entries hold.\n"
            "# TYPE cirrus_query_cache_bytes gauge\ncirrus_query_cache_bytes %llu\n",
        (unsigned long long)atomic_load(&m->qcache.hits),
        (unsigned long long)atomic_load(&m->qcache.misses),
        (unsigned long long)atomic_load(&m->qcache.evictions),
        (unsigned long long)atomic_load(&m->qcache.entries),
        (unsigned long long)atomic_load(&m->qcache.bytes));
    put(&s, "# HELP cirrus_replica_up Whether a shard replica answers and serves reads.\n"
            "# TYPE cirrus_replica_up gauge\n");
    for (int g = 0; g < map->n_groups; g++)
        for (int r = 0; r < map->n_replicas[g]; r++)
            put(&s, "cirrus_replica_up{group=\"%d\",replica=\"%d\",endpoint=\"%s\"} %d\n", g, r,
                map->replicas[g][r], live(ctx, g, r));
    if (s.failed) {
        free(s.p);
        return -1;
    }
    *buf = s.p;
    *len = s.len;
    return 0;
}
