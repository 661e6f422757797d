/* index.c — the shard's FAISS index (see index.h for the contract). */
#include "shard/index.h"

#include "faiss_c_ext.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define SNAP_MAGIC "CRSIDX\0\1"
#define SNAP_FORMAT 1u
#define SIDE_FACTORY "IDMap,Flat"
/* The shard inserts incrementally (chunks of the indexer's backlog); FAISS's own one-call add
 * inserts every upper-level node before any level-0 one, which gives a better graph at its
 * default efConstruction 40: measured (bench index, 50k x 128-d) chunked adds at 40 lose
 * 0.01-0.04 recall@10 at efSearch 16, at 80-100 they match the one-call build at 40
 * (30k x 128-d, one thread: -0.021 at 40, -0.007 at 100). Build time grows with it. */
#define HNSW_EF_CONSTRUCTION_DEFAULT 100
#define EXACT_BLOCK 4096 /* ids fetched per callback in exact scans */

enum kind { KIND_PLAIN = 0, KIND_IVF = 1, KIND_HNSW = 2 };

/* What a rebuild swaps as a whole. */
typedef struct core {
    FaissIndex *ann;  /* id-carrying FAISS index (untrained while buffering) */
    FaissIndex *side; /* IDMap,Flat buffer before training; NULL once trained */
    uint8_t *live;    /* bit per id: searchable */
    uint8_t *tomb;    /* bit per id: removed but still inside `ann` */
    size_t bm_bytes;
    int64_t nlive, ntomb;
} core;

struct shard_index {
    pthread_rwlock_t rw; /* searches: read; changes to `c`: write */
    pthread_mutex_t wmu; /* serializes add/remove/rebuild/snapshot */
    int dim;
    shard_index_metric metric;
    char *factory;
    int64_t train_size;
    int hnsw_ef_max;
    int hnsw_ef_construction;
    enum kind kind;
    bool flat;      /* the ANN index is exact by construction */
    bool removable; /* remove_ids works on `ann` */
    unsigned char *proto; /* a trained, empty, id-carrying index (serialized); NULL when the
                             index needs no training */
    size_t proto_len;
    core c;
    _Atomic uint64_t add_held_us; /* the last add to the live index: its time under `rw` */
};

struct shard_index_builder {
    shard_index *ix;
    core *c;     /* the fresh core (malloc'd until commit moves it in) */
    bool locked; /* holds ix->wmu */
};

/* ---- small helpers ----------------------------------------------------------------------- */

static cr_err faiss_fail(int rc, const char *what)
{
    const char *m = faiss_get_last_error();
    return cr_error_set(CR_ERR_INDEX, "%s: %s (faiss rc %d)", what, m && m[0] ? m : "unknown",
                        rc);
}

static FaissMetricType to_faiss_metric(shard_index_metric m)
{
    return m == SHARD_INDEX_METRIC_L2 ? METRIC_L2 : METRIC_INNER_PRODUCT;
}

/* index_factory, minus polysemous training of PQ codes (see faiss_c_ext.h: the relabeling
 * serves a search mode cirrus never runs and dominated the training time). */
static int factory_index(FaissIndex **out, int dim, const char *factory, shard_index_metric m)
{
    int rc = faiss_index_factory(out, dim, factory, to_faiss_metric(m));
    if (rc == 0)
        (void)faiss_Index_skip_polysemous_training_ext(*out);
    return rc;
}

static bool bit_get(const uint8_t *bm, size_t bytes, int64_t id)
{
    return id >= 0 && (size_t)(id / 8) < bytes && (bm[id / 8] >> (id % 8)) & 1u;
}

static void bit_set(uint8_t *bm, int64_t id, bool on)
{
    if (on)
        bm[id / 8] |= (uint8_t)(1u << (id % 8));
    else
        bm[id / 8] &= (uint8_t)~(1u << (id % 8));
}

/* Grows both bitmaps to hold id `max_id`. Caller holds the write lock (or owns the core). */
static cr_err bitmaps_reserve(core *c, int64_t max_id)
{
    size_t need = (size_t)(max_id / 8) + 1;
    if (need <= c->bm_bytes)
        return CR_OK;
    size_t cap = c->bm_bytes ? c->bm_bytes : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *l = realloc(c->live, cap);
    if (!l)
        return cr_error_set(CR_ERR_NOMEM, "index bitmap of %zu bytes", cap);
    c->live = l;
    uint8_t *t = realloc(c->tomb, cap);
    if (!t)
        return cr_error_set(CR_ERR_NOMEM, "index bitmap of %zu bytes", cap);
    c->tomb = t;
    memset(c->live + c->bm_bytes, 0, cap - c->bm_bytes);
    memset(c->tomb + c->bm_bytes, 0, cap - c->bm_bytes);
    c->bm_bytes = cap;
    return CR_OK;
}

static void core_free(core *c)
{
    if (c->ann)
        faiss_Index_free(c->ann);
    if (c->side)
        faiss_Index_free(c->side);
    free(c->live);
    free(c->tomb);
    memset(c, 0, sizeof *c);
}

static void wlock(pthread_rwlock_t *rw)
{
    if (rw)
        pthread_rwlock_wrlock(rw);
}

static void wunlock(pthread_rwlock_t *rw)
{
    if (rw)
        pthread_rwlock_unlock(rw);
}

/* The IVF inside `ix` (directly or under a pre-transform such as OPQ), or NULL. */
static FaissIndexIVF *find_ivf(FaissIndex *ix)
{
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(ix);
    if (ivf)
        return ivf;
    FaissIndexPreTransform *pt = faiss_IndexPreTransform_cast(ix);
    if (pt)
        return faiss_IndexIVF_cast(faiss_IndexPreTransform_index(pt));
    FaissIndexIDMap *m = faiss_IndexIDMap_cast(ix);
    return m ? find_ivf(faiss_IndexIDMap_sub_index(m)) : NULL;
}

/* Wraps `raw` in an IDMap unless it carries ids itself; takes ownership of `raw`. */
static cr_err wrap_ids(FaissIndex *raw, FaissIndex **out)
{
    if (faiss_IndexIDMap_cast(raw) || find_ivf(raw)) {
        *out = raw;
        return CR_OK;
    }
    FaissIndexIDMap *m = NULL;
    int rc = faiss_IndexIDMap_new(&m, raw);
    if (rc) {
        faiss_Index_free(raw);
        return faiss_fail(rc, "wrap index in IDMap");
    }
    faiss_IndexIDMap_set_own_fields(m, 1);
    *out = (FaissIndex *)m;
    return CR_OK;
}

