#include "offline/shard_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
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

/* The engine's view of the items: protobuf Items over the caller's memory. */
static cr_err put_once(offline_shard *s, const offline_item *items, size_t n,
                       Cirrus__V1__Item *pb, Cirrus__V1__Vector *vec, shard_engine_write_op *ops,
                       shard_engine_write_result *res)
{
    size_t dim = (size_t)shard_engine_dim(s->e);
    for (size_t i = 0; i < n; i++) {
        cirrus__v1__item__init(&pb[i]);
        cirrus__v1__vector__init(&vec[i]);
        vec[i].values = (float *)items[i].vector;
        vec[i].n_values = dim;
        pb[i].id = (char *)items[i].id;
        pb[i].vector = &vec[i];
        pb[i].attributes = items[i].attrs;
        pb[i].n_attributes = items[i].n_attrs;
        pb[i].version = items[i].version;
        ops[i].is_delete = 0;
        ops[i].item = &pb[i];
    }
    return shard_engine_write(s->e, ops, n, res);
}

cr_err offline_shard_put(offline_shard *s, const offline_item *items, size_t n,
                         offline_put_result *results)
{
    Cirrus__V1__Item *pb = calloc(n ? n : 1, sizeof *pb);
    Cirrus__V1__Vector *vec = calloc(n ? n : 1, sizeof *vec);
    shard_engine_write_op *ops = calloc(n ? n : 1, sizeof *ops);
    shard_engine_write_result *res = calloc(n ? n : 1, sizeof *res);
    uint64_t until = cr_clock_mono_ms() + PUT_OVERLOAD_WAIT_MS;
    cr_err rc = CR_OK;

    if (!pb || !vec || !ops || !res) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* A full index queue: the indexer is behind; the engine waited 10 s already. */
    while ((rc = put_once(s, items, n, pb, vec, ops, res)) == CR_ERR_OVERLOADED &&
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
    free(pb);
    free(vec);
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
    Cirrus__V1__StatsResult st = CIRRUS__V1__STATS_RESULT__INIT;
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
