/* replay.c — the store into the index: the replay at open (the index snapshot loaded, the
 * items past its high-water mark added, those that died since removed, the attribute index
 * rebuilt: one pass over the store) and rebuilds of the index that drop its tombstones. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/daemon.h" /* cr_daemon_release_memory */
#include "common/log.h"
#include "shard/engine_impl.h"

#define REPLAY_BATCH 4096

/* ---- open and replay -------------------------------------------------------------------- */

typedef struct replay_ctx {
    shard_engine *e;
    int64_t high_water;
    int64_t add_ids[REPLAY_BATCH];
    float *add_vecs;
    size_t n_add;
    int64_t del_ids[REPLAY_BATCH];
    size_t n_del;
    uint64_t max_version;
    uint64_t live, added;
} replay_ctx;

static cr_err replay_flush(replay_ctx *r)
{
    cr_err rc = CR_OK;
    if (r->n_add) {
        if (r->e->metric == SHARD_INDEX_METRIC_IP)
            shard_engine_normalize_rows(r->add_vecs, r->n_add, (size_t)r->e->dim);
        rc = shard_index_add(r->e->index, (int64_t)r->n_add, r->add_ids, r->add_vecs);
        r->added += r->n_add;
        r->n_add = 0;
    }
    if (!rc && r->n_del) {
        rc = shard_index_remove(r->e->index, (int64_t)r->n_del, r->del_ids, NULL);
        r->n_del = 0;
    }
    return rc;
}

static cr_err replay_item(const shard_store_view *v, void *ctx)
{
    replay_ctx *r = ctx;
    cr_err rc = CR_OK;
    if (v->version > r->max_version)
        r->max_version = v->version;
    if (v->deleted) {
        /* Died after the snapshot was taken: the snapshot still holds it. */
        if (v->id < r->high_water)
            r->del_ids[r->n_del++] = v->id;
    } else {
        r->live++;
        rc = shard_engine_attrs_index(r->e, v->id, v->attrs, v->attrs_len);
        if (!rc && v->id >= r->high_water) {
            memcpy(r->add_vecs + r->n_add * (size_t)r->e->dim, v->vector,
                   (size_t)r->e->dim * sizeof(float));
            r->add_ids[r->n_add++] = v->id;
        }
    }
    if (!rc && (r->n_add == REPLAY_BATCH || r->n_del == REPLAY_BATCH))
        rc = replay_flush(r);
    return rc;
}

static cr_err index_open(shard_engine *e, int64_t *high_water)
{
    shard_index_opts io = shard_index_default_opts();
    cr_err rc;
    io.dim = e->dim;
    io.metric = e->metric;
    io.factory = e->factory;
    io.train_size = e->o.train_size;
    io.template_path = e->o.template_path;
    rc = shard_index_load(&e->index, e->snap_path, &io, high_water);
    if (rc == CR_OK)
        return CR_OK;
    if (rc != CR_NOTFOUND)
        CR_WARN("shard", "ignoring index snapshot %s (%s): rebuilding from the store",
                e->snap_path, cr_error_message());
    *high_water = 0;
    return shard_index_create(&e->index, &io);
}

cr_err shard_replay_run(shard_engine *e, shard_replay_stats *out)
{
    replay_ctx *r = NULL;
    int64_t hw = 0;
    cr_err rc = index_open(e, &hw);

    if (rc)
        goto out;
    r = calloc(1, sizeof *r);
    if (!r || !(r->add_vecs = malloc((size_t)REPLAY_BATCH * (size_t)e->dim * sizeof(float)))) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->e = e;
    r->high_water = hw;
    rc = shard_store_iterate(e->store, 0, SHARD_STORE_ITER_DEAD, replay_item, r);
    if (!rc)
        rc = replay_flush(r);
    if (rc)
        goto out;
    out->high_water = hw;
    out->max_version = r->max_version;
    out->live = r->live;
    out->added = r->added;
out:
    if (r)
        free(r->add_vecs);
    free(r);
    return rc;
}

/* ---- rebuilds: a fresh index from the store, dropping the tombstones -----------------------
 *
 * On a thread of its own, so that the writer goes on committing (a rebuild of a large index
 * takes minutes; on the writer it made every write of those minutes time out). While it
 * builds: searches and removes use the live index; the indexer pauses, so indexed_hw stays
 * where the feed reads up to and the items committed meanwhile wait, queued and searched
 * exactly, for the fresh index; each id removed from the live index is recorded. At the
 * swap (ixmu, then the index's writer lock) those removals are applied to the fresh index.
 */

static cr_err rebuild_item(const shard_store_view *v, void *ctx)
{
    void **c = ctx;
    shard_engine *e = c[0];
    float *vec = c[2];
    if (atomic_load(&e->rb.cancel))
        return cr_error_set(CR_ERR_UNAVAILABLE, "rebuild cancelled");
    if (v->id >= atomic_load(&e->indexed_hw))
        return CR_OK; /* still queued: the indexer adds it */
    memcpy(vec, v->vector, (size_t)e->dim * sizeof *vec);
    if (e->metric == SHARD_INDEX_METRIC_IP)
        shard_engine_normalize_rows(vec, 1, (size_t)e->dim);
    return shard_index_builder_add(c[1], 1, &v->id, vec);
}

