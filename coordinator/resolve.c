#include "coordinator/resolve.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/validate.h"

/* Completes the resolution with rc (and the current error message when rc is an error). */
static void finish(coord_resolve *s, cr_err rc)
{
    coord_status_keep(&s->st, rc);
    coord_one_free(&s->one);
    coord_loop_call(s->r->loop, &s->idle, NULL, 0, s->done, s->arg);
}

static cr_err copy_vector(const float *v, size_t n, float **out, size_t *dim)
{
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!*out)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    memcpy(*out, v, n * sizeof **out);
    *dim = n;
    return CR_OK;
}

/* ---- fetching a stored vector ----------------------------------------------------------------- */

static cr_err fetch_start(coord_resolve *s, const char *id, coord_call_fn next)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    char *ids[1] = {(char *)id};
    cr_err rc = cr_validate_id(id);
    if (rc)
        return cr_error_wrap(rc, "reference");
    get.ids = ids;
    get.n_ids = 1;
    get.include_vector = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    return coord_one_start(&s->one, s->r, COORD_TO_GROUP, coord_map_group_of(s->r->map, id),
                           &req, next, s);
}

/* The fetched item's vector, copied to *vec. */
static cr_err fetched(coord_resolve *s, const char *id, float **vec, size_t *dim)
{
    const Cirrus__V1__Response *resp = s->one.sub.resp;
    cr_err rc = coord_one_check(&s->one, "fetch reference");
    if (rc)
        return rc;
    if (!resp->get || resp->get->n_items == 0 || !resp->get->items[0]->vector)
        return cr_error_set(CR_ERR_INVALID, "reference item '%s' not found", id);
    return copy_vector(resp->get->items[0]->vector->values,
                       resp->get->items[0]->vector->n_values, vec, dim);
}

/* ---- encoding ------------------------------------------------------------------------------- */

static cr_err encode_start(coord_resolve *s, Cirrus__V1__Request *req, const char *what,
                           coord_call_fn next)
{
    s->what = what;
    if (s->r->map->n_encoders == 0)
        return cr_error_set(CR_ERR_UNAVAILABLE, "%s needs an encoder and the cluster map lists "
                                                "none", what);
    return coord_one_start(&s->one, s->r, COORD_TO_ENCODER, 0, req, next, s);
}

static cr_err take_embedding(coord_resolve *s, const char *what)
{
    const Cirrus__V1__Embeddings *e = NULL;
    const Cirrus__V1__Response *resp = s->one.sub.resp;
    cr_err rc = coord_one_check(&s->one, what);
    if (rc)
        return rc;
    if (resp->result_case == CIRRUS__V1__RESPONSE__RESULT_ENCODE_TEXT)
        e = resp->encode_text;
    else if (resp->result_case == CIRRUS__V1__RESPONSE__RESULT_ENCODE_IMAGE)
        e = resp->encode_image;
    else if (resp->result_case == CIRRUS__V1__RESPONSE__RESULT_COMPOSE)
        e = resp->compose;
    if (!e || e->n_vectors < 1 || !e->vectors[0]->n_values)
        return cr_error_set(CR_ERR_PROTO, "encoder answered without an embedding");
    s->truncated = e->n_truncated > 0 && e->truncated[0];
    return copy_vector(e->vectors[0]->values, e->vectors[0]->n_values, &s->vec, &s->dim);
}

static void on_encoded(void *arg)
{
    coord_resolve *s = arg;
    cr_err rc = take_embedding(s, s->what);
    s->t->encode_us = cr_clock_mono_us() - s->t0;
    finish(s, rc);
}

static void on_composed(void *arg)
{
    coord_resolve *s = arg;
    cr_err rc = take_embedding(s, s->what);
    s->t->compose_us = cr_clock_mono_us() - s->t0;
    /* a cut caption is reported per answer: such vectors are not cached */
    if (!rc && !s->truncated)
        coord_qcache_put(s->r->app->qcache, &s->key, s->vec, s->dim);
    finish(s, rc);
}

/* The cache key of the composed query c with its method resolved to m: everything the
 * composition depends on (qcache.h). The encoders stand in for the model. */
static void key_build(coord_resolve *s, const Cirrus__V1__Composed *c, int m)
{
    const Cirrus__V1__Reference *ref = c->reference;
    const coord_map *map = s->r->map;
    int32_t mk[2] = {m, (int32_t)ref->ref_case};
    coord_qkey_init(&s->key);
    coord_qkey_add(&s->key, mk, sizeof mk);
    for (int i = 0; i < map->n_encoders; i++)
        coord_qkey_add(&s->key, map->encoders[i], strlen(map->encoders[i]));
    coord_qkey_add(&s->key, c->caption, c->caption ? strlen(c->caption) : 0);
    coord_qkey_add(&s->key, c->caption2, c->caption2 ? strlen(c->caption2) : 0);
    coord_qkey_add(&s->key, c->prompt_template,
                   c->prompt_template ? strlen(c->prompt_template) : 0);
    if (s->refvec) /* an item id: its current vector, so an updated item is a new key */
        coord_qkey_add(&s->key, s->refvec, s->refdim * sizeof *s->refvec);
    else if (ref->ref_case == CIRRUS__V1__REFERENCE__REF_VECTOR && ref->vector)
        coord_qkey_add(&s->key, ref->vector->values, ref->vector->n_values * sizeof(float));
    else
        coord_qkey_add_hash(&s->key, ref->image.data, ref->image.len);
}

/* ---- composed queries ------------------------------------------------------------------------ */

