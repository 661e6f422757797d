/* The coordinator's request handlers: each runs on a worker thread and talks to backends only
 * through coord_io_call(). */
#include "coordinator/handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/validate.h"
#include "common/wire.h"
#include "coordinator/merge.h"

#define UNPACK_LIMIT (256u << 20)

typedef struct rq {
    coord_app *app;
    coord_worker *w;
    const cr_wire_msg *route;
    const Cirrus__V1__Request *req;
    const coord_map *map; /* the map when the request arrived (see coord_io_map) */
    uint64_t deadline_ms; /* absolute, monotonic */
    int failed, partial;  /* for the metrics */
} rq;

/* What is left of the request's own deadline (at least 1 ms). Used alone for operations whose
 * length is the client's call (a snapshot waits for the shards' indexers). */
static uint32_t deadline_left(const rq *r)
{
    uint64_t now = cr_clock_mono_ms();
    return (uint32_t)(r->deadline_ms > now ? r->deadline_ms - now : 1);
}

static uint32_t sub_timeout(const rq *r)
{
    uint32_t left = deadline_left(r);
    return left < r->app->o.backend_timeout_ms ? left : r->app->o.backend_timeout_ms;
}

static cr_err pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    *buf = malloc(*len ? *len : 1);
    if (!*buf)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    protobuf_c_message_pack(m, *buf);
    return CR_OK;
}

static void sub_init(coord_sub *s, coord_target t, int group, int replica, const uint8_t *body,
                     size_t len, uint32_t timeout, int hedge)
{
    memset(s, 0, sizeof *s);
    s->target = t;
    s->group = group;
    s->replica = replica;
    s->body = body;
    s->len = len;
    s->timeout_ms = timeout;
    s->hedge = hedge;
}

static void sub_free(coord_sub *s)
{
    if (s->resp)
        cirrus__v1__response__free_unpacked(s->resp, NULL);
    s->resp = NULL;
}

/* CR_OK when the backend answered with a non-error status. */
static cr_err sub_check(const coord_sub *s, const char *what)
{
    if (s->rc)
        return cr_error_set(s->rc, "%s: %s", what, s->msg[0] ? s->msg : cr_strerror(s->rc));
    if (!s->resp || !s->resp->status)
        return cr_error_set(CR_ERR_PROTO, "%s: answer without a status", what);
    if (s->resp->status->code < 0)
        return cr_error_set((cr_err)s->resp->status->code, "%s", s->resp->status->message);
    return CR_OK;
}

/* A backend outage (rather than a bad request). */
static int outage(cr_err code)
{
    return code == CR_TIMEOUT || code == CR_ERR_UNAVAILABLE || code == CR_ERR_NET ||
           code == CR_ERR_OVERLOADED || code == CR_ERR_DEADLINE || code == CR_ERR_INTERNAL;
}

/* One request to one target; the answer is in s (free with sub_free). */
static cr_err call_one(rq *r, coord_sub *s, coord_target t, int group,
                       Cirrus__V1__Request *req, const char *what)
{
    uint8_t *body = NULL;
    size_t len;
    cr_err rc = pack(&req->base, &body, &len);
    if (rc)
        return rc;
    sub_init(s, t, group, 0, body, len, sub_timeout(r), t != COORD_TO_REPLICA);
    rc = coord_io_call(r->w, s, 1);
    free(body);
    return rc ? rc : sub_check(s, what);
}

static void reply_ok(rq *r, Cirrus__V1__Response *resp)
{
    Cirrus__V1__Status st;
    cr_wire_status_set(&st, CR_OK, "");
    resp->id = r->req->id;
    resp->status = &st;
    if (coord_worker_reply(r->w, r->route, resp))
        CR_WARN("coordinator", "reply %llu: %s", (unsigned long long)r->req->id,
                cr_error_message());
}

static void reply_err(rq *r, cr_err code, const char *msg)
{
    r->failed = 1;
    coord_worker_reply_error(r->w, r->route, r->req->id, code, msg);
}

/* ---- resolving a query to a vector -------------------------------------------------------- */

static cr_err fetch_item_vector(rq *r, const char *id, float **vec, size_t *dim)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    char *ids[1] = {(char *)id};
    coord_sub s;
    cr_err rc = cr_validate_id(id);
    if (rc)
        return cr_error_wrap(rc, "reference");
    get.ids = ids;
    get.n_ids = 1;
    get.include_vector = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    rc = call_one(r, &s, COORD_TO_GROUP, coord_map_group_of(r->map, id), &req, "fetch reference");
    if (!rc && (!s.resp->get || s.resp->get->n_items == 0 || !s.resp->get->items[0]->vector))
        rc = cr_error_set(CR_ERR_INVALID, "reference item '%s' not found", id);
    if (!rc) {
        const Cirrus__V1__Vector *v = s.resp->get->items[0]->vector;
        *vec = malloc(v->n_values * sizeof **vec);
        if (!*vec)
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        else
            memcpy(*vec, v->values, v->n_values * sizeof **vec);
        *dim = v->n_values;
    }
    sub_free(&s);
    return rc;
}