/* Raises the HNSW efSearch field (FAISS 1.7.3 caps per-call values by it) and sets the
 * construction beam; true when the index is an HNSW. */
static bool hnsw_setup(FaissIndex *ann, int ef_max, int ef_construction)
{
    FaissIndexIDMap *m = faiss_IndexIDMap_cast(ann);
    FaissIndex *inner = m ? faiss_IndexIDMap_sub_index(m) : ann;
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps))
        return false;
    int rc = faiss_ParameterSpace_set_index_parameter(ps, inner, "efSearch", ef_max);
    faiss_ParameterSpace_free(ps);
#ifndef CIRRUS_SYSTEM_FAISS_C
    if (rc == 0)
        faiss_IndexHNSW_set_efConstruction_ext(ann, ef_construction);
#else
    (void)ef_construction;
#endif
    return rc == 0;
}

/* Whether remove_ids works: try it with an empty selector. */
static bool probe_removable(FaissIndex *ann)
{
    FaissIDSelectorBatch *b = NULL;
    size_t n = 0;
    if (faiss_IDSelectorBatch_new(&b, 0, NULL))
        return false;
    int rc = faiss_Index_remove_ids(ann, (const FaissIDSelector *)b, &n);
    faiss_IDSelector_free((FaissIDSelector *)b);
    return rc == 0;
}

static bool factory_is_flat(const char *f)
{
    return strcmp(f, "Flat") == 0 || strcmp(f, "IDMap,Flat") == 0 ||
           strcmp(f, "IDMap2,Flat") == 0;
}

/* Learns kind/flat/removable from a (possibly fresh) ANN index. */
static void classify(shard_index *ix, FaissIndex *ann)
{
    if (find_ivf(ann))
        ix->kind = KIND_IVF;
    else if (hnsw_setup(ann, ix->hnsw_ef_max, ix->hnsw_ef_construction))
        ix->kind = KIND_HNSW;
    else
        ix->kind = KIND_PLAIN;
    ix->flat = factory_is_flat(ix->factory);
    ix->removable = probe_removable(ann);
}

static cr_err clone_from_buf(const unsigned char *buf, size_t len, FaissIndex **out)
{
    int rc = faiss_read_index_buf(buf, len, 0, out);
    return rc ? faiss_fail(rc, "read index") : CR_OK;
}

/* A new, empty ANN index: from the trained prototype when there is one, else from the
 * factory. */
static cr_err make_ann(shard_index *ix, FaissIndex **out)
{
    FaissIndex *raw = NULL;
    cr_err err;
    if (ix->proto) {
        err = clone_from_buf(ix->proto, ix->proto_len, out);
    } else {
        int rc = factory_index(&raw, ix->dim, ix->factory, ix->metric);
        if (rc)
            return faiss_fail(rc, "index factory");
        err = wrap_ids(raw, out);
    }
    if (err == CR_OK && ix->kind == KIND_HNSW)
        hnsw_setup(*out, ix->hnsw_ef_max, ix->hnsw_ef_construction);
    return err;
}

static cr_err make_side(shard_index *ix, FaissIndex **out)
{
    int rc = faiss_index_factory(out, ix->dim, SIDE_FACTORY, to_faiss_metric(ix->metric));
    return rc ? faiss_fail(rc, "side index factory") : CR_OK;
}

/* Serializes the trained, still empty `ann` as the prototype for rebuilds. */
static cr_err set_proto(shard_index *ix, FaissIndex *ann)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = faiss_write_index_buf(ann, &len, &buf);
    if (rc)
        return faiss_fail(rc, "serialize trained index");
    free(ix->proto);
    ix->proto = buf;
    ix->proto_len = len;
    return CR_OK;
}

static int64_t auto_train_size(FaissIndex *ann)
{
    FaissIndexIVF *ivf = find_ivf(ann);
    int64_t n = ivf ? 40 * (int64_t)faiss_IndexIVF_nlist(ivf) : 0;
    return n > 10000 ? n : 10000;
}

/* ---- training and adding ----------------------------------------------------------------- */

/* Trains c->ann on the buffered vectors, moves them in, drops the side index. Searches only
 * read the side index while it exists, so the work runs outside the lock; the swap is
 * under it. */
static cr_err train_from_side(shard_index *ix, core *c, pthread_rwlock_t *rw)
{
    FaissIndexIDMap *side = faiss_IndexIDMap_cast(c->side);
    idx_t *map = NULL;
    size_t n = 0;
    float *vecs = NULL;
    int64_t *ids = NULL;
    cr_err err = CR_OK;
    int rc;

    if (!side)
        return cr_error_set(CR_ERR_INTERNAL, "side index is not an IDMap");
    faiss_IndexIDMap_id_map(side, &map, &n);
    if (n == 0)
        return CR_OK;
    vecs = malloc(n * (size_t)ix->dim * sizeof(float));
    ids = malloc(n * sizeof(int64_t));
    if (!vecs || !ids) {
        err = cr_error_set(CR_ERR_NOMEM, "training buffer of %zu vectors", n);
        goto out;
    }
    memcpy(ids, map, n * sizeof(int64_t));
    rc = faiss_Index_reconstruct_n(faiss_IndexIDMap_sub_index(side), 0, (idx_t)n, vecs);
    if (rc) {
        err = faiss_fail(rc, "read buffered vectors");
        goto out;
    }
    rc = faiss_Index_train(c->ann, (idx_t)n, vecs);
    if (rc) {
        err = faiss_fail(rc, "train index");
        goto out;
    }
    if (!ix->proto) {
        err = set_proto(ix, c->ann);
        if (err)
            goto out;
    }
    rc = faiss_Index_add_with_ids(c->ann, (idx_t)n, vecs, ids);
    if (rc) {
        err = faiss_fail(rc, "add buffered vectors to trained index");
        faiss_Index_reset(c->ann);
        goto out;
    }
    wlock(rw);
    faiss_Index_free(c->side);
    c->side = NULL;
    wunlock(rw);
out:
    free(vecs);
    free(ids);
    return err;
}

