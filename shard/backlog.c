/* backlog.c — the index backlog: committed items waiting for the ANN index, searched exactly
 * meanwhile, and the indexer thread that adds them to the index (or the writer, when none
 * runs). See the backlog struct in engine_impl.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "shard/engine_impl.h"

#define INDEX_CHUNK 4096 /* the most items per index add (the chunk buffers' size) */
#define INDEX_CHUNK_MIN 64 /* the fewest (but for a shorter queue) */
/* An add holds the index's write lock: searches and removals wait behind it. Larger adds
 * build a little faster, but 4096 HNSW32 adds held it ~0.4 s on two idle cores and 5-20 s
 * on the shared, loaded machine, past the coordinator's 5 s backend timeout (the soak's
 * errors: searches and writes timed out while the preload was indexed). So the chunk is
 * sized from the last add's time per item to hold the lock about this long. */
#define INDEX_HOLD_MS 50
#define IXMU_YIELD_MS 100 /* the indexer waits at most this long for others on ixmu */
#define INDEX_RETRY_MIN_MS 20   /* a failed add is retried after this, doubling... */
#define INDEX_RETRY_MAX_MS 2000 /* ...up to this */
#define ROOM_WAIT_MS 10000      /* a writer waits at most this long for room in the queue */
#define DRAIN_STALL_MS 30000    /* a drain gives up after this long without progress, */
#define DRAIN_FAILS 5           /* or once this many adds in a row have failed */
#define WRITER_QUEUE_MIN (4 * INDEX_CHUNK) /* queue bound while the writer indexes itself */
#define WAIT_SLICE_MS 100

/* ---- failure injection (tests) ------------------------------------------------------------ */

/* CIRRUS_SHARD_FAULTS="index-add=N,indexer-exit=N,indexer-start,indexer-alloc": the next N
 * index adds fail; the indexer thread exits after N chunks; it does not start; it cannot
 * allocate its buffers. Read at open;
 * tests only (the failure paths cannot be reached on demand otherwise). */
void shard_backlog_faults_load(shard_engine *e)
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

uint64_t shard_backlog_pending(backlog *b)
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
cr_err shard_backlog_append(shard_engine *e, size_t n, const int64_t *ids, const float *vecs)
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
void shard_backlog_kill(backlog *b, int64_t id)
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

/* The next chunk's size from this add of m items in us: what holds the index about
 * INDEX_HOLD_MS at this add's rate, at most twice the last (under ixmu). */
static void chunk_adapt(backlog *b, size_t m, uint64_t us)
{
    double per_item = (double)(us ? us : 1) / (double)m;
    double fit = INDEX_HOLD_MS * 1000.0 / per_item;
    size_t next = fit >= (double)INDEX_CHUNK ? INDEX_CHUNK : (size_t)fit;
    if (m < b->chunk && us <= INDEX_HOLD_MS * 1000u)
        return; /* a short queue's add (its fixed costs) says little about a full chunk */
    if (next > 2 * b->chunk)
        next = 2 * b->chunk;
    b->chunk = next < INDEX_CHUNK_MIN ? INDEX_CHUNK_MIN : next > INDEX_CHUNK ? INDEX_CHUNK : next;
}

/* Moves the oldest queued items (one chunk, see chunk_adapt) into the index. When the add
 * fails nothing moves: the items stay queued, searched exactly, for the next attempt. Called
 * by the indexer thread, or by the writer when none runs. */
static cr_err index_chunk(shard_engine *e)
{
    backlog *b = &e->bl;
    size_t dim = (size_t)e->dim, take, m = 0;
    int64_t hw;
    cr_err rc = CR_OK;
    /* A writer or a snapshot waiting for ixmu goes first (bounded: IXMU_YIELD_MS). */
    for (int i = 0; i < IXMU_YIELD_MS * 10 && atomic_load(&e->ixmu_waiting) > 0; i++)
        nanosleep(&(struct timespec){0, 100000}, NULL);
    pthread_mutex_lock(&e->ixmu); /* also owns chunk_ids/chunk_vecs */
    if (atomic_load(&e->rb.active)) { /* set under ixmu: a rebuild reads indexed_hw */
        pthread_mutex_unlock(&e->ixmu);
        return CR_OK;
    }
    pthread_rwlock_rdlock(&b->rw);
    take = backlog_len(b) < b->chunk ? backlog_len(b) : b->chunk;
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
    else if (m) {
        rc = shard_index_add(e->index, (int64_t)m, b->chunk_ids, b->chunk_vecs);
        if (rc == CR_OK) /* the time it held the index, not its wait for searches to end */
            chunk_adapt(b, m, shard_index_last_add_held_us(e->index));
    }
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
        /* A rebuild feeds every id below indexed_hw: it stays put until the swap. */
        if (now < b->retry_ms || shard_backlog_pending(b) == 0 || atomic_load(&e->rb.active)) {
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
cr_err shard_backlog_index_on_writer(shard_engine *e)
{
    backlog *b = &e->bl;
    cr_err rc = CR_OK;
    pthread_mutex_lock(&b->mu);
    while (!b->running && shard_backlog_pending(b) > 0 && !atomic_load(&e->rb.active)) {
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
cr_err shard_backlog_room(shard_engine *e, size_t n)
{
    backlog *b = &e->bl;
    uint64_t deadline = cr_clock_mono_ms() + ROOM_WAIT_MS, limit = 0, pending = 0;
    cr_err rc = CR_OK;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        limit = b->running || e->backlog_max > WRITER_QUEUE_MIN ? e->backlog_max
                                                                 : WRITER_QUEUE_MIN;
        pending = shard_backlog_pending(b);
        if (pending <= limit)
            break;
        if (!b->running) {
            pthread_mutex_unlock(&b->mu);
            rc = shard_backlog_index_on_writer(e);
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
    uint64_t stall, seen, pending;
    cr_err rc = shard_engine_rebuild_wait(e); /* the indexer pauses while one builds */
    if (rc)
        CR_WARN("shard", "%s", cr_error_message());
    rc = CR_OK;
    stall = cr_clock_mono_ms() + DRAIN_STALL_MS;
    pthread_mutex_lock(&b->mu);
    seen = b->chunks;
    while ((pending = shard_backlog_pending(b)) > 0) {
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
            shard_backlog_index_on_writer(e); /* its outcome is in b->fails */
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
        shard_backlog_index_on_writer(e) < 0)
        CR_WARN("shard", "index add on the writer: %s", cr_error_message());
}

uint64_t shard_engine_index_backlog(shard_engine *e)
{
    return shard_backlog_pending(&e->bl);
}

/* Merges the queued items matching `bits` (NULL: all) into a sorted top-k (dist, ids), skipping
 * ids already there (the indexer may have added them to the index but not yet dequeued them).
 * The caller holds e->bl.rw for reading (search_then_lock). */
void shard_backlog_scan(shard_engine *e, const float *q, uint32_t k, const uint64_t *bits,
                        uint64_t bits_limit, float *dist, int64_t *ids)
{
    backlog *b = &e->bl;
    size_t dim = (size_t)e->dim;
    bool ip = e->metric == SHARD_INDEX_METRIC_IP;
    int64_t cnt = (int64_t)shard_engine_count_found(ids, k); /* found ids come first, -1s after */
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
cr_err shard_backlog_start(shard_engine *e)
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
    b->chunk = INDEX_CHUNK_MIN * 4; /* grows (or shrinks) from the first add's rate */
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

void shard_backlog_stop(shard_engine *e)
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