static cr_err take_embedding(coord_sub *s, float **vec, size_t *dim, int *truncated)
{
    const Cirrus__V1__Embeddings *e = NULL;
    const Cirrus__V1__Response *resp = s->resp;
    if (resp->result_case == CIRRUS__V1__RESPONSE__RESULT_ENCODE_TEXT)
        e = resp->encode_text;
    else if (resp->result_case == CIRRUS__V1__RESPONSE__RESULT_ENCODE_IMAGE)
        e = resp->encode_image;
    else if (resp->result_case == CIRRUS__V1__RESPONSE__RESULT_COMPOSE)
        e = resp->compose;
    if (!e || e->n_vectors < 1 || !e->vectors[0]->n_values)
        return cr_error_set(CR_ERR_PROTO, "encoder answered without an embedding");
    *dim = e->vectors[0]->n_values;
    *vec = malloc(*dim * sizeof **vec);
    if (!*vec)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    memcpy(*vec, e->vectors[0]->values, *dim * sizeof **vec);
    if (truncated)
        *truncated = e->n_truncated > 0 && e->truncated[0];
    return CR_OK;
}

static cr_err encode(rq *r, Cirrus__V1__Request *req, const char *what, float **vec, size_t *dim,
                     int *truncated)
{
    coord_sub s;
    cr_err rc;
    if (r->map->n_encoders == 0)
        return cr_error_set(CR_ERR_UNAVAILABLE, "%s needs an encoder and the cluster map lists "
                                                "none", what);
    rc = call_one(r, &s, COORD_TO_ENCODER, 0, req, what);
    if (!rc)
        rc = take_embedding(&s, vec, dim, truncated);
    sub_free(&s);
    return rc;
}

static cr_err resolve_composed(rq *r, const Cirrus__V1__Composed *c, float **vec, size_t *dim,
                               Cirrus__V1__Timing *t, int *truncated)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ComposeRequest cr = CIRRUS__V1__COMPOSE_REQUEST__INIT;
    Cirrus__V1__Composed q = *c, *qs[1] = {&q};
    Cirrus__V1__Reference ref;
    Cirrus__V1__Vector rv = CIRRUS__V1__VECTOR__INIT;
    float *refvec = NULL;
    size_t refdim = 0;
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc = CR_OK;

    cirrus__v1__reference__init(&ref);
    if (!c->reference || c->reference->ref_case == CIRRUS__V1__REFERENCE__REF__NOT_SET)
        return cr_error_set(CR_ERR_INVALID, "composed query without a reference");
    if (c->reference->ref_case == CIRRUS__V1__REFERENCE__REF_ITEM_ID) {
        rc = fetch_item_vector(r, c->reference->item_id, &refvec, &refdim);
        if (rc)
            return rc;
        rv.values = refvec;
        rv.n_values = refdim;
        ref.ref_case = CIRRUS__V1__REFERENCE__REF_VECTOR;
        ref.vector = &rv;
        q.reference = &ref;
    }
    if (q.method == CIRRUS__V1__COMPOSE_METHOD__COMPOSE_DEFAULT)
        q.method = (Cirrus__V1__ComposeMethod)r->map->default_method;
    cr.queries = qs;
    cr.n_queries = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_COMPOSE;
    req.compose = &cr;
    t->encode_us = cr_clock_mono_us() - t0;
    t0 = cr_clock_mono_us();
    rc = encode(r, &req, "compose", vec, dim, truncated);
    t->compose_us = cr_clock_mono_us() - t0;
    free(refvec);
    return rc;
}

static cr_err resolve_query(rq *r, const Cirrus__V1__Query *q, float **vec, size_t *dim,
                            Cirrus__V1__Timing *t, int *truncated)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    uint64_t t0 = cr_clock_mono_us();
    cr_err rc;
    *truncated = 0;
    switch (q->kind_case) {
    case CIRRUS__V1__QUERY__KIND_VECTOR:
        if (!q->vector || !q->vector->n_values)
            return cr_error_set(CR_ERR_INVALID, "empty query vector");
        *dim = q->vector->n_values;
        *vec = malloc(*dim * sizeof **vec);
        if (!*vec)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        memcpy(*vec, q->vector->values, *dim * sizeof **vec);
        return CR_OK;
    case CIRRUS__V1__QUERY__KIND_TEXT: {
        Cirrus__V1__EncodeTextRequest et = CIRRUS__V1__ENCODE_TEXT_REQUEST__INIT;
        char *texts[1] = {q->text};
        et.texts = texts;
        et.n_texts = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_TEXT;
        req.encode_text = &et;
        rc = encode(r, &req, "encode text", vec, dim, truncated);
        t->encode_us = cr_clock_mono_us() - t0;
        return rc;
    }
    case CIRRUS__V1__QUERY__KIND_IMAGE: {
        Cirrus__V1__EncodeImageRequest ei = CIRRUS__V1__ENCODE_IMAGE_REQUEST__INIT;
        ProtobufCBinaryData imgs[1] = {q->image};
        if (!q->image.len)
            return cr_error_set(CR_ERR_INVALID, "empty query image");
        ei.images = imgs;
        ei.n_images = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE;
        req.encode_image = &ei;
        rc = encode(r, &req, "encode image", vec, dim, NULL);
        t->encode_us = cr_clock_mono_us() - t0;
        return rc;
    }
    case CIRRUS__V1__QUERY__KIND_ITEM_ID:
        rc = fetch_item_vector(r, q->item_id, vec, dim);
        t->encode_us = cr_clock_mono_us() - t0;
        return rc;
    case CIRRUS__V1__QUERY__KIND_COMPOSED:
        return q->composed ? resolve_composed(r, q->composed, vec, dim, t, truncated)
                           : cr_error_set(CR_ERR_INVALID, "composed query without a body");
    default:
        return cr_error_set(CR_ERR_INVALID, "query has no kind (vector, text, image, item_id "
                                            "or composed)");
    }
}

/* ---- search -------------------------------------------------------------------------------- */

