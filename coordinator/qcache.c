#include "coordinator/qcache.h"

#include <stdlib.h>
#include <string.h>

typedef struct qent {
    uint8_t *key;
    size_t klen, dim;
    uint64_t h;
    float *vec;
    struct qent *prev, *next; /* LRU list: head = most recent */
    struct qent *chain;       /* hash bucket */
} qent;

struct coord_qcache {
    size_t max_entries, max_bytes, n, bytes, n_buckets;
    qent **buckets;
    qent *head, *tail;
    coord_qcache_counters *ctr;
};

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void coord_qkey_init(coord_qkey *k)
{
    memset(k, 0, sizeof *k);
}

static void key_put(coord_qkey *k, const void *data, size_t len)
{
    if (k->failed)
        return;
    if (k->len + len > k->cap) {
        size_t cap = 2 * (k->len + len) + 64;
        uint8_t *g = realloc(k->p, cap);
        if (!g) {
            k->failed = 1;
            return;
        }
        k->p = g;
        k->cap = cap;
    }
    if (len)
        memcpy(k->p + k->len, data, len);
    k->len += len;
}

void coord_qkey_add(coord_qkey *k, const void *data, size_t len)
{
    uint64_t n = len;
    key_put(k, &n, sizeof n);
    key_put(k, data, len);
}

void coord_qkey_add_hash(coord_qkey *k, const void *data, size_t len)
{
    /* two FNV-1a passes from different offsets, and the length */
    uint64_t h[3] = {fnv1a(data, len, 0xcbf29ce484222325ULL),
                     fnv1a(data, len, 0x84222325cbf29ce4ULL ^ (uint64_t)len), len};
    key_put(k, h, sizeof h);
}

void coord_qkey_free(coord_qkey *k)
{
    free(k->p);
    memset(k, 0, sizeof *k);
}

static size_t ent_bytes(size_t klen, size_t dim)
{
    return sizeof(qent) + klen + dim * sizeof(float);
}

static void publish(coord_qcache *c)
{
    if (c->ctr) {
        atomic_store(&c->ctr->entries, c->n);
        atomic_store(&c->ctr->bytes, c->bytes);
    }
}

cr_err coord_qcache_open(coord_qcache **out, size_t max_entries, size_t max_bytes,
                         coord_qcache_counters *counters)
{
    coord_qcache *c = calloc(1, sizeof *c);
    if (!c)
        return cr_error_set(CR_ERR_NOMEM, "query cache: out of memory");
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->ctr = counters;
    c->n_buckets = 64;
    while (c->n_buckets < max_entries && c->n_buckets < ((size_t)1 << 20))
        c->n_buckets *= 2;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return cr_error_set(CR_ERR_NOMEM, "query cache: out of memory");
    }
    *out = c;
    return CR_OK;
}

static void lru_unlink(coord_qcache *c, qent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(coord_qcache *c, qent *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void ent_drop(coord_qcache *c, qent *e)
{
    qent **pp = &c->buckets[e->h & (c->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(c, e);
    c->n--;
    c->bytes -= ent_bytes(e->klen, e->dim);
    free(e->key);
    free(e->vec);
    free(e);
}

void coord_qcache_clear(coord_qcache *c)
{
    if (!c)
        return;
    while (c->head)
        ent_drop(c, c->head);
    publish(c);
}

void coord_qcache_close(coord_qcache **pp)
{
    coord_qcache *c = pp ? *pp : NULL;
    if (!c)
        return;
    coord_qcache_clear(c);
    free(c->buckets);
    free(c);
    *pp = NULL;
}

static qent *find(coord_qcache *c, const coord_qkey *k, uint64_t h)
{
    for (qent *e = c->buckets[h & (c->n_buckets - 1)]; e; e = e->chain)
        if (e->h == h && e->klen == k->len && memcmp(e->key, k->p, k->len) == 0)
            return e;
    return NULL;
}

int coord_qcache_get(coord_qcache *c, const coord_qkey *k, const float **vec, size_t *dim)
{
    qent *e = NULL;
    if (c && c->max_entries && !k->failed)
        e = find(c, k, fnv1a(k->p, k->len, 0xcbf29ce484222325ULL));
    if (c && c->ctr)
        atomic_fetch_add(e ? &c->ctr->hits : &c->ctr->misses, 1);
    if (!e)
        return 0;
    lru_unlink(c, e);
    lru_front(c, e);
    *vec = e->vec;
    *dim = e->dim;
    return 1;
}

void coord_qcache_put(coord_qcache *c, const coord_qkey *k, const float *vec, size_t dim)
{
    uint64_t h;
    qent *e;
    size_t need = ent_bytes(k->len, dim);
    if (!c || !c->max_entries || k->failed || need > c->max_bytes)
        return;
    h = fnv1a(k->p, k->len, 0xcbf29ce484222325ULL);
    if ((e = find(c, k, h)))
        ent_drop(c, e); /* replaced by the newer vector */
    while (c->tail && (c->n + 1 > c->max_entries || c->bytes + need > c->max_bytes)) {
        ent_drop(c, c->tail);
        if (c->ctr)
            atomic_fetch_add(&c->ctr->evictions, 1);
    }
    e = calloc(1, sizeof *e);
    if (e && (e->key = malloc(k->len ? k->len : 1)) && (e->vec = malloc(dim * sizeof *vec + 1))) {
        memcpy(e->key, k->p, k->len);
        memcpy(e->vec, vec, dim * sizeof *vec);
        e->klen = k->len;
        e->dim = dim;
        e->h = h;
        e->chain = c->buckets[h & (c->n_buckets - 1)];
        c->buckets[h & (c->n_buckets - 1)] = e;
        lru_front(c, e);
        c->n++;
        c->bytes += need;
    } else if (e) {
        free(e->key);
        free(e);
    }
    publish(c);
}
