/* index.h — a shard's vector index: one FAISS index (any factory string) over the dense
 * internal ids the store assigns. The only module besides the compat library that includes
 * FAISS headers (through the FAISS C API).
 *
 *     shard_index_opts o = shard_index_default_opts();
 *     o.dim = 512; o.metric = SHARD_INDEX_METRIC_IP; o.factory = "IVF1024,PQ32";
 *     shard_index *ix = NULL;
 *     rc = shard_index_create(&ix, &o);                 // or shard_index_load(&ix, path, &o, &hw)
 *     rc = shard_index_add(ix, n, ids, vectors);
 *     shard_index_search_params p = shard_index_default_search_params();
 *     p.nprobe = 32;
 *     rc = shard_index_search(ix, 1, query, 10, &p, dist, ids_out);
 *     rc = shard_index_snapshot(ix, path, high_water);
 *     shard_index_close(&ix);
 *
 * LIFECYCLE OF TRAINING
 *   Indexes that need training (IVF, PQ, OPQ, SQ...) start in a "buffering" state: added
 *   vectors go to an exact flat side index (IDMap over Flat), so searches are exact and
 *   complete. When `train_size` vectors are buffered the index trains on them, moves them
 *   into the ANN structure and drops the side index (searches keep running meanwhile on the
 *   side index; they block only for the final swap). `template_path` skips all this: a
 *   trained (normally empty) index written by the offline build is loaded instead.
 *   Indexes that cannot carry ids themselves (Flat, HNSW, PQ, SQ) are wrapped in an IDMap.
 *
 * DELETION
 *   shard_index_remove() uses FAISS remove_ids where the index supports it (IVF, Flat, SQ,
 *   PQ); otherwise (HNSW) it records a tombstone: the vector stays in the graph and is
 *   excluded at search time by an ID selector. Tombstones cost search time and memory, so
 *   the caller watches shard_index_stats.tombstones and calls shard_index_rebuild(). A
 *   removed or tombstoned id cannot be added again before a rebuild (the store never reuses
 *   ids). Removing an id that is not in the index is a no-op.
 *
 * EXACT SEARCH AND CANDIDATE SEARCH
 *   The index does not keep its own copy of the vectors (the store has them). When the
 *   index itself is exact (Flat, or still buffering) `exact` searches need nothing more;
 *   otherwise shard_index_search_params.fetch must be given: the index then enumerates the
 *   live ids (intersected with `allow`), fetches their vectors through the callback in
 *   blocks and scans them. shard_index_search_candidates() is the selective-filter path:
 *   the caller passes an explicit candidate list with its vectors and gets the exact top-k
 *   among the live ones.
 *
 * RESULTS
 *   distances[q * k + j], ids[q * k + j]: best first (IP: largest inner product first; L2:
 *   smallest squared L2 first). Missing results have id -1 (and distance +inf for L2, -inf
 *   for IP). Removed or tombstoned ids never appear.
 *
 * THREADS
 *   Every function may be called from any thread. Searches run concurrently with each
 *   other; add/remove/rebuild/snapshot are serialized among themselves and exclude searches
 *   only while they change the FAISS structures (an internal rwlock + writer mutex). The
 *   rwlock prefers writers: searches arriving while an add waits queue behind it, so a
 *   stream of searches cannot starve the adds; a caller that must not wait sets `nowait`. FAISS's
 *   OpenMP threads are set per search call on the calling thread (params.threads).
 *   Callbacks must not call back into the same handle.
 */
#ifndef SHARD_INDEX_H
#define SHARD_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SHARD_INDEX_FACTORY_MAX 1024 /* bytes of a factory string, NUL included */
#define SHARD_INDEX_DIM_MAX 65536

typedef struct shard_index shard_index;

typedef enum shard_index_metric {
    SHARD_INDEX_METRIC_IP = 0, /* inner product, larger is better */
    SHARD_INDEX_METRIC_L2 = 1  /* squared Euclidean distance, smaller is better */
} shard_index_metric;

typedef struct shard_index_opts {
    int dim;                   /* 1..SHARD_INDEX_DIM_MAX */
    shard_index_metric metric;
    const char *factory;       /* FAISS factory string ("Flat", "HNSW32", "IVF1024,PQ32"...) */
    int64_t train_size;        /* vectors buffered before training; 0 = auto:
                                  max(40 * nlist, 10000) */
    const char *template_path; /* optional: a trained index file (same dim and metric) to
                                  start from instead of training; NULL = none */
    int hnsw_ef_max;           /* largest efSearch a search may ask for (FAISS 1.7.3 caps the
                                  per-call value by the index's own); 0 = 1024 */
    int hnsw_ef_construction;  /* HNSW construction beam; 0 = the shard's default */
} shard_index_opts;

