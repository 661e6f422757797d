/* query.c — cirrus_query to a cirrus.v1.Query (the filter text parsed here) and
 * cirrus_search. */
#include <math.h>
#include <string.h>

#include "client/api_impl.h"
#include "shard/filter_parse.h"
#include "common/validate.h"

_Static_assert((int)CIRRUS_METHOD_SEARLE == (int)CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SEARLE,
               "methods");
_Static_assert((int)CIRRUS_METHOD_COMBINER ==
                   (int)CIRRUS__V1__COMPOSE_METHOD__COMPOSE_COMBINER, "methods");
_Static_assert((int)CIRRUS_METHOD_SUM == (int)CIRRUS__V1__COMPOSE_METHOD__COMPOSE_SUM, "methods");
_Static_assert((int)CIRRUS_METHOD_TEXT == (int)CIRRUS__V1__COMPOSE_METHOD__COMPOSE_TEXT,
               "methods");
_Static_assert((int)CIRRUS_METHOD_IMAGE == (int)CIRRUS__V1__COMPOSE_METHOD__COMPOSE_IMAGE,
               "methods");

cirrus_query cirrus_query_default(void)
{
    cirrus_query q;
    memset(&q, 0, sizeof q);
    q.k = 10;
    q.include_metadata = 1;
    q.method = CIRRUS_METHOD_DEFAULT;
    return q;
}

/* The protobuf structs one query is built from; they point into the caller's query. */
typedef struct wire_query {
    Cirrus__V1__Query q;
    Cirrus__V1__Vector vec;
    Cirrus__V1__Composed composed;
    Cirrus__V1__Reference ref;
    Cirrus__V1__SearchParams params;
    Cirrus__V1__Filter *filter; /* owned */
} wire_query;

static cr_err check_vector(const float *v, size_t dim, const char *what)
{
    if (!v || dim == 0)
        return cr_error_set(CR_ERR_INVALID, "query: %s needs a non-NULL array and dim > 0",
                            what);
    if (dim > 65536)
        return cr_error_set(CR_ERR_INVALID, "query: %s has dim %zu (at most 65536)", what, dim);
    return cr_validate_finite(v, dim, what);
}

static cr_err build_reference(const cirrus_query *q, wire_query *w)
{
    int refs = (q->ref_item_id != NULL) + (q->ref_image != NULL) + (q->ref_vector != NULL);
    cr_err rc;

    if (refs != 1)
        return cr_error_set(CR_ERR_INVALID, "query: a composed query (caption) needs exactly one "
                            "reference: ref_item_id, ref_image or ref_vector (got %d)", refs);
    if (q->ref_item_id) {
        rc = cr_validate_id(q->ref_item_id);
        if (rc)
            return cr_error_wrap(rc, "query: ref_item_id");
        w->ref.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
        w->ref.item_id = (char *)q->ref_item_id;
    } else if (q->ref_image) {
        if (q->ref_image_len == 0)
            return cr_error_set(CR_ERR_INVALID, "query: ref_image with ref_image_len 0");
        w->ref.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
        w->ref.image.data = (uint8_t *)q->ref_image;
        w->ref.image.len = q->ref_image_len;
    } else {
        rc = check_vector(q->ref_vector, q->ref_dim, "ref_vector");
        if (rc)
            return rc;
        w->vec.values = (float *)q->ref_vector;
        w->vec.n_values = q->ref_dim;
        w->ref.ref_case = CIRRUS__V1__REFERENCE__REF_VECTOR;
        w->ref.vector = &w->vec;
    }
    if ((int)q->method < CIRRUS_METHOD_DEFAULT || (int)q->method > CIRRUS_METHOD_IMAGE)
        return cr_error_set(CR_ERR_INVALID, "query: unknown method %d", (int)q->method);
    w->composed.reference = &w->ref;
    w->composed.caption = (char *)(q->caption ? q->caption : "");
    w->composed.caption2 = (char *)(q->caption2 ? q->caption2 : "");
    w->composed.method = (Cirrus__V1__ComposeMethod)q->method;
    w->q.kind_case = CIRRUS__V1__QUERY__KIND_COMPOSED;
    w->q.composed = &w->composed;
    return CR_OK;
}

