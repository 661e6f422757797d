/* engine_impl.h — what the three files of the shard engine share: engine.c (open and close,
 * writes, searches, gets, snapshots, stats, scans), backlog.c (the index backlog: committed
 * vectors not yet in the ANN index, and the indexer thread that moves them there) and
 * replay.c (the store replayed into the index at open; index rebuilds from the store).
 * The body of the shard_engine handle and the functions one file calls in another.
 * Private to shard/: not installed, included only by those three files. */
#ifndef SHARD_ENGINE_IMPL_H
#define SHARD_ENGINE_IMPL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/hlc.h"
#include "shard/attrs.h"
#include "shard/engine.h"
#include "shard/store.h"

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
    size_t chunk;          /* items per add (under ixmu): see backlog.c chunk_adapt */
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
    _Atomic int ixmu_waiting;      /* threads in shard_engine_ixmu_lock: the indexer, which
                                      takes ixmu chunk after chunk, lets them in first */
    _Atomic int64_t indexed_hw;    /* every live id below it is in the index */
    uint64_t backlog_max;          /* items */
    backlog bl;
    struct {                       /* the background rebuild (replay.c); fields under ixmu */
        _Atomic int active;        /* building: the indexer pauses, removes are recorded */
        _Atomic int cancel;        /* close: the feed stops */
        int64_t *dead;             /* ids removed from the live index while building */
        size_t n_dead, cap_dead;
        int lost;                  /* a removal could not be recorded: abort the rebuild */
        pthread_t thread;
        int started;               /* a thread to join */
        _Atomic int done;          /* it finished (rc below): join it */
        cr_err rc;
        char err[200];             /* its failure */
        int64_t dropped;           /* tombstones it dropped */
    } rb;
    struct {                       /* test-only failure injection (CIRRUS_SHARD_FAULTS) */
        _Atomic int64_t add_fails; /* the next N index adds fail */
        int64_t exit_after;        /* the indexer thread exits after N chunks (0 = never) */
        int start;                 /* the indexer thread "fails to start" */
        int alloc;                 /* ...or to allocate its buffers */
    } fault;
};

/* ---- engine.c ---------------------------------------------------------------------------- */

/* For METRIC_IP the index sees unit vectors; zero vectors cannot be ranked by cosine. */
void shard_engine_normalize_rows(float *x, size_t rows, size_t dim);

/* Decodes an item's attribute blob (the store's format) into the attribute index. */
cr_err shard_engine_attrs_index(shard_engine *e, int64_t id, const void *blob, size_t len);

/* The found ids of a top-k list (they come first, -1s after). */
uint64_t shard_engine_count_found(const int64_t *ids, uint32_t k);

/* ---- replay.c ---------------------------------------------------------------------------- */

/* During a background rebuild, records ids just removed from the live index (ixmu held), so
 * that they are removed from the fresh one before it replaces it. */
void shard_rebuild_note_removed(shard_engine *e, const int64_t *ids, size_t n);

/* Stops (cancels) and joins a background rebuild; no-op when none runs. For close. */
void shard_rebuild_stop(shard_engine *e);

/* ---- backlog.c --------------------------------------------------------------------------- */

/* CIRRUS_SHARD_FAULTS (tests only) into e->fault; called at open. */
void shard_backlog_faults_load(shard_engine *e);

/* The queue's locks and the chunk buffers; then the indexer thread (none when the bound is
 * 0: the writer indexes each commit itself). Any failure fails the open. */
cr_err shard_backlog_start(shard_engine *e);

/* Stops and joins the indexer thread and frees the queue; no-op before shard_backlog_start. */
void shard_backlog_stop(shard_engine *e);

/* Items queued, not yet in the index (takes b->rw for reading). */
uint64_t shard_backlog_pending(backlog *b);

/* Before a commit that may queue `n` items: waits (bounded) for room, then reserves it, so
 * that shard_backlog_append after the commit cannot fail. Writer thread. */
cr_err shard_backlog_room(shard_engine *e, size_t n);

/* Queues committed items (ascending ids, normalized vectors) for the indexer. */
cr_err shard_backlog_append(shard_engine *e, size_t n, const int64_t *ids, const float *vecs);

/* Marks a queued id dead (replaced or deleted before the indexer reached it). */
void shard_backlog_kill(backlog *b, int64_t id);

/* With no indexer thread, the writer adds the queued items itself. No-op while an indexer
 * runs. Writer thread. */
cr_err shard_backlog_index_on_writer(shard_engine *e);

/* Merges the queued items matching `bits` (NULL: all) into a sorted top-k (dist, ids). The
 * caller holds e->bl.rw for reading. */
void shard_backlog_scan(shard_engine *e, const float *q, uint32_t k, const uint64_t *bits,
                        uint64_t bits_limit, float *dist, int64_t *ids);

/* ---- replay.c ---------------------------------------------------------------------------- */

/* What the replay at open found. */
typedef struct shard_replay_stats {
    int64_t high_water;   /* the index snapshot's: ids below it were in the index already */
    uint64_t max_version; /* the highest version stored */
    uint64_t live;        /* live items */
    uint64_t added;       /* items added to the index by the replay */
} shard_replay_stats;

/* Opens the index (its snapshot, or a new empty one) and replays the store into it and into
 * the attribute index (e->attrs, which must exist): one pass over the store. */
cr_err shard_replay_run(shard_engine *e, shard_replay_stats *out);

/* ixmu for a writer or a snapshot: a mutex is not fair, and the indexer, which gives it up
 * and takes it again at once between its chunks, would keep it for a whole backlog (in the
 * soak, upserts of existing ids waited out the coordinator's 5 s timeout behind the
 * preload's indexing). See backlog.c index_chunk. */
static inline void shard_engine_ixmu_lock(shard_engine *e)
{
    atomic_fetch_add(&e->ixmu_waiting, 1);
    pthread_mutex_lock(&e->ixmu);
    atomic_fetch_sub(&e->ixmu_waiting, 1);
}

#endif