typedef struct search_out {
    Cirrus__V1__SearchResult res;
    Cirrus__V1__Timing timing;
    uint32_t *missing;
    Cirrus__V1__Hit *copies; /* hits shown without attributes (grouped, no metadata asked) */
    coord_sub *subs;
    size_t n_subs;
    uint8_t *body;
} search_out;

static void search_out_free(search_out *o)
{
    for (size_t i = 0; o->subs && i < o->n_subs; i++)
        sub_free(&o->subs[i]);
    free(o->subs);
    free(o->missing);
    free(o->copies);
    free(o->res.hits);
    free(o->body);
    memset(o, 0, sizeof *o);
}

static cr_err validate_query(const Cirrus__V1__Query *q)
{
    if (!q)
        return cr_error_set(CR_ERR_INVALID, "search without a query");
    if (cr_validate_k(q->k, CR_MAX_K))
        return CR_ERR_INVALID;
    if (q->offset > CR_MAX_K || q->group_size > 100)
        return cr_error_set(CR_ERR_INVALID, "offset must be <= %d and group_size <= 100",
                            CR_MAX_K);
    return CR_OK;
}

static cr_err run_search(rq *r, const Cirrus__V1__Query *q, search_out *o)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query sq;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    const Cirrus__V1__SearchResult **parts = NULL;
    coord_merge_params mp;
    size_t len, n_parts = 0;
    int grouping = q && q->group_by && q->group_by[0], truncated = 0;
    uint64_t t_start = cr_clock_mono_us(), t0;
    float *vec = NULL;
    size_t dim = 0;
    cr_err rc;

    memset(o, 0, sizeof *o);
    cirrus__v1__search_result__init(&o->res);
    cirrus__v1__timing__init(&o->timing);
    rc = validate_query(q);
    if (!rc)
        rc = resolve_query(r, q, &vec, &dim, &o->timing, &truncated);
    if (rc)
        goto out;
    sq = *q;
    v.values = vec;
    v.n_values = dim;
    sq.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    sq.vector = &v;
    sq.k = (uint32_t)coord_merge_fetch_k(q->k, q->offset, q->group_by, q->group_size);
    sq.offset = 0;
    sq.group_by = "";
    sq.include_metadata = q->include_metadata || grouping;
    sr.query = &sq;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    rc = pack(&req.base, &o->body, &len);
    if (rc)
        goto out;
    o->n_subs = (size_t)r->map->n_groups;
    o->subs = calloc(o->n_subs, sizeof *o->subs);
    o->missing = calloc(o->n_subs, sizeof *o->missing);
    parts = calloc(o->n_subs, sizeof *parts);
    if (!o->subs || !o->missing || !parts) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t g = 0; g < o->n_subs; g++)
        sub_init(&o->subs[g], COORD_TO_GROUP, (int)g, 0, o->body, len, sub_timeout(r), 1);
    t0 = cr_clock_mono_us();
    rc = coord_io_call(r->w, o->subs, o->n_subs);
    o->timing.search_us = cr_clock_mono_us() - t0;
    for (size_t g = 0; !rc && g < o->n_subs; g++) {
        char what[48];
        snprintf(what, sizeof what, "shard group %zu", g);
        cr_err grc = sub_check(&o->subs[g], what);
        if (grc == CR_OK && o->subs[g].resp->search) {
            Cirrus__V1__SearchResult *part = o->subs[g].resp->search;
            for (size_t i = 0; i < part->n_hits; i++)
                part->hits[i]->group = (uint32_t)g;
            parts[n_parts++] = part;
        } else if (grc == CR_OK || outage(grc)) {
            o->missing[o->res.n_missing_groups++] = (uint32_t)g;
        } else {
            rc = grc; /* a bad request (e.g. unknown attribute): the caller's error */
        }
    }
    if (rc)
        goto out;
    t0 = cr_clock_mono_us();
    mp.metric_l2 = r->map->metric_l2;
    mp.k = q->k;
    mp.offset = q->offset;
    mp.group_by = q->group_by;
    mp.group_size = q->group_size;
    rc = coord_merge(parts, n_parts, &mp, &o->res);
    if (!rc && grouping && !q->include_metadata && o->res.n_hits) {
        /* Attributes were fetched only to group by: show shallow copies without them. */
        o->copies = malloc(o->res.n_hits * sizeof *o->copies);
        if (!o->copies) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < o->res.n_hits; i++) {
            o->copies[i] = *o->res.hits[i];
            o->copies[i].attributes = NULL;
            o->copies[i].n_attributes = 0;
            o->res.hits[i] = &o->copies[i];
        }
    }
    o->timing.merge_us = cr_clock_mono_us() - t0;
    o->timing.total_us = cr_clock_mono_us() - t_start;
    o->res.partial = o->res.n_missing_groups > 0;
    o->res.missing_groups = o->missing;
    o->res.timing = &o->timing;
    o->res.caption_truncated = truncated;
out:
    free(parts);
    free(vec);
    return rc;
}

static void do_search(rq *r)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    search_out o;
    cr_err rc = run_search(r, r->req->search ? r->req->search->query : NULL, &o);
    if (rc) {
        reply_err(r, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
        resp.search = &o.res;
        r->partial = o.res.partial;
        reply_ok(r, &resp);
    }
    search_out_free(&o);
}

