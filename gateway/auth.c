#include "gateway/auth.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>

#include "common/fileio.h"
#include "gateway/json.h"

#define AUTH_MAX_KEYS 4096
#define AUTH_NAME_MAX 64

/* ---- the route table ------------------------------------------------------------------------
 * First match wins. `prefix`: the rule covers `path` and everything below it (path + "/...");
 * a path ending in '/' covers only what is below it. method "*" is any method. A route no
 * rule names needs GW_ROLE_ADMIN. Add a route here when it is added to api.c. */
typedef struct route_rule {
    const char *method;
    const char *path;
    int prefix;
    gw_role role;
} route_rule;

static const route_rule ROUTES[] = {
    {"GET", "/healthz", 0, GW_ROLE_PUBLIC},
    {"GET", "/readyz", 0, GW_ROLE_PUBLIC},
    {"GET", "/", 0, GW_ROLE_PUBLIC},
    {"GET", "/index.html", 0, GW_ROLE_PUBLIC},
    {"GET", "/openapi.json", 0, GW_ROLE_PUBLIC},
    {"OPTIONS", "/", 1, GW_ROLE_PUBLIC}, /* CORS preflights carry no credentials */
    {"GET", "/metrics", 0, GW_ROLE_READ},
    /* read: search, get, schema, stats, job status */
    {"POST", "/v1/search", 0, GW_ROLE_READ},
    {"GET", "/v1/items/", 1, GW_ROLE_READ}, /* /v1/items/{id}, /v1/items/{id}/image */
    {"GET", "/v1/schema", 0, GW_ROLE_READ},
    {"GET", "/v1/stats", 0, GW_ROLE_READ},
    {"GET", "/v1/jobs", 1, GW_ROLE_READ}, /* /v1/jobs, /v1/jobs/{id}, /v1/jobs/{id}/image */
    /* write: upsert, delete, generate, cancel */
    {"POST", "/v1/items", 0, GW_ROLE_WRITE},
    {"DELETE", "/v1/items/", 1, GW_ROLE_WRITE},
    {"POST", "/v1/generate", 0, GW_ROLE_WRITE},
    {"DELETE", "/v1/jobs/", 1, GW_ROLE_WRITE},
    {"POST", "/v1/jobs/", 1, GW_ROLE_WRITE}, /* e.g. /v1/jobs/{id}/cancel */
    /* admin: snapshot, backup, rebalance, reload (and, by default, anything else) */
    {"*", "/v1/snapshot", 1, GW_ROLE_ADMIN},
    {"*", "/v1/backup", 1, GW_ROLE_ADMIN},
    {"*", "/v1/rebalance", 1, GW_ROLE_ADMIN},
    {"*", "/v1/reload", 1, GW_ROLE_ADMIN},
};

static int rule_matches(const route_rule *r, const char *method, const char *url)
{
    size_t n = strlen(r->path);
    if (strcmp(r->method, "*") != 0 && strcmp(r->method, method) != 0)
        return 0;
    if (strncmp(url, r->path, n) != 0)
        return 0;
    if (!r->prefix)
        return url[n] == '\0';
    return r->path[n - 1] == '/' ? url[n] != '\0' : url[n] == '\0' || url[n] == '/';
}

gw_role gw_auth_route_role(const char *method, const char *url)
{
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        if (rule_matches(&ROUTES[i], method, url))
            return ROUTES[i].role;
    return GW_ROLE_ADMIN;
}

/* ---- roles, hashes, tokens ------------------------------------------------------------------- */

const char *gw_role_name(gw_role r)
{
    switch (r) {
    case GW_ROLE_READ: return "read";
    case GW_ROLE_WRITE: return "write";
    case GW_ROLE_ADMIN: return "admin";
    default: return "public";
    }
}

cr_err gw_auth_roles_parse(const char *s, unsigned *roles)
{
    unsigned set = 0;
    while (s && *s) {
        size_t n = strcspn(s, ",");
        if (n == 4 && strncmp(s, "read", 4) == 0)
            set |= GW_ROLE_READ;
        else if (n == 5 && strncmp(s, "write", 5) == 0)
            set |= GW_ROLE_WRITE;
        else if (n == 5 && strncmp(s, "admin", 5) == 0)
            set |= GW_ROLE_ADMIN;
        else
            return cr_error_set(CR_ERR_INVALID, "unknown role '%.*s' (read, write, admin; "
                                                "several joined by commas)", (int)n, s);
        s += n;
        s += *s == ',';
    }
    if (!set)
        return cr_error_set(CR_ERR_INVALID, "no role (read, write, admin)");
    *roles = set;
    return CR_OK;
}

