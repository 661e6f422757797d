/* The other operations: get (by id, from the owning groups), stats (every group and an
 * encoder, summed), health (from the loop's view of the replicas), snapshot (every replica),
 * the encoder ops, passed through to an encoder, and reload (a new cluster map). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/validate.h"
#include "coordinator/fanout.h"

/* ---- get ----------------------------------------------------------------------------------- */

static void on_got(void *arg)
{
    coord_fanout *f = arg;
    const Cirrus__V1__GetRequest *get = f->r->req->get;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__GetResult out = CIRRUS__V1__GET_RESULT__INIT;
    cr_err rc = CR_OK;
    out.items = calloc(get->n_ids, sizeof *out.items);
    out.missing = calloc(get->n_ids, sizeof *out.missing);
    if (!out.items || !out.missing)
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < get->n_ids; i++)
        if (cr_validate_id(get->ids[i]))
            out.missing[out.n_missing++] = get->ids[i];
    for (size_t i = 0; !rc && i < f->n; i++) {
        const Cirrus__V1__GetResult *g;
        char what[48];
        snprintf(what, sizeof what, "get: shard group %d", f->subs[i].group);
        if ((rc = coord_sub_check(&f->subs[i], what)))
            break;
        g = f->subs[i].resp->get;
        for (size_t j = 0; g && j < g->n_items; j++)
            out.items[out.n_items++] = g->items[j];
        for (size_t j = 0; g && j < g->n_missing; j++)
            out.missing[out.n_missing++] = g->missing[j];
    }
    if (rc) {
        coord_rq_fail(f->r, rc, cr_error_message());
    } else {
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_GET;
        resp.get = &out;
        coord_rq_reply(f->r, &resp);
    }
    free(out.items);
    free(out.missing);
    coord_rq_end(f->r);
}

/* Sorts the valid ids by owning group (invalid ones are reported missing by on_got). */
static cr_err get_split(coord_fanout *f, const Cirrus__V1__GetRequest *get)
{
    f->n_groups = (size_t)f->r->map->n_groups;
    f->per = calloc(f->n_groups, sizeof *f->per);
    f->cnt = calloc(f->n_groups, sizeof *f->cnt);
    if (!f->per || !f->cnt)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t g = 0; g < f->n_groups; g++)
        if (!(f->per[g] = calloc(get->n_ids, sizeof **f->per)))
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < get->n_ids; i++) {
        size_t g;
        if (cr_validate_id(get->ids[i]))
            continue;
        g = (size_t)coord_map_group_of(f->r->map, get->ids[i]);
        f->per[g][f->cnt[g]++] = get->ids[i];
    }
    return CR_OK;
}

static cr_err get_send(coord_fanout *f, const Cirrus__V1__GetRequest *get)
{
    cr_err rc = get_split(f, get);
    for (size_t g = 0; !rc && g < f->n_groups; g++) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__GetRequest sg = CIRRUS__V1__GET_REQUEST__INIT;
        size_t len;
        if (!f->cnt[g])
            continue;
        sg.ids = f->per[g];
        sg.n_ids = f->cnt[g];
        sg.include_vector = get->include_vector;
        sg.include_image = get->include_image;
        req.op_case = CIRRUS__V1__REQUEST__OP_GET;
        req.get = &sg;
        rc = coord_pack(&req.base, &f->bodies[g], &len);
        if (!rc)
            coord_sub_init(&f->subs[f->n++], COORD_TO_GROUP, (int)g, 0, f->bodies[g], len,
                           coord_rq_sub_timeout(f->r), 1);
    }
    return rc ? rc : coord_loop_call(f->r->loop, &f->call, f->subs, f->n, on_got, f);
}

void coord_get_start(coord_rq *r)
{
    const Cirrus__V1__GetRequest *get = r->req->get;
    size_t n = get ? get->n_ids : 0, ng = (size_t)r->map->n_groups;
    coord_fanout *f;
    cr_err rc;
    if (n == 0 || n > 10000) {
        coord_rq_fail_end(r, CR_ERR_INVALID, "get takes 1..10000 ids");
        return;
    }
    if (!(f = coord_fanout_new(r, ng, ng))) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    rc = get_send(f, get);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}

/* ---- stats --------------------------------------------------------------------------------- */

/* Sums the groups' stats into *st; groups[g] is each group's own (or an "unavailable" one). */
static void stats_sum(coord_fanout *f, Cirrus__V1__StatsResult *st,
                      Cirrus__V1__StatsResult **groups, Cirrus__V1__StatsResult *empty, size_t ng)
{
    for (size_t g = 0; g < ng; g++) {
        if (coord_sub_check(&f->subs[g], "stats") == CR_OK && f->subs[g].resp->stats) {
            Cirrus__V1__StatsResult *s = f->subs[g].resp->stats;
            groups[g] = s;
            st->count += s->count;
            st->bytes_on_disk += s->bytes_on_disk;
            st->tombstones += s->tombstones;
            st->unindexed += s->unindexed;
            cr_hlc_observe(&f->r->app->hlc, s->max_version);
            if (!st->dim) {
                st->dim = s->dim;
                st->metric = s->metric;
                st->index = s->index;
                st->trained = s->trained;
            }
        } else {
            cirrus__v1__stats_result__init(&empty[g]);
            empty[g].role = "unavailable";
            groups[g] = &empty[g];
        }
    }
    if (f->n > ng && coord_sub_check(&f->subs[ng], "stats") == CR_OK && f->subs[ng].resp->stats)
        st->encoder = f->subs[ng].resp->stats->encoder;
}

