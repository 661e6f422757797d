#include "gateway/http.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "client/client.h"
#include "gateway/json.h"
#include "common/clock.h"
#include "common/config.h"
#include "shard/filter_parse.h"
#include "common/log.h"
#include "common/validate.h"

/* The daemon runs one event loop (epoll) that only reads requests and writes responses, and
 * answers /healthz, /readyz and /metrics itself; API requests are suspended and handed to
 * WORKERS threads that call the coordinator. So a slow client costs a socket, not a thread,
 * and a hung backend holds workers, never the event loop or the health endpoints. */
#define BODY_MAX (48u << 20) /* a base64 image and then some */
#define WORKERS 8            /* API requests served at once */
#define QUEUE_MAX 64         /* API requests waiting for a worker; past it, 503 */
#define CALL_TIMEOUT_MS 30000
#define CALL_SLICE_MS 200      /* a worker waiting for a reply checks for shutdown this often */
#define CONN_LIMIT 512u        /* connections in all */
#define PER_IP_LIMIT 128u      /* connections from one client address */
#define IDLE_TIMEOUT_S 15u     /* no byte moved for this long: closed (libmicrohttpd) */
#define HEADER_TIMEOUT_MS 10000 /* request line and headers, from accept or the last answer */
#define BODY_TIMEOUT_MS 30000   /* the body, once the headers are in */
#define REAP_MS 250             /* how often the receive deadlines are checked */
#define NUM_MAX 1000000         /* k, offset, group_size, nprobe, ef */
#define GW_MAX_ENDPOINT 256      /* the coordinator endpoint it calls */

/* One TCP connection: its receive deadline (libmicrohttpd's own timeout is idle-only, so a
 * client trickling a byte at a time would hold a connection forever). */
typedef struct conn_rec {
    struct conn_rec *prev, *next;
    int fd;
    uint64_t deadline_ms; /* 0: not receiving (a request is being served) */
    int cut;
} conn_rec;

typedef enum req_state { REQ_RECEIVING, REQ_QUEUED, REQ_DONE } req_state;

/* One request (libmicrohttpd's *con_cls). While REQ_QUEUED the connection is suspended and
 * a worker owns the request; it fills the answer, sets REQ_DONE and resumes the connection. */
typedef struct http_req {
    struct http_req *next; /* queue link */
    struct MHD_Connection *c;
    char *body;
    size_t len;
    int too_big;
    int is_search;         /* else GET /v1/items/{id} */
    char *id;
    atomic_int state;      /* req_state; REQ_DONE is stored with release after the answer */
    unsigned status;       /* the answer */
    char *out;
    size_t out_len;
} http_req;

struct gw_http {
    struct MHD_Daemon *d;
    gw_hooks hooks;
    _Atomic uint64_t requests; /* cirrus_http_requests_total */
    char endpoint[GW_MAX_ENDPOINT];
    atomic_int stopping;
    pthread_mutex_t qmu; /* the queue; taken before libmicrohttpd's locks, never after */
    pthread_cond_t qcv;
    http_req *qhead, *qtail;
    int qn;
    pthread_t workers[WORKERS];
    int n_workers;
    pthread_mutex_t cmu; /* the connection list; libmicrohttpd may hold its locks around it */
    pthread_cond_t ccv;
    conn_rec *conns;
    pthread_t reaper;
    int reaper_started;
};

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