static cr_err sha256(const char *token, size_t len, uint8_t out[32])
{
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, token, len, out) < 0)
        return cr_error_set(CR_ERR_INTERNAL, "SHA-256 failed");
    return CR_OK;
}

cr_err gw_auth_hash(const char *token, char hex[GW_AUTH_HASH_HEX])
{
    uint8_t d[32];
    cr_err rc = sha256(token, strlen(token), d);
    for (int i = 0; !rc && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return rc;
}

cr_err gw_auth_token_new(char *out, size_t cap)
{
    uint8_t r[32];
    if (cap < 4 + 64 + 1)
        return cr_error_set(CR_ERR_INVALID, "token buffer too small");
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return cr_error_set(CR_ERR_INTERNAL, "getrandom failed");
    memcpy(out, "crs_", 4);
    for (int i = 0; i < 32; i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", r[i]);
    memset(r, 0, sizeof r);
    return CR_OK;
}

/* ---- the keys -------------------------------------------------------------------------------- */

typedef struct key_rec {
    uint8_t hash[32];
    unsigned roles;
    char name[AUTH_NAME_MAX];
} key_rec;

struct gw_auth {
    char *path;
    pthread_rwlock_t lock;
    key_rec *keys; /* under lock */
    int n;
};

static int hexdig(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static cr_err parse_hash(const char *s, uint8_t out[32])
{
    if (strlen(s) != 64)
        return CR_ERR_INVALID;
    for (int i = 0; i < 32; i++) {
        int hi = hexdig(s[2 * i]), lo = hexdig(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CR_ERR_INVALID;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return CR_OK;
}

/* One line "ROLES HASH NAME" (NAME optional) into k. */
static cr_err parse_line(char *line, key_rec *k)
{
    char *save = NULL, *roles = strtok_r(line, " \t", &save);
    char *hash = roles ? strtok_r(NULL, " \t", &save) : NULL;
    char *name = hash ? strtok_r(NULL, " \t", &save) : NULL;
    cr_err rc;
    if (!hash)
        return cr_error_set(CR_ERR_INVALID, "expected 'ROLE[,ROLE] SHA256HEX NAME'");
    if ((rc = gw_auth_roles_parse(roles, &k->roles)))
        return rc;
    if (parse_hash(hash, k->hash))
        return cr_error_set(CR_ERR_INVALID, "the key hash must be 64 hex digits (SHA-256 of "
                                            "the token: cirrus keygen --http ROLE)");
    if (name && strtok_r(NULL, " \t", &save))
        return cr_error_set(CR_ERR_INVALID, "a key's name is one word");
    snprintf(k->name, sizeof k->name, "%s", name ? name : "(unnamed)");
    return CR_OK;
}

static cr_err load_keys(const char *path, key_rec **out, int *n_out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    key_rec *keys = NULL;
    int n = 0, lineno = 0;
    cr_err rc = cr_file_read(path, &data, &len);
    char *p = (char *)data;
    if (rc)
        return rc;
    keys = calloc(AUTH_MAX_KEYS, sizeof *keys);
    if (!keys) {
        free(data);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (char *line = p, *next; line && !rc; line = next) {
        char *s = line, *nl = strchr(line, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || *s == '#')
            continue;
        if (n == AUTH_MAX_KEYS)
            rc = cr_error_set(CR_ERR_INVALID, "more than %d keys", AUTH_MAX_KEYS);
        else
            rc = parse_line(s, &keys[n]);
        if (rc)
            rc = cr_error_wrap(rc, "%s:%d", path, lineno);
        else
            n++;
    }
    memset(data, 0, len);
    free(data);
    if (rc) {
        free(keys);
        return rc;
    }
    *out = keys;
    *n_out = n;
    return CR_OK;
}

cr_err gw_auth_open(gw_auth **out, const char *path)
{
    gw_auth *a = calloc(1, sizeof *a);
    cr_err rc;
    if (!a || !(a->path = strdup(path))) {
        free(a);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    rc = load_keys(path, &a->keys, &a->n);
    if (rc) {
        free(a->path);
        free(a);
        return rc;
    }
    pthread_rwlock_init(&a->lock, NULL);
    *out = a;
    return CR_OK;
}

cr_err gw_auth_reload(gw_auth *a)
{
    key_rec *keys = NULL, *old;
    int n = 0;
    cr_err rc = load_keys(a->path, &keys, &n);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&a->lock);
    old = a->keys;
    a->keys = keys;
    a->n = n;
    pthread_rwlock_unlock(&a->lock);
    free(old);
    return CR_OK;
}

void gw_auth_close(gw_auth **pp)
{
    gw_auth *a = pp ? *pp : NULL;
    if (!a)
        return;
    pthread_rwlock_destroy(&a->lock);
    free(a->keys);
    free(a->path);
    free(a);
    *pp = NULL;
}

int gw_auth_count(gw_auth *a)
{
    int n;
    pthread_rwlock_rdlock(&a->lock);
    n = a->n;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

/* ---- the check -------------------------------------------------------------------------------- */

/* The token of "Bearer TOKEN" (scheme case-insensitive), or NULL; *len its length. */
static const char *bearer(const char *h, size_t *len)
{
    const char *t;
    size_t n;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    t = h + 7;
    while (*t == ' ')
        t++;
    n = strcspn(t, " \t\r\n");
    if (n == 0 || n > GW_AUTH_TOKEN_MAX || t[n + strspn(t + n, " \t")] != '\0')
        return NULL;
    *len = n;
    return t;
}

gw_auth_result gw_auth_check(gw_auth *a, const char *authorization, gw_role need, char *who,
                             size_t who_len)
{
    const char *tok;
    size_t len = 0;
    uint8_t d[32];
    int found = -1;
    unsigned roles = 0;
    if (need == GW_ROLE_PUBLIC)
        return GW_AUTH_OK;
    if (!(tok = bearer(authorization, &len)))
        return GW_AUTH_MISSING;
    if (sha256(tok, len, d))
        return GW_AUTH_UNKNOWN;
    pthread_rwlock_rdlock(&a->lock);
    /* Every key is compared in full, whatever matched: the time depends on the number of
     * keys only, never on how much of a hash a guess got right. */
    for (int i = 0; i < a->n; i++) {
        uint8_t diff = 0;
        for (int b = 0; b < 32; b++)
            diff |= (uint8_t)(a->keys[i].hash[b] ^ d[b]);
        unsigned hit = 0u - (unsigned)(diff == 0); /* all ones on a match */
        roles |= a->keys[i].roles & hit;
        found = (int)((unsigned)found & ~hit) | (int)((unsigned)i & hit);
    }
    if (found >= 0 && who)
        snprintf(who, who_len, "%s", a->keys[found].name);
    pthread_rwlock_unlock(&a->lock);
    memset(d, 0, sizeof d);
    if (found < 0)
        return GW_AUTH_UNKNOWN;
    return (roles & (unsigned)need) ? GW_AUTH_OK : GW_AUTH_FORBIDDEN;
}

unsigned gw_auth_status(gw_auth_result r)
{
    return r == GW_AUTH_OK ? 200 : r == GW_AUTH_FORBIDDEN ? 403 : 401;
}

char *gw_auth_error_body(gw_auth_result r, gw_role need)
{
    char msg[160];
    json_t *e = json_object(), *j = json_object();
    char *s;
    if (r == GW_AUTH_FORBIDDEN)
        snprintf(msg, sizeof msg, "this API key lacks the '%s' role this endpoint needs",
                 gw_role_name(need));
    else if (r == GW_AUTH_MISSING)
        snprintf(msg, sizeof msg, "an API key is needed: send 'Authorization: Bearer TOKEN' "
                                  "(a key with the '%s' role)", gw_role_name(need));
    else
        snprintf(msg, sizeof msg, "unknown API key");
    json_object_set_new(e, "code", json_string(r == GW_AUTH_FORBIDDEN ? "forbidden"
                                                                        : "unauthorized"));
    json_object_set_new(e, "message", json_string(msg));
    json_object_set_new(j, "error", e);
    s = cirrus_json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}
