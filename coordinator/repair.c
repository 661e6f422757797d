/* Replica repair: anti-entropy between the replicas of a shard group, by version.
 *
 * WHEN A REPLICA MAY SERVE READS ("may be behind")
 *   The coordinator serves a read only from a replica it can prove holds every acknowledged
 *   write; a group with no such replica up answers partial (searches) or unavailable (gets),
 *   naming the group, and never "missing". What it knows, per replica (backend.h,
 *   coord_replica_state):
 *   - A group with ONE replica: always current (a write it missed was acknowledged by none).
 *   - At coordinator start, and for a replica new in the map: nothing is known (known = 0,
 *     behind). The previous coordinator may have acknowledged writes that only some replicas
 *     hold, and nothing it knew survives it.
 *   - While running, every write reports each replica that did not apply it durably (down,
 *     timed out, failed): the replica's mark drops below the write's version, and if the
 *     write was acknowledged without it the replica is behind at once — before the client
 *     hears the ack. A replica that missed nothing stays current through a restart of its
 *     own (kill -9 loses no acknowledged write).
 *   A behind replica becomes current again by catching up from peers that together hold
 *   every acknowledged write: one current peer, or enough replicas that every acknowledged
 *   write is on one of them (n - W + 1 of n, W = the map's write_quorum, at least 1; with the
 *   default quorum "all live replicas" W is 1: all of them). Until then it receives writes
 *   and serves no reads. In particular a replica returning while its only peer is down, after
 *   missing writes or after a coordinator restart, waits for that peer.
 *
 * WHAT IS COPIED
 *   - Known mark (a short absence): every peer that is up is scanned by version after the
 *     mark (the shard's by-version index: only what changed is read) up to the clock's value
 *     at the start, and its items and tombstones are written into the replica with their
 *     versions. The replica's own changes in that range go the other way first: a write
 *     reported missed may have landed after all (slow, not lost; a barrier write lets those
 *     in flight land first), and a peer may lack it. The peer's own misses are its own repair.
 *   - Nothing known: a full comparison with each peer that is up. Both are scanned in
 *     external-id order without vectors (id, version, deleted), merge-joined, and only the
 *     differences are copied, newer side to older side, in both directions: live items
 *     fetched with their vectors, deletes as versioned tombstones.
 *   Shards keep the highest version of each item, so copies never overwrite newer data and a
 *   repair may be repeated or interrupted safely. Every backend call has a timeout and the
 *   thread's waits are bounded; a failed repair is retried after a second.
 *
 * Limits: the bookkeeping is this coordinator's, in memory; two coordinators writing to the
 * same shards would each need all writes reported (not supported). A replica whose data
 * directory is replaced while the coordinator runs and misses no write is not detected.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/repair.h"
#include "coordinator/request.h"

#define REPAIR_QUEUE (COORD_MAX_GROUPS * COORD_MAX_REPLICAS) /* one job per replica at most */
#define PULL_PAGE 512      /* items with vectors per scanned page */
#define KEYS_PAGE 4096     /* keys per page of a comparison */
#define COPY_BATCH 256     /* items per copy write */
#define CALL_TIMEOUT_MS 10000
#define RETRY_MS 1000      /* after a failed repair */
#define AGAIN_MS 100       /* after a repair during which the replica missed writes */
#define IDLE_WAIT_MS 1000

/* Items and tombstones written into replicas by a repair, and how many of them changed the
 * replica (the others were already there, or older than what it holds). */
typedef struct counts {
    uint64_t sent, applied;
} counts;

typedef struct job {
    int group, replica;
    uint64_t not_before_ms;
} job;

struct coord_repair {
    coord_app *app;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job queue[REPAIR_QUEUE];
    int n;
    atomic_int stop;
    /* repair thread only: a "waiting for a peer" warning was logged for this replica */
    unsigned char waiting[COORD_MAX_GROUPS][COORD_MAX_REPLICAS];
};

/* ---- backend calls ----------------------------------------------------------------------- */

