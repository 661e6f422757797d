#include "gateway/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/validate.h"
#include "gateway/items_body.h"
#include "gateway/jobs_api.h"
#include "gateway/json.h"
#include "gateway/search_body.h"

#define CALL_TIMEOUT_MS 30000
#define CALL_SLICE_MS 200  /* a worker waiting for a reply checks for shutdown this often */

/* ---- answers ---------------------------------------------------------------------------- */

/* switch on int: GW_ERR_TOO_LARGE is no cr_err enumerator (limits.h) */
unsigned gw_http_status(cr_err code)
{
    switch ((int)code) {
    case CR_OK: return 200;
    case CR_ERR_INVALID:
    case CR_ERR_PROTO: return 400;
    case CR_NOTFOUND: return 404;
    case CR_STALE: return 409;
    case GW_ERR_TOO_LARGE: return 413;
    case GW_ERR_NOT_READY: return 409;
    case CR_ERR_OVERLOADED: return 429;
    case CR_ERR_NET:
    case CR_ERR_UNAVAILABLE: return 503;
    case CR_TIMEOUT:
    case CR_ERR_DEADLINE: return 504;
    case CR_ERR_UNSUPPORTED: return 501;
    default: return 500;
    }
}

const char *gw_error_name(cr_err code)
{
    switch ((int)code) {
    case CR_OK: return "ok";
    case CR_ERR_INVALID:
    case CR_ERR_PROTO: return "invalid_argument";
    case CR_NOTFOUND: return "not_found";
    case CR_STALE: return "version_conflict";
    case GW_ERR_TOO_LARGE: return "too_large";
    case GW_ERR_NOT_READY: return "not_ready";
    case CR_ERR_OVERLOADED: return "overloaded";
    case CR_ERR_NET:
    case CR_ERR_UNAVAILABLE: return "unavailable";
    case CR_TIMEOUT:
    case CR_ERR_DEADLINE: return "deadline_exceeded";
    case CR_ERR_UNSUPPORTED: return "unsupported";
    case CR_ERR_STORE: return "storage";
    case CR_ERR_INDEX: return "index";
    case CR_ERR_MODEL: return "model";
    case CR_ERR_IO: return "io";
    default: return "internal";
    }
}

json_t *gw_error_json(cr_err code, const char *msg)
{
    json_t *e = json_object(), *j = json_object();
    json_object_set_new(e, "code", json_string(gw_error_name(code)));
    json_object_set_new(e, "message", json_string(msg && *msg ? msg : cr_strerror(code)));
    json_object_set_new(j, "error", e);
    return j;
}

cr_err gw_json_depth_check(const char *s, size_t len, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return cr_error_set(CR_ERR_INVALID, "the body nests arrays and objects deeper "
                                    "than %d levels", max);
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return CR_OK;
}

/* Serializes j (consumed) as the answer. */
static void answer_json(gw_answer *a, unsigned status, json_t *j)
{
    a->out = cirrus_json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    a->out_len = a->out ? strlen(a->out) : 0;
    a->status = a->out ? status : 500;
    json_decref(j);
}

void gw_answer_error(gw_answer *a, cr_err code, const char *msg)
{
    answer_json(a, gw_http_status(code), gw_error_json(code, msg));
}

/* ---- calls through libcirrus ------------------------------------------------------------ */

void gw_caller_close(gw_caller *c)
{
    cirrus_client_close(&c->cl);
}

/* cirrus_client_call, in slices so that a shutdown never waits for a hung backend. */
static cr_err call_stoppable(const gw_caller *g, cirrus_client *cl, Cirrus__V1__Request *req,
                             Cirrus__V1__Response **resp)
{
    uint64_t id = 0, deadline = cr_clock_mono_ms() + CALL_TIMEOUT_MS;
    cr_err rc;
    req->deadline_ms = CALL_TIMEOUT_MS;
    rc = cirrus_client_send(cl, req, &id);
    while (!rc) {
        Cirrus__V1__Response *r = NULL;
        uint64_t now = cr_clock_mono_ms();
        if (atomic_load(g->stopping))
            return cr_error_set(CR_ERR_UNAVAILABLE, "the coordinator is shutting down");
        if (now >= deadline)
            return cr_error_set(CR_TIMEOUT, "no reply within %d ms", CALL_TIMEOUT_MS);
        rc = cirrus_client_recv(cl, deadline - now < CALL_SLICE_MS ? (uint32_t)(deadline - now)
                                                                    : CALL_SLICE_MS, &r);
        if (rc == CR_TIMEOUT) {
            rc = CR_OK;
        } else if (!rc && r->id == id) {
            *resp = r;
            return CR_OK;
        } else {
            cirrus_response_free(r); /* a late reply to an abandoned request */
        }
    }
    return rc;
}