/* dim 0, metric IP, factory "Flat", train_size auto, no template. */
shard_index_opts shard_index_default_opts(void);

/* Creates an empty index. CR_ERR_INVALID for out-of-range options (dim, factory length),
 * CR_ERR_INDEX when FAISS rejects the factory string or the template (the message says
 * why), CR_ERR_NOMEM. Writes *out only on success. */
cr_err shard_index_create(shard_index **out, const shard_index_opts *opts);

/* Frees everything; NULL-safe; sets *pp = NULL. No call may be running on the handle. */
void shard_index_close(shard_index **pp);

/* Adds n vectors (n * dim floats) under the given ids (>= 0, not already present, never
 * removed). May train the index (see above); a failed training is logged and keeps the
 * vectors buffered (searched exactly; the next add retries the training): the add itself
 * succeeded. CR_ERR_INVALID for a bad or duplicate id, CR_ERR_INDEX when FAISS fails the add
 * (nothing is added then). */
cr_err shard_index_add(shard_index *ix, int64_t n, const int64_t *ids, const float *vectors);

/* How long the last shard_index_add held the index's write lock (searches waited that long
 * at most), in microseconds; not the wait for the lock. */
uint64_t shard_index_last_add_held_us(shard_index *ix);

/* Removes the ids that are present (others are ignored); *n_removed (may be NULL) gets how
 * many were. Uses remove_ids or tombstones (see above). */
cr_err shard_index_remove(shard_index *ix, int64_t n, const int64_t *ids, int64_t *n_removed);

/* Bulk vector fetch for exact searches: copy the vectors of `n` ids (all live in the index)
 * into out[i * dim ...]. Return CR_OK (positive codes are treated alike); a negative code
 * aborts the search and is returned by it. shard_store_get_vectors() fits with a one-line
 * adapter. Called with the index's read lock held: it must not call into the index. */
typedef cr_err (*shard_index_fetch_fn)(void *ctx, const int64_t *ids, size_t n, float *out);

typedef struct shard_index_search_params {
    int nprobe;                 /* IVF lists to visit; 0 = the index's own setting */
    int ef_search;              /* HNSW candidate list; 0 = 16 (FAISS default); values above
                                   opts.hnsw_ef_max are capped */
    bool exact;                 /* brute force over the live vectors (see above) */
    int threads;                /* OpenMP threads for this call; 0 = 1 when nq == 1, else the
                                   process default */
    const uint8_t *allow;       /* optional filter: id i is allowed iff i / 8 < allow_bytes
                                   and bit i % 8 of allow[i / 8] is set; NULL = all */
    size_t allow_bytes;
    shard_index_fetch_fn fetch; /* vectors for exact searches on non-flat indexes */
    void *fetch_ctx;
    bool nowait;                /* CR_TIMEOUT at once, instead of waiting, while an add,
                                   removal or swap holds the index (or waits to: the lock
                                   prefers writers) */
} shard_index_search_params;

/* nprobe/ef_search 0 (index defaults), not exact, threads 0, no filter, no fetch. */
shard_index_search_params shard_index_default_search_params(void);

/* k-NN search of nq queries (nq * dim floats); distances and ids have room for nq * k.
 * `params` may be NULL (defaults). CR_ERR_INVALID for k < 1 or an exact search that needs
 * a fetch callback without one; CR_ERR_INDEX on FAISS failure. */
cr_err shard_index_search(shard_index *ix, int64_t nq, const float *queries, int64_t k,
                          const shard_index_search_params *params, float *distances,
                          int64_t *ids);

/* Exact top-k of each query among an explicit candidate list: cand_ids[i] with vector
 * cand_vectors[i * dim ...] (the caller's, e.g. from the store). Candidates that are not
 * live in the index (never added, removed, tombstoned) are skipped; list each id once
 * (repeats would repeat in the results). Results as in shard_index_search. For very selective filters, where scanning
 * a few thousand vectors beats an ANN search with a selector. */
cr_err shard_index_search_candidates(shard_index *ix, int64_t nq, const float *queries,
                                     int64_t k, int64_t n_cand, const int64_t *cand_ids,
                                     const float *cand_vectors, float *distances, int64_t *ids);
/* The same; with `nowait`, CR_TIMEOUT at once while a change holds the index. */
cr_err shard_index_search_candidates_nowait(shard_index *ix, int64_t nq, const float *queries,
                                            int64_t k, int64_t n_cand, const int64_t *cand_ids,
                                            const float *cand_vectors, float *distances,
                                            int64_t *ids, bool nowait);

/* Exact ranking outside FAISS, shared with callers that rank vectors the index does not hold
 * yet (the engine's queue of unindexed items). `ip`: inner product, higher is better; else
 * squared L2, lower is better. topk_push inserts (s, id) into a sorted top-k holding *cnt
 * entries (best first) unless it ranks below a full list. */
