#include "shard/engine.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/clock.h"
#include "common/hlc.h"
#include "common/log.h"
#include "common/validate.h"
#include "shard/backup.h"
#include "shard/attrs.h"
#include "shard/store.h"

#define REPLAY_BATCH 4096
#define EXACT_FALLBACK_MAX 200000 /* matches scanned exactly when an ANN search falls short */
#define SNAPSHOT_META_KEY "snapshot"
#define INDEX_CHUNK 4096 /* items per index add: fewer, larger adds build faster; each holds
                            the index ~0.4 s (HNSW32, two cores), so no search that must not
                            wait may queue behind it */
#define INDEX_RETRY_MIN_MS 20   /* a failed add is retried after this, doubling... */
#define INDEX_RETRY_MAX_MS 2000 /* ...up to this */
#define ROOM_WAIT_MS 10000      /* a writer waits at most this long for room in the queue */
#define DRAIN_STALL_MS 30000    /* a drain gives up after this long without progress, */
#define DRAIN_FAILS 5           /* or once this many adds in a row have failed */
#define WRITER_QUEUE_MIN (4 * INDEX_CHUNK) /* queue bound while the writer indexes itself */
#define SEARCH_RETRIES 2        /* index searches redone before one holds the queue across */
#define WAIT_SLICE_MS 100

/* Committed items waiting for the ANN index, oldest first: ids ascending (the store hands
 * out ids in order). Searches scan them exactly, so a write is searchable once acknowledged,
 * while durable ingest is not held to the index's build rate (HNSW builds at ~10k/s on two
 * cores; the LMDB commit alone takes several times that). An item leaves the queue only
 * once the index holds it: a failed add leaves it queued (and searched) for a retry. */
typedef struct backlog {
    pthread_rwlock_t rw;   /* searches' scans: read; append, mark dead, dequeue: write.
                              Prefers writers; no search holds it across an index search
                              (but the last of its retries) */
    int64_t *ids;
    float *vecs;           /* normalized as the index holds them */
    uint8_t *dead;         /* killed before the indexer reached it */
    size_t head, n, cap;   /* live window [head, n) */
    _Atomic uint64_t moved; /* dequeues so far: a search that sees it change between its
                               index search and its scan searches again */
    int64_t *chunk_ids;    /* the chunk being added (under the engine's ixmu) */
    float *chunk_vecs;
    pthread_mutex_t mu;    /* the fields below; with `cv` (monotonic): the indexer's wake-up,
                              the writer waiting for room, drains */
    pthread_cond_t cv;
    int stop;              /* close: the indexer exits */
    _Atomic int running;   /* an indexer thread is alive: it clears this on its way out, and
                              without one the writer adds queued items itself */
    int fails;             /* adds failed in a row */
    uint64_t retry_ms;     /* no add before this (monotonic): the backoff after a failure */
    uint64_t chunks;       /* chunks added so far */
    char err[160];         /* the last failure */
    pthread_t thread;
    int inited, started;
} backlog;

struct shard_engine {
    shard_store *store;
    shard_index *index;
    shard_attrs *attrs;
    shard_engine_opts o;
    int dim;
    shard_index_metric metric;
    char factory[SHARD_INDEX_FACTORY_MAX];
    char snap_path[PATH_MAX];
    cr_hlc hlc;
    _Atomic uint64_t dirty;
    _Atomic int64_t last_snapshot_ms;
    _Atomic int64_t snapshot_hw;
    uint64_t start_ms;
    pthread_mutex_t ixmu;          /* index adds/removes, snapshots, rebuilds */
    _Atomic int64_t indexed_hw;    /* every live id below it is in the index */
    uint64_t backlog_max;          /* items */
    backlog bl;
    struct {                       /* test-only failure injection (CIRRUS_SHARD_FAULTS) */
        _Atomic int64_t add_fails; /* the next N index adds fail */
        int64_t exit_after;        /* the indexer thread exits after N chunks (0 = never) */
        int start;                 /* the indexer thread "fails to start" */
        int alloc;                 /* ...or to allocate its buffers */
    } fault;
};

shard_engine_opts shard_engine_default_opts(void)
{
    shard_engine_opts o;
    memset(&o, 0, sizeof o);
    o.metric = SHARD_INDEX_METRIC_IP;
    o.exact_fraction = 0.02;
    o.exact_max = 20000;
    o.index_backlog_bytes = 256u << 20;
    return o;
}

/* ---- vectors ---------------------------------------------------------------------------- */

static float l2_norm(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return (float)sqrt(s);
}

/* For METRIC_IP the index sees unit vectors; zero vectors cannot be ranked by cosine. */
static void normalize_rows(float *x, size_t rows, size_t dim)
{
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * dim, n = l2_norm(v, dim);
        if (n > 0)
            for (size_t i = 0; i < dim; i++)
                v[i] /= n;
    }
}

static cr_err fetch_vectors(void *ctx, const int64_t *ids, size_t n, float *out)
{
    shard_engine *e = ctx;
    cr_err rc = shard_store_get_vectors(e->store, ids, n, out, NULL);
    if (rc < 0)
        return rc;
    if (e->metric == SHARD_INDEX_METRIC_IP)
        normalize_rows(out, n, (size_t)e->dim);
    return CR_OK;
}

/* ---- failure injection (tests) ------------------------------------------------------------ */

/* CIRRUS_SHARD_FAULTS="index-add=N,indexer-exit=N,indexer-start,indexer-alloc": the next N
 * index adds fail; the indexer thread exits after N chunks; it does not start; it cannot
 * allocate its buffers. Read at open;
 * tests only (the failure paths cannot be reached on demand otherwise). */
static void faults_load(shard_engine *e)
{
    const char *f = getenv("CIRRUS_SHARD_FAULTS"), *p;
    if (!f || !f[0])
        return;
    if ((p = strstr(f, "index-add=")))
        atomic_store(&e->fault.add_fails, strtoll(p + 10, NULL, 10));
    if ((p = strstr(f, "indexer-exit=")))
        e->fault.exit_after = strtoll(p + 13, NULL, 10);
    e->fault.start = strstr(f, "indexer-start") != NULL;
    e->fault.alloc = strstr(f, "indexer-alloc") != NULL;
    CR_WARN("shard", "failure injection active: %s", f);
}

/* Consumes one injected failure from *n; 1 when there was one. */
static int fault_take(_Atomic int64_t *n)
{
    int64_t v = atomic_load(n);
    while (v > 0 && !atomic_compare_exchange_weak(n, &v, v - 1))
        ;
    return v > 0;
}

/* ---- the index backlog ------------------------------------------------------------------ */

static uint64_t backlog_len(backlog *b)
{
    return b->n - b->head; /* under b->rw */
}

static uint64_t backlog_pending(backlog *b)
{
    uint64_t n;
    pthread_rwlock_rdlock(&b->rw);
    n = backlog_len(b);
    pthread_rwlock_unlock(&b->rw);
    return n;
}

/* Waits on b->cv (b->mu held) until a broadcast, the monotonic time `until_ms`, or
 * WAIT_SLICE_MS, whichever comes first: every wait on the backlog is bounded. */
static void backlog_sleep(backlog *b, uint64_t until_ms)
{
    uint64_t now = cr_clock_mono_ms(), ms;
    struct timespec ts;
    if (until_ms <= now)
        return;
    ms = until_ms - now < WAIT_SLICE_MS ? until_ms - now : WAIT_SLICE_MS;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&b->cv, &b->mu, &ts);
}