static void on_stats(void *arg)
{
    coord_fanout *f = arg;
    size_t ng = (size_t)f->r->map->n_groups;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__StatsResult st = CIRRUS__V1__STATS_RESULT__INIT;
    Cirrus__V1__StatsResult **groups = calloc(ng ? ng : 1, sizeof *groups);
    Cirrus__V1__StatsResult *empty = calloc(ng ? ng : 1, sizeof *empty);
    if (!groups || !empty) {
        coord_rq_fail(f->r, CR_ERR_NOMEM, "out of memory");
    } else {
        st.role = "coordinator";
        stats_sum(f, &st, groups, empty, ng);
        st.groups = groups;
        st.n_groups = ng;
        st.max_version = cr_hlc_last(&f->r->app->hlc);
        resp.result_case = CIRRUS__V1__RESPONSE__RESULT_STATS;
        resp.stats = &st;
        coord_rq_reply(f->r, &resp);
    }
    free(groups);
    free(empty);
    coord_rq_end(f->r);
}

void coord_stats_start(coord_rq *r)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest sreq = CIRRUS__V1__STATS_REQUEST__INIT;
    size_t ng = (size_t)r->map->n_groups, n = ng + (r->map->n_encoders ? 1 : 0), len;
    coord_fanout *f = coord_fanout_new(r, n, 1);
    cr_err rc;
    if (!f) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &sreq;
    rc = coord_pack(&req.base, &f->bodies[0], &len);
    for (size_t i = 0; !rc && i < n; i++)
        coord_sub_init(&f->subs[f->n++], i < ng ? COORD_TO_GROUP : COORD_TO_ENCODER, (int)i, 0,
                       f->bodies[0], len, coord_rq_sub_timeout(r), 1);
    if (!rc)
        rc = coord_loop_call(r->loop, &f->call, f->subs, f->n, on_stats, f);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}

/* ---- health -------------------------------------------------------------------------------- */

void coord_health_start(coord_rq *r)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__HealthResult h = CIRRUS__V1__HEALTH_RESULT__INIT;
    int ready = 1;
    for (int g = 0; g < r->map->n_groups; g++) {
        int any = 0;
        for (int rep = 0; rep < r->map->n_replicas[g]; rep++)
            any |= coord_loop_replica_live(r->loop, g, rep);
        ready &= any;
    }
    h.ready = ready;
    h.role = "coordinator";
    h.version = "0.1.0";
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_HEALTH;
    resp.health = &h;
    coord_rq_reply(r, &resp);
    coord_rq_end(r);
}

/* ---- snapshot ------------------------------------------------------------------------------ */

static void on_snapshot(void *arg)
{
    coord_fanout *f = arg;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__SnapshotResult sr = CIRRUS__V1__SNAPSHOT_RESULT__INIT;
    for (size_t i = 0; i < f->n; i++) {
        const Cirrus__V1__SnapshotResult *s;
        if (coord_sub_check(&f->subs[i], "snapshot") != CR_OK || !f->subs[i].resp->snapshot)
            continue;
        s = f->subs[i].resp->snapshot;
        sr.high_water += s->high_water;
        sr.bytes += s->bytes;
        if (s->duration_ms > sr.duration_ms)
            sr.duration_ms = s->duration_ms;
    }
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_SNAPSHOT;
    resp.snapshot = &sr;
    coord_rq_reply(f->r, &resp);
    coord_rq_end(f->r);
}

void coord_snapshot_start(coord_rq *r)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SnapshotRequest snap = CIRRUS__V1__SNAPSHOT_REQUEST__INIT;
    size_t total = 0, len;
    coord_fanout *f;
    cr_err rc;
    for (int g = 0; g < r->map->n_groups; g++)
        total += (size_t)r->map->n_replicas[g];
    if (!(f = coord_fanout_new(r, total, 1))) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    req.op_case = CIRRUS__V1__REQUEST__OP_SNAPSHOT;
    req.snapshot = &snap;
    rc = coord_pack(&req.base, &f->bodies[0], &len);
    for (int g = 0; !rc && g < r->map->n_groups; g++)
        for (int rep = 0; rep < r->map->n_replicas[g]; rep++)
            coord_sub_init(&f->subs[f->n++], COORD_TO_REPLICA, g, rep, f->bodies[0], len,
                           coord_rq_deadline_left(r), 0);
    if (!rc)
        rc = coord_loop_call(r->loop, &f->call, f->subs, f->n, on_snapshot, f);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}

/* ---- encoder ops --------------------------------------------------------------------------- */

typedef struct passthrough {
    coord_rq *r;
    coord_one one;
    int jobs;
} passthrough;