/* One request to exactly one replica; the answer is in s->resp (free it, also on error). */
static cr_err call_replica(coord_repair *rp, coord_caller *w, int g, int rep,
                           Cirrus__V1__Request *req, coord_sub *s)
{
    uint8_t *body = NULL;
    size_t len = 0;
    cr_err rc;
    memset(s, 0, sizeof *s);
    if (atomic_load(&rp->stop))
        return cr_error_set(CR_ERR_UNAVAILABLE, "stopping");
    rc = coord_pack(&req->base, &body, &len);
    if (rc)
        return rc;
    coord_sub_init(s, COORD_TO_REPLICA, g, rep, body, len, CALL_TIMEOUT_MS, 0);
    rc = coord_caller_call(w, s);
    free(body);
    if (!rc && s->rc)
        rc = cr_error_set(s->rc, "replica %d: %s", rep, s->msg);
    if (!rc && (!s->resp || !s->resp->status || s->resp->status->code < 0))
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "replica %d: %s", rep,
                          s->resp && s->resp->status ? s->resp->status->message : "no answer");
    return rc;
}


/* n = 0 is a barrier: the shard's one writer applies writes in the order they arrive, so
 * when an empty write is acknowledged every write sent to it before is applied. */
/* Adds a write's per-item outcomes to *c: applied = stored (an upsert), or a delete that
 * killed an item or created or raised a tombstone. */
static void count_applied(const Cirrus__V1__WriteResult *wr, size_t n, int is_delete, counts *c)
{
    c->sent += n;
    for (size_t i = 0; wr && i < wr->n_items; i++) {
        int code = wr->items[i]->status ? wr->items[i]->status->code : 0;
        c->applied += code == CR_OK || (is_delete && code == CR_NOTFOUND);
    }
}

static cr_err write_items(coord_repair *rp, coord_caller *w, int g, int dst,
                          Cirrus__V1__Item **items, size_t n, counts *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    coord_sub s;
    cr_err rc;
    up.items = items;
    up.n_items = n;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    rc = call_replica(rp, w, g, dst, &req, &s);
    if (!rc && c)
        count_applied(s.resp->upsert, n, 0, c);
    coord_sub_free(&s);
    return rc;
}

static cr_err write_tombstones(coord_repair *rp, coord_caller *w, int g, int dst,
                               Cirrus__V1__DeleteItem **dels, size_t n, counts *c)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    coord_sub s;
    cr_err rc;
    if (!n)
        return CR_OK;
    del.items = dels;
    del.n_items = n;
    req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    rc = call_replica(rp, w, g, dst, &req, &s);
    if (!rc && c)
        count_applied(s.resp->delete_, n, 1, c);
    coord_sub_free(&s);
    return rc;
}

/* One page of replica `rep`'s scan; s->resp->scan is set on success. */
static cr_err scan_page(coord_repair *rp, coord_caller *w, int g, int rep,
                        Cirrus__V1__ScanRequest *scan, coord_sub *s)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    cr_err rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_SCAN;
    req.scan = scan;
    rc = call_replica(rp, w, g, rep, &req, s);
    if (!rc && !s->resp->scan)
        rc = cr_error_set(CR_ERR_PROTO, "replica %d: scan answer without a result", rep);
    if (!rc && s->resp->scan->n_deleted != s->resp->scan->n_items)
        rc = cr_error_set(CR_ERR_PROTO, "replica %d: scan page without deleted flags", rep);
    return rc;
}

/* ---- incremental: what changed after a version ---------------------------------------- */

/* Writes one scanned page (live items and tombstones) into `dst`. */
static cr_err apply_page(coord_repair *rp, coord_caller *w, int g, int dst,
                         const Cirrus__V1__ScanResult *page, counts *c)
{
    size_t n = page->n_items ? page->n_items : 1, nl = 0, nd = 0;
    Cirrus__V1__Item **live = calloc(n, sizeof *live);
    Cirrus__V1__DeleteItem *dels = calloc(n, sizeof *dels);
    Cirrus__V1__DeleteItem **delp = calloc(n, sizeof *delp);
    cr_err rc = CR_OK;

    if (!live || !dels || !delp) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < page->n_items; i++) {
        if (page->deleted[i]) {
            cirrus__v1__delete_item__init(&dels[nd]);
            dels[nd].id = page->items[i]->id;
            dels[nd].version = page->items[i]->version;
            delp[nd] = &dels[nd];
            nd++;
        } else {
            live[nl++] = page->items[i];
        }
    }
    rc = nl ? write_items(rp, w, g, dst, live, nl, c) : CR_OK;
    if (!rc)
        rc = write_tombstones(rp, w, g, dst, delp, nd, c);