/* One request on the worker's own client (opened on first use, reopened after a transport
 * failure). CR_OK only with the result `want` in *resp: a status without its result (a
 * backend that timed out: CR_TIMEOUT) is the caller's error, never a NULL to format. */
static cr_err call(gw_caller *g, Cirrus__V1__Request *req,
                   Cirrus__V1__Response__ResultCase want, Cirrus__V1__Response **resp)
{
    cr_err rc = CR_OK;
    *resp = NULL;
    if (!g->cl)
        rc = cirrus_client_open(&g->cl, g->endpoint, g->copts);
    if (!rc)
        rc = call_stoppable(g, g->cl, req, resp);
    if (rc) {
        if (rc == CR_TIMEOUT || rc == CR_ERR_NET)
            cirrus_client_close(&g->cl);
        return rc;
    }
    rc = cirrus_response_expect(*resp, want);
    if (rc) {
        cirrus_response_free(*resp);
        *resp = NULL;
    }
    return rc;
}

/* The body as a JSON object; NULL after answering 400. */
static json_t *body_object(const char *body, size_t len, gw_answer *a)
{
    json_error_t jerr;
    json_t *j;
    if (body && gw_json_depth_check(body, len, GW_JSON_DEPTH_MAX)) {
        gw_answer_error(a, CR_ERR_INVALID, cr_error_message());
        return NULL;
    }
    j = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!j) {
        gw_answer_error(a, CR_ERR_INVALID, body ? jerr.text : "empty body");
        return NULL;
    }
    if (!json_is_object(j)) {
        gw_answer_error(a, CR_ERR_INVALID, "the body must be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- POST /v1/search ------------------------------------------------------------------------ */

static void serve_search(gw_caller *g, const char *body, size_t len, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    json_t *j = body_object(body, len, a);
    gw_search s;
    cr_err rc;

    if (!j)
        return;
    rc = gw_search_parse(j, &s);
    if (!rc) {
        sr.query = &s.q;
        req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
        req.search = &sr;
        rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_SEARCH, &resp);
    }
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        answer_json(a, 200, cirrus_result_json(resp->search));
    cirrus_response_free(resp);
    gw_search_free(&s);
    json_decref(j);
}

/* ---- /v1/items/{id} ------------------------------------------------------------------------- */

static void serve_item_get(gw_caller *g, const char *id, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    char *ids[1] = {(char *)id};
    cr_err rc;
    get.ids = ids;
    get.n_ids = 1;
    get.include_vector = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_GET, &resp);
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else if (resp->get->n_items == 0)
        gw_answer_error(a, CR_NOTFOUND, "no such item");
    else
        answer_json(a, 200, cirrus_item_json(resp->get->items[0]));
    cirrus_response_free(resp);
}

static const char *item_uri(const Cirrus__V1__Item *it)
{
    for (size_t i = 0; i < it->n_attributes; i++) {
        const Cirrus__V1__Attribute *at = it->attributes[i];
        if (at->name && strcmp(at->name, "image_uri") == 0 && at->value &&
            at->value->value_case == CIRRUS__V1__ATTR_VALUE__VALUE_S && at->value->s[0])
            return at->value->s;
    }
    return NULL;
}

/* GET /v1/items/{id}/image: the image the shards kept (--keep-images) with its media type,
 * else a 302 to the item's image_uri, else 404. */
