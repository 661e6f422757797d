/* test_store.c — shard/store: create/open, version rules, batches, map growth, reads,
 * crash durability (fork + SIGKILL), and the bytes-per-item measurement.
 *
 *   test_store                  all checks; measures with 20,000 items of 512-d
 *   test_store --measure N [B]  only the measurement, with N items (e.g. 100000) written in
 *                               synced batches of B (default 100, at most 1000)
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "common/err.h"
#include "common/test.h"
#include "cirrus.pb-c.h"
#include "shard/store.h"

#define DIM 16

static char base_dir[] = "/tmp/cirrus_store_XXXXXX";

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", base_dir, name);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A deterministic vector for `seed`, with awkward values (negative zero, denormal) mixed in
 * so that exactness is really tested. */
static void fill_vec(float *v, int dim, uint64_t seed)
{
    for (int j = 0; j < dim; j++) {
        uint64_t h = mix(seed * 1000003u + (uint64_t)j);
        v[j] = (float)((double)(int64_t)(h % 2000001u) - 1000000.0) / 997.0f;
    }
    v[0] = -0.0f;
    if (dim > 1)
        v[1] = 1.0e-40f;
}

static int vec_equal(const float *a, const float *b, int dim)
{
    return memcmp(a, b, (size_t)dim * sizeof(float)) == 0;
}

static shard_store_op upsert_op(const char *id, uint64_t version, const float *v, size_t dim,
                                const char *attrs)
{
    shard_store_op op;
    memset(&op, 0, sizeof op);
    op.kind = SHARD_STORE_UPSERT;
    op.ext_id = id;
    op.ext_len = strlen(id);
    op.version = version;
    op.attrs = attrs;
    op.attrs_len = attrs ? strlen(attrs) : 0;
    op.vector = v;
    op.dim = dim;
    return op;
}

static shard_store_op delete_op(const char *id, uint64_t version)
{
    shard_store_op op;
    memset(&op, 0, sizeof op);
    op.kind = SHARD_STORE_DELETE;
    op.ext_id = id;
    op.ext_len = strlen(id);
    op.version = version;
    return op;
}

static shard_store *make_store(const char *name, int dim, size_t map_size)
{
    char dir[256];
    shard_store_params p = {dim, SHARD_STORE_METRIC_IP, "Flat"};
    shard_store_options o = shard_store_default_options();
    shard_store *st = NULL;
    cr_err rc;
    path_of(dir, sizeof dir, name);
    o.map_size = map_size;
    rc = shard_store_create(&st, dir, &p, &o);
    CR_CHECK_MSG(rc == CR_OK, "create %s: %s", name, cr_error_message());
    return st;
}

/* ---- create / open / mismatch --------------------------------------------------------- */

/* Kept images (--keep-images): stored with the upsert, replaced with the item (an upsert
 * without one leaves none), deleted with it, kept across a reopen; too large is refused. */
static void test_images(void)
{
    static const char png[] = "\x89PNG\r\n\x1a\nfake-image-bytes";
    char dir[256];
    shard_store *st = make_store("img", DIM, 0);
    float v[DIM];
    shard_store_op op;
    shard_store_result r;
    void *img = NULL;
    size_t len = 0;
    if (!st)
        return;
    fill_vec(v, DIM, 9);
    op = upsert_op("sku-1", 1, v, DIM, NULL);
    op.image = png;
    op.image_len = sizeof png - 1;
    CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_OK);
    op = upsert_op("sku-2", 1, v, DIM, NULL);
    CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_OK);
    CR_CHECK(shard_store_get_image(st, "sku-1", 5, &img, &len) == CR_OK);
    CR_CHECK(len == sizeof png - 1 && img && memcmp(img, png, len) == 0);
    free(img);
    CR_CHECK(shard_store_get_image(st, "sku-2", 5, &img, &len) == CR_OK && !img && len == 0);
    CR_CHECK(shard_store_get_image(st, "sku-3", 5, &img, &len) == CR_NOTFOUND && !img);
    op = upsert_op("sku-3", 1, v, DIM, NULL);
    op.image = png;
    op.image_len = SHARD_STORE_IMAGE_MAX + 1;
    CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_ERR_INVALID);
    /* across a reopen */
    shard_store_close(&st);
    path_of(dir, sizeof dir, "img");
    CR_CHECK(shard_store_open(&st, dir, NULL, NULL) == CR_OK);
    if (!st)
        return;
    CR_CHECK(shard_store_get_image(st, "sku-1", 5, &img, &len) == CR_OK && img &&
             len == sizeof png - 1);
    free(img);
    /* a replacing upsert without an image leaves none; a delete removes the item's */
    op = upsert_op("sku-1", 2, v, DIM, NULL);
    CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_OK);
    CR_CHECK(shard_store_get_image(st, "sku-1", 5, &img, &len) == CR_OK && !img);
    op = upsert_op("sku-2", 2, v, DIM, NULL);
    op.image = png;
    op.image_len = sizeof png - 1;
    CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_OK);
    CR_CHECK(shard_store_get_image(st, "sku-2", 5, &img, &len) == CR_OK && img);
    free(img);
    op = delete_op("sku-2", 3);
    CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_OK);
    CR_CHECK(shard_store_get_image(st, "sku-2", 5, &img, &len) == CR_NOTFOUND && !img);
    {
        shard_store_stats ss;
        CR_CHECK(shard_store_stats_get(st, &ss) == CR_OK && ss.image_bytes == 0);
    }
    shard_store_close(&st);
}

static void test_create_open(void)
{
    char dir[256];
    shard_store_params p = {DIM, SHARD_STORE_METRIC_L2, "IVF16,Flat"};
    shard_store_params e;
    shard_store *st = NULL, *st2 = NULL;
    cr_err rc;

    path_of(dir, sizeof dir, "co");
    rc = shard_store_open(&st, dir, NULL, NULL);
    CR_CHECK(rc == CR_NOTFOUND && st == NULL);

    rc = shard_store_create(&st, dir, &p, NULL);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    CR_CHECK(st != NULL);
    CR_CHECK(shard_store_meta_set(st, "snapshot", "snap-7", 6) == CR_OK);
    shard_store_close(&st);
    CR_CHECK(st == NULL);
    shard_store_close(&st); /* NULL-safe */

    rc = shard_store_create(&st2, dir, &p, NULL);
    CR_CHECK(rc == CR_ERR_INVALID && st2 == NULL);
    CR_CHECK(strstr(cr_error_message(), "already exists") != NULL);

    rc = shard_store_open(&st, dir, NULL, NULL);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (rc == CR_OK) {
        const shard_store_params *got = shard_store_params_get(st);
        char buf[16];
        size_t len = 0;
        CR_CHECK(got->dim == DIM && got->metric == SHARD_STORE_METRIC_L2);
        CR_CHECK(strcmp(got->factory, "IVF16,Flat") == 0);
        CR_CHECK(shard_store_meta_get(st, "snapshot", buf, sizeof buf, &len) == CR_OK);
        CR_CHECK(len == 6 && memcmp(buf, "snap-7", 6) == 0);
        CR_CHECK(shard_store_meta_get(st, "snapshot", buf, 3, &len) == CR_ERR_INVALID);
        CR_CHECK(shard_store_meta_get(st, "nope", buf, sizeof buf, &len) == CR_NOTFOUND);
        CR_CHECK(shard_store_meta_get(st, "", buf, sizeof buf, &len) == CR_ERR_INVALID);
        shard_store_close(&st);
    }

    e = p;
    rc = shard_store_open(&st, dir, &e, NULL);
    CR_CHECK(rc == CR_OK);
    shard_store_close(&st);

    e.dim = DIM + 1;
    rc = shard_store_open(&st, dir, &e, NULL);
    CR_CHECK(rc == CR_ERR_INVALID && st == NULL);
    CR_CHECK_MSG(strstr(cr_error_message(), "dim 16, expected 17") != NULL, "%s",
                 cr_error_message());

    e = p;
    e.metric = SHARD_STORE_METRIC_IP;
    rc = shard_store_open(&st, dir, &e, NULL);
    CR_CHECK(rc == CR_ERR_INVALID && st == NULL);
    CR_CHECK_MSG(strstr(cr_error_message(), "metric l2, expected ip") != NULL, "%s",
                 cr_error_message());

    e = p;
    e.factory = "HNSW32";
    rc = shard_store_open(&st, dir, &e, NULL);
    CR_CHECK(rc == CR_ERR_INVALID && st == NULL);
    CR_CHECK_MSG(strstr(cr_error_message(), "\"IVF16,Flat\", expected \"HNSW32\"") != NULL, "%s",
                 cr_error_message());

    e.dim = 0;
    e.metric = SHARD_STORE_METRIC_ANY;
    e.factory = NULL;
    rc = shard_store_open(&st, dir, &e, NULL);
    CR_CHECK(rc == CR_OK);
    shard_store_close(&st);

    /* bad parameters */
    path_of(dir, sizeof dir, "co_bad");
    e = p;
    e.dim = 0;
    CR_CHECK(shard_store_create(&st, dir, &e, NULL) == CR_ERR_INVALID);
    e = p;
    e.metric = (shard_store_metric)7;
    CR_CHECK(shard_store_create(&st, dir, &e, NULL) == CR_ERR_INVALID);
    e = p;
    e.factory = "";
    CR_CHECK(shard_store_create(&st, dir, &e, NULL) == CR_ERR_INVALID);
    CR_CHECK(st == NULL);
}

