/* store.c — the shard's LMDB storage engine (see store.h for the contract).
 *
 * On-disk encodings (native byte order: an LMDB file is not portable across endianness):
 *   meta     "schema" u32, "dim" u32, "metric" u32, "factory" bytes, "block" u32,
 *            "next_id" u64, "live" u64, "dead" u64; caller keys as "u:<key>".
 *   ext2int  ext id bytes -> { u64 internal id (UINT64_MAX: none), u64 version, u8 flags }
 *   items    u64 id (MDB_INTEGERKEY) -> { u64 version, u32 flags, u32 attrs_len,
 *            u16 ext_len, ext bytes, attrs bytes }
 *   vectors  u64 block (MDB_INTEGERKEY) -> block_items * dim fp32, unused slots zero
 *   byver    big-endian u64 version + ext id bytes -> nothing (schema 2): one key per ext
 *            id, at its current version (item or tombstone), kept in the same transaction
 *            as ext2int; replica repair seeks it to list what changed after a version.
 */
#include "shard/store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/log.h"

_Static_assert(sizeof(size_t) == 8, "MDB_INTEGERKEY keys are u64 = size_t");

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define BLOCK_PAGES 16  /* target pages per vectors value */
#define OVERFLOW_HDR 16 /* LMDB page header in front of an overflow value */
#define MAX_GROWS 48    /* map doublings per write call */
#define ITER_CHUNK 4096 /* items per read transaction in iterate */
#define NO_ID UINT64_MAX
#define NOMEM_RC (-1) /* txn_fn results beside LMDB codes */
#define FAULT_RC (-2)
#define LOW_SPACE ((uint64_t)64 << 20) /* a short write with less free than this: disk full */

#define FLAG_DEAD 1u

#define REC_HDR 18 /* items record header bytes */
#define E2I_LEN 17 /* ext2int value bytes */

#define META_USER_PREFIX "u:"

#define SCHEMA_NO_BYVER 1    /* shards written before the by-version index: built at open */
#define BYVER_KEY_MAX (8 + SHARD_STORE_EXT_ID_MAX)
#define BYVER_BUILD_CHUNK 50000 /* ext ids indexed per write transaction when building */
#define SCAN_VISIT_MAX 65536    /* keys one scan call examines (its read txn stays short) */

struct shard_store {
    MDB_env *env;
    MDB_dbi meta, ext2int, items, vectors, byver, images;
    shard_store_params params;
    char *factory;
    size_t vec_bytes; /* dim * 4 */
    uint32_t block;   /* vectors per block */
    size_t block_bytes;
    pthread_rwlock_t resize_lock; /* read: any txn; write: mdb_env_set_mapsize */
    pthread_mutex_t write_mu;     /* serializes write transactions of this handle */
    int locks_ready;
    long fault_at; /* testing: fail the next batch at this op, -1 = off */
};

/* ---- small helpers -------------------------------------------------------------------- */

static cr_err mdb_fail(int rc, const char *what)
{
    return cr_error_set(CR_ERR_STORE, "store: %s: %s", what, mdb_strerror(rc));
}

/* A failed write transaction. A full file system reaches LMDB as ENOSPC (EDQUOT) from a
 * write, or as a short write, which LMDB reports as EIO: both say so, with the room left. */
static cr_err write_fail(shard_store *st, int rc, const char *what)
{
    const char *dir = NULL;
    struct statvfs fs;
    uint64_t avail;

    if ((rc != ENOSPC && rc != EDQUOT && rc != EIO) || mdb_env_get_path(st->env, &dir) != 0 ||
        !dir || statvfs(dir, &fs) != 0)
        return mdb_fail(rc, what);
    avail = (uint64_t)fs.f_bavail * fs.f_frsize;
    if (rc == EIO && avail >= LOW_SPACE)
        return cr_error_set(CR_ERR_STORE, "store: %s: %s (%s has %llu MiB free)", what,
                            mdb_strerror(rc), dir, (unsigned long long)(avail >> 20));
    return cr_error_set(CR_ERR_STORE, "store: %s: no space left on device (%s: %llu KiB free; "
                        "LMDB: %s)", what, dir, (unsigned long long)(avail >> 10),
                        mdb_strerror(rc));
}

static MDB_val mval(const void *p, size_t n)
{
    MDB_val v;
    v.mv_data = (void *)p;
    v.mv_size = n;
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static uint16_t get_u16(const unsigned char *p)
{
    uint16_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF) without NUL bytes. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static cr_err check_ext_id(const char *ext_id, size_t ext_len)
{
    if (!ext_id || ext_len == 0)
        return cr_error_set(CR_ERR_INVALID, "store: empty external id");
    if (ext_len > SHARD_STORE_EXT_ID_MAX)
        return cr_error_set(CR_ERR_INVALID, "store: external id of %zu bytes (max %d)", ext_len,
                            SHARD_STORE_EXT_ID_MAX);
    if (!utf8_valid((const unsigned char *)ext_id, ext_len))
        return cr_error_set(CR_ERR_INVALID, "store: external id is not UTF-8 (or holds NUL)");
    return CR_OK;
}

static cr_err check_params(const shard_store_params *p)
{
    if (!p)
        return cr_error_set(CR_ERR_INVALID, "store: no shard parameters");
    if (p->dim < 1 || p->dim > SHARD_STORE_DIM_MAX)
        return cr_error_set(CR_ERR_INVALID, "store: dim %d out of range 1..%d", p->dim,
                            SHARD_STORE_DIM_MAX);
    if (p->metric != SHARD_STORE_METRIC_IP && p->metric != SHARD_STORE_METRIC_L2)
        return cr_error_set(CR_ERR_INVALID, "store: unknown metric %d", (int)p->metric);
    if (!p->factory || !p->factory[0] || strlen(p->factory) > SHARD_STORE_FACTORY_MAX)
        return cr_error_set(CR_ERR_INVALID, "store: index factory string empty or too long");
    return CR_OK;
}

static const char *metric_name(int m)
{
    return m == SHARD_STORE_METRIC_IP ? "ip" : m == SHARD_STORE_METRIC_L2 ? "l2" : "?";
}

/* ---- locking and transactions --------------------------------------------------------- */

/* Doubles the map (or adopts a size grown by another process when `adopt`), with no
 * transaction of this process open. */
static cr_err map_grow(shard_store *st, int adopt)
{
    MDB_envinfo info;
    size_t size;
    int rc;

    pthread_rwlock_wrlock(&st->resize_lock);
    if (adopt) {
        rc = mdb_env_set_mapsize(st->env, 0);
    } else {
        mdb_env_info(st->env, &info);
        size = info.me_mapsize;
        if (size > SIZE_MAX / 4) {
            pthread_rwlock_unlock(&st->resize_lock);
            return cr_error_set(CR_ERR_STORE, "store: map size %zu cannot grow", size);
        }
        rc = mdb_env_set_mapsize(st->env, size * 2);
        if (!rc)
            CR_INFO("store", "map size grown to %zu bytes", size * 2);
    }
    pthread_rwlock_unlock(&st->resize_lock);
    if (rc)
        return mdb_fail(rc, "resize map");
    return CR_OK;
}

/* Begins a read transaction holding the resize lock for reading; read_end releases both. */
static cr_err read_begin(shard_store *st, MDB_txn **txn)
{
    int rc;
    for (int tries = 0; tries < 4; tries++) {
        pthread_rwlock_rdlock(&st->resize_lock);
        rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
        if (!rc)
            return CR_OK;
        pthread_rwlock_unlock(&st->resize_lock);
        if (rc != MDB_MAP_RESIZED)
            break;
        if (map_grow(st, 1) < 0)
            return CR_ERR_STORE;
    }
    return mdb_fail(rc, "begin read transaction");
}

static void read_end(shard_store *st, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->resize_lock);
}

