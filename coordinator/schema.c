/* schema.c — the Schema op: one replica of every shard group describes its attributes, and
 * the answers are merged by name: types or-ed, item and value counts summed, ranges widened.
 * Each shard sends at most max_values values per attribute, so a value past a shard's top
 * max_values is undercounted: the merged counts are lower bounds (exact with one group, or
 * when no shard had more distinct values than max_values). A group without an answer makes
 * the result partial, listed in missing_groups. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/fanout.h"

#define VALUES_DEFAULT 100
#define VALUES_MAX 1000

/* The merge, the fanout's ext. */
typedef struct schema_state {
    coord_fanout *f;
    /* the merged answer: attributes, their value arrays, all borrowing the subs' strings */
    Cirrus__V1__SchemaAttribute *out;
    Cirrus__V1__SchemaAttribute **outp;
    Cirrus__V1__SchemaValue **vals; /* one array per merged attribute */
    size_t n_out;
} schema_state;

static void schema_state_free(void *p)
{
    schema_state *s = p;
    if (!s)
        return;
    for (size_t i = 0; s->vals && i < s->n_out; i++)
        free(s->vals[i]);
    for (size_t i = 0; s->outp && i < s->n_out; i++)
        free(s->outp[i] ? s->outp[i]->values : NULL);
    free(s->vals);
    free(s->outp);
    free(s->out);
    free(s);
}

static int cmp_attr_name(const void *pa, const void *pb)
{
    const Cirrus__V1__SchemaAttribute *a = *(Cirrus__V1__SchemaAttribute *const *)pa;
    const Cirrus__V1__SchemaAttribute *b = *(Cirrus__V1__SchemaAttribute *const *)pb;
    return strcmp(a->name, b->name);
}

static int cmp_value_str(const void *pa, const void *pb)
{
    return strcmp((*(Cirrus__V1__SchemaValue *const *)pa)->value,
                  (*(Cirrus__V1__SchemaValue *const *)pb)->value);
}

static int cmp_value_count(const void *pa, const void *pb)
{
    const Cirrus__V1__SchemaValue *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return strcmp(a->value, b->value);
}

/* Folds src's scalar fields into dst (the first of the run initialised dst). */
static void fold_scalars(Cirrus__V1__SchemaAttribute *dst, const Cirrus__V1__SchemaAttribute *src)
{
    dst->has_strings |= src->has_strings;
    dst->has_numbers |= src->has_numbers;
    dst->has_bools |= src->has_bools;
    dst->items += src->items;
    dst->true_count += src->true_count;
    dst->false_count += src->false_count;
    if (src->distinct > dst->distinct)
        dst->distinct = src->distinct;
    if (src->has_range) {
        if (!dst->has_range) {
            dst->min = src->min;
            dst->max = src->max;
            dst->integer = src->integer;
        } else {
            dst->min = src->min < dst->min ? src->min : dst->min;
            dst->max = src->max > dst->max ? src->max : dst->max;
            dst->integer &= src->integer;
        }
        dst->has_range = 1;
    }
}

/* Merges run[0..n) (one name) into dst: values summed per string, most frequent first,
 * at most max. *vals gets the value array (dst->values points into it). */
static cr_err merge_values(Cirrus__V1__SchemaAttribute *const *run, size_t n, size_t max,
                           Cirrus__V1__SchemaAttribute *dst, Cirrus__V1__SchemaValue **vals)
{
    size_t total = 0, k = 0, m = 0;
    Cirrus__V1__SchemaValue **all;
    for (size_t i = 0; i < n; i++)
        total += run[i]->n_values;
    all = calloc(total ? total : 1, sizeof *all);
    *vals = calloc(total ? total : 1, sizeof **vals);
    dst->values = calloc(total ? total : 1, sizeof *dst->values);
    if (!all || !*vals || !dst->values) {
        free(all);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < run[i]->n_values; j++)
            all[k++] = run[i]->values[j];
    qsort(all, total, sizeof *all, cmp_value_str);
    for (size_t i = 0; i < total; i++) {
        if (m && strcmp((*vals)[m - 1].value, all[i]->value) == 0) {
            (*vals)[m - 1].count += all[i]->count;
            continue;
        }
        cirrus__v1__schema_value__init(&(*vals)[m]);
        (*vals)[m].value = all[i]->value;
        (*vals)[m++].count = all[i]->count;
    }
    free(all);
    qsort(*vals, m, sizeof **vals, cmp_value_count);
    if (m > dst->distinct)
        dst->distinct = m;
    dst->n_values = m < max ? m : max;
    for (size_t i = 0; i < dst->n_values; i++)
        dst->values[i] = &(*vals)[i];
    return CR_OK;
}

