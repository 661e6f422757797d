/* store.h — a shard's durable storage: items, versions and exact fp32 vectors in LMDB.
 *
 * One LMDB environment per shard directory (`<dir>/data.mdb`, `<dir>/lock.mdb`). This is
 * the only module of cirrus that includes lmdb.h. Typical use:
 *
 *     shard_store_params p = { .dim = 512, .metric = SHARD_STORE_METRIC_IP, .factory = "HNSW32" };
 *     shard_store *st = NULL;
 *     rc = shard_store_open(&st, dir, &p, NULL);             // existing shard, params checked
 *     if (rc == CR_NOTFOUND) rc = shard_store_create(&st, dir, &p, NULL);
 *     if (rc < 0) die(cr_error_message());
 *
 *     shard_store_op op = { .kind = SHARD_STORE_UPSERT, .ext_id = "sku-1", .ext_len = 5,
 *                           .version = 7, .attrs = blob, .attrs_len = n, .vector = v, .dim = 512 };
 *     shard_store_result res;
 *     rc = shard_store_write(st, &op, 1, &res);    // returns after a synced commit
 *     // res.new_id: add to the index; res.old_id (if >= 0): tombstone in the index
 *     shard_store_close(&st);
 *
 * DATA MODEL
 *   Every accepted upsert gets a fresh dense internal id (0, 1, 2, ... allocated here, never
 *   reused). Replacing an item (newer version) allocates a new id and marks the old one dead;
 *   a delete marks the id dead and leaves a tombstone {ext id, version} so that an older write
 *   arriving later stays ignored. Versions only move forward: an upsert must carry a version
 *   strictly greater than the stored one (item or tombstone); a delete a version >= it.
 *   Attributes are a blob of at most SHARD_STORE_ATTRS_MAX bytes in the store's own format
 *   (ATTRIBUTE FORMAT below; shard_store_attrs_encode / _decode): LMDB itself sees bytes.
 *   Named databases: `meta` (schema version, dim, metric, factory, next id, counters, block
 *   size, and caller keys under the "u:" prefix), `ext2int` (ext id -> internal id, version,
 *   tombstone flag), `items` (internal id -> version, flags, ext id, attrs), `vectors`,
 *   `byver` ((version, ext id) of every ext id: what changed after a version, for replica
 *   repair), and `images` (internal id -> the item's original encoded image, only for
 *   upserts that carried one: shards run with --keep-images). A shard written before `byver`
 *   existed (schema 1) gets it built at open; one without `images` gets it (empty) at open.
 *
 * VECTOR LAYOUT AND DISK FOOTPRINT
 *   A 512-d fp32 vector is 2,048 bytes; stored as one LMDB value it would take a whole 4 KB
 *   overflow page (2x the raw size). Vectors are therefore packed, exact fp32, in fixed-size
 *   blocks of B consecutive internal ids, one `vectors` value per block (key = id / B).
 *   B is chosen at create time so that a block plus LMDB's 16-byte overflow header just fits
 *   16 pages: B = (16 * page_size - 16) / (dim * 4), at least 1, and stored in `meta`.
 *   For 512-d and 4 KB pages B = 31: 31 vectors in 65,536 bytes = 2,114 bytes per vector
 *   (1.032x raw). Dead ids (replaced or deleted) keep their vector slot: space is reclaimed
 *   only by rebuilding the shard (not implemented here). Each commit rewrites the last,
 *   partly filled block (<= 64 KB): the price of packing, small next to the fsync.
 *
 *   Measured with `test_store --measure 100000` (512-d, 100,000 items, 12-byte ext ids,
 *   64-byte attrs, synced batches of 100, 4 KB pages), bytes on disk per item:
 *     vectors DB        2,115 B   (1.033 x the raw 2,048)
 *     records             159 B   (items + ext2int + meta: ~94 B record + keys, page fill)
 *     data.mdb total    2,277 B   (1.112 x raw; the rest is LMDB free/meta pages)
 *   With single-item commits (--measure 5000 1) data.mdb is 2,340 B/item (1.142 x raw).
 *
 * ATTRIBUTE FORMAT (shard/attr_codec.c)
 *   An item's attributes are one blob; the first byte says its format. The empty blob (0
 *   bytes) means "no attributes" in every format. Version 2, written since the store owns its
 *   format (all integers little-endian):
 *     offset 0  1 byte   format version: 0x02 (SHARD_STORE_ATTRS_V2)
 *            1  4 bytes  N: number of attributes (u32)
 *     then N attributes, in the item's order (duplicate names allowed: any-value semantics):
 *            1 byte   type: 1 string, 2 int64, 3 double, 4 bool, 5 string list
 *                     (shard_value_type; the numbers of cirrus.proto's AttrValue oneof)
 *            2 bytes  L: name length (u16), 1..128
 *            L bytes  name, UTF-8, no NUL
 *            value:   string  4 bytes S (u32), S bytes of UTF-8, no NUL
 *                     int64   8 bytes, two's complement
 *                     double  8 bytes, the IEEE-754 binary64 bit pattern (finite)
 *                     bool    1 byte, 0 or 1
 *                     list    4 bytes C (u32), then C strings as above (C may be 0)
 *     The blob ends exactly after attribute N. Anything else (truncation, a count or
 *     length past the end, an unknown type, a bool not 0/1, a non-finite double, bad UTF-8,
 *     trailing bytes) is CR_ERR_STORE "attributes: corrupt blob (... at byte k)".
 *   Version 1, written before (shard directories of earlier releases): a packed protobuf
 *   `Item` holding only `attributes` (cirrus.proto field 3, length-delimited), so its first
 *   byte is always the protobuf tag 0x1A (SHARD_STORE_ATTRS_V1_TAG). The reader tells the two
 *   apart by that first byte, per blob, not by the store's schema number: a directory of
 *   the old code keeps its old records after the new code writes to it, with no rewrite
 *   pass at open and no mixed state a schema number could not describe. Old records are
 *   decoded as before; new writes are always version 2. The next format takes 0x03 (first
 *   bytes 0x03..0x19 are free; 0x1A is never a version).
 *
 *   shard_store_write() and shard_store_meta_set() return only after their LMDB transaction
 *   has committed with fsync/fdatasync (default LMDB flags: no MDB_NOSYNC, no MDB_NOMETASYNC,
 *   no MDB_WRITEMAP). A successful return therefore survives kill -9 and power loss (given a
 *   disk that honours flushes); a crash before the return loses the whole batch, never part
 *   of it. Reopening after a crash needs no repair step; stale reader slots left by dead
 *   processes are cleared at open.
 *
 * THREADS
 *   - Reads (get, get_by_id, get_vectors, iterate, count, next_id, stats, meta_get) may run
 *     concurrently from any number of threads; each uses its own read transaction (the
 *     environment is opened with MDB_NOTLS), so a reader never sees a half-applied batch.
 *     At most `max_readers` reads run at once; one more fails with CR_ERR_STORE.
 *   - Writes (write, meta_set) are single-writer by contract: the shard server calls them
 *     from its one writer thread, which groups concurrent requests into one batch (group
 *     commit). Calls from other threads are serialized by an internal mutex, not rejected.
 *   - The map grows by itself: on MDB_MAP_FULL the writer aborts, doubles the map size and
 *     retries. Growing needs a moment with no read transaction open, so it waits for running
 *     reads to finish (iterate releases its transaction every few thousand items).
 *   - A handle must not cross fork(); open it in the process that uses it.
 *   - Callbacks (iterate) must not call back into the store.
 */