static void serve_item_image(gw_caller *g, const char *id, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    const Cirrus__V1__Item *it;
    char *ids[1] = {(char *)id};
    const char *uri;
    char msg[400];
    cr_err rc;
    get.ids = ids;
    get.n_ids = 1;
    get.include_image = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_GET, &resp);
    it = !rc && resp->get->n_items ? resp->get->items[0] : NULL;
    uri = it ? item_uri(it) : NULL;
    if (rc) {
        gw_answer_error(a, rc, cr_error_message());
    } else if (!it) {
        gw_answer_error(a, CR_NOTFOUND, "no such item");
    } else if (it->image.len) {
        const char *type = cr_image_type(it->image.data, it->image.len);
        if (!(a->out = malloc(it->image.len))) {
            gw_answer_error(a, CR_ERR_NOMEM, "out of memory");
        } else {
            memcpy(a->out, it->image.data, it->image.len);
            a->out_len = it->image.len;
            a->type = type ? type : "application/octet-stream";
            a->status = 200;
        }
    } else if (uri && !strpbrk(uri, "\r\n")) {
        json_t *o = json_object();
        json_object_set_new(o, "image_uri", json_string(uri));
        answer_json(a, 302, o);
        a->location = strdup(uri); /* out of memory: a 302 without Location, the body has it */
    } else {
        snprintf(msg, sizeof msg, "item '%.256s' has no stored image (its shard runs without "
                                  "--keep-images) and no image_uri", id);
        gw_answer_error(a, CR_NOTFOUND, msg);
    }
    cirrus_response_free(resp);
}

/* The outcome of a write's items, each with its version and status ("ok", "stale" or the
 * error's message). 200 when every item was written; otherwise the first failure's status
 * (or, when the only failures are stale items, 409 version_conflict) with {"error": ..}
 * beside the items: items are written independently (each to its own group), so the others
 * may have been written. */
static void answer_write(gw_answer *a, const Cirrus__V1__WriteResult *w)
{
    json_t *items = json_array(), *o = NULL;
    const Cirrus__V1__ItemStatus *failed = NULL, *stale = NULL;
    for (size_t i = 0; i < w->n_items; i++) {
        const Cirrus__V1__ItemStatus *st = w->items[i];
        cr_err code = st->status ? (cr_err)st->status->code : CR_OK;
        json_t *it = json_object();
        if (code != CR_OK && code != CR_STALE && !failed)
            failed = st;
        if (code == CR_STALE && !stale)
            stale = st;
        json_object_set_new(it, "id", json_string(st->id));
        json_object_set_new(it, "version", cirrus_json_u64(st->version));
        json_object_set_new(it, "status", json_string(code == CR_OK      ? "ok"
                                                      : code == CR_STALE ? "stale"
                                                                         : st->status->message));
        json_array_append_new(items, it);
    }
    if (failed || stale) {
        char msg[512];
        cr_err code = failed ? (cr_err)failed->status->code : CR_STALE;
        if (failed)
            snprintf(msg, sizeof msg, "item '%s': %s", failed->id, failed->status->message);
        else
            snprintf(msg, sizeof msg, "item '%s': the stored item's version is as new or newer; "
                     "nothing was written for it", stale->id);
        o = gw_error_json(code, msg);
        json_object_set_new(o, "items", items);
        answer_json(a, gw_http_status(code), o);
        return;
    }
    o = json_object();
    json_object_set_new(o, "items", items);
    answer_json(a, 200, o);
}

static void serve_item_delete(gw_caller *g, const char *id, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__DeleteRequest del = CIRRUS__V1__DELETE_REQUEST__INIT;
    Cirrus__V1__DeleteItem di = CIRRUS__V1__DELETE_ITEM__INIT;
    Cirrus__V1__DeleteItem *dis[1] = {&di};
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;
    di.id = (char *)id;
    del.items = dis;
    del.n_items = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_DELETE, &resp);
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        answer_write(a, resp->delete_);
    cirrus_response_free(resp);
}

/* ---- POST /v1/items ------------------------------------------------------------------------- */

static void serve_items_upsert(gw_caller *g, const char *body, size_t len, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__UpsertRequest up = CIRRUS__V1__UPSERT_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    Cirrus__V1__Item **items = NULL;
    size_t n = 0;
    json_t *j = body_object(body, len, a);
    cr_err rc;
    if (!j)
        return;
    rc = gw_items_parse(j, &items, &n);
    if (!rc) {
        up.items = items;
        up.n_items = n;
        req.op_case = CIRRUS__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
        rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_UPSERT, &resp);
    }
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        answer_write(a, resp->upsert);
    cirrus_response_free(resp);
    gw_items_free(items, n);
    json_decref(j);
}

/* ---- GET /v1/stats ---------------------------------------------------------------------------- */

