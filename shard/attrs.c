#include "shard/attrs.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------------------------------------ */
/* Growable bitsets over ids; words past `nw` read as zero. */

struct bitset {
    uint64_t *w;
    size_t nw;
};

static bool bs_get(const struct bitset *b, uint64_t id)
{
    return (id >> 6) < b->nw && ((b->w[id >> 6] >> (id & 63)) & 1);
}

static cr_err bs_set(struct bitset *b, uint64_t id)
{
    size_t need = (size_t)(id >> 6) + 1;
    if (need > b->nw) {
        size_t nw = b->nw ? b->nw : 16;
        while (nw < need)
            nw *= 2;
        uint64_t *w = realloc(b->w, nw * sizeof *w);
        if (!w)
            return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory (bitset of %zu words)", nw);
        memset(w + b->nw, 0, (nw - b->nw) * sizeof *w);
        b->w = w;
        b->nw = nw;
    }
    b->w[id >> 6] |= 1ULL << (id & 63);
    return CR_OK;
}

static void bs_clear(struct bitset *b, uint64_t id)
{
    if ((id >> 6) < b->nw)
        b->w[id >> 6] &= ~(1ULL << (id & 63));
}

static uint64_t bs_word(const struct bitset *b, size_t i)
{
    return i < b->nw ? b->w[i] : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Open-addressing hash table of string keys. Entries live in a caller array whose elements
 * start with the `char *` key; slots hold entry index + 1 (0 = empty) and a 32-bit hash. */

struct htab {
    uint32_t *slot;
    uint32_t *hash;
    size_t cap; /* power of two, or 0 */
};

static uint32_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    h ^= h >> 29;
    return (uint32_t)h ^ (uint32_t)(h >> 32);
}

static const char *entry_key(const void *base, size_t stride, uint32_t i)
{
    return *(char *const *)(const void *)((const char *)base + (size_t)i * stride);
}

/* Index of the entry with `key`, or -1. */
static int64_t htab_get(const struct htab *t, const void *base, size_t stride, const char *key,
                        uint32_t h)
{
    if (!t->cap)
        return -1;
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slot[i])
            return -1;
        if (t->hash[i] == h && strcmp(entry_key(base, stride, t->slot[i] - 1), key) == 0)
            return t->slot[i] - 1;
    }
}

static void htab_insert_raw(struct htab *t, uint32_t idx1, uint32_t h)
{
    size_t i = h & (t->cap - 1);
    while (t->slot[i])
        i = (i + 1) & (t->cap - 1);
    t->slot[i] = idx1;
    t->hash[i] = h;
}

/* Adds entry `idx` (its key not present yet); `count` = entries after adding. */
static cr_err htab_put(struct htab *t, size_t count, uint32_t idx, uint32_t h)
{
    if (count * 2 > t->cap) {
        struct htab n = {0};
        n.cap = t->cap ? t->cap * 2 : 16;
        while (count * 2 > n.cap)
            n.cap *= 2;
        n.slot = calloc(n.cap, sizeof *n.slot);
        n.hash = malloc(n.cap * sizeof *n.hash);
        if (!n.slot || !n.hash) {
            free(n.slot);
            free(n.hash);
            return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory (hash table)");
        }
        for (size_t i = 0; i < t->cap; i++)
            if (t->slot[i])
                htab_insert_raw(&n, t->slot[i], t->hash[i]);
        free(t->slot);
        free(t->hash);
        *t = n;
    }
    htab_insert_raw(t, idx + 1, h);
    return CR_OK;
}

