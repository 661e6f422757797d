/* engine.c — the shard engine (engine.h): open and close, writes, searches, gets, snapshots,
 * stats and scans. The index backlog and the indexer thread are in backlog.c, the replay at
 * open and index rebuilds in replay.c; what they share is in engine_impl.h. */
#include "shard/engine.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/daemon.h" /* cr_daemon_release_memory */
#include "common/hlc.h"
#include "common/log.h"
#include "common/validate.h"
#include "shard/backup.h"
#include "shard/attrs.h"
#include "shard/engine_impl.h"
#include "shard/schema.h" /* shard_engine_attrs */
#include "shard/store.h"

#define EXACT_FALLBACK_MAX 200000 /* matches scanned exactly when an ANN search falls short */
#define SNAPSHOT_META_KEY "snapshot"
#define SEARCH_RETRIES 2        /* index searches redone before one holds the queue across */

shard_engine_opts shard_engine_default_opts(void)
{
    shard_engine_opts o;
    memset(&o, 0, sizeof o);
    o.metric = SHARD_INDEX_METRIC_IP;
    o.exact_fraction = 0.02;
    o.exact_max = 20000;
    o.index_backlog_bytes = 256u << 20;
    return o;
}

/* ---- vectors ---------------------------------------------------------------------------- */

static float l2_norm(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return (float)sqrt(s);
}

/* For METRIC_IP the index sees unit vectors; zero vectors cannot be ranked by cosine. */
void shard_engine_normalize_rows(float *x, size_t rows, size_t dim)
{
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * dim, n = l2_norm(v, dim);
        if (n > 0)
            for (size_t i = 0; i < dim; i++)
                v[i] /= n;
    }
}

static cr_err fetch_vectors(void *ctx, const int64_t *ids, size_t n, float *out)
{
    shard_engine *e = ctx;
    cr_err rc = shard_store_get_vectors(e->store, ids, n, out, NULL);
    if (rc < 0)
        return rc;
    if (e->metric == SHARD_INDEX_METRIC_IP)
        shard_engine_normalize_rows(out, n, (size_t)e->dim);
    return CR_OK;
}

/* ---- attribute blobs: the store's format (store.h), decoded for the attribute index ---- */

cr_err shard_engine_attrs_index(shard_engine *e, int64_t id, const void *blob, size_t len)
{
    shard_attr *a = NULL;
    size_t n = 0;
    cr_err rc = shard_store_attrs_decode(blob, len, &a, &n);
    if (rc)
        return cr_error_wrap(rc, "item %lld", (long long)id);
    rc = shard_attrs_set(e->attrs, (uint64_t)id, a, n);
    free(a);
    return rc;
}

/* One block holding an engine value of `head` bytes, then its vector (dim floats, when vec),
 * its attributes (decoded from the blob, when blob_len) and its id: what shard_item and
 * shard_hit hand out, freed with one free(). */
typedef struct block_parts {
    const char **id;
    const float **vector;
    const shard_attr **attrs;
    size_t *n_attrs;
} block_parts;

