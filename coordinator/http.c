#include "coordinator/http.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>

#include "client/client.h"
#include "client/json.h"
#include "common/config.h"
#include "common/filter_parse.h"
#include "common/log.h"
#include "coordinator/handlers.h"

#define BODY_MAX (48u << 20) /* a base64 image and then some */
#define POOL 8
#define CALL_TIMEOUT_MS 30000

struct coord_http {
    struct MHD_Daemon *d;
    coord_app *app;
    char endpoint[COORD_MAX_ENDPOINT];
    pthread_mutex_t mu;
    cirrus_client *pool[POOL];
    int n_pool;
};

typedef struct body {
    char *p;
    size_t len;
    int too_big;
} body;

/* ---- responses --------------------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type,
                                 const char *text, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ok;
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = cirrus_json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    enum MHD_Result ok = send_text(c, status, "application/json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    json_decref(j);
    return ok;
}

static unsigned http_status(cr_err code)
{
    switch (code) {
    case CR_ERR_INVALID:
    case CR_ERR_PROTO: return 400;
    case CR_NOTFOUND: return 404;
    case CR_ERR_OVERLOADED:
    case CR_ERR_UNAVAILABLE: return 503;
    case CR_TIMEOUT:
    case CR_ERR_DEADLINE: return 504;
    case CR_ERR_UNSUPPORTED: return 501;
    default: return 500;
    }
}

static enum MHD_Result send_error(struct MHD_Connection *c, cr_err code, const char *msg)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(msg && *msg ? msg : cr_strerror(code)));
    json_object_set_new(j, "code", json_integer(code));
    return send_json(c, http_status(code), j);
}

/* ---- calls through libcirrus ------------------------------------------------------------ */

static cr_err call(coord_http *h, Cirrus__V1__Request *req, Cirrus__V1__Response **resp)
{
    cirrus_client *cl = NULL;
    cr_err rc;
    pthread_mutex_lock(&h->mu);
    if (h->n_pool)
        cl = h->pool[--h->n_pool];
    pthread_mutex_unlock(&h->mu);
    if (!cl && (rc = cirrus_client_open(&cl, h->endpoint, NULL)))
        return rc;
    rc = cirrus_client_call(cl, req, CALL_TIMEOUT_MS, resp);
    if (!rc && (rc = cirrus_response_error(*resp))) {
        cirrus_response_free(*resp);
        *resp = NULL;
    }
    if (rc == CR_TIMEOUT || rc == CR_ERR_NET) {
        cirrus_client_close(&cl); /* a reply may still come: never reuse this socket */
        return rc;
    }
    pthread_mutex_lock(&h->mu);
    if (h->n_pool < POOL)
        h->pool[h->n_pool++] = cl, cl = NULL;
    pthread_mutex_unlock(&h->mu);
    cirrus_client_close(&cl);
    return rc;
}

/* ---- /v1/search ---------------------------------------------------------------------------- */

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static cr_err b64_decode(const char *s, ProtobufCBinaryData *out)
{
    size_t n = strlen(s), o = 0;
    uint32_t acc = 0;
    int bits = 0;
    out->data = malloc(n * 3 / 4 + 3);
    if (!out->data)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int v;
        if (s[i] == '=' || s[i] == '\n' || s[i] == '\r')
            continue;
        if ((v = b64val((unsigned char)s[i])) < 0) {
            free(out->data);
            out->data = NULL;
            return cr_error_set(CR_ERR_INVALID, "\"image\" is not base64");
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->len = o;
    return CR_OK;
}

static int method_of(const char *s, Cirrus__V1__ComposeMethod *m)
{
    static const char *const names[] = {"default", "searle", "combiner", "sum", "text", "image"};
    for (int i = 0; i < 6; i++)
        if (strcmp(s, names[i]) == 0) {
            *m = (Cirrus__V1__ComposeMethod)i;
            return 0;
        }
    return -1;
}

typedef struct search_req {
    Cirrus__V1__Query q;
    Cirrus__V1__Vector v;
    Cirrus__V1__Composed composed;
    Cirrus__V1__Reference ref;
    Cirrus__V1__SearchParams params;
    ProtobufCBinaryData image;
    Cirrus__V1__Filter *filter;
} search_req;

static void search_req_free(search_req *s)
{
    free(s->v.values);
    free(s->image.data);
    if (s->filter)
        cirrus__v1__filter__free_unpacked(s->filter, NULL);
}

static cr_err uint_field(json_t *j, const char *key, uint32_t max, uint32_t *out)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return CR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return cr_error_set(CR_ERR_INVALID, "\"%s\" must be an integer in 0..%u", key, max);
    *out = (uint32_t)json_integer_value(v);
    return CR_OK;
}

