/* qcache.h — an LRU cache of composed query vectors, so a repeated composed query skips the
 * encoder.
 *
 *   coord_qcache *c; rc = coord_qcache_open(&c, max_entries, max_bytes);
 *   coord_qkey k; coord_qkey_init(&k); coord_qkey_add(&k, caption, len); ...
 *   if (coord_qcache_get(c, &k, &vec, &dim)) ... hit (vec borrowed until the next put)
 *   else { compose; coord_qcache_put(c, &k, vec, dim); }
 *   coord_qkey_free(&k); coord_qcache_close(&c);
 *
 * A key is the bytes of everything the composition depends on, compared in full (no hash
 * collision can serve a wrong vector): the method, the captions, the template, the model
 * generation and the reference — for an item id its fetched vector itself, so a new vector
 * stored for the item is a new key and the old entry ages out (never served stale); for an
 * uploaded image a 128-bit hash of its bytes plus their length (the image may be megabytes).
 * Bounded by entries and by bytes (key + vector); the least recently used goes first.
 * Counters (hits, misses, evictions) are atomics in coord_metrics, updated by the caller's
 * pointer. Loop thread only; max_entries 0 = disabled (every get misses, put does nothing).
 */
#ifndef COORD_QCACHE_H
#define COORD_QCACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct coord_qkey {
    uint8_t *p;
    size_t len, cap;
    int failed; /* out of memory while building: never looked up nor stored */
} coord_qkey;

void coord_qkey_init(coord_qkey *k);
/* Appends a length-prefixed field (so "ab"+"c" and "a"+"bc" differ). */
void coord_qkey_add(coord_qkey *k, const void *data, size_t len);
/* Appends a 128-bit hash and the length of data, for large fields. */
void coord_qkey_add_hash(coord_qkey *k, const void *data, size_t len);
void coord_qkey_free(coord_qkey *k);

typedef struct coord_qcache_counters {
    _Atomic uint64_t hits, misses, evictions, entries, bytes;
} coord_qcache_counters;

typedef struct coord_qcache coord_qcache;

/* counters may be NULL; it is borrowed. */
cr_err coord_qcache_open(coord_qcache **out, size_t max_entries, size_t max_bytes,
                         coord_qcache_counters *counters);
void coord_qcache_close(coord_qcache **pp);
/* 1 and the cached vector (borrowed until the next put/clear) on a hit; 0 on a miss. */
int coord_qcache_get(coord_qcache *c, const coord_qkey *k, const float **vec, size_t *dim);
/* Stores a copy; evicts least recently used entries until both bounds hold. An entry larger
 * than max_bytes is not stored. Out of memory is not an error (nothing is stored). */
void coord_qcache_put(coord_qcache *c, const coord_qkey *k, const float *vec, size_t dim);
/* Drops every entry (a cluster map reload: the encoders, so the model, may have changed). */
void coord_qcache_clear(coord_qcache *c);

#endif