static void do_search_batch(rq *r)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchBatchResult b = CIRRUS__V1__SEARCH_BATCH_RESULT__INIT;
    size_t n = r->req->search_batch ? r->req->search_batch->n_queries : 0;
    search_out *outs;
    cr_err rc = CR_OK;
    if (n == 0 || n > 1000) {
        reply_err(r, CR_ERR_INVALID, "a batch holds 1..1000 queries");
        return;
    }
    outs = calloc(n, sizeof *outs);
    b.results = calloc(n, sizeof *b.results);
    if (!outs || !b.results) {
        free(outs);
        free(b.results);
        reply_err(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = run_search(r, r->req->search_batch->queries[i], &outs[i]);
        if (rc)
            cr_error_wrap(rc, "query %zu", i);
        b.results[i] = &outs[i].res;
        b.n_results = i + 1;
    }
    if (rc) {
        reply_err(r, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH_BATCH;
        resp.search_batch = &b;
        reply_ok(r, &resp);
    }
    for (size_t i = 0; i < n; i++)
        search_out_free(&outs[i]);
    free(outs);
    free(b.results);
}

/* ---- writes ------------------------------------------------------------------------------ */

/* Encodes the images of items that came without a vector (one encoder call). */
static cr_err encode_missing_vectors(rq *r, Cirrus__V1__Item **items, size_t n,
                                     Cirrus__V1__Vector *vecs, float **owned)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeImageRequest ei = CIRRUS__V1__ENCODE_IMAGE_REQUEST__INIT;
    ProtobufCBinaryData *imgs = calloc(n ? n : 1, sizeof *imgs);
    size_t *which = calloc(n ? n : 1, sizeof *which), m = 0;
    coord_sub s;
    cr_err rc = CR_OK;

    if (!imgs || !which) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if ((!items[i]->vector || !items[i]->vector->n_values) && items[i]->image.len) {
            imgs[m] = items[i]->image;
            which[m++] = i;
        }
    if (!m)
        goto out;
    if (r->map->n_encoders == 0) {
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "items without vectors need an encoder");
        goto out;
    }
    ei.images = imgs;
    ei.n_images = m;
    req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE;
    req.encode_image = &ei;
    rc = call_one(r, &s, COORD_TO_ENCODER, 0, &req, "encode images");
    if (!rc && (!s.resp->encode_image || s.resp->encode_image->n_vectors != m))
        rc = cr_error_set(CR_ERR_PROTO, "encoder returned the wrong number of vectors");
    for (size_t j = 0; !rc && j < m; j++) {
        const Cirrus__V1__Vector *v = s.resp->encode_image->vectors[j];
        size_t i = which[j];
        owned[i] = malloc(v->n_values * sizeof(float));
        if (!owned[i]) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(owned[i], v->values, v->n_values * sizeof(float));
        cirrus__v1__vector__init(&vecs[i]);
        vecs[i].values = owned[i];
        vecs[i].n_values = v->n_values;
    }
    if (!rc || rc != CR_ERR_NOMEM)
        sub_free(&s);
out:
    free(imgs);
    free(which);
    return rc;
}

/* ---- versions ---------------------------------------------------------------------------- */

/* A client-chosen version beyond the clock plus the allowed skew is rejected, not ignored: a
 * client that sets versions (a restore, a replay) relies on them, and storing another one
 * silently would break what it believes was written; the error tells it to send 0. Checked
 * for every item before anything is sent, so a rejected request changes nothing. */
static cr_err check_client_version(rq *r, const char *id, uint64_t version)
{
    cr_err rc;
    if (!version)
        return CR_OK;
    rc = cr_hlc_check(&r->app->hlc, version, r->app->o.version_skew_ms);
    return rc ? cr_error_wrap(rc, "item '%s'", id) : CR_OK;
}

/* Seeds the version clock with the highest version held by every replica of the written
 * groups that has not reported one under the current map. After a restart the clock starts
 * from the wall clock; versions below what the shards hold would make writes stale, and items
 * written before the restart could never be updated or deleted. A replica that does not
 * answer stays unseeded and is asked again by the next write to its group. */
static void seed_groups(rq *r, const int *group, size_t n)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest sreq = CIRRUS__V1__STATS_REQUEST__INIT;
    coord_app *app = r->app;
    int ng = r->map->n_groups;
    uint8_t *need = calloc((size_t)ng, 1), *body = NULL;
    coord_sub *subs = calloc((size_t)ng * COORD_MAX_REPLICAS, sizeof *subs);
    size_t k = 0, len;

    if (!need || !subs)
        goto out;
    for (size_t i = 0; i < n; i++)
        need[group[i]] = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &sreq;
    for (int g = 0; g < ng; g++)
        for (int rep = 0; need[g] && rep < r->map->n_replicas[g]; rep++) {
            if (atomic_load(&app->seeded[g][rep]) == r->map)
                continue;
            if (!body && pack(&req.base, &body, &len))
                goto out;
            sub_init(&subs[k++], COORD_TO_REPLICA, g, rep, body, len, sub_timeout(r), 0);
        }
    if (!k || coord_io_call(r->w, subs, k))
        goto out;
    for (size_t i = 0; i < k; i++) {
        if (sub_check(&subs[i], "stats") || !subs[i].resp->stats)
            continue;
        cr_hlc_observe(&app->hlc, subs[i].resp->stats->max_version);
        atomic_store(&app->seeded[subs[i].group][subs[i].replica], r->map);
        CR_DEBUG("coordinator", "group %d replica %d: highest version %llu", subs[i].group,
                 subs[i].replica, (unsigned long long)subs[i].resp->stats->max_version);
    }
out:
    for (size_t i = 0; i < k; i++)
        sub_free(&subs[i]);
    free(subs);
    free(body);
    free(need);
}

