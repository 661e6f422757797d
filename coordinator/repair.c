/* Replica repair: when a shard replica comes back after being down, copy into it everything
 * a live peer of its group holds — items with their vectors, attributes and versions, and
 * deletions as versioned tombstones. The shard keeps the highest version of each item, so
 * the copy never overwrites newer data and may be repeated safely. Until it finishes the
 * replica receives writes but serves no reads. */
#include "coordinator/repair.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cirrus.h"
#include "common/clock.h"
#include "common/log.h"

#define REPAIR_QUEUE 256
#define REPAIR_PAGE 512
#define REPAIR_CALL_MS 10000
#define MAX_CONNS 16

typedef struct conn {
    char ep[COORD_MAX_ENDPOINT];
    cirrus_client *c;
} conn;

struct coord_repair {
    coord_loop *loop;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queue[REPAIR_QUEUE][2];
    int n;
    int stop;
    conn conns[MAX_CONNS]; /* the repair thread's own connections, by endpoint */
    int next_evict;
};

/* ---- talking to a replica ------------------------------------------------------------------ */

static cirrus_client *conn_for(coord_repair *rp, const char *ep)
{
    cirrus_client_opts o = cirrus_client_default_opts();
    conn *slot;
    for (int i = 0; i < MAX_CONNS; i++)
        if (rp->conns[i].c && strcmp(rp->conns[i].ep, ep) == 0)
            return rp->conns[i].c;
    slot = &rp->conns[rp->next_evict];
    rp->next_evict = (rp->next_evict + 1) % MAX_CONNS;
    cirrus_client_close(&slot->c);
    o.zmq_ctx = coord_loop_zmq_ctx(rp->loop);
    if (cirrus_client_open(&slot->c, ep, &o))
        return NULL;
    snprintf(slot->ep, sizeof slot->ep, "%s", ep);
    return slot->c;
}

cr_err coord_repair_call(coord_repair *rp, int g, int rep, Cirrus__V1__Request *req,
                         uint32_t timeout_ms, Cirrus__V1__Response **resp)
{
    const coord_map *map = coord_loop_map(rp->loop);
    cirrus_client *c;
    cr_err rc;
    *resp = NULL;
    if (g < 0 || g >= map->n_groups || rep < 0 || rep >= map->n_replicas[g])
        return cr_error_set(CR_ERR_INVALID, "no replica %d in group %d", rep, g);
    if (!(c = conn_for(rp, map->replicas[g][rep])))
        return CR_ERR_NET;
    req->deadline_ms = 0;
    rc = cirrus_client_call(c, req, timeout_ms, resp);
    if (!rc && (!(*resp)->status || (*resp)->status->code < 0))
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "%s",
                          (*resp)->status ? (*resp)->status->message : "no status");
    if (rc && *resp) {
        cirrus_response_free(*resp);
        *resp = NULL;
    }
    return rc;
}

/* ---- copying ------------------------------------------------------------------------------- */

static cr_err call_and_free(coord_repair *rp, int g, int rep, Cirrus__V1__Request *req)
{
    Cirrus__V1__Response *resp = NULL;
    cr_err rc = coord_repair_call(rp, g, rep, req, REPAIR_CALL_MS, &resp);
    if (resp)
        cirrus_response_free(resp);
    return rc;
}

/* Writes one scanned page into the returning replica. */
static cr_err apply_page(coord_repair *rp, int g, int rep, const Cirrus__V1__ScanResult *page)
{
    Cirrus__V1__Item **live = calloc(page->n_items + 1, sizeof *live);
    Cirrus__V1__DeleteItem *dels = calloc(page->n_items + 1, sizeof *dels);
    Cirrus__V1__DeleteItem **delp = calloc(page->n_items + 1, sizeof *delp);
    size_t nl = 0, nd = 0;
    cr_err rc = CR_OK;

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
        rc = call_and_free(rp, g, rep, &req);
    }
    if (!rc && nd) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
        del.items = delp;
        del.n_items = nd;
        req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
        req.delete_ = &del;
        rc = call_and_free(rp, g, rep, &req);
    }
out:
    free(live);
    free(dels);
    free(delp);
    return rc;
}

static cr_err repair_one(coord_repair *rp, int g, int rep, uint64_t *copied)
{
    const coord_map *map = coord_loop_map(rp->loop);
    char cursor[32] = "";
    int peer = -1;
    if (g >= map->n_groups)
        return CR_OK; /* gone from the map */
    for (int p = 0; p < map->n_replicas[g]; p++)
        if (p != rep && coord_loop_replica_live(rp->loop, g, p))
            peer = p;
    if (peer < 0) {
        CR_WARN("coordinator", "group %d replica %d: no live peer to repair from; serving its "
                               "own data", g, rep);
        return CR_OK;
    }
    for (;;) {
        Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
        Cirrus__V1__ScanRequest scan = CIRRUS__V1__SCAN_REQUEST__INIT;
        Cirrus__V1__Response *resp = NULL;
        cr_err rc;
        int done;
        scan.after_id = cursor;
        scan.limit = REPAIR_PAGE;
        scan.include_vector = 1;
        req.op_case = CIRRUS__V1__REQUEST__OP_SCAN;
        req.scan = &scan;
        rc = coord_repair_call(rp, g, peer, &req, REPAIR_CALL_MS, &resp);
        if (!rc && !resp->scan)
            rc = cr_error_set(CR_ERR_PROTO, "scan answer without a result");
        if (!rc)
            rc = apply_page(rp, g, rep, resp->scan);
        done = !rc && resp->scan->done;
        if (!rc) {
            *copied += resp->scan->n_items;
            snprintf(cursor, sizeof cursor, "%s", resp->scan->next_cursor);
        }
        if (resp)
            cirrus_response_free(resp);
        if (rc || done)
            return rc;
    }
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void repair_and_report(coord_repair *rp, int g, int rep)
{
    uint64_t copied = 0, t0 = cr_clock_mono_ms();
    cr_err rc = repair_one(rp, g, rep, &copied);
    if (rc) {
        CR_WARN("coordinator", "repair of group %d replica %d failed (%s); retrying", g, rep,
                cr_error_message());
        cr_clock_sleep_ms(1000);
        coord_repair_enqueue(rp, g, rep);
        return;
    }
    CR_INFO("coordinator", "group %d replica %d repaired: %llu items copied in %llu ms", g, rep,
            (unsigned long long)copied, (unsigned long long)(cr_clock_mono_ms() - t0));
    coord_loop_repair_done(rp->loop, g, rep);
}

static void *repair_main(void *arg)
{
    coord_repair *rp = arg;
    pthread_mutex_lock(&rp->mu);
    while (!rp->stop) {
        int g, rep;
        if (!rp->n) {
            pthread_cond_wait(&rp->cv, &rp->mu);
            continue;
        }
        g = rp->queue[0][0];
        rep = rp->queue[0][1];
        memmove(rp->queue, rp->queue + 1, (size_t)--rp->n * sizeof rp->queue[0]);
        pthread_mutex_unlock(&rp->mu);
        repair_and_report(rp, g, rep);
        pthread_mutex_lock(&rp->mu);
    }
    pthread_mutex_unlock(&rp->mu);
    for (int i = 0; i < MAX_CONNS; i++)
        cirrus_client_close(&rp->conns[i].c);
    return NULL;
}

cr_err coord_repair_start(coord_loop *loop, coord_repair **out)
{
    coord_repair *rp = calloc(1, sizeof *rp);
    if (!rp)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    rp->loop = loop;
    pthread_mutex_init(&rp->mu, NULL);
    pthread_cond_init(&rp->cv, NULL);
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
