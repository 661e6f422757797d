/* result.c — cirrus_result: the rows of a search (hits) or a get (items), read through
 * accessors from the reply they were unpacked into. */
#include <stdlib.h>
#include <string.h>

#include "client/api_impl.h"

cirrus_err api_result_new(cirrus *c, result_kind kind, Cirrus__V1__Response *resp,
                          cirrus_result **out)
{
    cirrus_result *r = calloc(1, sizeof *r);
    if (!r) {
        cirrus_response_free(resp);
        return api_failf(c, CR_ERR_NOMEM, "out of memory");
    }
    r->kind = kind;
    r->resp = resp;
    *out = r;
    return CIRRUS_OK;
}

void cirrus_result_free(cirrus_result **pr)
{
    cirrus_result *r = pr ? *pr : NULL;
    if (!r)
        return;
    cirrus_response_free(r->resp);
    free(r);
    *pr = NULL;
}

static const Cirrus__V1__SearchResult *search_of(const cirrus_result *r)
{
    return r && r->kind == RESULT_SEARCH ? r->resp->search : NULL;
}

static const Cirrus__V1__GetResult *get_of(const cirrus_result *r)
{
    return r && r->kind == RESULT_GET ? r->resp->get : NULL;
}

size_t cirrus_result_count(const cirrus_result *r)
{
    const Cirrus__V1__SearchResult *s = search_of(r);
    const Cirrus__V1__GetResult *g = get_of(r);
    return s ? s->n_hits : g ? g->n_items : 0;
}

static const Cirrus__V1__Hit *hit_at(const cirrus_result *r, size_t i)
{
    const Cirrus__V1__SearchResult *s = search_of(r);
    return s && i < s->n_hits ? s->hits[i] : NULL;
}

static const Cirrus__V1__Item *item_at(const cirrus_result *r, size_t i)
{
    const Cirrus__V1__GetResult *g = get_of(r);
    return g && i < g->n_items ? g->items[i] : NULL;
}

/* The attributes of row i, whichever kind of row it is. */
static Cirrus__V1__Attribute *const *attrs_at(const cirrus_result *r, size_t i, size_t *n)
{
    const Cirrus__V1__Hit *h = hit_at(r, i);
    const Cirrus__V1__Item *it = item_at(r, i);
    *n = h ? h->n_attributes : it ? it->n_attributes : 0;
    return h ? h->attributes : it ? it->attributes : NULL;
}

const char *cirrus_result_id(const cirrus_result *r, size_t i)
{
    const Cirrus__V1__Hit *h = hit_at(r, i);
    const Cirrus__V1__Item *it = item_at(r, i);
    return h ? h->id : it ? it->id : NULL;
}

float cirrus_result_score(const cirrus_result *r, size_t i)
{
    const Cirrus__V1__Hit *h = hit_at(r, i);
    return h ? h->score : 0.0f;
}

const float *cirrus_result_vector(const cirrus_result *r, size_t i, size_t *dim)
{
    const Cirrus__V1__Hit *h = hit_at(r, i);
    const Cirrus__V1__Item *it = item_at(r, i);
    const Cirrus__V1__Vector *v = h ? h->vector : it ? it->vector : NULL;
    if (!v || !v->n_values) {
        if (dim)
            *dim = 0;
        return NULL;
    }
    if (dim)
        *dim = v->n_values;
    return v->values;
}

const void *cirrus_result_image(const cirrus_result *r, size_t i, size_t *len)
{
    const Cirrus__V1__Item *it = item_at(r, i);
    size_t n = it ? it->image.len : 0;
    if (len)
        *len = n;
    return n ? it->image.data : NULL;
}

uint64_t cirrus_result_version(const cirrus_result *r, size_t i)
{
    const Cirrus__V1__Item *it = item_at(r, i);
    return it ? it->version : 0;
}

size_t cirrus_result_attr_count(const cirrus_result *r, size_t i)
{
    size_t n;
    attrs_at(r, i, &n);
    return n;
}

