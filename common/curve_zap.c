#include "common/curve_zap.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 8        /* version, id, domain, address, identity, mechanism, credentials */
#define ZAP_POLL_MS 100     /* how soon the thread sees a stop */
#define ALLOW_MAX_FILES 100000 /* a directory past this is a mistake, not an allow list */
#define DENY_LOG_EVERY_MS 1000 /* a refused client retries every 100 ms: log once a second */

struct cr_zap {
    void *ctx;
    int refs; /* starts sharing this handler (g_mu) */
    struct cr_zap *next;
    void *sock;
    pthread_t thread;
    atomic_int stop;
    cr_curve curve;
    uint64_t last_deny_log_ms;
    unsigned long denied_since_log;
};

/* 1 when a *.pub file of dir holds `key` (the directory is read now: a file removed is a key
 * revoked). */
static int allow_dir_has(const char *dir, const char *key)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0, seen = 0;
    if (!d) {
        CR_WARN("zap", "cannot read the allow directory %s: %s", dir, strerror(errno));
        return 0;
    }
    while (!found && seen < ALLOW_MAX_FILES && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char path[CR_CURVE_PATH_MAX + 256], k[CR_CURVE_KEY_LEN + 1];
        seen++;
        if (n < 5 || strcmp(e->d_name + n - 4, ".pub") != 0 || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (cr_curve_read_key(path, k) == CR_OK)
            found = strcmp(k, key) == 0;
    }
    closedir(d);
    return found;
}

static int client_allowed(cr_zap *z, const char *mechanism, size_t mlen, const zmq_msg_t *cred,
                          char key[CR_CURVE_KEY_LEN + 1])
{
    key[0] = '\0';
    if (mlen != 5 || memcmp(mechanism, "CURVE", 5) != 0 || zmq_msg_size((zmq_msg_t *)cred) != 32)
        return 0;
    if (!zmq_z85_encode(key, zmq_msg_data((zmq_msg_t *)cred), 32))
        return 0;
    if (strcmp(key, z->curve.pub) == 0)
        return 1;
    return z->curve.allow_dir[0] && allow_dir_has(z->curve.allow_dir, key);
}

static void log_denied(cr_zap *z, const char *key, const char *addr)
{
    uint64_t now = cr_clock_mono_ms();
    z->denied_since_log++;
    if (now - z->last_deny_log_ms < DENY_LOG_EVERY_MS)
        return;
    CR_WARN("zap", "refused a CURVE client from %s with key %s (not in %s; %lu refusals since "
            "the last report)", addr[0] ? addr : "?", key[0] ? key : "(none)",
            z->curve.allow_dir[0] ? z->curve.allow_dir : "the allow list",
            z->denied_since_log);
    z->last_deny_log_ms = now;
    z->denied_since_log = 0;
}

static int send_frame(void *s, const void *data, size_t len, int more)
{
    return zmq_send(s, data, len, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

/* Answers one request whose frames are f[0..n). */
static void answer(cr_zap *z, zmq_msg_t *f, int n)
{
    char key[CR_CURVE_KEY_LEN + 1] = "", addr[64] = "";
    const char *code = "400", *text = "not allowed";
    int ok = 0;
    if (n >= 7 && zmq_msg_size(&f[0]) == 3 && memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0) {
        size_t al = zmq_msg_size(&f[3]);
        snprintf(addr, sizeof addr, "%.*s", (int)(al < 63 ? al : 63), (char *)zmq_msg_data(&f[3]));
        ok = client_allowed(z, zmq_msg_data(&f[5]), zmq_msg_size(&f[5]), &f[6], key);
    }
    if (ok) {
        code = "200";
        text = "OK";
    } else {
        log_denied(z, key, addr);
    }
    /* A REP socket must answer before it can receive again, even a malformed request. */
    if (send_frame(z->sock, "1.0", 3, 1) ||
        send_frame(z->sock, n > 1 ? zmq_msg_data(&f[1]) : "", n > 1 ? zmq_msg_size(&f[1]) : 0,
                   1) ||
        send_frame(z->sock, code, 3, 1) || send_frame(z->sock, text, strlen(text), 1) ||
        send_frame(z->sock, ok ? key : "", ok ? strlen(key) : 0, 1) ||
        send_frame(z->sock, "", 0, 0))
        CR_WARN("zap", "cannot answer: %s", zmq_strerror(errno));
}

/* Receives one whole request (at most ZAP_FRAMES kept; the rest dropped). */
static int recv_request(void *s, zmq_msg_t *f, int *n)
{
    int more = 1, kept = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            *n = kept;
            return -1;
        }
        more = zmq_msg_more(&m);
        if (kept < ZAP_FRAMES)
            f[kept++] = m;
        else
            zmq_msg_close(&m);
    }
    *n = kept;
    return 0;
}