/* Adds to core `c`; `rw` is the handle's lock for the live core, NULL for a private one. */
static cr_err core_add(shard_index *ix, core *c, pthread_rwlock_t *rw, int64_t n,
                       const int64_t *ids, const float *vectors)
{
    int64_t max_id = -1, i, set = 0;
    cr_err err = CR_OK;
    int rc;

    for (i = 0; i < n; i++) {
        if (ids[i] < 0)
            return cr_error_set(CR_ERR_INVALID, "index add: negative id %lld",
                                (long long)ids[i]);
        if (bit_get(c->tomb, c->bm_bytes, ids[i]))
            return cr_error_set(CR_ERR_INVALID,
                                "index add: id %lld was removed; ids are not reusable before "
                                "a rebuild",
                                (long long)ids[i]);
        if (ids[i] > max_id)
            max_id = ids[i];
    }
    if (n == 0)
        return CR_OK;

    wlock(rw);
    uint64_t held = cr_clock_mono_us();
    err = bitmaps_reserve(c, max_id);
    /* mark as we go: catches ids already present and repeats inside the batch */
    while (err == CR_OK && set < n) {
        if (bit_get(c->live, c->bm_bytes, ids[set]))
            err = cr_error_set(CR_ERR_INVALID, "index add: id %lld is already present",
                               (long long)ids[set]);
        else
            bit_set(c->live, ids[set++], true);
    }
    if (err == CR_OK) {
        rc = faiss_Index_add_with_ids(c->side ? c->side : c->ann, (idx_t)n, vectors, ids);
        if (rc)
            err = faiss_fail(rc, "index add");
    }
    if (err) {
        for (i = 0; i < set; i++)
            bit_set(c->live, ids[i], false);
    } else {
        c->nlive += n;
    }
    if (rw)
        atomic_store(&ix->add_held_us, cr_clock_mono_us() - held);
    wunlock(rw);
    if (err)
        return err;
    /* The vectors are in (buffered, searched exactly) whatever training does: a failure is
     * not the add's, which a caller would retry into "already present". */
    if (c->side && faiss_Index_ntotal(c->side) >= ix->train_size && train_from_side(ix, c, rw))
        CR_WARN("index", "training deferred to the next add: %s", cr_error_message());
    return CR_OK;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

shard_index_opts shard_index_default_opts(void)
{
    shard_index_opts o = {0};
    o.metric = SHARD_INDEX_METRIC_IP;
    o.factory = "Flat";
    return o;
}

shard_index_search_params shard_index_default_search_params(void)
{
    shard_index_search_params p = {0};
    return p;
}

const char *shard_index_metric_name(shard_index_metric m)
{
    return m == SHARD_INDEX_METRIC_L2 ? "l2" : "ip";
}

cr_err shard_index_metric_parse(const char *s, shard_index_metric *out)
{
    if (s && (strcmp(s, "ip") == 0 || strcmp(s, "IP") == 0)) {
        *out = SHARD_INDEX_METRIC_IP;
        return CR_OK;
    }
    if (s && (strcmp(s, "l2") == 0 || strcmp(s, "L2") == 0)) {
        *out = SHARD_INDEX_METRIC_L2;
        return CR_OK;
    }
    return cr_error_set(CR_ERR_INVALID, "unknown metric '%s' (expected ip or l2)",
                        s ? s : "(null)");
}

/* The handle without an ANN index yet. */
static cr_err handle_new(shard_index **out, const shard_index_opts *o)
{
    shard_index *ix = NULL;
    if (!o || o->dim < 1 || o->dim > SHARD_INDEX_DIM_MAX)
        return cr_error_set(CR_ERR_INVALID, "index dim %d out of range 1..%d", o ? o->dim : 0,
                            SHARD_INDEX_DIM_MAX);
    if (o->metric != SHARD_INDEX_METRIC_IP && o->metric != SHARD_INDEX_METRIC_L2)
        return cr_error_set(CR_ERR_INVALID, "index metric %d unknown", (int)o->metric);
    if (!o->factory || !o->factory[0] || strlen(o->factory) >= SHARD_INDEX_FACTORY_MAX)
        return cr_error_set(CR_ERR_INVALID, "index factory string empty or too long");
    if (o->train_size < 0 || o->hnsw_ef_max < 0 || o->hnsw_ef_construction < 0)
        return cr_error_set(CR_ERR_INVALID, "index train_size/hnsw_ef_max negative");
    ix = calloc(1, sizeof *ix);
    if (!ix)
        return cr_error_set(CR_ERR_NOMEM, "index handle");
    ix->factory = strdup(o->factory);
    if (!ix->factory) {
        free(ix);
        return cr_error_set(CR_ERR_NOMEM, "index handle");
    }
    {
        /* Writer preference: a stream of overlapping searches must not starve the adds. */
        pthread_rwlockattr_t ra;
        pthread_rwlockattr_init(&ra);
        pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&ix->rw, &ra);
        pthread_rwlockattr_destroy(&ra);
    }
    pthread_mutex_init(&ix->wmu, NULL);
    ix->dim = o->dim;
    ix->metric = o->metric;
    ix->train_size = o->train_size;
    ix->hnsw_ef_max = o->hnsw_ef_max ? o->hnsw_ef_max : 1024;
    ix->hnsw_ef_construction = o->hnsw_ef_construction ? o->hnsw_ef_construction
                                                       : HNSW_EF_CONSTRUCTION_DEFAULT;
    *out = ix;
    return CR_OK;
}

/* Checks that a FAISS index read from a file fits the handle. */
static cr_err check_fits(const shard_index *ix, FaissIndex *f, const char *what)
{
    if (faiss_Index_d(f) != ix->dim)
        return cr_error_set(CR_ERR_INVALID, "%s has dim %d, expected %d", what,
                            faiss_Index_d(f), ix->dim);
    if (faiss_Index_metric_type(f) != to_faiss_metric(ix->metric))
        return cr_error_set(CR_ERR_INVALID, "%s has metric %d, expected %s", what,
                            (int)faiss_Index_metric_type(f), shard_index_metric_name(ix->metric));
    return CR_OK;
}

