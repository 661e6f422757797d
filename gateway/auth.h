/* auth.h — API keys with roles for the HTTP API (docs/security.md).
 *
 * A key is a random bearer token (`cirrus keygen --http ROLE` makes one); the server keeps
 * only its SHA-256, in a keys file given with --http-keys, one key per line:
 *
 *     # role[,role...]  sha256(token), hex                                   name
 *     read              9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 shop-frontend
 *     read,write        60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752 ingest
 *
 * Roles are sets, not levels: a key does exactly what its roles allow (an admin key that
 * should also search lists read,admin). What each route needs is one table in auth.c (route
 * prefix + method -> role; a route it does not name needs admin, so a new endpoint is closed
 * until it is listed). A request sends `Authorization: Bearer TOKEN`; without a usable one it
 * is answered 401, with a key that lacks the role 403.
 *
 *   gw_auth *a; rc = gw_auth_open(&a, "keys.txt");
 *   gw_role need = gw_auth_route_role("POST", "/v1/search");
 *   gw_auth_result r = gw_auth_check(a, authorization_header, need, who, sizeof who);
 *   if (r != GW_AUTH_OK) answer gw_auth_status(r) with gw_auth_error_body(r, need);
 *   rc = gw_auth_reload(a);  // on SIGHUP: a bad file keeps the keys already loaded
 *
 * Thread rules: check and reload may run on any threads at once.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>

#include "common/err.h"

typedef enum gw_role {
    GW_ROLE_PUBLIC = 0, /* no key needed: health, readiness, the page, the OpenAPI document */
    GW_ROLE_READ = 1,   /* search, get, schema, stats, job status, metrics */
    GW_ROLE_WRITE = 2,  /* upsert, delete, generate, cancel */
    GW_ROLE_ADMIN = 4   /* snapshot, backup, rebalance, reload; any route not in the table */
} gw_role;

typedef enum gw_auth_result {
    GW_AUTH_OK = 0,
    GW_AUTH_MISSING,  /* no Authorization: Bearer header (401) */
    GW_AUTH_UNKNOWN,  /* a token that is no key of the file (401) */
    GW_AUTH_FORBIDDEN /* a key without the role the route needs (403) */
} gw_auth_result;

#define GW_AUTH_TOKEN_MAX 256 /* longest bearer token accepted */
#define GW_AUTH_HASH_HEX 65   /* a SHA-256 in hex, with its NUL */

typedef struct gw_auth gw_auth;

/* Loads the keys file. CR_ERR_IO (unreadable), CR_ERR_INVALID ("keys.txt:3: ..."). */
cr_err gw_auth_open(gw_auth **out, const char *path);
/* Reads the file again and swaps the keys in; on an error the old keys stay (and the error
 * is returned for the caller to log). */
cr_err gw_auth_reload(gw_auth *a);
void gw_auth_close(gw_auth **pp);
/* Keys loaded now. */
int gw_auth_count(gw_auth *a);

/* What the route needs (the table). */
gw_role gw_auth_route_role(const char *method, const char *url);

/* Checks the request's Authorization header (may be NULL) against the keys, in constant time
 * over the keys (no early exit, no byte-wise compare of secrets). `need` PUBLIC is always OK.
 * who (may be NULL) gets the key's name when one matched. */
gw_auth_result gw_auth_check(gw_auth *a, const char *authorization, gw_role need, char *who,
                             size_t who_len);

/* 401 or 403 (200 for OK). */
unsigned gw_auth_status(gw_auth_result r);
/* The error body in the gateway's shape, {"error": {"code": "unauthorized" | "forbidden",
 * "message": ...}}; malloc'd, NULL when out of memory. */
char *gw_auth_error_body(gw_auth_result r, gw_role need);

/* "read", "write", "admin", "public". */
const char *gw_role_name(gw_role r);
/* "read", "write,admin", ... into a set of roles. CR_ERR_INVALID on an unknown name. */
cr_err gw_auth_roles_parse(const char *s, unsigned *roles);
/* The SHA-256 of token, lower-case hex. */
cr_err gw_auth_hash(const char *token, char hex[GW_AUTH_HASH_HEX]);
/* A fresh random token ("crs_" + 64 hex digits) into out (cap >= 69). */
cr_err gw_auth_token_new(char *out, size_t cap);

#endif