static void htab_free(struct htab *t)
{
    free(t->slot);
    free(t->hash);
    t->slot = t->hash = NULL;
    t->cap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Numbers: int64 and double compared exactly. */

struct num {
    bool is_int;
    int64_t i;
    double d; /* never NaN */
};

struct nument {
    union {
        int64_t i;
        double d;
    } v;
    uint64_t id;
    uint32_t is_int;
};

/* sign of (i - d) */
static int cmp_int_dbl(int64_t i, double d)
{
    double t;
    int64_t ti;
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    t = trunc(d);
    ti = (int64_t)t;
    if (i != ti)
        return i < ti ? -1 : 1;
    return d > t ? -1 : d < t ? 1 : 0;
}

static int cmp_ent_num(const struct nument *e, const struct num *k)
{
    if (e->is_int && k->is_int)
        return e->v.i < k->i ? -1 : e->v.i > k->i;
    if (!e->is_int && !k->is_int)
        return e->v.d < k->d ? -1 : e->v.d > k->d;
    if (e->is_int)
        return cmp_int_dbl(e->v.i, k->d);
    return -cmp_int_dbl(k->i, e->v.d);
}

static int cmp_ent(const void *pa, const void *pb)
{
    const struct nument *a = pa, *b = pb;
    struct num k = {b->is_int != 0, b->is_int ? b->v.i : 0, b->is_int ? 0 : b->v.d};
    int c = cmp_ent_num(a, &k);
    if (c)
        return c;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* A numeric interval; a missing bound is open-ended. */
struct interval {
    bool has_lo, lo_incl, has_hi, hi_incl;
    struct num lo, hi;
};

static bool above_lo(const struct nument *e, const struct interval *q)
{
    int c;
    if (!q->has_lo)
        return true;
    c = cmp_ent_num(e, &q->lo);
    return c > 0 || (c == 0 && q->lo_incl);
}

static bool below_hi(const struct nument *e, const struct interval *q)
{
    int c;
    if (!q->has_hi)
        return true;
    c = cmp_ent_num(e, &q->hi);
    return c < 0 || (c == 0 && q->hi_incl);
}

/* ------------------------------------------------------------------------------------------ */
/* Index */

struct posting {
    uint64_t *ids; /* in insertion order (mostly increasing); may hold removed ids */
    size_t n, cap;
};

struct strval {
    char *key; /* first member: see htab */
    struct posting post;
};

enum { TY_STR = 1, TY_NUM = 2, TY_BOOL = 4 };

struct attr {
    char *name; /* first member: see htab */
    unsigned types; /* TY_* ever held */
    struct strval *vals;
    size_t n_vals, cap_vals;
    struct htab vmap;
    struct bitset has_str, has_num, btrue, bfalse;
    struct nument *num; /* [0, n_sorted) sorted by (value, id); [n_sorted, n_num) pending */
    size_t n_sorted, n_num, cap_num;
};

struct shard_attrs {
    pthread_rwlock_t lock;
    struct attr *attrs;
    size_t n_attrs, cap_attrs;
    struct htab amap;
    struct bitset live; /* set and not removed */
    struct bitset seen; /* set since the last compaction (live or removed) */
    uint64_t n_live;
    uint64_t n_dead; /* removed since the last compaction */
};

cr_err shard_attrs_new(shard_attrs **out)
{
    pthread_rwlockattr_t ra;
    shard_attrs *idx;

    if (!out)
        return cr_error_set(CR_ERR_INVALID, "attrs: NULL argument");
    idx = calloc(1, sizeof *idx);
    if (!idx)
        return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory");
    pthread_rwlockattr_init(&ra);
    /* the writer must not starve behind a steady stream of searches */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&idx->lock, &ra) != 0) {
        pthread_rwlockattr_destroy(&ra);
        free(idx);
        return cr_error_set(CR_ERR_INTERNAL, "attrs: pthread_rwlock_init failed");
    }
    pthread_rwlockattr_destroy(&ra);
    *out = idx;
    return CR_OK;
}

static void attr_release(struct attr *a)
{
    for (size_t i = 0; i < a->n_vals; i++) {
        free(a->vals[i].key);
        free(a->vals[i].post.ids);
    }
    free(a->vals);
    htab_free(&a->vmap);
    free(a->has_str.w);
    free(a->has_num.w);
    free(a->btrue.w);
    free(a->bfalse.w);
    free(a->num);
    free(a->name);
}

