/* convert.c — protobuf <-> engine types for the shard server (see convert.h). */
#include "shard/convert.h"

#include <stdlib.h>
#include <string.h>

#include "shard/filter_parse.h"
#include "shard/index.h"
#include "shard/store.h"

/* ---- inbound ------------------------------------------------------------------------------ */

static void value_from_pb(const Cirrus__V1__AttrValue *v, shard_value *out)
{
    memset(out, 0, sizeof *out);
    if (!v)
        return;
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S:
        out->type = SHARD_VALUE_STRING;
        out->u.s = v->s;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_I:
        out->type = SHARD_VALUE_INT;
        out->u.i = v->i;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D:
        out->type = SHARD_VALUE_DOUBLE;
        out->u.d = v->d;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_B:
        out->type = SHARD_VALUE_BOOL;
        out->u.b = v->b ? 1 : 0;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS:
        if (!v->strings)
            break; /* NONE: rejected as "has no value" */
        out->type = SHARD_VALUE_STRINGS;
        out->u.strings.v = (const char *const *)v->strings->values;
        out->u.strings.n = v->strings->n_values;
        break;
    default: break;
    }
}

cr_err shard_conv_attrs_from_pb(Cirrus__V1__Attribute *const *pb, size_t n, shard_attr **out)
{
    shard_attr *a;
    *out = NULL;
    if (n == 0)
        return CR_OK;
    a = calloc(n, sizeof *a);
    if (!a)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) {
        if (!pb || !pb[k])
            continue; /* no name: rejected by the engine */
        a[k].name = pb[k]->name;
        value_from_pb(pb[k]->value, &a[k].value);
    }
    *out = a;
    return CR_OK;
}

cr_err shard_conv_item_from_pb(const Cirrus__V1__Item *pb, shard_item *out,
                               shard_attr **attrs_mem)
{
    cr_err rc;
    memset(out, 0, sizeof *out);
    *attrs_mem = NULL;
    if (!pb)
        return CR_OK; /* id NULL: rejected by the engine */
    out->id = pb->id;
    out->version = pb->version;
    if (pb->vector && pb->vector->n_values) {
        out->vector = pb->vector->values;
        out->dim = pb->vector->n_values;
    }
    if (pb->image.len) {
        out->image = pb->image.data;
        out->image_len = pb->image.len;
    }
    rc = shard_conv_attrs_from_pb(pb->attributes, pb->n_attributes, attrs_mem);
    if (rc)
        return rc;
    out->attrs = *attrs_mem;
    out->n_attrs = pb->n_attributes;
    return CR_OK;
}

void shard_filter_free(shard_filter **pp)
{
    shard_filter *f;
    if (!pp || !*pp)
        return;
    f = *pp;
    for (size_t i = 0; i < f->n_kids; i++) {
        shard_filter *k = f->kids[i];
        shard_filter_free(&k);
    }
    free((void *)f->kids);
    free((void *)f->values);
    free(f);
    *pp = NULL;
}