static cr_err rebuild_feed(void *ctx, shard_index_builder *b)
{
    void **c = ctx;
    shard_engine *e = c[0];
    c[1] = b;
    return shard_store_iterate(e->store, 0, 0, rebuild_item, c);
}

/* Under ixmu and the index's writer lock: what was removed while building. */
static cr_err rebuild_catch_up(void *ctx, shard_index_builder *b)
{
    shard_engine *e = ((void **)ctx)[0];
    if (e->rb.lost)
        return cr_error_set(CR_ERR_NOMEM, "rebuild: a removal during it was not recorded");
    return shard_index_builder_remove(b, (int64_t)e->rb.n_dead, e->rb.dead);
}

void shard_rebuild_note_removed(shard_engine *e, const int64_t *ids, size_t n)
{
    if (e->rb.n_dead + n > e->rb.cap_dead) {
        size_t cap = e->rb.cap_dead ? 2 * e->rb.cap_dead : 1024;
        int64_t *g;
        while (cap < e->rb.n_dead + n)
            cap *= 2;
        if (!(g = realloc(e->rb.dead, cap * sizeof *g))) {
            e->rb.lost = 1;
            return;
        }
        e->rb.dead = g;
        e->rb.cap_dead = cap;
    }
    memcpy(e->rb.dead + e->rb.n_dead, ids, n * sizeof *ids);
    e->rb.n_dead += n;
}

static void *rebuild_main(void *arg)
{
    shard_engine *e = arg;
    shard_index_builder *b = NULL;
    void *c[3] = {e, NULL, malloc((size_t)e->dim * sizeof(float))};
    cr_err rc = c[2] ? shard_index_rebuild_begin(e->index, rebuild_feed, c, &b)
                     : cr_error_set(CR_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&e->ixmu); /* the swap and the indexer's resumption in one step */
    if (rc == CR_OK)
        rc = shard_index_rebuild_commit(&b, rebuild_catch_up, c);
    atomic_store(&e->rb.active, 0);
    pthread_mutex_unlock(&e->ixmu);
    free(c[2]);
    cr_daemon_release_memory(); /* the old index, freed at the swap */
    e->rb.rc = rc;
    if (rc)
        snprintf(e->rb.err, sizeof e->rb.err, "%s", cr_error_message());
    atomic_store(&e->rb.done, 1);
    return NULL;
}

/* Joins a finished (or, with wait, a running) rebuild and logs its outcome. */
static cr_err rebuild_join(shard_engine *e, int wait)
{
    cr_err rc;
    if (!e->rb.started || (!wait && !atomic_load(&e->rb.done)))
        return CR_OK;
    pthread_join(e->rb.thread, NULL);
    e->rb.started = 0;
    rc = e->rb.rc;
    if (rc == CR_OK)
        CR_INFO("shard", "index rebuilt in the background: %lld tombstones dropped, %zu "
                         "removals caught up", (long long)e->rb.dropped, e->rb.n_dead);
    else if (!atomic_load(&e->rb.cancel))
        return cr_error_set(rc, "background rebuild: %s", e->rb.err);
    return CR_OK;
}

void shard_rebuild_stop(shard_engine *e)
{
    atomic_store(&e->rb.cancel, 1);
    (void)rebuild_join(e, 1);
    free(e->rb.dead);
    e->rb.dead = NULL;
    e->rb.n_dead = e->rb.cap_dead = 0;
}

cr_err shard_engine_rebuild_wait(shard_engine *e)
{
    return rebuild_join(e, 1);
}

int shard_engine_rebuilding(shard_engine *e)
{
    return e->rb.started && !atomic_load(&e->rb.done);
}

cr_err shard_engine_maybe_rebuild(shard_engine *e, double fraction)
{
    shard_index_stats s;
    cr_err rc = rebuild_join(e, 0);
    if (rc || e->rb.started)
        return rc;
    /* Called often from the writer: never wait behind the indexer's adds for a check. */
    if (shard_backlog_pending(&e->bl) > 0)
        return CR_OK;
    shard_index_stats_get(e->index, &s);
    if (s.tombstones == 0 || (double)s.tombstones < fraction * (double)(s.ntotal + 1))
        return CR_OK;
    pthread_mutex_lock(&e->ixmu); /* from here every removal from the live index is noted */
    e->rb.n_dead = 0;
    e->rb.lost = 0;
    e->rb.dropped = s.tombstones;
    atomic_store(&e->rb.done, 0);
    atomic_store(&e->rb.active, 1);
    pthread_mutex_unlock(&e->ixmu);
    if (pthread_create(&e->rb.thread, NULL, rebuild_main, e) != 0) {
        pthread_mutex_lock(&e->ixmu);
        atomic_store(&e->rb.active, 0);
        pthread_mutex_unlock(&e->ixmu);
        return cr_error_set(CR_ERR_NOMEM, "rebuild: cannot start its thread");
    }
    e->rb.started = 1;
    return CR_OK;
}