static cr_err query_kind(json_t *j, search_req *s)
{
    json_t *vec = json_object_get(j, "vector");
    const char *text = json_string_value(json_object_get(j, "text"));
    const char *img = json_string_value(json_object_get(j, "image"));
    const char *item = json_string_value(json_object_get(j, "item_id"));
    const char *ref = json_string_value(json_object_get(j, "ref_id"));
    json_t *caption = json_object_get(j, "caption");
    cr_err rc;
    if (img && (rc = b64_decode(img, &s->image)))
        return rc;
    if (caption || ref) {
        const char *m = json_string_value(json_object_get(j, "method"));
        if (ref) {
            s->ref.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
            s->ref.item_id = (char *)ref;
        } else if (img) {
            s->ref.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
            s->ref.image = s->image;
        } else {
            return cr_error_set(CR_ERR_INVALID, "a composed query needs \"ref_id\" or \"image\"");
        }
        if (m && method_of(m, &s->composed.method))
            return cr_error_set(CR_ERR_INVALID, "unknown \"method\" '%s'", m);
        s->composed.reference = &s->ref;
        s->composed.caption = (char *)(json_string_value(caption) ? json_string_value(caption) : "");
        s->composed.caption2 = (char *)json_string_value(json_object_get(j, "caption2"));
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_COMPOSED;
        s->q.composed = &s->composed;
        return CR_OK;
    }
    if ((vec != NULL) + (text != NULL) + (img != NULL) + (item != NULL) != 1)
        return cr_error_set(CR_ERR_INVALID, "give exactly one of \"vector\", \"text\", \"image\", "
                                            "\"item_id\", \"ref_id\"");
    if (vec) {
        size_t i;
        json_t *x;
        if (!json_is_array(vec) || !json_array_size(vec))
            return cr_error_set(CR_ERR_INVALID, "\"vector\" must be a non-empty array of numbers");
        s->v.values = malloc(json_array_size(vec) * sizeof(float));
        if (!s->v.values)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        json_array_foreach(vec, i, x)
        {
            if (!json_is_number(x))
                return cr_error_set(CR_ERR_INVALID, "\"vector\"[%zu] is not a number", i);
            s->v.values[i] = (float)json_number_value(x);
        }
        s->v.n_values = json_array_size(vec);
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
        s->q.vector = &s->v;
    } else if (text) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_TEXT;
        s->q.text = (char *)text;
    } else if (img) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_IMAGE;
        s->q.image = s->image;
    } else {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_ITEM_ID;
        s->q.item_id = (char *)item;
    }
    return CR_OK;
}

static cr_err parse_search(json_t *j, search_req *s)
{
    const char *filter = json_string_value(json_object_get(j, "filter"));
    json_t *meta = json_object_get(j, "include_metadata");
    cr_err rc;
    memset(s, 0, sizeof *s);
    cirrus__v1__query__init(&s->q);
    cirrus__v1__vector__init(&s->v);
    cirrus__v1__composed__init(&s->composed);
    cirrus__v1__reference__init(&s->ref);
    cirrus__v1__search_params__init(&s->params);
    if (!json_is_object(j))
        return cr_error_set(CR_ERR_INVALID, "the body must be a JSON object");
    rc = query_kind(j, s);
    s->q.k = 10;
    if (!rc)
        rc = uint_field(j, "k", 1000000, &s->q.k);
    if (!rc)
        rc = uint_field(j, "offset", 1000000, &s->q.offset);
    if (!rc)
        rc = uint_field(j, "group_size", 1000000, &s->q.group_size);
    if (!rc)
        rc = uint_field(j, "nprobe", 1000000, &s->params.nprobe);
    if (!rc)
        rc = uint_field(j, "ef", 1000000, &s->params.ef_search);
    if (!rc && filter)
        rc = cr_filter_parse(filter, &s->filter);
    s->params.exact = json_is_true(json_object_get(j, "exact"));
    s->q.group_by = (char *)json_string_value(json_object_get(j, "group_by"));
    s->q.include_metadata = meta ? json_is_true(meta) : 1;
    s->q.filter = s->filter;
    s->q.params = &s->params;
    return rc;
}

static enum MHD_Result do_search(coord_http *h, struct MHD_Connection *c, const body *b)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    json_error_t jerr;
    json_t *j = b->p ? json_loadb(b->p, b->len, 0, &jerr) : NULL;
    search_req s;
    enum MHD_Result ok;
    cr_err rc;

    if (!j)
        return send_error(c, CR_ERR_INVALID, b->p ? jerr.text : "empty body");
    rc = parse_search(j, &s);
    if (!rc) {
        sr.query = &s.q;
        req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
        req.search = &sr;
        rc = call(h, &req, &resp);
    }
    if (rc)
        ok = send_error(c, rc, cr_error_message());
    else
        ok = send_json(c, 200, cirrus_result_json(resp->search));
    cirrus_response_free(resp);
    search_req_free(&s);
    json_decref(j);
    return ok;
}