void shard_attrs_free(shard_attrs **pp)
{
    shard_attrs *idx;
    if (!pp || !*pp)
        return;
    idx = *pp;
    for (size_t i = 0; i < idx->n_attrs; i++)
        attr_release(&idx->attrs[i]);
    free(idx->attrs);
    htab_free(&idx->amap);
    free(idx->live.w);
    free(idx->seen.w);
    pthread_rwlock_destroy(&idx->lock);
    free(idx);
    *pp = NULL;
}

static struct attr *attr_find(const shard_attrs *idx, const char *name)
{
    int64_t i = htab_get(&idx->amap, idx->attrs, sizeof *idx->attrs, name, str_hash(name));
    return i < 0 ? NULL : &idx->attrs[i];
}

static cr_err attr_get_or_add(shard_attrs *idx, const char *name, struct attr **out)
{
    uint32_t h = str_hash(name);
    int64_t i = htab_get(&idx->amap, idx->attrs, sizeof *idx->attrs, name, h);
    struct attr *a;
    cr_err rc;

    if (i >= 0) {
        *out = &idx->attrs[i];
        return CR_OK;
    }
    if (idx->n_attrs == idx->cap_attrs) {
        size_t cap = idx->cap_attrs ? 2 * idx->cap_attrs : 8;
        struct attr *na = realloc(idx->attrs, cap * sizeof *na);
        if (!na)
            return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory");
        idx->attrs = na;
        idx->cap_attrs = cap;
    }
    a = &idx->attrs[idx->n_attrs];
    memset(a, 0, sizeof *a);
    a->name = strdup(name);
    if (!a->name)
        return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory");
    rc = htab_put(&idx->amap, idx->n_attrs + 1, (uint32_t)idx->n_attrs, h);
    if (rc) {
        free(a->name);
        return rc;
    }
    idx->n_attrs++;
    *out = a;
    return CR_OK;
}

static cr_err posting_add(struct posting *p, uint64_t id)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 4;
        uint64_t *ids = realloc(p->ids, cap * sizeof *ids);
        if (!ids)
            return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory (posting)");
        p->ids = ids;
        p->cap = cap;
    }
    p->ids[p->n++] = id;
    return CR_OK;
}

static cr_err add_string(struct attr *a, const char *s, uint64_t id)
{
    uint32_t h = str_hash(s);
    int64_t i = htab_get(&a->vmap, a->vals, sizeof *a->vals, s, h);
    cr_err rc;

    if (i < 0) {
        if (a->n_vals == a->cap_vals) {
            size_t cap = a->cap_vals ? 2 * a->cap_vals : 8;
            struct strval *nv = realloc(a->vals, cap * sizeof *nv);
            if (!nv)
                return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory");
            a->vals = nv;
            a->cap_vals = cap;
        }
        if (a->n_vals >= UINT32_MAX - 1)
            return cr_error_set(CR_ERR_INVALID, "attrs: too many values of '%s'", a->name);
        struct strval *v = &a->vals[a->n_vals];
        memset(v, 0, sizeof *v);
        v->key = strdup(s);
        if (!v->key)
            return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory");
        rc = htab_put(&a->vmap, a->n_vals + 1, (uint32_t)a->n_vals, h);
        if (rc) {
            free(v->key);
            return rc;
        }
        i = (int64_t)a->n_vals++;
    }
    a->types |= TY_STR;
    rc = posting_add(&a->vals[i].post, id);
    if (rc)
        return rc;
    return bs_set(&a->has_str, id);
}

/* Sorts the pending numeric tail and merges it into the sorted head. */
static cr_err num_merge(struct attr *a)
{
    size_t p = a->n_num - a->n_sorted, i, j, k;
    struct nument *tmp;

    if (p == 0)
        return CR_OK;
    qsort(a->num + a->n_sorted, p, sizeof *a->num, cmp_ent);
    tmp = malloc(p * sizeof *tmp);
    if (!tmp)
        return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory (numeric merge)");
    memcpy(tmp, a->num + a->n_sorted, p * sizeof *tmp);
    /* backward merge of head [0, n_sorted) and tmp [0, p) into [0, n_num) */
    i = a->n_sorted;
    j = p;
    k = a->n_num;
    while (j > 0) {
        if (i > 0 && cmp_ent(&a->num[i - 1], &tmp[j - 1]) > 0)
            a->num[--k] = a->num[--i];
        else
            a->num[--k] = tmp[--j];
    }
    free(tmp);
    a->n_sorted = a->n_num;
    return CR_OK;
}

