/* config.h — table-driven configuration for the servers.
 *
 * Each option has one name used three ways: `--dir X` on the command line, `PREFIX_DIR=X` in
 * the environment, `dir = X` in a config file given with `--config FILE`. Precedence, lowest
 * to highest: default < file < environment < command line. Every value is validated at
 * start (type, range, required) and the result is logged at INFO.
 *
 *   static char *dir; static long long port;
 *   cr_opt opts[] = {
 *       {"dir", CR_OPT_STRING, &dir, NULL, 0, 0, 1, "shard directory"},
 *       {"threads", CR_OPT_INT, &threads, "2", 1, 64, 0, "search threads"},
 *   };
 *   rc = cr_config_load("cirrus-shard", "CIRRUS_SHARD", opts, 2, argc, argv, &done);
 *   ...; cr_config_free(opts, 2);
 */
#ifndef CR_CONFIG_H
#define CR_CONFIG_H

#include <stddef.h>

#include "common/err.h"

typedef enum cr_opt_type {
    CR_OPT_STRING, /* target: char ** (malloc'd; freed by cr_config_free) */
    CR_OPT_INT,    /* target: long long *, checked against [min, max] */
    CR_OPT_DOUBLE, /* target: double * */
    CR_OPT_BOOL    /* target: int *; "--name" alone means true; true/false/1/0/yes/no */
} cr_opt_type;

typedef struct cr_opt {
    const char *name;
    cr_opt_type type;
    void *target;
    const char *defval; /* NULL: no default */
    long long min, max; /* CR_OPT_INT range */
    int required;
    const char *help;
} cr_opt;

/* Loads the options. Targets are overwritten without being freed: load once, or call
 * cr_config_free() between loads (and after a failed load). On `--help` prints usage to stdout and sets *help_shown = 1 (and
 * returns CR_OK). Errors (unknown option, bad value, missing required) return
 * CR_ERR_INVALID with a message. */
cr_err cr_config_load(const char *program, const char *env_prefix, const cr_opt *opts, size_t n,
                      int argc, char **argv, int *help_shown);

void cr_config_usage(const char *program, const char *env_prefix, const cr_opt *opts, size_t n);

/* Frees the strings the loader stored in CR_OPT_STRING targets. */
void cr_config_free(const cr_opt *opts, size_t n);

/* Parses a whole string as a base-10 integer in [min, max]. */
cr_err cr_parse_ll(const char *s, long long min, long long max, long long *out);
cr_err cr_parse_double(const char *s, double *out);

#endif