typedef int (*txn_fn)(shard_store *st, MDB_txn *txn, void *ctx);

/* Runs fn in a write transaction and commits it (synced), retrying the whole transaction
 * after growing the map on MDB_MAP_FULL. fn returns an LMDB code (0 = commit), NOMEM_RC or
 * FAULT_RC; anything but 0 aborts. */
static cr_err write_run(shard_store *st, txn_fn fn, void *ctx, const char *what)
{
    MDB_txn *txn = NULL;
    cr_err err = CR_OK;
    int rc = 0;

    pthread_mutex_lock(&st->write_mu);
    for (int grows = 0;; grows++) {
        pthread_rwlock_rdlock(&st->resize_lock);
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (!rc) {
            rc = fn(st, txn, ctx);
            if (!rc)
                rc = mdb_txn_commit(txn); /* frees txn, also on failure */
            else
                mdb_txn_abort(txn);
            txn = NULL;
        }
        pthread_rwlock_unlock(&st->resize_lock);
        if ((rc != MDB_MAP_FULL && rc != MDB_MAP_RESIZED) || grows >= MAX_GROWS)
            break;
        err = map_grow(st, rc == MDB_MAP_RESIZED);
        if (err < 0)
            goto out;
    }
    if (rc == NOMEM_RC)
        err = cr_error_set(CR_ERR_NOMEM, "store: %s: out of memory", what);
    else if (rc == FAULT_RC)
        err = cr_error_set(CR_ERR_STORE, "store: %s: injected fault", what);
    else if (rc)
        err = write_fail(st, rc, what);
out:
    pthread_mutex_unlock(&st->write_mu);
    return err;
}

/* ---- meta ----------------------------------------------------------------------------- */

static int meta_put(shard_store *st, MDB_txn *txn, const char *key, const void *v, size_t n)
{
    MDB_val k = mval(key, strlen(key)), d = mval(v, n);
    return mdb_put(txn, st->meta, &k, &d, 0);
}

static int meta_put_u64(shard_store *st, MDB_txn *txn, const char *key, uint64_t x)
{
    return meta_put(st, txn, key, &x, sizeof x);
}

static int meta_put_u32(shard_store *st, MDB_txn *txn, const char *key, uint32_t x)
{
    return meta_put(st, txn, key, &x, sizeof x);
}

/* Reads a fixed-size integer key; MDB_CORRUPTED when the size is wrong. */
static int meta_get_int(MDB_txn *txn, MDB_dbi dbi, const char *key, void *out, size_t size)
{
    MDB_val k = mval(key, strlen(key)), d;
    int rc = mdb_get(txn, dbi, &k, &d);
    if (rc)
        return rc;
    if (d.mv_size != size)
        return MDB_CORRUPTED;
    memcpy(out, d.mv_data, size);
    return 0;
}

/* ---- by-version index ------------------------------------------------------------------ */

/* Big-endian version first, so that keys sort by version, then by ext id. */
static size_t byver_key(unsigned char *buf, uint64_t version, const void *ext, size_t ext_len)
{
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(version >> (56 - 8 * i));
    memcpy(buf + 8, ext, ext_len);
    return 8 + ext_len;
}

static uint64_t byver_version(const unsigned char *key)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | key[i];
    return v;
}

