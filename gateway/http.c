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

#include "gateway/api.h"
#include "gateway/auth.h"
#include "gateway/json.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/daemon.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/validate.h"

/* gateway/openapi.json and gateway/web/index.html, built in (cmake/embed.cmake). */
extern const unsigned char gw_openapi_json[], gw_web_index_html[];
extern const size_t gw_openapi_json_len, gw_web_index_html_len;

/* The page runs its own inline script and style, talks only to this origin, and shows
 * images from anywhere (items' image_uri) or picked from disk. */
#define PAGE_CSP "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " \
                 "img-src * data: blob:; connect-src 'self'; form-action 'none'; " \
                 "frame-ancestors 'none'; base-uri 'none'"

/* The daemon runs one event loop (epoll) that only reads requests and writes responses, and
 * answers /healthz, /readyz and /metrics itself; API requests are suspended and handed to
 * WORKERS threads that call the coordinator. So a slow client costs a socket, not a thread,
 * and a hung backend holds workers, never the event loop or the health endpoints. */
#define WORKERS 8            /* API requests served at once */
#define QUEUE_MAX 64         /* API requests waiting for a worker; past it, 503 */
#define CONN_LIMIT 512u        /* connections in all */
#define PER_IP_LIMIT 128u      /* connections from one client address */
#define IDLE_TIMEOUT_S 15u     /* no byte moved for this long: closed (libmicrohttpd) */
#define HEADER_TIMEOUT_MS 10000 /* request line and headers, from accept or the last answer */
#define BODY_TIMEOUT_MS 30000   /* the body, once the headers are in */
#define REAP_MS 250             /* how often the receive deadlines are checked */
#define GW_MAX_ENDPOINT 256      /* the coordinator endpoint it calls */
#define GW_MAX_CORS 1024         /* --http-cors: the allowed origins */
#define RETRY_AFTER_S "1"        /* with 429 and 503: when to try again */
#define CORS_METHODS "GET, POST, DELETE, OPTIONS"
#define CORS_MAX_AGE "600"       /* seconds a browser may cache a preflight's answer */

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
    int over_budget;       /* GW_BODY_BUDGET was reached while it came: dropped, 429 */
    size_t counted;        /* bytes of the body counted in gw_http.body_bytes */
    gw_op op;              /* the API resource (api.h) */
    char *id;              /* its {id}, if it has one */
    atomic_int state;      /* req_state; REQ_DONE is stored with release after the answer */
    gw_answer ans;
} http_req;

struct gw_http {
    struct MHD_Daemon *d;
    gw_hooks hooks;
    _Atomic uint64_t requests; /* cirrus_http_requests_total */
    char endpoint[GW_MAX_ENDPOINT];
    char cors[GW_MAX_CORS]; /* "" = CORS off */
    size_t body_max;
    _Atomic size_t body_bytes; /* of the bodies held, past each one's GW_BODY_FREE_BYTES */
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
    cr_curve curve;             /* the API client's CURVE key (gw_http_opts.curve) */
    char curve_server[CR_CURVE_KEY_LEN + 1];
    cirrus_client_opts copts;   /* how the workers open their clients */
    gw_auth *auth;              /* --http-keys; NULL = open */
    const volatile sig_atomic_t *hup; /* SIGHUPs so far (reload the keys when it moves) */
    sig_atomic_t hup_seen;
    uint8_t *tls_cert, *tls_key; /* PEM, NUL-terminated; NULL = plain HTTP */
};

/* ---- responses --------------------------------------------------------------------------- */

/* The origin to allow for this request under --http-cors, or NULL: "*" allows any (and no
 * credentials), a list allows the request's Origin when it is listed. */
static const char *cors_allow(const gw_http *h, struct MHD_Connection *c)
{
    const char *origin, *p;
    size_t n;
    if (!h->cors[0])
        return NULL;
    if (strcmp(h->cors, "*") == 0)
        return "*";
    origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin || !*origin)
        return NULL;
    n = strlen(origin);
    for (p = h->cors; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, origin, n) == 0)
            return origin;
        p += len;
        p += *p == ',';
        p += strspn(p, " ");
    }
    return NULL;
}

/* Queues r with the headers every answer gets: CORS (when on and the origin is allowed) and
 * Retry-After on 429/503. */
static enum MHD_Result queue(gw_http *h, struct MHD_Connection *c, unsigned status,
                             struct MHD_Response *r)
{
    const char *allow = cors_allow(h, c);
    enum MHD_Result ok;
    if (allow) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", allow);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", "Retry-After, Location");
        if (strcmp(allow, "*") != 0)
            MHD_add_response_header(r, "Vary", "Origin");
    }
    if (status == 429 || status == 503)
        MHD_add_response_header(r, "Retry-After", RETRY_AFTER_S);
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_text(gw_http *h, struct MHD_Connection *c, unsigned status,
                                 const char *type, const char *text, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    return queue(h, c, status, r);
}