cr_err shard_index_create(shard_index **out, const shard_index_opts *opts)
{
    shard_index *ix = NULL;
    FaissIndex *raw = NULL;
    cr_err err;
    int rc;

    err = handle_new(&ix, opts);
    if (err)
        return err;
    if (opts->template_path) {
        rc = faiss_read_index_fname(opts->template_path, 0, &raw);
        if (rc) {
            err = faiss_fail(rc, "read index template");
            goto out;
        }
        err = check_fits(ix, raw, "index template");
        if (err == CR_OK && !faiss_Index_is_trained(raw))
            err = cr_error_set(CR_ERR_INVALID, "index template %s is not trained",
                               opts->template_path);
        if (err == CR_OK && faiss_Index_ntotal(raw) > 0 && (rc = faiss_Index_reset(raw)))
            err = faiss_fail(rc, "empty index template");
        if (err) {
            faiss_Index_free(raw);
            goto out;
        }
    } else {
        rc = factory_index(&raw, ix->dim, ix->factory, ix->metric);
        if (rc) {
            err = faiss_fail(rc, "index factory");
            goto out;
        }
    }
    err = wrap_ids(raw, &ix->c.ann);
    if (err)
        goto out;
    classify(ix, ix->c.ann);
    if (ix->train_size == 0)
        ix->train_size = auto_train_size(ix->c.ann);
    if (faiss_Index_is_trained(ix->c.ann)) {
        if (opts->template_path)
            err = set_proto(ix, ix->c.ann);
    } else {
        err = make_side(ix, &ix->c.side);
    }
out:
    if (err) {
        shard_index_close(&ix);
        return err;
    }
    *out = ix;
    return CR_OK;
}

void shard_index_close(shard_index **pp)
{
    if (!pp || !*pp)
        return;
    shard_index *ix = *pp;
    core_free(&ix->c);
    free(ix->proto);
    free(ix->factory);
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->wmu);
    free(ix);
    *pp = NULL;
}

/* ---- add / remove ------------------------------------------------------------------------ */

cr_err shard_index_add(shard_index *ix, int64_t n, const int64_t *ids, const float *vectors)
{
    if (n < 0 || (n > 0 && (!ids || !vectors)))
        return cr_error_set(CR_ERR_INVALID, "index add: bad arguments");
    pthread_mutex_lock(&ix->wmu);
    cr_err err = core_add(ix, &ix->c, &ix->rw, n, ids, vectors);
    pthread_mutex_unlock(&ix->wmu);
    return err;
}

uint64_t shard_index_last_add_held_us(shard_index *ix)
{
    return atomic_load(&ix->add_held_us);
}

/* Removes ids from core c (the caller holds what guards c: wmu + rw for the live core, nothing
 * for a rebuild's private one). */
static cr_err core_remove(core *c, bool removable, int64_t n, const int64_t *ids,
                          int64_t *n_removed)
{
    int64_t *present = NULL, np = 0;
    FaissIDSelectorBatch *sel = NULL;
    cr_err err = CR_OK;
    int rc;

    if (n_removed)
        *n_removed = 0;
    if (n < 0 || (n > 0 && !ids))
        return cr_error_set(CR_ERR_INVALID, "index remove: bad arguments");
    if (n == 0)
        return CR_OK;
    present = malloc((size_t)n * sizeof *present);
    if (!present)
        return cr_error_set(CR_ERR_NOMEM, "index remove");
    for (int64_t i = 0; i < n; i++) { /* clearing as we go also drops repeats */
        if (bit_get(c->live, c->bm_bytes, ids[i])) {
            bit_set(c->live, ids[i], false);
            present[np++] = ids[i];
        }
    }
    if (np > 0 && (c->side || removable)) {
        rc = faiss_IDSelectorBatch_new(&sel, (size_t)np, present);
        if (rc == 0)
            rc = faiss_Index_remove_ids(c->side ? c->side : c->ann, (const FaissIDSelector *)sel,
                                        NULL);
        if (rc) {
            err = faiss_fail(rc, "index remove");
            for (int64_t i = 0; i < np; i++)
                bit_set(c->live, present[i], true);
        }
    } else {
        for (int64_t i = 0; i < np; i++)
            bit_set(c->tomb, present[i], true);
        c->ntomb += np;
    }
    if (err == CR_OK) {
        c->nlive -= np;
        if (n_removed)
            *n_removed = np;
    }
    if (sel)
        faiss_IDSelector_free((FaissIDSelector *)sel);
    free(present);
    return err;
}

cr_err shard_index_remove(shard_index *ix, int64_t n, const int64_t *ids, int64_t *n_removed)
{
    cr_err err;
    pthread_mutex_lock(&ix->wmu);
    pthread_rwlock_wrlock(&ix->rw);
    err = core_remove(&ix->c, ix->removable, n, ids, n_removed);
    pthread_rwlock_unlock(&ix->rw);
    pthread_mutex_unlock(&ix->wmu);
    return err;
}

/* ---- search ------------------------------------------------------------------------------ */

static bool better(bool ip, float a, float b) { return ip ? a > b : a < b; }

void shard_index_topk_push(float *d, int64_t *l, int64_t k, int64_t *cnt, bool ip, float s,
                           int64_t id)
{
    int64_t pos;
    if (*cnt == k && !better(ip, s, d[k - 1]))
        return;
    pos = *cnt < k ? (*cnt)++ : k - 1;
    while (pos > 0 && better(ip, s, d[pos - 1])) {
        d[pos] = d[pos - 1];
        l[pos] = l[pos - 1];
        pos--;
    }
    d[pos] = s;
    l[pos] = id;
}

float shard_index_score(bool ip, const float *a, const float *b, int dim)
{
    float s = 0;
    if (ip) {
        for (int j = 0; j < dim; j++)
            s += a[j] * b[j];
    } else {
        for (int j = 0; j < dim; j++) {
            float t = a[j] - b[j];
            s += t * t;
        }
    }
    return s;
}

static void results_init(bool ip, int64_t nq, int64_t k, float *dis, int64_t *lab)
{
    for (int64_t i = 0; i < nq * k; i++) {
        dis[i] = ip ? -INFINITY : INFINITY;
        lab[i] = -1;
    }
}

/* Scores a block of candidates against every query. */
static void scan_block(const shard_index *ix, int64_t nq, const float *q, int64_t k,
                       int64_t nb, const int64_t *ids, const float *vecs, float *dis,
                       int64_t *lab, int64_t *cnt)
{
    bool ip = ix->metric == SHARD_INDEX_METRIC_IP;
#pragma omp parallel for if (nq > 1) schedule(static)
    for (int64_t a = 0; a < nq; a++) {
        for (int64_t b = 0; b < nb; b++) {
            float s = shard_index_score(ip, q + a * ix->dim, vecs + b * ix->dim, ix->dim);
            shard_index_topk_push(dis + a * k, lab + a * k, k, &cnt[a], ip, s, ids[b]);
        }
    }
}

