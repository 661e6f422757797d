#include "client/json.h"

#include "common/attrs_json.h"

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
    json_object_set_new(o, "version", json_integer((json_int_t)it->version));
    json_object_set_new(o, "attributes", cr_attrs_to_json(it->attributes, it->n_attributes));
    if (it->vector) {
        json_t *v = json_array();
        for (size_t i = 0; i < it->vector->n_values; i++)
            json_array_append_new(v, json_real(it->vector->values[i]));
        json_object_set_new(o, "vector", v);
    }
    return o;
}