#ifndef SHARD_STORE_H
#define SHARD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shard/types.h"

#define SHARD_STORE_ATTRS_V2 0x02     /* first byte of a version-2 attribute blob */
#define SHARD_STORE_ATTRS_V1_TAG 0x1A /* first byte of a version-1 one (protobuf tag 3:LEN) */
#define SHARD_STORE_SCHEMA_VERSION 2 /* 2: + the by-version index; 1 is upgraded at open */
#define SHARD_STORE_EXT_ID_MAX 256       /* bytes of UTF-8, no NUL inside */
#define SHARD_STORE_ATTRS_MAX (1u << 20) /* bytes of opaque attributes per item */
#define SHARD_STORE_FACTORY_MAX 1024     /* bytes of the index factory string */
#define SHARD_STORE_DIM_MAX 65536
#define SHARD_STORE_META_KEY_MAX 200 /* bytes of a caller meta key */
#define SHARD_STORE_META_VALUE_MAX (64u << 20)
#define SHARD_STORE_IMAGE_MAX (16u << 20) /* bytes of an item's kept image */

typedef struct shard_store shard_store;

typedef enum shard_store_metric {
    SHARD_STORE_METRIC_ANY = -1, /* only in the `expect` argument of shard_store_open */
    SHARD_STORE_METRIC_IP = 0,
    SHARD_STORE_METRIC_L2 = 1
} shard_store_metric;