/* Exact search through the caller's fetch callback over live (and allowed) ids. */
static cr_err exact_scan(shard_index *ix, int64_t nq, const float *q, int64_t k,
                         const shard_index_search_params *p, float *dis, int64_t *lab)
{
    const core *c = &ix->c;
    int64_t *blk = NULL, *cnt = NULL, nb = 0;
    float *vecs = NULL;
    cr_err err = CR_OK;

    if (!p->fetch)
        return cr_error_set(CR_ERR_INVALID,
                            "exact search on a '%s' index needs a fetch callback", ix->factory);
    blk = malloc(EXACT_BLOCK * sizeof *blk);
    vecs = malloc((size_t)EXACT_BLOCK * (size_t)ix->dim * sizeof *vecs);
    cnt = calloc((size_t)nq, sizeof *cnt);
    if (!blk || !vecs || !cnt) {
        err = cr_error_set(CR_ERR_NOMEM, "exact search buffers");
        goto out;
    }
    for (size_t byte = 0; byte < c->bm_bytes; byte++) {
        unsigned bits = c->live[byte];
        if (p->allow)
            bits &= byte < p->allow_bytes ? p->allow[byte] : 0u;
        for (int b = 0; bits && b < 8; b++) {
            if (!((bits >> b) & 1u))
                continue;
            blk[nb++] = (int64_t)byte * 8 + b;
            if (nb == EXACT_BLOCK) {
                err = p->fetch(p->fetch_ctx, blk, (size_t)nb, vecs);
                if (err < 0)
                    goto out;
                scan_block(ix, nq, q, k, nb, blk, vecs, dis, lab, cnt);
                nb = 0;
            }
        }
    }
    if (nb > 0) {
        err = p->fetch(p->fetch_ctx, blk, (size_t)nb, vecs);
        if (err < 0)
            goto out;
        scan_block(ix, nq, q, k, nb, blk, vecs, dis, lab, cnt);
    }
    err = CR_OK;
out:
    free(blk);
    free(vecs);
    free(cnt);
    return err;
}

/* The FAISS search, with the selector the filter and tombstones call for. */
static cr_err faiss_search(shard_index *ix, int64_t nq, const float *q, int64_t k,
                           const shard_index_search_params *p, float *dis, int64_t *lab)
{
    const core *c = &ix->c;
    FaissIndex *target = c->side ? c->side : c->ann;
    FaissIDSelectorBitmap *s_allow = NULL, *s_live = NULL;
    FaissIDSelectorAnd *s_and = NULL;
    FaissIDSelector *sel = NULL;
    FaissSearchParameters *sp = NULL;
    cr_err err = CR_OK;
    int rc = 0;

    if (p->allow) {
        rc = faiss_IDSelectorBitmap_new(&s_allow, p->allow_bytes, p->allow);
        sel = s_allow;
    }
    if (rc == 0 && !c->side && c->ntomb > 0) {
        rc = faiss_IDSelectorBitmap_new(&s_live, c->bm_bytes, c->live);
        sel = s_live;
        if (rc == 0 && s_allow) {
            rc = faiss_IDSelectorAnd_new(&s_and, s_allow, s_live);
            sel = s_and;
        }
    }
    if (rc) {
        err = faiss_fail(rc, "search selector");
        goto out;
    }
    if (c->side || ix->kind == KIND_PLAIN) {
        rc = faiss_SearchParameters_new(&sp, sel);
    } else if (ix->kind == KIND_IVF) {
        size_t nprobe = (size_t)p->nprobe;
        FaissIndexIVF *ivf = find_ivf(c->ann);
        if (nprobe == 0)
            nprobe = ivf ? faiss_IndexIVF_nprobe(ivf) : 1;
        rc = faiss_SearchParametersIVF_new_with(&sp, sel, nprobe, 0);
    } else {
        int ef = p->ef_search > 0 ? p->ef_search : 16;
        if (ef > ix->hnsw_ef_max)
            ef = ix->hnsw_ef_max;
        if (ef < k && k <= ix->hnsw_ef_max)
            ef = (int)k;
        rc = faiss_SearchParametersHNSW_new_with(&sp, sel, ef);
    }
    if (rc) {
        err = faiss_fail(rc, "search parameters");
        goto out;
    }
    rc = faiss_Index_search_with_params(target, nq, q, k, sp, dis, lab);
    if (rc) {
        err = faiss_fail(rc, "index search");
        goto out;
    }
    for (int64_t i = 0; i < nq * k; i++) {
        if (lab[i] < 0)
            dis[i] = ix->metric == SHARD_INDEX_METRIC_IP ? -INFINITY : INFINITY;
    }
out:
    if (sp)
        faiss_SearchParameters_free(sp);
    if (s_and)
        faiss_IDSelector_free(s_and);
    if (s_live)
        faiss_IDSelector_free(s_live);
    if (s_allow)
        faiss_IDSelector_free(s_allow);
    return err;
}

cr_err shard_index_search(shard_index *ix, int64_t nq, const float *queries, int64_t k,
                          const shard_index_search_params *params, float *distances,
                          int64_t *ids)
{
    shard_index_search_params def = shard_index_default_search_params();
    const shard_index_search_params *p = params ? params : &def;
    int saved_threads, threads;
    cr_err err;

    if (k < 1 || nq < 0 || (nq > 0 && (!queries || !distances || !ids)))
        return cr_error_set(CR_ERR_INVALID, "index search: bad arguments (nq %lld, k %lld)",
                            (long long)nq, (long long)k);
    if (nq == 0)
        return CR_OK;
    saved_threads = omp_get_max_threads();
    threads = p->threads > 0 ? p->threads : (nq == 1 ? 1 : saved_threads);
    omp_set_num_threads(threads);

    if (p->nowait && pthread_rwlock_tryrdlock(&ix->rw) != 0) {
        omp_set_num_threads(saved_threads);
        return CR_TIMEOUT; /* an add or removal holds (or waits for) the index */
    }
    if (!p->nowait)
        pthread_rwlock_rdlock(&ix->rw);
    results_init(ix->metric == SHARD_INDEX_METRIC_IP, nq, k, distances, ids);
    if (p->exact && !ix->c.side && !ix->flat)
        err = exact_scan(ix, nq, queries, k, p, distances, ids);
    else
        err = faiss_search(ix, nq, queries, k, p, distances, ids);
    pthread_rwlock_unlock(&ix->rw);

    omp_set_num_threads(saved_threads);
    return err;
}

