/* write.c — cirrus_upsert, cirrus_delete, cirrus_get: cirrus_item and cirrus_attr to and
 * from their protobuf forms. */
#include <stdlib.h>
#include <string.h>

#include "client/api_impl.h"
#include "common/validate.h"

static cirrus_attr attr_named(const char *name, cirrus_attr_type type)
{
    cirrus_attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.type = type;
    return a;
}

cirrus_attr cirrus_attr_string(const char *name, const char *value)
{
    cirrus_attr a = attr_named(name, CIRRUS_ATTR_STRING);
    a.s = value;
    return a;
}

cirrus_attr cirrus_attr_int(const char *name, int64_t value)
{
    cirrus_attr a = attr_named(name, CIRRUS_ATTR_INT);
    a.i = value;
    return a;
}

cirrus_attr cirrus_attr_double(const char *name, double value)
{
    cirrus_attr a = attr_named(name, CIRRUS_ATTR_DOUBLE);
    a.d = value;
    return a;
}

cirrus_attr cirrus_attr_bool(const char *name, int value)
{
    cirrus_attr a = attr_named(name, CIRRUS_ATTR_BOOL);
    a.b = value != 0;
    return a;
}

cirrus_attr cirrus_attr_strings(const char *name, const char *const *values, size_t n)
{
    cirrus_attr a = attr_named(name, CIRRUS_ATTR_STRINGS);
    a.strings = values;
    a.n_strings = n;
    return a;
}

static cr_err check_batch(size_t n, const void *p, const char *what)
{
    if (!p || n < 1 || n > CIRRUS_MAX_BATCH)
        return cr_error_set(CR_ERR_INVALID, "%s: 1..%d per call (got %zu%s)", what,
                            CIRRUS_MAX_BATCH, n, p ? "" : ", NULL array");
    return CR_OK;
}

static cr_err check_ids(const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_err rc = ids[i] ? cr_validate_id(ids[i])
                           : cr_error_set(CR_ERR_INVALID, "id is NULL");
        if (rc)
            return cr_error_wrap(rc, "id %zu", i);
    }
    return CR_OK;
}

/* ---- upsert ------------------------------------------------------------------------------ */

/* The protobuf form of a batch of items; every array is owned, the strings and values they
 * point to are the caller's. */
typedef struct wire_items {
    Cirrus__V1__Item *items, **pitems;
    Cirrus__V1__Vector *vecs;
    Cirrus__V1__Attribute *attrs, **pattrs;
    Cirrus__V1__AttrValue *values;
    Cirrus__V1__StringList *lists;
} wire_items;

static void wire_items_free(wire_items *w)
{
    free(w->items);
    free(w->pitems);
    free(w->vecs);
    free(w->attrs);
    free(w->pattrs);
    free(w->values);
    free(w->lists);
}

static cr_err attr_to_wire(const cirrus_attr *a, Cirrus__V1__Attribute *wa,
                           Cirrus__V1__AttrValue *wv, Cirrus__V1__StringList *wl)
{
    cirrus__v1__attribute__init(wa);
    cirrus__v1__attr_value__init(wv);
    if (!a->name)
        return cr_error_set(CR_ERR_INVALID, "attribute name is NULL");
    wa->name = (char *)a->name;
    wa->value = wv;
    switch (a->type) {
    case CIRRUS_ATTR_STRING:
        if (!a->s)
            return cr_error_set(CR_ERR_INVALID, "attribute '%s': NULL string", a->name);
        wv->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_S;
        wv->s = (char *)a->s;
        break;
    case CIRRUS_ATTR_INT:
        wv->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_I;
        wv->i = a->i;
        break;
    case CIRRUS_ATTR_DOUBLE:
        wv->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_D;
        wv->d = a->d;
        break;
    case CIRRUS_ATTR_BOOL:
        wv->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_B;
        wv->b = a->b != 0;
        break;
    case CIRRUS_ATTR_STRINGS:
        if (a->n_strings && !a->strings)
            return cr_error_set(CR_ERR_INVALID, "attribute '%s': NULL strings", a->name);
        for (size_t i = 0; i < a->n_strings; i++)
            if (!a->strings[i])
                return cr_error_set(CR_ERR_INVALID, "attribute '%s': string %zu is NULL",
                                    a->name, i);
        cirrus__v1__string_list__init(wl);
        wl->values = (char **)a->strings;
        wl->n_values = a->n_strings;
        wv->value_case = CIRRUS__V1__ATTR_VALUE__VALUE_STRINGS;
        wv->strings = wl;
        break;
    default:
        return cr_error_set(CR_ERR_INVALID, "attribute '%s': unknown type %d", a->name,
                            (int)a->type);
    }
    return cr_validate_attribute(wa);
}