/* The fixed parameters of a shard, written at create and checked at open. */
typedef struct shard_store_params {
    int dim;                   /* 1..SHARD_STORE_DIM_MAX; 0 in `expect` = any */
    shard_store_metric metric; /* SHARD_STORE_METRIC_ANY in `expect` = any */
    const char *factory;       /* FAISS factory string; NULL in `expect` = any */
} shard_store_params;

typedef struct shard_store_options {
    size_t map_size;      /* initial LMDB map size in bytes; 0 = 1 GiB at create, the stored
                             size at open. Grows by doubling on demand. */
    unsigned max_readers; /* concurrent read transactions; 0 = 126 */
} shard_store_options;

/* Defaults for shard_store_options (all zero: 1 GiB initial map, 126 readers). */
shard_store_options shard_store_default_options(void);

/* Creates a new shard in `dir` (made if missing; its parent must exist) and opens it.
 * Fails with CR_ERR_INVALID when `dir` already holds a shard (data.mdb) or a parameter is
 * out of range; CR_ERR_STORE/CR_ERR_IO on LMDB or file-system failure. `opts` may be NULL.
 * Writes *out only on success. */
cr_err shard_store_create(shard_store **out, const char *dir, const shard_store_params *params,
                          const shard_store_options *opts);

/* Opens an existing shard. Returns CR_NOTFOUND when `dir` holds no data.mdb. When `expect`
 * is not NULL its dim, metric and factory (each unless "any") must equal the stored ones,
 * else CR_ERR_INVALID with a message naming both values — a shard is never silently reused
 * with other parameters. Also CR_ERR_STORE when the files are not a cirrus shard of this
 * schema version. Clears stale reader slots. Writes *out only on success. */
cr_err shard_store_open(shard_store **out, const char *dir, const shard_store_params *expect,
                        const shard_store_options *opts);

/* Closes the handle and sets *pp = NULL; NULL-safe. No other call may be running on it. */
void shard_store_close(shard_store **pp);

/* The stored parameters. The pointer and its factory string live until close. */
const shard_store_params *shard_store_params_get(const shard_store *st);

/* ---- writes (single writer thread) ---------------------------------------------------- */

typedef enum shard_store_op_kind {
    SHARD_STORE_UPSERT = 0,
    SHARD_STORE_DELETE = 1
} shard_store_op_kind;

typedef struct shard_store_op {
    shard_store_op_kind kind;
    const char *ext_id; /* external id: 1..SHARD_STORE_EXT_ID_MAX bytes of UTF-8, no NUL */
    size_t ext_len;
    uint64_t version;  /* caller's version (hybrid logical clock) */
    const void *attrs; /* upsert: opaque attributes blob (may be NULL when attrs_len = 0) */
    size_t attrs_len;
    const float *vector; /* upsert: `dim` floats, stored exactly */
    size_t dim;          /* upsert: must equal the store's dim */
    const void *image;   /* upsert: the item's original image, kept beside it (`images` DB,
                            by internal id; dropped when the id dies); NULL/0 = none */
    size_t image_len;    /* at most SHARD_STORE_IMAGE_MAX */
} shard_store_op;