/* A version for a write with none: CR_OK, or an error when the clock is exhausted. */
static cr_err next_version(rq *r, const char *id, uint64_t *version)
{
    *version = cr_hlc_next(&r->app->hlc);
    if (!*version)
        return cr_error_set(CR_ERR_INVALID, "item '%s': no version left (the clock is at "
                                            "2^64-1: a shard holds that version)", id);
    return CR_OK;
}

typedef struct write_plan {
    size_t n;                       /* items */
    int *group;                     /* per item */
    Cirrus__V1__ItemStatus *status; /* per item, in request order */
    Cirrus__V1__Status *st;
    char (*msg)[200];
} write_plan;

/* Sends each group's share of the write to every replica; fills per-item statuses. */
static cr_err write_groups(rq *r, int is_delete, void **items, write_plan *p,
                           uint32_t *min_acked)
{
    int ng = r->map->n_groups;
    size_t total_subs = 0, k = 0;
    coord_sub *subs;
    uint8_t **bodies;
    cr_err rc = CR_OK;

    for (int g = 0; g < ng; g++)
        total_subs += (size_t)r->map->n_replicas[g];
    subs = calloc(total_subs, sizeof *subs);
    bodies = calloc((size_t)ng, sizeof *bodies);
    if (!subs || !bodies) {
        free(subs);
        free(bodies);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    *min_acked = UINT32_MAX;
    for (int g = 0; g < ng && !rc; g++) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
        Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
        void **mine = calloc(p->n ? p->n : 1, sizeof *mine);
        size_t m = 0, len = 0;
        if (!mine) {
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < p->n; i++)
            if (p->group[i] == g)
                mine[m++] = items[i];
        if (m) {
            if (is_delete) {
                del.items = (Cirrus__V1__DeleteItem **)mine;
                del.n_items = m;
                req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
                req.delete_ = &del;
            } else {
                up.items = (Cirrus__V1__Item **)mine;
                up.n_items = m;
                req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
                req.upsert = &up;
            }
            rc = pack(&req.base, &bodies[g], &len);
            for (int rep = 0; !rc && rep < r->map->n_replicas[g]; rep++)
                sub_init(&subs[k++], COORD_TO_REPLICA, g, rep, bodies[g], len, sub_timeout(r),
                         0);
        }
        free(mine);
    }
    if (!rc)
        rc = coord_io_call(r->w, subs, k);
    /* Per group: count durable replicas, take per-item outcomes from the first that acked. */
    for (int g = 0, base = 0; !rc && g < ng; g++) {
        int nrep = r->map->n_replicas[g], acked = 0, live = 0, quorum;
        const Cirrus__V1__WriteResult *first = NULL;
        if (!bodies[g])
            continue;
        for (int rep = 0; rep < nrep; rep++) {
            coord_sub *s = &subs[base + rep];
            const Cirrus__V1__WriteResult *wr;
            if (s->rc == CR_ERR_UNAVAILABLE)
                continue; /* known down: not live */
            live++;
            if (sub_check(s, "write"))
                continue;
            wr = is_delete ? s->resp->delete_ : s->resp->upsert;
            if (!wr)
                continue;
            acked++;
            if (!first)
                first = wr;
        }
        quorum = r->map->write_quorum ? r->map->write_quorum : (live ? live : 1);
        if ((uint32_t)acked < *min_acked)
            *min_acked = (uint32_t)acked;
        for (size_t i = 0, j = 0; i < p->n; i++) {
            if (p->group[i] != g)
                continue;
            if (acked >= quorum && first && j < first->n_items && first->items[j]->status) {
                p->st[i].code = first->items[j]->status->code;
                snprintf(p->msg[i], sizeof p->msg[i], "%s", first->items[j]->status->message);
                p->status[i].version = first->items[j]->version;
            } else {
                p->st[i].code = CR_ERR_UNAVAILABLE;
                snprintf(p->msg[i], sizeof p->msg[i],
                         "durable on %d of %d replicas of group %d (quorum %d); retry is safe",
                         acked, nrep, g, quorum);
            }
            j++;
        }
        base += nrep;
    }
    for (size_t i = 0; i < k; i++)
        sub_free(&subs[i]);
    for (int g = 0; g < ng; g++)
        free(bodies[g]);
    free(bodies);
    free(subs);
    if (*min_acked == UINT32_MAX)
        *min_acked = 0;
    return rc;
}

static cr_err plan_new(write_plan *p, size_t n)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    p->group = calloc(n ? n : 1, sizeof *p->group);
    p->status = calloc(n ? n : 1, sizeof *p->status);
    p->st = calloc(n ? n : 1, sizeof *p->st);
    p->msg = calloc(n ? n : 1, sizeof *p->msg);
    if (!p->group || !p->status || !p->st || !p->msg)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    return CR_OK;
}

static void plan_free(write_plan *p)
{
    free(p->group);
    free(p->status);
    free(p->st);
    free(p->msg);
}

static void reply_write(rq *r, write_plan *p, int is_delete, uint32_t acked, const char *const *ids)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__WriteResult wr = CIRRUS__V1__WRITE_RESULT__INIT;
    Cirrus__V1__ItemStatus **ptrs = calloc(p->n ? p->n : 1, sizeof *ptrs);
    if (!ptrs) {
        reply_err(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        uint64_t version = p->status[i].version;
        int code = p->st[i].code;
        cirrus__v1__item_status__init(&p->status[i]);
        p->status[i].version = version;
        cirrus__v1__status__init(&p->st[i]);
        p->st[i].code = code;
        p->st[i].message = p->msg[i];
        p->status[i].id = (char *)ids[i];
        p->status[i].status = &p->st[i];
        ptrs[i] = &p->status[i];
    }
    wr.items = ptrs;
    wr.n_items = p->n;
    wr.replicas_acked = acked;
    resp.result_case = is_delete ? CIRRUS__V1__RESPONSE__RESULT_DELETE
                                 : CIRRUS__V1__RESPONSE__RESULT_UPSERT;
    if (is_delete)
        resp.delete_ = &wr;
    else
        resp.upsert = &wr;
    reply_ok(r, &resp);
    free(ptrs);
}