/* Sends the compose step, with the fetched reference vector when there is one. */
static cr_err compose_start(coord_resolve *s)
{
    const Cirrus__V1__Composed *c = s->q->composed;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ComposeRequest cr = CIRRUS__V1__COMPOSE_REQUEST__INIT;
    Cirrus__V1__Composed q = *c, *qs[1] = {&q};
    Cirrus__V1__Reference ref;
    Cirrus__V1__Vector rv = CIRRUS__V1__VECTOR__INIT;

    cirrus__v1__reference__init(&ref);
    if (s->refvec) {
        rv.values = s->refvec;
        rv.n_values = s->refdim;
        ref.ref_case = CIRRUS__V1__REFERENCE__REF_VECTOR;
        ref.vector = &rv;
        q.reference = &ref;
    }
    const float *hit;
    size_t hdim;

    if (q.method == CIRRUS__V1__COMPOSE_METHOD__COMPOSE_DEFAULT)
        q.method = (Cirrus__V1__ComposeMethod)s->r->map->default_method;
    key_build(s, c, (int)q.method);
    if (coord_qcache_get(s->r->app->qcache, &s->key, &hit, &hdim)) {
        cr_err rc = copy_vector(hit, hdim, &s->vec, &s->dim);
        s->t->encode_us = cr_clock_mono_us() - s->t0;
        s->t->compose_us = 0;
        if (!rc)
            finish(s, rc);
        return rc;
    }
    cr.queries = qs;
    cr.n_queries = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
    req.compose = &cr;
    s->t->encode_us = cr_clock_mono_us() - s->t0;
    s->t0 = cr_clock_mono_us();
    return encode_start(s, &req, "compose", on_composed);
}

static void on_reference(void *arg)
{
    coord_resolve *s = arg;
    cr_err rc = fetched(s, s->q->composed->reference->item_id, &s->refvec, &s->refdim);
    coord_one_free(&s->one);
    if (!rc)
        rc = compose_start(s);
    if (rc)
        finish(s, rc);
}

static cr_err composed_start(coord_resolve *s)
{
    const Cirrus__V1__Composed *c = s->q->composed;
    if (!c)
        return cr_error_set(CR_ERR_INVALID, "composed query without a body");
    if (!c->reference || c->reference->ref_case == CIRRUS__V1__REFERENCE__REF__NOT_SET)
        return cr_error_set(CR_ERR_INVALID, "composed query without a reference");
    if (c->reference->ref_case == CIRRUS__V1__REFERENCE__REF_ITEM_ID)
        return fetch_start(s, c->reference->item_id, on_reference);
    return compose_start(s);
}

/* ---- the query kinds ------------------------------------------------------------------------ */

static void on_item(void *arg)
{
    coord_resolve *s = arg;
    cr_err rc = fetched(s, s->q->item_id, &s->vec, &s->dim);
    s->t->encode_us = cr_clock_mono_us() - s->t0;
    finish(s, rc);
}

static cr_err text_start(coord_resolve *s)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeTextRequest et = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
    char *texts[1] = {s->q->text};
    et.texts = texts;
    et.n_texts = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
    req.encode_text = &et;
    return encode_start(s, &req, "encode text", on_encoded);
}

static cr_err image_start(coord_resolve *s)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeImageRequest ei = CIRRUS__V1__ENCODE_IMAGE_REQUEST__INIT;
    ProtobufCBinaryData imgs[1] = {s->q->image};
    if (!s->q->image.len)
        return cr_error_set(CR_ERR_INVALID, "empty query image");
    ei.images = imgs;
    ei.n_images = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE;
    req.encode_image = &ei;
    return encode_start(s, &req, "encode image", on_encoded);
}

/* Starts the first step of q; a vector query needs none and is done at once. */
static cr_err kind_start(coord_resolve *s, int *done_now)
{
    const Cirrus__V1__Query *q = s->q;
    *done_now = 0;
    switch (q->kind_case) {
    case CIRRUS__V1__QUERY__KIND_VECTOR:
        if (!q->vector || !q->vector->n_values)
            return cr_error_set(CR_ERR_INVALID, "empty query vector");
        *done_now = 1;
        return copy_vector(q->vector->values, q->vector->n_values, &s->vec, &s->dim);
    case CIRRUS__V1__QUERY__KIND_TEXT: return text_start(s);
    case CIRRUS__V1__QUERY__KIND_IMAGE: return image_start(s);
    case CIRRUS__V1__QUERY__KIND_ITEM_ID: return fetch_start(s, q->item_id, on_item);
    case CIRRUS__V1__QUERY__KIND_COMPOSED: return composed_start(s);
    default:
        return cr_error_set(CR_ERR_INVALID, "query has no kind (vector, text, image, item_id "
                                            "or composed)");
    }
}

void coord_resolve_start(coord_resolve *s, coord_rq *r, const Cirrus__V1__Query *q,
                         Cirrus__V1__Timing *t, coord_call_fn done, void *arg)
{
    int done_now;
    cr_err rc;
    memset(s, 0, sizeof *s);
    s->r = r;
    s->q = q;
    s->t = t;
    s->done = done;
    s->arg = arg;
    s->t0 = cr_clock_mono_us();
    rc = kind_start(s, &done_now);
    if (rc || done_now)
        finish(s, rc);
}

void coord_resolve_free(coord_resolve *s)
{
    if (s->r) {
        coord_loop_call_cancel(s->r->loop, &s->one.call);
        coord_loop_call_cancel(s->r->loop, &s->idle);
    }
    coord_one_free(&s->one);
    free(s->vec);
    free(s->refvec);
    s->vec = s->refvec = NULL;
    coord_qkey_free(&s->key);
}