typedef struct shard_store_result {
    cr_err status;  /* CR_OK applied; CR_STALE not newer than the stored version, ignored;
                       CR_NOTFOUND delete of an absent or already deleted id (tombstone
                       version raised); CR_ERR_INVALID this op was malformed and skipped */
    int64_t new_id; /* applied upsert: its new internal id; otherwise -1 */
    int64_t old_id; /* the internal id this op killed (replaced or deleted), otherwise -1 */
} shard_store_result;

/* Applies `n` ops, in order, in ONE write transaction committed with sync (group commit);
 * results[i] describes ops[i]. Later ops see earlier ones (two upserts of one id in a batch:
 * the second kills the first's new id). Malformed ops (bad ext id, wrong dim, attrs too big)
 * get CR_ERR_INVALID in their result and are skipped; the call still returns CR_OK. A
 * negative return (CR_ERR_STORE, CR_ERR_NOMEM) means nothing of the batch was applied and
 * `results` is meaningless. MDB_MAP_FULL is handled inside (map doubled, batch retried).
 * Returns after the commit is durable. Writer thread only. n may be 0. Keep batches to a
 * few thousand ops: one LMDB transaction holds at most ~512 MB of dirty pages (beyond that
 * CR_ERR_STORE, MDB_TXN_FULL). */
cr_err shard_store_write(shard_store *st, const shard_store_op *ops, size_t n,
                         shard_store_result *results);

/* Testing only: the next shard_store_write fails with CR_ERR_STORE when it reaches
 * ops[op_index], after the earlier ops were put in its transaction (which is then aborted,
 * as on a real LMDB error). -1 turns it off. */
void shard_store_fault_inject(shard_store *st, long op_index);

/* Sets a caller meta key (1..SHARD_STORE_META_KEY_MAX bytes, kept apart from the store's
 * own keys) to `len` bytes, in its own synced transaction. Writer thread only. */
cr_err shard_store_meta_set(shard_store *st, const char *key, const void *value, size_t len);

/* ---- reads (any thread, concurrently) ------------------------------------------------- */

typedef struct shard_store_item {
    int64_t id;       /* internal id; -1 for a tombstone of a never-stored id */
    uint64_t version; /* the stored version (of the item, or of its tombstone) */
    int deleted;      /* 1: dead id / tombstone (the get returned CR_NOTFOUND) */
    size_t ext_len;
    char ext_id[SHARD_STORE_EXT_ID_MAX + 1]; /* NUL-terminated copy */
    size_t attrs_len;                        /* full length of the attrs blob (0 when deleted) */
} shard_store_item;

/* Looks an item up by external id. CR_OK: *item filled, `vec` (dim floats, may be NULL)
 * gets the exact stored vector and `attrs` (capacity attrs_cap, may be NULL when only
 * the length is wanted) the blob. CR_NOTFOUND: no live item; if a tombstone exists
 * item->deleted = 1 and item->version is its version, else item->version = 0, id = -1.
 * CR_ERR_INVALID when attrs is not NULL and attrs_cap < item->attrs_len (item filled,
 * attrs untouched) or the ext id is malformed. */
cr_err shard_store_get(shard_store *st, const char *ext_id, size_t ext_len, shard_store_item *item,
                       float *vec, void *attrs, size_t attrs_cap);

/* Same by internal id. A dead id returns CR_NOTFOUND with item->deleted = 1 and its ext id
 * and version filled (no vector, no attrs); an id never allocated returns CR_NOTFOUND with
 * item->id = -1. */
cr_err shard_store_get_by_id(shard_store *st, int64_t id, shard_store_item *item, float *vec,
                             void *attrs, size_t attrs_cap);