/* The tree passed cr_filter_validate: every pointer is set and the depth is bounded. */
static cr_err compile_node(const Cirrus__V1__Filter *pb, shard_filter **out)
{
    const Cirrus__V1__FilterList *list = NULL;
    shard_filter *f = calloc(1, sizeof *f);
    shard_filter **kids = NULL;
    cr_err rc = CR_OK;
    if (!f)
        return cr_error_set(CR_ERR_NOMEM, "filter: out of memory");
    switch (pb->expr_case) {
    case CIRRUS__V1__FILTER__EXPR_CMP:
        f->kind = SHARD_FILTER_CMP;
        f->attr = pb->cmp->attr;
        f->op = (shard_cmp_op)pb->cmp->op;
        value_from_pb(pb->cmp->value, &f->value);
        break;
    case CIRRUS__V1__FILTER__EXPR_IN: {
        shard_value *v = calloc(pb->in->n_values ? pb->in->n_values : 1, sizeof *v);
        f->kind = SHARD_FILTER_IN;
        f->attr = pb->in->attr;
        if (!v) {
            rc = cr_error_set(CR_ERR_NOMEM, "filter: out of memory");
            break;
        }
        for (size_t i = 0; i < pb->in->n_values; i++)
            value_from_pb(pb->in->values[i], &v[i]);
        f->values = v;
        f->n_values = pb->in->n_values;
        break;
    }
    case CIRRUS__V1__FILTER__EXPR_RANGE:
        f->kind = SHARD_FILTER_RANGE;
        f->attr = pb->range->attr;
        f->has_lo = pb->range->has_lo;
        f->lo = pb->range->lo;
        f->lo_inclusive = pb->range->lo_inclusive;
        f->has_hi = pb->range->has_hi;
        f->hi = pb->range->hi;
        f->hi_inclusive = pb->range->hi_inclusive;
        break;
    case CIRRUS__V1__FILTER__EXPR_NOT_EXPR:
        f->kind = SHARD_FILTER_NOT;
        kids = calloc(1, sizeof *kids);
        f->kids = kids;
        if (!kids) {
            rc = cr_error_set(CR_ERR_NOMEM, "filter: out of memory");
            break;
        }
        f->n_kids = 1;
        rc = compile_node(pb->not_expr, &kids[0]);
        break;
    case CIRRUS__V1__FILTER__EXPR_AND_EXPR:
    case CIRRUS__V1__FILTER__EXPR_OR_EXPR:
        f->kind = pb->expr_case == CIRRUS__V1__FILTER__EXPR_AND_EXPR ? SHARD_FILTER_AND
                                                                    : SHARD_FILTER_OR;
        list = f->kind == SHARD_FILTER_AND ? pb->and_expr : pb->or_expr;
        kids = calloc(list->n_items ? list->n_items : 1, sizeof *kids);
        f->kids = kids;
        if (!kids) {
            rc = cr_error_set(CR_ERR_NOMEM, "filter: out of memory");
            break;
        }
        for (size_t i = 0; i < list->n_items && !rc; i++) {
            rc = compile_node(list->items[i], &kids[i]);
            f->n_kids = i + 1;
        }
        break;
    default: rc = cr_error_set(CR_ERR_INVALID, "filter: expression with no operator set");
    }
    if (rc)
        shard_filter_free(&f);
    *out = f;
    return rc;
}

cr_err shard_conv_filter_compile(const Cirrus__V1__Filter *pb, shard_filter **out)
{
    cr_err rc;
    *out = NULL;
    if (!pb)
        return CR_OK;
    rc = cr_filter_validate(pb);
    if (rc)
        return rc;
    return compile_node(pb, out);
}

/* ---- outbound ----------------------------------------------------------------------------- */

/* The wire attributes of n engine ones, placed in mem (see pb_attrs_size). */
static size_t pb_attrs_size(size_t n)
{
    return n * (sizeof(Cirrus__V1__Attribute *) + sizeof(Cirrus__V1__Attribute) +
                sizeof(Cirrus__V1__AttrValue) + sizeof(Cirrus__V1__StringList));
}

static Cirrus__V1__Attribute **pb_attrs_place(const shard_attr *a, size_t n, void *mem)
{
    Cirrus__V1__Attribute **ptrs = mem;
    Cirrus__V1__Attribute *at = (Cirrus__V1__Attribute *)(ptrs + n);
    Cirrus__V1__AttrValue *v = (Cirrus__V1__AttrValue *)(at + n);
    Cirrus__V1__StringList *sl = (Cirrus__V1__StringList *)(v + n);
    for (size_t k = 0; k < n; k++) {
        cirrus__v1__attribute__init(&at[k]);
        cirrus__v1__attr_value__init(&v[k]);
        at[k].name = (char *)a[k].name;
        at[k].value = &v[k];
        switch (a[k].value.type) {
        case SHARD_VALUE_STRING:
            v[k].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
            v[k].s = (char *)a[k].value.u.s;
            break;
        case SHARD_VALUE_INT:
            v[k].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
            v[k].i = a[k].value.u.i;
            break;
        case SHARD_VALUE_DOUBLE:
            v[k].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
            v[k].d = a[k].value.u.d;
            break;
        case SHARD_VALUE_BOOL:
            v[k].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
            v[k].b = a[k].value.u.b != 0;
            break;
        default:
            cirrus__v1__string_list__init(&sl[k]);
            sl[k].values = (char **)a[k].value.u.strings.v;
            sl[k].n_values = a[k].value.u.strings.n;
            v[k].value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
            v[k].strings = &sl[k];
            break;
        }
        ptrs[k] = &at[k];
    }
    return ptrs;
}