static void *value_block(size_t head, const char *ext, size_t ext_len, const float *vec,
                         size_t dim, const void *blob, size_t blob_len, const block_parts *p,
                         cr_err *rc)
{
    shard_attr *a = NULL;
    size_t n = 0, h = (head + 15) / 16 * 16, vs = vec ? (dim * sizeof(float) + 15) / 16 * 16 : 0;
    size_t as;
    char *mem;
    *rc = shard_store_attrs_decode(blob, blob_len, &a, &n);
    if (*rc)
        return NULL;
    as = n ? shard_attrs_block_size(a, n) : 0;
    mem = calloc(1, h + vs + as + ext_len + 1);
    if (!mem) {
        free(a);
        *rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (vec) {
        memcpy(mem + h, vec, dim * sizeof(float));
        *p->vector = (const float *)(mem + h);
    }
    if (n)
        *p->attrs = shard_attrs_place(a, n, mem + h + vs);
    *p->n_attrs = n;
    memcpy(mem + h + vs + as, ext, ext_len);
    *p->id = mem + h + vs + as;
    free(a);
    return mem;
}

static shard_item *item_block(const char *ext, size_t ext_len, uint64_t version,
                              const float *vec, size_t dim, const void *blob, size_t blob_len,
                              cr_err *rc)
{
    shard_item tmp = {0}, *it;
    block_parts p = {&tmp.id, &tmp.vector, &tmp.attrs, &tmp.n_attrs};
    it = value_block(sizeof *it, ext, ext_len, vec, dim, blob, blob_len, &p, rc);
    if (!it)
        return NULL;
    *it = tmp;
    it->version = version;
    it->dim = vec ? dim : 0;
    return it;
}

/* ---- open and close --------------------------------------------------------------------- */

static cr_err store_open(shard_engine *e, const char *dir)
{
    /* An existing shard is checked against what the caller asked for, not the defaults. */
    shard_store_params expect = {e->o.dim, e->o.metric_set ? (shard_store_metric)e->o.metric
                                                           : SHARD_STORE_METRIC_ANY,
                                 e->o.factory};
    shard_store_params create = {e->o.dim, (shard_store_metric)e->o.metric, e->o.factory};
    shard_store_options so = shard_store_default_options();
    cr_err rc;
    so.map_size = e->o.map_size;
    rc = shard_store_open(&e->store, dir, &expect, &so);
    if (rc == CR_NOTFOUND && e->o.create) {
        if (e->o.dim <= 0 || !e->o.factory)
            return cr_error_set(CR_ERR_INVALID, "creating a shard needs --dim and --index");
        rc = shard_store_create(&e->store, dir, &create, &so);
    } else if (rc == CR_NOTFOUND) {
        return cr_error_set(CR_ERR_INVALID, "%s holds no shard (create one with --create)", dir);
    }
    return rc;
}

cr_err shard_engine_open(shard_engine **out, const char *dir, const shard_engine_opts *o)
{
    shard_engine *e = calloc(1, sizeof *e);
    shard_replay_stats r = {0};
    const shard_store_params *p;
    uint64_t t0 = cr_clock_mono_ms();
    int64_t hw = 0;
    cr_err rc;

    if (!e)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    e->o = *o;
    e->start_ms = t0;
    cr_hlc_init(&e->hlc);
    pthread_mutex_init(&e->ixmu, NULL);
    e->bl.stop = 0;
    shard_backlog_faults_load(e);
    rc = store_open(e, dir);
    if (rc)
        goto out;
    p = shard_store_params_get(e->store);
    e->dim = p->dim;
    e->metric = (shard_index_metric)p->metric;
    snprintf(e->factory, sizeof e->factory, "%s", p->factory);
    snprintf(e->snap_path, sizeof e->snap_path, "%s/index.snap", dir);
    rc = shard_attrs_new(&e->attrs);
    if (!rc)
        rc = shard_replay_run(e, &r);
    if (rc)
        goto out;
    hw = r.high_water;
    cr_hlc_observe(&e->hlc, r.max_version);
    {
        int64_t next_id = 0;
        rc = shard_store_next_id(e->store, &next_id);
        if (!rc)
            rc = shard_backlog_start(e);
        if (rc)
            goto out;
        atomic_store(&e->indexed_hw, next_id);
    }
    atomic_store(&e->snapshot_hw, hw);
    atomic_store(&e->dirty, r.added);
    {
        int64_t info[2];
        size_t len = 0;
        if (hw > 0 &&
            shard_store_meta_get(e->store, SNAPSHOT_META_KEY, info, sizeof info, &len) == CR_OK &&
            len == sizeof info)
            atomic_store(&e->last_snapshot_ms, info[0]);
    }
    CR_INFO("shard", "opened %s: %llu items, dim %d, %s, %s; snapshot at id %lld, replayed %llu, "
                     "ready in %llu ms",
            dir, (unsigned long long)r.live, e->dim, shard_index_metric_name(e->metric),
            e->factory, (long long)hw, (unsigned long long)r.added,
            (unsigned long long)(cr_clock_mono_ms() - t0));
    *out = e;
    e = NULL;
out:
    shard_engine_close(&e);
    return rc;
}

void shard_engine_close(shard_engine **pp)
{
    shard_engine *e = pp ? *pp : NULL;
    if (!e)
        return;
    shard_rebuild_stop(e);
    shard_backlog_stop(e);
    shard_index_close(&e->index);
    shard_attrs_free(&e->attrs);
    pthread_mutex_destroy(&e->ixmu);
    shard_store_close(&e->store);
    free(e);
    *pp = NULL;
}

cr_err shard_engine_backup(shard_engine *e, const char *dir, uint64_t *bytes)
{
    return shard_backup_write(e->store, e->snap_path, dir, bytes);
}

int shard_engine_dim(const shard_engine *e)
{
    return e->dim;
}

shard_attrs *shard_engine_attrs(shard_engine *e)
{
    return e->attrs;
}

shard_index_metric shard_engine_metric(const shard_engine *e)
{
    return e->metric;
}

const char *shard_engine_factory(const shard_engine *e)
{
    return e->factory;
}

uint64_t shard_engine_dirty(const shard_engine *e)
{
    return atomic_load(&e->dirty);
}

/* ---- writes ----------------------------------------------------------------------------- */

static cr_err validate_op(shard_engine *e, const shard_engine_write_op *op)
{
    const shard_item *it = op->item;
    cr_err rc;
    if (!it)
        return cr_error_set(CR_ERR_INVALID, "missing item");
    rc = cr_validate_id(it->id);
    if (rc || op->is_delete)
        return rc;
    if (!it->vector || it->dim == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: vector is missing", it->id);
    if (it->dim != (size_t)e->dim)
        return cr_error_set(CR_ERR_INVALID, "%s: vector has %zu dimensions, expected %d", it->id,
                            it->dim, e->dim);
    rc = cr_validate_finite(it->vector, it->dim, it->id);
    if (rc)
        return rc;
    if (e->metric == SHARD_INDEX_METRIC_IP && l2_norm(it->vector, (size_t)e->dim) == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: zero vector cannot be ranked by cosine",
                            it->id);
    if (it->n_attrs && !it->attrs)
        return cr_error_set(CR_ERR_INVALID, "%s: attributes missing", it->id);
    for (size_t i = 0; i < it->n_attrs; i++) {
        rc = shard_attr_check(&it->attrs[i]);
        if (rc)
            return cr_error_wrap(rc, "%s", it->id);
    }
    /* A kept image is served back as it is: only formats the encoder decodes, bounded. */
    if (e->o.keep_images && it->image_len > SHARD_STORE_IMAGE_MAX)
        return cr_error_set(CR_ERR_INVALID, "%s: image of %zu bytes (at most %u are kept)",
                            it->id, it->image_len, SHARD_STORE_IMAGE_MAX);
    if (e->o.keep_images && it->image_len && !cr_image_type(it->image, it->image_len))
        return cr_error_set(CR_ERR_INVALID, "%s: image is not PNG, JPEG, WebP, GIF or BMP",
                            it->id);
    return CR_OK;
}

/* After the commit: new ids join the index and the attribute index, killed ids leave. */
static cr_err apply_to_indexes(shard_engine *e, const shard_store_op *sops,
                               const shard_store_result *sres, size_t n)
{
    int64_t *add_ids = malloc((n ? n : 1) * sizeof *add_ids);
    int64_t *del_ids = malloc((n ? n : 1) * sizeof *del_ids);
    float *vecs = malloc((n ? n : 1) * (size_t)e->dim * sizeof *vecs);
    size_t n_add = 0, n_del = 0;
    cr_err rc = CR_OK;

    if (!add_ids || !del_ids || !vecs) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (sres[i].new_id >= 0) {
            memcpy(vecs + n_add * (size_t)e->dim, sops[i].vector, (size_t)e->dim * sizeof *vecs);
            add_ids[n_add++] = sres[i].new_id;
            if (shard_engine_attrs_index(e, sres[i].new_id, sops[i].attrs, sops[i].attrs_len))
                CR_WARN("shard", "attributes of %.*s: %s", (int)sops[i].ext_len, sops[i].ext_id,
                        cr_error_message());
        }
        if (sres[i].old_id >= 0)
            del_ids[n_del++] = sres[i].old_id;
    }
    if (e->metric == SHARD_INDEX_METRIC_IP)
        shard_engine_normalize_rows(vecs, n_add, (size_t)e->dim);
    /* Adds first: an id added and killed in the same batch must be queued to be killed.
     * Room was reserved before the commit; without an indexer thread the writer indexes. */
    if (n_add && shard_backlog_append(e, n_add, add_ids, vecs))
        CR_ERROR("shard", "%zu committed items not queued for the index (%s): searchable "
                          "after the next open", n_add, cr_error_message());
    else if (n_add && !e->bl.running && shard_backlog_index_on_writer(e) < 0)
        CR_WARN("shard", "index add on the writer: %s (the items stay queued, searched "
                         "exactly; retried)", cr_error_message());
    for (size_t i = 0; i < n_del; i++)
        shard_attrs_remove(e->attrs, (uint64_t)del_ids[i]);
    if (!rc && n_del) {
        /* Under ixmu the indexer is not between taking queued items and dequeuing them, so an
         * id is either still queued (marked dead there) or in the index (removed). */
        size_t n_idx = 0;
        shard_engine_ixmu_lock(e);
        for (size_t i = 0; i < n_del; i++) {
            if (del_ids[i] >= atomic_load(&e->indexed_hw))
                shard_backlog_kill(&e->bl, del_ids[i]);
            else
                del_ids[n_idx++] = del_ids[i];
        }
        if (n_idx)
            rc = shard_index_remove(e->index, (int64_t)n_idx, del_ids, NULL);
        if (n_idx && atomic_load(&e->rb.active))
            shard_rebuild_note_removed(e, del_ids, n_idx);
        pthread_mutex_unlock(&e->ixmu);
    }
    atomic_fetch_add(&e->dirty, n_add + n_del);
out:
    free(add_ids);
    free(del_ids);
    free(vecs);
    return rc;
}

cr_err shard_engine_write(shard_engine *e, const shard_engine_write_op *ops, size_t n,
                          shard_engine_write_result *results)
{
    shard_store_op *sops = calloc(n ? n : 1, sizeof *sops);
    shard_store_result *sres = calloc(n ? n : 1, sizeof *sres);
    size_t *where = calloc(n ? n : 1, sizeof *where);
    uint8_t **blobs = calloc(n ? n : 1, sizeof *blobs);
    size_t m = 0;
    cr_err rc = CR_OK;

    if (!sops || !sres || !where || !blobs) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const shard_item *it = ops[i].item;
        shard_store_op *s = &sops[m];
        results[i].message[0] = '\0';
        results[i].version = 0;
        results[i].status = validate_op(e, &ops[i]);
        if (results[i].status) {
            snprintf(results[i].message, sizeof results[i].message, "%s", cr_error_message());
            continue;
        }
        s->kind = ops[i].is_delete ? SHARD_STORE_DELETE : SHARD_STORE_UPSERT;
        s->ext_id = it->id;
        s->ext_len = strlen(it->id);
        if (it->version)
            cr_hlc_observe(&e->hlc, it->version);
        s->version = it->version ? it->version : cr_hlc_next(&e->hlc);
        if (!s->version) { /* the clock is exhausted: refuse rather than wrap (hlc.h) */
            results[i].status = cr_error_set(CR_ERR_INVALID, "%s: no version left", it->id);
            snprintf(results[i].message, sizeof results[i].message, "%s", cr_error_message());
            continue;
        }
        results[i].version = s->version;
        if (!ops[i].is_delete) {
            s->vector = it->vector;
            s->dim = (size_t)e->dim;
            rc = shard_store_attrs_encode(it->attrs, it->n_attrs, &blobs[m], &s->attrs_len);
            if (rc)
                goto out;
            s->attrs = blobs[m];
            if (e->o.keep_images) { /* else the bytes the wire carried are dropped here */
                s->image = it->image;
                s->image_len = it->image ? it->image_len : 0;
            }
        }
        where[m++] = i;
    }
    {
        size_t n_up = 0;
        for (size_t j = 0; j < m; j++)
            n_up += sops[j].kind == SHARD_STORE_UPSERT;
        rc = n_up ? shard_backlog_room(e, n_up) : CR_OK; /* before the commit: a refused
                                                             write changes nothing */
    }
    if (rc)
        goto out;
    rc = shard_store_write(e->store, sops, m, sres);
    if (rc)
        goto out;
    for (size_t j = 0; j < m; j++) {
        shard_engine_write_result *r = &results[where[j]];
        r->status = sres[j].status;
        if (sres[j].status == CR_STALE)
            snprintf(r->message, sizeof r->message, "a newer version is stored");
        else if (sres[j].status == CR_NOTFOUND)
            snprintf(r->message, sizeof r->message, "no such item");
        else if (sres[j].status < 0)
            snprintf(r->message, sizeof r->message, "rejected by the store");
    }
    /* The commit is durable; index trouble now is logged, not reported as a lost write:
     * the next restart rebuilds the index from the store. */
    if (apply_to_indexes(e, sops, sres, m))
        CR_ERROR("shard", "index update after commit: %s", cr_error_message());
out:
    for (size_t j = 0; blobs && j < n; j++)
        free(blobs[j]);
    free(blobs);
    free(where);
    free(sres);
    free(sops);
    return rc;
}