/* Every group's attributes, sorted by name, into *all (borrowed from the subs). */
static cr_err collect(schema_state *s, Cirrus__V1__SchemaResult *res,
                      Cirrus__V1__SchemaAttribute ***all, size_t *n_all, int32_t *missing)
{
    size_t total = 0, k = 0;
    for (size_t g = 0; g < s->f->n; g++) {
        if (coord_sub_check(&s->f->subs[g], "schema") || !s->f->subs[g].resp->schema) {
            missing[res->n_missing_groups++] = (int32_t)g;
            continue;
        }
        total += s->f->subs[g].resp->schema->n_attributes;
        res->items += s->f->subs[g].resp->schema->items;
    }
    if (!(*all = calloc(total ? total : 1, sizeof **all)))
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t g = 0; g < s->f->n; g++) {
        const coord_sub *sub = &s->f->subs[g];
        const Cirrus__V1__SchemaResult *sr = sub->resp ? sub->resp->schema : NULL;
        if (sub->rc || !sr || sub->resp->status->code < 0)
            continue;
        for (size_t i = 0; i < sr->n_attributes; i++)
            (*all)[k++] = sr->attributes[i];
    }
    *n_all = k;
    qsort(*all, k, sizeof **all, cmp_attr_name);
    return CR_OK;
}

static cr_err merge(schema_state *s, Cirrus__V1__SchemaResult *res, int32_t *missing)
{
    const Cirrus__V1__SchemaRequest *q = s->f->r->req->schema;
    size_t max = q && q->max_values ? q->max_values : VALUES_DEFAULT, n_all = 0;
    Cirrus__V1__SchemaAttribute **all = NULL;
    cr_err rc = collect(s, res, &all, &n_all, missing);
    if (max > VALUES_MAX)
        max = VALUES_MAX;
    if (!rc && (!(s->out = calloc(n_all ? n_all : 1, sizeof *s->out)) ||
                !(s->outp = calloc(n_all ? n_all : 1, sizeof *s->outp)) ||
                !(s->vals = calloc(n_all ? n_all : 1, sizeof *s->vals))))
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n_all;) {
        size_t j = i;
        Cirrus__V1__SchemaAttribute *dst = &s->out[s->n_out];
        cirrus__v1__schema_attribute__init(dst);
        dst->name = all[i]->name;
        while (j < n_all && strcmp(all[j]->name, dst->name) == 0)
            fold_scalars(dst, all[j++]);
        s->outp[s->n_out] = dst;
        rc = merge_values(all + i, j - i, max, dst, &s->vals[s->n_out]);
        s->n_out++;
        i = j;
    }
    free(all);
    res->attributes = s->outp;
    res->n_attributes = s->n_out;
    return rc;
}

static void on_schema(void *arg)
{
    schema_state *s = ((coord_fanout *)arg)->ext;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SchemaResult res = CIRRUS__V1__SCHEMA_RESULT__INIT;
    int32_t *missing = calloc(s->f->n ? s->f->n : 1, sizeof *missing);
    cr_err rc = missing ? merge(s, &res, missing) : cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!rc && res.n_missing_groups == s->f->n && s->f->n) {
        /* no group answered: the reason of the first, rather than an empty schema */
        rc = coord_sub_check(&s->f->subs[0], "schema");
        if (!rc)
            rc = cr_error_set(CR_ERR_UNAVAILABLE, "schema: no shard group answered");
    }
    if (rc) {
        coord_rq_fail(s->f->r, rc, cr_error_message());
    } else {
        res.partial = res.n_missing_groups > 0;
        res.missing_groups = missing;
        s->f->r->partial = res.partial;
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SCHEMA;
        resp.schema = &res;
        coord_rq_reply(s->f->r, &resp);
    }
    free(missing);
    coord_rq_end(s->f->r);
}

void coord_schema_start(coord_rq *r)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SchemaRequest sq = CIRRUS__V1__SCHEMA_REQUEST__INIT;
    coord_fanout *f = coord_fanout_new(r, (size_t)r->map->n_groups, 1);
    schema_state *s = f ? calloc(1, sizeof *s) : NULL;
    cr_err rc;
    if (!s) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    s->f = f;
    f->ext = s;
    f->ext_free = schema_state_free;
    if (r->req->schema)
        sq.max_values = r->req->schema->max_values;
    req.op_case = CIRRUS__V1__REQUEST__OP_SCHEMA;
    req.schema = &sq;
    rc = coord_fanout_to_groups(f, &req, on_schema);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}