/* Looks up `n` internal ids in ONE read transaction (resolving search hits). status[i] is
 * what shard_store_get_by_id would return for ids[i] (CR_OK or CR_NOTFOUND); items[i] is
 * filled likewise. When attrs is not NULL, attrs[i] gets a malloc'd copy of a live item's
 * attribute blob (NULL when it has none; the caller frees); vecs (n * dim floats) may be NULL.
 * A negative return means a store failure (then no attrs[i] is left allocated). */
cr_err shard_store_get_many_by_id(shard_store *st, const int64_t *ids, size_t n,
                                  shard_store_item *items, cr_err *status, void **attrs,
                                  float *vecs);

/* Copies the vectors of `n` internal ids into out[i * dim ...], all in one read transaction
 * (exact re-ranking of candidates). Every allocated id has its vector, live or dead:
 * liveness is the index's business. Ids never allocated get zeros and found[i] = 0 (found
 * may be NULL); the return is then CR_NOTFOUND, else CR_OK. */
cr_err shard_store_get_vectors(shard_store *st, const int64_t *ids, size_t n, float *out,
                               uint8_t *found);

/* What iterate shows of one item. Pointers point into the map: valid only during the
 * callback, read-only. `vector` is aligned for float and NULL for dead items. */
typedef struct shard_store_view {
    int64_t id;
    uint64_t version;
    int deleted;
    const char *ext_id; /* not NUL-terminated */
    size_t ext_len;
    const void *attrs;
    size_t attrs_len;
    const float *vector;
} shard_store_view;

/* Return CR_OK to go on; anything else stops the iteration and is returned by it. */
typedef cr_err (*shard_store_iter_fn)(const shard_store_view *view, void *ctx);

#define SHARD_STORE_ITER_DEAD 1u /* also show dead ids (replaced or deleted) */

/* Calls fn for every live item with internal id >= from_id, in increasing id order (index
 * rebuild: from 0; snapshot replay: from the snapshot's high-water mark). With
 * SHARD_STORE_ITER_DEAD, dead ids too (deleted = 1), so a replay can tombstone ids that
 * died after a snapshot. Not a point-in-time snapshot: the read transaction is renewed
 * every few thousand items, so writes committed meanwhile may or may not be seen (each
 * item is seen whole). fn must not call into the store. */
cr_err shard_store_iterate(shard_store *st, int64_t from_id, unsigned flags, shard_store_iter_fn fn,
                           void *ctx);

/* Orders of shard_store_scan. */
typedef enum shard_store_order {
    SHARD_STORE_BY_EXT_ID = 1,  /* external id, bytewise (LMDB's key order) */
    SHARD_STORE_BY_VERSION = 2  /* (version, external id), from the by-version index */
} shard_store_order;

/* Where a scan stopped: the last external id it passed (and its version). Zero it to start. */
typedef struct shard_store_pos {
    int set;
    uint64_t version;
    size_t ext_len;
    char ext_id[SHARD_STORE_EXT_ID_MAX + 1]; /* NUL-terminated */
} shard_store_pos;

/* Replica repair: visits every external id ONCE with its current state, in `order`, starting
 * after *pos: a live item (deleted = 0, id its internal id) or a tombstone (deleted = 1,
 * version = the delete's; id -1 when the id was never stored here). Only versions in
 * [min_version, max_version] are shown (max_version 0: no bound); by version, min_version is
 * a seek in the index and the scan ends past max_version, so a scan of what changed after a
 * version reads only that. With `with_data`, a live item's attrs and vector are filled
 * (pointers valid during the callback only); otherwise they are NULL. fn returns CR_OK to go
 * on; any other value stops the scan BEFORE that id (*pos stays on the previous one) and is
 * returned (e.g. CR_NOTFOUND for "page full"). *pos advances past every id examined, shown
 * or filtered out. One call examines at most 65,536 ids (one short read transaction);
 * *at_end = 1 when the order's end (or max_version) was reached. Not a point-in-time view
 * across calls: an id written between two calls may be seen at its new place or not at all,
 * which repair tolerates (the write reached that replica itself). fn must not call into the
 * store. */
