/* gateway/auth.c and common/curve.c without a network: the route table, role sets, keys files
 * (good, broken, reloaded), the bearer check, and CURVE key files (mode, format, Z85). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/curve.h"
#include "common/test.h"
#include "gateway/auth.h"

static void write_file(const char *path, const char *text, int mode)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    chmod(path, (mode_t)mode);
}

static void test_routes(void)
{
    CR_CHECK(gw_auth_route_role("GET", "/healthz") == GW_ROLE_PUBLIC);
    CR_CHECK(gw_auth_route_role("GET", "/") == GW_ROLE_PUBLIC);
    CR_CHECK(gw_auth_route_role("POST", "/v1/search") == GW_ROLE_READ);
    CR_CHECK(gw_auth_route_role("GET", "/v1/items/a") == GW_ROLE_READ);
    CR_CHECK(gw_auth_route_role("GET", "/v1/items/a/image") == GW_ROLE_READ);
    CR_CHECK(gw_auth_route_role("GET", "/v1/jobs/j1") == GW_ROLE_READ);
    CR_CHECK(gw_auth_route_role("POST", "/v1/items") == GW_ROLE_WRITE);
    CR_CHECK(gw_auth_route_role("DELETE", "/v1/items/a") == GW_ROLE_WRITE);
    CR_CHECK(gw_auth_route_role("POST", "/v1/generate") == GW_ROLE_WRITE);
    CR_CHECK(gw_auth_route_role("DELETE", "/v1/jobs/j1") == GW_ROLE_WRITE);
    CR_CHECK(gw_auth_route_role("POST", "/v1/snapshot") == GW_ROLE_ADMIN);
    /* not in the table: closed */
    CR_CHECK(gw_auth_route_role("GET", "/v1/new-thing") == GW_ROLE_ADMIN);
    CR_CHECK(gw_auth_route_role("GET", "/v1/items") == GW_ROLE_ADMIN);
    CR_CHECK(gw_auth_route_role("GET", "/v1/searchx") == GW_ROLE_ADMIN);
    CR_CHECK(gw_auth_route_role("GET", "/healthz/x") == GW_ROLE_ADMIN);
}