out:
    free(live);
    free(dels);
    free(delp);
    return rc;
}

/* Copies from `src` into `dst` every item and tombstone with a version in [from, to]. */
static cr_err pull(coord_repair *rp, coord_caller *w, int g, int src, int dst, uint64_t from,
                   uint64_t to, counts *c)
{
    char cursor[320] = "";
    for (;;) {
        Cirrus__V1__ScanRequest scan = CIRRUS__V1__SCAN_REQUEST__INIT;
        coord_sub s;
        int done = 0;
        cr_err rc;
        scan.order = CIRRUS__V1__SCAN_ORDER__SCAN_BY_VERSION;
        scan.after_id = cursor;
        scan.min_version = from;
        scan.max_version = to;
        scan.limit = PULL_PAGE;
        scan.include_vector = 1;
        scan.include_image = 1; /* kept images travel with their items */
        rc = scan_page(rp, w, g, src, &scan, &s);
        if (!rc)
            rc = apply_page(rp, w, g, dst, s.resp->scan, c);
        if (!rc) {
            done = s.resp->scan->done;
            if (!done && strcmp(cursor, s.resp->scan->next_cursor) == 0)
                rc = cr_error_set(CR_ERR_PROTO, "replica %d: scan did not advance", src);
            snprintf(cursor, sizeof cursor, "%s", s.resp->scan->next_cursor);
        }
        coord_sub_free(&s);
        if (rc || done)
            return rc;
    }
}

/* ---- full comparison: merge-join of two replicas' keys ---------------------------------- */

typedef struct stream {
    int rep;
    coord_sub s; /* the current page */
    size_t i;
    char cursor[320];
    int last_page, started;
} stream;

/* The current key of `st`, fetching pages as needed; NULL when the scan is over. */
static cr_err stream_peek(coord_repair *rp, coord_caller *w, int g, stream *st,
                          const Cirrus__V1__Item **it, int *deleted)
{
    *it = NULL;
    while (!st->started || st->i >= st->s.resp->scan->n_items) {
        Cirrus__V1__ScanRequest scan = CIRRUS__V1__SCAN_REQUEST__INIT;
        cr_err rc;
        if (st->started && st->last_page)
            return CR_OK;
        coord_sub_free(&st->s);
        scan.order = CIRRUS__V1__SCAN_ORDER__SCAN_BY_EXTERNAL_ID;
        scan.after_id = st->cursor;
        scan.limit = KEYS_PAGE;
        scan.keys_only = 1;
        rc = scan_page(rp, w, g, st->rep, &scan, &st->s);
        if (rc)
            return rc;
        if (!st->s.resp->scan->done && !st->s.resp->scan->n_items &&
            strcmp(st->cursor, st->s.resp->scan->next_cursor) == 0)
            return cr_error_set(CR_ERR_PROTO, "replica %d: scan did not advance", st->rep);
        snprintf(st->cursor, sizeof st->cursor, "%s", st->s.resp->scan->next_cursor);
        st->last_page = st->s.resp->scan->done;
        st->started = 1;
        st->i = 0;
    }
    *it = st->s.resp->scan->items[st->i];
    *deleted = st->s.resp->scan->deleted[st->i];
    return CR_OK;
}

/* Differences to copy one way: live ids to fetch from `src`, tombstones to write as they are. */
typedef struct copy_batch {
    int src, dst;
    char *ids[COPY_BATCH];
    size_t n_ids;
    Cirrus__V1__DeleteItem dels[COPY_BATCH];
    size_t n_dels;
} copy_batch;

static void batch_clear(copy_batch *b)
{
    for (size_t i = 0; i < b->n_ids; i++)
        free(b->ids[i]);
    for (size_t i = 0; i < b->n_dels; i++)
        free(b->dels[i].id);
    b->n_ids = b->n_dels = 0;
}

/* Fetches the batch's live items from src (with vectors) and writes them and its
 * tombstones into dst. An id deleted on src meanwhile is skipped (the delete reached both). */