#define ALIGN16(x) (((x) + 15) / 16 * 16)

/* One block: head (a Hit or an Item), a Vector and its floats, the wire attributes, a copy of
 * the engine attributes they point into, and the id. */
static void *pb_block(size_t head, const char *id, const float *vec, size_t dim,
                      const shard_attr *a, size_t n, Cirrus__V1__Vector **vout,
                      Cirrus__V1__Attribute ***attrs, char **id_out)
{
    size_t h = ALIGN16(head), vs = ALIGN16(sizeof(Cirrus__V1__Vector));
    size_t fs = vec ? ALIGN16(dim * sizeof(float)) : 0, ps = ALIGN16(pb_attrs_size(n));
    size_t as = n ? ALIGN16(shard_attrs_block_size(a, n)) : 0;
    char *mem = malloc(h + vs + fs + ps + as + strlen(id) + 1), *p;
    shard_attr *copy = NULL;
    if (!mem)
        return NULL;
    p = mem + h;
    *vout = (Cirrus__V1__Vector *)p;
    cirrus__v1__vector__init(*vout);
    p += vs;
    if (vec) {
        memcpy(p, vec, dim * sizeof(float));
        (*vout)->values = (float *)p;
        (*vout)->n_values = dim;
        p += fs;
    }
    if (n)
        copy = shard_attrs_place(a, n, p + ps);
    *attrs = n ? pb_attrs_place(copy, n, p) : NULL;
    p += ps + as;
    strcpy(p, id);
    *id_out = p;
    return mem;
}

Cirrus__V1__Hit *shard_conv_hit_to_pb(const shard_hit *hit)
{
    Cirrus__V1__Vector *v;
    Cirrus__V1__Attribute **at;
    char *id;
    Cirrus__V1__Hit *h = pb_block(sizeof *h, hit->id ? hit->id : "", hit->vector, hit->dim,
                                  hit->attrs, hit->n_attrs, &v, &at, &id);
    if (!h)
        return NULL;
    cirrus__v1__hit__init(h);
    h->id = id;
    h->score = hit->score;
    h->attributes = at;
    h->n_attributes = hit->n_attrs;
    h->vector = hit->vector ? v : NULL;
    return h;
}

Cirrus__V1__Item *shard_conv_item_to_pb(const shard_item *it)
{
    Cirrus__V1__Vector *v;
    Cirrus__V1__Attribute **at;
    char *id;
    Cirrus__V1__Item *p = pb_block(sizeof *p, it->id ? it->id : "", it->vector, it->dim,
                                   it->attrs, it->n_attrs, &v, &at, &id);
    if (!p)
        return NULL;
    cirrus__v1__item__init(p);
    p->id = id;
    p->version = it->version;
    p->attributes = at;
    p->n_attributes = it->n_attrs;
    p->vector = it->vector ? v : NULL;
    return p;
}

void shard_conv_stats_to_pb(const shard_stats *s, Cirrus__V1__StatsResult *out)
{
    out->role = "shard";
    out->count = s->count;
    out->dim = s->dim;
    out->metric = s->metric == SHARD_INDEX_METRIC_L2 ? CIRRUS__V1__METRIC__METRIC_L2
                                                     : CIRRUS__V1__METRIC__METRIC_IP;
    out->index = (char *)s->index;
    out->trained = s->trained;
    out->bytes_on_disk = s->bytes_on_disk;
    out->last_snapshot_unix_ms = s->last_snapshot_unix_ms;
    out->snapshot_high_water = s->snapshot_high_water;
    out->uptime_s = s->uptime_s;
    out->tombstones = s->tombstones;
    out->max_version = s->max_version;
    out->unindexed = s->unindexed;
}