static void test_keys(const char *dir)
{
    char path[512], tok[96], hash[GW_AUTH_HASH_HEX], line[256], who[64] = "", hdr[128];
    gw_auth *a = NULL;
    unsigned roles = 0;
    snprintf(path, sizeof path, "%s/keys", dir);
    CR_CHECK(gw_auth_roles_parse("read,admin", &roles) == CR_OK);
    CR_CHECK(roles == (GW_ROLE_READ | GW_ROLE_ADMIN));
    CR_CHECK(gw_auth_roles_parse("reader", &roles) == CR_ERR_INVALID);
    CR_CHECK(gw_auth_roles_parse("", &roles) == CR_ERR_INVALID);
    CR_CHECK(gw_auth_hash("test", hash) == CR_OK);
    CR_CHECK(strcmp(hash, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") == 0);
    CR_CHECK(gw_auth_token_new(tok, sizeof tok) == CR_OK && strlen(tok) == 68);
    gw_auth_hash(tok, hash);
    snprintf(line, sizeof line, "# comment\n\nread %s web\n", hash);
    write_file(path, line, 0600);
    CR_CHECK(gw_auth_open(&a, path) == CR_OK);
    if (!a)
        return;
    CR_CHECK(gw_auth_count(a) == 1);
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    CR_CHECK(gw_auth_check(a, hdr, GW_ROLE_READ, who, sizeof who) == GW_AUTH_OK);
    CR_CHECK(strcmp(who, "web") == 0);
    CR_CHECK(gw_auth_check(a, hdr, GW_ROLE_WRITE, NULL, 0) == GW_AUTH_FORBIDDEN);
    CR_CHECK(gw_auth_check(a, NULL, GW_ROLE_READ, NULL, 0) == GW_AUTH_MISSING);
    CR_CHECK(gw_auth_check(a, NULL, GW_ROLE_PUBLIC, NULL, 0) == GW_AUTH_OK);
    CR_CHECK(gw_auth_check(a, "Bearer nope", GW_ROLE_READ, NULL, 0) == GW_AUTH_UNKNOWN);
    CR_CHECK(gw_auth_check(a, "Bearer ", GW_ROLE_READ, NULL, 0) == GW_AUTH_MISSING);
    CR_CHECK(gw_auth_check(a, "Basic abc", GW_ROLE_READ, NULL, 0) == GW_AUTH_MISSING);
    CR_CHECK(gw_auth_status(GW_AUTH_FORBIDDEN) == 403 && gw_auth_status(GW_AUTH_UNKNOWN) == 401);
    /* a broken file keeps the keys; its error names the line */
    write_file(path, "read abc web\n", 0600);
    CR_CHECK(gw_auth_reload(a) == CR_ERR_INVALID);
    CR_CHECK(strstr(cr_error_message(), "keys:1") != NULL);
    CR_CHECK(gw_auth_check(a, hdr, GW_ROLE_READ, NULL, 0) == GW_AUTH_OK);
    write_file(path, "", 0600);
    CR_CHECK(gw_auth_reload(a) == CR_OK && gw_auth_count(a) == 0);
    CR_CHECK(gw_auth_check(a, hdr, GW_ROLE_READ, NULL, 0) == GW_AUTH_UNKNOWN);
    gw_auth_close(&a);
    CR_CHECK(a == NULL);
}

static void test_curve_files(const char *dir)
{
    char name[512], path[600], pub[CR_CURVE_KEY_LEN + 1], got[CR_CURVE_KEY_LEN + 1];
    cr_curve c;
    int on = 1;
    snprintf(name, sizeof name, "%s/node", dir);
    CR_CHECK(cr_curve_write_pair(name, pub) == CR_OK);
    CR_CHECK(cr_curve_key_valid(pub));
    CR_CHECK(cr_curve_write_pair(name, NULL) == CR_ERR_IO); /* never over a key */
    snprintf(path, sizeof path, "%s.key", name);
    CR_CHECK(cr_curve_load(&c, path, dir) == CR_OK);
    CR_CHECK(strcmp(c.pub, pub) == 0); /* the public key derived from the secret */
    snprintf(path, sizeof path, "%s.pub", name);
    CR_CHECK(cr_curve_public_arg(path, got) == CR_OK && strcmp(got, pub) == 0);
    CR_CHECK(cr_curve_public_arg(pub, got) == CR_OK);
    CR_CHECK(cr_curve_public_arg("short", got) != CR_OK);
    snprintf(path, sizeof path, "%s.key", name);
    chmod(path, 0640);
    CR_CHECK(cr_curve_load(&c, path, dir) == CR_ERR_INVALID);
    chmod(path, 0600);
    CR_CHECK(cr_curve_flags(&c, NULL, NULL, 1, &on) == CR_OK && on == 0);
    CR_CHECK(cr_curve_flags(&c, path, NULL, 1, &on) == CR_ERR_INVALID);
    CR_CHECK(cr_curve_flags(&c, NULL, dir, 1, &on) == CR_ERR_INVALID);
    CR_CHECK(cr_curve_flags(&c, path, NULL, 0, &on) == CR_OK && on == 1);
    snprintf(path, sizeof path, "%s/bad.key", dir);
    write_file(path, "# nothing\nnot-a-key\n", 0600);
    CR_CHECK(cr_curve_load(&c, path, NULL) == CR_ERR_INVALID);
    CR_CHECK(cr_endpoint_is_local("tcp://127.0.0.1:1") && cr_endpoint_is_local("inproc://x"));
    CR_CHECK(!cr_endpoint_is_local("tcp://0.0.0.0:1") && !cr_endpoint_is_local("tcp://10.0.0.1:1"));
}

int main(void)
{
    char dir[] = "/tmp/cirrus-auth-XXXXXX";
    char cmd[64];
    CR_TEST_BEGIN();
    CR_CHECK(mkdtemp(dir) != NULL);
    test_routes();
    test_keys(dir);
    test_curve_files(dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CR_CHECK(system(cmd) == 0);
    return CR_TEST_END();
}