static void do_upsert(rq *r)
{
    const Cirrus__V1__UpsertRequest *up = r->req->upsert;
    size_t n = up ? up->n_items : 0;
    Cirrus__V1__Vector *vecs = NULL;
    float **owned = NULL;
    const char **ids = NULL;
    write_plan p;
    uint32_t acked = 0;
    cr_err rc;

    if (n == 0 || n > 8192) {
        reply_err(r, CR_ERR_INVALID, "an upsert holds 1..8192 items");
        return;
    }
    rc = plan_new(&p, n);
    vecs = calloc(n, sizeof *vecs);
    owned = calloc(n, sizeof *owned);
    ids = calloc(n, sizeof *ids);
    if (rc || !vecs || !owned || !ids) {
        reply_err(r, CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        Cirrus__V1__Item *it = up->items[i];
        rc = cr_validate_id(it->id);
        if (rc) {
            reply_err(r, rc, cr_error_message());
            goto out;
        }
        if ((rc = check_client_version(r, it->id, it->version))) {
            reply_err(r, rc, cr_error_message());
            goto out;
        }
        ids[i] = it->id;
        p.group[i] = coord_map_group_of(r->map, it->id);
    }
    seed_groups(r, p.group, n);
    for (size_t i = 0; i < n; i++) {
        Cirrus__V1__Item *it = up->items[i];
        if (it->version) {
            cr_hlc_observe(&r->app->hlc, it->version);
        } else if ((rc = next_version(r, it->id, &it->version))) { /* one for every replica */
            reply_err(r, rc, cr_error_message());
            goto out;
        }
    }
    rc = encode_missing_vectors(r, up->items, n, vecs, owned);
    if (rc) {
        reply_err(r, rc, cr_error_message());
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (owned[i]) {
            up->items[i]->vector = &vecs[i];
            up->items[i]->image.len = 0; /* shards need not carry the image */
        }
    rc = write_groups(r, 0, (void **)up->items, &p, &acked);
    for (size_t i = 0; i < n; i++)
        if (owned[i])
            up->items[i]->vector = NULL; /* ours; freed below, not by the request's free */
    if (rc)
        reply_err(r, rc, cr_error_message());
    else
        reply_write(r, &p, 0, acked, ids);
out:
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(vecs);
    free(ids);
    plan_free(&p);
}

static void do_delete(rq *r)
{
    const Cirrus__V1__DeleteRequest *del = r->req->delete_;
    size_t n = del ? del->n_items : 0;
    const char **ids = NULL;
    write_plan p;
    uint32_t acked = 0;
    cr_err rc;
    if (n == 0 || n > 8192) {
        reply_err(r, CR_ERR_INVALID, "a delete holds 1..8192 items");
        return;
    }
    rc = plan_new(&p, n);
    ids = calloc(n, sizeof *ids);
    if (rc || !ids) {
        reply_err(r, CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        Cirrus__V1__DeleteItem *it = del->items[i];
        if ((rc = cr_validate_id(it->id))) {
            reply_err(r, rc, cr_error_message());
            goto out;
        }
        if ((rc = check_client_version(r, it->id, it->version))) {
            reply_err(r, rc, cr_error_message());
            goto out;
        }
        ids[i] = it->id;
        p.group[i] = coord_map_group_of(r->map, it->id);
    }
    seed_groups(r, p.group, n);
    for (size_t i = 0; i < n; i++) {
        Cirrus__V1__DeleteItem *it = del->items[i];
        if (it->version) {
            cr_hlc_observe(&r->app->hlc, it->version);
        } else if ((rc = next_version(r, it->id, &it->version))) {
            reply_err(r, rc, cr_error_message());
            goto out;
        }
    }
    rc = write_groups(r, 1, (void **)del->items, &p, &acked);
    if (rc)
        reply_err(r, rc, cr_error_message());
    else
        reply_write(r, &p, 1, acked, ids);
out:
    free(ids);
    plan_free(&p);
}

/* ---- reads and operations ---------------------------------------------------------------- */

static void do_get(rq *r)
{
    const Cirrus__V1__GetRequest *get = r->req->get;
    size_t n = get ? get->n_ids : 0, ng = (size_t)r->map->n_groups, k = 0;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__GetResult out = CIRRUS__V1__GET_RESULT__INIT;
    coord_sub *subs = NULL;
    uint8_t **bodies = NULL;
    char ***per = NULL;
    size_t *cnt = NULL;
    cr_err rc = CR_OK;

    if (n == 0 || n > 10000) {
        reply_err(r, CR_ERR_INVALID, "get takes 1..10000 ids");
        return;
    }
    subs = calloc(ng, sizeof *subs);
    bodies = calloc(ng, sizeof *bodies);
    per = calloc(ng, sizeof *per);
    cnt = calloc(ng, sizeof *cnt);
    out.items = calloc(n, sizeof *out.items);
    out.missing = calloc(n, sizeof *out.missing);
    if (!subs || !bodies || !per || !cnt || !out.items || !out.missing) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t g = 0; g < ng && !rc; g++)
        if (!(per[g] = calloc(n, sizeof **per)))
            rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        if (cr_validate_id(get->ids[i])) {
            out.missing[out.n_missing++] = get->ids[i];
            continue;
        }
        size_t g = (size_t)coord_map_group_of(r->map, get->ids[i]);
        per[g][cnt[g]++] = get->ids[i];
    }
    for (size_t g = 0; g < ng && !rc; g++) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__GetRequest sg = CIRRUS__V1__GET_REQUEST__INIT;
        size_t len;
        if (!cnt[g])
            continue;
        sg.ids = per[g];
        sg.n_ids = cnt[g];
        sg.include_vector = get->include_vector;
        req.op_case = CIRRUS__V1__REQUEST__OP_GET;
        req.get = &sg;
        rc = pack(&req.base, &bodies[g], &len);
        if (!rc)
            sub_init(&subs[k++], COORD_TO_GROUP, (int)g, 0, bodies[g], len, sub_timeout(r), 1);
    }
    if (!rc)
        rc = coord_io_call(r->w, subs, k);
    for (size_t i = 0; !rc && i < k; i++) {
        rc = sub_check(&subs[i], "get");
        if (rc)
            break;
        for (size_t j = 0; subs[i].resp->get && j < subs[i].resp->get->n_items; j++)
            out.items[out.n_items++] = subs[i].resp->get->items[j];
        for (size_t j = 0; subs[i].resp->get && j < subs[i].resp->get->n_missing; j++)
            out.missing[out.n_missing++] = subs[i].resp->get->missing[j];
    }
    if (!rc) {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_GET;
        resp.get = &out;
        reply_ok(r, &resp);
    }
out:
    if (rc)
        reply_err(r, rc, cr_error_message());
    for (size_t i = 0; subs && i < k; i++)
        sub_free(&subs[i]);
    for (size_t g = 0; g < ng; g++) {
        if (per)
            free(per[g]);
        if (bodies)
            free(bodies[g]);
    }
    free(per);
    free(bodies);
    free(cnt);
    free(subs);
    free(out.items);
    free(out.missing);
}