static void serve_stats(gw_caller *g, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__StatsRequest st = CIRRUS__V1__STATS_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_STATS;
    req.stats = &st;
    rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_STATS, &resp);
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        answer_json(a, 200, cirrus_stats_json(resp->stats));
    cirrus_response_free(resp);
}

/* ---- GET /v1/schema --------------------------------------------------------------------------- */

static void serve_schema(gw_caller *g, gw_answer *a)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SchemaRequest sq = CIRRUS__V1__SCHEMA_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    cr_err rc;
    req.op_case = CIRRUS__V1__REQUEST__OP_SCHEMA;
    req.schema = &sq;
    rc = call(g, &req, CIRRUS__V1__RESPONSE__RESULT_SCHEMA, &resp);
    if (rc)
        gw_answer_error(a, rc, cr_error_message());
    else
        answer_json(a, 200, cirrus_schema_json(resp->schema));
    cirrus_response_free(resp);
}

/* ---- shared with jobs_api.c ------------------------------------------------------------ */

void gw_answer_json(gw_answer *a, unsigned status, json_t *j)
{
    answer_json(a, status, j);
}

json_t *gw_body_object(const char *body, size_t len, gw_answer *a)
{
    return body_object(body, len, a);
}

cr_err gw_api_call(gw_caller *g, Cirrus__V1__Request *req, Cirrus__V1__Response__ResultCase want,
                   Cirrus__V1__Response **resp)
{
    return call(g, req, want, resp);
}

/* ---- routing ------------------------------------------------------------------------------- */

cr_err gw_api_match(const char *method, const char *url, gw_op *op, char **id)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    int del = strcmp(method, "DELETE") == 0;
    *op = GW_OP_NONE;
    *id = NULL;
    if (strcmp(url, "/v1/search") == 0) {
        *op = post ? GW_OP_SEARCH : GW_OP_NONE;
    } else if (strcmp(url, "/v1/items") == 0) {
        *op = post ? GW_OP_ITEMS_UPSERT : GW_OP_NONE;
    } else if (strcmp(url, "/v1/stats") == 0) {
        *op = get ? GW_OP_STATS : GW_OP_NONE;
    } else if (strcmp(url, "/v1/schema") == 0) {
        *op = get ? GW_OP_SCHEMA : GW_OP_NONE;
    } else if (strcmp(url, "/v1/generate") == 0 || strncmp(url, "/v1/jobs", 8) == 0) {
        return gw_jobs_match(method, url, op, id);
    } else if (strncmp(url, "/v1/items/", 10) == 0 && url[10] && (get || del)) {
        size_t n = strlen(url + 10);
        /* GET .../{id}/image is the item's image (an id ending in "/image" cannot be read by
         * GET; its JSON comes with the search hits) */
        int image = get && n > 6 && strcmp(url + 10 + n - 6, "/image") == 0;
        if (image)
            n -= 6;
        if (!(*id = strndup(url + 10, n)))
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        if (cr_validate_id(*id)) {
            free(*id);
            *id = NULL;
            return CR_ERR_INVALID;
        }
        *op = image ? GW_OP_ITEM_IMAGE : get ? GW_OP_ITEM_GET : GW_OP_ITEM_DELETE;
    }
    return CR_OK;
}

void gw_api_serve(gw_caller *c, gw_op op, const char *id, const char *body, size_t len,
                  gw_answer *a)
{
    switch (op) {
    case GW_OP_SEARCH: serve_search(c, body, len, a); break;
    case GW_OP_ITEM_GET: serve_item_get(c, id, a); break;
    case GW_OP_ITEM_IMAGE: serve_item_image(c, id, a); break;
    case GW_OP_ITEM_DELETE: serve_item_delete(c, id, a); break;
    case GW_OP_ITEMS_UPSERT: serve_items_upsert(c, body, len, a); break;
    case GW_OP_STATS: serve_stats(c, a); break;
    case GW_OP_SCHEMA: serve_schema(c, a); break;
    case GW_OP_GENERATE:
    case GW_OP_JOB_GET:
    case GW_OP_JOB_IMAGE:
    case GW_OP_JOB_CANCEL:
    case GW_OP_JOBS_LIST: gw_jobs_serve(c, op, id, body, len, a); break;
    default: gw_answer_error(a, CR_NOTFOUND, "no such endpoint"); break;
    }
}