/* Moves the index entry of op's ext id from its old version (when it had one) to `version`. */
static int byver_move(shard_store *st, MDB_txn *txn, const shard_store_op *op, int had,
                      uint64_t old_version, uint64_t version)
{
    unsigned char buf[BYVER_KEY_MAX];
    MDB_val k, d = mval("", 0);
    int rc;
    if (had) {
        if (old_version == version)
            return 0;
        k = mval(buf, byver_key(buf, old_version, op->ext_id, op->ext_len));
        rc = mdb_del(txn, st->byver, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    k = mval(buf, byver_key(buf, version, op->ext_id, op->ext_len));
    return mdb_put(txn, st->byver, &k, &d, 0);
}

typedef struct build_ctx {
    unsigned char after[SHARD_STORE_EXT_ID_MAX]; /* last ext id indexed by committed chunks */
    size_t after_len;
    int started;
    unsigned char next[SHARD_STORE_EXT_ID_MAX]; /* this chunk's progress, kept on commit */
    size_t next_len, done, count;
} build_ctx;

/* One chunk of the index build: the first empties what an interrupted build left; the last
 * marks the shard as schema 2. Writes its progress to next* (a retried chunk starts over). */
static int build_txn(shard_store *st, MDB_txn *txn, void *vctx)
{
    build_ctx *c = vctx;
    MDB_cursor *cur = NULL;
    MDB_val k, d, empty = mval("", 0);
    unsigned char buf[BYVER_KEY_MAX];
    size_t n = 0;
    int rc = mdb_dbi_open(txn, "byver", MDB_CREATE, &st->byver);
    if (!rc && !c->started)
        rc = mdb_drop(txn, st->byver, 0);
    if (!rc)
        rc = mdb_cursor_open(txn, st->ext2int, &cur);
    if (rc)
        return rc;
    k = mval(c->after, c->after_len);
    rc = mdb_cursor_get(cur, &k, &d, c->started ? MDB_SET_RANGE : MDB_FIRST);
    if (!rc && c->started && k.mv_size == c->after_len && !memcmp(k.mv_data, c->after, k.mv_size))
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    c->next_len = 0;
    for (; !rc && n < BYVER_BUILD_CHUNK; n++) {
        MDB_val bk;
        if (d.mv_size != E2I_LEN || k.mv_size > SHARD_STORE_EXT_ID_MAX) {
            rc = MDB_CORRUPTED;
            break;
        }
        bk = mval(buf, byver_key(buf, get_u64((unsigned char *)d.mv_data + 8), k.mv_data,
                                 k.mv_size));
        rc = mdb_put(txn, st->byver, &bk, &empty, 0);
        if (rc)
            break;
        memcpy(c->next, k.mv_data, k.mv_size);
        c->next_len = k.mv_size;
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    c->done = rc == MDB_NOTFOUND;
    c->count = n;
    if (c->done)
        return meta_put_u32(st, txn, "schema", SHARD_STORE_SCHEMA_VERSION);
    return rc;
}

/* Builds the by-version index of a shard written before it existed (schema 1), in chunks;
 * until the last chunk commits the shard stays schema 1 and a crash means a rebuild. */
static cr_err byver_build(shard_store *st, const char *dir)
{
    build_ctx *c = calloc(1, sizeof *c);
    uint64_t total = 0;
    cr_err err = CR_OK;
    if (!c)
        return cr_error_set(CR_ERR_NOMEM, "store: out of memory");
    while (!c->done) {
        err = write_run(st, build_txn, c, "build the by-version index");
        if (err < 0)
            break;
        c->started = 1;
        total += c->count;
        if (c->next_len) {
            memcpy(c->after, c->next, c->next_len);
            c->after_len = c->next_len;
        }
    }
    if (!err)
        CR_INFO("store", "%s: built the by-version index (%llu ids; schema %d)", dir,
                (unsigned long long)total, SHARD_STORE_SCHEMA_VERSION);
    free(c);
    return err;
}

/* ---- open / create -------------------------------------------------------------------- */

shard_store_options shard_store_default_options(void)
{
    shard_store_options o;
    memset(&o, 0, sizeof o);
    return o;
}

static int path_exists(const char *dir, const char *file)
{
    char path[4096];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return 0;
    return stat(path, &sb) == 0;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Allocates the handle and opens the environment (no DBIs yet). */
static cr_err env_open(shard_store **out, const char *dir, const shard_store_options *opts,
                       int creating)
{
    shard_store *st = NULL;
    size_t map = opts ? opts->map_size : 0;
    unsigned readers = opts && opts->max_readers ? opts->max_readers : 126;
    int rc, dead = 0;
    cr_err err = CR_OK;

    st = calloc(1, sizeof *st);
    if (!st)
        return cr_error_set(CR_ERR_NOMEM, "store: out of memory");
    {
        /* Writer preference, so that a map resize is not starved by a stream of reads. */
        pthread_rwlockattr_t a;
        int bad;
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        bad = pthread_rwlock_init(&st->resize_lock, &a);
        pthread_rwlockattr_destroy(&a);
        if (bad || pthread_mutex_init(&st->write_mu, NULL)) {
            if (!bad)
                pthread_rwlock_destroy(&st->resize_lock);
            free(st);
            return cr_error_set(CR_ERR_NOMEM, "store: cannot create locks");
        }
    }
    st->locks_ready = 1;
    st->fault_at = -1;
    if (creating && !map)
        map = DEFAULT_MAP_SIZE;

    rc = mdb_env_create(&st->env);
    if (rc) {
        err = mdb_fail(rc, "create environment");
        goto out;
    }
    rc = mdb_env_set_maxdbs(st->env, 6);
    if (!rc)
        rc = mdb_env_set_maxreaders(st->env, readers);
    if (!rc && map)
        rc = mdb_env_set_mapsize(st->env, map);
    if (!rc)
        rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0644);
    if (rc) {
        err = rc > 0 ? cr_error_set(CR_ERR_IO, "store: open %s: %s", dir, mdb_strerror(rc))
                     : cr_error_set(CR_ERR_STORE, "store: open %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    rc = mdb_reader_check(st->env, &dead);
    if (rc) {
        err = mdb_fail(rc, "reader check");
        goto out;
    }
    if (dead > 0)
        CR_INFO("store", "%s: cleared %d stale reader slot(s)", dir, dead);
out:
    if (err < 0) {
        shard_store_close(&st);
        return err;
    }
    *out = st;
    return CR_OK;
}

static cr_err set_params(shard_store *st, int dim, int metric, const char *factory, size_t flen,
                         uint32_t block)
{
    st->factory = malloc(flen + 1);
    if (!st->factory)
        return cr_error_set(CR_ERR_NOMEM, "store: out of memory");
    memcpy(st->factory, factory, flen);
    st->factory[flen] = '\0';
    st->params.dim = dim;
    st->params.metric = (shard_store_metric)metric;
    st->params.factory = st->factory;
    st->vec_bytes = (size_t)dim * sizeof(float);
    st->block = block;
    st->block_bytes = (size_t)block * st->vec_bytes;
    return CR_OK;
}

static int open_dbis(shard_store *st, MDB_txn *txn, unsigned create)
{
    int rc = mdb_dbi_open(txn, "meta", create, &st->meta);
    if (!rc)
        rc = mdb_dbi_open(txn, "ext2int", create, &st->ext2int);
    if (!rc)
        rc = mdb_dbi_open(txn, "items", create | MDB_INTEGERKEY, &st->items);
    if (!rc)
        rc = mdb_dbi_open(txn, "vectors", create | MDB_INTEGERKEY, &st->vectors);
    return rc;
}

typedef struct create_ctx {
    const shard_store_params *params;
    int exists;
} create_ctx;

static int create_txn(shard_store *st, MDB_txn *txn, void *vctx)
{
    create_ctx *c = vctx;
    const shard_store_params *p = c->params;
    MDB_val k = mval("schema", 6), d;
    int rc = open_dbis(st, txn, MDB_CREATE);
    if (!rc)
        rc = mdb_dbi_open(txn, "byver", MDB_CREATE, &st->byver);
    if (!rc)
        rc = mdb_dbi_open(txn, "images", MDB_CREATE | MDB_INTEGERKEY, &st->images);
    if (rc)
        return rc;
    rc = mdb_get(txn, st->meta, &k, &d);
    if (rc == 0)
        c->exists = 1;
    if (rc != MDB_NOTFOUND)
        return rc ? rc : MDB_KEYEXIST;
    rc = meta_put_u32(st, txn, "schema", SHARD_STORE_SCHEMA_VERSION);
    if (!rc)
        rc = meta_put_u32(st, txn, "dim", (uint32_t)p->dim);
    if (!rc)
        rc = meta_put_u32(st, txn, "metric", (uint32_t)p->metric);
    if (!rc)
        rc = meta_put(st, txn, "factory", p->factory, strlen(p->factory));
    if (!rc)
        rc = meta_put_u32(st, txn, "block", st->block);
    if (!rc)
        rc = meta_put_u64(st, txn, "next_id", 0);
    if (!rc)
        rc = meta_put_u64(st, txn, "live", 0);
    if (!rc)
        rc = meta_put_u64(st, txn, "dead", 0);
    return rc;
}

cr_err shard_store_create(shard_store **out, const char *dir, const shard_store_params *params,
                          const shard_store_options *opts)
{
    shard_store *st = NULL;
    create_ctx cc = {NULL, 0};
    MDB_stat ms;
    size_t vb;
    uint32_t block;
    cr_err err;

    if (!out || !dir || !dir[0])
        return cr_error_set(CR_ERR_INVALID, "store: no handle or directory");
    err = check_params(params);
    if (err < 0)
        return err;
    if (path_exists(dir, "data.mdb"))
        return cr_error_set(CR_ERR_INVALID, "store: a shard already exists in %s", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return cr_error_set(CR_ERR_IO, "store: mkdir %s: %s", dir, strerror(errno));

    err = env_open(&st, dir, opts, 1);
    if (err < 0)
        return err;
    mdb_env_stat(st->env, &ms);
    vb = (size_t)params->dim * sizeof(float);
    block = (uint32_t)((BLOCK_PAGES * (size_t)ms.ms_psize - OVERFLOW_HDR) / vb);
    if (block < 1)
        block = 1;
    err = set_params(st, params->dim, params->metric, params->factory, strlen(params->factory),
                     block);
    if (err < 0)
        goto out;
    cc.params = params;
    err = write_run(st, create_txn, &cc, "create shard");
    if (err < 0) {
        if (cc.exists)
            err = cr_error_set(CR_ERR_INVALID, "store: a shard already exists in %s", dir);
        goto out;
    }
    fsync_dir(dir);
out:
    if (err < 0) {
        shard_store_close(&st);
        return err;
    }
    *out = st;
    return CR_OK;
}

static int images_open_txn(shard_store *st, MDB_txn *txn, void *ctx)
{
    (void)ctx;
    return mdb_dbi_open(txn, "images", MDB_CREATE | MDB_INTEGERKEY, &st->images);
}

cr_err shard_store_open(shard_store **out, const char *dir, const shard_store_params *expect,
                        const shard_store_options *opts)
{
    shard_store *st = NULL;
    MDB_txn *txn = NULL;
    MDB_val k, d;
    uint32_t schema = 0, dim = 0, metric = 0, block = 0;
    cr_err err;
    int rc;

    if (!out || !dir || !dir[0])
        return cr_error_set(CR_ERR_INVALID, "store: no handle or directory");
    if (!path_exists(dir, "data.mdb"))
        return cr_error_set(CR_NOTFOUND, "store: no shard in %s", dir);
    err = env_open(&st, dir, opts, 0);
    if (err < 0)
        return err;

    rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        err = mdb_fail(rc, "begin read transaction");
        goto out;
    }
    rc = open_dbis(st, txn, 0);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "schema", &schema, sizeof schema);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "dim", &dim, sizeof dim);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "metric", &metric, sizeof metric);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "block", &block, sizeof block);
    if (!rc) {
        k = mval("factory", 7);
        rc = mdb_get(txn, st->meta, &k, &d);
    }
    if (!rc && schema == SHARD_STORE_SCHEMA_VERSION)
        rc = mdb_dbi_open(txn, "byver", 0, &st->byver);
    if (rc) {
        err = cr_error_set(CR_ERR_STORE, "store: %s is not a cirrus shard (%s)", dir,
                           mdb_strerror(rc));
        goto out;
    }
    if ((schema != SHARD_STORE_SCHEMA_VERSION && schema != SCHEMA_NO_BYVER) || dim < 1 || dim > SHARD_STORE_DIM_MAX ||
        metric > 1 || block < 1 || d.mv_size == 0 || d.mv_size > SHARD_STORE_FACTORY_MAX) {
        err = cr_error_set(CR_ERR_STORE, "store: %s has schema %u (want %d) or bad meta", dir,
                           schema, SHARD_STORE_SCHEMA_VERSION);
        goto out;
    }
    err = set_params(st, (int)dim, (int)metric, d.mv_data, d.mv_size, block);
    if (err < 0)
        goto out;
    rc = mdb_txn_commit(txn); /* keeps the DBI handles */
    txn = NULL;
    if (rc) {
        err = mdb_fail(rc, "open databases");
        goto out;
    }
    if (schema == SCHEMA_NO_BYVER && (err = byver_build(st, dir)) < 0)
        goto out;
    /* Shards written before kept images had no `images` DB: an empty one costs nothing. */
    if ((err = write_run(st, images_open_txn, NULL, "open images")) < 0)
        goto out;
    if (expect) {
        if (expect->dim != 0 && expect->dim != st->params.dim)
            err = cr_error_set(CR_ERR_INVALID, "store: shard %s has dim %d, expected %d", dir,
                               st->params.dim, expect->dim);
        else if (expect->metric != SHARD_STORE_METRIC_ANY && expect->metric != st->params.metric)
            err = cr_error_set(CR_ERR_INVALID, "store: shard %s has metric %s, expected %s", dir,
                               metric_name(st->params.metric), metric_name(expect->metric));
        else if (expect->factory && strcmp(expect->factory, st->factory) != 0)
            err = cr_error_set(CR_ERR_INVALID,
                               "store: shard %s has index factory \"%s\", expected \"%s\"", dir,
                               st->factory, expect->factory);
    }
out:
    if (txn)
        mdb_txn_abort(txn);
    if (err < 0) {
        shard_store_close(&st);
        return err;
    }
    *out = st;
    return CR_OK;
}

void shard_store_close(shard_store **pp)
{
    shard_store *st;
    if (!pp || !*pp)
        return;
    st = *pp;
    if (st->env)
        mdb_env_close(st->env);
    if (st->locks_ready) {
        pthread_rwlock_destroy(&st->resize_lock);
        pthread_mutex_destroy(&st->write_mu);
    }
    free(st->factory);
    free(st);
    *pp = NULL;
}

const shard_store_params *shard_store_params_get(const shard_store *st)
{
    return st ? &st->params : NULL;
}

/* ---- write ---------------------------------------------------------------------------- */

typedef struct e2i_val {
    uint64_t id;
    uint64_t version;
    unsigned flags;
} e2i_val;

typedef struct batch_ctx {
    const shard_store_op *ops;
    size_t n;
    shard_store_result *res;
    const float **pending; /* vectors of ids [start, next) */
    unsigned char *blockbuf;
} batch_ctx;

static int e2i_get(shard_store *st, MDB_txn *txn, const shard_store_op *op, e2i_val *v)
{
    MDB_val k = mval(op->ext_id, op->ext_len), d;
    int rc = mdb_get(txn, st->ext2int, &k, &d);
    if (rc)
        return rc;
    if (d.mv_size != E2I_LEN)
        return MDB_CORRUPTED;
    v->id = get_u64(d.mv_data);
    v->version = get_u64((unsigned char *)d.mv_data + 8);
    v->flags = ((unsigned char *)d.mv_data)[16];
    return 0;
}

static int e2i_put(shard_store *st, MDB_txn *txn, const shard_store_op *op, uint64_t id,
                   uint64_t version, unsigned flags)
{
    unsigned char buf[E2I_LEN];
    MDB_val k = mval(op->ext_id, op->ext_len), d = mval(buf, sizeof buf);
    memcpy(buf, &id, 8);
    memcpy(buf + 8, &version, 8);
    buf[16] = (unsigned char)flags;
    return mdb_put(txn, st->ext2int, &k, &d, 0);
}

static int rec_put(shard_store *st, MDB_txn *txn, uint64_t id, uint64_t version, uint32_t flags,
                   const void *ext, size_t ext_len, const void *attrs, size_t attrs_len)
{
    size_t key = id;
    uint32_t alen = (uint32_t)attrs_len;
    uint16_t elen = (uint16_t)ext_len;
    MDB_val k = mval(&key, sizeof key), d = mval(NULL, REC_HDR + ext_len + attrs_len);
    unsigned char *p;
    int rc = mdb_put(txn, st->items, &k, &d, MDB_RESERVE);
    if (rc)
        return rc;
    p = d.mv_data;
    memcpy(p, &version, 8);
    memcpy(p + 8, &flags, 4);
    memcpy(p + 12, &alen, 4);
    memcpy(p + 16, &elen, 2);
    memcpy(p + REC_HDR, ext, ext_len);
    if (attrs_len)
        memcpy(p + REC_HDR + ext_len, attrs, attrs_len);
    return 0;
}

/* Rewrites record `id` as dead: keeps version and ext id, drops the attrs. */
static int rec_kill(shard_store *st, MDB_txn *txn, uint64_t id)
{
    size_t key = id;
    MDB_val k = mval(&key, sizeof key), d;
    char ext[SHARD_STORE_EXT_ID_MAX];
    uint64_t version;
    uint16_t elen;
    int rc = mdb_get(txn, st->items, &k, &d);
    if (rc)
        return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
    if (d.mv_size < REC_HDR)
        return MDB_CORRUPTED;
    version = get_u64(d.mv_data);
    elen = get_u16((unsigned char *)d.mv_data + 16);
    if (elen > SHARD_STORE_EXT_ID_MAX || d.mv_size < REC_HDR + (size_t)elen)
        return MDB_CORRUPTED;
    memcpy(ext, (unsigned char *)d.mv_data + REC_HDR, elen);
    rc = mdb_del(txn, st->images, &k, NULL); /* a dead id keeps no image */
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    return rec_put(st, txn, id, version, FLAG_DEAD, ext, elen, NULL, 0);
}

/* Stores the image kept beside item `id` (none when len is 0). */
static int image_put(shard_store *st, MDB_txn *txn, uint64_t id, const void *img, size_t len)
{
    size_t key = id;
    MDB_val k = mval(&key, sizeof key), d = mval(img, len);
    return len ? mdb_put(txn, st->images, &k, &d, 0) : 0;
}

/* Writes the vectors of the ids allocated in this batch, [start, next), block by block. */
static int blocks_put(shard_store *st, MDB_txn *txn, const float **pending, uint64_t start,
                      uint64_t next, unsigned char *buf)
{
    const uint64_t b = st->block;
    for (uint64_t blk = start / b; next > start && blk <= (next - 1) / b; blk++) {
        size_t key = blk;
        MDB_val k = mval(&key, sizeof key), d;
        uint64_t lo = blk * b, hi = lo + b;
        int rc;
        if (lo < start) { /* a partly filled block from an earlier commit */
            rc = mdb_get(txn, st->vectors, &k, &d);
            if (rc == MDB_NOTFOUND)
                memset(buf, 0, st->block_bytes);
            else if (rc)
                return rc;
            else if (d.mv_size != st->block_bytes)
                return MDB_CORRUPTED;
            else
                memcpy(buf, d.mv_data, st->block_bytes);
        } else {
            memset(buf, 0, st->block_bytes);
        }
        for (uint64_t id = lo > start ? lo : start; id < hi && id < next; id++)
            memcpy(buf + (id - lo) * st->vec_bytes, pending[id - start], st->vec_bytes);
        d = mval(buf, st->block_bytes);
        rc = mdb_put(txn, st->vectors, &k, &d, 0);
        if (rc)
            return rc;
    }
    return 0;
}

static int batch_txn(shard_store *st, MDB_txn *txn, void *vctx)
{
    batch_ctx *c = vctx;
    uint64_t start, next, live, dead;
    int rc;

    rc = meta_get_int(txn, st->meta, "next_id", &start, sizeof start);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "live", &live, sizeof live);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "dead", &dead, sizeof dead);
    if (rc)
        return rc;
    next = start;

    for (size_t i = 0; i < c->n; i++) {
        const shard_store_op *op = &c->ops[i];
        shard_store_result *r = &c->res[i];
        e2i_val cur = {NO_ID, 0, 0};
        int exists, alive;

        if (st->fault_at >= 0 && i == (size_t)st->fault_at) {
            st->fault_at = -1;
            return FAULT_RC;
        }
        if (r->status == CR_ERR_INVALID)
            continue; /* rejected by validation, before the transaction */
        r->status = CR_OK;
        r->new_id = -1;
        r->old_id = -1;
        rc = e2i_get(st, txn, op, &cur);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        exists = rc == 0;
        alive = exists && !(cur.flags & FLAG_DEAD);

        if (op->kind == SHARD_STORE_UPSERT) {
            if (exists && op->version <= cur.version) {
                r->status = CR_STALE;
                continue;
            }
            c->pending[next - start] = op->vector;
            rc = rec_put(st, txn, next, op->version, 0, op->ext_id, op->ext_len, op->attrs,
                         op->attrs_len);
            if (!rc && alive)
                rc = rec_kill(st, txn, cur.id);
            if (!rc)
                rc = image_put(st, txn, next, op->image, op->image_len);
            if (!rc)
                rc = byver_move(st, txn, op, exists, cur.version, op->version);
            if (!rc)
                rc = e2i_put(st, txn, op, next, op->version, 0);
            if (rc)
                return rc;
            r->new_id = (int64_t)next;
            if (alive) {
                r->old_id = (int64_t)cur.id;
                dead++;
            } else {
                live++;
            }
            next++;
        } else {
            if (exists && op->version < cur.version) {
                r->status = CR_STALE;
                continue;
            }
            if (alive) {
                rc = rec_kill(st, txn, cur.id);
                if (rc)
                    return rc;
                r->old_id = (int64_t)cur.id;
                live--;
                dead++;
            } else {
                r->status = CR_NOTFOUND;
                if (exists && op->version == cur.version)
                    continue; /* same tombstone already there */
            }
            rc = byver_move(st, txn, op, exists, cur.version, op->version);
            if (!rc)
                rc = e2i_put(st, txn, op, cur.id, op->version, FLAG_DEAD);
            if (rc)
                return rc;
        }
    }

    rc = blocks_put(st, txn, c->pending, start, next, c->blockbuf);
    if (!rc && next != start)
        rc = meta_put_u64(st, txn, "next_id", next);
    if (!rc)
        rc = meta_put_u64(st, txn, "live", live);
    if (!rc)
        rc = meta_put_u64(st, txn, "dead", dead);
    return rc;
}