static cr_err backlog_reserve(backlog *b, size_t extra, size_t dim)
{
    size_t cap;
    void *p;
    if (b->head > 0 && b->n + extra > b->cap) { /* slide the live window to the front */
        size_t live = b->n - b->head;
        memmove(b->ids, b->ids + b->head, live * sizeof *b->ids);
        memmove(b->vecs, b->vecs + b->head * dim, live * dim * sizeof *b->vecs);
        memmove(b->dead, b->dead + b->head, live);
        b->n = live;
        b->head = 0;
    }
    if (b->n + extra <= b->cap)
        return CR_OK;
    cap = b->cap ? b->cap : 1024;
    while (cap < b->n + extra)
        cap *= 2;
    if (!(p = realloc(b->ids, cap * sizeof *b->ids)))
        return cr_error_set(CR_ERR_NOMEM, "index backlog");
    b->ids = p;
    if (!(p = realloc(b->vecs, cap * dim * sizeof *b->vecs)))
        return cr_error_set(CR_ERR_NOMEM, "index backlog");
    b->vecs = p;
    if (!(p = realloc(b->dead, cap)))
        return cr_error_set(CR_ERR_NOMEM, "index backlog");
    b->dead = p;
    b->cap = cap;
    return CR_OK;
}

/* Queues committed items (ascending ids, normalized vectors) for the indexer. */
static cr_err backlog_append(shard_engine *e, size_t n, const int64_t *ids, const float *vecs)
{
    backlog *b = &e->bl;
    size_t dim = (size_t)e->dim;
    cr_err rc;
    pthread_rwlock_wrlock(&b->rw);
    rc = backlog_reserve(b, n, dim); /* reserved before the commit: no allocation here */
    if (!rc) {
        memcpy(b->ids + b->n, ids, n * sizeof *ids);
        memcpy(b->vecs + b->n * dim, vecs, n * dim * sizeof *vecs);
        memset(b->dead + b->n, 0, n);
        b->n += n;
    }
    pthread_rwlock_unlock(&b->rw);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* Marks a queued id dead (it was replaced or deleted before the indexer reached it). */
static void backlog_kill(backlog *b, int64_t id)
{
    size_t lo, hi;
    pthread_rwlock_wrlock(&b->rw);
    lo = b->head;
    hi = b->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < b->n && b->ids[lo] == id)
        b->dead[lo] = 1;
    pthread_rwlock_unlock(&b->rw);
}

/* Moves the oldest queued items (one chunk) into the index. When the add fails nothing
 * moves: the items stay queued, searched exactly, for the next attempt. Called by the
 * indexer thread, or by the writer when none runs. */
static cr_err index_chunk(shard_engine *e)
{
    backlog *b = &e->bl;
    size_t dim = (size_t)e->dim, take, m = 0;
    int64_t hw;
    cr_err rc = CR_OK;
    pthread_mutex_lock(&e->ixmu); /* also owns chunk_ids/chunk_vecs */
    pthread_rwlock_rdlock(&b->rw);
    take = backlog_len(b) < INDEX_CHUNK ? backlog_len(b) : INDEX_CHUNK;
    for (size_t i = b->head; i < b->head + take; i++)
        if (!b->dead[i]) {
            b->chunk_ids[m] = b->ids[i];
            memcpy(b->chunk_vecs + m * dim, b->vecs + i * dim, dim * sizeof *b->vecs);
            m++;
        }
    hw = take ? b->ids[b->head + take - 1] + 1 : atomic_load(&e->indexed_hw);
    pthread_rwlock_unlock(&b->rw);
    if (m && fault_take(&e->fault.add_fails))
        rc = cr_error_set(CR_ERR_INDEX, "injected index add failure");
    else if (m)
        rc = shard_index_add(e->index, (int64_t)m, b->chunk_ids, b->chunk_vecs);
    if (rc == CR_OK) {
        pthread_rwlock_wrlock(&b->rw);
        b->head += take;
        if (b->head == b->n)
            b->head = b->n = 0;
        atomic_store(&e->indexed_hw, hw);
        atomic_fetch_add(&b->moved, 1);
        pthread_rwlock_unlock(&b->rw);
    }
    pthread_mutex_unlock(&e->ixmu);
    return rc;
}

/* After an add attempt (b->mu held): the failure streak and its backoff; wakes the
 * writer and drains waiting on the queue. */
static void note_add(backlog *b, cr_err rc)
{
    if (rc) {
        uint64_t delay = (uint64_t)INDEX_RETRY_MIN_MS << (b->fails < 8 ? b->fails : 8);
        delay = delay < INDEX_RETRY_MAX_MS ? delay : INDEX_RETRY_MAX_MS;
        b->fails++;
        b->retry_ms = cr_clock_mono_ms() + delay;
        snprintf(b->err, sizeof b->err, "%s", cr_error_message());
        CR_ERROR("shard", "index add failed (%d in a row; the items stay queued and searched "
                          "exactly; retry in %llu ms): %s",
                 b->fails, (unsigned long long)delay, b->err);
    } else {
        if (b->fails)
            CR_INFO("shard", "index add succeeded after %d failures", b->fails);
        b->fails = 0;
        b->retry_ms = 0;
        b->chunks++;
    }
    pthread_cond_broadcast(&b->cv);
}

static void *indexer_main(void *arg)
{
    shard_engine *e = arg;
    backlog *b = &e->bl;
    int stopped;
    pthread_mutex_lock(&b->mu);
    while (!b->stop && !(e->fault.exit_after && (int64_t)b->chunks >= e->fault.exit_after)) {
        uint64_t now = cr_clock_mono_ms();
        cr_err rc;
        if (now < b->retry_ms || backlog_pending(b) == 0) {
            backlog_sleep(b, now < b->retry_ms ? b->retry_ms : now + WAIT_SLICE_MS);
            continue;
        }
        pthread_mutex_unlock(&b->mu);
        rc = index_chunk(e);
        pthread_mutex_lock(&b->mu);
        note_add(b, rc);
    }
    /* Whatever the reason, say so: waiters must not wait for a thread that is gone. */
    stopped = b->stop;
    b->running = 0;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (!stopped)
        CR_ERROR("shard", "the indexer thread exited; the writer indexes queued items itself");
    return NULL;
}

/* With no indexer thread, the writer adds the queued items itself, honouring the backoff
 * after a failure. CR_OK once the queue is empty; else the failure (CR_TIMEOUT while
 * backing off). No-op while an indexer runs. Writer thread. */