static cr_err add_number(struct attr *a, bool is_int, int64_t i, double d, uint64_t id)
{
    struct nument *e;
    cr_err rc;

    a->types |= TY_NUM;
    if (!is_int && isnan(d))
        return CR_OK; /* NaN matches nothing: not indexed */
    if (a->n_num == a->cap_num) {
        size_t cap = a->cap_num ? 2 * a->cap_num : 16;
        struct nument *nn = realloc(a->num, cap * sizeof *nn);
        if (!nn)
            return cr_error_set(CR_ERR_NOMEM, "attrs: out of memory (numbers)");
        a->num = nn;
        a->cap_num = cap;
    }
    e = &a->num[a->n_num++];
    memset(e, 0, sizeof *e);
    e->is_int = is_int;
    if (is_int)
        e->v.i = i;
    else
        e->v.d = d;
    e->id = id;
    rc = bs_set(&a->has_num, id);
    if (rc)
        return rc;
    /* keep the unsorted tail short relative to the head: amortized O(log n) per insert */
    if (a->n_num - a->n_sorted > 256 && a->n_num - a->n_sorted > a->n_sorted / 16)
        return num_merge(a);
    return CR_OK;
}

static cr_err check_attribute(const shard_attr *at, size_t k)
{
    const shard_value *v;
    if (!at)
        return cr_error_set(CR_ERR_INVALID, "attrs: attribute %zu is NULL", k);
    if (!at->name || !at->name[0])
        return cr_error_set(CR_ERR_INVALID, "attrs: attribute %zu has an empty name", k);
    v = &at->value;
    switch (v->type) {
    case SHARD_VALUE_STRING:
        if (!v->u.s)
            break;
        return CR_OK;
    case SHARD_VALUE_INT:
    case SHARD_VALUE_DOUBLE:
    case SHARD_VALUE_BOOL: return CR_OK;
    case SHARD_VALUE_STRINGS:
        if (v->u.strings.n && !v->u.strings.v)
            break;
        for (size_t i = 0; i < v->u.strings.n; i++)
            if (!v->u.strings.v[i])
                return cr_error_set(CR_ERR_INVALID, "attrs: attribute '%s' has a NULL string",
                                    at->name);
        return CR_OK;
    default: break;
    }
    return cr_error_set(CR_ERR_INVALID, "attrs: attribute '%s' has no value", at->name);
}

/* Drops removed ids from every structure; afterwards `seen` == `live`. Write lock held. */
static void compact(shard_attrs *idx)
{
    const struct bitset *live = &idx->live;

    for (size_t a = 0; a < idx->n_attrs; a++) {
        struct attr *at = &idx->attrs[a];
        for (size_t v = 0; v < at->n_vals; v++) {
            struct posting *p = &at->vals[v].post;
            size_t k = 0;
            for (size_t i = 0; i < p->n; i++)
                if (bs_get(live, p->ids[i]))
                    p->ids[k++] = p->ids[i];
            p->n = k;
            if (k == 0) {
                free(p->ids);
                p->ids = NULL;
                p->cap = 0;
            } else if (p->cap > 2 * k + 8) {
                uint64_t *ids = realloc(p->ids, k * sizeof *ids);
                if (ids) {
                    p->ids = ids;
                    p->cap = k;
                }
            }
        }
        size_t k = 0, ks = 0;
        for (size_t i = 0; i < at->n_num; i++) {
            if (bs_get(live, at->num[i].id)) {
                at->num[k++] = at->num[i];
                if (i < at->n_sorted)
                    ks++;
            }
        }
        at->n_num = k;
        at->n_sorted = ks;
        if (at->cap_num > 2 * k + 16) {
            struct nument *nn = realloc(at->num, (k + 16) * sizeof *nn);
            if (nn) {
                at->num = nn;
                at->cap_num = k + 16;
            }
        }
        struct bitset *bs[4] = {&at->has_str, &at->has_num, &at->btrue, &at->bfalse};
        for (int b = 0; b < 4; b++)
            for (size_t w = 0; w < bs[b]->nw; w++)
                bs[b]->w[w] &= bs_word(live, w);
    }
    for (size_t w = 0; w < idx->seen.nw; w++)
        idx->seen.w[w] = bs_word(live, w);
    idx->n_dead = 0;
}

