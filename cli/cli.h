/* cli.h — shared pieces of the `cirrus` command-line tool in cli/. */
#ifndef CIRRUS_CLI_H
#define CIRRUS_CLI_H

#include <getopt.h>
#include <stdint.h>

#include <jansson.h>

#include "client/client.h"

typedef struct cli_ctx {
    const char *endpoint; /* --endpoint, or CIRRUS_ENDPOINT */
    int json;             /* --json */
    uint32_t timeout_ms;  /* --timeout */
    const char *curve_secret, *curve_server_pub; /* --curve-secret, --curve-server-pub */
    cirrus_client *client;
} cli_ctx;

typedef int (*cli_cmd_fn)(cli_ctx *ctx, int argc, char **argv);

typedef struct cli_cmd {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cli_cmd;

/* Exit codes. */
#define CLI_OK 0
#define CLI_FAIL 1  /* the operation failed (server error, verification mismatch) */
#define CLI_USAGE 2 /* bad command line */

/* Prints "cirrus <cmd>: <message>" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The global options (--json, --endpoint EP, --timeout MS, --log LEVEL), accepted before the
 * command and, through cli_getopt(), after it. */
extern const struct option cli_global_opts[];

/* Applies global option `c` (a cli_global_opts[] value) with its argument to ctx. Returns 0,
 * or -1 after printing why the value is bad. */
int cli_global_apply(cli_ctx *ctx, int c, const char *arg);

/* getopt_long() over the command's options `opts` and the global ones: a global option is
 * applied to ctx and not returned, so that `cirrus CMD ... --json` means `cirrus --json CMD
 * ...`. A command option of the same name wins. An option's argument is never taken for a
 * global option (`--id --json` is the id "--json"). Returns what getopt_long returns; '?' also
 * for a bad global value (already reported). Commands call it in place of getopt_long, with
 * optind reset by the caller as before. */
int cli_getopt(cli_ctx *ctx, int argc, char **argv, const char *shortopts,
               const struct option *opts);

/* Connects on first use. */
cr_err cli_client(cli_ctx *ctx, cirrus_client **out);

/* Sends the request and waits; CR_OK only when the server answered with a non-error
 * status. Prints the failure (server message or timeout) under `cmd`. */
cr_err cli_call(cli_ctx *ctx, const char *cmd, Cirrus__V1__Request *req,
                Cirrus__V1__Response **resp);

/* Parses "f1,f2,..." into a malloc'd float array. */
cr_err cli_parse_vector(const char *text, float **out, size_t *n);

/* Prints a JSON value (compact, one line) to stdout and releases it. */
void cli_print_json(json_t *j);

json_t *cli_hits_json(const Cirrus__V1__SearchResult *r);
void cli_print_hits_text(const Cirrus__V1__SearchResult *r);

/* Command implementations. */
int cli_cmd_upsert(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_get(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_delete(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_search(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_stats(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_health(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_snapshot(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_load(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_verify(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_embed(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_tokenize(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_compose(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_tag(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_eval(cli_ctx *ctx, int argc, char **argv);
/* `cirrus eval run` (cli/eval_run.c): the exit status. */
int cli_eval_run(const char *endpoint, uint32_t timeout_ms, int json, int argc, char **argv);
int cli_cmd_keygen(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_serve(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_ingest(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_build(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_dump(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_backup(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_restore(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_rebalance(cli_ctx *ctx, int argc, char **argv);

#endif