static void *zap_main(void *arg)
{
    cr_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {z->sock, 0, ZMQ_POLLIN, 0};
        zmq_msg_t f[ZAP_FRAMES];
        int n = 0, r = zmq_poll(&it, 1, ZAP_POLL_MS);
        if (r < 0 && errno == ETERM)
            break;
        if (r <= 0 || !(it.revents & ZMQ_POLLIN))
            continue;
        if (recv_request(z->sock, f, &n) == 0)
            answer(z, f, n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
    return NULL;
}

/* The handlers running, one per context: a second start in a context with the same key and
 * allow directory shares the first (e.g. a coordinator and the job broker it runs). */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static cr_zap *g_running;

static cr_err zap_share(cr_zap **out, void *ctx, const cr_curve *c, int *shared)
{
    cr_err rc = CR_OK;
    *shared = 0;
    for (cr_zap *z = g_running; z; z = z->next) {
        if (z->ctx != ctx)
            continue;
        if (strcmp(z->curve.secret, c->secret) != 0 ||
            strcmp(z->curve.allow_dir, c->allow_dir) != 0)
            rc = cr_error_set(CR_ERR_INVALID, "cannot start the ZAP handler: one with another "
                                              "key or allow directory already runs in this "
                                              "context");
        else {
            z->refs++;
            *out = z;
            *shared = 1;
        }
        break;
    }
    return rc;
}

static cr_err zap_start_new(cr_zap **out, void *ctx, const cr_curve *c)
{
    cr_zap *z = calloc(1, sizeof *z);
    int zero = 0, e;
    if (!z)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    z->curve = *c;
    z->ctx = ctx;
    z->refs = 1;
    z->sock = zmq_socket(ctx, ZMQ_REP);
    if (!z->sock) {
        free(z);
        return cr_error_set(CR_ERR_NET, "ZAP socket: %s", zmq_strerror(errno));
    }
    zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
        cr_err rc = cr_error_set(errno == EADDRINUSE ? CR_ERR_INVALID : CR_ERR_NET,
                                 "cannot start the ZAP handler: %s%s", zmq_strerror(errno),
                                 errno == EADDRINUSE ? " (one already runs in this context)"
                                                     : "");
        zmq_close(z->sock);
        free(z);
        return rc;
    }
    if ((e = pthread_create(&z->thread, NULL, zap_main, z)) != 0) {
        zmq_close(z->sock);
        free(z);
        return cr_error_set(CR_ERR_INTERNAL, "cannot start the ZAP thread: %s", strerror(e));
    }
    z->next = g_running;
    g_running = z;
    *out = z;
    return CR_OK;
}

cr_err cr_zap_start(cr_zap **out, void *ctx, const cr_curve *c)
{
    int shared;
    cr_err rc;
    pthread_mutex_lock(&g_mu);
    rc = zap_share(out, ctx, c, &shared);
    if (!rc && !shared)
        rc = zap_start_new(out, ctx, c);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void cr_zap_stop(cr_zap **pp)
{
    cr_zap *z = pp ? *pp : NULL;
    if (!z)
        return;
    *pp = NULL;
    pthread_mutex_lock(&g_mu);
    if (--z->refs > 0) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    for (cr_zap **l = &g_running; *l; l = &(*l)->next)
        if (*l == z) {
            *l = z->next;
            break;
        }
    pthread_mutex_unlock(&g_mu);
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
    zmq_close(z->sock);
    memset(&z->curve, 0, sizeof z->curve);
    free(z);
    *pp = NULL;
}

void cr_warn_exposed(const char *component, const char *ep, int is_protected, const char *what)
{
    if (!is_protected && !cr_endpoint_is_local(ep))
        CR_WARN(component, "serving %s, reachable from other hosts, without %s: anyone who can "
                "reach it can read and write (see docs/security.md)", ep, what);
}
