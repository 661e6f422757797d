/* Writes: upserts and deletes are routed by id to their shard group and written to every
 * replica of it; an item's outcome is taken from the first replica that made it durable, once
 * the write quorum (W replicas; default all live ones, at least one) has. Each replica that
 * missed the write is reported to repair before the client hears the ack. Steps: check the
 * ids and client-chosen versions; seed the version clock from replicas not seeded yet; give
 * every item without a version one from the clock; encode the images of upserts that came
 * without vectors (one encoder call); write; count the quorum; reply.
 *
 * During a move (the map's "moving_from", clustermap.h) an item whose old and new owners
 * differ is written to both groups (group and group2), and its write succeeds only when both
 * reached the quorum: the copy `cirrus rebalance` makes may already have passed the item, and
 * whichever group ends up owning it must hold every acknowledged write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/validate.h"
#include "coordinator/repair.h"
#include "coordinator/request.h"

#define MAX_ITEMS 8192

typedef struct write_op {
    coord_rq *r;
    int is_delete;
    size_t n;                       /* items */
    void **items;                   /* Cirrus__V1__Item* or Cirrus__V1__DeleteItem* */
    const char **ids;
    int *group;                     /* per item: its owner (the new one during a move) */
    int *group2;                    /* per item: its old owner during a move, else -1 */
    uint8_t *fail2;                 /* per item: group2 missed the quorum */
    Cirrus__V1__ItemStatus *status; /* per item, in request order */
    Cirrus__V1__Status *st;
    char (*msg)[200];
    /* seeding the version clock */
    coord_call seed_call;
    coord_sub *seed_subs;
    size_t n_seed;
    uint8_t *seed_body;
    /* upserts: vectors encoded here */
    Cirrus__V1__Vector *vecs;
    float **owned;
    size_t *which, n_which;
    coord_one enc;
    /* the write */
    coord_call call;
    coord_sub *subs;
    size_t n_subs;
    uint8_t **bodies; /* per group */
} write_op;

static void write_free(void *p)
{
    write_op *w = p;
    coord_loop_call_cancel(w->r->loop, &w->seed_call);
    coord_loop_call_cancel(w->r->loop, &w->enc.call);
    coord_loop_call_cancel(w->r->loop, &w->call);
    coord_one_free(&w->enc);
    for (size_t i = 0; w->seed_subs && i < w->n_seed; i++)
        coord_sub_free(&w->seed_subs[i]);
    free(w->seed_subs);
    free(w->seed_body);
    for (size_t i = 0; w->owned && i < w->n; i++)
        if (w->owned[i]) {
            ((Cirrus__V1__Item *)w->items[i])->vector = NULL; /* ours, not the request's */
            free(w->owned[i]);
        }
    for (size_t i = 0; w->subs && i < w->n_subs; i++)
        coord_sub_free(&w->subs[i]);
    for (int g = 0; w->bodies && g < w->r->map->n_groups; g++)
        free(w->bodies[g]);
    free(w->bodies);
    free(w->subs);
    free(w->owned);
    free(w->vecs);
    free(w->which);
    free(w->ids);
    free(w->group);
    free(w->group2);
    free(w->fail2);
    free(w->status);
    free(w->st);
    free(w->msg);
    free(w);
}

static write_op *write_new(coord_rq *r, int is_delete, size_t n, void **items)
{
    write_op *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->r = r;
    w->is_delete = is_delete;
    w->n = n;
    w->items = items;
    w->ids = calloc(n, sizeof *w->ids);
    w->group = calloc(n, sizeof *w->group);
    w->group2 = calloc(n, sizeof *w->group2);
    w->fail2 = calloc(n, sizeof *w->fail2);
    w->status = calloc(n, sizeof *w->status);
    w->st = calloc(n, sizeof *w->st);
    w->msg = calloc(n, sizeof *w->msg);
    w->bodies = calloc(r->map->n_groups > 0 ? (size_t)r->map->n_groups : 1, sizeof *w->bodies);
    if (!is_delete) {
        w->vecs = calloc(n, sizeof *w->vecs);
        w->owned = calloc(n, sizeof *w->owned);
        w->which = calloc(n, sizeof *w->which);
    }
    if (!w->ids || !w->group || !w->group2 || !w->fail2 || !w->status || !w->st || !w->msg || !w->bodies ||
        (!is_delete && (!w->vecs || !w->owned || !w->which))) {
        write_free(w);
        return NULL;
    }
    r->state = w;
    r->state_free = write_free;
    return w;
}

