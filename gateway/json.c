#include "gateway/json.h"

#include <stdio.h>
#include <string.h>

#include "gateway/attrs_json.h"

/* A string that starts with NUL cannot come from a protobuf or C string, so the mark cannot
 * be confused with data; json_dumps() writes it as the escape below. */
#define U64_MARK "\\u0000u64:"

json_t *cirrus_json_u64(uint64_t v)
{
    char buf[32];
    int n;
    if (v <= INT64_MAX)
        return json_integer((json_int_t)v);
    n = snprintf(buf, sizeof buf, "%cu64:%llu", '\0', (unsigned long long)v);
    return json_stringn(buf, (size_t)n);
}

char *cirrus_json_dumps(const json_t *j, size_t flags)
{
    char *s = json_dumps(j, flags), *r, *w;
    size_t mark = strlen(U64_MARK);
    if (!s)
        return NULL;
    /* In place: the unquoted number is shorter than the marked string. */
    for (r = w = s; *r;) {
        if (r[0] == '"' && strncmp(r + 1, U64_MARK, mark) == 0) {
            for (r += 1 + mark; *r >= '0' && *r <= '9';)
                *w++ = *r++;
            if (*r == '"')
                r++;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
    return s;
}

json_t *cirrus_result_json(const Cirrus__V1__SearchResult *r)
{
    json_t *out = json_object(), *hits = json_array(), *missing = json_array();
    for (size_t i = 0; i < r->n_hits; i++) {
        const Cirrus__V1__Hit *h = r->hits[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(h->id));
        json_object_set_new(o, "score", json_real(h->score));
        json_object_set_new(o, "attributes", cr_attrs_to_json(h->attributes, h->n_attributes));
        json_array_append_new(hits, o);
    }
    for (size_t i = 0; i < r->n_missing_groups; i++)
        json_array_append_new(missing, json_integer(r->missing_groups[i]));
    json_object_set_new(out, "hits", hits);
    json_object_set_new(out, "partial", json_boolean(r->partial));
    json_object_set_new(out, "missing_groups", missing);
    if (r->caption_truncated)
        json_object_set_new(out, "caption_truncated", json_true());
    if (r->timing) {
        json_t *t = json_object();
        json_object_set_new(t, "encode_us", json_integer((json_int_t)r->timing->encode_us));
        json_object_set_new(t, "compose_us", json_integer((json_int_t)r->timing->compose_us));
        json_object_set_new(t, "search_us", json_integer((json_int_t)r->timing->search_us));
        json_object_set_new(t, "merge_us", json_integer((json_int_t)r->timing->merge_us));
        json_object_set_new(t, "total_us", json_integer((json_int_t)r->timing->total_us));
        json_object_set_new(out, "timing", t);
    }
    return out;
}

json_t *cirrus_item_json(const Cirrus__V1__Item *it)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(it->id));
    json_object_set_new(o, "version", cirrus_json_u64(it->version));
    json_object_set_new(o, "attributes", cr_attrs_to_json(it->attributes, it->n_attributes));
    if (it->vector) {
        json_t *v = json_array();
        for (size_t i = 0; i < it->vector->n_values; i++)
            json_array_append_new(v, json_real(it->vector->values[i]));
        json_object_set_new(o, "vector", v);
    }
    return o;
}