static unsigned http_status(cr_err code)
{
    switch (code) {
    case CR_OK: return 200;
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

/* {"error": {"code": n, "message": "..."}}; new reference. */
static json_t *error_json(cr_err code, const char *msg)
{
    json_t *e = json_object(), *j = json_object();
    json_object_set_new(e, "code", json_integer(code));
    json_object_set_new(e, "message", json_string(msg && *msg ? msg : cr_strerror(code)));
    json_object_set_new(j, "error", e);
    return j;
}

/* Serializes j (consumed) as r's answer; a worker calls it. */
static void answer_json(http_req *r, unsigned status, json_t *j)
{
    r->out = cirrus_json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    r->out_len = r->out ? strlen(r->out) : 0;
    r->status = r->out ? status : 500;
    json_decref(j);
}

static void answer_error(http_req *r, cr_err code, const char *msg)
{
    answer_json(r, http_status(code), error_json(code, msg));
}

static enum MHD_Result send_error(struct MHD_Connection *c, cr_err code, const char *msg)
{
    json_t *j = error_json(code, msg);
    char *s = cirrus_json_dumps(j, JSON_COMPACT);
    enum MHD_Result ok = send_text(c, http_status(code), "application/json", s ? s : "{}",
                                   s ? strlen(s) : 2);
    free(s);
    json_decref(j);
    return ok;
}

/* ---- calls through libcirrus ------------------------------------------------------------ */

/* cirrus_client_call, in slices so that a shutdown never waits for a hung backend. */
static cr_err call_stoppable(gw_http *h, cirrus_client *cl, Cirrus__V1__Request *req,
                             Cirrus__V1__Response **resp)
{
    uint64_t id = 0, deadline = cr_clock_mono_ms() + CALL_TIMEOUT_MS;
    cr_err rc;
    req->deadline_ms = CALL_TIMEOUT_MS;
    rc = cirrus_client_send(cl, req, &id);
    while (!rc) {
        Cirrus__V1__Response *r = NULL;
        uint64_t now = cr_clock_mono_ms();
        if (atomic_load(&h->stopping))
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
static cr_err call(gw_http *h, cirrus_client **cl, Cirrus__V1__Request *req,
                   Cirrus__V1__Response__ResultCase want, Cirrus__V1__Response **resp)
{
    cr_err rc = CR_OK;
    *resp = NULL;
    if (!*cl)
        rc = cirrus_client_open(cl, h->endpoint, NULL);
    if (!rc)
        rc = call_stoppable(h, *cl, req, resp);
    if (rc) {
        if (rc == CR_TIMEOUT || rc == CR_ERR_NET)
            cirrus_client_close(cl);
        return rc;
    }
    rc = cirrus_response_expect(*resp, want);
    if (rc) {
        cirrus_response_free(*resp);
        *resp = NULL;
    }
    return rc;
}

/* ---- /v1/search: the body, checked field by field ------------------------------------------ */

typedef enum field_type { F_STRING, F_NUM, F_BOOL, F_VECTOR } field_type;

static const struct {
    const char *name;
    field_type type;
} search_fields[] = {
    {"vector", F_VECTOR},  {"text", F_STRING},    {"image", F_STRING},    {"item_id", F_STRING},
    {"ref_id", F_STRING},  {"caption", F_STRING}, {"caption2", F_STRING}, {"method", F_STRING},
    {"k", F_NUM},          {"offset", F_NUM},     {"group_by", F_STRING}, {"group_size", F_NUM},
    {"nprobe", F_NUM},     {"ef", F_NUM},         {"exact", F_BOOL},
    {"include_metadata", F_BOOL},                 {"filter", F_STRING},
};

/* Every key known and of its type (null is no value of any type): fail closed, since a
 * misspelt or mistyped "filter" silently ignored would return unfiltered results. */
static cr_err check_fields(json_t *j)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        size_t i, n = sizeof search_fields / sizeof search_fields[0];
        for (i = 0; i < n && strcmp(key, search_fields[i].name) != 0; i++)
            ;
        if (i == n)
            return cr_error_set(CR_ERR_INVALID, "%.64s: unknown field", key);
        switch (search_fields[i].type) {
        case F_STRING:
            if (!json_is_string(v))
                return cr_error_set(CR_ERR_INVALID, "%s: expected a string", key);
            break;
        case F_NUM:
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > NUM_MAX)
                return cr_error_set(CR_ERR_INVALID, "%s: expected an integer in 0..%d", key,
                                    NUM_MAX);
            break;
        case F_BOOL:
            if (!json_is_boolean(v))
                return cr_error_set(CR_ERR_INVALID, "%s: expected true or false", key);
            break;
        case F_VECTOR:
            if (!json_is_array(v) || !json_array_size(v))
                return cr_error_set(CR_ERR_INVALID, "%s: expected a non-empty array of numbers",
                                    key);
            break;
        }
    }
    return CR_OK;
}

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
            return cr_error_set(CR_ERR_INVALID, "image: not base64");
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

static const char *str_of(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* The first of `keys` present in j, or NULL. */
static const char *first_present(json_t *j, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (json_object_get(j, keys[i]))
            return keys[i];
    return NULL;
}

static cr_err composed_kind(json_t *j, search_req *s)
{
    static const char *const plain[] = {"vector", "text", "item_id"};
    const char *ref = str_of(j, "ref_id"), *m = str_of(j, "method"), *bad;
    if ((bad = first_present(j, plain, 3)))
        return cr_error_set(CR_ERR_INVALID, "%s: not allowed in a composed query (with "
                                            "\"caption\" or \"ref_id\")", bad);
    if (ref && s->image.data)
        return cr_error_set(CR_ERR_INVALID, "image: a composed query takes \"ref_id\" or "
                                            "\"image\" as its reference, not both");
    if (ref) {
        s->ref.ref_case = CIRRUS__V1__REFERENCE__REF_ITEM_ID;
        s->ref.item_id = (char *)ref;
    } else if (s->image.data) {
        s->ref.ref_case = CIRRUS__V1__REFERENCE__REF_IMAGE;
        s->ref.image = s->image;
    } else {
        return cr_error_set(CR_ERR_INVALID, "caption: a composed query needs \"ref_id\" or "
                                            "\"image\"");
    }
    if (m && method_of(m, &s->composed.method))
        return cr_error_set(CR_ERR_INVALID, "method: unknown method '%.32s'", m);
    s->composed.reference = &s->ref;
    s->composed.caption = (char *)(str_of(j, "caption") ? str_of(j, "caption") : "");
    s->composed.caption2 = (char *)str_of(j, "caption2");
    s->q.kind_case = CIRRUS__V1__QUERY__KIND_COMPOSED;
    s->q.composed = &s->composed;
    return CR_OK;
}

static cr_err plain_kind(json_t *j, search_req *s)
{
    static const char *const composed_only[] = {"caption2", "method"};
    json_t *vec = json_object_get(j, "vector"), *x;
    const char *text = str_of(j, "text"), *item = str_of(j, "item_id"), *bad;
    size_t i;
    if ((bad = first_present(j, composed_only, 2)))
        return cr_error_set(CR_ERR_INVALID, "%s: only with \"caption\" or \"ref_id\"", bad);
    if ((vec != NULL) + (text != NULL) + (s->image.data != NULL) + (item != NULL) != 1)
        return cr_error_set(CR_ERR_INVALID, "give exactly one of \"vector\", \"text\", \"image\", "
                                            "\"item_id\", \"ref_id\"");
    if (text) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_TEXT;
        s->q.text = (char *)text;
    } else if (s->image.data) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_IMAGE;
        s->q.image = s->image;
    } else if (item) {
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_ITEM_ID;
        s->q.item_id = (char *)item;
    } else {
        s->v.values = malloc(json_array_size(vec) * sizeof(float));
        if (!s->v.values)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        json_array_foreach(vec, i, x)
        {
            if (!json_is_number(x))
                return cr_error_set(CR_ERR_INVALID, "vector[%zu]: expected a number", i);
            s->v.values[i] = (float)json_number_value(x);
        }
        s->v.n_values = json_array_size(vec);
        s->q.kind_case = CIRRUS__V1__QUERY__KIND_VECTOR;
        s->q.vector = &s->v;
    }
    return CR_OK;
}