static cr_err item_to_wire(const cirrus_item *it, wire_items *w, size_t i, size_t *next_attr)
{
    Cirrus__V1__Item *wi = &w->items[i];
    size_t first = *next_attr, n = it->n_attrs;
    cr_err rc;

    cirrus__v1__item__init(wi);
    if (!it->id)
        return cr_error_set(CR_ERR_INVALID, "item %zu: id is NULL", i);
    rc = cr_validate_id(it->id);
    if (rc)
        return cr_error_wrap(rc, "item %zu", i);
    wi->id = (char *)it->id;
    wi->version = it->version;
    if (it->vector) {
        if (it->dim == 0)
            return cr_error_set(CR_ERR_INVALID, "item '%s': vector with dim 0", it->id);
        rc = cr_validate_finite(it->vector, it->dim, "vector");
        if (rc)
            return cr_error_wrap(rc, "item '%s'", it->id);
        cirrus__v1__vector__init(&w->vecs[i]);
        w->vecs[i].values = (float *)it->vector;
        w->vecs[i].n_values = it->dim;
        wi->vector = &w->vecs[i];
    } else if (!it->image || !it->image_len) {
        return cr_error_set(CR_ERR_INVALID, "item '%s': neither a vector nor an image", it->id);
    }
    if (it->image && it->image_len) {
        wi->image.data = (uint8_t *)it->image;
        wi->image.len = it->image_len;
    }
    if (n && !it->attrs)
        return cr_error_set(CR_ERR_INVALID, "item '%s': attrs is NULL", it->id);
    for (size_t j = 0; j < n; j++) {
        size_t k = first + j;
        rc = attr_to_wire(&it->attrs[j], &w->attrs[k], &w->values[k], &w->lists[k]);
        if (rc)
            return cr_error_wrap(rc, "item '%s'", it->id);
        w->pattrs[k] = &w->attrs[k];
    }
    if (it->image_uri) {
        cirrus_attr uri = cirrus_attr_string("image_uri", it->image_uri);
        size_t k = first + n;
        rc = attr_to_wire(&uri, &w->attrs[k], &w->values[k], &w->lists[k]);
        if (rc)
            return cr_error_wrap(rc, "item '%s'", it->id);
        w->pattrs[k] = &w->attrs[k];
        n++;
    }
    wi->attributes = n ? &w->pattrs[first] : NULL;
    wi->n_attributes = n;
    *next_attr = first + n;
    w->pitems[i] = wi;
    return CR_OK;
}

static cr_err items_to_wire(const cirrus_item *items, size_t n, wire_items *w)
{
    size_t n_attrs = 0, next = 0;
    cr_err rc;

    for (size_t i = 0; i < n; i++) {
        if (items[i].n_attrs > 1024)
            return cr_error_set(CR_ERR_INVALID, "item %zu: %zu attributes (at most 1024)", i,
                                items[i].n_attrs);
        n_attrs += items[i].n_attrs + (items[i].image_uri != NULL);
    }
    w->items = calloc(n, sizeof *w->items);
    w->pitems = calloc(n, sizeof *w->pitems);
    w->vecs = calloc(n, sizeof *w->vecs);
    w->attrs = calloc(n_attrs + 1, sizeof *w->attrs);
    w->pattrs = calloc(n_attrs + 1, sizeof *w->pattrs);
    w->values = calloc(n_attrs + 1, sizeof *w->values);
    w->lists = calloc(n_attrs + 1, sizeof *w->lists);
    if (!w->items || !w->pitems || !w->vecs || !w->attrs || !w->pattrs || !w->values ||
        !w->lists)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        rc = item_to_wire(&items[i], w, i, &next);
        if (rc)
            return rc;
    }
    return CR_OK;
}

/* The per-item outcomes of a write: fills status (may be NULL) and returns CIRRUS_OK or the
 * first failure, with "item 'id': why" on the handle. */