static void do_stats(rq *r)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__StatsResult st = CIRRUS__V1__STATS_RESULT__INIT;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest sreq = CIRRUS__V1__STATS_REQUEST__INIT;
    size_t ng = (size_t)r->map->n_groups, n = ng + (r->map->n_encoders ? 1 : 0), len;
    coord_sub *subs = calloc(n, sizeof *subs);
    Cirrus__V1__StatsResult **groups = calloc(ng, sizeof *groups), *empty = NULL;
    uint8_t *body = NULL;
    cr_err rc;

    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &sreq;
    rc = subs && groups ? pack(&req.base, &body, &len) : CR_ERR_NOMEM;
    if (rc) {
        reply_err(r, CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        sub_init(&subs[i], i < ng ? COORD_TO_GROUP : COORD_TO_ENCODER, (int)i, 0, body, len,
                 sub_timeout(r), 1);
    rc = coord_io_call(r->w, subs, n);
    st.role = "coordinator";
    empty = calloc(ng, sizeof *empty);
    for (size_t g = 0; !rc && g < ng; g++) {
        if (sub_check(&subs[g], "stats") == CR_OK && subs[g].resp->stats) {
            Cirrus__V1__StatsResult *s = subs[g].resp->stats;
            groups[g] = s;
            st.count += s->count;
            st.bytes_on_disk += s->bytes_on_disk;
            st.tombstones += s->tombstones;
            cr_hlc_observe(&r->app->hlc, s->max_version);
            if (!st.dim) {
                st.dim = s->dim;
                st.metric = s->metric;
                st.index = s->index;
                st.trained = s->trained;
            }
        } else {
            cirrus__v1__stats_result__init(&empty[g]);
            empty[g].role = "unavailable";
            groups[g] = &empty[g];
        }
    }
    if (!rc && n > ng && sub_check(&subs[ng], "stats") == CR_OK && subs[ng].resp->stats)
        st.encoder = subs[ng].resp->stats->encoder;
    st.groups = groups;
    st.n_groups = ng;
    st.max_version = cr_hlc_last(&r->app->hlc);
    if (rc) {
        reply_err(r, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_STATS;
        resp.stats = &st;
        reply_ok(r, &resp);
    }
out:
    for (size_t i = 0; subs && i < n; i++)
        sub_free(&subs[i]);
    free(subs);
    free(groups);
    free(empty);
    free(body);
}

static void do_health(rq *r)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    int ready = 1;
    for (int g = 0; g < r->map->n_groups; g++) {
        int any = 0;
        for (int rep = 0; rep < r->map->n_replicas[g]; rep++)
            any |= coord_io_replica_live(r->app->io, g, rep);
        ready &= any;
    }
    h.ready = ready;
    h.role = "coordinator";
    h.version = "0.1.0";
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    reply_ok(r, &resp);
}

/* Encoder ops go to an encoder as they are; the answer comes back under our id. */
static void do_passthrough(rq *r)
{
    coord_sub s;
    Cirrus__V1__Request copy = *r->req;
    cr_err rc;
    if (r->map->n_encoders == 0) {
        reply_err(r, CR_ERR_UNAVAILABLE, "no encoder in the cluster map");
        return;
    }
    if (r->req->op_case == CIRRUS__V1__REQUEST__OP_COMPOSE && r->req->compose) {
        for (size_t i = 0; i < r->req->compose->n_queries; i++) {
            const Cirrus__V1__Composed *c = r->req->compose->queries[i];
            if (c->reference && c->reference->ref_case == CIRRUS__V1__REFERENCE__REF_ITEM_ID) {
                reply_err(r, CR_ERR_UNSUPPORTED,
                          "compose with an item id reference: use a search with a composed "
                          "query");
                return;
            }
        }
    }
    rc = call_one(r, &s, COORD_TO_ENCODER, 0, &copy, "encoder");
    if (rc) {
        reply_err(r, rc, cr_error_message());
    } else {
        s.resp->id = r->req->id;
        if (coord_worker_reply(r->w, r->route, s.resp))
            CR_WARN("coordinator", "reply: %s", cr_error_message());
    }
    sub_free(&s);
}

static void do_snapshot(rq *r)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SnapshotResult sr = CIRRUS__V1__SNAPSHOT_RESULT__INIT;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SnapshotRequest snap = CIRRUS__V1__SNAPSHOT_REQUEST__INIT;
    coord_sub subs[COORD_MAX_GROUPS * COORD_MAX_REPLICAS];
    uint8_t *body = NULL;
    size_t len, k = 0;
    cr_err rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_SNAPSHOT;
    req.snapshot = &snap;
    rc = pack(&req.base, &body, &len);
    for (int g = 0; !rc && g < r->map->n_groups; g++)
        for (int rep = 0; rep < r->map->n_replicas[g]; rep++)
            sub_init(&subs[k++], COORD_TO_REPLICA, g, rep, body, len, deadline_left(r), 0);
    if (!rc)
        rc = coord_io_call(r->w, subs, k);
    for (size_t i = 0; !rc && i < k; i++) {
        if (sub_check(&subs[i], "snapshot") == CR_OK && subs[i].resp->snapshot) {
            sr.high_water += subs[i].resp->snapshot->high_water;
            sr.bytes += subs[i].resp->snapshot->bytes;
            if (subs[i].resp->snapshot->duration_ms > sr.duration_ms)
                sr.duration_ms = subs[i].resp->snapshot->duration_ms;
        }
    }
    if (rc) {
        reply_err(r, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SNAPSHOT;
        resp.snapshot = &sr;
        reply_ok(r, &resp);
    }
    for (size_t i = 0; i < k; i++)
        sub_free(&subs[i]);
    free(body);
}

static void handle(coord_app *app, coord_worker *w, cr_wire_msg *m, uint64_t recv_us)
{
    cr_pb_bounded alloc;
    Cirrus__V1__Request *req = NULL;
    rq r;
    uint32_t budget;
    cr_err rc;

    cr_pb_bounded_init(&alloc, UNPACK_LIMIT);
    rc = cr_wire_unpack_request(m, &alloc, &req);
    if (rc) {
        coord_worker_reply_error(w, m, 0, rc, cr_error_message());
        return;
    }
    memset(&r, 0, sizeof r);
    r.app = app;
    r.w = w;
    r.route = m;
    r.req = req;
    r.map = coord_io_map(app->io);
    budget = req->deadline_ms ? req->deadline_ms : app->o.default_deadline_ms;
    r.deadline_ms = recv_us / 1000 + budget;
    if (cr_clock_mono_ms() >= r.deadline_ms) {
        reply_err(&r, CR_ERR_DEADLINE, "deadline passed while queued");
        goto out;
    }
    switch (req->op_case) {
    case CIRRUS__V1__REQUEST__OP_SEARCH: do_search(&r); break;
    case CIRRUS__V1__REQUEST__OP_SEARCH_BATCH: do_search_batch(&r); break;
    case CIRRUS__V1__REQUEST__OP_UPSERT: do_upsert(&r); break;
    case CIRRUS__V1__REQUEST__OP_DELETE: do_delete(&r); break;
    case CIRRUS__V1__REQUEST__OP_GET: do_get(&r); break;
    case CIRRUS__V1__REQUEST__OP_STATS: do_stats(&r); break;
    case CIRRUS__V1__REQUEST__OP_HEALTH: do_health(&r); break;
    case CIRRUS__V1__REQUEST__OP_SNAPSHOT: do_snapshot(&r); break;
    case CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE:
    case CIRRUS__V1__REQUEST__OP_ENCODE_TEXT:
    case CIRRUS__V1__REQUEST__OP_COMPOSE: do_passthrough(&r); break;
    case CIRRUS__V1__REQUEST__OP__NOT_SET:
        reply_err(&r, CR_ERR_INVALID, "request without an operation");
        break;
    default:
        reply_err(&r, CR_ERR_UNSUPPORTED,
                  "operation not served by this coordinator (generation jobs need a worker "
                  "endpoint, which this build does not run)");
        break;
    }
out:
    coord_metrics_observe(&app->metrics, (int)req->op_case, r.failed,
                          cr_clock_mono_us() - recv_us, r.partial);
    cirrus__v1__request__free_unpacked(req, &alloc.base);
}

void *coord_worker_main(void *arg)
{
    coord_app *app = arg;
    coord_worker *w = NULL;
    cr_wire_msg m;
    if (coord_worker_open(app->io, &w)) {
        CR_ERROR("coordinator", "worker: %s", cr_error_message());
        return NULL;
    }
    cr_wire_msg_init(&m);
    for (;;) {
        uint64_t recv_us = 0;
        cr_err rc = coord_worker_next(w, 100, &m, &recv_us);
        if (rc == CR_OK)
            handle(app, w, &m, recv_us);
        cr_wire_msg_close(&m);
        if (rc == CR_TIMEOUT && coord_io_stopping(app->io))
            break;
    }
    coord_worker_close(&w);
    return NULL;
}