cr_err shard_attrs_set(shard_attrs *idx, uint64_t id, const shard_attr *attrs, size_t n)
{
    cr_err rc = CR_OK;

    if (!idx || (n && !attrs))
        return cr_error_set(CR_ERR_INVALID, "attrs: NULL argument");
    if (id >= (UINT64_C(1) << 40))
        return cr_error_set(CR_ERR_INVALID, "attrs: id %llu out of range",
                            (unsigned long long)id);
    for (size_t k = 0; k < n; k++) {
        rc = check_attribute(&attrs[k], k);
        if (rc)
            return rc;
    }

    pthread_rwlock_wrlock(&idx->lock);
    if (bs_get(&idx->live, id)) {
        rc = cr_error_set(CR_ERR_INVALID, "attrs: item %llu is already indexed",
                          (unsigned long long)id);
        goto out;
    }
    if (bs_get(&idx->seen, id))
        compact(idx); /* stale postings of the old incarnation must go first */
    rc = bs_set(&idx->seen, id);
    if (rc)
        goto out;
    for (size_t k = 0; k < n; k++) {
        const shard_value *v = &attrs[k].value;
        struct attr *a = NULL;
        rc = attr_get_or_add(idx, attrs[k].name, &a);
        if (rc)
            goto out;
        switch (v->type) {
        case SHARD_VALUE_STRING: rc = add_string(a, v->u.s, id); break;
        case SHARD_VALUE_STRINGS:
            a->types |= TY_STR;
            for (size_t i = 0; i < v->u.strings.n && !rc; i++)
                rc = add_string(a, v->u.strings.v[i], id);
            break;
        case SHARD_VALUE_INT: rc = add_number(a, true, v->u.i, 0, id); break;
        case SHARD_VALUE_DOUBLE: rc = add_number(a, false, 0, v->u.d, id); break;
        default:
            a->types |= TY_BOOL;
            rc = bs_set(v->u.b ? &a->btrue : &a->bfalse, id);
            break;
        }
        if (rc)
            goto out;
    }
    rc = bs_set(&idx->live, id);
    if (rc)
        goto out;
    idx->n_live++;
out:
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

cr_err shard_attrs_remove(shard_attrs *idx, uint64_t id)
{
    cr_err rc = CR_OK;

    if (!idx)
        return cr_error_set(CR_ERR_INVALID, "attrs: NULL argument");
    pthread_rwlock_wrlock(&idx->lock);
    if (!bs_get(&idx->live, id)) {
        rc = CR_NOTFOUND;
        goto out;
    }
    bs_clear(&idx->live, id);
    idx->n_live--;
    idx->n_dead++;
    if (idx->n_dead > 4096 && idx->n_dead > idx->n_live)
        compact(idx);
out:
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation. Every function writes its result into `out` (nw words); leaf and `not` results
 * are masked with the live set, so and/or of them stay masked. */

struct ectx {
    const shard_attrs *idx;
    uint64_t limit;
    size_t nw;
};

static void mask_live(const struct ectx *c, uint64_t *out)
{
    for (size_t w = 0; w < c->nw; w++)
        out[w] &= bs_word(&c->idx->live, w);
    if (c->limit == 0)
        out[0] = 0;
    else if (c->limit & 63)
        out[c->nw - 1] &= (1ULL << (c->limit & 63)) - 1;
}

static void or_posting(const struct ectx *c, const struct posting *p, uint64_t *out)
{
    for (size_t i = 0; i < p->n; i++) {
        uint64_t id = p->ids[i];
        if (id < c->limit)
            out[id >> 6] |= 1ULL << (id & 63);
    }
}

static void or_interval(const struct ectx *c, const struct attr *a, const struct interval *q,
                        uint64_t *out)
{
    size_t lo = 0, hi = a->n_sorted, b, e;

    /* first sorted entry above the lower bound */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (above_lo(&a->num[mid], q))
            hi = mid;
        else
            lo = mid + 1;
    }
    b = lo;
    /* first sorted entry (from b) past the upper bound */
    hi = a->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (below_hi(&a->num[mid], q))
            lo = mid + 1;
        else
            hi = mid;
    }
    e = lo;
    for (size_t i = b; i < e; i++) {
        uint64_t id = a->num[i].id;
        if (id < c->limit)
            out[id >> 6] |= 1ULL << (id & 63);
    }
    for (size_t i = a->n_sorted; i < a->n_num; i++) {
        const struct nument *en = &a->num[i];
        if (en->id < c->limit && above_lo(en, q) && below_hi(en, q))
            out[en->id >> 6] |= 1ULL << (en->id & 63);
    }
}