static cr_err index_on_writer(shard_engine *e)
{
    backlog *b = &e->bl;
    cr_err rc = CR_OK;
    pthread_mutex_lock(&b->mu);
    while (!b->running && backlog_pending(b) > 0) {
        if (cr_clock_mono_ms() < b->retry_ms) {
            rc = cr_error_set(CR_TIMEOUT, "index add backing off: %s", b->err);
            break;
        }
        pthread_mutex_unlock(&b->mu);
        rc = index_chunk(e);
        pthread_mutex_lock(&b->mu);
        note_add(b, rc);
        if (rc)
            break;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* Before a commit that may queue `n` items: waits (at most ROOM_WAIT_MS) for the queue to
 * be within its bound, then reserves room for them, so the append after the commit cannot
 * fail. A full queue whose adds fail refuses at once. On an error nothing may be committed:
 * the caller rejects the write. Writer thread. */
static cr_err backlog_room(shard_engine *e, size_t n)
{
    backlog *b = &e->bl;
    uint64_t deadline = cr_clock_mono_ms() + ROOM_WAIT_MS, limit = 0, pending = 0;
    cr_err rc = CR_OK;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        limit = b->running || e->backlog_max > WRITER_QUEUE_MIN ? e->backlog_max
                                                                 : WRITER_QUEUE_MIN;
        pending = backlog_pending(b);
        if (pending <= limit)
            break;
        if (!b->running) {
            pthread_mutex_unlock(&b->mu);
            rc = index_on_writer(e);
            pthread_mutex_lock(&b->mu);
            if (rc == CR_OK)
                continue;
            rc = CR_OK;
        }
        if (b->fails) {
            rc = cr_error_set(CR_ERR_INDEX,
                              "write refused: %llu items wait for the ANN index and its adds "
                              "fail (%d in a row): %s",
                              (unsigned long long)pending, b->fails, b->err);
            break;
        }
        if (cr_clock_mono_ms() >= deadline) {
            rc = cr_error_set(CR_ERR_OVERLOADED,
                              "write refused: %llu items wait for the ANN index (bound %llu) "
                              "and the indexer is behind; retry later",
                              (unsigned long long)pending, (unsigned long long)limit);
            break;
        }
        backlog_sleep(b, deadline);
    }
    pthread_mutex_unlock(&b->mu);
    if (rc == CR_OK) {
        pthread_rwlock_wrlock(&b->rw);
        rc = backlog_reserve(b, n, (size_t)e->dim);
        pthread_rwlock_unlock(&b->rw);
    }
    return rc;
}

cr_err shard_engine_index_drain(shard_engine *e)
{
    backlog *b = &e->bl;
    uint64_t stall = cr_clock_mono_ms() + DRAIN_STALL_MS, seen, pending;
    cr_err rc = CR_OK;
    pthread_mutex_lock(&b->mu);
    seen = b->chunks;
    while ((pending = backlog_pending(b)) > 0) {
        uint64_t now = cr_clock_mono_ms();
        if (b->chunks != seen) {
            seen = b->chunks;
            stall = now + DRAIN_STALL_MS;
        }
        if (b->fails >= DRAIN_FAILS || now >= stall) {
            rc = cr_error_set(CR_ERR_INDEX,
                              "%llu items still wait for the ANN index (%s); they are searched "
                              "exactly, the add is retried, and the next open indexes them",
                              (unsigned long long)pending,
                              b->fails ? b->err : "the indexer made no progress");
            break;
        }
        if (!b->running && now >= b->retry_ms) {
            pthread_mutex_unlock(&b->mu);
            index_on_writer(e); /* its outcome is in b->fails */
            pthread_mutex_lock(&b->mu);
            continue;
        }
        backlog_sleep(b, !b->running ? b->retry_ms : stall);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void shard_engine_index_work(shard_engine *e)
{
    if (!atomic_load(&e->bl.running) && shard_engine_index_backlog(e) > 0 &&
        index_on_writer(e) < 0)
        CR_WARN("shard", "index add on the writer: %s", cr_error_message());
}

uint64_t shard_engine_index_backlog(shard_engine *e)
{
    return backlog_pending(&e->bl);
}

static uint64_t count_found(const int64_t *ids, uint32_t k)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < k; i++)
        n += ids[i] >= 0;
    return n;
}

/* Merges the queued items matching `bits` (NULL: all) into a sorted top-k (dist, ids), skipping
 * ids already there (the indexer may have added them to the index but not yet dequeued them).
 * The caller holds e->bl.rw for reading (search_then_lock). */
static void backlog_scan(shard_engine *e, const float *q, uint32_t k, const uint64_t *bits,
                         uint64_t bits_limit, float *dist, int64_t *ids)
{
    backlog *b = &e->bl;
    size_t dim = (size_t)e->dim;
    bool ip = e->metric == SHARD_INDEX_METRIC_IP;
    int64_t cnt = (int64_t)count_found(ids, k); /* found ids come first, -1s after */
    for (size_t i = b->head; i < b->n; i++) {
        int64_t id = b->ids[i];
        float s;
        int dup = 0;
        if (b->dead[i] || (bits && ((uint64_t)id >= bits_limit ||
                                    !(bits[(uint64_t)id / 64] >> ((uint64_t)id % 64) & 1))))
            continue;
        s = shard_index_score(ip, q, b->vecs + i * dim, (int)dim);
        if (cnt == (int64_t)k && !(ip ? s > dist[k - 1] : s < dist[k - 1]))
            continue; /* cheap rejection before the duplicate check */
        for (int64_t j = 0; j < cnt && !dup; j++)
            dup = ids[j] == id;
        if (!dup)
            shard_index_topk_push(dist, ids, (int64_t)k, &cnt, ip, s, id);
    }
}

/* The queue's locks and the chunk buffers; then the indexer thread (none when the bound is
 * 0: the writer indexes each commit itself). Any failure fails the open. */
static cr_err backlog_start(shard_engine *e)
{
    backlog *b = &e->bl;
    size_t dim = (size_t)e->dim;
    pthread_rwlockattr_t ra;
    pthread_condattr_t ca;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&b->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);
    b->inited = 1;
    e->backlog_max = e->o.index_backlog_bytes / ((uint64_t)e->dim * sizeof(float));
    if (!e->fault.alloc) {
        b->chunk_ids = malloc(INDEX_CHUNK * sizeof *b->chunk_ids);
        b->chunk_vecs = malloc(INDEX_CHUNK * dim * sizeof *b->chunk_vecs);
    }
    if (!b->chunk_ids || !b->chunk_vecs)
        return cr_error_set(CR_ERR_NOMEM, "the indexer's chunk buffers (%zu MiB): out of memory",
                            (INDEX_CHUNK * dim * sizeof(float)) >> 20);
    if (e->backlog_max == 0)
        return CR_OK;
    b->running = 1; /* before the thread exists: only the thread clears it */
    if (e->fault.start || pthread_create(&b->thread, NULL, indexer_main, e) != 0) {
        b->running = 0;
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the indexer thread");
    }
    b->started = 1;
    return CR_OK;
}