cr_err shard_index_search_candidates(shard_index *ix, int64_t nq, const float *queries,
                                     int64_t k, int64_t n_cand, const int64_t *cand_ids,
                                     const float *cand_vectors, float *distances, int64_t *ids)
{
    return shard_index_search_candidates_nowait(ix, nq, queries, k, n_cand, cand_ids,
                                                cand_vectors, distances, ids, false);
}

cr_err shard_index_search_candidates_nowait(shard_index *ix, int64_t nq, const float *queries,
                                            int64_t k, int64_t n_cand, const int64_t *cand_ids,
                                            const float *cand_vectors, float *distances,
                                            int64_t *ids, bool nowait)
{
    int64_t *cnt = NULL;
    bool ip = ix->metric == SHARD_INDEX_METRIC_IP;

    if (k < 1 || nq < 0 || n_cand < 0 || (nq > 0 && (!queries || !distances || !ids)) ||
        (n_cand > 0 && (!cand_ids || !cand_vectors)))
        return cr_error_set(CR_ERR_INVALID, "index candidate search: bad arguments");
    if (nq == 0)
        return CR_OK;
    cnt = calloc((size_t)nq, sizeof *cnt);
    if (!cnt)
        return cr_error_set(CR_ERR_NOMEM, "candidate search");
    results_init(ip, nq, k, distances, ids);
    if (nowait && pthread_rwlock_tryrdlock(&ix->rw) != 0) {
        free(cnt);
        return CR_TIMEOUT;
    }
    if (!nowait)
        pthread_rwlock_rdlock(&ix->rw);
    for (int64_t b = 0; b < n_cand; b++) {
        if (!bit_get(ix->c.live, ix->c.bm_bytes, cand_ids[b]))
            continue;
        for (int64_t a = 0; a < nq; a++) {
            float s = shard_index_score(ip, queries + a * ix->dim, cand_vectors + b * ix->dim, ix->dim);
            shard_index_topk_push(distances + a * k, ids + a * k, k, &cnt[a], ip, s, cand_ids[b]);
        }
    }
    pthread_rwlock_unlock(&ix->rw);
    free(cnt);
    return CR_OK;
}

/* ---- rebuild ----------------------------------------------------------------------------- */

cr_err shard_index_builder_add(shard_index_builder *b, int64_t n, const int64_t *ids,
                               const float *vectors)
{
    if (!b || n < 0 || (n > 0 && (!ids || !vectors)))
        return cr_error_set(CR_ERR_INVALID, "index builder add: bad arguments");
    return core_add(b->ix, b->c, NULL, n, ids, vectors);
}

cr_err shard_index_builder_remove(shard_index_builder *b, int64_t n, const int64_t *ids)
{
    if (!b)
        return cr_error_set(CR_ERR_INVALID, "index builder remove: bad arguments");
    return core_remove(b->c, b->ix->removable, n, ids, NULL);
}

void shard_index_rebuild_abort(shard_index_builder **pb)
{
    shard_index_builder *b = pb ? *pb : NULL;
    if (!b)
        return;
    if (b->locked)
        pthread_mutex_unlock(&b->ix->wmu);
    core_free(b->c);
    free(b->c);
    free(b);
    *pb = NULL;
}

/* The fresh core is made under wmu (it clones the trained prototype). A trained core is fed
 * without any index lock, so writers and searches go on with the current one; an untrained
 * one could train itself while being fed, and training sets the prototype: that feed keeps
 * wmu, as the whole rebuild used to. */
cr_err shard_index_rebuild_begin(shard_index *ix, shard_index_feed_fn feed, void *ctx,
                                 shard_index_builder **out)
{
    shard_index_builder *b = calloc(1, sizeof *b);
    cr_err err;
    if (!b || !(b->c = calloc(1, sizeof *b->c))) {
        free(b);
        return cr_error_set(CR_ERR_NOMEM, "index rebuild");
    }
    b->ix = ix;
    if (!feed) {
        shard_index_rebuild_abort(&b);
        return cr_error_set(CR_ERR_INVALID, "index rebuild: no feed callback");
    }
    pthread_mutex_lock(&ix->wmu);
    b->locked = true;
    err = make_ann(ix, &b->c->ann);
    if (err == CR_OK && !faiss_Index_is_trained(b->c->ann))
        err = make_side(ix, &b->c->side);
    if (err == CR_OK && !b->c->side) {
        pthread_mutex_unlock(&ix->wmu);
        b->locked = false;
    }
    if (err == CR_OK)
        err = feed(ctx, b);
    if (err < 0) {
        shard_index_rebuild_abort(&b);
        return err;
    }
    *out = b;
    return CR_OK;
}

cr_err shard_index_rebuild_commit(shard_index_builder **pb, shard_index_feed_fn finish,
                                  void *ctx)
{
    shard_index_builder *b = *pb;
    core old;
    cr_err err = CR_OK;
    if (!b->locked) {
        pthread_mutex_lock(&b->ix->wmu);
        b->locked = true;
    }
    if (finish)
        err = finish(ctx, b);
    if (err < 0) {
        shard_index_rebuild_abort(pb);
        return err;
    }
    pthread_rwlock_wrlock(&b->ix->rw);
    old = b->ix->c;
    b->ix->c = *b->c;
    pthread_rwlock_unlock(&b->ix->rw);
    pthread_mutex_unlock(&b->ix->wmu);
    core_free(&old);
    free(b->c);
    free(b);
    *pb = NULL;
    return CR_OK;
}

cr_err shard_index_rebuild(shard_index *ix, shard_index_feed_fn feed, void *ctx)
{
    shard_index_builder *b = NULL;
    cr_err err = shard_index_rebuild_begin(ix, feed, ctx, &b);
    return err < 0 ? err : shard_index_rebuild_commit(&b, NULL, NULL);
}

/* ---- snapshot ---------------------------------------------------------------------------- */