/* ---- the reply ----------------------------------------------------------------------------- */

static void reply_write(write_op *w, uint32_t acked)
{
    Cirrus__V1__Response resp = CIRRUS__V1__RESPONSE__INIT;
    Cirrus__V1__WriteResult wr = CIRRUS__V1__WRITE_RESULT__INIT;
    Cirrus__V1__ItemStatus **ptrs = calloc(w->n, sizeof *ptrs);
    if (!ptrs) {
        coord_rq_fail(w->r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        uint64_t version = w->status[i].version;
        int code = w->st[i].code;
        cirrus__v1__item_status__init(&w->status[i]);
        w->status[i].version = version;
        cirrus__v1__status__init(&w->st[i]);
        w->st[i].code = code;
        w->st[i].message = w->msg[i];
        w->status[i].id = (char *)w->ids[i];
        w->status[i].status = &w->st[i];
        ptrs[i] = &w->status[i];
    }
    wr.items = ptrs;
    wr.n_items = w->n;
    wr.replicas_acked = acked;
    resp.result_case = w->is_delete ? CIRRUS__V1__RESPONSE__RESULT_DELETE
                                    : CIRRUS__V1__RESPONSE__RESULT_UPSERT;
    if (w->is_delete)
        resp.delete_ = &wr;
    else
        resp.upsert = &wr;
    coord_rq_reply(w->r, &resp);
    free(ptrs);
}

/* ---- quorum -------------------------------------------------------------------------------- */

/* Whether item i is in group g's share of the write. */
static int in_group(const write_op *w, size_t i, int g)
{
    return w->group[i] == g || w->group2[i] == g;
}

static uint64_t item_version(const write_op *w, size_t i)
{
    return w->is_delete ? ((Cirrus__V1__DeleteItem *)w->items[i])->version
                        : ((Cirrus__V1__Item *)w->items[i])->version;
}

/* Reports to repair each replica of group g that did not apply the write durably, before the
 * client hears the ack: a replica that missed an acknowledged write stops serving reads. */
static void note_misses(write_op *w, int g, const coord_sub *subs, int acked)
{
    uint64_t vmin = UINT64_MAX;
    for (size_t i = 0; i < w->n; i++)
        if (in_group(w, i, g) && item_version(w, i) < vmin)
            vmin = item_version(w, i);
    for (int rep = 0; rep < w->r->map->n_replicas[g]; rep++) {
        const coord_sub *s = &subs[rep];
        if (coord_sub_check(s, "write") == CR_OK &&
            (w->is_delete ? s->resp->delete_ : s->resp->upsert))
            continue;
        coord_repair_note_miss(w->r->app->repair, g, rep, w->r->map->replicas[g][rep], vmin,
                               acked);
    }
}

/* Group g's replicas start at subs[base]: counts the durable ones and fills its items'
 * statuses; returns the number acked. */
static int group_outcome(write_op *w, int g, size_t base)
{
    int nrep = w->r->map->n_replicas[g], acked = 0, live = 0, quorum;
    const Cirrus__V1__WriteResult *first = NULL;
    cr_err refused = CR_OK; /* a replica's own refusal (a full disk), not an outage */
    char why[200] = "";
    for (int rep = 0; rep < nrep; rep++) {
        const coord_sub *s = &w->subs[base + (size_t)rep];
        const Cirrus__V1__WriteResult *wr;
        cr_err rc;
        if (s->rc == CR_ERR_UNAVAILABLE)
            continue; /* known down: not live */
        live++;
        rc = coord_sub_check(s, "write");
        if (rc < 0 && !refused && !coord_outage(rc)) {
            refused = rc;
            snprintf(why, sizeof why, "%s", cr_error_message());
        }
        if (rc)
            continue;
        wr = w->is_delete ? s->resp->delete_ : s->resp->upsert;
        if (!wr)
            continue;
        acked++;
        if (!first)
            first = wr;
    }
    quorum = w->r->map->write_quorum ? w->r->map->write_quorum : (live ? live : 1);
    if (acked < nrep)
        note_misses(w, g, &w->subs[base], acked >= quorum);
    for (size_t i = 0, j = 0; i < w->n; i++) {
        int ok = acked >= quorum && first && j < first->n_items && first->items[j]->status;
        if (!in_group(w, i, g))
            continue;
        if (w->group[i] != g) { /* the old owner during a move: it only has to be durable */
            w->fail2[i] |= !ok;
            if (ok) {
                j++;
                continue;
            }
        } else if (w->fail2[i]) {
            j++;
            continue;
        }
        if (ok && w->group[i] == g) {
            w->st[i].code = first->items[j]->status->code;
            snprintf(w->msg[i], sizeof w->msg[i], "%s", first->items[j]->status->message);
            w->status[i].version = first->items[j]->version;
        } else if (refused) { /* say why rather than "unavailable": retrying will not help */
            w->st[i].code = refused;
            snprintf(w->msg[i], sizeof w->msg[i], "group %d: %s", g, why);
            w->status[i].version = 0;
        } else {
            w->st[i].code = CR_ERR_UNAVAILABLE;
            snprintf(w->msg[i], sizeof w->msg[i],
                     "durable on %d of %d replicas of group %d (quorum %d); retry is safe",
                     acked, nrep, g, quorum);
            w->status[i].version = 0;
        }
        j++;
    }
    return acked;
}

static void on_written(void *arg)
{
    write_op *w = arg;
    uint32_t min_acked = UINT32_MAX;
    size_t base = 0;
    for (int g = 0; g < w->r->map->n_groups; g++) {
        if (!w->bodies[g])
            continue;
        int acked = group_outcome(w, g, base);
        if ((uint32_t)acked < min_acked)
            min_acked = (uint32_t)acked;
        base += (size_t)w->r->map->n_replicas[g];
    }
    reply_write(w, min_acked == UINT32_MAX ? 0 : min_acked);
    coord_rq_end(w->r);
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Packs group g's share of the items into w->bodies[g] (NULL when it has none). */
static cr_err pack_group(write_op *w, int g, void **mine, size_t *len)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    size_t m = 0;
    for (size_t i = 0; i < w->n; i++)
        if (in_group(w, i, g))
            mine[m++] = w->items[i];
    if (!m)
        return CR_OK;
    if (w->is_delete) {
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
    return coord_pack(&req.base, &w->bodies[g], len);
}

/* Sends each group's share to every replica of the group. */
static cr_err write_start(write_op *w)
{
    const coord_map *map = w->r->map;
    void **mine = calloc(w->n, sizeof *mine);
    size_t total = 0;
    cr_err rc = CR_OK;
    for (int g = 0; g < map->n_groups; g++)
        total += (size_t)map->n_replicas[g];
    w->subs = calloc(total ? total : 1, sizeof *w->subs);
    if (!mine || !w->subs)
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (int g = 0; g < map->n_groups && !rc; g++) {
        size_t len = 0;
        rc = pack_group(w, g, mine, &len);
        for (int rep = 0; !rc && w->bodies[g] && rep < map->n_replicas[g]; rep++)
            coord_sub_init(&w->subs[w->n_subs++], COORD_TO_REPLICA, g, rep, w->bodies[g], len,
                           coord_rq_sub_timeout(w->r), 0);
    }
    free(mine);
    if (!rc)
        rc = coord_loop_call(w->r->loop, &w->call, w->subs, w->n_subs, on_written, w);
    return rc;
}

/* ---- upserts: vectors from images ---------------------------------------------------------- */

static cr_err take_vectors(write_op *w)
{
    const Cirrus__V1__Response *resp = w->enc.sub.resp;
    cr_err rc = coord_one_check(&w->enc, "encode images");
    if (!rc && (!resp->encode_image || resp->encode_image->n_vectors != w->n_which))
        rc = cr_error_set(CR_ERR_PROTO, "encoder returned the wrong number of vectors");
    for (size_t j = 0; !rc && j < w->n_which; j++) {
        const Cirrus__V1__Vector *v = resp->encode_image->vectors[j];
        size_t i = w->which[j];
        Cirrus__V1__Item *it = w->items[i];
        w->owned[i] = malloc((v->n_values ? v->n_values : 1) * sizeof(float));
        if (!w->owned[i])
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        memcpy(w->owned[i], v->values, v->n_values * sizeof(float));
        cirrus__v1__vector__init(&w->vecs[i]);
        w->vecs[i].values = w->owned[i];
        w->vecs[i].n_values = v->n_values;
        it->vector = &w->vecs[i];
        /* The image goes on to the shards: those run with --keep-images store it, the others
         * drop it. The coordinator does not know which keep it, and one copy per replica is
         * small beside the encode it already paid for. */
    }
    return rc;
}

static void on_encoded(void *arg)
{
    write_op *w = arg;
    cr_err rc = take_vectors(w);
    coord_one_free(&w->enc);
    if (!rc)
        rc = write_start(w);
    if (rc)
        coord_rq_fail_end(w->r, rc, cr_error_message());
}

/* Encodes the images of items that came without a vector (one encoder call), then writes. */
static cr_err encode_then_write(write_op *w)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__EncodeImageRequest ei = CIRRUS__V1__ENCODE_IMAGE_REQUEST__INIT;
    ProtobufCBinaryData *imgs = calloc(w->n, sizeof *imgs);
    cr_err rc;
    if (!imgs)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->n; i++) {
        Cirrus__V1__Item *it = w->items[i];
        if ((!it->vector || !it->vector->n_values) && it->image.len) {
            imgs[w->n_which] = it->image;
            w->which[w->n_which++] = i;
        }
    }
    if (!w->n_which)
        rc = write_start(w);
    else if (w->r->map->n_encoders == 0)
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "items without vectors need an encoder");
    else {
        ei.images = imgs;
        ei.n_images = w->n_which;
        req.op_case = CIRRUS__V1__REQUEST__OP_ENCODE_IMAGE;
        req.encode_image = &ei;
        rc = coord_one_start(&w->enc, w->r, COORD_TO_ENCODER, 0, &req, on_encoded, w);
    }
    free(imgs);
    return rc;
}