static void or_bits(const struct ectx *c, const struct bitset *b, uint64_t *out)
{
    for (size_t w = 0; w < c->nw; w++)
        out[w] |= bs_word(b, w);
}

/* out = has & ~out (the `!=` of an `=` result) */
static void complement_within(const struct ectx *c, const struct bitset *has, uint64_t *out)
{
    for (size_t w = 0; w < c->nw; w++)
        out[w] = bs_word(has, w) & ~out[w];
}

static struct num to_num(const shard_value *v)
{
    struct num n = {false, 0, 0};
    if (v->type == SHARD_VALUE_INT) {
        n.is_int = true;
        n.i = v->u.i;
    } else {
        n.d = v->u.d;
    }
    return n;
}

static const char *type_name(unsigned ty)
{
    return ty == TY_STR ? "strings" : ty == TY_NUM ? "numbers" : "booleans";
}

static cr_err need_type(const struct attr *a, unsigned ty)
{
    if (a->types & ty)
        return CR_OK;
    return cr_error_set(CR_ERR_INVALID, "filter: attribute '%s' never holds %s", a->name,
                        type_name(ty));
}

static unsigned value_type(const shard_value *v)
{
    switch (v->type) {
    case SHARD_VALUE_STRING: return TY_STR;
    case SHARD_VALUE_BOOL: return TY_BOOL;
    default: return TY_NUM;
    }
}

/* ORs the items with a value equal to `v` into out. */
static void or_equal(const struct ectx *c, const struct attr *a, const shard_value *v,
                     uint64_t *out)
{
    switch (value_type(v)) {
    case TY_STR: {
        int64_t i = htab_get(&a->vmap, a->vals, sizeof *a->vals, v->u.s, str_hash(v->u.s));
        if (i >= 0)
            or_posting(c, &a->vals[i].post, out);
        break;
    }
    case TY_BOOL: or_bits(c, v->u.b ? &a->btrue : &a->bfalse, out); break;
    default: {
        struct interval q = {true, true, true, true, to_num(v), to_num(v)};
        or_interval(c, a, &q, out);
        break;
    }
    }
}

static const struct attr *lookup(const struct ectx *c, const char *name)
{
    const struct attr *a;
    if (!name || !name[0]) {
        cr_error_set(CR_ERR_INVALID, "filter: empty attribute name");
        return NULL;
    }
    a = attr_find(c->idx, name);
    if (!a)
        cr_error_set(CR_ERR_INVALID, "filter: unknown attribute '%s'", name);
    return a;
}

/* A filter's value is a single string, number or bool (a compiled tree is built so; a
 * hand-made one is checked rather than trusted). */
static cr_err check_value(const shard_value *v, const char *attr)
{
    if (v->type == SHARD_VALUE_STRING ? v->u.s != NULL
                                      : v->type >= SHARD_VALUE_INT && v->type <= SHARD_VALUE_BOOL)
        return CR_OK;
    return cr_error_set(CR_ERR_INVALID, "filter: value for '%s' is not a string, number or bool",
                        attr ? attr : "");
}