cr_err shard_store_write(shard_store *st, const shard_store_op *ops, size_t n,
                         shard_store_result *results)
{
    batch_ctx c;
    size_t n_valid = 0, n_upserts = 0;
    cr_err err = CR_OK;

    if (!st || (n && (!ops || !results)))
        return cr_error_set(CR_ERR_INVALID, "store: write without store, ops or results");
    memset(&c, 0, sizeof c);
    for (size_t i = 0; i < n; i++) {
        const shard_store_op *op = &ops[i];
        cr_err v = check_ext_id(op->ext_id, op->ext_len);
        results[i].status = CR_OK;
        results[i].new_id = -1;
        results[i].old_id = -1;
        if (!v && op->kind == SHARD_STORE_UPSERT) {
            if (op->dim != (size_t)st->params.dim || !op->vector)
                v = cr_error_set(CR_ERR_INVALID,
                                 "store: op %zu: vector of %zu floats, shard dim %d", i,
                                 op->vector ? op->dim : 0, st->params.dim);
            else if (op->attrs_len > SHARD_STORE_ATTRS_MAX || (op->attrs_len && !op->attrs))
                v = cr_error_set(CR_ERR_INVALID, "store: op %zu: attrs of %zu bytes (max %u)", i,
                                 op->attrs_len, SHARD_STORE_ATTRS_MAX);
            else if (op->image_len > SHARD_STORE_IMAGE_MAX || (op->image_len && !op->image))
                v = cr_error_set(CR_ERR_INVALID, "store: op %zu: image of %zu bytes (max %u)", i,
                                 op->image_len, SHARD_STORE_IMAGE_MAX);
            else
                n_upserts++;
        } else if (!v && op->kind != SHARD_STORE_DELETE) {
            v = cr_error_set(CR_ERR_INVALID, "store: op %zu: unknown kind %d", i, (int)op->kind);
        }
        if (v < 0)
            results[i].status = CR_ERR_INVALID;
        else
            n_valid++;
    }
    if (n_valid == 0)
        return CR_OK;

    c.ops = ops;
    c.n = n;
    c.res = results;
    c.pending = calloc(n_upserts ? n_upserts : 1, sizeof *c.pending);
    c.blockbuf = n_upserts ? malloc(st->block_bytes) : NULL;
    if (!c.pending || (n_upserts && !c.blockbuf)) {
        err = cr_error_set(CR_ERR_NOMEM, "store: out of memory for a batch of %zu", n);
        goto out;
    }
    err = write_run(st, batch_txn, &c, "write batch");
out:
    free(c.blockbuf);
    free(c.pending);
    return err;
}