static enum MHD_Result do_item(coord_http *h, struct MHD_Connection *c, const char *id)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    char *ids[1] = {(char *)id};
    enum MHD_Result ok;
    cr_err rc;
    get.ids = ids;
    get.n_ids = 1;
    get.include_vector = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    rc = call(h, &req, &resp);
    if (rc)
        ok = send_error(c, rc, cr_error_message());
    else if (!resp->get || resp->get->n_items == 0)
        ok = send_error(c, CR_NOTFOUND, "no such item");
    else
        ok = send_json(c, 200, cirrus_item_json(resp->get->items[0]));
    cirrus_response_free(resp);
    return ok;
}

/* ---- operations endpoints ------------------------------------------------------------------ */

static int live_of(void *ctx, int g, int r)
{
    return coord_io_replica_live(ctx, g, r);
}

static int ready(coord_http *h)
{
    const coord_map *m = coord_io_map(h->app->io);
    for (int g = 0; g < m->n_groups; g++) {
        int any = 0;
        for (int r = 0; r < m->n_replicas[g]; r++)
            any |= coord_io_replica_live(h->app->io, g, r);
        if (!any)
            return 0;
    }
    return 1;
}

static enum MHD_Result do_metrics(coord_http *h, struct MHD_Connection *c)
{
    char *text = NULL;
    size_t len = 0;
    enum MHD_Result ok;
    if (coord_metrics_render(&h->app->metrics, coord_io_map(h->app->io), live_of, h->app->io,
                             &text, &len))
        return send_error(c, CR_ERR_NOMEM, "out of memory");
    ok = send_text(c, 200, "text/plain; version=0.0.4", text, len);
    free(text);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    coord_http *h = cls;
    body *b = *con_cls;
    (void)version;
    if (!b) { /* first call: headers only */
        if (!(b = calloc(1, sizeof *b)))
            return MHD_NO;
        *con_cls = b;
        return MHD_YES;
    }
    if (*upload_size) {
        if (b->len + *upload_size > BODY_MAX) {
            b->too_big = 1;
        } else if (!b->too_big) {
            char *g = realloc(b->p, b->len + *upload_size + 1);
            if (!g)
                return MHD_NO;
            b->p = g;
            memcpy(b->p + b->len, upload, *upload_size);
            b->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&h->app->metrics.http_requests, 1);
    if (b->too_big)
        return send_error(c, CR_ERR_INVALID, "request body too large");
    if (strcmp(method, "GET") == 0 && strcmp(url, "/healthz") == 0)
        return send_text(c, 200, "text/plain", "ok\n", 3);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/readyz") == 0)
        return ready(h) ? send_text(c, 200, "text/plain", "ready\n", 6)
                        : send_text(c, 503, "text/plain", "not ready\n", 10);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0)
        return do_metrics(h, c);
    if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/search") == 0)
        return do_search(h, c, b);
    if (strcmp(method, "GET") == 0 && strncmp(url, "/v1/items/", 10) == 0 && url[10])
        return do_item(h, c, url + 10);
    return send_error(c, CR_NOTFOUND, "no such endpoint");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    body *b = *con_cls;
    (void)cls, (void)c, (void)toe;
    if (b) {
        free(b->p);
        free(b);
        *con_cls = NULL;
    }
}

cr_err coord_http_start(coord_http **out, const char *bind, const char *endpoint,
                        struct coord_app *app)
{
    coord_http *h = calloc(1, sizeof *h);
    struct sockaddr_in sa;
    const char *colon = strrchr(bind, ':');
    char host[64] = "0.0.0.0";
    long long port;

    if (!h)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    if (!colon || cr_parse_ll(colon + 1, 1, 65535, &port)) {
        free(h);
        return cr_error_set(CR_ERR_INVALID, "--http '%s' must be HOST:PORT or :PORT", bind);
    }
    if (colon != bind)
        snprintf(host, sizeof host, "%.*s", (int)(colon - bind), bind);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        free(h);
        return cr_error_set(CR_ERR_INVALID, "--http host '%s' is not an IPv4 address", host);
    }
    h->app = app;
    snprintf(h->endpoint, sizeof h->endpoint, "%s", endpoint);
    pthread_mutex_init(&h->mu, NULL);
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
                            MHD_OPTION_END);
    if (!h->d) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        return cr_error_set(CR_ERR_NET, "cannot listen for HTTP on %s", bind);
    }
    CR_INFO("coordinator", "HTTP API on %s", bind);
    *out = h;
    return CR_OK;
}

void coord_http_stop(coord_http **pp)
{
    coord_http *h = pp ? *pp : NULL;
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    for (int i = 0; i < h->n_pool; i++)
        cirrus_client_close(&h->pool[i]);
    pthread_mutex_destroy(&h->mu);
    free(h);
    *pp = NULL;
}