json_t *cirrus_stats_json(const Cirrus__V1__StatsResult *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "role", json_string(s->role));
    json_object_set_new(o, "count", json_integer((json_int_t)s->count));
    json_object_set_new(o, "dim", json_integer(s->dim));
    json_object_set_new(o, "metric", json_string(s->metric == CIRRUS__V1__METRIC__METRIC_L2
                                                     ? "l2" : "ip"));
    json_object_set_new(o, "index", json_string(s->index));
    json_object_set_new(o, "trained", json_boolean(s->trained));
    json_object_set_new(o, "bytes_on_disk", json_integer((json_int_t)s->bytes_on_disk));
    json_object_set_new(o, "last_snapshot_unix_ms", json_integer(s->last_snapshot_unix_ms));
    json_object_set_new(o, "snapshot_high_water",
                        json_integer((json_int_t)s->snapshot_high_water));
    json_object_set_new(o, "uptime_s", json_integer((json_int_t)s->uptime_s));
    json_object_set_new(o, "tombstones", json_integer((json_int_t)s->tombstones));
    json_object_set_new(o, "unindexed", json_integer((json_int_t)s->unindexed));
    json_object_set_new(o, "max_version", cirrus_json_u64(s->max_version));
    if (s->encoder) {
        const Cirrus__V1__EncoderStats *e = s->encoder;
        json_t *eo = json_object();
        json_object_set_new(eo, "model", json_string(e->model));
        json_object_set_new(eo, "embed_dim", json_integer(e->embed_dim));
        json_object_set_new(eo, "queue_depth", json_integer(e->queue_depth));
        json_object_set_new(eo, "batches", json_integer((json_int_t)e->batches));
        json_object_set_new(eo, "requests", json_integer((json_int_t)e->requests));
        json_object_set_new(eo, "mean_batch_size", json_real(e->mean_batch_size));
        json_object_set_new(eo, "p50_ms", json_real(e->p50_ms));
        json_object_set_new(eo, "p99_ms", json_real(e->p99_ms));
        json_object_set_new(o, "encoder", eo);
    }
    if (s->n_groups) {
        json_t *g = json_array();
        for (size_t i = 0; i < s->n_groups; i++)
            json_array_append_new(g, cirrus_stats_json(s->groups[i]));
        json_object_set_new(o, "groups", g);
    }
    return o;
}

/* A range bound: an integer when every number held is one. */
static json_t *bound_json(double v, int integer)
{
    if (integer && v >= -9007199254740992.0 && v <= 9007199254740992.0)
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *schema_attr_json(const Cirrus__V1__SchemaAttribute *a)
{
    json_t *o = json_object(), *types = json_array();
    int n_types = !!a->has_strings + !!a->has_numbers + !!a->has_bools;
    const char *num = a->has_range && a->integer ? "integer" : "number";
    if (a->has_strings)
        json_array_append_new(types, json_string("string"));
    if (a->has_numbers)
        json_array_append_new(types, json_string(num));
    if (a->has_bools)
        json_array_append_new(types, json_string("bool"));
    json_object_set_new(o, "name", json_string(a->name));
    json_object_set_new(o, "type", json_string(n_types > 1 ? "mixed"
                                               : a->has_strings ? "string"
                                               : a->has_numbers ? num
                                                                : "bool"));
    json_object_set_new(o, "types", types);
    json_object_set_new(o, "items", json_integer((json_int_t)a->items));
    if (a->has_strings) {
        json_t *vals = json_array();
        for (size_t i = 0; i < a->n_values; i++) {
            json_t *v = json_object();
            json_object_set_new(v, "value", json_string(a->values[i]->value));
            json_object_set_new(v, "count", json_integer((json_int_t)a->values[i]->count));
            json_array_append_new(vals, v);
        }
        json_object_set_new(o, "values", vals);
        json_object_set_new(o, "distinct", json_integer((json_int_t)a->distinct));
    }
    if (a->has_range) {
        json_object_set_new(o, "min", bound_json(a->min, a->integer));
        json_object_set_new(o, "max", bound_json(a->max, a->integer));
    }
    if (a->has_bools) {
        json_object_set_new(o, "true", json_integer((json_int_t)a->true_count));
        json_object_set_new(o, "false", json_integer((json_int_t)a->false_count));
    }
    return o;
}

json_t *cirrus_schema_json(const Cirrus__V1__SchemaResult *s)
{
    json_t *o = json_object(), *attrs = json_array(), *missing = json_array();
    for (size_t i = 0; i < s->n_attributes; i++)
        json_array_append_new(attrs, schema_attr_json(s->attributes[i]));
    for (size_t i = 0; i < s->n_missing_groups; i++)
        json_array_append_new(missing, json_integer(s->missing_groups[i]));
    json_object_set_new(o, "items", json_integer((json_int_t)s->items));
    json_object_set_new(o, "attributes", attrs);
    json_object_set_new(o, "partial", json_boolean(s->partial));
    json_object_set_new(o, "missing_groups", missing);
    return o;
}