void shard_store_fault_inject(shard_store *st, long op_index)
{
    pthread_mutex_lock(&st->write_mu);
    st->fault_at = op_index;
    pthread_mutex_unlock(&st->write_mu);
}

typedef struct meta_set_ctx {
    const char *key;
    const void *value;
    size_t len;
} meta_set_ctx;

static int meta_set_txn(shard_store *st, MDB_txn *txn, void *vctx)
{
    meta_set_ctx *c = vctx;
    char k[sizeof META_USER_PREFIX + SHARD_STORE_META_KEY_MAX];
    snprintf(k, sizeof k, "%s%s", META_USER_PREFIX, c->key);
    return meta_put(st, txn, k, c->value, c->len);
}

static cr_err check_meta_key(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > SHARD_STORE_META_KEY_MAX)
        return cr_error_set(CR_ERR_INVALID, "store: meta key empty or longer than %d bytes",
                            SHARD_STORE_META_KEY_MAX);
    return CR_OK;
}

cr_err shard_store_meta_set(shard_store *st, const char *key, const void *value, size_t len)
{
    meta_set_ctx c = {key, value, len};
    cr_err err = check_meta_key(key);
    if (err < 0)
        return err;
    if (!st || (len && !value) || len > SHARD_STORE_META_VALUE_MAX)
        return cr_error_set(CR_ERR_INVALID, "store: meta value missing or too large");
    return write_run(st, meta_set_txn, &c, "meta set");
}

