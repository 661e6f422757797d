/* engine.h — one shard's data: the LMDB store, the FAISS index and the attribute index,
 * kept consistent. The shard server (server.c) and the embedded mode call this; it does
 * no networking.
 *
 *     shard_engine_opts o = shard_engine_default_opts();
 *     o.create = 1; o.dim = 128; o.metric = SHARD_INDEX_METRIC_IP; o.factory = "HNSW32";
 *     shard_engine *e;
 *     rc = shard_engine_open(&e, "/data/shard0", &o);   // loads the snapshot, replays the rest
 *     rc = shard_engine_write(e, items...);              // writer thread only
 *     rc = shard_engine_search(e, query, ...);           // any thread
 *     shard_engine_close(&e);
 *
 * Vectors: the store keeps each item's raw vector exactly; for metric `ip` the index holds
 * the L2-normalized vector and queries are normalized, so `ip` ranks by cosine similarity
 * and a zero vector is rejected. For `l2` vectors are indexed as given.
 *
 * Restart: the index snapshot (DIR/index.snap) carries the internal-id high-water mark H.
 * Open loads it, adds the items with ids >= H, removes the ids below H that died after the
 * snapshot, and rebuilds the attribute index from the store — one pass over the store.
 *
 * Types: the engine speaks shard/types.h (items, attributes, compiled filters, hits, stats,
 * scan pages), never protobuf: shard/server.c translates through shard/convert.h.
 *
 * Threads: searches, gets and stats from any thread; writes, snapshots and rebuilds from
 * one writer thread.
 */
#ifndef SHARD_ENGINE_H
#define SHARD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shard/index.h"
#include "shard/types.h"

typedef struct shard_engine shard_engine;

/* Creation-time parameters (dim, metric, factory) are stored with the shard. Opening an
 * existing shard checks only those the caller set (dim > 0, metric_set, factory != NULL):
 * a default is not a request, so a restart needs no more than the directory. */
typedef struct shard_engine_opts {
    int create;                 /* create the shard when the directory holds none */
    int dim;                    /* with create; checked against the stored one when > 0 */
    shard_index_metric metric;  /* with create (default ip); checked when metric_set */
    int metric_set;             /* the caller asked for `metric` explicitly */
    const char *factory;        /* with create; checked when set */
    int64_t train_size;         /* 0 = index default */
    const char *template_path;  /* trained template index, optional */
    double exact_fraction;      /* filters matching at most this fraction of the items are
                                   searched exactly (default 0.02) */
    uint64_t exact_max;         /* ...and at most this many items (default 20000) */
    size_t map_size;            /* initial LMDB map size; 0 = default */
    uint64_t index_backlog_bytes; /* vectors of committed items that may wait for the ANN
                                   index, searched exactly meanwhile (default 256 MiB);
                                   0 = the writer indexes inside the commit */
    int keep_images;            /* store each upserted item's image bytes beside it
                                   (--keep-images); 0: bytes that arrive are dropped */
} shard_engine_opts;

shard_engine_opts shard_engine_default_opts(void);

cr_err shard_engine_open(shard_engine **out, const char *dir, const shard_engine_opts *o);
void shard_engine_close(shard_engine **pp);

/* One write: upsert (item with vector) or delete (item->id and version only). */
typedef struct shard_engine_write_op {
    int is_delete;
    const shard_item *item; /* id, vector (dim floats), attributes, version (0 = assign) */
} shard_engine_write_op;

typedef struct shard_engine_write_result {
    cr_err status;     /* CR_OK, CR_STALE, CR_NOTFOUND (delete of absent id), CR_ERR_INVALID */
    uint64_t version;  /* the version stored (assigned when the op had 0) */
    char message[160]; /* why, for errors */
} shard_engine_write_result;

/* Validates every op (invalid ones get CR_ERR_INVALID in their result and are skipped),
 * commits the valid ones in ONE synced transaction, then updates the index and attribute
 * index. Returns a negative code only when nothing was applied: a store failure, or a full
 * index queue (CR_ERR_INDEX at once while the index adds fail, CR_ERR_OVERLOADED after
 * waiting 10 s for the indexer). A failed index add never loses an item: it stays queued,
 * searched exactly, and the add is retried with backoff. */
cr_err shard_engine_write(shard_engine *e, const shard_engine_write_op *ops, size_t n,
                          shard_engine_write_result *results);

typedef struct shard_engine_hit {
    int64_t id; /* internal id */
    float score;
} shard_engine_hit;

typedef struct shard_engine_query {
    const float *vector;              /* dim floats, raw */
    uint32_t k;                       /* 1..1000 */
    const shard_filter *filter;       /* compiled (shard_conv_filter_compile); may be NULL */
    uint32_t nprobe, ef_search;
    int exact;
    int threads;                      /* OpenMP threads for this search (0 = 1) */
    int nowait;                       /* CR_TIMEOUT at once, rather than wait, while an index
                                         add or removal holds the index (for a thread that
                                         must not block: the server's front) */
} shard_engine_query;

/* Top-k internal ids (hits has room for k; *n_hits gets how many). Validates the query:
 * dimension, finite values, k range, filter (unknown attribute, bad types). CR_TIMEOUT only
 * with q->nowait (the index was busy; nothing was searched). */
cr_err shard_engine_search(shard_engine *e, const shard_engine_query *q, shard_engine_hit *hits,
                           size_t *n_hits);