static uint32_t num_of(json_t *j, const char *key, uint32_t dflt)
{
    json_t *v = json_object_get(j, key);
    return v ? (uint32_t)json_integer_value(v) : dflt; /* range checked by check_fields */
}

/* j's strings are borrowed by s: keep j alive while s is used. */
static cr_err parse_search(json_t *j, search_req *s)
{
    const char *filter = str_of(j, "filter"), *img = str_of(j, "image");
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
    if ((rc = check_fields(j)))
        return rc;
    if (img && (rc = b64_decode(img, &s->image)))
        return rc;
    rc = json_object_get(j, "caption") || json_object_get(j, "ref_id") ? composed_kind(j, s)
                                                                        : plain_kind(j, s);
    if (rc)
        return rc;
    if (filter && (rc = cr_filter_parse(filter, &s->filter)))
        return rc; /* its message starts "filter: " */
    s->q.k = num_of(j, "k", 10);
    s->q.offset = num_of(j, "offset", 0);
    s->q.group_size = num_of(j, "group_size", 0);
    s->params.nprobe = num_of(j, "nprobe", 0);
    s->params.ef_search = num_of(j, "ef", 0);
    s->params.exact = json_is_true(json_object_get(j, "exact"));
    s->q.group_by = (char *)str_of(j, "group_by");
    s->q.include_metadata = meta ? json_is_true(meta) : 1;
    s->q.filter = s->filter;
    s->q.params = &s->params;
    return CR_OK;
}