/* ---- search ----------------------------------------------------------------------------- */

uint64_t shard_engine_count_found(const int64_t *ids, uint32_t k)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < k; i++)
        n += ids[i] >= 0;
    return n;
}

static cr_err search_candidates(shard_engine *e, const float *q, uint32_t k,
                                const uint64_t *bits, uint64_t limit, uint64_t matches,
                                bool nowait, float *dist, int64_t *ids)
{
    int64_t *cand = malloc((matches ? matches : 1) * sizeof *cand);
    float *vecs = malloc((matches ? matches : 1) * (size_t)e->dim * sizeof *vecs);
    size_t n = 0;
    cr_err rc;
    if (!cand || !vecs) {
        free(cand);
        free(vecs);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (uint64_t w = 0; w < (limit + 63) / 64 && n < matches; w++) {
        uint64_t word = bits[w];
        while (word) {
            cand[n++] = (int64_t)(w * 64 + (uint64_t)__builtin_ctzll(word));
            word &= word - 1;
        }
    }
    rc = fetch_vectors(e, cand, n, vecs);
    if (!rc)
        rc = shard_index_search_candidates_nowait(e->index, 1, q, k, (int64_t)n, cand, vecs,
                                                  dist, ids, nowait);
    free(cand);
    free(vecs);
    return rc;
}

/* The queue's read lock; with `nowait` CR_TIMEOUT rather than wait (a writer holds it or
 * waits for it). */
static cr_err queue_rdlock(backlog *b, bool nowait)
{
    if (!nowait) {
        pthread_rwlock_rdlock(&b->rw);
        return CR_OK;
    }
    return pthread_rwlock_tryrdlock(&b->rw) == 0 ? CR_OK : CR_TIMEOUT;
}

/* Runs `part` (a search of the index) and returns with the queue read-locked for the
 * caller's scan of it, so that every item is seen by one or the other. The indexer dequeues
 * items only once the index holds them: if no dequeue happened since before the index
 * search, whatever it missed is still queued. Otherwise the search runs again, and the last
 * attempt holds the lock across it. Not holding it is what keeps the writer's appends (and
 * so acknowledgements) from queueing behind a search that waits for an index add. On an
 * error the lock is not held. */
static cr_err search_then_lock(shard_engine *e, bool nowait, cr_err (*part)(void *), void *ctx)
{
    backlog *b = &e->bl;
    for (int attempt = 0;; attempt++) {
        uint64_t seen = atomic_load(&b->moved);
        cr_err rc;
        if (attempt == SEARCH_RETRIES) {
            rc = queue_rdlock(b, nowait);
            if (rc)
                return rc;
            rc = part(ctx);
            if (rc)
                pthread_rwlock_unlock(&b->rw);
            return rc;
        }
        rc = part(ctx);
        if (!rc)
            rc = queue_rdlock(b, nowait);
        if (rc || atomic_load(&b->moved) == seen)
            return rc;
        pthread_rwlock_unlock(&b->rw);
    }
}

/* One query's index part: unfiltered, or filtered (bits over ids < next_id). */
typedef struct one_search {
    shard_engine *e;
    const float *query;
    uint32_t k;
    const uint64_t *bits;
    int64_t next_id;
    uint64_t matches, live;
    shard_index_search_params p;
    float *dist;
    int64_t *ids;
} one_search;

static cr_err one_search_index(void *arg)
{
    one_search *o = arg;
    shard_engine *e = o->e;
    shard_index_search_params p = o->p; /* a copy: widening changes it */
    uint64_t want;
    cr_err rc;
    if (o->bits && o->matches <= e->o.exact_max &&
        (double)o->matches <= e->o.exact_fraction * (double)o->live)
        return search_candidates(e, o->query, o->k, o->bits, (uint64_t)o->next_id, o->matches,
                                 p.nowait, o->dist, o->ids);
    if (o->bits) {
        p.allow = (const uint8_t *)o->bits; /* little-endian words read as bytes: same bits */
        p.allow_bytes = (size_t)((o->next_id + 63) / 64) * 8;
    }
    rc = shard_index_search(e->index, 1, o->query, o->k, &p, o->dist, o->ids);
    if (rc || !o->bits)
        return rc;
    /* Graph and cell searches under a selector can come back short (HNSW visits ef nodes,
     * most of which a filter may reject). A filtered page is never left short while matches
     * remain: widen the search, and past that scan the matches exactly. */
    want = o->matches < o->k ? o->matches : o->k;
    if (shard_engine_count_found(o->ids, o->k) < want) {
        p.ef_search = p.ef_search > 0 ? p.ef_search * 8 : 256;
        p.nprobe = p.nprobe > 0 ? p.nprobe * 8 : 64;
        rc = shard_index_search(e->index, 1, o->query, o->k, &p, o->dist, o->ids);
    }
    if (!rc && shard_engine_count_found(o->ids, o->k) < want && o->matches <= EXACT_FALLBACK_MAX)
        rc = search_candidates(e, o->query, o->k, o->bits, (uint64_t)o->next_id, o->matches,
                               p.nowait, o->dist, o->ids);
    return rc;
}

cr_err shard_engine_search(shard_engine *e, const shard_engine_query *q, shard_engine_hit *hits,
                           size_t *n_hits)
{
    one_search o = {.e = e, .k = q->k, .p = shard_index_default_search_params()};
    float *query = NULL, *dist = NULL;
    int64_t *ids = NULL;
    uint64_t *bits = NULL;
    cr_err rc;

    *n_hits = 0;
    rc = cr_validate_k(q->k, CR_MAX_K);
    if (!rc)
        rc = q->vector ? cr_validate_finite(q->vector, (size_t)e->dim, "query vector")
                       : cr_error_set(CR_ERR_INVALID, "query vector missing");
    if (rc)
        return rc;
    query = malloc((size_t)e->dim * sizeof *query);
    dist = malloc(q->k * sizeof *dist);
    ids = malloc(q->k * sizeof *ids);
    if (!query || !dist || !ids) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(query, q->vector, (size_t)e->dim * sizeof *query);
    if (e->metric == SHARD_INDEX_METRIC_IP) {
        if (l2_norm(query, (size_t)e->dim) == 0) {
            rc = cr_error_set(CR_ERR_INVALID, "query vector is zero");
            goto out;
        }
        shard_engine_normalize_rows(query, 1, (size_t)e->dim);
    }
    o.p.nprobe = (int)q->nprobe;
    o.p.ef_search = (int)q->ef_search;
    o.p.exact = q->exact;
    o.p.threads = q->threads > 0 ? q->threads : 1;
    o.p.fetch = fetch_vectors;
    o.p.fetch_ctx = e;
    o.p.nowait = q->nowait;
    if (q->filter) {
        rc = shard_store_next_id(e->store, &o.next_id);
        if (!rc)
            rc = shard_attrs_eval(e->attrs, q->filter, (uint64_t)o.next_id, &bits, &o.matches);
        if (rc || o.matches == 0)
            goto out;
        o.live = shard_attrs_count_live(e->attrs);
        o.bits = bits;
    }
    o.query = query;
    o.dist = dist;
    o.ids = ids;
    rc = search_then_lock(e, q->nowait, one_search_index, &o);
    if (rc)
        goto out;
    shard_backlog_scan(e, query, q->k, bits, (uint64_t)o.next_id, dist, ids);
    pthread_rwlock_unlock(&e->bl.rw);
    for (uint32_t i = 0; i < q->k; i++) {
        if (ids[i] < 0)
            continue;
        hits[*n_hits].id = ids[i];
        hits[*n_hits].score = dist[i];
        (*n_hits)++;
    }
out:
    free(bits);
    free(query);
    free(dist);
    free(ids);
    return rc;
}

/* A batch's index part: nq queries in one call. */
typedef struct many_search {
    shard_engine *e;
    const float *q;
    size_t nq, k;
    const shard_index_search_params *p;
    float *dist;
    int64_t *ids;
} many_search;

static cr_err many_search_index(void *arg)
{
    many_search *m = arg;
    return shard_index_search(m->e->index, (int64_t)m->nq, m->q, (int64_t)m->k, m->p, m->dist,
                              m->ids);
}

cr_err shard_engine_search_many(shard_engine *e, const float *queries, size_t nq,
                                const shard_engine_query *common, shard_engine_hit *hits,
                                size_t *n_hits)
{
    shard_index_search_params p = shard_index_default_search_params();
    size_t dim = (size_t)e->dim, k = common->k;
    float *q = malloc(nq * dim * sizeof *q), *dist = malloc(nq * k * sizeof *dist);
    int64_t *ids = malloc(nq * k * sizeof *ids);
    many_search m = {e, q, nq, k, &p, dist, ids};
    cr_err rc = cr_validate_k(common->k, CR_MAX_K);

    if (!rc && (!q || !dist || !ids))
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = cr_validate_finite(queries, nq * dim, "query vectors");
    if (rc)
        goto out;
    memcpy(q, queries, nq * dim * sizeof *q);
    if (e->metric == SHARD_INDEX_METRIC_IP) {
        for (size_t i = 0; i < nq; i++)
            if (l2_norm(q + i * dim, dim) == 0) {
                rc = cr_error_set(CR_ERR_INVALID, "query %zu is a zero vector", i);
                goto out;
            }
        shard_engine_normalize_rows(q, nq, dim);
    }
    p.nprobe = (int)common->nprobe;
    p.ef_search = (int)common->ef_search;
    p.exact = common->exact;
    p.threads = common->threads > 0 ? common->threads : 0;
    p.fetch = fetch_vectors;
    p.fetch_ctx = e;
    p.nowait = common->nowait;
    rc = search_then_lock(e, common->nowait, many_search_index, &m);
    if (rc)
        goto out;
    for (size_t i = 0; i < nq; i++)
        shard_backlog_scan(e, q + i * dim, (uint32_t)k, NULL, 0, dist + i * k, ids + i * k);
    pthread_rwlock_unlock(&e->bl.rw);
    for (size_t i = 0; i < nq; i++) {
        n_hits[i] = 0;
        for (size_t j = 0; j < k; j++)
            if (ids[i * k + j] >= 0) {
                hits[i * k + n_hits[i]].id = ids[i * k + j];
                hits[i * k + n_hits[i]].score = dist[i * k + j];
                n_hits[i]++;
            }
    }
out:
    free(q);
    free(dist);
    free(ids);
    return rc;
}

/* An item by external id with its attribute blob (malloc'd into *blob). */
static cr_err read_attrs(shard_engine *e, const char *ext_id, shard_store_item *item, float *vec,
                         uint8_t **blob)
{
    uint8_t small[2048];
    size_t len = strlen(ext_id);
    cr_err rc;
    *blob = NULL;
    rc = shard_store_get(e->store, ext_id, len, item, vec, small, sizeof small);
    if (rc == CR_ERR_INVALID && item->attrs_len > sizeof small) {
        *blob = malloc(item->attrs_len);
        if (!*blob)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        return shard_store_get(e->store, ext_id, len, item, vec, *blob, item->attrs_len);
    }
    if (rc == CR_OK && item->attrs_len) {
        *blob = malloc(item->attrs_len);
        if (!*blob)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        memcpy(*blob, small, item->attrs_len);
    }
    return rc;
}

cr_err shard_engine_hits_fill(shard_engine *e, const shard_engine_hit *hits, size_t n,
                              int with_attrs, int with_vector, shard_hit **out, size_t *n_out)
{
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    shard_store_item *items = malloc((n ? n : 1) * sizeof *items);
    cr_err *status = malloc((n ? n : 1) * sizeof *status);
    void **blobs = with_attrs ? calloc(n ? n : 1, sizeof *blobs) : NULL;
    float *vecs = with_vector ? malloc((n ? n : 1) * (size_t)e->dim * sizeof *vecs) : NULL;
    cr_err rc = CR_OK;

    *n_out = 0;
    if (!ids || !items || !status || (with_attrs && !blobs) || (with_vector && !vecs)) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = hits[i].id;
    rc = shard_store_get_many_by_id(e->store, ids, n, items, status, blobs, vecs);
    for (size_t i = 0; !rc && i < n; i++) {
        shard_hit tmp = {0}, *h;
        block_parts p = {&tmp.id, &tmp.vector, &tmp.attrs, &tmp.n_attrs};
        if (status[i] != CR_OK)
            continue; /* died since the search */
        h = value_block(sizeof *h, items[i].ext_id, items[i].ext_len,
                        with_vector ? vecs + i * (size_t)e->dim : NULL, (size_t)e->dim,
                        with_attrs ? blobs[i] : NULL, with_attrs ? items[i].attrs_len : 0, &p,
                        &rc);
        if (!h) {
            if (rc == CR_ERR_STORE)
                cr_error_wrap(rc, "%s", items[i].ext_id);
            break;
        }
        *h = tmp;
        h->score = hits[i].score;
        h->dim = with_vector ? (size_t)e->dim : 0;
        out[(*n_out)++] = h;
    }
out:
    for (size_t i = 0; blobs && i < n; i++)
        free(blobs[i]);
    free(blobs);
    free(vecs);
    free(ids);
    free(items);
    free(status);
    return rc;
}

cr_err shard_engine_get_image(shard_engine *e, const char *ext_id, void **image, size_t *len)
{
    return shard_store_get_image(e->store, ext_id, ext_id ? strlen(ext_id) : 0, image, len);
}

cr_err shard_engine_get(shard_engine *e, const char *ext_id, int with_vector,
                        shard_item **out)
{
    shard_store_item item;
    uint8_t *blob = NULL;
    float *vec = malloc((size_t)e->dim * sizeof *vec);
    shard_item *it = NULL;
    cr_err rc;

    if (!vec)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rc = cr_validate_id(ext_id);
    if (!rc)
        rc = read_attrs(e, ext_id, &item, vec, &blob);
    if (rc)
        goto out;
    it = item_block(ext_id, strlen(ext_id), item.version, with_vector ? vec : NULL,
                    (size_t)e->dim, blob, item.attrs_len, &rc);
    if (!it) {
        if (rc == CR_ERR_STORE)
            cr_error_wrap(rc, "%s", ext_id);
        goto out;
    }
    *out = it;
out:
    free(blob);
    free(vec);
    return rc;
}

/* ---- snapshots, stats ----------------------------------------------------------------- */

static cr_err snapshot_locked(shard_engine *e, shard_snapshot_info *out)
{
    uint64_t t0 = cr_clock_mono_ms();
    int64_t next_id, info[2];
    struct stat st;
    cr_err rc;
    /* The snapshot covers what the index holds; queued items replay from the store. */
    next_id = atomic_load(&e->indexed_hw);
    rc = shard_index_snapshot(e->index, e->snap_path, next_id);
    if (rc)
        return rc;
    info[0] = cr_clock_unix_ms();
    info[1] = next_id;
    rc = shard_store_meta_set(e->store, SNAPSHOT_META_KEY, info, sizeof info);
    if (rc)
        return rc;
    atomic_store(&e->last_snapshot_ms, info[0]);
    atomic_store(&e->snapshot_hw, next_id);
    atomic_store(&e->dirty, 0);
    if (out) {
        out->high_water = (uint64_t)next_id;
        out->bytes = stat(e->snap_path, &st) == 0 ? (uint64_t)st.st_size : 0;
        out->duration_ms = cr_clock_mono_ms() - t0;
    }
    CR_INFO("shard", "snapshot at id %lld in %llu ms", (long long)next_id,
            (unsigned long long)(cr_clock_mono_ms() - t0));
    return CR_OK;
}

cr_err shard_engine_snapshot(shard_engine *e, shard_snapshot_info *out)
{
    cr_err rc;
    shard_engine_ixmu_lock(e);
    rc = snapshot_locked(e, out);
    pthread_mutex_unlock(&e->ixmu);
    cr_daemon_release_memory(); /* the serialized copy of the index */
    return rc;
}

cr_err shard_engine_snapshot_if_idle(shard_engine *e)
{
    cr_err rc;
    if (pthread_mutex_trylock(&e->ixmu) != 0)
        return CR_TIMEOUT;
    rc = snapshot_locked(e, NULL);
    pthread_mutex_unlock(&e->ixmu);
    cr_daemon_release_memory();
    return rc;
}

cr_err shard_engine_stats(shard_engine *e, shard_stats *out)
{
    shard_store_stats ss;
    shard_index_stats is;
    struct stat st;
    cr_err rc = shard_store_stats_get(e->store, &ss);
    if (rc)
        return rc;
    shard_index_stats_get(e->index, &is);
    memset(out, 0, sizeof *out);
    out->count = ss.live;
    out->dim = (uint32_t)e->dim;
    out->metric = (int)e->metric;
    out->index = e->factory;
    out->trained = is.is_trained;
    out->bytes_on_disk = ss.file_bytes + (stat(e->snap_path, &st) == 0 ? (uint64_t)st.st_size : 0);
    out->last_snapshot_unix_ms = atomic_load(&e->last_snapshot_ms);
    out->snapshot_high_water = (uint64_t)atomic_load(&e->snapshot_hw);
    out->uptime_s = (cr_clock_mono_ms() - e->start_ms) / 1000;
    out->tombstones = (uint64_t)is.tombstones;
    out->max_version = cr_hlc_last(&e->hlc); /* >= every stored version: seeds coordinators */
    out->unindexed = shard_engine_index_backlog(e);
    return CR_OK;
}

/* ---- scan (replica repair) ---------------------------------------------------------------- */

typedef struct scan_ctx {
    shard_engine *e;
    shard_scan_page *out;
    uint32_t limit;
    int with_vector;
    int64_t last_id;
    cr_err rc;
} scan_ctx;

static cr_err scan_item(const shard_store_view *v, void *arg)
{
    scan_ctx *s = arg;
    shard_item *it;
    char ext[SHARD_STORE_EXT_ID_MAX + 1];
    int deleted = 0;
    uint64_t version = v->version;
    cr_err rc = CR_OK;
    if (s->out->n >= s->limit)
        return CR_NOTFOUND; /* stop: page full */
    s->last_id = v->id;
    memcpy(ext, v->ext_id, v->ext_len);
    ext[v->ext_len] = '\0';
    if (v->deleted) {
        /* A dead id is either replaced (the item lives on under a newer id: skip) or
         * deleted (a tombstone: report it, so the peer deletes too). */
        shard_store_item item;
        rc = shard_store_get(s->e->store, ext, v->ext_len, &item, NULL, NULL, 0);
        if (rc != CR_NOTFOUND || !item.deleted)
            return CR_OK;
        deleted = 1;
        version = item.version;
    }
    /* Attributes that do not decode are left out, as before: repair copies what it can. */
    it = item_block(ext, v->ext_len, version, !deleted && s->with_vector ? v->vector : NULL,
                    (size_t)s->e->dim, deleted ? NULL : v->attrs, deleted ? 0 : v->attrs_len,
                    &rc);
    if (!it && rc == CR_ERR_STORE)
        it = item_block(ext, v->ext_len, version,
                        !deleted && s->with_vector ? v->vector : NULL, (size_t)s->e->dim, NULL,
                        0, &rc);
    if (!it)
        return s->rc = rc;
    s->out->items[s->out->n] = it;
    s->out->deleted[s->out->n] = deleted;
    s->out->n++;
    return CR_OK;
}

/* A scan page holds `limit` items, 512 when 0, at most 4096. */
static uint32_t scan_page_limit(uint32_t limit)
{
    return limit ? (limit > 4096 ? 4096 : limit) : 512;
}

static cr_err scan_page_alloc(shard_scan_page *out, uint32_t limit)
{
    memset(out, 0, sizeof *out);
    out->items = calloc(limit, sizeof *out->items);
    out->deleted = calloc(limit, sizeof *out->deleted);
    if (!out->items || !out->deleted) {
        shard_scan_page_clear(out);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    return CR_OK;
}

cr_err shard_engine_scan(shard_engine *e, uint64_t cursor, uint32_t limit, int with_vector,
                         shard_scan_page *out, uint64_t *next_cursor)
{
    scan_ctx s = {e, out, scan_page_limit(limit), with_vector, -1, CR_OK};
    cr_err rc;
    rc = scan_page_alloc(out, s.limit);
    if (rc)
        return rc;
    rc = shard_store_iterate(e->store, (int64_t)cursor, SHARD_STORE_ITER_DEAD, scan_item, &s);
    if (s.rc)
        rc = s.rc;
    out->done = rc == CR_OK; /* CR_NOTFOUND: stopped because the page is full */
    if (rc == CR_NOTFOUND)
        rc = CR_OK;
    *next_cursor = s.last_id >= 0 ? (uint64_t)s.last_id + 1 : cursor;
    if (rc)
        shard_scan_page_clear(out);
    return rc;
}

/* ---- scan by external id or by version (replica repair) ------------------------------------ */

typedef struct oscan_ctx {
    shard_engine *e;
    shard_scan_page *out;
    uint32_t limit;
    int with_vector, keys_only;
} oscan_ctx;

static cr_err oscan_item(const shard_store_view *v, void *arg)
{
    oscan_ctx *s = arg;
    int with_attrs = !s->keys_only && !v->deleted && v->attrs_len;
    int with_vector = !v->deleted && !s->keys_only && s->with_vector && v->vector;
    shard_item *it;
    cr_err rc;
    if (s->out->n >= s->limit)
        return CR_NOTFOUND; /* page full */
    it = item_block(v->ext_id, v->ext_len, v->version, with_vector ? v->vector : NULL,
                    (size_t)s->e->dim, with_attrs ? v->attrs : NULL, with_attrs ? v->attrs_len : 0,
                    &rc);
    if (!it)
        return rc;
    s->out->items[s->out->n] = it;
    s->out->deleted[s->out->n] = v->deleted;
    s->out->n++;
    return CR_OK;
}

/* Cursor text: by external id, the last id; by version, "<version>:<last id>". */
static cr_err oscan_cursor_parse(const shard_engine_scan_req *q, shard_store_pos *pos)
{
    const char *id = q->cursor;
    memset(pos, 0, sizeof *pos);
    if (!id || !id[0])
        return CR_OK;
    if (q->by_version) {
        char *end = NULL;
        unsigned long long v = strtoull(id, &end, 10);
        if (!end || end == id || *end != ':' || id[0] == '-')
            return cr_error_set(CR_ERR_INVALID, "scan: bad cursor");
        pos->version = v;
        id = end + 1;
    }
    pos->ext_len = strlen(id);
    if (pos->ext_len == 0 || pos->ext_len > SHARD_STORE_EXT_ID_MAX)
        return cr_error_set(CR_ERR_INVALID, "scan: bad cursor");
    memcpy(pos->ext_id, id, pos->ext_len + 1);
    pos->set = 1;
    return CR_OK;
}

cr_err shard_engine_scan_ordered(shard_engine *e, const shard_engine_scan_req *q,
                                 shard_scan_page *out, char *next_cursor, size_t cap)
{
    oscan_ctx s = {e, out, scan_page_limit(q->limit), q->with_vector,
                   q->keys_only};
    shard_store_pos pos;
    int at_end = 0;
    cr_err rc = oscan_cursor_parse(q, &pos);
    if (rc)
        return rc;
    rc = scan_page_alloc(out, s.limit);
    if (rc)
        return rc;
    rc = shard_store_scan(e->store, q->by_version ? SHARD_STORE_BY_VERSION : SHARD_STORE_BY_EXT_ID,
                          q->min_version, q->max_version, !q->keys_only, &pos, oscan_item, &s,
                          &at_end);
    if (rc == CR_NOTFOUND)
        rc = CR_OK; /* stopped because the page is full */
    if (rc) {
        shard_scan_page_clear(out);
        return rc;
    }
    out->done = at_end;
    if (!pos.set)
        snprintf(next_cursor, cap, "%s", q->cursor ? q->cursor : "");
    else if (q->by_version)
        snprintf(next_cursor, cap, "%llu:%s", (unsigned long long)pos.version, pos.ext_id);
    else
        snprintf(next_cursor, cap, "%s", pos.ext_id);
    return CR_OK;
}