static cr_err batch_flush(coord_repair *rp, coord_caller *w, int g, copy_batch *b, counts *c)
{
    Cirrus__V1__DeleteItem *delp[COPY_BATCH];
    cr_err rc = CR_OK;
    if (b->n_ids) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
        coord_sub s;
        get.ids = b->ids;
        get.n_ids = b->n_ids;
        get.include_vector = 1;
        get.include_image = 1; /* kept images travel with their items */
        req.op_case = CIRRUS__V1__REQUEST__OP_GET;
        req.get = &get;
        rc = call_replica(rp, w, g, b->src, &req, &s);
        if (!rc && !s.resp->get)
            rc = cr_error_set(CR_ERR_PROTO, "replica %d: get answer without a result", b->src);
        if (!rc && s.resp->get->n_items)
            rc = write_items(rp, w, g, b->dst, s.resp->get->items, s.resp->get->n_items, c);
        coord_sub_free(&s);
    }
    for (size_t i = 0; i < b->n_dels; i++)
        delp[i] = &b->dels[i];
    if (!rc)
        rc = write_tombstones(rp, w, g, b->dst, delp, b->n_dels, c);
    batch_clear(b);
    return rc;
}

/* Queues `it` (newer on b->src) for copying to b->dst; flushes a full batch. */
static cr_err batch_add(coord_repair *rp, coord_caller *w, int g, copy_batch *b,
                        const Cirrus__V1__Item *it, int deleted, counts *c)
{
    char *id = strdup(it->id);
    if (!id)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (deleted) {
        cirrus__v1__delete_item__init(&b->dels[b->n_dels]);
        b->dels[b->n_dels].id = id;
        b->dels[b->n_dels++].version = it->version;
    } else {
        b->ids[b->n_ids++] = id;
    }
    if (b->n_ids == COPY_BATCH || b->n_dels == COPY_BATCH)
        return batch_flush(rp, w, g, b, c);
    return CR_OK;
}

/* Which side of a key present on both is newer: 1 = a, -1 = b, 0 = same. At equal versions
 * a tombstone wins, as in the shard (a delete needs a version >= the item's). */
static int newer(const Cirrus__V1__Item *a, int adel, const Cirrus__V1__Item *b, int bdel)
{
    if (a->version != b->version)
        return a->version > b->version ? 1 : -1;
    return adel == bdel ? 0 : adel ? 1 : -1;
}

/* Brings replicas x and p to the newest version of every id either holds. */
static cr_err compare(coord_repair *rp, coord_caller *w, int g, int x, int p, counts *c)
{
    stream sx, sp;
    copy_batch *to_x = calloc(1, sizeof *to_x), *to_p = calloc(1, sizeof *to_p);
    cr_err rc = CR_OK;

    memset(&sx, 0, sizeof sx);
    memset(&sp, 0, sizeof sp);
    sx.rep = x;
    sp.rep = p;
    if (!to_x || !to_p) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    to_x->src = to_p->dst = p;
    to_x->dst = to_p->src = x;
    while (!rc) {
        const Cirrus__V1__Item *a, *b;
        int adel = 0, bdel = 0, order, side;
        rc = stream_peek(rp, w, g, &sx, &a, &adel);
        if (!rc)
            rc = stream_peek(rp, w, g, &sp, &b, &bdel);
        if (rc || (!a && !b))
            break;
        order = !a ? 1 : !b ? -1 : strcmp(a->id, b->id);
        side = order < 0 ? 1 : order > 0 ? -1 : newer(a, adel, b, bdel);
        if (side > 0)
            rc = batch_add(rp, w, g, to_p, a, adel, c);
        else if (side < 0)
            rc = batch_add(rp, w, g, to_x, b, bdel, c);
        if (order <= 0)
            sx.i++;
        if (order >= 0)
            sp.i++;
    }
    if (!rc)
        rc = batch_flush(rp, w, g, to_x, c);
    if (!rc)
        rc = batch_flush(rp, w, g, to_p, c);
out:
    if (to_x)
        batch_clear(to_x);
    if (to_p)
        batch_clear(to_p);
    free(to_x);
    free(to_p);
    coord_sub_free(&sx.s);
    coord_sub_free(&sp.s);
    return rc;
}

/* ---- one repair ------------------------------------------------------------------------- */

static void enqueue_at(coord_repair *rp, int group, int replica, uint64_t not_before_ms);

static int needs_work(const coord_replica_state *st)
{
    return st->behind || !st->known || st->mark != UINT64_MAX;
}