static void job_search(gw_http *h, cirrus_client **cl, http_req *r)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__SearchRequest sr = CIRRUS__V1__SEARCH_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    json_error_t jerr;
    json_t *j = r->body ? json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    search_req s;
    cr_err rc;

    if (!j) {
        answer_error(r, CR_ERR_INVALID, r->body ? jerr.text : "empty body");
        return;
    }
    rc = parse_search(j, &s);
    if (!rc) {
        sr.query = &s.q;
        req.op_case = CIRRUS__V1__REQUEST__OP_SEARCH;
        req.search = &sr;
        rc = call(h, cl, &req, CIRRUS__V1__RESPONSE__RESULT_SEARCH, &resp);
    }
    if (rc)
        answer_error(r, rc, cr_error_message());
    else
        answer_json(r, 200, cirrus_result_json(resp->search));
    cirrus_response_free(resp);
    search_req_free(&s);
    json_decref(j);
}

/* ---- /v1/items/{id} ------------------------------------------------------------------------ */

static void job_item(gw_http *h, cirrus_client **cl, http_req *r)
{
    Cirrus__V1__Request req = CIRRUS__V1__REQUEST__INIT;
    Cirrus__V1__GetRequest get = CIRRUS__V1__GET_REQUEST__INIT;
    Cirrus__V1__Response *resp = NULL;
    char *ids[1] = {r->id};
    cr_err rc;
    get.ids = ids;
    get.n_ids = 1;
    get.include_vector = 1;
    req.op_case = CIRRUS__V1__REQUEST__OP_GET;
    req.get = &get;
    rc = call(h, cl, &req, CIRRUS__V1__RESPONSE__RESULT_GET, &resp);
    if (rc)
        answer_error(r, rc, cr_error_message());
    else if (resp->get->n_items == 0)
        answer_error(r, CR_NOTFOUND, "no such item");
    else
        answer_json(r, 200, cirrus_item_json(resp->get->items[0]));
    cirrus_response_free(resp);
}

/* libmicrohttpd's URL decoding, except that %00 becomes 0xFF: a NUL would silently cut the
 * path ("/v1/items/a%00b" read as item "a"); 0xFF is invalid UTF-8, so the id is refused. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    const char *p = s;
    (void)cls, (void)c;
    while (*p) {
        int hi = p[0] == '%' ? hexval(p[1]) : -1, lo = hi >= 0 ? hexval(p[2]) : -1;
        if (lo >= 0) {
            *w++ = (hi | lo) ? (char)(hi << 4 | lo) : (char)0xFF;
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- workers -------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    gw_http *h = arg;
    cirrus_client *cl = NULL;
    for (;;) {
        http_req *r;
        pthread_mutex_lock(&h->qmu);
        while (!h->qhead && !atomic_load(&h->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&h->qcv, &h->qmu, &ts);
        }
        r = h->qhead;
        if (r) {
            h->qhead = r->next;
            if (!h->qhead)
                h->qtail = NULL;
            h->qn--;
        }
        pthread_mutex_unlock(&h->qmu);
        if (!r)
            break; /* stopping, and the queue is empty */
        if (atomic_load(&h->stopping))
            answer_error(r, CR_ERR_UNAVAILABLE, "the coordinator is shutting down");
        else if (r->is_search)
            job_search(h, &cl, r);
        else
            job_item(h, &cl, r);
        atomic_store_explicit(&r->state, REQ_DONE, memory_order_release);
        MHD_resume_connection(r->c);
    }
    cirrus_client_close(&cl);
    return NULL;
}