/* ---- roundtrip, versions -------------------------------------------------------------- */

static void test_roundtrip_versions(void)
{
    shard_store *st = make_store("rv", DIM, 0);
    float v1[DIM], v2[DIM], v3[DIM], got[DIM];
    char attrs[64];
    shard_store_item it;
    shard_store_result r[4];
    shard_store_op ops[4];
    uint64_t live = 0;
    cr_err rc;

    if (!st)
        return;
    fill_vec(v1, DIM, 1);
    fill_vec(v2, DIM, 2);
    fill_vec(v3, DIM, 3);

    ops[0] = upsert_op("shirt-1", 10, v1, DIM, "color=red");
    ops[1] = upsert_op("héllo-ü", 5, v2, DIM, NULL);
    rc = shard_store_write(st, ops, 2, r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    CR_CHECK(r[0].status == CR_OK && r[0].new_id == 0 && r[0].old_id == -1);
    CR_CHECK(r[1].status == CR_OK && r[1].new_id == 1 && r[1].old_id == -1);

    memset(got, 0xAB, sizeof got);
    rc = shard_store_get(st, "shirt-1", 7, &it, got, attrs, sizeof attrs);
    CR_CHECK(rc == CR_OK);
    CR_CHECK(it.id == 0 && it.version == 10 && !it.deleted);
    CR_CHECK(it.ext_len == 7 && strcmp(it.ext_id, "shirt-1") == 0);
    CR_CHECK(it.attrs_len == 9 && memcmp(attrs, "color=red", 9) == 0);
    CR_CHECK(vec_equal(got, v1, DIM));
    CR_CHECK(shard_store_get(st, "shirt-1", 7, &it, NULL, attrs, 4) == CR_ERR_INVALID);
    CR_CHECK(it.attrs_len == 9);
    CR_CHECK(shard_store_get(st, "shirt-1", 7, &it, NULL, NULL, 0) == CR_OK);

    rc = shard_store_get_by_id(st, 1, &it, got, NULL, 0);
    CR_CHECK(rc == CR_OK && strcmp(it.ext_id, "héllo-ü") == 0 && it.attrs_len == 0);
    CR_CHECK(vec_equal(got, v2, DIM));
    CR_CHECK(shard_store_get_by_id(st, 2, &it, got, NULL, 0) == CR_NOTFOUND && it.id == -1);
    CR_CHECK(shard_store_get(st, "nobody", 6, &it, got, NULL, 0) == CR_NOTFOUND);

    /* newer version: new internal id, old id reported dead */
    ops[0] = upsert_op("shirt-1", 11, v3, DIM, "color=blue");
    rc = shard_store_write(st, ops, 1, r);
    CR_CHECK(rc == CR_OK && r[0].status == CR_OK && r[0].new_id == 2 && r[0].old_id == 0);
    rc = shard_store_get(st, "shirt-1", 7, &it, got, attrs, sizeof attrs);
    CR_CHECK(rc == CR_OK && it.id == 2 && it.version == 11 && vec_equal(got, v3, DIM));
    CR_CHECK(it.attrs_len == 10 && memcmp(attrs, "color=blue", 10) == 0);
    rc = shard_store_get_by_id(st, 0, &it, got, NULL, 0);
    CR_CHECK(rc == CR_NOTFOUND && it.deleted && it.id == 0 && strcmp(it.ext_id, "shirt-1") == 0);

    /* equal and older versions are stale */
    ops[0] = upsert_op("shirt-1", 11, v1, DIM, NULL);
    ops[1] = upsert_op("shirt-1", 3, v1, DIM, NULL);
    ops[2] = delete_op("shirt-1", 4);
    rc = shard_store_write(st, ops, 3, r);
    CR_CHECK(rc == CR_OK);
    CR_CHECK(r[0].status == CR_STALE && r[0].new_id == -1 && r[0].old_id == -1);
    CR_CHECK(r[1].status == CR_STALE && r[2].status == CR_STALE);
    rc = shard_store_get(st, "shirt-1", 7, &it, got, NULL, 0);
    CR_CHECK(rc == CR_OK && it.id == 2 && vec_equal(got, v3, DIM));

    /* delete, then a reordered older upsert stays ignored; a newer one revives */
    ops[0] = delete_op("shirt-1", 20);
    rc = shard_store_write(st, ops, 1, r);
    CR_CHECK(rc == CR_OK && r[0].status == CR_OK && r[0].old_id == 2 && r[0].new_id == -1);
    rc = shard_store_get(st, "shirt-1", 7, &it, got, NULL, 0);
    CR_CHECK(rc == CR_NOTFOUND && it.deleted && it.version == 20);
    ops[0] = upsert_op("shirt-1", 15, v1, DIM, NULL);
    ops[1] = upsert_op("shirt-1", 20, v1, DIM, NULL);
    ops[2] = delete_op("shirt-1", 20); /* again: nothing live, tombstone kept */
    rc = shard_store_write(st, ops, 3, r);
    CR_CHECK(rc == CR_OK && r[0].status == CR_STALE && r[1].status == CR_STALE);
    CR_CHECK(r[2].status == CR_NOTFOUND && r[2].old_id == -1);
    CR_CHECK(shard_store_get(st, "shirt-1", 7, &it, got, NULL, 0) == CR_NOTFOUND);

    /* delete of an unknown id leaves a tombstone that blocks older upserts */
    ops[0] = delete_op("ghost", 9);
    ops[1] = upsert_op("ghost", 8, v1, DIM, NULL);
    rc = shard_store_write(st, ops, 2, r);
    CR_CHECK(rc == CR_OK && r[0].status == CR_NOTFOUND && r[1].status == CR_STALE);
    CR_CHECK(shard_store_get(st, "ghost", 5, &it, NULL, NULL, 0) == CR_NOTFOUND);
    CR_CHECK(it.deleted && it.version == 9 && it.id == -1);

    /* revive after delete with a newer version; two upserts of one id in one batch */
    ops[0] = upsert_op("shirt-1", 21, v1, DIM, NULL);
    ops[1] = upsert_op("shirt-1", 22, v2, DIM, NULL);
    rc = shard_store_write(st, ops, 2, r);
    CR_CHECK(rc == CR_OK && r[0].status == CR_OK && r[0].new_id == 3 && r[0].old_id == -1);
    CR_CHECK(r[1].status == CR_OK && r[1].new_id == 4 && r[1].old_id == 3);
    rc = shard_store_get(st, "shirt-1", 7, &it, got, NULL, 0);
    CR_CHECK(rc == CR_OK && it.id == 4 && it.version == 22 && vec_equal(got, v2, DIM));

    CR_CHECK(shard_store_count(st, &live) == CR_OK && live == 2);
    {
        shard_store_stats s;
        CR_CHECK(shard_store_stats_get(st, &s) == CR_OK);
        CR_CHECK(s.live == 2 && s.dead == 3 && s.next_id == 5);
    }
    shard_store_close(&st);
}

/* ---- invalid inputs ------------------------------------------------------------------- */

static void test_invalid(void)
{
    shard_store *st = make_store("inv", DIM, 0);
    float v[DIM];
    char long_id[SHARD_STORE_EXT_ID_MAX + 2];
    shard_store_op ops[7];
    shard_store_result r[7];
    shard_store_item it;
    int64_t next = -1;
    cr_err rc;

    if (!st)
        return;
    fill_vec(v, DIM, 5);
    memset(long_id, 'a', sizeof long_id);
    long_id[SHARD_STORE_EXT_ID_MAX + 1] = '\0'; /* 257 bytes */

    ops[0] = upsert_op("", 1, v, DIM, NULL);
    ops[1] = upsert_op(long_id, 1, v, DIM, NULL);
    ops[2] = upsert_op("ok", 1, v, DIM - 1, NULL);  /* wrong vector length */
    ops[3] = upsert_op("bad\xff", 1, v, DIM, NULL); /* not UTF-8 */
    ops[4] = upsert_op("nullvec", 1, NULL, DIM, NULL);
    long_id[SHARD_STORE_EXT_ID_MAX] = '\0'; /* 256 bytes: fine */
    ops[5] = upsert_op(long_id, 1, v, DIM, NULL);
    ops[6] = upsert_op("ok", 1, v, DIM, NULL);
    ops[1].ext_len = SHARD_STORE_EXT_ID_MAX + 1;
    rc = shard_store_write(st, ops, 7, r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    for (int i = 0; i < 5; i++)
        CR_CHECK_MSG(r[i].status == CR_ERR_INVALID && r[i].new_id == -1, "op %d", i);
    CR_CHECK(r[5].status == CR_OK && r[5].new_id == 0);
    CR_CHECK(r[6].status == CR_OK && r[6].new_id == 1);
    CR_CHECK(shard_store_next_id(st, &next) == CR_OK && next == 2);

    /* a batch with only invalid ops commits nothing */
    rc = shard_store_write(st, ops, 1, r);
    CR_CHECK(rc == CR_OK && r[0].status == CR_ERR_INVALID);
    CR_CHECK(shard_store_write(st, NULL, 0, NULL) == CR_OK);

    CR_CHECK(shard_store_get(st, "", 0, &it, NULL, NULL, 0) == CR_ERR_INVALID);
    CR_CHECK(shard_store_get(st, long_id, SHARD_STORE_EXT_ID_MAX + 1, &it, NULL, NULL, 0) ==
             CR_ERR_INVALID);
    CR_CHECK(shard_store_get(st, long_id, SHARD_STORE_EXT_ID_MAX, &it, NULL, NULL, 0) == CR_OK);
    CR_CHECK(shard_store_get_by_id(st, -5, &it, NULL, NULL, 0) == CR_NOTFOUND);
    shard_store_close(&st);
}

/* ---- batch atomicity ------------------------------------------------------------------ */

static void test_atomic(void)
{
    shard_store *st = make_store("atom", DIM, 0);
    float v[3][DIM];
    shard_store_op ops[3];
    shard_store_result r[3];
    shard_store_item it;
    uint64_t live = 9;
    int64_t next = -1;
    cr_err rc;

    if (!st)
        return;
    for (int i = 0; i < 3; i++)
        fill_vec(v[i], DIM, 100 + (uint64_t)i);
    ops[0] = upsert_op("a", 1, v[0], DIM, NULL);
    rc = shard_store_write(st, ops, 1, r);
    CR_CHECK(rc == CR_OK && r[0].new_id == 0);

    ops[0] = upsert_op("a", 2, v[1], DIM, NULL);
    ops[1] = upsert_op("b", 1, v[1], DIM, NULL);
    ops[2] = delete_op("a", 3);
    shard_store_fault_inject(st, 2); /* fails after ops 0 and 1 were put */
    rc = shard_store_write(st, ops, 3, r);
    CR_CHECK(rc == CR_ERR_STORE);
    CR_CHECK(strstr(cr_error_message(), "injected") != NULL);

    rc = shard_store_get(st, "a", 1, &it, v[2], NULL, 0);
    CR_CHECK(rc == CR_OK && it.id == 0 && it.version == 1 && vec_equal(v[2], v[0], DIM));
    CR_CHECK(shard_store_get(st, "b", 1, &it, NULL, NULL, 0) == CR_NOTFOUND && !it.deleted);
    CR_CHECK(shard_store_next_id(st, &next) == CR_OK && next == 1);
    CR_CHECK(shard_store_count(st, &live) == CR_OK && live == 1);

    /* the same batch then goes through whole */
    rc = shard_store_write(st, ops, 3, r);
    CR_CHECK(rc == CR_OK && r[0].new_id == 1 && r[0].old_id == 0 && r[1].new_id == 2);
    CR_CHECK(r[2].status == CR_OK && r[2].old_id == 1);
    CR_CHECK(shard_store_count(st, &live) == CR_OK && live == 1);
    shard_store_close(&st);
}

/* ---- iterate, get_vectors, reopen ----------------------------------------------------- */

typedef struct iter_acc {
    int64_t ids[64];
    int deleted[64];
    int n;
    int bad;
    int stop_after;
} iter_acc;

static cr_err iter_cb(const shard_store_view *v, void *ctx)
{
    iter_acc *a = ctx;
    float want[DIM];
    char name[32];
    if (a->n >= 64)
        return CR_ERR_INTERNAL;
    a->ids[a->n] = v->id;
    a->deleted[a->n] = v->deleted;
    a->n++;
    if (!v->deleted) {
        /* items were written as "it-<seed>" with vector fill_vec(seed) */
        char ext[SHARD_STORE_EXT_ID_MAX + 1];
        int seed;
        memcpy(ext, v->ext_id, v->ext_len);
        ext[v->ext_len] = '\0';
        seed = (int)strtol(ext + 3, NULL, 10);
        snprintf(name, sizeof name, "it-%d", seed);
        fill_vec(want, DIM, (uint64_t)seed);
        if (!v->vector || !vec_equal(v->vector, want, DIM) || v->ext_len != strlen(name) ||
            memcmp(v->ext_id, name, v->ext_len) != 0 || v->attrs_len != 2)
            a->bad++;
    } else if (v->vector) {
        a->bad++;
    }
    if (a->stop_after && a->n == a->stop_after)
        return CR_TIMEOUT;
    return CR_OK;
}

static void test_iterate_vectors_reopen(void)
{
    char dir[256];
    shard_store *st = make_store("iter", DIM, 0);
    float v[40][DIM], out[6 * DIM];
    char names[40][16];
    shard_store_op ops[40];
    shard_store_result r[40];
    int64_t ids[6] = {39, 0, 17, -1, 18, 1000};
    uint8_t found[6];
    iter_acc acc;
    cr_err rc;

    if (!st)
        return;
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "it-%d", i);
        fill_vec(v[i], DIM, (uint64_t)i);
        ops[i] = upsert_op(names[i], 1, v[i], DIM, "xy");
    }
    rc = shard_store_write(st, ops, 40, r); /* ids 0..39 */
    CR_CHECK(rc == CR_OK && r[39].new_id == 39);
    /* kill ids 5 and 30: delete it-5, replace it-30 (new id 40, same vector) */
    ops[0] = delete_op("it-5", 2);
    ops[1] = upsert_op("it-30", 2, v[30], DIM, "xy");
    rc = shard_store_write(st, ops, 2, r);
    CR_CHECK(rc == CR_OK && r[0].old_id == 5 && r[1].new_id == 40 && r[1].old_id == 30);

    memset(&acc, 0, sizeof acc);
    rc = shard_store_iterate(st, 0, 0, iter_cb, &acc);
    CR_CHECK(rc == CR_OK && acc.n == 39 && acc.bad == 0);
    for (int i = 1; i < acc.n; i++)
        CR_CHECK(acc.ids[i] > acc.ids[i - 1]);

    memset(&acc, 0, sizeof acc);
    rc = shard_store_iterate(st, 28, 0, iter_cb, &acc);
    CR_CHECK(rc == CR_OK && acc.n == 12 && acc.bad == 0); /* 28..39 minus 30, plus 40 */
    CR_CHECK(acc.ids[0] == 28 && acc.ids[2] == 31 && acc.ids[11] == 40);

    memset(&acc, 0, sizeof acc);
    rc = shard_store_iterate(st, 0, SHARD_STORE_ITER_DEAD, iter_cb, &acc);
    CR_CHECK(rc == CR_OK && acc.n == 41 && acc.bad == 0);
    CR_CHECK(acc.deleted[5] && acc.deleted[30] && !acc.deleted[6]);

    memset(&acc, 0, sizeof acc);
    acc.stop_after = 3;
    rc = shard_store_iterate(st, 0, 0, iter_cb, &acc);
    CR_CHECK(rc == CR_TIMEOUT && acc.n == 3);

    rc = shard_store_get_vectors(st, ids, 6, out, found);
    CR_CHECK(rc == CR_NOTFOUND);
    CR_CHECK(found[0] && found[1] && found[2] && !found[3] && found[4] && !found[5]);
    CR_CHECK(vec_equal(out, v[39], DIM) && vec_equal(out + DIM, v[0], DIM));
    CR_CHECK(vec_equal(out + 2 * DIM, v[17], DIM) && vec_equal(out + 4 * DIM, v[18], DIM));
    CR_CHECK(out[3 * DIM] == 0.0f && out[5 * DIM + 1] == 0.0f);
    rc = shard_store_get_vectors(st, ids, 3, out, NULL);
    CR_CHECK(rc == CR_OK);

    /* reopen keeps everything */
    shard_store_close(&st);
    path_of(dir, sizeof dir, "iter");
    rc = shard_store_open(&st, dir, NULL, NULL);
    CR_CHECK(rc == CR_OK);
    if (rc == CR_OK) {
        shard_store_item it;
        float got[DIM];
        uint64_t live = 0;
        int64_t next = 0;
        memset(&acc, 0, sizeof acc);
        CR_CHECK(shard_store_iterate(st, 0, SHARD_STORE_ITER_DEAD, iter_cb, &acc) == CR_OK);
        CR_CHECK(acc.n == 41 && acc.bad == 0);
        CR_CHECK(shard_store_count(st, &live) == CR_OK && live == 39);
        CR_CHECK(shard_store_next_id(st, &next) == CR_OK && next == 41);
        CR_CHECK(shard_store_get(st, "it-30", 5, &it, got, NULL, 0) == CR_OK);
        CR_CHECK(it.id == 40 && it.version == 2 && vec_equal(got, v[30], DIM));
        CR_CHECK(shard_store_get(st, "it-5", 4, &it, NULL, NULL, 0) == CR_NOTFOUND);
        /* new ids continue after the old high-water mark */
        ops[0] = upsert_op("fresh", 1, v[0], DIM, NULL);
        CR_CHECK(shard_store_write(st, ops, 1, r) == CR_OK && r[0].new_id == 41);
        shard_store_close(&st);
    }
}

