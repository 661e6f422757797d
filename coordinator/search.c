/* Search: resolve the query to a vector, scatter it to one replica of every shard group,
 * gather the partial top-k lists (a group that does not answer is named as missing), merge
 * them, reply. A batch runs its queries one after another. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/validate.h"
#include "coordinator/merge.h"
#include "coordinator/request.h"
#include "coordinator/resolve.h"

typedef struct search {
    coord_rq *r;
    const Cirrus__V1__Query *q;
    coord_status st;
    Cirrus__V1__SearchResult res;
    Cirrus__V1__Timing timing;
    uint32_t *missing;
    Cirrus__V1__Hit *copies; /* hits shown without attributes (grouped, no metadata asked) */
    coord_resolve rs;
    coord_call call, idle;
    coord_sub *subs;
    size_t n_subs;
    uint8_t *body;
    uint64_t t_start, t0;
    coord_call_fn done;
    void *arg;
} search;

static void search_free(search *s)
{
    if (!s->r)
        return;
    coord_loop_call_cancel(s->r->loop, &s->call);
    coord_loop_call_cancel(s->r->loop, &s->idle);
    coord_resolve_free(&s->rs);
    for (size_t i = 0; s->subs && i < s->n_subs; i++)
        coord_sub_free(&s->subs[i]);
    free(s->subs);
    free(s->missing);
    free(s->copies);
    free(s->res.hits);
    free(s->body);
    memset(s, 0, sizeof *s);
}

/* Ends the search with rc (kept with its message) at the next turn of the loop. */
static void finish(search *s, cr_err rc)
{
    coord_status_keep(&s->st, rc);
    coord_loop_call(s->r->loop, &s->idle, NULL, 0, s->done, s->arg);
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

/* ---- gather and merge ---------------------------------------------------------------------- */

/* Keeps only the hits of items that group g owns for reads: during a move (or before its old
 * copies are deleted) an item may sit in two groups, and only its owner's copy counts. The
 * owner holds every acknowledged write of the item (write.c), so this drops no item: each hit
 * above an owned one in g's list is a distinct item scoring at least as well, so an item of
 * the merged top k is within its owner's top k. */
static void keep_owned(const coord_map *map, Cirrus__V1__SearchResult *part, int g)
{
    size_t kept = 0;
    for (size_t i = 0; i < part->n_hits; i++) {
        Cirrus__V1__Hit *h = part->hits[i];
        if (h->id && coord_map_group_of(map, h->id) != g) {
            cirrus__v1__hit__free_unpacked(h, NULL); /* unpacked with the default allocator */
            continue;
        }
        part->hits[kept++] = h;
    }
    part->n_hits = kept;
}

/* Sorts the groups' answers into parts (hits tagged with their group) and missing groups. */
static cr_err gather(search *s, const Cirrus__V1__SearchResult **parts, size_t *n_parts)
{
    for (size_t g = 0; g < s->n_subs; g++) {
        char what[48];
        cr_err grc;
        snprintf(what, sizeof what, "shard group %zu", g);
        grc = coord_sub_check(&s->subs[g], what);
        if (grc == CR_OK && s->subs[g].resp->search) {
            Cirrus__V1__SearchResult *part = s->subs[g].resp->search;
            keep_owned(s->r->map, part, (int)g);
            for (size_t i = 0; i < part->n_hits; i++)
                part->hits[i]->group = (uint32_t)g;
            parts[(*n_parts)++] = part;
        } else if (grc == CR_OK || coord_outage(grc)) {
            s->missing[s->res.n_missing_groups++] = (uint32_t)g;
        } else {
            return grc; /* a bad request (e.g. unknown attribute): the caller's error */
        }
    }
    return CR_OK;
}

/* Attributes fetched only to group by are not shown: shallow copies without them. */
static cr_err strip_attributes(search *s)
{
    s->copies = malloc(s->res.n_hits * sizeof *s->copies);
    if (!s->copies)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->res.n_hits; i++) {
        s->copies[i] = *s->res.hits[i];
        s->copies[i].attributes = NULL;
        s->copies[i].n_attributes = 0;
        s->res.hits[i] = &s->copies[i];
    }
    return CR_OK;
}

static cr_err merge(search *s)
{
    const Cirrus__V1__Query *q = s->q;
    const Cirrus__V1__SearchResult **parts = calloc(s->n_subs + 1, sizeof *parts);
    coord_merge_params mp;
    size_t n_parts = 0;
    cr_err rc = parts ? gather(s, parts, &n_parts) : cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (rc)
        goto out;
    s->t0 = cr_clock_mono_us();
    mp.metric_l2 = s->r->map->metric_l2;
    mp.k = q->k;
    mp.offset = q->offset;
    mp.group_by = q->group_by;
    mp.group_size = q->group_size;
    rc = coord_merge(parts, n_parts, &mp, &s->res);
    if (!rc && q->group_by && q->group_by[0] && !q->include_metadata && s->res.n_hits)
        rc = strip_attributes(s);
    if (rc)
        goto out;
    s->timing.merge_us = cr_clock_mono_us() - s->t0;
    s->timing.total_us = cr_clock_mono_us() - s->t_start;
    s->res.partial = s->res.n_missing_groups > 0;
    s->res.missing_groups = s->missing;
    s->res.timing = &s->timing;
    s->res.caption_truncated = s->rs.truncated;
out:
    free(parts);
    return rc;
}

static void on_gathered(void *arg)
{
    search *s = arg;
    s->timing.search_us = cr_clock_mono_us() - s->t0;
    finish(s, merge(s));
}

/* ---- scatter ------------------------------------------------------------------------------- */