/* Replicas of the group needed to hold every acknowledged write: n - W + 1. */
static int coverage_needed(const coord_map *map, int g)
{
    int n = map->n_replicas[g], wq = map->write_quorum > 1 ? map->write_quorum : 1;
    return wq >= n ? 1 : n - wq + 1;
}

static void repair_one(coord_repair *rp, coord_caller *w, int g, int x)
{
    coord_loop *io = rp->app->loop;
    const coord_map *map = coord_loop_map(io);
    coord_replica_state xs, ps;
    int peers[COORD_MAX_REPLICAS], np = 0, current = 0, synced = 0, proven = 0, n;
    uint64_t t0 = cr_clock_mono_ms(), ceiling, from;
    counts copied = {0, 0};
    cr_err rc = CR_OK;

    if (g >= map->n_groups || x >= map->n_replicas[g] || !coord_loop_repair_begin(io, g, x, &xs))
        return;
    n = map->n_replicas[g];
    if (!needs_work(&xs) || !xs.up) { /* current, or down: its return queues it again */
        coord_loop_repair_end(io, g, x, xs.ep, 0, 0);
        return;
    }
    for (int p = 0; p < n; p++)
        if (p != x && coord_loop_replica_state(io, g, p, &ps) && ps.up) {
            peers[np++] = p;
            current |= !ps.behind;
        }
    if (!np && !xs.behind) { /* serving; converges when a peer returns (its return queues it) */
        coord_loop_repair_end(io, g, x, xs.ep, 0, 0);
        return;
    }
    if (!current && xs.behind && 1 + np < coverage_needed(map, g)) {
        if (!rp->waiting[g][x])
            CR_WARN("coordinator", "group %d replica %d may be behind and no up-to-date peer is "
                    "up: it serves no reads until enough replicas of the group return", g, x);
        rp->waiting[g][x] = 1;
        coord_loop_repair_end(io, g, x, xs.ep, 0, 0);
        return;
    }
    /* Writes after this point reach x themselves or are reported as missed. */
    ceiling = cr_hlc_next(&rp->app->hlc);
    from = xs.mark == UINT64_MAX ? UINT64_MAX : xs.mark + 1;
    /* A write reported missed may still land on x (it was slow, not lost); the barrier lets
     * every such write in flight land before x's changes since its mark go to the peers. */
    if (xs.known)
        rc = write_items(rp, w, g, x, NULL, 0, NULL);
    for (int i = 0; i < np && !rc; i++) {
        coord_replica_state before;
        int peer_current = coord_loop_replica_state(io, g, peers[i], &before) && !before.behind;
        if (xs.known) {
            rc = pull(rp, w, g, x, peers[i], from, ceiling, &copied); /* x's late writes */
            if (!rc)
                rc = pull(rp, w, g, peers[i], x, from, ceiling, &copied);
        } else {
            rc = compare(rp, w, g, x, peers[i], &copied);
        }
        if (!rc) {
            synced++;
            proven |= peer_current;
        }
    }
    if (rc) {
        CR_WARN("coordinator", "repair of group %d replica %d failed (%s); retrying", g, x,
                cr_error_message());
        coord_loop_repair_end(io, g, x, xs.ep, 0, 0);
        enqueue_at(rp, g, x, cr_clock_mono_ms() + RETRY_MS);
        return;
    }
    proven |= 1 + synced >= coverage_needed(map, g);
    if (coord_loop_repair_end(io, g, x, xs.ep, proven, synced == n - 1))
        enqueue_at(rp, g, x, cr_clock_mono_ms() + AGAIN_MS);
    rp->waiting[g][x] = 0;
    CR_INFO("coordinator", "group %d replica %d %s: %llu items copied (%llu sent; %s, from %d of "
            "%d peers) in %llu ms", g, x,
            proven ? "repaired" : "partly repaired, may still be behind",
            (unsigned long long)copied.applied, (unsigned long long)copied.sent,
            xs.known ? "changes since its mark" : "full comparison",
            synced, n - 1, (unsigned long long)(cr_clock_mono_ms() - t0));
}

/* ---- the thread and its queue ------------------------------------------------------------ */