/* ---- map growth from a tiny map, with concurrent readers ------------------------------ */

typedef struct reader_arg {
    shard_store *st;
    int dim;
    atomic_int *stop;
    long reads;
    long bad;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    float *out = malloc(sizeof(float) * (size_t)a->dim * 8);
    float *want = malloc(sizeof(float) * (size_t)a->dim);
    uint64_t rnd = 12345;
    while (out && want && !atomic_load(a->stop)) {
        int64_t next = 0, ids[8];
        if (shard_store_next_id(a->st, &next) != CR_OK) {
            a->bad++;
            continue;
        }
        if (next == 0)
            continue;
        for (int i = 0; i < 8; i++) {
            rnd = mix(rnd);
            ids[i] = (int64_t)(rnd % (uint64_t)next);
        }
        if (shard_store_get_vectors(a->st, ids, 8, out, NULL) != CR_OK) {
            a->bad++;
            continue;
        }
        for (int i = 0; i < 8; i++) {
            fill_vec(want, a->dim, (uint64_t)ids[i]);
            if (!vec_equal(out + (size_t)i * a->dim, want, a->dim))
                a->bad++;
        }
        a->reads++;
    }
    free(out);
    free(want);
    return NULL;
}

static void test_map_growth(void)
{
    enum { GDIM = 512, N = 3000, BATCH = 50, READERS = 2 };
    shard_store *st = make_store("grow", GDIM, 64 * 1024);
    shard_store_stats s0, s1;
    shard_store_op ops[BATCH];
    shard_store_result r[BATCH];
    char names[BATCH][24];
    float *vecs = malloc(sizeof(float) * GDIM * BATCH);
    atomic_int stop = 0;
    pthread_t th[READERS];
    reader_arg ra[READERS];
    int ok = 1;

    if (!st || !vecs) {
        free(vecs);
        shard_store_close(&st);
        return;
    }
    CR_CHECK(shard_store_stats_get(st, &s0) == CR_OK);
    CR_CHECK(s0.map_size == 64 * 1024);
    for (int t = 0; t < READERS; t++) {
        ra[t] = (reader_arg){st, GDIM, &stop, 0, 0};
        pthread_create(&th[t], NULL, reader_main, &ra[t]);
    }
    for (int b = 0; b < N / BATCH && ok; b++) {
        for (int j = 0; j < BATCH; j++) {
            int id = b * BATCH + j;
            snprintf(names[j], sizeof names[j], "g-%d", id);
            fill_vec(vecs + (size_t)j * GDIM, GDIM, (uint64_t)id);
            ops[j] = upsert_op(names[j], 1, vecs + (size_t)j * GDIM, GDIM, "attrs");
        }
        cr_err rc = shard_store_write(st, ops, BATCH, r);
        CR_CHECK_MSG(rc == CR_OK, "batch %d: %s", b, cr_error_message());
        ok = rc == CR_OK && r[BATCH - 1].new_id == (int64_t)(b * BATCH + BATCH - 1);
    }
    atomic_store(&stop, 1);
    for (int t = 0; t < READERS; t++) {
        pthread_join(th[t], NULL);
        CR_CHECK_MSG(ra[t].bad == 0, "reader %d: %ld bad of %ld", t, ra[t].bad, ra[t].reads);
    }
    CR_CHECK(ok);
    CR_CHECK(shard_store_stats_get(st, &s1) == CR_OK);
    CR_CHECK(s1.live == N && s1.map_size >= (size_t)N * GDIM * 4);
    printf("map growth: 64 KiB -> %zu KiB for %d items of %d-d; readers did %ld + %ld reads\n",
           s1.map_size / 1024, N, GDIM, ra[0].reads, ra[1].reads);
    {
        /* a single batch far larger than the map also goes through */
        enum { BIG = 600 };
        float *bv = malloc(sizeof(float) * GDIM * BIG);
        shard_store_op *bo = malloc(sizeof *bo * BIG);
        shard_store_result *br = malloc(sizeof *br * BIG);
        char(*bn)[24] = malloc(sizeof *bn * BIG);
        if (bv && bo && br && bn) {
            for (int j = 0; j < BIG; j++) {
                snprintf(bn[j], sizeof bn[j], "big-%d", j);
                fill_vec(bv + (size_t)j * GDIM, GDIM, (uint64_t)(N + j));
                bo[j] = upsert_op(bn[j], 1, bv + (size_t)j * GDIM, GDIM, NULL);
            }
            CR_CHECK(shard_store_write(st, bo, BIG, br) == CR_OK &&
                     br[BIG - 1].new_id == N + BIG - 1);
        }
        free(bv);
        free(bo);
        free(br);
        free(bn);
    }
    shard_store_close(&st);
    {
        /* reopen with the default (stored) map size and check a few vectors */
        char dir[256];
        float got[GDIM];
        shard_store_item it;
        path_of(dir, sizeof dir, "grow");
        CR_CHECK(shard_store_open(&st, dir, NULL, NULL) == CR_OK);
        if (st) {
            CR_CHECK(shard_store_get(st, "g-2999", 6, &it, got, NULL, 0) == CR_OK);
            fill_vec(vecs, GDIM, 2999);
            CR_CHECK(it.id == 2999 && vec_equal(got, vecs, GDIM));
            shard_store_close(&st);
        }
    }
    free(vecs);
}