static cirrus_err write_outcome(cirrus *c, const Cirrus__V1__WriteResult *wr, size_t n,
                                const char *const *ids, cirrus_item_status *status)
{
    cirrus_err first = CIRRUS_OK;
    if (!wr || wr->n_items != n)
        return api_failf(c, CR_ERR_PROTO, "write reply with %zu outcomes for %zu items",
                         wr ? wr->n_items : 0, n);
    for (size_t i = 0; i < n; i++) {
        const Cirrus__V1__ItemStatus *s = wr->items[i];
        cirrus_err code = s && s->status ? (cirrus_err)s->status->code : CIRRUS_ERR_PROTO;
        if (status) {
            status[i].code = code;
            status[i].version = s ? s->version : 0;
        }
        if (code < 0 && first == CIRRUS_OK)
            first = api_failf(c, (cr_err)code, "item '%s': %s", ids[i],
                              s && s->status && s->status->message && s->status->message[0]
                                  ? s->status->message
                                  : cirrus_strerror(code));
    }
    return first ? first : api_ok(c, CIRRUS_OK);
}

cirrus_err cirrus_upsert(cirrus *c, const cirrus_item *items, size_t n_items,
                         cirrus_item_status *status)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    const char **ids = NULL;
    wire_items w;
    cirrus_err rc;
    cr_err crc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    memset(&w, 0, sizeof w);
    crc = check_batch(n_items, items, "upsert");
    if (!crc)
        crc = items_to_wire(items, n_items, &w);
    if (!crc && !(ids = malloc(n_items * sizeof *ids)))
        crc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (crc) {
        rc = api_fail(c, crc);
        goto out;
    }
    for (size_t i = 0; i < n_items; i++)
        ids[i] = items[i].id;
    up.items = w.pitems;
    up.n_items = n_items;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    rc = api_call(c, &req, 0, &resp);
    if (rc == CIRRUS_OK)
        rc = write_outcome(c, resp->upsert, n_items, ids, status);
out:
    if (rc && rc != CIRRUS_STALE && status && !resp)
        for (size_t i = 0; i < n_items && items; i++) {
            status[i].code = rc;
            status[i].version = 0;
        }
    cirrus_response_free(resp);
    free(ids);
    wire_items_free(&w);
    return rc;
}

/* ---- delete and get ---------------------------------------------------------------------- */

cirrus_err cirrus_delete(cirrus *c, const char *const *ids, size_t n_ids)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    Cirrus__V1__DeleteItem *items = NULL, **pitems = NULL;
    Cirrus__V1__Response *resp = NULL;
    cirrus_err rc;
    cr_err crc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    crc = check_batch(n_ids, ids, "delete");
    if (!crc)
        crc = check_ids(ids, n_ids);
    if (!crc) {
        items = calloc(n_ids, sizeof *items);
        pitems = calloc(n_ids, sizeof *pitems);
        if (!items || !pitems)
            crc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    if (crc) {
        rc = api_fail(c, crc);
        goto out;
    }
    for (size_t i = 0; i < n_ids; i++) {
        cirrus__v1__delete_item__init(&items[i]);
        items[i].id = (char *)ids[i];
        pitems[i] = &items[i];
    }
    del.items = pitems;
    del.n_items = n_ids;
    req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    rc = api_call(c, &req, 0, &resp);
    if (rc == CIRRUS_OK)
        rc = write_outcome(c, resp->delete_, n_ids, ids, NULL);
out:
    cirrus_response_free(resp);
    free(items);
    free(pitems);
    return rc;
}

static cirrus_err get_items(cirrus *c, const char *const *ids, size_t n_ids, int with_vectors,
                            int with_images, cirrus_result **out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    size_t missing;
    cirrus_err rc;
    cr_err crc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    crc = out ? check_batch(n_ids, ids, "get")
              : cr_error_set(CR_ERR_INVALID, "cirrus_get: out is NULL");
    if (!crc)
        crc = check_ids(ids, n_ids);
    if (crc)
        return api_fail(c, crc);
    get.ids = (char **)ids;
    get.n_ids = n_ids;
    get.include_vector = with_vectors != 0;
    get.include_image = with_images != 0;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    rc = api_call(c, &req, 0, &resp);
    if (rc)
        return rc;
    missing = resp->get->n_missing;
    rc = api_result_new(c, RESULT_GET, resp, out);
    if (rc)
        return rc;
    if (missing)
        return api_failf(c, CR_NOTFOUND, "%zu of %zu id(s) not found (first: '%s')", missing,
                         n_ids, (*out)->resp->get->missing[0]);
    return api_ok(c, CIRRUS_OK);
}

cirrus_err cirrus_get(cirrus *c, const char *const *ids, size_t n_ids, int with_vectors,
                      cirrus_result **out)
{
    return get_items(c, ids, n_ids, with_vectors, 0, out);
}

cirrus_err cirrus_get_images(cirrus *c, const char *const *ids, size_t n_ids,
                             cirrus_result **out)
{
    return get_items(c, ids, n_ids, 0, 1, out);
}