/* Takes the first job due; with none, *wait_ms is how long until one is (bounded). */
static int take_due(coord_repair *rp, job *out, int *wait_ms)
{
    uint64_t now = cr_clock_mono_ms(), soonest = now + IDLE_WAIT_MS;
    for (int i = 0; i < rp->n; i++) {
        if (rp->queue[i].not_before_ms <= now) {
            *out = rp->queue[i];
            memmove(rp->queue + i, rp->queue + i + 1, (size_t)(rp->n - i - 1) * sizeof *rp->queue);
            rp->n--;
            return 1;
        }
        if (rp->queue[i].not_before_ms < soonest)
            soonest = rp->queue[i].not_before_ms;
    }
    *wait_ms = (int)(soonest - now);
    return 0;
}

static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static void *repair_main(void *arg)
{
    coord_repair *rp = arg;
    coord_caller *w = NULL;
    if (coord_caller_open(rp->app->loop, &w)) {
        CR_ERROR("coordinator", "repair: %s", cr_error_message());
        return NULL;
    }
    pthread_mutex_lock(&rp->mu);
    while (!atomic_load(&rp->stop)) {
        job j;
        int wait_ms = IDLE_WAIT_MS;
        if (!take_due(rp, &j, &wait_ms)) {
            cond_wait_ms(&rp->cv, &rp->mu, wait_ms > 0 ? wait_ms : 1);
            continue;
        }
        pthread_mutex_unlock(&rp->mu);
        repair_one(rp, w, j.group, j.replica);
        pthread_mutex_lock(&rp->mu);
    }
    pthread_mutex_unlock(&rp->mu);
    coord_caller_close(&w);
    return NULL;
}

/* Adds (or advances) the job of one replica. */
static void enqueue_at(coord_repair *rp, int group, int replica, uint64_t not_before_ms)
{
    pthread_mutex_lock(&rp->mu);
    for (int i = 0; i < rp->n; i++)
        if (rp->queue[i].group == group && rp->queue[i].replica == replica) {
            if (not_before_ms < rp->queue[i].not_before_ms)
                rp->queue[i].not_before_ms = not_before_ms;
            goto out;
        }
    if (rp->n < REPAIR_QUEUE) { /* one per replica: never full */
        rp->queue[rp->n++] = (job){group, replica, not_before_ms};
        pthread_cond_signal(&rp->cv);
    }
out:
    pthread_mutex_unlock(&rp->mu);
}

cr_err coord_repair_start(coord_app *app, coord_repair **out)
{
    coord_repair *rp = calloc(1, sizeof *rp);
    pthread_condattr_t ca;
    if (!rp)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rp->app = app;
    pthread_mutex_init(&rp->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rp->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&rp->tid, NULL, repair_main, rp) != 0) {
        pthread_cond_destroy(&rp->cv);
        pthread_mutex_destroy(&rp->mu);
        free(rp);
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the repair thread");
    }
    *out = rp;
    return CR_OK;
}

void coord_repair_enqueue(void *ctx, int group, int replica)
{
    coord_repair *rp = ctx;
    const coord_map *map = coord_loop_map(rp->app->loop);
    uint64_t now = cr_clock_mono_ms();
    (void)replica;
    if (group < 0 || group >= map->n_groups)
        return;
    /* Its return may be what the others of its group waited for. */
    for (int r = 0; r < map->n_replicas[group]; r++) {
        coord_replica_state st;
        if (coord_loop_replica_state(rp->app->loop, group, r, &st) && st.up && needs_work(&st))
            enqueue_at(rp, group, r, now);
    }
}

void coord_repair_note_miss(coord_repair *rp, int group, int replica, const char *ep,
                            uint64_t min_version, int acked)
{
    if (rp && coord_loop_replica_missed(rp->app->loop, group, replica, ep, min_version, acked))
        enqueue_at(rp, group, replica, cr_clock_mono_ms() + AGAIN_MS);
}

void coord_repair_stop(coord_repair **pp)
{
    coord_repair *rp = pp ? *pp : NULL;
    if (!rp)
        return;
    pthread_mutex_lock(&rp->mu);
    atomic_store(&rp->stop, 1);
    pthread_cond_broadcast(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
    /* Bounded: every backend call has a timeout and returns at once when the event loop has
     * exited (coord_caller_call); the thread checks `stop` between calls. */
    pthread_join(rp->tid, NULL);
    pthread_cond_destroy(&rp->cv);
    pthread_mutex_destroy(&rp->mu);
    free(rp);
    *pp = NULL;
}