/* ---- crash durability ----------------------------------------------------------------- */

enum { CRASH_BATCH = 8, CRASH_DIM = 64 };

static void crash_child(const char *dir, int wfd)
{
    shard_store *st = NULL;
    shard_store_op ops[CRASH_BATCH];
    shard_store_result r[CRASH_BATCH];
    char names[CRASH_BATCH][24];
    float v[CRASH_BATCH][CRASH_DIM];
    if (shard_store_open(&st, dir, NULL, NULL) != CR_OK)
        _exit(2);
    for (uint32_t k = 0; k < 1000000; k++) {
        for (int j = 0; j < CRASH_BATCH; j++) {
            snprintf(names[j], sizeof names[j], "c%u-%d", k, j);
            fill_vec(v[j], CRASH_DIM, (uint64_t)k * CRASH_BATCH + (uint64_t)j);
            ops[j] = upsert_op(names[j], 1, v[j], CRASH_DIM, NULL);
        }
        if (shard_store_write(st, ops, CRASH_BATCH, r) != CR_OK)
            _exit(3);
        if (write(wfd, &k, sizeof k) != (ssize_t)sizeof k)
            _exit(4);
    }
    _exit(0);
}

/* 1: whole batch present and exact, 0: absent entirely, -1: partial or wrong */
static int batch_state(shard_store *st, uint32_t k)
{
    int present = 0;
    for (int j = 0; j < CRASH_BATCH; j++) {
        char name[24];
        float got[CRASH_DIM], want[CRASH_DIM];
        shard_store_item it;
        snprintf(name, sizeof name, "c%u-%d", k, j);
        cr_err rc = shard_store_get(st, name, strlen(name), &it, got, NULL, 0);
        if (rc == CR_OK) {
            fill_vec(want, CRASH_DIM, (uint64_t)k * CRASH_BATCH + (uint64_t)j);
            if (!vec_equal(got, want, CRASH_DIM))
                return -1;
            present++;
        } else if (rc != CR_NOTFOUND) {
            return -1;
        }
    }
    return present == CRASH_BATCH ? 1 : present == 0 ? 0 : -1;
}