cr_err shard_store_scan(shard_store *st, shard_store_order order, uint64_t min_version,
                        uint64_t max_version, int with_data, shard_store_pos *pos,
                        shard_store_iter_fn fn, void *ctx, int *at_end);

/* Backup: a consistent, compacted copy of the environment (mdb_env_copy2 with
 * MDB_CP_COMPACT) into `dir`, which must exist and be empty: every transaction committed
 * before the call, as one read transaction sees them, and never part of one. Reads and
 * writes go on meanwhile (a map growth waits for the copy to end). The copy is fsynced.
 * *bytes (may be NULL) gets the size of the copy. Any thread. */
cr_err shard_store_copy(shard_store *st, const char *dir, uint64_t *bytes);

/* The image kept beside live item `ext_id` (upserted with one): CR_OK with *image a malloc'd
 * copy (free it) and *len its bytes, or *image NULL and *len 0 when the item has none;
 * CR_NOTFOUND when no live item has that id. Any thread. */
cr_err shard_store_get_image(shard_store *st, const char *ext_id, size_t ext_len, void **image,
                             size_t *len);

/* Number of live items. */
cr_err shard_store_count(shard_store *st, uint64_t *live);

/* The next internal id to be allocated (= high-water mark; all ids below are allocated). */
cr_err shard_store_next_id(shard_store *st, int64_t *next_id);

typedef struct shard_store_stats {
    uint64_t live; /* live items */
    uint64_t dead; /* dead internal ids (their vector slots are not reclaimed) */
    int64_t next_id;
    uint32_t block_items; /* vectors per `vectors` value */
    size_t page_size;
    size_t map_size;       /* current LMDB map size */
    uint64_t file_bytes;   /* size of data.mdb on disk */
    uint64_t used_bytes;   /* (last used page + 1) * page size */
    uint64_t vector_bytes; /* pages held by the `vectors` DB * page size */
    uint64_t record_bytes; /* pages held by `items`, `ext2int` and `meta` * page size */
    uint64_t image_bytes;  /* pages held by the `images` DB * page size */
} shard_store_stats;

/* Fills *out in one read transaction. */
cr_err shard_store_stats_get(shard_store *st, shard_store_stats *out);

/* Reads a caller meta key. CR_OK: *len = value length, value copied when cap >= *len
 * (value may be NULL to ask the length), else CR_ERR_INVALID. CR_NOTFOUND when unset. */
cr_err shard_store_meta_get(shard_store *st, const char *key, void *value, size_t cap, size_t *len);

/* ---- the attribute format (see ATTRIBUTE FORMAT above) ------------------------------- */

/* Encodes n attributes (each checked with shard_attr_check first: CR_ERR_INVALID) as a
 * version-2 blob: *blob malloc'd (free it), *len its bytes; n = 0 gives *blob NULL, *len 0.
 * The store still rejects a blob over SHARD_STORE_ATTRS_MAX at write (that op's result). */
cr_err shard_store_attrs_encode(const shard_attr *a, size_t n, uint8_t **blob, size_t *len);

/* Decodes a blob of either version: *out is one malloc'd block (free it) holding the n
 * attributes and every string they point to; NULL with *n = 0 for the empty blob. Errors:
 * CR_ERR_STORE (corrupt or unknown format, saying where), CR_ERR_NOMEM; nothing allocated. */
cr_err shard_store_attrs_decode(const void *blob, size_t len, shard_attr **out, size_t *n);

/* Bytes a copy of n attributes takes as one block, and the copy itself into mem (that many
 * bytes, aligned as malloc's): the block layout shared by decoded attributes, items and hits. */
size_t shard_attrs_block_size(const shard_attr *a, size_t n);
shard_attr *shard_attrs_place(const shard_attr *a, size_t n, void *mem);

#endif