static cr_err build_kind(const cirrus_query *q, wire_query *w)
{
    int composed = q->caption || q->ref_item_id || q->ref_image || q->ref_vector;
    int kinds = (q->text != NULL) + (q->vector != NULL) + (q->image != NULL) +
                (q->item_id != NULL) + composed;
    cr_err rc;

    if (kinds != 1)
        return cr_error_set(CR_ERR_INVALID, "query: set exactly one of text, vector, image, "
                            "item_id or caption + a reference (got %d)", kinds);
    if (composed)
        return build_reference(q, w);
    if (q->text) {
        if (!q->text[0])
            return cr_error_set(CR_ERR_INVALID, "query: empty text");
        w->q.kind_case = CIRRUS__V1__QUERY__KIND_TEXT;
        w->q.text = (char *)q->text;
    } else if (q->vector) {
        rc = check_vector(q->vector, q->dim, "vector");
        if (rc)
            return rc;
        w->vec.values = (float *)q->vector;
        w->vec.n_values = q->dim;
        w->q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
        w->q.vector = &w->vec;
    } else if (q->image) {
        if (q->image_len == 0)
            return cr_error_set(CR_ERR_INVALID, "query: image with image_len 0");
        w->q.kind_case = CIRRUS__V1__QUERY__KIND_IMAGE;
        w->q.image.data = (uint8_t *)q->image;
        w->q.image.len = q->image_len;
    } else {
        rc = cr_validate_id(q->item_id);
        if (rc)
            return cr_error_wrap(rc, "query: item_id");
        w->q.kind_case = CIRRUS__V1__QUERY__KIND_ITEM_ID;
        w->q.item_id = (char *)q->item_id;
    }
    return CR_OK;
}

/* Fills w from q. On failure the message says what is wrong; w->filter may need freeing. */
static cr_err build_query(const cirrus_query *q, wire_query *w)
{
    cr_err rc;

    memset(w, 0, sizeof *w);
    cirrus__v1__query__init(&w->q);
    cirrus__v1__vector__init(&w->vec);
    cirrus__v1__composed__init(&w->composed);
    cirrus__v1__reference__init(&w->ref);
    cirrus__v1__search_params__init(&w->params);
    if (q->k < 1 || q->k > CIRRUS_MAX_K)
        return cr_error_set(CR_ERR_INVALID, "query: k must be 1..%d (got %u)", CIRRUS_MAX_K,
                            q->k);
    rc = build_kind(q, w);
    if (rc)
        return rc;
    if (q->filter && q->filter[0]) {
        rc = cr_filter_parse(q->filter, &w->filter);
        if (rc)
            return rc; /* "filter: expected ... at column N: <text>" */
        w->q.filter = w->filter;
    }
    w->q.k = q->k;
    w->q.offset = q->offset;
    w->q.group_by = (char *)(q->group_by ? q->group_by : "");
    w->q.group_size = q->group_size;
    w->q.include_metadata = q->include_metadata != 0;
    w->q.include_vectors = q->include_vectors != 0;
    w->params.nprobe = q->nprobe;
    w->params.ef_search = q->ef_search;
    w->params.exact = q->exact != 0;
    w->q.params = &w->params;
    return CR_OK;
}

cirrus_err cirrus_search(cirrus *c, const cirrus_query *q, cirrus_result **out)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    wire_query w;
    cirrus_err rc;

    if (!c)
        return CIRRUS_ERR_INVALID;
    if (!q || !out)
        return api_failf(c, CR_ERR_INVALID, "cirrus_search: %s is NULL", !q ? "query" : "out");
    rc = (cirrus_err)build_query(q, &w);
    if (rc) {
        api_fail(c, (cr_err)rc);
        goto out;
    }
    sr.query = &w.q;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    rc = api_call(c, &req, q->timeout_ms, &resp);
    if (rc)
        goto out;
    rc = api_result_new(c, RESULT_SEARCH, resp, out);
    resp = NULL;
out:
    if (w.filter)
        cirrus__v1__filter__free_unpacked(w.filter, NULL);
    cirrus_response_free(resp);
    return rc;
}