static void test_crash(void)
{
    char dir[256];
    shard_store *st = make_store("crash", CRASH_DIM, 256 * 1024);
    int fds[2];
    pid_t pid;
    uint32_t k, acked = 0, max_acked = 0;
    int status = 0, missing = 0;
    uint64_t live = 0;

    if (!st)
        return;
    shard_store_close(&st); /* no LMDB handle may cross fork() */
    path_of(dir, sizeof dir, "crash");
    if (pipe(fds) != 0) {
        CR_CHECK(!"pipe");
        return;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        crash_child(dir, fds[1]);
    }
    close(fds[1]);
    CR_CHECK(pid > 0);
    if (pid <= 0)
        return;
    /* let it ack some batches, kill it in the middle of its work */
    while (acked < 40 && read(fds[0], &k, sizeof k) == (ssize_t)sizeof k) {
        acked++;
        max_acked = k;
    }
    {
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CR_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    while (read(fds[0], &k, sizeof k) == (ssize_t)sizeof k) { /* acks written before death */
        acked++;
        max_acked = k;
    }
    close(fds[0]);
    CR_CHECK(acked == max_acked + 1);

    CR_CHECK(shard_store_open(&st, dir, NULL, NULL) == CR_OK);
    if (!st)
        return;
    for (uint32_t b = 0; b <= max_acked; b++)
        if (batch_state(st, b) != 1)
            missing++;
    CR_CHECK_MSG(missing == 0, "%d acked batches missing or partial", missing);
    /* the batch in flight at the kill is all there or not at all */
    {
        int s = batch_state(st, max_acked + 1);
        CR_CHECK(s == 0 || s == 1);
        CR_CHECK(batch_state(st, max_acked + 3) == 0);
        CR_CHECK(shard_store_count(st, &live) == CR_OK);
        CR_CHECK(live == (uint64_t)(max_acked + 1 + (s == 1)) * CRASH_BATCH);
        printf("crash: %u batches acked before SIGKILL, all present; in-flight batch %s\n", acked,
               s == 1 ? "committed" : "absent");
    }
    shard_store_close(&st);
}

/* ---- bytes per item ------------------------------------------------------------------- */

enum { MEASURE_BATCH_MAX = 1000 };

static void measure(int n_items, int batch, const char *name)
{
    enum { MDIM = 512, ATTRS = 64 };
    shard_store *st = make_store(name, MDIM, 0);
    float *vecs = malloc(sizeof(float) * MDIM * MEASURE_BATCH_MAX);
    static shard_store_op ops[MEASURE_BATCH_MAX];
    static shard_store_result r[MEASURE_BATCH_MAX];
    static char names[MEASURE_BATCH_MAX][16];
    char attrs[ATTRS];
    shard_store_stats s;
    struct timespec t0, t1;
    double secs, n = n_items;

    if (!st || !vecs) {
        free(vecs);
        shard_store_close(&st);
        return;
    }
    memset(attrs, 'a', sizeof attrs);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int b = 0; b * batch < n_items; b++) {
        int cnt = n_items - b * batch < batch ? n_items - b * batch : batch;
        for (int j = 0; j < cnt; j++) {
            int id = b * batch + j;
            snprintf(names[j], sizeof names[j], "sku-%08d", id); /* 12 bytes */
            fill_vec(vecs + (size_t)j * MDIM, MDIM, (uint64_t)id);
            ops[j] = upsert_op(names[j], 1, vecs + (size_t)j * MDIM, MDIM, NULL);
            ops[j].attrs = attrs;
            ops[j].attrs_len = ATTRS;
        }
        if (shard_store_write(st, ops, (size_t)cnt, r) != CR_OK) {
            CR_CHECK_MSG(0, "measure write: %s", cr_error_message());
            break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CR_CHECK(shard_store_stats_get(st, &s) == CR_OK);
    CR_CHECK(s.live == (uint64_t)n_items);
    printf("bytes/item, %d items of %d-d (12-byte ids, %d-byte attrs, batches of %d, "
           "block %u vectors, page %zu):\n",
           n_items, MDIM, ATTRS, batch, s.block_items, s.page_size);
    printf("  vectors DB   %8.1f B/item  (%.3f x %d raw)\n", s.vector_bytes / n,
           s.vector_bytes / n / (MDIM * 4.0), MDIM * 4);
    printf("  records      %8.1f B/item  (items + ext2int + meta)\n", s.record_bytes / n);
    printf("  data.mdb     %8.1f B/item  (%.3f x raw; used pages %.1f B/item)\n", s.file_bytes / n,
           s.file_bytes / n / (MDIM * 4.0), s.used_bytes / n);
    printf("  write        %.0f items/s in synced batches of %d\n", n / secs, batch);
    CR_CHECK(s.vector_bytes / n <= 1.15 * MDIM * 4);
    CR_CHECK(s.file_bytes / n <= 1.15 * MDIM * 4 + 400);
    free(vecs);
    shard_store_close(&st);
}

/* ---- scans by external id and by version (replica repair) ------------------------------ */

typedef struct scan_rec {
    char id[32];
    uint64_t version;
    int deleted;
    int has_vector;
    float v0;
} scan_rec;

typedef struct scan_acc {
    scan_rec recs[64];
    size_t n, cap; /* cap: stop ("page full") after this many */
} scan_acc;

static cr_err scan_collect(const shard_store_view *v, void *ctx)
{
    scan_acc *a = ctx;
    scan_rec *r;
    if (a->n >= a->cap || a->n >= 64)
        return CR_NOTFOUND;
    r = &a->recs[a->n++];
    snprintf(r->id, sizeof r->id, "%.*s", (int)v->ext_len, v->ext_id);
    r->version = v->version;
    r->deleted = v->deleted;
    r->has_vector = v->vector != NULL;
    r->v0 = v->vector ? v->vector[2] : 0;
    return CR_OK;
}

/* Scans the whole order in pages of `page`; returns the number of ids collected. */
static size_t scan_all(shard_store *st, shard_store_order order, uint64_t min_v, uint64_t max_v,
                       int with_data, size_t page, scan_acc *out)
{
    shard_store_pos pos;
    int at_end = 0, calls = 0;
    memset(&pos, 0, sizeof pos);
    out->n = 0;
    while (!at_end && calls++ < 100) {
        cr_err rc;
        out->cap = out->n + page;
        rc = shard_store_scan(st, order, min_v, max_v, with_data, &pos, scan_collect, out, &at_end);
        CR_CHECK_MSG(rc == CR_OK || rc == CR_NOTFOUND, "scan: %s", cr_error_message());
        if (rc < 0)
            break;
    }
    return out->n;
}

static const scan_rec *find_rec(const scan_acc *a, const char *id)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->recs[i].id, id) == 0)
            return &a->recs[i];
    return NULL;
}