/* ---- versions ---------------------------------------------------------------------------- */

/* A client-chosen version beyond the clock plus the allowed skew is rejected, not ignored: a
 * client that sets versions (a restore, a replay) relies on them, and storing another one
 * silently would break what it believes was written; the error tells it to send 0. Checked
 * for every item before anything is sent, so a rejected request changes nothing. */
static cr_err check_client_version(const coord_rq *r, const char *id, uint64_t version)
{
    cr_err rc;
    if (!version)
        return CR_OK;
    rc = cr_hlc_check(&r->app->hlc, version, r->app->o.version_skew_ms);
    return rc ? cr_error_wrap(rc, "item '%s'", id) : CR_OK;
}

/* A version for a write with none: CR_OK, or an error when the clock is exhausted. */
static cr_err next_version(coord_rq *r, const char *id, uint64_t *version)
{
    *version = cr_hlc_next(&r->app->hlc);
    if (!*version)
        return cr_error_set(CR_ERR_INVALID, "item '%s': no version left (the clock is at "
                                            "2^64-1: a shard holds that version)", id);
    return CR_OK;
}

/* Versions for the items that carry none (one for every replica); client ones move the
 * clock. */
static cr_err assign_versions(write_op *w)
{
    for (size_t i = 0; i < w->n; i++) {
        uint64_t *v = w->is_delete ? &((Cirrus__V1__DeleteItem *)w->items[i])->version
                                   : &((Cirrus__V1__Item *)w->items[i])->version;
        cr_err rc;
        if (*v) {
            cr_hlc_observe(&w->r->app->hlc, *v);
        } else if ((rc = next_version(w->r, w->ids[i], v))) {
            return rc;
        }
    }
    return CR_OK;
}

