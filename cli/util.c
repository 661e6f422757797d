#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gateway/json.h"
#include "gateway/attrs_json.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/log.h"

/* Values above any char, so that they never meet a command's own option values. */
enum { OPT_JSON = 0x10000, OPT_ENDPOINT, OPT_TIMEOUT, OPT_LOG, OPT_CURVE_SECRET, OPT_CURVE_PUB };

#define CLI_MAX_OPTS 64 /* a command's options plus the global ones */

const struct option cli_global_opts[] = {{"json", no_argument, 0, OPT_JSON},
                                         {"endpoint", required_argument, 0, OPT_ENDPOINT},
                                         {"timeout", required_argument, 0, OPT_TIMEOUT},
                                         {"log", required_argument, 0, OPT_LOG},
                                         {"curve-secret", required_argument, 0, OPT_CURVE_SECRET},
                                         {"curve-server-pub", required_argument, 0, OPT_CURVE_PUB},
                                         {0, 0, 0, 0}};

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cirrus %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_global_apply(cli_ctx *ctx, int c, const char *arg)
{
    long long v;
    int lvl;
    switch (c) {
    case OPT_JSON: ctx->json = 1; return 0;
    case OPT_ENDPOINT: ctx->endpoint = arg; return 0;
    case OPT_CURVE_SECRET: ctx->curve_secret = arg; return 0;
    case OPT_CURVE_PUB: ctx->curve_server_pub = arg; return 0;
    case OPT_TIMEOUT:
        if (cr_parse_ll(arg, 1, 3600000, &v)) {
            cli_error("cirrus", "--timeout: %s", cr_error_message());
            return -1;
        }
        ctx->timeout_ms = (uint32_t)v;
        return 0;
    case OPT_LOG:
        lvl = cr_log_level_parse(arg);
        if (lvl < 0) {
            cli_error("cirrus", "--log: unknown level '%s'", arg);
            return -1;
        }
        cr_log_set_level((cr_log_level)lvl);
        return 0;
    default: return -1;
    }
}

/* Is `name` one of the command's own long options? */
static int has_opt(const struct option *opts, const char *name)
{
    for (; opts->name; opts++)
        if (strcmp(opts->name, name) == 0)
            return 1;
    return 0;
}

int cli_getopt(cli_ctx *ctx, int argc, char **argv, const char *shortopts,
               const struct option *opts)
{
    /* getopt_long() keeps no pointer to the table between calls (only into argv), so the
     * merged table can live on this stack frame. */
    struct option all[CLI_MAX_OPTS];
    size_t n = 0;
    int c;

    for (; opts[n].name; n++) {
        if (n + 1 >= CLI_MAX_OPTS)
            return '?'; /* a programmer error: caught by any run of the command */
        all[n] = opts[n];
    }
    for (const struct option *g = cli_global_opts; g->name; g++)
        if (!has_opt(opts, g->name) && n + 1 < CLI_MAX_OPTS)
            all[n++] = *g;
    memset(&all[n], 0, sizeof all[n]);
    for (;;) {
        c = getopt_long(argc, argv, shortopts, all, NULL);
        if (c < OPT_JSON || c > OPT_CURVE_PUB)
            return c;
        if (cli_global_apply(ctx, c, optarg))
            return '?';
    }
}

/* --curve-secret and --curve-server-pub (else CIRRUS_CURVE_* in the environment: client.h). */
static cr_err open_client(cli_ctx *ctx)
{
    cirrus_client_opts o = cirrus_client_default_opts();
    char server[CR_CURVE_KEY_LEN + 1];
    cr_curve k;
    cr_err rc = CR_OK;
    if (ctx->curve_secret || ctx->curve_server_pub) {
        if (!ctx->curve_secret || !ctx->curve_server_pub)
            return cr_error_set(CR_ERR_INVALID, "--curve-secret and --curve-server-pub go "
                                                "together");
        rc = cr_curve_load(&k, ctx->curve_secret, NULL);
        if (!rc)
            rc = cr_curve_public_arg(ctx->curve_server_pub, server);
        o.curve = &k;
        o.curve_server_pub = server;
    }
    if (!rc)
        rc = cirrus_client_open(&ctx->client, ctx->endpoint, &o);
    memset(&k, 0, sizeof k);
    return rc;
}

cr_err cli_client(cli_ctx *ctx, cirrus_client **out)
{
    if (!ctx->client) {
        cr_err rc = open_client(ctx);
        if (rc)
            return rc;
    }
    *out = ctx->client;
    return CR_OK;
}

cr_err cli_call(cli_ctx *ctx, const char *cmd, Cirrus__V1__Request *req,
                Cirrus__V1__Response **resp)
{
    cirrus_client *c;
    cr_err rc = cli_client(ctx, &c);
    if (!rc)
        rc = cirrus_client_call(c, req, ctx->timeout_ms, resp);
    if (rc) {
        cli_error(cmd, "%s (endpoint %s)", cr_error_message(), ctx->endpoint);
        return rc;
    }
    rc = cirrus_response_error(*resp);
    if (rc) {
        cli_error(cmd, "%s", cr_error_message());
        cirrus_response_free(*resp);
        *resp = NULL;
    }
    return rc;
}

cr_err cli_parse_vector(const char *text, float **out, size_t *n)
{
    size_t cap = 16, count = 0;
    float *v = malloc(cap * sizeof *v);
    const char *p = text;
    if (!v)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    while (*p) {
        char *end;
        errno = 0;
        float x = strtof(p, &end);
        if (end == p || errno) {
            free(v);
            return cr_error_set(CR_ERR_INVALID, "bad number at '%.20s' in the vector", p);
        }
        if (count == cap) {
            float *g = realloc(v, 2 * cap * sizeof *v);
            if (!g) {
                free(v);
                return cr_error_set(CR_ERR_NOMEM, "out of memory");
            }
            v = g;
            cap *= 2;
        }
        v[count++] = x;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p) {
            free(v);
            return cr_error_set(CR_ERR_INVALID, "expected ',' at '%.20s' in the vector", p);
        }
    }
    if (!count) {
        free(v);
        return cr_error_set(CR_ERR_INVALID, "empty vector");
    }
    *out = v;
    *n = count;
    return CR_OK;
}

void cli_print_json(json_t *j)
{
    char *s = cirrus_json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

json_t *cli_hits_json(const Cirrus__V1__SearchResult *r)
{
    return cirrus_result_json(r);
}

void cli_print_hits_text(const Cirrus__V1__SearchResult *r)
{
    for (size_t i = 0; i < r->n_hits; i++) {
        const Cirrus__V1__Hit *h = r->hits[i];
        json_t *a = cr_attrs_to_json(h->attributes, h->n_attributes);
        char *s = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(10));
        printf("%3zu  %-24s %10.6f  %s\n", i + 1, h->id, h->score,
               h->n_attributes && s ? s : "");
        free(s);
        json_decref(a);
    }
    if (r->partial) {
        printf("PARTIAL result: shard groups missing:");
        for (size_t i = 0; i < r->n_missing_groups; i++)
            printf(" %u", r->missing_groups[i]);
        printf("\n");
    }
}
