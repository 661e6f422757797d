#include "offline/shard_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shard/convert.h"
#include "shard/engine.h"

#define PUT_OVERLOAD_WAIT_MS (10 * 60 * 1000)

struct offline_shard {
    shard_engine *e;
};

cr_err offline_shard_open(offline_shard **out, const char *dir, const offline_shard_params *p)
{
    shard_engine_opts o = shard_engine_default_opts();
    offline_shard *s = calloc(1, sizeof *s);
    cr_err rc;
    if (!s)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    o.create = 1;
    o.dim = p->dim;
    o.metric = p->metric_l2 ? SHARD_INDEX_METRIC_L2 : SHARD_INDEX_METRIC_IP;
    o.metric_set = 1;
    o.factory = p->factory;
    o.template_path = p->template_path;
    rc = shard_engine_open(&s->e, dir, &o);
    if (rc) {
        free(s);
        return cr_error_wrap(rc, "shard %s", dir);
    }
    *out = s;
    return CR_OK;
}

void offline_shard_close(offline_shard **pp)
{
    if (!pp || !*pp)
        return;
    shard_engine_close(&(*pp)->e);
    free(*pp);
    *pp = NULL;
}

/* The engine's view of the items: shard_items over the caller's memory (attributes
 * converted into attrs[i], which the caller frees). */
static cr_err put_once(offline_shard *s, const offline_item *items, size_t n, shard_item *it,
                       shard_attr **attrs, shard_engine_write_op *ops,
                       shard_engine_write_result *res)
{
    size_t dim = (size_t)shard_engine_dim(s->e);
    for (size_t i = 0; i < n; i++) {
        cr_err rc;
        if (!attrs[i] && items[i].n_attrs &&
            (rc = shard_conv_attrs_from_pb(items[i].attrs, items[i].n_attrs, &attrs[i])))
            return rc;
        memset(&it[i], 0, sizeof it[i]);
        it[i].id = items[i].id;
        it[i].vector = items[i].vector;
        it[i].dim = dim;
        it[i].attrs = attrs[i];
        it[i].n_attrs = items[i].n_attrs;
        it[i].version = items[i].version;
        ops[i].is_delete = 0;
        ops[i].item = &it[i];
    }
    return shard_engine_write(s->e, ops, n, res);
}

cr_err offline_shard_put(offline_shard *s, const offline_item *items, size_t n,
                         offline_put_result *results)
{
    shard_item *it = calloc(n ? n : 1, sizeof *it);
    shard_attr **attrs = calloc(n ? n : 1, sizeof *attrs);
    shard_engine_write_op *ops = calloc(n ? n : 1, sizeof *ops);
    shard_engine_write_result *res = calloc(n ? n : 1, sizeof *res);
    uint64_t until = cr_clock_mono_ms() + PUT_OVERLOAD_WAIT_MS;
    cr_err rc = CR_OK;

    if (!it || !attrs || !ops || !res) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* A full index queue: the indexer is behind; the engine waited 10 s already. */
    while ((rc = put_once(s, items, n, it, attrs, ops, res)) == CR_ERR_OVERLOADED &&
           cr_clock_mono_ms() < until)
        ;
    if (rc)
        goto out;
    for (size_t i = 0; i < n; i++) {
        results[i].message[0] = 0;
        if (res[i].status == CR_OK) {
            results[i].status = OFFLINE_PUT_OK;
        } else if (res[i].status == CR_STALE) {
            results[i].status = OFFLINE_PUT_PRESENT;
        } else {
            results[i].status = OFFLINE_PUT_INVALID;
            snprintf(results[i].message, sizeof results[i].message, "%s",
                     res[i].message[0] ? res[i].message : cr_strerror(res[i].status));
        }
    }
out:
    for (size_t i = 0; attrs && i < n; i++)
        free(attrs[i]);
    free(it);
    free(attrs);
    free(ops);
    free(res);
    return rc;
}

cr_err offline_shard_finish(offline_shard *s)
{
    cr_err rc = shard_engine_index_drain(s->e);
    if (!rc)
        rc = shard_engine_snapshot(s->e, NULL);
    return rc;
}

cr_err offline_shard_count(offline_shard *s, uint64_t *count)
{
    shard_stats st;
    cr_err rc = shard_engine_stats(s->e, &st);
    if (!rc)
        *count = st.count;
    return rc;
}

cr_err offline_shard_verify(const char *dir, uint64_t *items, int *dim, char *factory,
                            size_t cap)
{
    shard_engine_opts o = shard_engine_default_opts();
    offline_shard s = {0};
    cr_err rc = shard_engine_open(&s.e, dir, &o);
    if (rc)
        return cr_error_wrap(rc, "shard %s", dir);
    rc = offline_shard_count(&s, items);
    *dim = shard_engine_dim(s.e);
    snprintf(factory, cap, "%s", shard_engine_factory(s.e));
    shard_engine_close(&s.e);
    return rc;
}