static void backlog_stop(shard_engine *e)
{
    backlog *b = &e->bl;
    if (!b->inited)
        return;
    if (b->started) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    free(b->ids);
    free(b->vecs);
    free(b->dead);
    free(b->chunk_ids);
    free(b->chunk_vecs);
    pthread_rwlock_destroy(&b->rw);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

/* ---- attribute blobs: the store's format (store.h), decoded for the attribute index ---- */

static cr_err attrs_index_blob(shard_engine *e, int64_t id, const void *blob, size_t len)
{
    shard_attr *a = NULL;
    size_t n = 0;
    cr_err rc = shard_store_attrs_decode(blob, len, &a, &n);
    if (rc)
        return cr_error_wrap(rc, "item %lld", (long long)id);
    rc = shard_attrs_set(e->attrs, (uint64_t)id, a, n);
    free(a);
    return rc;
}

/* One block holding an engine value of `head` bytes, then its vector (dim floats, when vec),
 * its attributes (decoded from the blob, when blob_len) and its id: what shard_item and
 * shard_hit hand out, freed with one free(). */
typedef struct block_parts {
    const char **id;
    const float **vector;
    const shard_attr **attrs;
    size_t *n_attrs;
} block_parts;

static void *value_block(size_t head, const char *ext, size_t ext_len, const float *vec,
                         size_t dim, const void *blob, size_t blob_len, const block_parts *p,
                         cr_err *rc)
{
    shard_attr *a = NULL;
    size_t n = 0, h = (head + 15) / 16 * 16, vs = vec ? (dim * sizeof(float) + 15) / 16 * 16 : 0;
    size_t as;
    char *mem;
    *rc = shard_store_attrs_decode(blob, blob_len, &a, &n);
    if (*rc)
        return NULL;
    as = n ? shard_attrs_block_size(a, n) : 0;
    mem = calloc(1, h + vs + as + ext_len + 1);
    if (!mem) {
        free(a);
        *rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (vec) {
        memcpy(mem + h, vec, dim * sizeof(float));
        *p->vector = (const float *)(mem + h);
    }
    if (n)
        *p->attrs = shard_attrs_place(a, n, mem + h + vs);
    *p->n_attrs = n;
    memcpy(mem + h + vs + as, ext, ext_len);
    *p->id = mem + h + vs + as;
    free(a);
    return mem;
}

static shard_item *item_block(const char *ext, size_t ext_len, uint64_t version,
                              const float *vec, size_t dim, const void *blob, size_t blob_len,
                              cr_err *rc)
{
    shard_item tmp = {0}, *it;
    block_parts p = {&tmp.id, &tmp.vector, &tmp.attrs, &tmp.n_attrs};
    it = value_block(sizeof *it, ext, ext_len, vec, dim, blob, blob_len, &p, rc);
    if (!it)
        return NULL;
    *it = tmp;
    it->version = version;
    it->dim = vec ? dim : 0;
    return it;
}

/* ---- open and replay -------------------------------------------------------------------- */

typedef struct replay_ctx {
    shard_engine *e;
    int64_t high_water;
    int64_t add_ids[REPLAY_BATCH];
    float *add_vecs;
    size_t n_add;
    int64_t del_ids[REPLAY_BATCH];
    size_t n_del;
    uint64_t max_version;
    uint64_t live, added;
} replay_ctx;

static cr_err replay_flush(replay_ctx *r)
{
    cr_err rc = CR_OK;
    if (r->n_add) {
        if (r->e->metric == SHARD_INDEX_METRIC_IP)
            normalize_rows(r->add_vecs, r->n_add, (size_t)r->e->dim);
        rc = shard_index_add(r->e->index, (int64_t)r->n_add, r->add_ids, r->add_vecs);
        r->added += r->n_add;
        r->n_add = 0;
    }
    if (!rc && r->n_del) {
        rc = shard_index_remove(r->e->index, (int64_t)r->n_del, r->del_ids, NULL);
        r->n_del = 0;
    }
    return rc;
}

static cr_err replay_item(const shard_store_view *v, void *ctx)
{
    replay_ctx *r = ctx;
    cr_err rc = CR_OK;
    if (v->version > r->max_version)
        r->max_version = v->version;
    if (v->deleted) {
        /* Died after the snapshot was taken: the snapshot still holds it. */
        if (v->id < r->high_water)
            r->del_ids[r->n_del++] = v->id;
    } else {
        r->live++;
        rc = attrs_index_blob(r->e, v->id, v->attrs, v->attrs_len);
        if (!rc && v->id >= r->high_water) {
            memcpy(r->add_vecs + r->n_add * (size_t)r->e->dim, v->vector,
                   (size_t)r->e->dim * sizeof(float));
            r->add_ids[r->n_add++] = v->id;
        }
    }
    if (!rc && (r->n_add == REPLAY_BATCH || r->n_del == REPLAY_BATCH))
        rc = replay_flush(r);
    return rc;
}

static cr_err index_open(shard_engine *e, int64_t *high_water)
{
    shard_index_opts io = shard_index_default_opts();
    cr_err rc;
    io.dim = e->dim;
    io.metric = e->metric;
    io.factory = e->factory;
    io.train_size = e->o.train_size;
    io.template_path = e->o.template_path;
    rc = shard_index_load(&e->index, e->snap_path, &io, high_water);
    if (rc == CR_OK)
        return CR_OK;
    if (rc != CR_NOTFOUND)
        CR_WARN("shard", "ignoring index snapshot %s (%s): rebuilding from the store",
                e->snap_path, cr_error_message());
    *high_water = 0;
    return shard_index_create(&e->index, &io);
}

static cr_err store_open(shard_engine *e, const char *dir)
{
    /* An existing shard is checked against what the caller asked for, not the defaults. */
    shard_store_params expect = {e->o.dim, e->o.metric_set ? (shard_store_metric)e->o.metric
                                                           : SHARD_STORE_METRIC_ANY,
                                 e->o.factory};
    shard_store_params create = {e->o.dim, (shard_store_metric)e->o.metric, e->o.factory};
    shard_store_options so = shard_store_default_options();
    cr_err rc;
    so.map_size = e->o.map_size;
    rc = shard_store_open(&e->store, dir, &expect, &so);
    if (rc == CR_NOTFOUND && e->o.create) {
        if (e->o.dim <= 0 || !e->o.factory)
            return cr_error_set(CR_ERR_INVALID, "creating a shard needs --dim and --index");
        rc = shard_store_create(&e->store, dir, &create, &so);
    } else if (rc == CR_NOTFOUND) {
        return cr_error_set(CR_ERR_INVALID, "%s holds no shard (create one with --create)", dir);
    }
    return rc;
}

cr_err shard_engine_open(shard_engine **out, const char *dir, const shard_engine_opts *o)
{
    shard_engine *e = calloc(1, sizeof *e);
    replay_ctx *r = NULL;
    const shard_store_params *p;
    uint64_t t0 = cr_clock_mono_ms();
    int64_t hw = 0;
    cr_err rc;

    if (!e)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    e->o = *o;
    e->start_ms = t0;
    cr_hlc_init(&e->hlc);
    pthread_mutex_init(&e->ixmu, NULL);
    e->bl.stop = 0;
    faults_load(e);
    rc = store_open(e, dir);
    if (rc)
        goto out;
    p = shard_store_params_get(e->store);
    e->dim = p->dim;
    e->metric = (shard_index_metric)p->metric;
    snprintf(e->factory, sizeof e->factory, "%s", p->factory);
    snprintf(e->snap_path, sizeof e->snap_path, "%s/index.snap", dir);
    rc = shard_attrs_new(&e->attrs);
    if (!rc)
        rc = index_open(e, &hw);
    if (rc)
        goto out;
    r = calloc(1, sizeof *r);
    if (!r || !(r->add_vecs = malloc((size_t)REPLAY_BATCH * (size_t)e->dim * sizeof(float)))) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->e = e;
    r->high_water = hw;
    rc = shard_store_iterate(e->store, 0, SHARD_STORE_ITER_DEAD, replay_item, r);
    if (!rc)
        rc = replay_flush(r);
    if (rc)
        goto out;
    cr_hlc_observe(&e->hlc, r->max_version);
    {
        int64_t next_id = 0;
        rc = shard_store_next_id(e->store, &next_id);
        if (!rc)
            rc = backlog_start(e);
        if (rc)
            goto out;
        atomic_store(&e->indexed_hw, next_id);
    }
    atomic_store(&e->snapshot_hw, hw);
    atomic_store(&e->dirty, r->added);
    {
        int64_t info[2];
        size_t len = 0;
        if (hw > 0 &&
            shard_store_meta_get(e->store, SNAPSHOT_META_KEY, info, sizeof info, &len) == CR_OK &&
            len == sizeof info)
            atomic_store(&e->last_snapshot_ms, info[0]);
    }
    CR_INFO("shard", "opened %s: %llu items, dim %d, %s, %s; snapshot at id %lld, replayed %llu, "
                     "ready in %llu ms",
            dir, (unsigned long long)r->live, e->dim, shard_index_metric_name(e->metric),
            e->factory, (long long)hw, (unsigned long long)r->added,
            (unsigned long long)(cr_clock_mono_ms() - t0));
    *out = e;
    e = NULL;
out:
    if (r)
        free(r->add_vecs);
    free(r);
    shard_engine_close(&e);
    return rc;
}

void shard_engine_close(shard_engine **pp)
{
    shard_engine *e = pp ? *pp : NULL;
    if (!e)
        return;
    backlog_stop(e);
    shard_index_close(&e->index);
    shard_attrs_free(&e->attrs);
    pthread_mutex_destroy(&e->ixmu);
    shard_store_close(&e->store);
    free(e);
    *pp = NULL;
}

cr_err shard_engine_backup(shard_engine *e, const char *dir, uint64_t *bytes)
{
    return shard_backup_write(e->store, e->snap_path, dir, bytes);
}

int shard_engine_dim(const shard_engine *e)
{
    return e->dim;
}

shard_index_metric shard_engine_metric(const shard_engine *e)
{
    return e->metric;
}

const char *shard_engine_factory(const shard_engine *e)
{
    return e->factory;
}

uint64_t shard_engine_dirty(const shard_engine *e)
{
    return atomic_load(&e->dirty);
}

/* ---- writes ----------------------------------------------------------------------------- */

static cr_err validate_op(shard_engine *e, const shard_engine_write_op *op)
{
    const shard_item *it = op->item;
    cr_err rc;
    if (!it)
        return cr_error_set(CR_ERR_INVALID, "missing item");
    rc = cr_validate_id(it->id);
    if (rc || op->is_delete)
        return rc;
    if (!it->vector || it->dim == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: vector is missing", it->id);
    if (it->dim != (size_t)e->dim)
        return cr_error_set(CR_ERR_INVALID, "%s: vector has %zu dimensions, expected %d", it->id,
                            it->dim, e->dim);
    rc = cr_validate_finite(it->vector, it->dim, it->id);
    if (rc)
        return rc;
    if (e->metric == SHARD_INDEX_METRIC_IP && l2_norm(it->vector, (size_t)e->dim) == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: zero vector cannot be ranked by cosine",
                            it->id);
    if (it->n_attrs && !it->attrs)
        return cr_error_set(CR_ERR_INVALID, "%s: attributes missing", it->id);
    for (size_t i = 0; i < it->n_attrs; i++) {
        rc = shard_attr_check(&it->attrs[i]);
        if (rc)
            return cr_error_wrap(rc, "%s", it->id);
    }
    return CR_OK;
}

/* After the commit: new ids join the index and the attribute index, killed ids leave. */
static cr_err apply_to_indexes(shard_engine *e, const shard_store_op *sops,
                               const shard_store_result *sres, size_t n)
{
    int64_t *add_ids = malloc((n ? n : 1) * sizeof *add_ids);
    int64_t *del_ids = malloc((n ? n : 1) * sizeof *del_ids);
    float *vecs = malloc((n ? n : 1) * (size_t)e->dim * sizeof *vecs);
    size_t n_add = 0, n_del = 0;
    cr_err rc = CR_OK;

    if (!add_ids || !del_ids || !vecs) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (sres[i].new_id >= 0) {
            memcpy(vecs + n_add * (size_t)e->dim, sops[i].vector, (size_t)e->dim * sizeof *vecs);
            add_ids[n_add++] = sres[i].new_id;
            if (attrs_index_blob(e, sres[i].new_id, sops[i].attrs, sops[i].attrs_len))
                CR_WARN("shard", "attributes of %.*s: %s", (int)sops[i].ext_len, sops[i].ext_id,
                        cr_error_message());
        }
        if (sres[i].old_id >= 0)
            del_ids[n_del++] = sres[i].old_id;
    }
    if (e->metric == SHARD_INDEX_METRIC_IP)
        normalize_rows(vecs, n_add, (size_t)e->dim);
    /* Adds first: an id added and killed in the same batch must be queued to be killed.
     * Room was reserved before the commit; without an indexer thread the writer indexes. */
    if (n_add && backlog_append(e, n_add, add_ids, vecs))
        CR_ERROR("shard", "%zu committed items not queued for the index (%s): searchable "
                          "after the next open", n_add, cr_error_message());
    else if (n_add && !e->bl.running && index_on_writer(e) < 0)
        CR_WARN("shard", "index add on the writer: %s (the items stay queued, searched "
                         "exactly; retried)", cr_error_message());
    for (size_t i = 0; i < n_del; i++)
        shard_attrs_remove(e->attrs, (uint64_t)del_ids[i]);
    if (!rc && n_del) {
        /* Under ixmu the indexer is not between taking queued items and dequeuing them, so an
         * id is either still queued (marked dead there) or in the index (removed). */
        size_t n_idx = 0;
        pthread_mutex_lock(&e->ixmu);
        for (size_t i = 0; i < n_del; i++) {
            if (del_ids[i] >= atomic_load(&e->indexed_hw))
                backlog_kill(&e->bl, del_ids[i]);
            else
                del_ids[n_idx++] = del_ids[i];
        }
        if (n_idx)
            rc = shard_index_remove(e->index, (int64_t)n_idx, del_ids, NULL);
        pthread_mutex_unlock(&e->ixmu);
    }
    atomic_fetch_add(&e->dirty, n_add + n_del);
out:
    free(add_ids);
    free(del_ids);
    free(vecs);
    return rc;
}

cr_err shard_engine_write(shard_engine *e, const shard_engine_write_op *ops, size_t n,
                          shard_engine_write_result *results)
{
    shard_store_op *sops = calloc(n ? n : 1, sizeof *sops);
    shard_store_result *sres = calloc(n ? n : 1, sizeof *sres);
    size_t *where = calloc(n ? n : 1, sizeof *where);
    uint8_t **blobs = calloc(n ? n : 1, sizeof *blobs);
    size_t m = 0;
    cr_err rc = CR_OK;

    if (!sops || !sres || !where || !blobs) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const shard_item *it = ops[i].item;
        shard_store_op *s = &sops[m];
        results[i].message[0] = '\0';
        results[i].version = 0;
        results[i].status = validate_op(e, &ops[i]);
        if (results[i].status) {
            snprintf(results[i].message, sizeof results[i].message, "%s", cr_error_message());
            continue;
        }
        s->kind = ops[i].is_delete ? SHARD_STORE_DELETE : SHARD_STORE_UPSERT;
        s->ext_id = it->id;
        s->ext_len = strlen(it->id);
        if (it->version)
            cr_hlc_observe(&e->hlc, it->version);
        s->version = it->version ? it->version : cr_hlc_next(&e->hlc);
        if (!s->version) { /* the clock is exhausted: refuse rather than wrap (hlc.h) */
            results[i].status = cr_error_set(CR_ERR_INVALID, "%s: no version left", it->id);
            snprintf(results[i].message, sizeof results[i].message, "%s", cr_error_message());
            continue;
        }
        results[i].version = s->version;
        if (!ops[i].is_delete) {
            s->vector = it->vector;
            s->dim = (size_t)e->dim;
            rc = shard_store_attrs_encode(it->attrs, it->n_attrs, &blobs[m], &s->attrs_len);
            if (rc)
                goto out;
            s->attrs = blobs[m];
        }
        where[m++] = i;
    }
    {
        size_t n_up = 0;
        for (size_t j = 0; j < m; j++)
            n_up += sops[j].kind == SHARD_STORE_UPSERT;
        rc = n_up ? backlog_room(e, n_up) : CR_OK; /* before the commit: a refused write
                                                       changes nothing */
    }
    if (rc)
        goto out;
    rc = shard_store_write(e->store, sops, m, sres);
    if (rc)
        goto out;
    for (size_t j = 0; j < m; j++) {
        shard_engine_write_result *r = &results[where[j]];
        r->status = sres[j].status;
        if (sres[j].status == CR_STALE)
            snprintf(r->message, sizeof r->message, "a newer version is stored");
        else if (sres[j].status == CR_NOTFOUND)
            snprintf(r->message, sizeof r->message, "no such item");
        else if (sres[j].status < 0)
            snprintf(r->message, sizeof r->message, "rejected by the store");
    }
    /* The commit is durable; index trouble now is logged, not reported as a lost write:
     * the next restart rebuilds the index from the store. */
    if (apply_to_indexes(e, sops, sres, m))
        CR_ERROR("shard", "index update after commit: %s", cr_error_message());
out:
    for (size_t j = 0; blobs && j < n; j++)
        free(blobs[j]);
    free(blobs);
    free(where);
    free(sres);
    free(sops);
    return rc;
}

/* ---- search ----------------------------------------------------------------------------- */

static cr_err search_candidates(shard_engine *e, const float *q, uint32_t k,
                                const uint64_t *bits, uint64_t limit, uint64_t matches,
                                bool nowait, float *dist, int64_t *ids)
{
    int64_t *cand = malloc((matches ? matches : 1) * sizeof *cand);
    float *vecs = malloc((matches ? matches : 1) * (size_t)e->dim * sizeof *vecs);
    size_t n = 0;
    cr_err rc;
    if (!cand || !vecs) {
        free(cand);
        free(vecs);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (uint64_t w = 0; w < (limit + 63) / 64 && n < matches; w++) {
        uint64_t word = bits[w];
        while (word) {
            cand[n++] = (int64_t)(w * 64 + (uint64_t)__builtin_ctzll(word));
            word &= word - 1;
        }
    }
    rc = fetch_vectors(e, cand, n, vecs);
    if (!rc)
        rc = shard_index_search_candidates_nowait(e->index, 1, q, k, (int64_t)n, cand, vecs,
                                                  dist, ids, nowait);
    free(cand);
    free(vecs);
    return rc;
}

/* The queue's read lock; with `nowait` CR_TIMEOUT rather than wait (a writer holds it or
 * waits for it). */
static cr_err queue_rdlock(backlog *b, bool nowait)
{
    if (!nowait) {
        pthread_rwlock_rdlock(&b->rw);
        return CR_OK;
    }
    return pthread_rwlock_tryrdlock(&b->rw) == 0 ? CR_OK : CR_TIMEOUT;
}

/* Runs `part` (a search of the index) and returns with the queue read-locked for the
 * caller's scan of it, so that every item is seen by one or the other. The indexer dequeues
 * items only once the index holds them: if no dequeue happened since before the index
 * search, whatever it missed is still queued. Otherwise the search runs again, and the last
 * attempt holds the lock across it. Not holding it is what keeps the writer's appends (and
 * so acknowledgements) from queueing behind a search that waits for an index add. On an
 * error the lock is not held. */
static cr_err search_then_lock(shard_engine *e, bool nowait, cr_err (*part)(void *), void *ctx)
{
    backlog *b = &e->bl;
    for (int attempt = 0;; attempt++) {
        uint64_t seen = atomic_load(&b->moved);
        cr_err rc;
        if (attempt == SEARCH_RETRIES) {
            rc = queue_rdlock(b, nowait);
            if (rc)
                return rc;
            rc = part(ctx);
            if (rc)
                pthread_rwlock_unlock(&b->rw);
            return rc;
        }
        rc = part(ctx);
        if (!rc)
            rc = queue_rdlock(b, nowait);
        if (rc || atomic_load(&b->moved) == seen)
            return rc;
        pthread_rwlock_unlock(&b->rw);
    }
}

/* One query's index part: unfiltered, or filtered (bits over ids < next_id). */
typedef struct one_search {
    shard_engine *e;
    const float *query;
    uint32_t k;
    const uint64_t *bits;
    int64_t next_id;
    uint64_t matches, live;
    shard_index_search_params p;
    float *dist;
    int64_t *ids;
} one_search;

static cr_err one_search_index(void *arg)
{
    one_search *o = arg;
    shard_engine *e = o->e;
    shard_index_search_params p = o->p; /* a copy: widening changes it */
    uint64_t want;
    cr_err rc;
    if (o->bits && o->matches <= e->o.exact_max &&
        (double)o->matches <= e->o.exact_fraction * (double)o->live)
        return search_candidates(e, o->query, o->k, o->bits, (uint64_t)o->next_id, o->matches,
                                 p.nowait, o->dist, o->ids);
    if (o->bits) {
        p.allow = (const uint8_t *)o->bits; /* little-endian words read as bytes: same bits */
        p.allow_bytes = (size_t)((o->next_id + 63) / 64) * 8;
    }
    rc = shard_index_search(e->index, 1, o->query, o->k, &p, o->dist, o->ids);
    if (rc || !o->bits)
        return rc;
    /* Graph and cell searches under a selector can come back short (HNSW visits ef nodes,
     * most of which a filter may reject). A filtered page is never left short while matches
     * remain: widen the search, and past that scan the matches exactly. */
    want = o->matches < o->k ? o->matches : o->k;
    if (count_found(o->ids, o->k) < want) {
        p.ef_search = p.ef_search > 0 ? p.ef_search * 8 : 256;
        p.nprobe = p.nprobe > 0 ? p.nprobe * 8 : 64;
        rc = shard_index_search(e->index, 1, o->query, o->k, &p, o->dist, o->ids);
    }
    if (!rc && count_found(o->ids, o->k) < want && o->matches <= EXACT_FALLBACK_MAX)
        rc = search_candidates(e, o->query, o->k, o->bits, (uint64_t)o->next_id, o->matches,
                               p.nowait, o->dist, o->ids);
    return rc;
}

cr_err shard_engine_search(shard_engine *e, const shard_engine_query *q, shard_engine_hit *hits,
                           size_t *n_hits)
{
    one_search o = {.e = e, .k = q->k, .p = shard_index_default_search_params()};
    float *query = NULL, *dist = NULL;
    int64_t *ids = NULL;
    uint64_t *bits = NULL;
    cr_err rc;

    *n_hits = 0;
    rc = cr_validate_k(q->k, CR_MAX_K);
    if (!rc)
        rc = q->vector ? cr_validate_finite(q->vector, (size_t)e->dim, "query vector")
                       : cr_error_set(CR_ERR_INVALID, "query vector missing");
    if (rc)
        return rc;
    query = malloc((size_t)e->dim * sizeof *query);
    dist = malloc(q->k * sizeof *dist);
    ids = malloc(q->k * sizeof *ids);
    if (!query || !dist || !ids) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(query, q->vector, (size_t)e->dim * sizeof *query);
    if (e->metric == SHARD_INDEX_METRIC_IP) {
        if (l2_norm(query, (size_t)e->dim) == 0) {
            rc = cr_error_set(CR_ERR_INVALID, "query vector is zero");
            goto out;
        }
        normalize_rows(query, 1, (size_t)e->dim);
    }
    o.p.nprobe = (int)q->nprobe;
    o.p.ef_search = (int)q->ef_search;
    o.p.exact = q->exact;
    o.p.threads = q->threads > 0 ? q->threads : 1;
    o.p.fetch = fetch_vectors;
    o.p.fetch_ctx = e;
    o.p.nowait = q->nowait;
    if (q->filter) {
        rc = shard_store_next_id(e->store, &o.next_id);
        if (!rc)
            rc = shard_attrs_eval(e->attrs, q->filter, (uint64_t)o.next_id, &bits, &o.matches);
        if (rc || o.matches == 0)
            goto out;
        o.live = shard_attrs_count_live(e->attrs);
        o.bits = bits;
    }
    o.query = query;
    o.dist = dist;
    o.ids = ids;
    rc = search_then_lock(e, q->nowait, one_search_index, &o);
    if (rc)
        goto out;
    backlog_scan(e, query, q->k, bits, (uint64_t)o.next_id, dist, ids);
    pthread_rwlock_unlock(&e->bl.rw);
    for (uint32_t i = 0; i < q->k; i++) {
        if (ids[i] < 0)
            continue;
        hits[*n_hits].id = ids[i];
        hits[*n_hits].score = dist[i];
        (*n_hits)++;
    }
out:
    free(bits);
    free(query);
    free(dist);
    free(ids);
    return rc;
}

/* A batch's index part: nq queries in one call. */
typedef struct many_search {
    shard_engine *e;
    const float *q;
    size_t nq, k;
    const shard_index_search_params *p;
    float *dist;
    int64_t *ids;
} many_search;

static cr_err many_search_index(void *arg)
{
    many_search *m = arg;
    return shard_index_search(m->e->index, (int64_t)m->nq, m->q, (int64_t)m->k, m->p, m->dist,
                              m->ids);
}

cr_err shard_engine_search_many(shard_engine *e, const float *queries, size_t nq,
                                const shard_engine_query *common, shard_engine_hit *hits,
                                size_t *n_hits)
{
    shard_index_search_params p = shard_index_default_search_params();
    size_t dim = (size_t)e->dim, k = common->k;
    float *q = malloc(nq * dim * sizeof *q), *dist = malloc(nq * k * sizeof *dist);
    int64_t *ids = malloc(nq * k * sizeof *ids);
    many_search m = {e, q, nq, k, &p, dist, ids};
    cr_err rc = cr_validate_k(common->k, CR_MAX_K);

    if (!rc && (!q || !dist || !ids))
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = cr_validate_finite(queries, nq * dim, "query vectors");
    if (rc)
        goto out;
    memcpy(q, queries, nq * dim * sizeof *q);
    if (e->metric == SHARD_INDEX_METRIC_IP) {
        for (size_t i = 0; i < nq; i++)
            if (l2_norm(q + i * dim, dim) == 0) {
                rc = cr_error_set(CR_ERR_INVALID, "query %zu is a zero vector", i);
                goto out;
            }
        normalize_rows(q, nq, dim);
    }
    p.nprobe = (int)common->nprobe;
    p.ef_search = (int)common->ef_search;
    p.exact = common->exact;
    p.threads = common->threads > 0 ? common->threads : 0;
    p.fetch = fetch_vectors;
    p.fetch_ctx = e;
    p.nowait = common->nowait;
    rc = search_then_lock(e, common->nowait, many_search_index, &m);
    if (rc)
        goto out;
    for (size_t i = 0; i < nq; i++)
        backlog_scan(e, q + i * dim, (uint32_t)k, NULL, 0, dist + i * k, ids + i * k);
    pthread_rwlock_unlock(&e->bl.rw);
    for (size_t i = 0; i < nq; i++) {
        n_hits[i] = 0;
        for (size_t j = 0; j < k; j++)
            if (ids[i * k + j] >= 0) {
                hits[i * k + n_hits[i]].id = ids[i * k + j];
                hits[i * k + n_hits[i]].score = dist[i * k + j];
                n_hits[i]++;
            }
    }
out:
    free(q);
    free(dist);
    free(ids);
    return rc;
}

/* An item by external id with its attribute blob (malloc'd into *blob). */
static cr_err read_attrs(shard_engine *e, const char *ext_id, shard_store_item *item, float *vec,
                         uint8_t **blob)
{
    uint8_t small[2048];
    size_t len = strlen(ext_id);
    cr_err rc;
    *blob = NULL;
    rc = shard_store_get(e->store, ext_id, len, item, vec, small, sizeof small);
    if (rc == CR_ERR_INVALID && item->attrs_len > sizeof small) {
        *blob = malloc(item->attrs_len);
        if (!*blob)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        return shard_store_get(e->store, ext_id, len, item, vec, *blob, item->attrs_len);
    }
    if (rc == CR_OK && item->attrs_len) {
        *blob = malloc(item->attrs_len);
        if (!*blob)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        memcpy(*blob, small, item->attrs_len);
    }
    return rc;
}

cr_err shard_engine_hits_fill(shard_engine *e, const shard_engine_hit *hits, size_t n,
                              int with_attrs, int with_vector, shard_hit **out, size_t *n_out)
{
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    shard_store_item *items = malloc((n ? n : 1) * sizeof *items);
    cr_err *status = malloc((n ? n : 1) * sizeof *status);
    void **blobs = with_attrs ? calloc(n ? n : 1, sizeof *blobs) : NULL;
    float *vecs = with_vector ? malloc((n ? n : 1) * (size_t)e->dim * sizeof *vecs) : NULL;
    cr_err rc = CR_OK;

    *n_out = 0;
    if (!ids || !items || !status || (with_attrs && !blobs) || (with_vector && !vecs)) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = hits[i].id;
    rc = shard_store_get_many_by_id(e->store, ids, n, items, status, blobs, vecs);
    for (size_t i = 0; !rc && i < n; i++) {
        shard_hit tmp = {0}, *h;
        block_parts p = {&tmp.id, &tmp.vector, &tmp.attrs, &tmp.n_attrs};
        if (status[i] != CR_OK)
            continue; /* died since the search */
        h = value_block(sizeof *h, items[i].ext_id, items[i].ext_len,
                        with_vector ? vecs + i * (size_t)e->dim : NULL, (size_t)e->dim,
                        with_attrs ? blobs[i] : NULL, with_attrs ? items[i].attrs_len : 0, &p,
                        &rc);
        if (!h) {
            if (rc == CR_ERR_STORE)
                cr_error_wrap(rc, "%s", items[i].ext_id);
            break;
        }
        *h = tmp;
        h->score = hits[i].score;
        h->dim = with_vector ? (size_t)e->dim : 0;
        out[(*n_out)++] = h;
    }
out:
    for (size_t i = 0; blobs && i < n; i++)
        free(blobs[i]);
    free(blobs);
    free(vecs);
    free(ids);
    free(items);
    free(status);
    return rc;
}

cr_err shard_engine_get(shard_engine *e, const char *ext_id, int with_vector,
                        shard_item **out)
{
    shard_store_item item;
    uint8_t *blob = NULL;
    float *vec = malloc((size_t)e->dim * sizeof *vec);
    shard_item *it = NULL;
    cr_err rc;

    if (!vec)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = cr_validate_id(ext_id);
    if (!rc)
        rc = read_attrs(e, ext_id, &item, vec, &blob);
    if (rc)
        goto out;
    it = item_block(ext_id, strlen(ext_id), item.version, with_vector ? vec : NULL,
                    (size_t)e->dim, blob, item.attrs_len, &rc);
    if (!it) {
        if (rc == CR_ERR_STORE)
            cr_error_wrap(rc, "%s", ext_id);
        goto out;
    }
    *out = it;
out:
    free(blob);
    free(vec);
    return rc;
}

/* ---- snapshots, rebuilds, stats ------------------------------------------------------- */

static cr_err snapshot_locked(shard_engine *e, shard_snapshot_info *out)
{
    uint64_t t0 = cr_clock_mono_ms();
    int64_t next_id, info[2];
    struct stat st;
    cr_err rc;
    /* The snapshot covers what the index holds; queued items replay from the store. */
    next_id = atomic_load(&e->indexed_hw);
    rc = shard_index_snapshot(e->index, e->snap_path, next_id);
    if (rc)
        return rc;
    info[0] = cr_clock_unix_ms();
    info[1] = next_id;
    rc = shard_store_meta_set(e->store, SNAPSHOT_META_KEY, info, sizeof info);
    if (rc)
        return rc;
    atomic_store(&e->last_snapshot_ms, info[0]);
    atomic_store(&e->snapshot_hw, next_id);
    atomic_store(&e->dirty, 0);
    if (out) {
        out->high_water = (uint64_t)next_id;
        out->bytes = stat(e->snap_path, &st) == 0 ? (uint64_t)st.st_size : 0;
        out->duration_ms = cr_clock_mono_ms() - t0;
    }
    CR_INFO("shard", "snapshot at id %lld in %llu ms", (long long)next_id,
            (unsigned long long)(cr_clock_mono_ms() - t0));
    return CR_OK;
}

cr_err shard_engine_snapshot(shard_engine *e, shard_snapshot_info *out)
{
    cr_err rc;
    pthread_mutex_lock(&e->ixmu);
    rc = snapshot_locked(e, out);
    pthread_mutex_unlock(&e->ixmu);
    return rc;
}

cr_err shard_engine_snapshot_if_idle(shard_engine *e)
{
    cr_err rc;
    if (pthread_mutex_trylock(&e->ixmu) != 0)
        return CR_TIMEOUT;
    rc = snapshot_locked(e, NULL);
    pthread_mutex_unlock(&e->ixmu);
    return rc;
}

static cr_err rebuild_item(const shard_store_view *v, void *ctx)
{
    void **c = ctx;
    shard_engine *e = c[0];
    float *vec = c[2];
    if (v->id >= atomic_load(&e->indexed_hw))
        return CR_OK; /* still queued: the indexer adds it */
    memcpy(vec, v->vector, (size_t)e->dim * sizeof *vec);
    if (e->metric == SHARD_INDEX_METRIC_IP)
        normalize_rows(vec, 1, (size_t)e->dim);
    return shard_index_builder_add(c[1], 1, &v->id, vec);
}

static cr_err rebuild_feed(void *ctx, shard_index_builder *b)
{
    void **c = ctx;
    shard_engine *e = c[0];
    c[1] = b;
    return shard_store_iterate(e->store, 0, 0, rebuild_item, c);
}

cr_err shard_engine_maybe_rebuild(shard_engine *e, double fraction)
{
    shard_index_stats s;
    void *c[3];
    cr_err rc;
    /* Called often from the writer: never wait behind the indexer's adds for a check. */
    if (backlog_pending(&e->bl) > 0)
        return CR_OK;
    shard_index_stats_get(e->index, &s);
    if (s.tombstones == 0 || (double)s.tombstones < fraction * (double)(s.ntotal + 1))
        return CR_OK;
    c[0] = e;
    c[2] = malloc((size_t)e->dim * sizeof(float));
    if (!c[2])
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&e->ixmu);
    rc = shard_index_rebuild(e->index, rebuild_feed, c);
    pthread_mutex_unlock(&e->ixmu);
    free(c[2]);
    if (!rc)
        CR_INFO("shard", "index rebuilt: %lld tombstones dropped", (long long)s.tombstones);
    return rc;
}

cr_err shard_engine_stats(shard_engine *e, shard_stats *out)
{
    shard_store_stats ss;
    shard_index_stats is;
    struct stat st;
    cr_err rc = shard_store_stats_get(e->store, &ss);
    if (rc)
        return rc;
    shard_index_stats_get(e->index, &is);
    memset(out, 0, sizeof *out);
    out->count = ss.live;
    out->dim = (uint32_t)e->dim;
    out->metric = (int)e->metric;
    out->index = e->factory;
    out->trained = is.is_trained;
    out->bytes_on_disk = ss.file_bytes + (stat(e->snap_path, &st) == 0 ? (uint64_t)st.st_size : 0);
    out->last_snapshot_unix_ms = atomic_load(&e->last_snapshot_ms);
    out->snapshot_high_water = (uint64_t)atomic_load(&e->snapshot_hw);
    out->uptime_s = (cr_clock_mono_ms() - e->start_ms) / 1000;
    out->tombstones = (uint64_t)is.tombstones;
    out->max_version = cr_hlc_last(&e->hlc); /* >= every stored version: seeds coordinators */
    return CR_OK;
}

/* ---- scan (replica repair) ---------------------------------------------------------------- */

typedef struct scan_ctx {
    shard_engine *e;
    shard_scan_page *out;
    uint32_t limit;
    int with_vector;
    int64_t last_id;
    cr_err rc;
} scan_ctx;

static cr_err scan_item(const shard_store_view *v, void *arg)
{
    scan_ctx *s = arg;
    shard_item *it;
    char ext[SHARD_STORE_EXT_ID_MAX + 1];
    int deleted = 0;
    uint64_t version = v->version;
    cr_err rc = CR_OK;
    if (s->out->n >= s->limit)
        return CR_NOTFOUND; /* stop: page full */
    s->last_id = v->id;
    memcpy(ext, v->ext_id, v->ext_len);
    ext[v->ext_len] = '\0';
    if (v->deleted) {
        /* A dead id is either replaced (the item lives on under a newer id: skip) or
         * deleted (a tombstone: report it, so the peer deletes too). */
        shard_store_item item;
        rc = shard_store_get(s->e->store, ext, v->ext_len, &item, NULL, NULL, 0);
        if (rc != CR_NOTFOUND || !item.deleted)
            return CR_OK;
        deleted = 1;
        version = item.version;
    }
    /* Attributes that do not decode are left out, as before: repair copies what it can. */
    it = item_block(ext, v->ext_len, version, !deleted && s->with_vector ? v->vector : NULL,
                    (size_t)s->e->dim, deleted ? NULL : v->attrs, deleted ? 0 : v->attrs_len,
                    &rc);
    if (!it && rc == CR_ERR_STORE)
        it = item_block(ext, v->ext_len, version,
                        !deleted && s->with_vector ? v->vector : NULL, (size_t)s->e->dim, NULL,
                        0, &rc);
    if (!it)
        return s->rc = rc;
    s->out->items[s->out->n] = it;
    s->out->deleted[s->out->n] = deleted;
    s->out->n++;
    return CR_OK;
}

/* A scan page holds `limit` items, 512 when 0, at most 4096. */
static uint32_t scan_page_limit(uint32_t limit)
{
    return limit ? (limit > 4096 ? 4096 : limit) : 512;
}

static cr_err scan_page_alloc(shard_scan_page *out, uint32_t limit)
{
    memset(out, 0, sizeof *out);
    out->items = calloc(limit, sizeof *out->items);
    out->deleted = calloc(limit, sizeof *out->deleted);
    if (!out->items || !out->deleted) {
        shard_scan_page_clear(out);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    return CR_OK;
}

cr_err shard_engine_scan(shard_engine *e, uint64_t cursor, uint32_t limit, int with_vector,
                         shard_scan_page *out, uint64_t *next_cursor)
{
    scan_ctx s = {e, out, scan_page_limit(limit), with_vector, -1, CR_OK};
    cr_err rc;
    rc = scan_page_alloc(out, s.limit);
    if (rc)
        return rc;
    rc = shard_store_iterate(e->store, (int64_t)cursor, SHARD_STORE_ITER_DEAD, scan_item, &s);
    if (s.rc)
        rc = s.rc;
    out->done = rc == CR_OK; /* CR_NOTFOUND: stopped because the page is full */
    if (rc == CR_NOTFOUND)
        rc = CR_OK;
    *next_cursor = s.last_id >= 0 ? (uint64_t)s.last_id + 1 : cursor;
    if (rc)
        shard_scan_page_clear(out);
    return rc;
}

/* ---- scan by external id or by version (replica repair) ------------------------------------ */

typedef struct oscan_ctx {
    shard_engine *e;
    shard_scan_page *out;
    uint32_t limit;
    int with_vector, keys_only;
} oscan_ctx;

static cr_err oscan_item(const shard_store_view *v, void *arg)
{
    oscan_ctx *s = arg;
    int with_attrs = !s->keys_only && !v->deleted && v->attrs_len;
    int with_vector = !v->deleted && !s->keys_only && s->with_vector && v->vector;
    shard_item *it;
    cr_err rc;
    if (s->out->n >= s->limit)
        return CR_NOTFOUND; /* page full */
    it = item_block(v->ext_id, v->ext_len, v->version, with_vector ? v->vector : NULL,
                    (size_t)s->e->dim, with_attrs ? v->attrs : NULL, with_attrs ? v->attrs_len : 0,
                    &rc);
    if (!it)
        return rc;
    s->out->items[s->out->n] = it;
    s->out->deleted[s->out->n] = v->deleted;
    s->out->n++;
    return CR_OK;
}

/* Cursor text: by external id, the last id; by version, "<version>:<last id>". */
static cr_err oscan_cursor_parse(const shard_engine_scan_req *q, shard_store_pos *pos)
{
    const char *id = q->cursor;
    memset(pos, 0, sizeof *pos);
    if (!id || !id[0])
        return CR_OK;
    if (q->by_version) {
        char *end = NULL;
        unsigned long long v = strtoull(id, &end, 10);
        if (!end || end == id || *end != ':' || id[0] == '-')
            return cr_error_set(CR_ERR_INVALID, "scan: bad cursor");
        pos->version = v;
        id = end + 1;
    }
    pos->ext_len = strlen(id);
    if (pos->ext_len == 0 || pos->ext_len > SHARD_STORE_EXT_ID_MAX)
        return cr_error_set(CR_ERR_INVALID, "scan: bad cursor");
    memcpy(pos->ext_id, id, pos->ext_len + 1);
    pos->set = 1;
    return CR_OK;
}

cr_err shard_engine_scan_ordered(shard_engine *e, const shard_engine_scan_req *q,
                                 shard_scan_page *out, char *next_cursor, size_t cap)
{
    oscan_ctx s = {e, out, scan_page_limit(q->limit), q->with_vector,
                   q->keys_only};
    shard_store_pos pos;
    int at_end = 0;
    cr_err rc = oscan_cursor_parse(q, &pos);
    if (rc)
        return rc;
    rc = scan_page_alloc(out, s.limit);
    if (rc)
        return rc;
    rc = shard_store_scan(e->store, q->by_version ? SHARD_STORE_BY_VERSION : SHARD_STORE_BY_EXT_ID,
                          q->min_version, q->max_version, !q->keys_only, &pos, oscan_item, &s,
                          &at_end);
    if (rc == CR_NOTFOUND)
        rc = CR_OK; /* stopped because the page is full */
    if (rc) {
        shard_scan_page_clear(out);
        return rc;
    }
    out->done = at_end;
    if (!pos.set)
        snprintf(next_cursor, cap, "%s", q->cursor ? q->cursor : "");
    else if (q->by_version)
        snprintf(next_cursor, cap, "%llu:%s", (unsigned long long)pos.version, pos.ext_id);
    else
        snprintf(next_cursor, cap, "%s", pos.ext_id);
    return CR_OK;
}