static cr_err eval_compare(const struct ectx *c, const shard_filter *cmp, uint64_t *out)
{
    static const char *const opname[] = {"=", "!=", "<", "<=", ">", ">="};
    const struct attr *a;
    unsigned ty = value_type(&cmp->value);
    cr_err rc;

    if ((unsigned)cmp->op > SHARD_CMP_GE)
        return cr_error_set(CR_ERR_INVALID, "filter: compare operator %d out of range",
                            (int)cmp->op);
    if ((rc = check_value(&cmp->value, cmp->attr)))
        return rc;
    a = lookup(c, cmp->attr);
    if (!a)
        return CR_ERR_INVALID;
    if (ty != TY_NUM && cmp->op != SHARD_CMP_EQ &&
        cmp->op != SHARD_CMP_NE)
        return cr_error_set(CR_ERR_INVALID, "filter: '%s' on '%s' needs a number, not a %s",
                            opname[cmp->op], cmp->attr, ty == TY_STR ? "string" : "boolean");
    rc = need_type(a, ty);
    if (rc)
        return rc;
    if (cmp->op == SHARD_CMP_EQ || cmp->op == SHARD_CMP_NE) {
        or_equal(c, a, &cmp->value, out);
        if (cmp->op == SHARD_CMP_NE) {
            if (ty == TY_BOOL) {
                struct bitset *other = cmp->value.u.b ? (struct bitset *)&a->bfalse
                                                     : (struct bitset *)&a->btrue;
                complement_within(c, other, out); /* holds the other bool and not this one */
            } else {
                complement_within(c, ty == TY_STR ? &a->has_str : &a->has_num, out);
            }
        }
    } else {
        struct interval q = {0};
        struct num v = to_num(&cmp->value);
        switch (cmp->op) {
        case SHARD_CMP_LT: q.has_hi = true, q.hi = v; break;
        case SHARD_CMP_LE: q.has_hi = q.hi_incl = true, q.hi = v; break;
        case SHARD_CMP_GT: q.has_lo = true, q.lo = v; break;
        default: q.has_lo = q.lo_incl = true, q.lo = v; break;
        }
        or_interval(c, a, &q, out);
    }
    mask_live(c, out);
    return CR_OK;
}

static cr_err eval_node(const struct ectx *c, const shard_filter *f, uint64_t *out)
{
    const struct attr *a;
    uint64_t *tmp = NULL;
    cr_err rc = CR_OK;

    if (!f)
        return cr_error_set(CR_ERR_INVALID, "filter: NULL expression");
    switch (f->kind) {
    case SHARD_FILTER_CMP: return eval_compare(c, f, out);
    case SHARD_FILTER_IN:
        a = lookup(c, f->attr);
        if (!a)
            return CR_ERR_INVALID;
        if (f->n_values == 0 || !f->values)
            return cr_error_set(CR_ERR_INVALID, "filter: empty 'in' list");
        for (size_t i = 0; i < f->n_values; i++) {
            rc = check_value(&f->values[i], f->attr);
            if (!rc)
                rc = need_type(a, value_type(&f->values[i]));
            if (rc)
                return rc;
            or_equal(c, a, &f->values[i], out);
        }
        mask_live(c, out);
        return CR_OK;
    case SHARD_FILTER_RANGE: {
        struct interval q = {f->has_lo, f->lo_inclusive, f->has_hi, f->hi_inclusive,
                             {false, 0, f->lo}, {false, 0, f->hi}};
        a = lookup(c, f->attr);
        if (!a)
            return CR_ERR_INVALID;
        rc = need_type(a, TY_NUM);
        if (rc)
            return rc;
        or_interval(c, a, &q, out);
        mask_live(c, out);
        return CR_OK;
    }
    case SHARD_FILTER_NOT:
        if (f->n_kids != 1)
            return cr_error_set(CR_ERR_INVALID, "filter: 'not' needs one operand");
        rc = eval_node(c, f->kids[0], out);
        if (rc)
            return rc;
        for (size_t w = 0; w < c->nw; w++)
            out[w] = ~out[w];
        mask_live(c, out);
        return CR_OK;
    case SHARD_FILTER_AND:
    case SHARD_FILTER_OR: {
        bool is_and = f->kind == SHARD_FILTER_AND;
        if (f->n_kids == 0)
            return cr_error_set(CR_ERR_INVALID, "filter: empty %s list", is_and ? "and" : "or");
        rc = eval_node(c, f->kids[0], out);
        if (rc || f->n_kids == 1)
            return rc;
        tmp = malloc(c->nw * sizeof *tmp);
        if (!tmp)
            return cr_error_set(CR_ERR_NOMEM, "filter: out of memory");
        for (size_t i = 1; i < f->n_kids; i++) {
            memset(tmp, 0, c->nw * sizeof *tmp);
            rc = eval_node(c, f->kids[i], tmp);
            if (rc)
                break;
            if (is_and)
                for (size_t w = 0; w < c->nw; w++)
                    out[w] &= tmp[w];
            else
                for (size_t w = 0; w < c->nw; w++)
                    out[w] |= tmp[w];
        }
        free(tmp);
        return rc;
    }
    default: return cr_error_set(CR_ERR_INVALID, "filter: expression with no operator set");
    }
}