/* A worker's answer: JSON unless it says its type (a job's PNG), with its Location. */
static enum MHD_Result send_answer(gw_http *h, struct MHD_Connection *c, const gw_answer *a)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        a->out ? a->out_len : 2, (void *)(a->out ? a->out : "{}"), MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a->type ? a->type : "application/json");
    if (a->location)
        MHD_add_response_header(r, "Location", a->location);
    return queue(h, c, a->status, r);
}

static enum MHD_Result send_page(gw_http *h, struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        gw_web_index_html_len, (void *)gw_web_index_html, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy", PAGE_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    return queue(h, c, 200, r);
}

static enum MHD_Result send_error(gw_http *h, struct MHD_Connection *c, cr_err code,
                                  const char *msg)
{
    json_t *j = gw_error_json(code, msg);
    char *s = cirrus_json_dumps(j, JSON_COMPACT);
    enum MHD_Result ok = send_text(h, c, gw_http_status(code), "application/json",
                                   s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    json_decref(j);
    return ok;
}

/* A CORS preflight (OPTIONS with Access-Control-Request-Method) when CORS is on: 204 with
 * the methods and the headers asked for; otherwise OPTIONS is no endpoint (404). */
static enum MHD_Result send_preflight(gw_http *h, struct MHD_Connection *c)
{
    const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   "Access-Control-Request-Headers");
    struct MHD_Response *r;
    if (!cors_allow(h, c))
        return send_error(h, c, CR_NOTFOUND, "no such endpoint (CORS is off, or this origin "
                          "is not allowed: --http-cors)");
    if (!(r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)))
        return MHD_NO;
    MHD_add_response_header(r, "Access-Control-Allow-Methods", CORS_METHODS);
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            want && *want ? want : "Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", CORS_MAX_AGE);
    return queue(h, c, 204, r);
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
    gw_caller caller = {.endpoint = h->endpoint, .copts = &h->copts, .stopping = &h->stopping};
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
            gw_answer_error(&r->ans, CR_ERR_UNAVAILABLE, "the coordinator is shutting down");
        else
            gw_api_serve(&caller, r->op, r->id, r->body, r->len, &r->ans);
        atomic_store_explicit(&r->state, REQ_DONE, memory_order_release);
        MHD_resume_connection(r->c);
    }
    gw_caller_close(&caller);
    return NULL;
}