/* Unfiltered batch: nq raw queries (nq * dim floats) with the same k and parameters, searched
 * in one index call over `threads` OpenMP threads. hits has room for nq * k; n_hits[i] gets
 * how many of row i are set. */
cr_err shard_engine_search_many(shard_engine *e, const float *queries, size_t nq,
                                const shard_engine_query *common, shard_engine_hit *hits,
                                size_t *n_hits);

/* Resolves n hits at once (one store read): out[] gets the resolved hits (one block each;
 * free with shard_hit_free), *n_out how many — hits whose item died meanwhile are skipped. */
cr_err shard_engine_hits_fill(shard_engine *e, const shard_engine_hit *hits, size_t n,
                              int with_attrs, int with_vector, shard_hit **out, size_t *n_out);

/* Looks up one item by external id. On CR_OK *item is a new block (free with
 * shard_item_free): id, version, attributes, and the vector when asked for. */
cr_err shard_engine_get(shard_engine *e, const char *ext_id, int with_vector,
                        shard_item **item);

/* The image kept with live item ext_id (shard_store_get_image): CR_OK with *image malloc'd
 * (NULL, *len 0 when it has none), CR_NOTFOUND when no live item. Any thread. */
cr_err shard_engine_get_image(shard_engine *e, const char *ext_id, void **image, size_t *len);

/* Writes the index snapshot now, covering what the index holds (items still waiting for it
 * are replayed from the store at the next open). Writer thread. */
cr_err shard_engine_snapshot(shard_engine *e, shard_snapshot_info *out);

/* The same, unless the indexer is adding to the index right now: then CR_TIMEOUT at once
 * (periodic snapshots must not hold the writer, and with it every acknowledgement). */
cr_err shard_engine_snapshot_if_idle(shard_engine *e);

/* Waits until every committed item is in the ANN index (before a full snapshot, at
 * shutdown). Bounded: CR_ERR_INDEX (saying why) once 5 adds in a row have failed
 * or 30 s pass without progress; the items left stay searched exactly, the add is retried,
 * and the next open indexes them too. Writer thread. */
cr_err shard_engine_index_drain(shard_engine *e);

/* Without an indexer thread (index_backlog_bytes 0, or the thread is gone) adds the queued
 * items on the calling thread, honouring the backoff after a failed add; no-op otherwise.
 * Writer thread (the server calls it when idle). */
void shard_engine_index_work(shard_engine *e);

/* Committed items not yet in the ANN index. */
uint64_t shard_engine_index_backlog(shard_engine *e);

/* Starts a background rebuild of the index from the store when tombstones exceed `fraction`
 * of the live items and none runs; joins a finished one (its failure is returned then).
 * Writes and searches go on meanwhile (replay.c says how). Writer thread. Returns CR_OK when
 * nothing was needed too. */
cr_err shard_engine_maybe_rebuild(shard_engine *e, double fraction);

/* Waits for a running background rebuild to swap in (or fail). Writer thread. */
cr_err shard_engine_rebuild_wait(shard_engine *e);

/* 1 while a background rebuild builds (it has not swapped in yet). Writer thread. */
int shard_engine_rebuilding(shard_engine *e);

/* Fills *out (strings point into the engine: valid until close). */
cr_err shard_engine_stats(shard_engine *e, shard_stats *out);

/* Lists items in internal-id order after `cursor` (exclusive; 0 = from the start) for replica
 * repair: live items (with vectors when asked) and deleted ids (as deleted, with their
 * tombstone version). Fills *out (free with shard_scan_page_clear) and *next_cursor. */
cr_err shard_engine_scan(shard_engine *e, uint64_t cursor, uint32_t limit, int with_vector,
                         shard_scan_page *out, uint64_t *next_cursor);

/* A scan in external-id or version order (ScanRequest.order 1 / 2). */
typedef struct shard_engine_scan_req {
    int by_version;         /* 0: by external id */
    const char *cursor;     /* NULL or "": from the start; else a previous next_cursor */
    uint64_t min_version;   /* versions >= this (0: all) */
    uint64_t max_version;   /* versions <= this (0: no bound) */
    uint32_t limit;         /* items per page (0: 512; at most 4096) */
    int with_vector;        /* live items carry their vectors */
    int keys_only;          /* id, version and deleted only */
} shard_engine_scan_req;

/* Lists every external id once with its current state (see shard_store_scan): live items,
 * and tombstones as deleted items with the delete's version. Fills *out (free with
 * shard_scan_page_clear) and next_cursor (cap >= 300 bytes). A page
 * may hold fewer than `limit` items, even none, without being the last. Any thread. */
cr_err shard_engine_scan_ordered(shard_engine *e, const shard_engine_scan_req *q,
                                 shard_scan_page *out, char *next_cursor, size_t cap);

/* A consistent copy of the shard into the new directory `dir` while it serves (see
 * shard/backup.h); *bytes gets its size. Any thread. */
cr_err shard_engine_backup(shard_engine *e, const char *dir, uint64_t *bytes);

int shard_engine_dim(const shard_engine *e);
shard_index_metric shard_engine_metric(const shard_engine *e);
/* The index factory the shard was made with; valid while the engine is open. */
const char *shard_engine_factory(const shard_engine *e);
/* Writes since the last snapshot. */
uint64_t shard_engine_dirty(const shard_engine *e);

#endif