static void passthrough_free(void *p)
{
    passthrough *pt = p;
    coord_loop_call_cancel(pt->r->loop, &pt->one.call);
    coord_one_free(&pt->one);
    free(pt);
}

/* The encoder's answer goes back as it is, under the client's id. */
static void on_encoder(void *arg)
{
    passthrough *pt = arg;
    cr_err rc = coord_one_check(&pt->one, pt->jobs ? "job broker" : "encoder");
    if (rc) {
        coord_rq_fail(pt->r, rc, cr_error_message());
    } else {
        pt->one.sub.resp->id = pt->r->req->id;
        pt->r->replied = 1;
        if (coord_loop_reply(pt->r->loop, &pt->r->route, pt->one.sub.resp))
            CR_WARN("coordinator", "reply: %s", cr_error_message());
    }
    coord_rq_end(pt->r);
}

static int has_item_reference(const Cirrus__V1__Request *req)
{
    if (req->op_case != CIRRUS__V1__REQUEST__OP_COMPOSE || !req->compose)
        return 0;
    for (size_t i = 0; i < req->compose->n_queries; i++) {
        const Cirrus__V1__Composed *c = req->compose->queries[i];
        if (c->reference && c->reference->ref_case == CIRRUS__V1__REFERENCE__REF_ITEM_ID)
            return 1;
    }
    return 0;
}

/* Generation jobs go to the job broker as they are (jobs/ sits above this layer). */
void coord_jobs_start(coord_rq *r)
{
    Cirrus__V1__Request copy = *r->req;
    passthrough *pt;
    cr_err rc;
    if (!r->map->jobs[0]) {
        coord_rq_fail_end(r, CR_ERR_UNSUPPORTED,
                          "generation jobs need a job broker: cirrus serve --worker-bind, "
                          "cirrus-coordinator --jobs-dir/--worker-bind, or \"jobs\" in the "
                          "cluster map");
        return;
    }
    if (!(pt = calloc(1, sizeof *pt))) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    pt->r = r;
    pt->jobs = 1;
    r->state = pt;
    r->state_free = passthrough_free;
    rc = coord_one_start(&pt->one, r, COORD_TO_JOBS, 0, &copy, on_encoder, pt);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}

void coord_passthrough_start(coord_rq *r)
{
    Cirrus__V1__Request copy = *r->req;
    passthrough *pt;
    cr_err rc;
    if (r->map->n_encoders == 0) {
        coord_rq_fail_end(r, CR_ERR_UNAVAILABLE, "no encoder in the cluster map");
        return;
    }
    if (has_item_reference(r->req)) {
        coord_rq_fail_end(r, CR_ERR_UNSUPPORTED,
                          "compose with an item id reference: use a search with a composed "
                          "query");
        return;
    }
    if (!(pt = calloc(1, sizeof *pt))) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    pt->r = r;
    r->state = pt;
    r->state_free = passthrough_free;
    rc = coord_one_start(&pt->one, r, COORD_TO_ENCODER, 0, &copy, on_encoder, pt);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}

/* ---- reload --------------------------------------------------------------------------------- */

/* Requests in flight that arrived under another map than the current one. */
static uint32_t older_requests(const coord_rq *self, const coord_map *cur)
{
    uint32_t n = 0;
    for (const coord_rq *q = self->app->requests; q; q = q->next)
        n += q != self && q->map != cur;
    return n;
}

/* Parses the map (small; no I/O, so it may run on the loop) and hands it to the loop, which
 * applies it before its next poll; an empty map_json only reports. The bind address of a
 * reloaded map is not used: the public socket stays where it is. */
void coord_reload_start(coord_rq *r)
{
    const Cirrus__V1__ReloadRequest *rl = r->req->reload;
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__ReloadResult out = CIRRUS__V1__RELOAD_RESULT__INIT;
    const coord_map *cur = coord_loop_map(r->loop);
    coord_map *m = NULL;
    const coord_map *shown = cur;
    if (rl && rl->map_json && rl->map_json[0]) {
        if (!(m = malloc(sizeof *m))) {
            coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
            return;
        }
        if (coord_map_parse(rl->map_json, m)) {
            free(m);
            coord_rq_fail_end(r, CR_ERR_INVALID, cr_error_message());
            return;
        }
        coord_loop_set_map(r->loop, m);
        CR_INFO("coordinator", "reload requested: %d groups, %s%s", m->n_groups,
                coord_placement_name(m->placement), m->move_groups ? " (moving)" : "");
        shown = m;
    }
    out.groups = (uint32_t)shown->n_groups;
    out.placement = (char *)coord_placement_name(shown->placement);
    out.moving_from_groups = (uint32_t)shown->move_groups;
    out.moving_from_placement =
        shown->move_groups ? (char *)coord_placement_name(shown->move_placement) : "";
    out.reads_new = shown->move_reads_new;
    out.pending = m ? 1 : coord_loop_map_pending(r->loop);
    out.older_requests = older_requests(r, cur);
    resp.result_case = CIRRUS__V1__RESPONSE__RESULT_RELOAD;
    resp.reload = &out;
    coord_rq_reply(r, &resp);
    free(m);
    coord_rq_end(r);
}
