#include "offline/rebalance_net.h"

#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "common/clock.h"
#include "common/log.h"

#define NET_MAX_PEERS (COORD_MAX_GROUPS * COORD_MAX_REPLICAS + 64)
#define RELOAD_POLL_MS 20

typedef struct peer {
    char endpoint[COORD_MAX_ENDPOINT];
    cirrus_client *c;
} peer;

struct offline_rebal_net {
    uint32_t timeout_ms;
    size_t n;
    peer *peers; /* NET_MAX_PEERS */
};

cr_err offline_rebal_net_open(offline_rebal_net **out, uint32_t timeout_ms)
{
    offline_rebal_net *n = calloc(1, sizeof *n);
    if (!n || !(n->peers = calloc(NET_MAX_PEERS, sizeof *n->peers))) {
        free(n);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    n->timeout_ms = timeout_ms ? timeout_ms : 30000;
    *out = n;
    return CR_OK;
}

void offline_rebal_net_close(offline_rebal_net **pp)
{
    offline_rebal_net *n = pp ? *pp : NULL;
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        cirrus_client_close(&n->peers[i].c);
    free(n->peers);
    free(n);
    *pp = NULL;
}

static cr_err client_of(offline_rebal_net *n, const char *ep, cirrus_client **out)
{
    cirrus_client_opts o = cirrus_client_default_opts();
    cr_err rc;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->peers[i].endpoint, ep) == 0) {
            *out = n->peers[i].c;
            return CR_OK;
        }
    if (n->n == NET_MAX_PEERS || strlen(ep) >= COORD_MAX_ENDPOINT)
        return cr_error_set(CR_ERR_INVALID, "rebalance: too many endpoints");
    if ((rc = cirrus_client_open(&n->peers[n->n].c, ep, &o)))
        return rc;
    memcpy(n->peers[n->n].endpoint, ep, strlen(ep) + 1);
    *out = n->peers[n->n++].c;
    return CR_OK;
}

/* One call to `ep`, expecting `want`; on CR_OK *resp is set. */
static cr_err call(offline_rebal_net *n, const char *ep, Cirrus__V1__Request *req,
                   Cirrus__V1__Response__ResultCase want, Cirrus__V1__Response **resp)
{
    cirrus_client *c = NULL;
    Cirrus__V1__Response *r = NULL;
    cr_err rc = client_of(n, ep, &c);
    req->deadline_ms = n->timeout_ms;
    if (!rc)
        rc = cirrus_client_call(c, req, n->timeout_ms, &r);
    if (rc == CR_TIMEOUT)
        rc = cr_error_set(CR_ERR_UNAVAILABLE, "no answer in %u ms", n->timeout_ms);
    if (!rc)
        rc = cirrus_response_expect(r, want);
    if (rc) {
        if (r)
            cirrus_response_free(r);
        return cr_error_wrap(rc, "%s", ep);
    }
    *resp = r;
    return CR_OK;
}

cr_err offline_rebal_scan(offline_rebal_net *n, const coord_map *m, int g, const char *cursor,
                          uint32_t limit, int keys_only, Cirrus__V1__Response **resp)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ScanRequest sc = CIRRUS__V1__SCAN_REQUEST__INIT;
    cr_err rc = CR_ERR_UNAVAILABLE;
    sc.after_id = (char *)(cursor ? cursor : "");
    sc.limit = limit;
    sc.include_vector = !keys_only;
    sc.include_image = !keys_only; /* kept images (--keep-images) move with their items */
    sc.keys_only = keys_only;
    sc.order = CIRRUS__V1__SCAN_ORDER__SCAN_BY_EXTERNAL_ID;
    req.op_case = CIRRUS__V1__REQUEST__OP_SCAN;
    req.scan = &sc;
    for (int r = 0; r < m->n_replicas[g]; r++) {
        if (!(rc = call(n, m->replicas[g][r], &req, CIRRUS__V1__RESPONSE__RESULT_SCAN, resp)))
            return CR_OK;
        CR_WARN("rebalance", "scan of group %d: %s", g, cr_error_message());
    }
    return cr_error_wrap(rc, "scan of group %d: no replica answered", g);
}

cr_err offline_rebal_count(offline_rebal_net *n, const coord_map *m, int g, uint64_t *items)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__Response *resp;
    cr_err rc = CR_ERR_UNAVAILABLE;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    for (int r = 0; r < m->n_replicas[g]; r++) {
        if ((rc = call(n, m->replicas[g][r], &req, CIRRUS__V1__RESPONSE__RESULT_STATS, &resp)))
            continue;
        *items = resp->stats->count;
        cirrus_response_free(resp);
        return CR_OK;
    }
    return cr_error_wrap(rc, "stats of group %d", g);
}