/* ---- reads ---------------------------------------------------------------------------- */

/* Decodes an items record; returns 0 or MDB_CORRUPTED. */
static int rec_decode(const MDB_val *d, shard_store_view *v)
{
    const unsigned char *p = d->mv_data;
    uint32_t alen;
    uint16_t elen;
    if (d->mv_size < REC_HDR)
        return MDB_CORRUPTED;
    v->version = get_u64(p);
    v->deleted = (get_u32(p + 8) & FLAG_DEAD) != 0;
    alen = get_u32(p + 12);
    elen = get_u16(p + 16);
    if (elen > SHARD_STORE_EXT_ID_MAX || d->mv_size != REC_HDR + (size_t)elen + alen)
        return MDB_CORRUPTED;
    v->ext_id = (const char *)p + REC_HDR;
    v->ext_len = elen;
    v->attrs = alen ? p + REC_HDR + elen : NULL;
    v->attrs_len = alen;
    v->vector = NULL;
    return 0;
}

/* Pointer to the stored vector of `id` inside the map (valid for the txn), or NULL. */
static const float *vec_ptr(shard_store *st, MDB_txn *txn, uint64_t id, int *rcp)
{
    size_t key = id / st->block;
    MDB_val k = mval(&key, sizeof key), d;
    int rc = mdb_get(txn, st->vectors, &k, &d);
    *rcp = rc;
    if (rc)
        return NULL;
    if (d.mv_size != st->block_bytes) {
        *rcp = MDB_CORRUPTED;
        return NULL;
    }
    return (const float *)((const unsigned char *)d.mv_data + (id % st->block) * st->vec_bytes);
}

/* Fills item/vec/attrs from record `id` in txn. */
static cr_err fill_item(shard_store *st, MDB_txn *txn, uint64_t id, shard_store_item *item,
                        float *vec, void *attrs, size_t attrs_cap)
{
    size_t key = id;
    MDB_val k = mval(&key, sizeof key), d;
    shard_store_view v;
    const float *src;
    int rc = mdb_get(txn, st->items, &k, &d);

    if (rc == MDB_NOTFOUND)
        return CR_NOTFOUND;
    if (!rc)
        rc = rec_decode(&d, &v);
    if (rc)
        return mdb_fail(rc, "read item");
    item->id = (int64_t)id;
    item->version = v.version;
    item->deleted = v.deleted;
    item->ext_len = v.ext_len;
    memcpy(item->ext_id, v.ext_id, v.ext_len);
    item->ext_id[v.ext_len] = '\0';
    item->attrs_len = v.attrs_len;
    if (v.deleted)
        return CR_NOTFOUND;
    if (attrs && attrs_cap < v.attrs_len)
        return cr_error_set(CR_ERR_INVALID, "store: attrs buffer of %zu bytes, need %zu", attrs_cap,
                            v.attrs_len);
    if (vec) {
        src = vec_ptr(st, txn, id, &rc);
        if (!src)
            return mdb_fail(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, "read vector");
        memcpy(vec, src, st->vec_bytes);
    }
    if (attrs && v.attrs_len)
        memcpy(attrs, v.attrs, v.attrs_len);
    return CR_OK;
}

static void item_clear(shard_store_item *item)
{
    memset(item, 0, sizeof *item);
    item->id = -1;
}

cr_err shard_store_get(shard_store *st, const char *ext_id, size_t ext_len, shard_store_item *item,
                       float *vec, void *attrs, size_t attrs_cap)
{
    MDB_txn *txn = NULL;
    shard_store_op op;
    e2i_val cur;
    cr_err err;
    int rc;

    if (!st || !item)
        return cr_error_set(CR_ERR_INVALID, "store: get without store or item");
    item_clear(item);
    err = check_ext_id(ext_id, ext_len);
    if (err < 0)
        return err;
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    memset(&op, 0, sizeof op);
    op.ext_id = ext_id;
    op.ext_len = ext_len;
    rc = e2i_get(st, txn, &op, &cur);
    if (rc == MDB_NOTFOUND) {
        err = CR_NOTFOUND;
    } else if (rc) {
        err = mdb_fail(rc, "read ext id");
    } else if (cur.flags & FLAG_DEAD) {
        item->id = cur.id == NO_ID ? -1 : (int64_t)cur.id;
        item->version = cur.version;
        item->deleted = 1;
        item->ext_len = ext_len;
        memcpy(item->ext_id, ext_id, ext_len);
        err = CR_NOTFOUND;
    } else {
        err = fill_item(st, txn, cur.id, item, vec, attrs, attrs_cap);
        if (err == CR_NOTFOUND)
            err = mdb_fail(MDB_CORRUPTED, "ext id points to a missing item");
    }
    read_end(st, txn);
    return err;
}

cr_err shard_store_get_by_id(shard_store *st, int64_t id, shard_store_item *item, float *vec,
                             void *attrs, size_t attrs_cap)
{
    MDB_txn *txn = NULL;
    cr_err err;

    if (!st || !item)
        return cr_error_set(CR_ERR_INVALID, "store: get without store or item");
    item_clear(item);
    if (id < 0)
        return CR_NOTFOUND;
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    err = fill_item(st, txn, (uint64_t)id, item, vec, attrs, attrs_cap);
    read_end(st, txn);
    return err;
}

cr_err shard_store_get_many_by_id(shard_store *st, const int64_t *ids, size_t n,
                                  shard_store_item *items, cr_err *status, void **attrs,
                                  float *vecs)
{
    MDB_txn *txn = NULL;
    cr_err err;

    if (!st || (n && (!ids || !items || !status)))
        return cr_error_set(CR_ERR_INVALID, "store: get_many without store, ids or output");
    if (n == 0)
        return CR_OK;
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    for (size_t i = 0; i < n; i++) {
        float *vec = vecs ? vecs + i * (size_t)st->params.dim : NULL;
        item_clear(&items[i]);
        if (attrs)
            attrs[i] = NULL;
        status[i] = ids[i] < 0 ? CR_NOTFOUND
                               : fill_item(st, txn, (uint64_t)ids[i], &items[i], vec, NULL, 0);
        if (status[i] < 0) {
            err = status[i];
            break;
        }
        if (status[i] == CR_OK && attrs && items[i].attrs_len) {
            attrs[i] = malloc(items[i].attrs_len);
            if (!attrs[i]) {
                err = cr_error_set(CR_ERR_NOMEM, "out of memory");
                break;
            }
            status[i] = fill_item(st, txn, (uint64_t)ids[i], &items[i], NULL, attrs[i],
                                  items[i].attrs_len);
        }
    }
    read_end(st, txn);
    if (err < 0 && attrs)
        for (size_t i = 0; i < n; i++) {
            free(attrs[i]);
            attrs[i] = NULL;
        }
    return err;
}