float shard_index_score(bool ip, const float *a, const float *b, int dim);
void shard_index_topk_push(float *d, int64_t *l, int64_t k, int64_t *cnt, bool ip, float s,
                           int64_t id);

/* Rebuild: the caller's `feed` is called once and must hand every live (id, vector) pair
 * to shard_index_builder_add (in batches, e.g. from a store iteration callback), then
 * return CR_OK. A fresh index is built from them — keeping the current training when the
 * index is trained, so no retraining — and replaces the current one atomically; on any
 * error the current index is left untouched. Tombstones are gone afterwards.
 *
 * In two steps, so that a large rebuild stops nobody: shard_index_rebuild_begin() builds
 * the fresh index while searches AND adds/removes go on with the current one (only an
 * untrained index, which may train while fed, keeps writers waiting throughout); then
 * shard_index_rebuild_commit() takes the writers' lock, calls `finish` (may be NULL) to
 * apply to the fresh index what changed meanwhile (shard_index_builder_remove /
 * shard_index_builder_add), and swaps. Both free the builder, on failure too (abort frees an
 * unfinished one). shard_index_rebuild() is begin + commit. */
typedef struct shard_index_builder shard_index_builder;
typedef cr_err (*shard_index_feed_fn)(void *ctx, shard_index_builder *b);
cr_err shard_index_builder_add(shard_index_builder *b, int64_t n, const int64_t *ids,
                               const float *vectors);
cr_err shard_index_builder_remove(shard_index_builder *b, int64_t n, const int64_t *ids);
cr_err shard_index_rebuild(shard_index *ix, shard_index_feed_fn feed, void *ctx);
cr_err shard_index_rebuild_begin(shard_index *ix, shard_index_feed_fn feed, void *ctx,
                                 shard_index_builder **out);
cr_err shard_index_rebuild_commit(shard_index_builder **b, shard_index_feed_fn finish,
                                  void *ctx);
void shard_index_rebuild_abort(shard_index_builder **b);

/* Writes a snapshot to `path` (via path.tmp + fsync + rename): the FAISS index (or the
 * buffered side index), the live/tombstone bitmaps and the caller's id high-water mark,
 * with a checksum. CR_ERR_IO on file-system failure. */
cr_err shard_index_snapshot(shard_index *ix, const char *path, int64_t high_water);

/* Loads a snapshot written by shard_index_snapshot. `expect` gives dim, metric and factory,
 * which must match the snapshot's (CR_ERR_INVALID naming both values otherwise), and the
 * runtime options (train_size, hnsw_ef_max; template_path is ignored). A truncated or
 * corrupt file is CR_ERR_INDEX ("corrupt snapshot"); a missing one CR_NOTFOUND. On success
 * *high_water (may be NULL) gets the mark given to snapshot. */
cr_err shard_index_load(shard_index **out, const char *path, const shard_index_opts *expect,
                        int64_t *high_water);

typedef struct shard_index_stats {
    int dim;
    shard_index_metric metric;
    const char *factory;   /* the handle's copy: valid until close */
    bool is_trained;       /* false while buffering */
    bool removes_in_place; /* remove_ids supported (false: tombstones) */
    int64_t ntotal;        /* live vectors (searchable) */
    int64_t buffered;      /* vectors waiting in the side index for training */
    int64_t tombstones;    /* removed vectors still held by FAISS; rebuild clears them */
    int64_t train_size;
} shard_index_stats;

void shard_index_stats_get(shard_index *ix, shard_index_stats *out);

/* Offline builds (cirrus build): train once, share the trained template across shards.
 * training_info: whether a fresh index of `opts` buffers until trained, and the train_size
 * it would use (opts->train_size, or the auto value). template_write: trains a fresh index of
 * opts (dim, metric, factory) on n vectors (n * dim floats, as the index sees them: L2-
 * normalized for ip) with `threads` OpenMP threads (0 = the default) and writes it, trained
 * and empty, to `path` (path.tmp + fsync + rename), for shard_index_opts.template_path.
 * CR_ERR_INVALID when the factory needs no training. FAISS's k-means is seeded, so the same
 * sample gives the same template. */
cr_err shard_index_training_info(const shard_index_opts *opts, bool *needs_training,
                                 int64_t *train_size);
cr_err shard_index_template_write(const shard_index_opts *opts, int64_t n, const float *x,
                                  int threads, const char *path);

/* "ip" / "l2"; parse returns CR_ERR_INVALID for anything else. */
const char *shard_index_metric_name(shard_index_metric m);
cr_err shard_index_metric_parse(const char *s, shard_index_metric *out);

#endif