/* Writes: b(10) a(20) c(30); then a replaced (40), c deleted (50), z deleted though never
 * stored (60), b deleted (70) and stored again (80). */
static void scan_fill(shard_store *st)
{
    float va[DIM], vb[DIM], vc[DIM];
    shard_store_op ops[8];
    shard_store_result r[8];
    fill_vec(va, DIM, 11);
    fill_vec(vb, DIM, 12);
    fill_vec(vc, DIM, 13);
    ops[0] = upsert_op("b", 10, vb, DIM, "x");
    ops[1] = upsert_op("a", 20, va, DIM, NULL);
    ops[2] = upsert_op("c", 30, vc, DIM, NULL);
    CR_CHECK(shard_store_write(st, ops, 3, r) == CR_OK);
    ops[0] = upsert_op("a", 40, vb, DIM, NULL);
    ops[1] = delete_op("c", 50);
    ops[2] = delete_op("z", 60);
    ops[3] = delete_op("b", 70);
    ops[4] = upsert_op("b", 80, vc, DIM, "y");
    ops[5] = upsert_op("a", 35, va, DIM, NULL); /* stale: ignored, index unchanged */
    CR_CHECK(shard_store_write(st, ops, 6, r) == CR_OK);
    CR_CHECK(r[5].status == CR_STALE);
}

static void scan_check_expected(shard_store *st)
{
    static const char *by_ver[] = {"a", "c", "z", "b"};
    static const uint64_t vers[] = {40, 50, 60, 80};
    float vb[DIM], vc[DIM];
    scan_acc acc;
    size_t n;

    fill_vec(vb, DIM, 12);
    fill_vec(vc, DIM, 13);
    /* by external id: every id once, with its current state; pages of 1 resume exactly */
    n = scan_all(st, SHARD_STORE_BY_EXT_ID, 0, 0, 1, 1, &acc);
    CR_CHECK_MSG(n == 4, "%zu ids by ext id", n);
    if (n == 4) {
        CR_CHECK(strcmp(acc.recs[0].id, "a") == 0 && acc.recs[0].version == 40);
        CR_CHECK(!acc.recs[0].deleted && acc.recs[0].has_vector && acc.recs[0].v0 == vb[2]);
        CR_CHECK(strcmp(acc.recs[1].id, "b") == 0 && acc.recs[1].version == 80);
        CR_CHECK(!acc.recs[1].deleted && acc.recs[1].v0 == vc[2]);
        CR_CHECK(strcmp(acc.recs[2].id, "c") == 0 && acc.recs[2].version == 50);
        CR_CHECK(acc.recs[2].deleted && !acc.recs[2].has_vector);
        CR_CHECK(strcmp(acc.recs[3].id, "z") == 0 && acc.recs[3].version == 60);
        CR_CHECK(acc.recs[3].deleted);
    }
    /* keys only: no vectors */
    n = scan_all(st, SHARD_STORE_BY_EXT_ID, 0, 0, 0, 64, &acc);
    CR_CHECK(n == 4 && !acc.recs[0].has_vector && !acc.recs[1].has_vector);
    /* version bounds in external-id order are filters */
    n = scan_all(st, SHARD_STORE_BY_EXT_ID, 45, 70, 0, 64, &acc);
    CR_CHECK(n == 2 && find_rec(&acc, "c") && find_rec(&acc, "z"));
    /* by version: (version, id) order, a seek at min_version, an end at max_version */
    n = scan_all(st, SHARD_STORE_BY_VERSION, 0, 0, 1, 1, &acc);
    CR_CHECK_MSG(n == 4, "%zu ids by version", n);
    for (size_t i = 0; i < 4 && i < n; i++)
        CR_CHECK_MSG(strcmp(acc.recs[i].id, by_ver[i]) == 0 && acc.recs[i].version == vers[i],
                     "by version [%zu]: %s %llu", i, acc.recs[i].id,
                     (unsigned long long)acc.recs[i].version);
    n = scan_all(st, SHARD_STORE_BY_VERSION, 51, 0, 1, 2, &acc);
    CR_CHECK(n == 2 && strcmp(acc.recs[0].id, "z") == 0 && strcmp(acc.recs[1].id, "b") == 0);
    n = scan_all(st, SHARD_STORE_BY_VERSION, 41, 60, 0, 64, &acc);
    CR_CHECK(n == 2 && strcmp(acc.recs[0].id, "c") == 0 && strcmp(acc.recs[1].id, "z") == 0);
    n = scan_all(st, SHARD_STORE_BY_VERSION, 81, 0, 0, 64, &acc);
    CR_CHECK(n == 0);
}