/* Every item status of a write is a success or "stale" (a newer version is there); for a
 * delete also "not found" (the tombstone is recorded). */
static cr_err check_write(const Cirrus__V1__WriteResult *wr, size_t want, int is_delete)
{
    if (!wr || wr->n_items != want)
        return cr_error_set(CR_ERR_PROTO, "write answered for %zu of %zu items",
                            wr ? wr->n_items : 0, want);
    for (size_t i = 0; i < wr->n_items; i++) {
        const Cirrus__V1__Status *s = wr->items[i]->status;
        int code = s ? s->code : 0;
        if (code == CR_OK || code == CR_STALE || (is_delete && code == CR_NOTFOUND))
            continue;
        return cr_error_set(code < 0 ? (cr_err)code : CR_ERR_INTERNAL, "item '%s': %s",
                            wr->items[i]->id, s && s->message ? s->message : "failed");
    }
    return CR_OK;
}

static cr_err write_all(offline_rebal_net *n, const coord_map *m, int g, Cirrus__V1__Request *req,
                        size_t want)
{
    int is_delete = req->op_case == CIRRUS__V1__REQUEST__OP_DELETE;
    Cirrus__V1__Response__ResultCase rcase =
        is_delete ? CIRRUS__V1__RESPONSE__RESULT_DELETE : CIRRUS__V1__RESPONSE__RESULT_UPSERT;
    for (int r = 0; r < m->n_replicas[g]; r++) {
        Cirrus__V1__Response *resp;
        cr_err rc = call(n, m->replicas[g][r], req, rcase, &resp);
        if (!rc) {
            rc = check_write(is_delete ? resp->delete_ : resp->upsert, want, is_delete);
            cirrus_response_free(resp);
        }
        if (rc)
            return cr_error_wrap(rc, "group %d replica %d", g, r);
    }
    return CR_OK;
}

cr_err offline_rebal_put(offline_rebal_net *n, const coord_map *m, int g,
                         Cirrus__V1__Item *const *items, size_t n_items)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    if (!n_items)
        return CR_OK;
    up.items = (Cirrus__V1__Item **)items;
    up.n_items = n_items;
    req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    return write_all(n, m, g, &req, n_items);
}

cr_err offline_rebal_del(offline_rebal_net *n, const coord_map *m, int g,
                         Cirrus__V1__DeleteItem *const *items, size_t n_items)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    if (!n_items)
        return CR_OK;
    del.items = (Cirrus__V1__DeleteItem **)items;
    del.n_items = n_items;
    req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    return write_all(n, m, g, &req, n_items);
}

/* One Reload to ep: map_json "" only asks. *settled: applied, and nothing older in flight. */
static cr_err reload_one(offline_rebal_net *n, const char *ep, const char *map_json,
                         int *settled)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__ReloadRequest rl = CIRRUS__V1__RELOAD_REQUEST__INIT;
    Cirrus__V1__Response *resp;
    cr_err rc;
    rl.map_json = (char *)map_json;
    req.op_case = CIRRUS__V1__REQUEST__OP_RELOAD;
    req.reload = &rl;
    if ((rc = call(n, ep, &req, CIRRUS__V1__RESPONSE__RESULT_RELOAD, &resp)))
        return rc;
    *settled = !resp->reload->pending && resp->reload->older_requests == 0;
    cirrus_response_free(resp);
    return CR_OK;
}

cr_err offline_rebal_reload(offline_rebal_net *n, const char *const *coordinators, size_t nc,
                            const char *map_json, uint32_t wait_ms)
{
    uint64_t until = cr_clock_mono_ms() + wait_ms;
    int settled;
    cr_err rc;
    for (size_t i = 0; i < nc; i++)
        if ((rc = reload_one(n, coordinators[i], map_json, &settled)))
            return cr_error_wrap(rc, "reload");
    for (size_t i = 0; i < nc; i++) {
        for (;;) {
            if ((rc = reload_one(n, coordinators[i], "", &settled)))
                return cr_error_wrap(rc, "reload");
            if (settled)
                break;
            if (cr_clock_mono_ms() >= until)
                return cr_error_set(CR_ERR_DEADLINE, "reload: %s still serves requests that "
                                                     "arrived under the previous map after "
                                                     "%u ms", coordinators[i], wait_ms);
            cr_clock_sleep_ms(RELOAD_POLL_MS);
        }
    }
    return CR_OK;
}