/* Queues r for a worker and suspends its connection, or answers 503 (queue full, stopping). */
static enum MHD_Result submit(gw_http *h, struct MHD_Connection *c, http_req *r)
{
    pthread_mutex_lock(&h->qmu);
    if (atomic_load(&h->stopping) || h->qn >= QUEUE_MAX) {
        int stopping = atomic_load(&h->stopping);
        pthread_mutex_unlock(&h->qmu);
        return send_error(c, stopping ? CR_ERR_UNAVAILABLE : CR_ERR_OVERLOADED,
                          stopping ? "the coordinator is shutting down"
                                   : "too many HTTP API requests waiting");
    }
    r->c = c;
    atomic_store_explicit(&r->state, REQ_QUEUED, memory_order_relaxed);
    MHD_suspend_connection(c);
    if (h->qtail)
        h->qtail->next = r;
    else
        h->qhead = r;
    h->qtail = r;
    h->qn++;
    pthread_cond_signal(&h->qcv);
    pthread_mutex_unlock(&h->qmu);
    return MHD_YES;
}

/* ---- receive deadlines ---------------------------------------------------------------------- */

static conn_rec *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Sets the connection's receive deadline to now + ms (0: none). */
static void conn_deadline(gw_http *h, struct MHD_Connection *c, uint64_t ms)
{
    conn_rec *cr = conn_of(c);
    if (!cr)
        return;
    pthread_mutex_lock(&h->cmu);
    cr->deadline_ms = ms ? cr_clock_mono_ms() + ms : 0;
    pthread_mutex_unlock(&h->cmu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    gw_http *h = cls;
    conn_rec *cr = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || !(cr = calloc(1, sizeof *cr)))
            return; /* untracked: only libmicrohttpd's idle timeout applies */
        cr->fd = ci->connect_fd;
        pthread_mutex_lock(&h->cmu);
        cr->deadline_ms = cr_clock_mono_ms() + HEADER_TIMEOUT_MS;
        cr->next = h->conns;
        if (h->conns)
            h->conns->prev = cr;
        h->conns = cr;
        pthread_mutex_unlock(&h->cmu);
        *socket_context = cr;
        return;
    }
    if (!cr)
        return;
    /* Closed: called before libmicrohttpd closes the socket, so the reaper (which holds cmu
     * while it shuts sockets down) never touches a descriptor number already reused. */
    pthread_mutex_lock(&h->cmu);
    if (cr->prev)
        cr->prev->next = cr->next;
    else
        h->conns = cr->next;
    if (cr->next)
        cr->next->prev = cr->prev;
    pthread_mutex_unlock(&h->cmu);
    free(cr);
    *socket_context = NULL;
}

/* Shuts down connections past their receive deadline; libmicrohttpd then sees the end of the
 * stream and closes them as it closes any other. */
static void *reaper_main(void *arg)
{
    gw_http *h = arg;
    pthread_mutex_lock(&h->cmu);
    while (!atomic_load(&h->stopping)) {
        struct timespec ts;
        uint64_t now = cr_clock_mono_ms();
        int cut = 0;
        for (conn_rec *cr = h->conns; cr; cr = cr->next)
            if (cr->deadline_ms && now >= cr->deadline_ms && !cr->cut) {
                shutdown(cr->fd, SHUT_RDWR);
                cr->cut = 1;
                cut++;
            }
        if (cut)
            CR_DEBUG("gateway", "HTTP: closed %d connections that sent too slowly", cut);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += REAP_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&h->ccv, &h->cmu, &ts);
    }
    pthread_mutex_unlock(&h->cmu);
    return NULL;
}