/* Fills out from a wire attribute; CR_NOTFOUND for one without a (known) value. */
static cirrus_err attr_from_wire(const Cirrus__V1__Attribute *a, cirrus_attr *out)
{
    const Cirrus__V1__AttrValue *v = a ? a->value : NULL;
    memset(out, 0, sizeof *out);
    if (!v)
        return CIRRUS_NOTFOUND;
    out->name = a->name;
    switch (v->value_case) {
    case CIRRUS__V1__ATTR_VALUE__VALUE_S:
        out->type = CIRRUS_ATTR_STRING;
        out->s = v->s;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_I:
        out->type = CIRRUS_ATTR_INT;
        out->i = v->i;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_D:
        out->type = CIRRUS_ATTR_DOUBLE;
        out->d = v->d;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_B:
        out->type = CIRRUS_ATTR_BOOL;
        out->b = v->b != 0;
        break;
    case CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS:
        out->type = CIRRUS_ATTR_STRINGS;
        out->strings = v->strings ? (const char *const *)v->strings->values : NULL;
        out->n_strings = v->strings ? v->strings->n_values : 0;
        break;
    default:
        return CIRRUS_NOTFOUND;
    }
    return CIRRUS_OK;
}

cirrus_err cirrus_result_attr(const cirrus_result *r, size_t i, size_t j, cirrus_attr *out)
{
    size_t n;
    Cirrus__V1__Attribute *const *a = attrs_at(r, i, &n);
    if (!out)
        return CIRRUS_ERR_INVALID;
    if (j >= n) {
        memset(out, 0, sizeof *out);
        return CIRRUS_NOTFOUND;
    }
    return attr_from_wire(a[j], out);
}

cirrus_err cirrus_result_attr_find(const cirrus_result *r, size_t i, const char *name,
                                   cirrus_attr *out)
{
    size_t n;
    Cirrus__V1__Attribute *const *a = attrs_at(r, i, &n);
    if (!out || !name)
        return CIRRUS_ERR_INVALID;
    for (size_t j = 0; j < n; j++)
        if (a[j] && a[j]->name && strcmp(a[j]->name, name) == 0)
            return attr_from_wire(a[j], out);
    memset(out, 0, sizeof *out);
    return CIRRUS_NOTFOUND;
}

const char *cirrus_result_image_uri(const cirrus_result *r, size_t i)
{
    cirrus_attr a;
    if (cirrus_result_attr_find(r, i, "image_uri", &a) != CIRRUS_OK ||
        a.type != CIRRUS_ATTR_STRING)
        return NULL;
    return a.s;
}

int cirrus_result_partial(const cirrus_result *r)
{
    const Cirrus__V1__SearchResult *s = search_of(r);
    return s ? s->partial != 0 : 0;
}

const uint32_t *cirrus_result_missing_groups(const cirrus_result *r, size_t *n)
{
    const Cirrus__V1__SearchResult *s = search_of(r);
    if (n)
        *n = s ? s->n_missing_groups : 0;
    return s && s->n_missing_groups ? s->missing_groups : NULL;
}

int cirrus_result_caption_truncated(const cirrus_result *r)
{
    const Cirrus__V1__SearchResult *s = search_of(r);
    return s ? s->caption_truncated != 0 : 0;
}

uint64_t cirrus_result_server_us(const cirrus_result *r)
{
    const Cirrus__V1__SearchResult *s = search_of(r);
    return s && s->timing ? s->timing->total_us : 0;
}

size_t cirrus_result_missing_count(const cirrus_result *r)
{
    const Cirrus__V1__GetResult *g = get_of(r);
    return g ? g->n_missing : 0;
}

const char *cirrus_result_missing_id(const cirrus_result *r, size_t i)
{
    const Cirrus__V1__GetResult *g = get_of(r);
    return g && i < g->n_missing ? g->missing[i] : NULL;
}