typedef struct wbuf {
    FILE *f;
    uint64_t h; /* FNV-1a 64 of everything written */
    bool failed;
} wbuf;

static void hash_bytes(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t x = *h;
    for (size_t i = 0; i < n; i++) {
        x ^= s[i];
        x *= 1099511628211ull;
    }
    *h = x;
}

static void w_bytes(wbuf *w, const void *p, size_t n)
{
    if (w->failed || n == 0)
        return;
    hash_bytes(&w->h, p, n);
    if (fwrite(p, 1, n, w->f) != n)
        w->failed = true;
}

static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, sizeof v); }

static void w_blob(wbuf *w, const void *p, size_t n)
{
    w_u64(w, n);
    w_bytes(w, p, n);
}

cr_err shard_index_snapshot(shard_index *ix, const char *path, int64_t high_water)
{
    char tmp[4096];
    unsigned char *blob = NULL;
    size_t blob_len = 0;
    wbuf w = {NULL, 14695981039346656037ull, false};
    cr_err err = CR_OK;
    int rc;
    uint32_t hdr[4];

    if (!path || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return cr_error_set(CR_ERR_INVALID, "snapshot path missing or too long");
    pthread_mutex_lock(&ix->wmu); /* no writer: the core cannot change under us */
    const core *c = &ix->c;
    rc = faiss_write_index_buf(c->side ? c->side : c->ann, &blob_len, &blob);
    if (rc) {
        err = faiss_fail(rc, "serialize index");
        goto out;
    }
    w.f = fopen(tmp, "wb");
    if (!w.f) {
        err = cr_error_set(CR_ERR_IO, "snapshot %s: %s", tmp, strerror(errno));
        goto out;
    }
    w_bytes(&w, SNAP_MAGIC, 8);
    hdr[0] = SNAP_FORMAT;
    hdr[1] = (uint32_t)ix->dim;
    hdr[2] = (uint32_t)ix->metric;
    hdr[3] = c->side ? 1u : 0u;
    w_bytes(&w, hdr, sizeof hdr);
    w_blob(&w, ix->factory, strlen(ix->factory));
    w_u64(&w, (uint64_t)high_water);
    w_u64(&w, (uint64_t)c->nlive);
    w_u64(&w, (uint64_t)c->ntomb);
    w_blob(&w, c->live, c->bm_bytes);
    w_blob(&w, c->tomb, c->bm_bytes);
    w_blob(&w, ix->proto, ix->proto_len);
    w_blob(&w, blob, blob_len);
    uint64_t sum = w.h;
    w_bytes(&w, &sum, sizeof sum);
    if (w.failed || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0) {
        err = cr_error_set(CR_ERR_IO, "snapshot %s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(w.f) != 0) {
        w.f = NULL;
        err = cr_error_set(CR_ERR_IO, "snapshot %s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    w.f = NULL;
    if (rename(tmp, path) != 0) {
        err = cr_error_set(CR_ERR_IO, "snapshot rename to %s: %s", path, strerror(errno));
        goto out;
    }
out:
    if (w.f)
        fclose(w.f);
    if (err)
        unlink(tmp);
    free(blob);
    pthread_mutex_unlock(&ix->wmu);
    return err;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
} rbuf;

static bool r_bytes(rbuf *r, void *out, size_t n)
{
    if (r->len - r->pos < n)
        return false;
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return true;
}

/* A length-prefixed blob, in place. */
static bool r_blob(rbuf *r, const unsigned char **p, size_t *n)
{
    uint64_t len;
    if (!r_bytes(r, &len, sizeof len) || len > r->len - r->pos)
        return false;
    *p = r->p + r->pos;
    *n = (size_t)len;
    r->pos += (size_t)len;
    return true;
}

static cr_err read_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long sz;
    if (!f) {
        if (errno == ENOENT)
            return cr_error_set(CR_NOTFOUND, "snapshot %s does not exist", path);
        return cr_error_set(CR_ERR_IO, "snapshot %s: %s", path, strerror(errno));
    }
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return cr_error_set(CR_ERR_IO, "snapshot %s: cannot size", path);
    }
    buf = malloc(sz > 0 ? (size_t)sz : 1);
    if (!buf) {
        fclose(f);
        return cr_error_set(CR_ERR_NOMEM, "snapshot %s: %ld bytes", path, sz);
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        fclose(f);
        return cr_error_set(CR_ERR_IO, "snapshot %s: read failed", path);
    }
    fclose(f);
    *out = buf;
    *len = (size_t)sz;
    return CR_OK;
}

cr_err shard_index_load(shard_index **out, const char *path, const shard_index_opts *expect,
                        int64_t *high_water)
{
    unsigned char *file = NULL;
    size_t len = 0;
    shard_index *ix = NULL;
    rbuf r;
    char magic[8];
    uint32_t hdr[4];
    uint64_t hw, nlive, ntomb, sum, h = 14695981039346656037ull;
    const unsigned char *fac, *live, *tomb, *proto, *blob;
    size_t fac_len, live_len, tomb_len, proto_len, blob_len;
    FaissIndex *loaded = NULL;
    shard_index_opts o;
    cr_err err;
    int rc;

    if (!path || !expect)
        return cr_error_set(CR_ERR_INVALID, "index load: bad arguments");
    err = read_file(path, &file, &len);
    if (err)
        return err;
    r = (rbuf){file, len, 0};
    if (len < 8 + sizeof sum || memcmp(file, SNAP_MAGIC, 8) != 0) {
        err = cr_error_set(CR_ERR_INDEX, "corrupt snapshot %s: not an index snapshot", path);
        goto out;
    }
    hash_bytes(&h, file, len - sizeof sum);
    memcpy(&sum, file + len - sizeof sum, sizeof sum);
    if (h != sum) {
        err = cr_error_set(CR_ERR_INDEX, "corrupt snapshot %s: checksum mismatch", path);
        goto out;
    }
    r.len = len - sizeof sum;
    if (!r_bytes(&r, magic, 8) || !r_bytes(&r, hdr, sizeof hdr) || !r_blob(&r, &fac, &fac_len) ||
        !r_bytes(&r, &hw, sizeof hw) || !r_bytes(&r, &nlive, sizeof nlive) ||
        !r_bytes(&r, &ntomb, sizeof ntomb) || !r_blob(&r, &live, &live_len) ||
        !r_blob(&r, &tomb, &tomb_len) || !r_blob(&r, &proto, &proto_len) ||
        !r_blob(&r, &blob, &blob_len) || r.pos != r.len || live_len != tomb_len) {
        err = cr_error_set(CR_ERR_INDEX, "corrupt snapshot %s: bad layout", path);
        goto out;
    }
    if (hdr[0] != SNAP_FORMAT) {
        err = cr_error_set(CR_ERR_INDEX, "snapshot %s: format %u, expected %u", path, hdr[0],
                           SNAP_FORMAT);
        goto out;
    }
    if (expect->dim != (int)hdr[1] || (uint32_t)expect->metric != hdr[2] || !expect->factory ||
        strlen(expect->factory) != fac_len || memcmp(expect->factory, fac, fac_len) != 0) {
        err = cr_error_set(CR_ERR_INVALID,
                           "snapshot %s is dim %u metric %s factory '%.*s'; expected dim %d "
                           "metric %s factory '%s'",
                           path, hdr[1], hdr[2] == SHARD_INDEX_METRIC_L2 ? "l2" : "ip",
                           (int)(fac_len < 200 ? fac_len : 200), (const char *)fac, expect->dim,
                           shard_index_metric_name(expect->metric),
                           expect->factory ? expect->factory : "(null)");
        goto out;
    }
    o = *expect;
    o.template_path = NULL;
    err = handle_new(&ix, &o);
    if (err)
        goto out;
    if (proto_len > 0) {
        ix->proto = malloc(proto_len);
        if (!ix->proto) {
            err = cr_error_set(CR_ERR_NOMEM, "snapshot prototype");
            goto out;
        }
        memcpy(ix->proto, proto, proto_len);
        ix->proto_len = proto_len;
    }
    rc = faiss_read_index_buf(blob, blob_len, 0, &loaded);
    if (rc) {
        err = faiss_fail(rc, "corrupt snapshot: index");
        goto out;
    }
    err = check_fits(ix, loaded, "snapshot index");
    if (err)
        goto out;
    if (hdr[3]) { /* buffering: the blob is the side index, the ANN starts fresh */
        ix->c.side = loaded;
        loaded = NULL;
        err = make_ann(ix, &ix->c.ann);
    } else {
        err = wrap_ids(loaded, &ix->c.ann);
        loaded = NULL;
    }
    if (err)
        goto out;
    classify(ix, ix->c.ann);
    if (ix->train_size == 0)
        ix->train_size = auto_train_size(ix->c.ann);
    if (live_len > 0) {
        ix->c.live = malloc(live_len);
        ix->c.tomb = malloc(live_len);
        if (!ix->c.live || !ix->c.tomb) {
            err = cr_error_set(CR_ERR_NOMEM, "snapshot bitmaps");
            goto out;
        }
        memcpy(ix->c.live, live, live_len);
        memcpy(ix->c.tomb, tomb, live_len);
        ix->c.bm_bytes = live_len;
    }
    ix->c.nlive = (int64_t)nlive;
    ix->c.ntomb = (int64_t)ntomb;
    if (high_water)
        *high_water = (int64_t)hw;
out:
    if (loaded)
        faiss_Index_free(loaded);
    free(file);
    if (err) {
        shard_index_close(&ix);
        return err;
    }
    *out = ix;
    return CR_OK;
}

/* ---- stats ------------------------------------------------------------------------------- */

void shard_index_stats_get(shard_index *ix, shard_index_stats *out)
{
    pthread_rwlock_rdlock(&ix->rw);
    out->dim = ix->dim;
    out->metric = ix->metric;
    out->factory = ix->factory;
    out->is_trained = ix->c.side == NULL;
    out->removes_in_place = ix->removable;
    out->ntotal = ix->c.nlive;
    out->buffered = ix->c.side ? faiss_Index_ntotal(ix->c.side) : 0;
    out->tombstones = ix->c.ntomb;
    out->train_size = ix->train_size;
    pthread_rwlock_unlock(&ix->rw);
}

/* ---- offline training (cirrus build) ------------------------------------------------------ */

cr_err shard_index_training_info(const shard_index_opts *opts, bool *needs_training,
                                 int64_t *train_size)
{
    shard_index *ix = NULL;
    cr_err err = shard_index_create(&ix, opts);
    if (err)
        return err;
    *needs_training = ix->c.side != NULL;
    *train_size = ix->train_size;
    shard_index_close(&ix);
    return CR_OK;
}

/* Writes len bytes to path through path.tmp, fsync and rename. */
static cr_err file_put_atomic(const char *path, const unsigned char *buf, size_t len)
{
    char tmp[4096];
    FILE *f;
    int ok;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return cr_error_set(CR_ERR_INVALID, "template path too long");
    if (!(f = fopen(tmp, "wb")))
        return cr_error_set(CR_ERR_IO, "template %s: %s", tmp, strerror(errno));
    ok = fwrite(buf, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        cr_err err = cr_error_set(CR_ERR_IO, "template %s: %s", path, strerror(errno));
        unlink(tmp);
        return err;
    }
    return CR_OK;
}

cr_err shard_index_template_write(const shard_index_opts *opts, int64_t n, const float *x,
                                  int threads, const char *path)
{
    FaissIndex *raw = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    int saved = omp_get_max_threads(), rc;
    cr_err err;

    if (!opts || opts->dim < 1 || !opts->factory || n < 1 || !x || !path)
        return cr_error_set(CR_ERR_INVALID, "template: bad arguments");
    rc = factory_index(&raw, opts->dim, opts->factory, opts->metric);
    if (rc)
        return faiss_fail(rc, "index factory");
    if (faiss_Index_is_trained(raw)) {
        faiss_Index_free(raw);
        return cr_error_set(CR_ERR_INVALID, "index %s needs no training", opts->factory);
    }
    if (threads > 0)
        omp_set_num_threads(threads);
    rc = faiss_Index_train(raw, (idx_t)n, x);
    omp_set_num_threads(saved);
    err = rc ? faiss_fail(rc, "train index") : CR_OK;
    if (!err && (rc = faiss_write_index_buf(raw, &len, &buf)))
        err = faiss_fail(rc, "serialize trained index");
    if (!err)
        err = file_put_atomic(path, buf, len);
    free(buf);
    faiss_Index_free(raw);
    return err;
}