static void on_seeded(void *arg)
{
    write_op *w = arg;
    coord_app *app = w->r->app;
    cr_err rc;
    for (size_t i = 0; i < w->n_seed; i++) {
        const coord_sub *s = &w->seed_subs[i];
        if (coord_sub_check(s, "stats") || !s->resp->stats)
            continue;
        cr_hlc_observe(&app->hlc, s->resp->stats->max_version);
        app->seeded[s->group][s->replica] = w->r->map;
        CR_DEBUG("coordinator", "group %d replica %d: highest version %llu", s->group,
                 s->replica, (unsigned long long)s->resp->stats->max_version);
    }
    rc = assign_versions(w);
    if (!rc)
        rc = w->is_delete ? write_start(w) : encode_then_write(w);
    if (rc)
        coord_rq_fail_end(w->r, rc, cr_error_message());
}

/* Asks every replica of the written groups that has not reported its highest version under
 * the current map for it (Stats), then continues at on_seeded. After a restart the clock
 * starts from the wall clock; versions below what the shards hold would make writes stale,
 * and items written before the restart could never be updated or deleted. A replica that
 * does not answer stays unseeded and is asked again by the next write to its group. */
static cr_err seed_then_write(write_op *w)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest sreq = CIRRUS__V1__STATS_REQUEST__INIT;
    const coord_map *map = w->r->map;
    uint8_t *need = calloc(map->n_groups > 0 ? (size_t)map->n_groups : 1, 1);
    size_t len = 0;
    w->seed_subs = calloc((size_t)(map->n_groups > 0 ? map->n_groups : 1) * COORD_MAX_REPLICAS,
                          sizeof *w->seed_subs);
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &sreq;
    for (size_t i = 0; need && i < w->n; i++) {
        need[w->group[i]] = 1;
        if (w->group2[i] >= 0)
            need[w->group2[i]] = 1;
    }
    for (int g = 0; need && w->seed_subs && g < map->n_groups; g++)
        for (int rep = 0; need[g] && rep < map->n_replicas[g]; rep++) {
            if (w->r->app->seeded[g][rep] == map)
                continue;
            if (!w->seed_body && coord_pack(&req.base, &w->seed_body, &len))
                goto send; /* seeding is best effort: write unseeded */
            coord_sub_init(&w->seed_subs[w->n_seed++], COORD_TO_REPLICA, g, rep, w->seed_body,
                           len, coord_rq_sub_timeout(w->r), 0);
        }