/* ---- operations endpoints ------------------------------------------------------------------ */

static int ready(gw_http *h)
{
    return h->hooks.ready ? h->hooks.ready(h->hooks.ctx) : 1;
}

/* The process's metrics (the hooks') and the gateway's own request counter. */
static enum MHD_Result do_metrics(gw_http *h, struct MHD_Connection *c)
{
    char *text = NULL, *all;
    size_t len = 0;
    int n;
    enum MHD_Result ok;
    if (h->hooks.metrics && h->hooks.metrics(h->hooks.ctx, &text, &len))
        return send_error(c, CR_ERR_NOMEM, "out of memory");
    n = asprintf(&all, "%.*s# HELP cirrus_http_requests_total Requests on the HTTP API.\n"
                 "# TYPE cirrus_http_requests_total counter\ncirrus_http_requests_total %llu\n",
                 (int)len, text ? text : "", (unsigned long long)atomic_load(&h->requests));
    free(text);
    if (n < 0)
        return send_error(c, CR_ERR_NOMEM, "out of memory");
    ok = send_text(c, 200, "text/plain; version=0.0.4", all, (size_t)n);
    free(all);
    return ok;
}

/* ---- the request handler -------------------------------------------------------------------- */

static enum MHD_Result add_upload(http_req *r, const char *upload, size_t n)
{
    if (r->len + n > BODY_MAX) {
        r->too_big = 1;
    } else if (!r->too_big) {
        char *g = realloc(r->body, r->len + n + 1);
        if (!g)
            return MHD_NO;
        r->body = g;
        memcpy(r->body + r->len, upload, n);
        r->len += n;
    }
    return MHD_YES;
}

static enum MHD_Result route(gw_http *h, struct MHD_Connection *c, const char *url,
                             const char *method, http_req *r)
{
    int get = strcmp(method, "GET") == 0;
    if (get && strcmp(url, "/healthz") == 0)
        return send_text(c, 200, "text/plain", "ok\n", 3);
    if (get && strcmp(url, "/readyz") == 0)
        return ready(h) ? send_text(c, 200, "text/plain", "ready\n", 6)
                        : send_text(c, 503, "text/plain", "not ready\n", 10);
    if (get && strcmp(url, "/metrics") == 0)
        return do_metrics(h, c);
    if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/search") == 0) {
        r->is_search = 1;
        return submit(h, c, r);
    }
    if (get && strncmp(url, "/v1/items/", 10) == 0 && url[10]) {
        if (cr_validate_id(url + 10))
            return send_error(c, CR_ERR_INVALID, cr_error_message());
        if (!(r->id = strdup(url + 10)))
            return send_error(c, CR_ERR_NOMEM, "out of memory");
        return submit(h, c, r);
    }
    return send_error(c, CR_NOTFOUND, "no such endpoint");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    gw_http *h = cls;
    http_req *r = *con_cls;
    (void)version;
    if (!r) { /* first call: the headers are in; the body has BODY_TIMEOUT_MS */
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        conn_deadline(h, c, BODY_TIMEOUT_MS);
        return MHD_YES;
    }
    if (atomic_load_explicit(&r->state, memory_order_acquire) == REQ_DONE) /* resumed */
        return send_text(c, r->status, "application/json", r->out ? r->out : "{}",
                         r->out ? r->out_len : 2);
    if (*upload_size) {
        enum MHD_Result ok = add_upload(r, upload, *upload_size);
        *upload_size = 0;
        return ok;
    }
    conn_deadline(h, c, 0); /* received in full: served within CALL_TIMEOUT_MS */
    atomic_fetch_add(&h->requests, 1);
    if (r->too_big)
        return send_error(c, CR_ERR_INVALID, "request body too large");
    return route(h, c, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    gw_http *h = cls;
    http_req *r = *con_cls;
    (void)toe;
    conn_deadline(h, c, HEADER_TIMEOUT_MS); /* a kept-alive connection: the next request */
    if (r) {
        free(r->body);
        free(r->id);
        free(r->out);
        free(r);
        *con_cls = NULL;
    }
}