static void test_scan_orders(void)
{
    shard_store *st = make_store("scan", DIM, 0);
    shard_store_pos pos;
    scan_acc acc;
    int at_end = 0;
    char dir[256];
    if (!st)
        return;
    scan_fill(st);
    scan_check_expected(st);
    memset(&pos, 0, sizeof pos);
    acc.n = 0;
    acc.cap = 64;
    CR_CHECK(shard_store_scan(st, (shard_store_order)0, 0, 0, 0, &pos, scan_collect, &acc,
                              &at_end) == CR_ERR_INVALID);
    shard_store_close(&st);
    /* the index is durable: the same after a reopen */
    path_of(dir, sizeof dir, "scan");
    CR_CHECK(shard_store_open(&st, dir, NULL, NULL) == CR_OK);
    if (st)
        scan_check_expected(st);
    shard_store_close(&st);
}

/* A shard written before the by-version index (schema 1: no `byver` database) still opens:
 * the index is built at open, the shard becomes schema 2, and scans see everything. */
static void test_scan_index_upgrade(void)
{
    shard_store *st = make_store("upgrade", DIM, 0);
    char dir[256];
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi meta, byver;
    uint32_t schema = 1;
    MDB_val k = {6, "schema"}, d = {sizeof schema, &schema};
    int rc;
    if (!st)
        return;
    scan_fill(st);
    shard_store_close(&st);
    /* Turn it into what the previous release wrote: drop `byver`, schema 1. */
    path_of(dir, sizeof dir, "upgrade");
    rc = mdb_env_create(&env);
    if (!rc)
        rc = mdb_env_set_maxdbs(env, 8);
    if (!rc)
        rc = mdb_env_open(env, dir, 0, 0644);
    if (!rc)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (!rc)
        rc = mdb_dbi_open(txn, "byver", 0, &byver);
    if (!rc)
        rc = mdb_drop(txn, byver, 1);
    if (!rc)
        rc = mdb_dbi_open(txn, "meta", 0, &meta);
    if (!rc)
        rc = mdb_put(txn, meta, &k, &d, 0);
    if (!rc) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    CR_CHECK_MSG(rc == 0, "making a schema-1 shard: %s", mdb_strerror(rc));
    rc = shard_store_open(&st, dir, NULL, NULL);
    CR_CHECK_MSG(rc == CR_OK, "open a schema-1 shard: %s", cr_error_message());
    if (st) {
        float v[DIM];
        shard_store_op op;
        shard_store_result r;
        scan_check_expected(st);
        fill_vec(v, DIM, 14);
        op = upsert_op("c", 90, v, DIM, NULL); /* the index follows writes after the build */
        CR_CHECK(shard_store_write(st, &op, 1, &r) == CR_OK && r.status == CR_OK);
        {
            scan_acc acc;
            size_t n = scan_all(st, SHARD_STORE_BY_VERSION, 85, 0, 0, 64, &acc);
            CR_CHECK(n == 1 && strcmp(acc.recs[0].id, "c") == 0 && acc.recs[0].version == 90);
            n = scan_all(st, SHARD_STORE_BY_VERSION, 0, 0, 0, 64, &acc);
            CR_CHECK(n == 4);
        }
        shard_store_close(&st);
    }
    /* ...and it is now schema 2: reopening does not rebuild (nothing to check but success) */
    CR_CHECK(shard_store_open(&st, dir, NULL, NULL) == CR_OK);
    shard_store_close(&st);
}

/* ---- the attribute format (store.h ATTRIBUTE FORMAT) ----------------------------------- */

static int value_eq(const shard_value *a, const shard_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SHARD_VALUE_STRING: return strcmp(a->u.s, b->u.s) == 0;
    case SHARD_VALUE_INT: return a->u.i == b->u.i;
    case SHARD_VALUE_DOUBLE: return memcmp(&a->u.d, &b->u.d, sizeof a->u.d) == 0;
    case SHARD_VALUE_BOOL: return a->u.b == b->u.b;
    case SHARD_VALUE_STRINGS:
        if (a->u.strings.n != b->u.strings.n)
            return 0;
        for (size_t i = 0; i < a->u.strings.n; i++)
            if (strcmp(a->u.strings.v[i], b->u.strings.v[i]) != 0)
                return 0;
        return 1;
    default: return 0;
    }
}

/* Encodes, decodes and compares; returns the blob (caller frees) through *blob_out. */
static int codec_roundtrip(const shard_attr *a, size_t n, uint8_t **blob_out, size_t *len_out)
{
    uint8_t *blob = NULL;
    size_t len = 0, m = 0;
    shard_attr *back = NULL;
    int ok = 1;
    if (shard_store_attrs_encode(a, n, &blob, &len) != CR_OK)
        return 0;
    if (shard_store_attrs_decode(blob, len, &back, &m) != CR_OK || m != n)
        ok = 0;
    for (size_t k = 0; ok && k < n; k++)
        ok = strcmp(a[k].name, back[k].name) == 0 && value_eq(&a[k].value, &back[k].value);
    free(back);
    if (blob_out) {
        *blob_out = blob;
        *len_out = len;
    } else {
        free(blob);
    }
    return ok;
}