cr_err shard_attrs_eval(shard_attrs *idx, const shard_filter *f, uint64_t id_limit,
                        uint64_t **bitmap_out, uint64_t *matches)
{
    struct ectx c;
    uint64_t *out = NULL, count = 0;
    cr_err rc;

    if (!idx || !bitmap_out)
        return cr_error_set(CR_ERR_INVALID, "attrs: NULL argument");
    if (id_limit > (UINT64_C(1) << 40))
        return cr_error_set(CR_ERR_INVALID, "attrs: id limit %llu out of range",
                            (unsigned long long)id_limit);
    c.idx = idx;
    c.limit = id_limit;
    c.nw = (size_t)((id_limit + 63) / 64);
    if (c.nw == 0)
        c.nw = 1;
    out = calloc(c.nw, sizeof *out);
    if (!out)
        return cr_error_set(CR_ERR_NOMEM, "filter: out of memory (%zu-word bitmap)", c.nw);

    pthread_rwlock_rdlock(&idx->lock);
    rc = eval_node(&c, f, out);
    pthread_rwlock_unlock(&idx->lock);
    if (rc) {
        free(out);
        return rc;
    }
    for (size_t w = 0; w < c.nw; w++)
        count += (uint64_t)__builtin_popcountll(out[w]);
    *bitmap_out = out;
    if (matches)
        *matches = count;
    return CR_OK;
}

size_t shard_attrs_count_known(shard_attrs *idx)
{
    size_t n;
    if (!idx)
        return 0;
    pthread_rwlock_rdlock(&idx->lock);
    n = idx->n_attrs;
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

uint64_t shard_attrs_count_live(shard_attrs *idx)
{
    uint64_t n;
    if (!idx)
        return 0;
    pthread_rwlock_rdlock(&idx->lock);
    n = idx->n_live;
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

size_t shard_attrs_memory(shard_attrs *idx)
{
    size_t b;
    if (!idx)
        return 0;
    pthread_rwlock_rdlock(&idx->lock);
    b = sizeof *idx + idx->cap_attrs * sizeof *idx->attrs + idx->amap.cap * 8 +
        (idx->live.nw + idx->seen.nw) * 8;
    for (size_t i = 0; i < idx->n_attrs; i++) {
        const struct attr *a = &idx->attrs[i];
        b += strlen(a->name) + 1 + a->cap_vals * sizeof *a->vals + a->vmap.cap * 8 +
             a->cap_num * sizeof *a->num +
             (a->has_str.nw + a->has_num.nw + a->btrue.nw + a->bfalse.nw) * 8;
        for (size_t v = 0; v < a->n_vals; v++)
            b += strlen(a->vals[v].key) + 1 + a->vals[v].post.cap * 8;
    }
    pthread_rwlock_unlock(&idx->lock);
    return b;
}