cr_err shard_store_get_vectors(shard_store *st, const int64_t *ids, size_t n, float *out,
                               uint8_t *found)
{
    MDB_txn *txn = NULL;
    uint64_t next = 0;
    size_t cached = SIZE_MAX, missing = 0;
    const unsigned char *base = NULL;
    cr_err err;
    int rc;

    if (!st || (n && (!ids || !out)))
        return cr_error_set(CR_ERR_INVALID, "store: get_vectors without store, ids or output");
    if (n == 0)
        return CR_OK;
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    rc = meta_get_int(txn, st->meta, "next_id", &next, sizeof next);
    if (rc) {
        err = mdb_fail(rc, "read next id");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        float *dst = out + i * (size_t)st->params.dim;
        uint64_t id = (uint64_t)ids[i];
        size_t blk;
        if (ids[i] < 0 || id >= next) {
            memset(dst, 0, st->vec_bytes);
            if (found)
                found[i] = 0;
            missing++;
            continue;
        }
        blk = id / st->block;
        if (blk != cached) {
            size_t key = blk;
            MDB_val k = mval(&key, sizeof key), d;
            rc = mdb_get(txn, st->vectors, &k, &d);
            if (!rc && d.mv_size != st->block_bytes)
                rc = MDB_CORRUPTED;
            if (rc) {
                err = mdb_fail(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, "read vectors");
                goto out;
            }
            base = d.mv_data;
            cached = blk;
        }
        memcpy(dst, base + (id % st->block) * st->vec_bytes, st->vec_bytes);
        if (found)
            found[i] = 1;
    }
    err = missing ? CR_NOTFOUND : CR_OK;
out:
    read_end(st, txn);
    return err;
}

cr_err shard_store_iterate(shard_store *st, int64_t from_id, unsigned flags, shard_store_iter_fn fn,
                           void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    size_t key = from_id > 0 ? (size_t)from_id : 0;
    cr_err err = CR_OK;
    int done = 0;

    if (!st || !fn)
        return cr_error_set(CR_ERR_INVALID, "store: iterate without store or callback");
    while (!done && err == CR_OK) {
        MDB_val k = mval(&key, sizeof key), d;
        size_t seen = 0;
        int rc;
        MDB_cursor_op op = MDB_SET_RANGE;

        err = read_begin(st, &txn);
        if (err < 0)
            return err;
        rc = mdb_cursor_open(txn, st->items, &cur);
        if (rc) {
            err = mdb_fail(rc, "open cursor");
            goto chunk_out;
        }
        while (seen < ITER_CHUNK) {
            shard_store_view v;
            uint64_t id;
            rc = mdb_cursor_get(cur, &k, &d, op);
            op = MDB_NEXT;
            if (rc == MDB_NOTFOUND) {
                done = 1;
                break;
            }
            if (!rc && k.mv_size != sizeof(size_t))
                rc = MDB_CORRUPTED;
            if (!rc) {
                memcpy(&id, k.mv_data, sizeof id);
                rc = rec_decode(&d, &v);
            }
            if (rc) {
                err = mdb_fail(rc, "iterate items");
                goto chunk_out;
            }
            key = id + 1; /* where the next chunk resumes */
            seen++;
            if (v.deleted && !(flags & SHARD_STORE_ITER_DEAD))
                continue;
            v.id = (int64_t)id;
            if (!v.deleted) {
                v.vector = vec_ptr(st, txn, id, &rc);
                if (!v.vector) {
                    err = mdb_fail(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, "read vector");
                    goto chunk_out;
                }
            }
            err = fn(&v, ctx);
            if (err != CR_OK) {
                done = 1;
                break;
            }
        }
    chunk_out:
        if (cur)
            mdb_cursor_close(cur);
        cur = NULL;
        read_end(st, txn);
        txn = NULL;
    }
    return err;
}

/* ---- scan by external id or by version (replica repair) ---------------------------------- */

/* Fills *v with the current state of ext id `ext` from its ext2int value `e2i`. */
static int scan_view(shard_store *st, MDB_txn *txn, const MDB_val *ext, const MDB_val *e2i,
                     int with_data, shard_store_view *v)
{
    uint64_t id;
    int rc = 0;
    if (e2i->mv_size != E2I_LEN || ext->mv_size > SHARD_STORE_EXT_ID_MAX)
        return MDB_CORRUPTED;
    id = get_u64(e2i->mv_data);
    memset(v, 0, sizeof *v);
    v->version = get_u64((unsigned char *)e2i->mv_data + 8);
    v->deleted = (((unsigned char *)e2i->mv_data)[16] & FLAG_DEAD) != 0;
    v->id = id == NO_ID ? -1 : (int64_t)id;
    v->ext_id = ext->mv_data;
    v->ext_len = ext->mv_size;
    if (v->deleted || !with_data)
        return 0;
    {
        size_t key = id;
        MDB_val k = mval(&key, sizeof key), d;
        shard_store_view rec;
        rc = mdb_get(txn, st->items, &k, &d);
        if (!rc)
            rc = rec_decode(&d, &rec);
        if (rc)
            return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
        v->attrs = rec.attrs;
        v->attrs_len = rec.attrs_len;
        v->vector = vec_ptr(st, txn, id, &rc);
    }
    return v->vector ? 0 : rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
}

/* Positions `cur` on the first key after *pos (or at the start of the order's range). */
static int scan_seek(MDB_cursor *cur, shard_store_order order, uint64_t min_version,
                     const shard_store_pos *pos, unsigned char *buf, MDB_val *k, MDB_val *d)
{
    size_t len = pos->ext_len;
    int rc;
    if (order == SHARD_STORE_BY_VERSION)
        len = pos->set ? byver_key(buf, pos->version, pos->ext_id, pos->ext_len)
                       : byver_key(buf, min_version, "", 0);
    else if (pos->set)
        memcpy(buf, pos->ext_id, pos->ext_len);
    else
        return mdb_cursor_get(cur, k, d, MDB_FIRST);
    *k = mval(buf, len);
    rc = mdb_cursor_get(cur, k, d, MDB_SET_RANGE);
    if (!rc && pos->set && k->mv_size == len && memcmp(k->mv_data, buf, len) == 0)
        rc = mdb_cursor_get(cur, k, d, MDB_NEXT);
    return rc;
}

/* The ext id and ext2int value of the current key: by version, looked up in ext2int, whose
 * version must match the index's (the two are written in one transaction). */
static int scan_entry(shard_store *st, MDB_txn *txn, shard_store_order order, const MDB_val *k,
                      const MDB_val *d, MDB_val *ext, MDB_val *e2i, uint64_t *version)
{
    int rc;
    if (order != SHARD_STORE_BY_VERSION) {
        *ext = *k;
        *e2i = *d;
        *version = d->mv_size == E2I_LEN ? get_u64((unsigned char *)d->mv_data + 8) : 0;
        return 0;
    }
    if (k->mv_size <= 8 || k->mv_size > BYVER_KEY_MAX)
        return MDB_CORRUPTED;
    *version = byver_version(k->mv_data);
    *ext = mval((unsigned char *)k->mv_data + 8, k->mv_size - 8);
    rc = mdb_get(txn, st->ext2int, ext, e2i);
    if (rc)
        return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
    if (e2i->mv_size != E2I_LEN || get_u64((unsigned char *)e2i->mv_data + 8) != *version)
        return MDB_CORRUPTED;
    return 0;
}