static void test_attr_codec(void)
{
    static const char *const list[] = {"a", "", "ünïcode ✓", "last"};
    char name128[129], name129[130];
    shard_attr all[] = {
        {"s", {.type = SHARD_VALUE_STRING, .u.s = "red"}},
        {"empty", {.type = SHARD_VALUE_STRING, .u.s = ""}},
        {"imin", {.type = SHARD_VALUE_INT, .u.i = INT64_MIN}},
        {"imax", {.type = SHARD_VALUE_INT, .u.i = INT64_MAX}},
        {"d", {.type = SHARD_VALUE_DOUBLE, .u.d = -1234.5e-300}},
        {"negzero", {.type = SHARD_VALUE_DOUBLE, .u.d = -0.0}},
        {"t", {.type = SHARD_VALUE_BOOL, .u.b = 1}},
        {"f", {.type = SHARD_VALUE_BOOL, .u.b = 0}},
        {"tags", {.type = SHARD_VALUE_STRINGS, .u.strings = {list, 4}}},
        {"none", {.type = SHARD_VALUE_STRINGS, .u.strings = {NULL, 0}}},
        {"s", {.type = SHARD_VALUE_STRING, .u.s = "duplicate names are kept"}},
    };
    size_t n_all = sizeof all / sizeof all[0];
    uint8_t *blob = NULL, *bad;
    size_t len = 0, m = 0;
    shard_attr *out = NULL;
    int crashes_ok = 1;

    /* every type, in order, duplicates kept; the first byte is the version */
    CR_CHECK(codec_roundtrip(all, n_all, &blob, &len));
    CR_CHECK(len > 5 && blob[0] == SHARD_STORE_ATTRS_V2);
    CR_CHECK(blob[1] == n_all && blob[2] == 0 && blob[3] == 0 && blob[4] == 0);
    CR_CHECK(blob[5] == SHARD_VALUE_STRING && blob[6] == 1 && blob[7] == 0 && blob[8] == 's');

    /* none: the empty blob both ways */
    uint8_t *eb = (uint8_t *)"x";
    size_t el = 1;
    CR_CHECK(shard_store_attrs_encode(NULL, 0, &eb, &el) == CR_OK && eb == NULL && el == 0);
    CR_CHECK(shard_store_attrs_decode(NULL, 0, &out, &m) == CR_OK && out == NULL && m == 0);

    /* every truncation is refused with a clear error, nothing allocated */
    for (size_t cut = 1; cut < len; cut++) {
        out = (shard_attr *)1;
        if (shard_store_attrs_decode(blob, cut, &out, &m) != CR_ERR_STORE || out != NULL) {
            CR_CHECK_MSG(0, "a blob cut at %zu of %zu bytes was accepted", cut, len);
            break;
        }
    }
    CR_CHECK(strstr(cr_error_message(), "corrupt") != NULL);
    /* corruption: any byte set to any value decodes or is refused, never crashes */
    bad = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        for (int v = 0; v < 256; v += 7) {
            cr_err rc;
            memcpy(bad, blob, len);
            bad[i] = (uint8_t)v;
            rc = shard_store_attrs_decode(bad, len, &out, &m);
            crashes_ok &= rc == CR_OK || rc == CR_ERR_STORE;
            free(out);
        }
    CR_CHECK(crashes_ok);
    memcpy(bad, blob, len);
    bad[len] = 0;
    CR_CHECK(shard_store_attrs_decode(bad, len + 1, &out, &m) == CR_ERR_STORE);
    CR_CHECK(strstr(cr_error_message(), "trailing") != NULL);
    memcpy(bad, blob, len);
    bad[1] = bad[2] = bad[3] = bad[4] = 0xff; /* 4 G attributes: refused before allocating */
    CR_CHECK(shard_store_attrs_decode(bad, len, &out, &m) == CR_ERR_STORE);
    bad[0] = 0x7f;
    CR_CHECK(shard_store_attrs_decode(bad, len, &out, &m) == CR_ERR_STORE);
    CR_CHECK(strstr(cr_error_message(), "unknown format 0x7f") != NULL);
    memcpy(bad, blob, len);
    bad[len - 1] = 0xff; /* last string's last byte: not UTF-8 */
    CR_CHECK(shard_store_attrs_decode(bad, len, &out, &m) == CR_ERR_STORE);
    free(bad);
    free(blob);

    /* maximal sizes: a 128-byte name, a string filling the store's limit, a long list */
    memset(name128, 'n', 128);
    name128[128] = '\0';
    memset(name129, 'n', 129);
    name129[129] = '\0';
    {
        size_t big_len = SHARD_STORE_ATTRS_MAX - 5 - 3 - 128 - 4;
        char *big = malloc(big_len + 1);
        const char **many = malloc(100000 * sizeof *many);
        shard_attr a = {name128, {.type = SHARD_VALUE_STRING, .u.s = big}};
        memset(big, 'b', big_len);
        big[big_len] = '\0';
        CR_CHECK(codec_roundtrip(&a, 1, &blob, &len));
        CR_CHECK_MSG(len == SHARD_STORE_ATTRS_MAX, "%zu bytes", len);
        free(blob);
        for (int i = 0; i < 100000; i++)
            many[i] = i % 2 ? "odd" : "";
        a.value.type = SHARD_VALUE_STRINGS;
        a.value.u.strings.v = many;
        a.value.u.strings.n = 100000;
        CR_CHECK(codec_roundtrip(&a, 1, NULL, NULL));
        free(many);
        free(big);
    }
    /* what the engine never accepts is never written */
    {
        shard_attr bads[] = {
            {name129, {.type = SHARD_VALUE_INT, .u.i = 1}},
            {"", {.type = SHARD_VALUE_INT, .u.i = 1}},
            {"nan", {.type = SHARD_VALUE_DOUBLE, .u.d = 0.0 / 0.0}},
            {"inf", {.type = SHARD_VALUE_DOUBLE, .u.d = 1.0 / 0.0}},
            {"utf8", {.type = SHARD_VALUE_STRING, .u.s = "\xc3"}},
            {"bool", {.type = SHARD_VALUE_BOOL, .u.b = 2}},
            {"unset", {.type = SHARD_VALUE_NONE}},
        };
        for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
            blob = (uint8_t *)1;
            CR_CHECK_MSG(shard_store_attrs_encode(&bads[i], 1, &blob, &len) == CR_ERR_INVALID &&
                             blob == NULL,
                         "bad attribute %zu encoded", i);
        }
    }
    /* version 1: a packed protobuf Item holding only the attributes decodes the same */
    {
        Cirrus__V1__Item it = CIRRUS__V1__ITEM__INIT;
        Cirrus__V1__Attribute pa[3], *pp[3];
        Cirrus__V1__AttrValue pv[3];
        Cirrus__V1__StringList sl = CIRRUS__V1__STRING_LIST__INIT;
        char *tags[] = {"x", "y"};
        for (int k = 0; k < 3; k++) {
            cirrus__v1__attribute__init(&pa[k]);
            cirrus__v1__attr_value__init(&pv[k]);
            pa[k].value = &pv[k];
            pp[k] = &pa[k];
        }
        pa[0].name = "color";
        pv[0].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        pv[0].s = "red";
        pa[1].name = "price";
        pv[1].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
        pv[1].d = 9.5;
        sl.values = tags;
        sl.n_values = 2;
        pa[2].name = "tags";
        pv[2].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
        pv[2].strings = &sl;
        it.attributes = pp;
        it.n_attributes = 3;
        len = cirrus__v1__item__get_packed_size(&it);
        blob = malloc(len);
        cirrus__v1__item__pack(&it, blob);
        CR_CHECK(blob[0] == SHARD_STORE_ATTRS_V1_TAG);
        CR_CHECK(shard_store_attrs_decode(blob, len, &out, &m) == CR_OK && m == 3);
        if (m == 3) {
            CR_CHECK(strcmp(out[0].name, "color") == 0 && out[0].value.type == SHARD_VALUE_STRING &&
                     strcmp(out[0].value.u.s, "red") == 0);
            CR_CHECK(out[1].value.type == SHARD_VALUE_DOUBLE && out[1].value.u.d == 9.5);
            CR_CHECK(out[2].value.type == SHARD_VALUE_STRINGS && out[2].value.u.strings.n == 2 &&
                     strcmp(out[2].value.u.strings.v[1], "y") == 0);
        }
        free(out);
        out = NULL;
        /* protobuf has no end marker: a cut between attributes is a shorter valid Item, so
         * version 1 can only promise "decoded or refused, never a crash" */
        for (size_t cut = 1; cut < len; cut++) {
            cr_err rc = shard_store_attrs_decode(blob, cut, &out, &m);
            crashes_ok &= rc == CR_OK || (rc == CR_ERR_STORE && out == NULL);
            free(out);
            out = NULL;
        }
        CR_CHECK_MSG(crashes_ok, "a cut version-1 blob gave a bad answer");
        free(blob);
    }
}

int main(int argc, char **argv)
{
    int measure_n = 20000, batch = 100;
    int only_measure = 0;

    CR_TEST_BEGIN();
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "--measure") == 0) {
        char *end = NULL, *end2 = NULL;
        long x = strtol(argv[2], &end, 10);
        long y = argc == 4 ? strtol(argv[3], &end2, 10) : 100;
        measure_n = (int)x;
        batch = (int)y;
        only_measure = 1;
        if (!end || *end || x < 1 || x > 100000000 || (argc == 4 && (!end2 || *end2)) || y < 1 ||
            y > MEASURE_BATCH_MAX) {
            fprintf(stderr, "usage: %s [--measure N [BATCH]]\n", argv[0]);
            return 2;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--measure N [BATCH]]\n", argv[0]);
        return 2;
    }
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (!only_measure) {
        test_create_open();
        test_roundtrip_versions();
        test_images();
        test_invalid();
        test_atomic();
        test_iterate_vectors_reopen();
        test_map_growth();
        test_crash();
        test_scan_orders();
        test_scan_index_upgrade();
        test_attr_codec();
    }
    measure(measure_n, batch, "measure");
    nftw(base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return CR_TEST_END();
}