/* ---- start and stop ------------------------------------------------------------------------- */

static cr_err parse_bind(const char *bind, struct sockaddr_in *sa)
{
    const char *colon = strrchr(bind, ':');
    char host[64] = "127.0.0.1"; /* ":PORT" serves the loopback only */
    long long port;
    if (!colon || cr_parse_ll(colon + 1, 1, 65535, &port))
        return cr_error_set(CR_ERR_INVALID, "--http '%s' must be HOST:PORT or :PORT", bind);
    if (colon != bind)
        snprintf(host, sizeof host, "%.*s", (int)(colon - bind), bind);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return cr_error_set(CR_ERR_INVALID, "--http host '%s' is not an IPv4 address", host);
    return CR_OK;
}

static void free_handle(gw_http *h)
{
    while (h->conns) {
        conn_rec *cr = h->conns;
        h->conns = cr->next;
        free(cr);
    }
    pthread_cond_destroy(&h->ccv);
    pthread_mutex_destroy(&h->cmu);
    pthread_cond_destroy(&h->qcv);
    pthread_mutex_destroy(&h->qmu);
    free(h);
}

cr_err gw_http_start(gw_http **out, const char *bind, const char *endpoint,
                     const gw_hooks *hooks)
{
    gw_http *h = calloc(1, sizeof *h);
    struct sockaddr_in sa;
    cr_err rc;

    if (!h)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&h->qmu, NULL);
    pthread_cond_init(&h->qcv, NULL);
    pthread_mutex_init(&h->cmu, NULL);
    pthread_cond_init(&h->ccv, NULL);
    if ((rc = parse_bind(bind, &sa)))
        goto fail;
    if (hooks)
        h->hooks = *hooks;
    snprintf(h->endpoint, sizeof h->endpoint, "%s", endpoint);
    for (; h->n_workers < WORKERS; h->n_workers++)
        if (pthread_create(&h->workers[h->n_workers], NULL, worker_main, h)) {
            rc = cr_error_set(CR_ERR_NOMEM, "cannot start the HTTP workers");
            goto fail;
        }
    if (pthread_create(&h->reaper, NULL, reaper_main, h)) {
        rc = cr_error_set(CR_ERR_NOMEM, "cannot start the HTTP reaper");
        goto fail;
    }
    h->reaper_started = 1;
    h->d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        h, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S, MHD_OPTION_END);
    if (!h->d) {
        rc = cr_error_set(CR_ERR_NET, "cannot listen for HTTP on %s", bind);
        goto fail;
    }
    CR_INFO("gateway", "HTTP API on %s (%u connections, %u per client address)", bind,
            CONN_LIMIT, PER_IP_LIMIT);
    *out = h;
    return CR_OK;
fail:
    gw_http_stop(&h);
    return rc;
}

void gw_http_stop(gw_http **pp)
{
    gw_http *h = pp ? *pp : NULL;
    if (!h)
        return;
    /* Workers answer what is queued with 503 and abandon calls in flight within
     * CALL_SLICE_MS, resuming every suspended connection: libmicrohttpd must not be stopped
     * with one still suspended. */
    pthread_mutex_lock(&h->qmu);
    atomic_store(&h->stopping, 1);
    pthread_cond_broadcast(&h->qcv);
    pthread_mutex_unlock(&h->qmu);
    for (int i = 0; i < h->n_workers; i++)
        pthread_join(h->workers[i], NULL);
    pthread_mutex_lock(&h->cmu);
    pthread_cond_broadcast(&h->ccv);
    pthread_mutex_unlock(&h->cmu);
    if (h->reaper_started)
        pthread_join(h->reaper, NULL);
    if (h->d)
        MHD_stop_daemon(h->d);
    free_handle(h);
    *pp = NULL;
}