/* Queues r for a worker and suspends its connection, or answers 503 (queue full, stopping). */
static enum MHD_Result submit(gw_http *h, struct MHD_Connection *c, http_req *r)
{
    pthread_mutex_lock(&h->qmu);
    if (atomic_load(&h->stopping) || h->qn >= QUEUE_MAX) {
        int stopping = atomic_load(&h->stopping);
        pthread_mutex_unlock(&h->qmu);
        return send_error(h, c, stopping ? CR_ERR_UNAVAILABLE : CR_ERR_OVERLOADED,
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

/* SIGHUP: the keys file again (the reaper's thread; requests keep being checked meanwhile). */
static void keys_reload(gw_http *h)
{
    h->hup_seen = *h->hup;
    if (gw_auth_reload(h->auth))
        CR_ERROR("gateway", "HTTP API keys not reloaded (the %d loaded stay): %s",
                 gw_auth_count(h->auth), cr_error_message());
    else
        CR_INFO("gateway", "HTTP API keys reloaded: %d", gw_auth_count(h->auth));
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
        if (h->auth && *h->hup != h->hup_seen) {
            pthread_mutex_unlock(&h->cmu); /* a file read: not under the connection lock */
            keys_reload(h);
            pthread_mutex_lock(&h->cmu);
        }
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
        return send_error(h, c, CR_ERR_NOMEM, "out of memory");
    n = asprintf(&all, "%.*s# HELP cirrus_http_requests_total Requests on the HTTP API.\n"
                 "# TYPE cirrus_http_requests_total counter\ncirrus_http_requests_total %llu\n",
                 (int)len, text ? text : "", (unsigned long long)atomic_load(&h->requests));
    free(text);
    if (n < 0)
        return send_error(h, c, CR_ERR_NOMEM, "out of memory");
    ok = send_text(h, c, 200, "text/plain; version=0.0.4", all, (size_t)n);
    free(all);
    return ok;
}

/* ---- the request handler -------------------------------------------------------------------- */

/* Gives back what r's body holds of the budget, and the body. */
static void body_release(gw_http *h, http_req *r)
{
    atomic_fetch_sub(&h->body_bytes, r->counted);
    r->counted = 0;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static enum MHD_Result add_upload(gw_http *h, http_req *r, const char *upload, size_t n)
{
    size_t want = r->len + n > GW_BODY_FREE_BYTES ? r->len + n - GW_BODY_FREE_BYTES : 0;
    if (r->over_budget || r->too_big)
        return MHD_YES; /* dropped as it comes */
    if (want > r->counted) {
        size_t more = want - r->counted;
        if (atomic_fetch_add(&h->body_bytes, more) + more > GW_BODY_BUDGET) {
            atomic_fetch_sub(&h->body_bytes, more);
            r->over_budget = 1;
            body_release(h, r);
            return MHD_YES;
        }
        r->counted = want;
    }
    if (r->len + n > h->body_max) {
        r->too_big = 1;
        body_release(h, r);
    } else {
        char *g = realloc(r->body, r->len + n + 1);
        if (!g)
            return MHD_NO;
        r->body = g;
        memcpy(r->body + r->len, upload, n);
        r->len += n;
    }
    return MHD_YES;
}

/* --http-keys: 1 when the request's key has the role its route needs (auth.c's table); else 0
 * with the 401 or 403 queued in *ok. */
static int auth_pass(gw_http *h, struct MHD_Connection *c, const char *method, const char *url,
                     enum MHD_Result *ok)
{
    gw_role need = gw_auth_route_role(method, url);
    const char *hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    gw_auth_result ar = gw_auth_check(h->auth, hdr, need, NULL, 0);
    char *body;
    struct MHD_Response *r;
    if (ar == GW_AUTH_OK)
        return 1;
    body = gw_auth_error_body(ar, need);
    r = body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(body);
        *ok = MHD_NO;
        return 0;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (ar != GW_AUTH_FORBIDDEN)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"cirrus\"");
    *ok = queue(h, c, gw_auth_status(ar), r);
    return 0;
}

static enum MHD_Result route(gw_http *h, struct MHD_Connection *c, const char *url,
                             const char *method, http_req *r)
{
    int get = strcmp(method, "GET") == 0;
    cr_err rc;
    enum MHD_Result ok;
    if (strcmp(method, "OPTIONS") == 0)
        return send_preflight(h, c);
    if (h->auth && !auth_pass(h, c, method, url, &ok))
        return ok;
    if (get && strcmp(url, "/healthz") == 0)
        return send_text(h, c, 200, "text/plain", "ok\n", 3);
    if (get && strcmp(url, "/readyz") == 0)
        return ready(h) ? send_text(h, c, 200, "text/plain", "ready\n", 6)
                        : send_text(h, c, 503, "text/plain", "not ready\n", 10);
    if (get && strcmp(url, "/metrics") == 0)
        return do_metrics(h, c);
    if (get && (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0))
        return send_page(h, c);
    if (get && strcmp(url, "/openapi.json") == 0)
        return send_text(h, c, 200, "application/json", (const char *)gw_openapi_json,
                         gw_openapi_json_len);
    rc = gw_api_match(method, url, &r->op, &r->id);
    if (rc)
        return send_error(h, c, rc, cr_error_message());
    if (r->op != GW_OP_NONE)
        return submit(h, c, r);
    return send_error(h, c, CR_NOTFOUND, "no such endpoint");
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
        return send_answer(h, c, &r->ans);
    if (*upload_size) {
        enum MHD_Result ok = add_upload(h, r, upload, *upload_size);
        *upload_size = 0;
        return ok;
    }
    conn_deadline(h, c, 0); /* received in full: a worker answers within its call timeout */
    atomic_fetch_add(&h->requests, 1);
    if (r->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (%zu MiB)",
                 h->body_max, h->body_max >> 20);
        return send_error(h, c, GW_ERR_TOO_LARGE, msg);
    }
    if (r->over_budget) {
        char msg[128];
        snprintf(msg, sizeof msg, "request bodies being received exceed %u MiB in all; retry "
                 "later", GW_BODY_BUDGET >> 20);
        return send_error(h, c, CR_ERR_OVERLOADED, msg);
    }
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
        body_release(h, r);
        free(r->id);
        free(r->ans.out);
        free(r->ans.location);
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
    gw_auth_close(&h->auth);
    free(h->tls_cert);
    if (h->tls_key)
        memset(h->tls_key, 0, strlen((char *)h->tls_key));
    free(h->tls_key);
    memset(&h->curve, 0, sizeof h->curve);
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

/* --http-tls-cert and --http-tls-key: both or neither, read whole (libmicrohttpd takes PEM
 * text, not paths). */
static cr_err tls_open(gw_http *h, const gw_http_opts *o)
{
    size_t len;
    cr_err rc;
    if (!o || (!o->tls_cert && !o->tls_key))
        return CR_OK;
    if (!o->tls_cert || !o->tls_key)
        return cr_error_set(CR_ERR_INVALID, "--http-tls-cert and --http-tls-key go together");
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return cr_error_set(CR_ERR_UNSUPPORTED, "this libmicrohttpd was built without TLS");
    rc = cr_file_read(o->tls_cert, &h->tls_cert, &len);
    if (!rc)
        rc = cr_file_read(o->tls_key, &h->tls_key, &len);
    return rc ? cr_error_wrap(rc, "HTTPS") : CR_OK;
}

/* Keys, TLS, and the warning for an API that anyone on the network may call. */
static cr_err security_open(gw_http *h, const gw_http_opts *o, const struct sockaddr_in *sa,
                            const char *bind)
{
    int local = (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
    cr_err rc = tls_open(h, o);
    if (!rc && o && o->keys_file) {
        rc = gw_auth_open(&h->auth, o->keys_file);
        if (!rc) {
            h->hup = cr_daemon_reload_count();
            h->hup_seen = *h->hup;
            CR_INFO("gateway", "HTTP API keys: %d from %s (reloaded on SIGHUP)",
                    gw_auth_count(h->auth), o->keys_file);
        }
    }
    if (rc || local)
        return rc;
    if (!h->auth)
        CR_WARN("gateway", "serving the HTTP API on %s, reachable from other hosts, without "
                "API keys (--http-keys): anyone who can reach it can read and write (see "
                "docs/security.md)", bind);
    else if (!h->tls_cert)
        CR_WARN("gateway", "serving the HTTP API on %s without TLS (--http-tls-cert): API keys "
                "and data cross the network in clear", bind);
    return CR_OK;
}

/* libmicrohttpd's options for TLS, ended by MHD_OPTION_END (alone when there is none). */
static void tls_options(const gw_http *h, struct MHD_OptionItem *t)
{
    int n = 0;
    if (h->tls_cert) {
        t[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
        t[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key};
    }
    t[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}

/* The workers' client options: CURVE when the options give it (copied into h). */
static void client_opts(gw_http *h, const gw_http_opts *o)
{
    h->copts = cirrus_client_default_opts();
    if (o && o->curve && o->curve_server_pub) {
        h->curve = *o->curve;
        snprintf(h->curve_server, sizeof h->curve_server, "%s", o->curve_server_pub);
        h->copts.curve = &h->curve;
        h->copts.curve_server_pub = h->curve_server;
    }
}

gw_http_opts gw_http_default_opts(void)
{
    gw_http_opts o = {.cors_origin = NULL, .body_max = GW_BODY_MAX_DEFAULT};
    return o;
}

cr_err gw_http_start(gw_http **out, const char *bind, const char *endpoint,
                     const gw_hooks *hooks, const gw_http_opts *o)
{
    gw_http *h = calloc(1, sizeof *h);
    struct sockaddr_in sa;
    struct MHD_OptionItem tls[3];
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
    h->body_max = o && o->body_max ? o->body_max : GW_BODY_MAX_DEFAULT;
    if (o && o->cors_origin && strlen(o->cors_origin) >= sizeof h->cors) {
        rc = cr_error_set(CR_ERR_INVALID, "--http-cors: at most %d bytes of origins",
                          GW_MAX_CORS - 1);
        goto fail;
    }
    snprintf(h->cors, sizeof h->cors, "%s", o && o->cors_origin ? o->cors_origin : "");
    snprintf(h->endpoint, sizeof h->endpoint, "%s", endpoint);
    client_opts(h, o);
    if ((rc = security_open(h, o, &sa, bind)))
        goto fail;
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
    tls_options(h, tls);
    h->d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | (h->tls_cert ? MHD_USE_TLS : 0),
        0, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        h, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
    if (!h->d) {
        rc = cr_error_set(CR_ERR_NET, "cannot listen for HTTP on %s", bind);
        goto fail;
    }
    CR_INFO("gateway", "HTTP%s API on %s (%u connections, %u per client address; CORS %s; %s)",
            h->tls_cert ? "S" : "", bind, CONN_LIMIT, PER_IP_LIMIT, h->cors[0] ? h->cors : "off",
            h->auth ? "API keys required" : "no API keys");
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
     * a call slice (api.c), resuming every suspended connection: libmicrohttpd must not be stopped
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