/* The shards' query: the resolved vector, enough hits for grouping and paging. */
static cr_err pack_shard_query(search *s, size_t *len)
{
    const Cirrus__V1__Query *q = s->q;
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Query sq = *q;
    Cirrus__V1__Vector v = CIRRUS__V1__VECTOR__INIT;
    v.values = s->rs.vec;
    v.n_values = s->rs.dim;
    sq.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
    sq.vector = &v;
    sq.k = (uint32_t)coord_merge_fetch_k(q->k, q->offset, q->group_by, q->group_size);
    sq.offset = 0;
    sq.group_by = "";
    sq.include_metadata = q->include_metadata || (q->group_by && q->group_by[0]);
    sr.query = &sq;
    req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
    req.search = &sr;
    return coord_pack(&req.base, &s->body, len);
}

static cr_err scatter(search *s)
{
    size_t len;
    cr_err rc = pack_shard_query(s, &len);
    if (rc)
        return rc;
    s->n_subs = (size_t)s->r->map->n_groups;
    s->subs = calloc(s->n_subs, sizeof *s->subs);
    s->missing = calloc(s->n_subs, sizeof *s->missing);
    if (!s->subs || !s->missing)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t g = 0; g < s->n_subs; g++)
        coord_sub_init(&s->subs[g], COORD_TO_GROUP, (int)g, 0, s->body, len,
                       coord_rq_sub_timeout(s->r), 1);
    s->t0 = cr_clock_mono_us();
    return coord_loop_call(s->r->loop, &s->call, s->subs, s->n_subs, on_gathered, s);
}

static void on_resolved(void *arg)
{
    search *s = arg;
    cr_err rc = s->rs.st.rc;
    if (rc) {
        s->st = s->rs.st;
        coord_loop_call(s->r->loop, &s->idle, NULL, 0, s->done, s->arg);
        return;
    }
    rc = scatter(s);
    if (rc)
        finish(s, rc);
}

/* Runs one query; done(arg) runs later with s->st and s->res set. */
static void search_run(search *s, coord_rq *r, const Cirrus__V1__Query *q, coord_call_fn done,
                       void *arg)
{
    cr_err rc;
    memset(s, 0, sizeof *s);
    s->r = r;
    s->q = q;
    s->done = done;
    s->arg = arg;
    s->t_start = cr_clock_mono_us();
    cirrus__v1__search_result__init(&s->res);
    cirrus__v1__timing__init(&s->timing);
    rc = validate_query(q);
    if (rc)
        finish(s, rc);
    else
        coord_resolve_start(&s->rs, r, q, &s->timing, on_resolved, s);
}

/* ---- one search ---------------------------------------------------------------------------- */

static void search_state_free(void *p)
{
    search_free(p);
    free(p);
}

static void on_search_done(void *arg)
{
    search *s = arg;
    coord_rq *r = s->r;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    if (s->st.rc) {
        coord_rq_fail(r, s->st.rc, s->st.msg);
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH;
        resp.search = &s->res;
        r->partial = s->res.partial;
        coord_rq_reply(r, &resp);
    }
    coord_rq_end(r);
}

void coord_search_start(coord_rq *r)
{
    search *s = calloc(1, sizeof *s);
    if (!s) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    r->state = s;
    r->state_free = search_state_free;
    search_run(s, r, r->req->search ? r->req->search->query : NULL, on_search_done, s);
}

/* ---- a batch ------------------------------------------------------------------------------- */

typedef struct batch {
    coord_rq *r;
    size_t n, next;
    search *outs;
    Cirrus__V1__SearchResult **results;
} batch;

static void batch_free(void *p)
{
    batch *b = p;
    for (size_t i = 0; b->outs && i < b->n; i++)
        search_free(&b->outs[i]);
    free(b->outs);
    free(b->results);
    free(b);
}

static void batch_reply(batch *b)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SearchBatchResult sb = CIRRUS__V1__SEARCH_BATCH_RESULT__INIT;
    for (size_t i = 0; i < b->n; i++)
        b->results[i] = &b->outs[i].res;
    sb.results = b->results;
    sb.n_results = b->n;
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SEARCH_BATCH;
    resp.search_batch = &sb;
    coord_rq_reply(b->r, &resp);
}

static void on_batch_query(void *arg)
{
    batch *b = arg;
    const search *s = &b->outs[b->next];
    if (s->st.rc) {
        cr_error_set(s->st.rc, "%s", s->st.msg);
        cr_error_wrap(s->st.rc, "query %zu", b->next);
        coord_rq_fail_end(b->r, s->st.rc, cr_error_message());
        return;
    }
    if (++b->next < b->n) {
        search_run(&b->outs[b->next], b->r, b->r->req->search_batch->queries[b->next],
                   on_batch_query, b);
        return;
    }
    batch_reply(b);
    coord_rq_end(b->r);
}

void coord_search_batch_start(coord_rq *r)
{
    size_t n = r->req->search_batch ? r->req->search_batch->n_queries : 0;
    batch *b;
    if (n == 0 || n > 1000) {
        coord_rq_fail_end(r, CR_ERR_INVALID, "a batch holds 1..1000 queries");
        return;
    }
    b = calloc(1, sizeof *b);
    if (b) {
        b->outs = calloc(n, sizeof *b->outs);
        b->results = calloc(n, sizeof *b->results);
    }
    if (!b || !b->outs || !b->results) {
        if (b)
            batch_free(b);
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    b->r = r;
    b->n = n;
    r->state = b;
    r->state_free = batch_free;
    search_run(&b->outs[0], r, r->req->search_batch->queries[0], on_batch_query, b);
}