send:
    free(need);
    return coord_loop_call(w->r->loop, &w->seed_call, w->seed_subs, w->n_seed, on_seeded, w);
}

/* ---- the ops ------------------------------------------------------------------------------- */

/* Validates every item's id and client version, places it, and starts the write; `items`
 * are Item (upsert) or DeleteItem (delete) pointers. */
static void write_op_start(coord_rq *r, int is_delete, size_t n, void **items)
{
    write_op *w;
    cr_err rc = CR_OK;
    if (n == 0 || n > MAX_ITEMS) {
        coord_rq_fail_end(r, CR_ERR_INVALID,
                          is_delete ? "a delete holds 1..8192 items" : "an upsert holds 1..8192 items");
        return;
    }
    if (!(w = write_new(r, is_delete, n, items))) {
        coord_rq_fail_end(r, CR_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const char *id = is_delete ? ((Cirrus__V1__DeleteItem *)items[i])->id
                                   : ((Cirrus__V1__Item *)items[i])->id;
        uint64_t version = is_delete ? ((Cirrus__V1__DeleteItem *)items[i])->version
                                     : ((Cirrus__V1__Item *)items[i])->version;
        rc = cr_validate_id(id);
        if (!rc)
            rc = check_client_version(r, id, version);
        if (rc)
            break;
        int gs[2];
        w->ids[i] = id;
        w->group2[i] = coord_map_write_groups(r->map, id, gs) == 2 ? gs[1] : -1;
        w->group[i] = gs[0];
    }
    if (!rc)
        rc = seed_then_write(w);
    if (rc)
        coord_rq_fail_end(r, rc, cr_error_message());
}

void coord_upsert_start(coord_rq *r)
{
    const Cirrus__V1__UpsertRequest *up = r->req->upsert;
    write_op_start(r, 0, up ? up->n_items : 0, up ? (void **)up->items : NULL);
}

void coord_delete_start(coord_rq *r)
{
    const Cirrus__V1__DeleteRequest *del = r->req->delete_;
    write_op_start(r, 1, del ? del->n_items : 0, del ? (void **)del->items : NULL);
}
