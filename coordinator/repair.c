/* Replica repair: when a shard replica comes back after being down, copy into it everything
 * a live peer of its group holds — items with their vectors, attributes and versions, and
 * deletions as versioned tombstones. The shard keeps the highest version of each item, so
 * the copy never overwrites newer data and may be repeated safely. Until it finishes the
 * replica receives writes but serves no reads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/handlers.h"

#define REPAIR_QUEUE 256
#define REPAIR_PAGE 512

struct coord_repair {
    coord_app *app;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queue[REPAIR_QUEUE][2];
    int n;
    int stop;
};

static cr_err call_replica(coord_worker *w, int g, int rep, Cirrus__V1__Request *req,
                           coord_sub *s)
{
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    uint8_t *body = malloc(len ? len : 1);
    cr_err rc;
    if (!body)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    protobuf_c_message_pack(&req->base, body);
    memset(s, 0, sizeof *s);
    s->target = COORD_TO_REPLICA;
    s->group = g;
    s->replica = rep;
    s->body = body;
    s->len = len;
    s->timeout_ms = 10000;
    rc = coord_io_call(w, s, 1);
    free(body);
    if (!rc && s->rc)
        rc = cr_error_set(s->rc, "%s", s->msg);
    if (!rc && (!s->resp || !s->resp->status || s->resp->status->code < 0))
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "%s",
                          s->resp && s->resp->status ? s->resp->status->message : "no answer");
    return rc;
}

/* Writes one scanned page into the returning replica. */
static cr_err apply_page(coord_worker *w, int g, int rep, const Cirrus__V1__ScanResult *page)
{
    Cirrus__V1__Item **live = calloc(page->n_items + 1, sizeof *live);
    Cirrus__V1__DeleteItem *dels = calloc(page->n_items + 1, sizeof *dels);
    Cirrus__V1__DeleteItem **delp = calloc(page->n_items + 1, sizeof *delp);
    size_t nl = 0, nd = 0;
    cr_err rc = CR_OK;
    coord_sub s;

    if (!live || !dels || !delp) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < page->n_items; i++) {
        if (i < page->n_deleted && page->deleted[i]) {
            cirrus__v1__delete_item__init(&dels[nd]);
            dels[nd].id = page->items[i]->id;
            dels[nd].version = page->items[i]->version;
            delp[nd] = &dels[nd];
            nd++;
        } else {
            live[nl++] = page->items[i];
        }
    }
    if (nl) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
        up.items = live;
        up.n_items = nl;
        req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
        rc = call_replica(w, g, rep, &req, &s);
        if (s.resp)
            cirrus__v1__response__free_unpacked(s.resp, NULL);
    }
    if (!rc && nd) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
        del.items = delp;
        del.n_items = nd;
        req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
        req.delete_ = &del;
        rc = call_replica(w, g, rep, &req, &s);
        if (s.resp)
            cirrus__v1__response__free_unpacked(s.resp, NULL);
    }
out:
    free(live);
    free(dels);
    free(delp);
    return rc;
}

static cr_err repair_one(coord_repair *rp, coord_worker *w, int g, int rep, uint64_t *copied)
{
    const coord_map *map = coord_io_map(rp->app->io);
    char cursor[32] = "";
    int peer = -1;
    for (int p = 0; p < map->n_replicas[g]; p++)
        if (p != rep && coord_io_replica_live(rp->app->io, g, p))
            peer = p;
    if (peer < 0) {
        CR_WARN("coordinator", "group %d replica %d: no live peer to repair from; serving its "
                               "own data", g, rep);
        return CR_OK;
    }
    for (;;) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__ScanRequest scan = CIRRUS__V1__SCAN_REQUEST__INIT;
        coord_sub s;
        cr_err rc;
        int done;
        scan.after_id = cursor;
        scan.limit = REPAIR_PAGE;
        scan.include_vector = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_SCAN;
        req.scan = &scan;
        rc = call_replica(w, g, peer, &req, &s);
        if (!rc && !s.resp->scan)
            rc = cr_error_set(CR_ERR_PROTO, "scan answer without a result");
        if (!rc)
            rc = apply_page(w, g, rep, s.resp->scan);
        done = !rc && s.resp->scan->done;
        if (!rc) {
            *copied += s.resp->scan->n_items;
            snprintf(cursor, sizeof cursor, "%s", s.resp->scan->next_cursor);
        }
        if (s.resp)
            cirrus__v1__response__free_unpacked(s.resp, NULL);
        if (rc || done)
            return rc;
    }
}

static void *repair_main(void *arg)
{
    coord_repair *rp = arg;
    coord_worker *w = NULL;
    if (coord_worker_open_caller(rp->app->io, &w)) {
        CR_ERROR("coordinator", "repair: %s", cr_error_message());
        return NULL;
    }
    pthread_mutex_lock(&rp->mu);
    while (!rp->stop) {
        int g, rep;
        uint64_t copied = 0, t0;
        cr_err rc;
        if (!rp->n) {
            pthread_cond_wait(&rp->cv, &rp->mu);
            continue;
        }
        g = rp->queue[0][0];
        rep = rp->queue[0][1];
        memmove(rp->queue, rp->queue + 1, (size_t)--rp->n * sizeof rp->queue[0]);
        pthread_mutex_unlock(&rp->mu);
        t0 = cr_clock_mono_ms();
        rc = repair_one(rp, w, g, rep, &copied);
        if (rc) {
            CR_WARN("coordinator", "repair of group %d replica %d failed (%s); retrying", g, rep,
                    cr_error_message());
            cr_clock_sleep_ms(1000);
            coord_repair_enqueue(rp, g, rep);
        } else {
            CR_INFO("coordinator", "group %d replica %d repaired: %llu items copied in %llu ms",
                    g, rep, (unsigned long long)copied,
                    (unsigned long long)(cr_clock_mono_ms() - t0));
            coord_io_repair_done(rp->app->io, g, rep);
        }
        pthread_mutex_lock(&rp->mu);
    }
    pthread_mutex_unlock(&rp->mu);
    coord_worker_close(&w);
    return NULL;
}

cr_err coord_repair_start(coord_app *app, coord_repair **out)
{
    coord_repair *rp = calloc(1, sizeof *rp);
    if (!rp)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rp->app = app;
    pthread_mutex_init(&rp->mu, NULL);
    pthread_cond_init(&rp->cv, NULL);
    if (pthread_create(&rp->tid, NULL, repair_main, rp) != 0) {
        free(rp);
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the repair thread");
    }
    *out = rp;
    return CR_OK;
}

void coord_repair_enqueue(void *ctx, int group, int replica)
{
    coord_repair *rp = ctx;
    pthread_mutex_lock(&rp->mu);
    for (int i = 0; i < rp->n; i++)
        if (rp->queue[i][0] == group && rp->queue[i][1] == replica)
            goto out;
    if (rp->n < REPAIR_QUEUE) {
        rp->queue[rp->n][0] = group;
        rp->queue[rp->n][1] = replica;
        rp->n++;
        pthread_cond_signal(&rp->cv);
    }
out:
    pthread_mutex_unlock(&rp->mu);
}

void coord_repair_stop(coord_repair **pp)
{
    coord_repair *rp = pp ? *pp : NULL;
    if (!rp)
        return;
    pthread_mutex_lock(&rp->mu);
    rp->stop = 1;
    pthread_cond_broadcast(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
    pthread_join(rp->tid, NULL);
    pthread_cond_destroy(&rp->cv);
    pthread_mutex_destroy(&rp->mu);
    free(rp);
    *pp = NULL;
}