cr_err shard_store_scan(shard_store *st, shard_store_order order, uint64_t min_version,
                        uint64_t max_version, int with_data, shard_store_pos *pos,
                        shard_store_iter_fn fn, void *ctx, int *at_end)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, d;
    unsigned char buf[BYVER_KEY_MAX];
    cr_err err = CR_OK;
    int rc;

    if (!st || !fn || !pos || !at_end ||
        (order != SHARD_STORE_BY_EXT_ID && order != SHARD_STORE_BY_VERSION) ||
        (pos->set && (pos->ext_len == 0 || pos->ext_len > SHARD_STORE_EXT_ID_MAX)))
        return cr_error_set(CR_ERR_INVALID, "store: scan without store, callback or position");
    *at_end = 0;
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    rc = mdb_cursor_open(txn, order == SHARD_STORE_BY_VERSION ? st->byver : st->ext2int, &cur);
    if (!rc)
        rc = scan_seek(cur, order, min_version, pos, buf, &k, &d);
    for (size_t seen = 0; !rc && seen < SCAN_VISIT_MAX; seen++) {
        shard_store_view v;
        MDB_val ext, e2i;
        uint64_t version;
        rc = scan_entry(st, txn, order, &k, &d, &ext, &e2i, &version);
        if (rc)
            break;
        if (max_version && version > max_version && order == SHARD_STORE_BY_VERSION) {
            rc = MDB_NOTFOUND; /* past the range: the end */
            break;
        }
        if (version >= min_version && (!max_version || version <= max_version)) {
            rc = scan_view(st, txn, &ext, &e2i, with_data, &v);
            if (rc)
                break;
            err = fn(&v, ctx);
            if (err != CR_OK)
                break;
        }
        pos->set = 1;
        pos->version = version;
        pos->ext_len = ext.mv_size;
        memcpy(pos->ext_id, ext.mv_data, ext.mv_size);
        pos->ext_id[ext.mv_size] = '\0';
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        *at_end = 1;
    else if (rc)
        err = mdb_fail(rc, "scan");
    if (cur)
        mdb_cursor_close(cur);
    read_end(st, txn);
    return err;
}

/* Reads one u64 meta key in its own read transaction. */
static cr_err meta_read_u64(shard_store *st, const char *key, uint64_t *out)
{
    MDB_txn *txn = NULL;
    cr_err err = read_begin(st, &txn);
    int rc;
    if (err < 0)
        return err;
    rc = meta_get_int(txn, st->meta, key, out, sizeof *out);
    read_end(st, txn);
    return rc ? mdb_fail(rc, key) : CR_OK;
}

cr_err shard_store_copy(shard_store *st, const char *dir, uint64_t *bytes)
{
    char path[4200];
    struct stat sb;
    int rc, fd;
    if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path)
        return cr_error_set(CR_ERR_INVALID, "backup: path too long");
    /* The resize lock as a reader holds: the map must not move under the copy. */
    pthread_rwlock_rdlock(&st->resize_lock);
    rc = mdb_env_copy2(st->env, dir, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&st->resize_lock);
    if (rc)
        return mdb_fail(rc, "copy environment");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0 || fstat(fd, &sb) != 0) {
        cr_err err = cr_error_set(CR_ERR_IO, "backup %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return err;
    }
    close(fd);
    if (bytes)
        *bytes = (uint64_t)sb.st_size;
    return CR_OK;
}

cr_err shard_store_count(shard_store *st, uint64_t *live)
{
    if (!st || !live)
        return cr_error_set(CR_ERR_INVALID, "store: count without store or output");
    return meta_read_u64(st, "live", live);
}

cr_err shard_store_next_id(shard_store *st, int64_t *next_id)
{
    uint64_t x = 0;
    cr_err err;
    if (!st || !next_id)
        return cr_error_set(CR_ERR_INVALID, "store: next_id without store or output");
    err = meta_read_u64(st, "next_id", &x);
    if (err == CR_OK)
        *next_id = (int64_t)x;
    return err;
}

static uint64_t db_bytes(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat s;
    if (mdb_stat(txn, dbi, &s))
        return 0;
    return ((uint64_t)s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages) * s.ms_psize;
}

cr_err shard_store_stats_get(shard_store *st, shard_store_stats *out)
{
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    MDB_stat es;
    struct stat sb;
    mdb_filehandle_t fd;
    uint64_t next = 0;
    cr_err err;
    int rc;

    if (!st || !out)
        return cr_error_set(CR_ERR_INVALID, "store: stats without store or output");
    memset(out, 0, sizeof *out);
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    rc = meta_get_int(txn, st->meta, "live", &out->live, sizeof out->live);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "dead", &out->dead, sizeof out->dead);
    if (!rc)
        rc = meta_get_int(txn, st->meta, "next_id", &next, sizeof next);
    if (rc) {
        err = mdb_fail(rc, "read counters");
        goto out;
    }
    out->next_id = (int64_t)next;
    out->block_items = st->block;
    mdb_env_stat(st->env, &es);
    mdb_env_info(st->env, &info);
    out->page_size = es.ms_psize;
    out->map_size = info.me_mapsize;
    out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * es.ms_psize;
    out->vector_bytes = db_bytes(txn, st->vectors);
    out->record_bytes =
        db_bytes(txn, st->items) + db_bytes(txn, st->ext2int) + db_bytes(txn, st->meta) +
        db_bytes(txn, st->byver);
    out->image_bytes = db_bytes(txn, st->images);
    if (mdb_env_get_fd(st->env, &fd) == 0 && fstat(fd, &sb) == 0)
        out->file_bytes = (uint64_t)sb.st_size;
out:
    read_end(st, txn);
    return err;
}

cr_err shard_store_meta_get(shard_store *st, const char *key, void *value, size_t cap, size_t *len)
{
    char k[sizeof META_USER_PREFIX + SHARD_STORE_META_KEY_MAX];
    MDB_txn *txn = NULL;
    MDB_val mk, d;
    cr_err err = check_meta_key(key);
    int rc;

    if (err < 0)
        return err;
    if (!st || !len)
        return cr_error_set(CR_ERR_INVALID, "store: meta_get without store or length");
    snprintf(k, sizeof k, "%s%s", META_USER_PREFIX, key);
    mk = mval(k, strlen(k));
    err = read_begin(st, &txn);
    if (err < 0)
        return err;
    rc = mdb_get(txn, st->meta, &mk, &d);
    if (rc == MDB_NOTFOUND) {
        err = CR_NOTFOUND;
    } else if (rc) {
        err = mdb_fail(rc, "meta get");
    } else {
        *len = d.mv_size;
        if (value && cap < d.mv_size)
            err = cr_error_set(CR_ERR_INVALID, "store: meta buffer of %zu bytes, need %zu", cap,
                               d.mv_size);
        else if (value && d.mv_size)
            memcpy(value, d.mv_data, d.mv_size);
    }
    read_end(st, txn);
    return err;
}

cr_err shard_store_get_image(shard_store *st, const char *ext_id, size_t ext_len, void **image,
                             size_t *len)
{
    shard_store_op op = {.ext_id = ext_id, .ext_len = ext_len};
    MDB_txn *txn = NULL;
    e2i_val cur;
    cr_err err;
    int rc;

    if (!st || !image || !len)
        return cr_error_set(CR_ERR_INVALID, "store: get_image without store or output");
    *image = NULL;
    *len = 0;
    if ((err = check_ext_id(ext_id, ext_len)) < 0)
        return err;
    if ((err = read_begin(st, &txn)) < 0)
        return err;
    rc = e2i_get(st, txn, &op, &cur);
    if (rc == 0 && (cur.flags & FLAG_DEAD))
        rc = MDB_NOTFOUND;
    if (rc == 0) {
        size_t key = cur.id;
        MDB_val k = mval(&key, sizeof key), d;
        rc = mdb_get(txn, st->images, &k, &d);
        if (rc == MDB_NOTFOUND) {
            rc = 0; /* a live item without an image */
        } else if (rc == 0) {
            if (!(*image = malloc(d.mv_size ? d.mv_size : 1)))
                rc = NOMEM_RC;
            else {
                memcpy(*image, d.mv_data, d.mv_size);
                *len = d.mv_size;
            }
        }
    }
    if (rc == MDB_NOTFOUND)
        err = cr_error_set(CR_NOTFOUND, "store: no item '%.*s'", (int)ext_len, ext_id);
    else if (rc == NOMEM_RC)
        err = cr_error_set(CR_ERR_NOMEM, "store: out of memory for an image");
    else if (rc)
        err = mdb_fail(rc, "get image");
    read_end(st, txn);
    return err;
}