void shard_conv_snapshot_to_pb(const shard_snapshot_info *s, Cirrus__V1__SnapshotResult *out)
{
    out->high_water = s->high_water;
    out->bytes = s->bytes;
    out->duration_ms = s->duration_ms;
}

cr_err shard_conv_scan_to_pb(const shard_scan_page *p, Cirrus__V1__ScanResult *out)
{
    size_t n = p->n;
    out->items = calloc(n ? n : 1, sizeof *out->items);
    out->deleted = calloc(n ? n : 1, sizeof *out->deleted);
    out->n_items = out->n_deleted = 0;
    out->done = p->done;
    if (!out->items || !out->deleted) {
        shard_conv_scan_clear(out);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        out->items[i] = shard_conv_item_to_pb(p->items[i]);
        if (!out->items[i]) {
            shard_conv_scan_clear(out);
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        }
        out->deleted[i] = p->deleted[i] != 0;
        out->n_items = out->n_deleted = i + 1;
    }
    return CR_OK;
}

void shard_conv_scan_clear(Cirrus__V1__ScanResult *out)
{
    for (size_t i = 0; out->items && i < out->n_items; i++)
        free(out->items[i]);
    free(out->items);
    free(out->deleted);
    out->items = NULL;
    out->deleted = NULL;
    out->n_items = out->n_deleted = 0;
}

/* One block per attribute: the message, its value pointers and values (strings borrowed). */
static Cirrus__V1__SchemaAttribute *schema_attr_to_pb(const shard_schema_attr *a)
{
    size_t n = a->n_values;
    Cirrus__V1__SchemaAttribute *p =
        malloc(sizeof *p + n * (sizeof(Cirrus__V1__SchemaValue *) + sizeof **p->values));
    Cirrus__V1__SchemaValue **ptrs;
    Cirrus__V1__SchemaValue *vals;
    if (!p)
        return NULL;
    ptrs = (Cirrus__V1__SchemaValue **)(void *)(p + 1);
    vals = (Cirrus__V1__SchemaValue *)(void *)(ptrs + n);
    cirrus__v1__schema_attribute__init(p);
    p->name = a->name;
    p->has_strings = a->has_strings;
    p->has_numbers = a->has_numbers;
    p->has_bools = a->has_bools;
    p->items = a->items;
    p->distinct = a->distinct;
    p->has_range = a->has_range;
    p->min = a->min;
    p->max = a->max;
    p->integer = a->integer;
    p->true_count = a->n_true;
    p->false_count = a->n_false;
    for (size_t i = 0; i < n; i++) {
        cirrus__v1__schema_value__init(&vals[i]);
        vals[i].value = a->values[i].value;
        vals[i].count = a->values[i].count;
        ptrs[i] = &vals[i];
    }
    p->values = n ? ptrs : NULL;
    p->n_values = n;
    return p;
}

cr_err shard_conv_schema_to_pb(const shard_schema *s, Cirrus__V1__SchemaResult *out)
{
    out->items = s->items;
    out->n_attributes = 0;
    out->attributes = calloc(s->n ? s->n : 1, sizeof *out->attributes);
    if (!out->attributes)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        if (!(out->attributes[i] = schema_attr_to_pb(&s->attrs[i]))) {
            shard_conv_schema_clear(out);
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        }
        out->n_attributes = i + 1;
    }
    return CR_OK;
}

void shard_conv_schema_clear(Cirrus__V1__SchemaResult *out)
{
    for (size_t i = 0; out->attributes && i < out->n_attributes; i++)
        free(out->attributes[i]);
    free(out->attributes);
    out->attributes = NULL;
    out->n_attributes = 0;
}
