/* The composed query cache: hits return the stored vector, each key field misses on its own,
 * the bounds evict least recently used first, a new reference vector is a new key. */
#include <string.h>

#include "common/test.h"
#include "coordinator/qcache.h"

static void key_of(coord_qkey *k, int method, const char *caption, const float *ref, size_t n)
{
    coord_qkey_init(k);
    coord_qkey_add(k, &method, sizeof method);
    coord_qkey_add(k, caption, strlen(caption));
    coord_qkey_add(k, ref, n * sizeof *ref);
}

static int has(coord_qcache *c, int method, const char *caption, const float *ref, float *v0)
{
    coord_qkey k;
    const float *v = NULL;
    size_t d = 0;
    key_of(&k, method, caption, ref, 4);
    int hit = coord_qcache_get(c, &k, &v, &d);
    if (hit && v0)
        *v0 = v[0];
    coord_qkey_free(&k);
    return hit;
}

static void put(coord_qcache *c, int method, const char *caption, const float *ref, float v0)
{
    coord_qkey k;
    float v[4] = {v0, 1, 2, 3};
    key_of(&k, method, caption, ref, 4);
    coord_qcache_put(c, &k, v, 4);
    coord_qkey_free(&k);
}

int main(void)
{
    coord_qcache_counters ctr = {0};
    coord_qcache *c = NULL;
    float r1[4] = {1, 0, 0, 0}, r2[4] = {1, 0, 0, 1e-7f}, got = 0;
    CR_TEST_BEGIN();

    CR_CHECK(coord_qcache_open(&c, 3, 1 << 20, &ctr) == CR_OK);
    CR_CHECK(!has(c, 1, "red", r1, NULL));
    put(c, 1, "red", r1, 10);
    CR_CHECK(has(c, 1, "red", r1, &got) && got == 10);
    CR_CHECK(atomic_load(&ctr.hits) == 1 && atomic_load(&ctr.misses) == 1);
    /* every field is part of the key */
    CR_CHECK(!has(c, 2, "red", r1, NULL));
    CR_CHECK(!has(c, 1, "blue", r1, NULL));
    CR_CHECK(!has(c, 1, "red", r2, NULL)); /* the item's updated vector: not the old entry */
    /* length prefixes: "re"+"d..." is not "red"+"..." */
    CR_CHECK(!has(c, 1, "re", r1, NULL));

    /* LRU: touch "red", add 3 more -> the two untouched older ones go first */
    put(c, 1, "a", r1, 1);
    put(c, 1, "b", r1, 2);
    CR_CHECK(has(c, 1, "red", r1, NULL)); /* red is now the most recent */
    put(c, 1, "c", r1, 3);                /* evicts "a" */
    CR_CHECK(!has(c, 1, "a", r1, NULL));
    CR_CHECK(has(c, 1, "b", r1, NULL) && has(c, 1, "red", r1, NULL) && has(c, 1, "c", r1, NULL));
    CR_CHECK(atomic_load(&ctr.evictions) == 1 && atomic_load(&ctr.entries) == 3);
    /* a replaced key keeps one entry with the newer vector */
    put(c, 1, "c", r1, 33);
    CR_CHECK(has(c, 1, "c", r1, &got) && got == 33 && atomic_load(&ctr.entries) == 3);
    coord_qcache_clear(c);
    CR_CHECK(atomic_load(&ctr.entries) == 0 && atomic_load(&ctr.bytes) == 0);
    CR_CHECK(!has(c, 1, "c", r1, NULL));
    coord_qcache_close(&c);
    CR_CHECK(c == NULL);

    /* the byte bound: room for about two entries */
    memset(&ctr, 0, sizeof ctr);
    CR_CHECK(coord_qcache_open(&c, 100, 300, &ctr) == CR_OK);
    put(c, 1, "x", r1, 1);
    put(c, 1, "y", r1, 2);
    put(c, 1, "z", r1, 3);
    CR_CHECK(atomic_load(&ctr.bytes) <= 300 && atomic_load(&ctr.evictions) >= 1);
    CR_CHECK(!has(c, 1, "x", r1, NULL) && has(c, 1, "z", r1, NULL));
    coord_qcache_close(&c);

    /* disabled: nothing is stored */
    CR_CHECK(coord_qcache_open(&c, 0, 1 << 20, NULL) == CR_OK);
    put(c, 1, "x", r1, 1);
    CR_CHECK(!has(c, 1, "x", r1, NULL));
    coord_qcache_close(&c);

    /* hashed fields: same bytes same key, one byte different another */
    {
        coord_qkey a, b;
        unsigned char img[1000];
        memset(img, 7, sizeof img);
        coord_qkey_init(&a);
        coord_qkey_init(&b);
        coord_qkey_add_hash(&a, img, sizeof img);
        img[500] = 8;
        coord_qkey_add_hash(&b, img, sizeof img);
        CR_CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) != 0);
        coord_qkey_free(&a);
        coord_qkey_free(&b);
    }
    return CR_TEST_END();
}
