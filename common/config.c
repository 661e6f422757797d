#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

cr_err cr_parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;
    if (!s || !*s)
        return cr_error_set(CR_ERR_INVALID, "empty number");
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return cr_error_set(CR_ERR_INVALID, "'%s' is not an integer", s);
    if (v < min || v > max)
        return cr_error_set(CR_ERR_INVALID, "%lld is out of range %lld..%lld", v, min, max);
    *out = v;
    return CR_OK;
}

cr_err cr_parse_double(const char *s, double *out)
{
    char *end = NULL;
    double v;
    if (!s || !*s)
        return cr_error_set(CR_ERR_INVALID, "empty number");
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return cr_error_set(CR_ERR_INVALID, "'%s' is not a finite number", s);
    *out = v;
    return CR_OK;
}

static cr_err parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = 1;
            return CR_OK;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = 0;
            return CR_OK;
        }
    }
    return cr_error_set(CR_ERR_INVALID, "'%s' is not a boolean (true/false)", s);
}

static cr_err opt_assign(const cr_opt *o, const char *value, const char *source)
{
    cr_err rc = CR_OK;
    switch (o->type) {
    case CR_OPT_STRING: {
        char *copy = strdup(value);
        if (!copy)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        free(*(char **)o->target);
        *(char **)o->target = copy;
        break;
    }
    case CR_OPT_INT:
        rc = cr_parse_ll(value, o->min, o->max, (long long *)o->target);
        break;
    case CR_OPT_DOUBLE:
        rc = cr_parse_double(value, (double *)o->target);
        break;
    case CR_OPT_BOOL:
        rc = parse_bool(value, (int *)o->target);
        break;
    }
    if (rc)
        return cr_error_wrap(rc, "option '%s' from %s", o->name, source);
    return CR_OK;
}

static const cr_opt *opt_find(const cr_opt *opts, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static char *trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static cr_err load_file(const char *path, const cr_opt *opts, size_t n, unsigned char *set)
{
    char line[4096];
    int lineno = 0;
    cr_err rc = CR_OK;
    FILE *f = fopen(path, "r");
    if (!f)
        return cr_error_set(CR_ERR_IO, "config file %s: %s", path, strerror(errno));
    while (!rc && fgets(line, sizeof line, f)) {
        char *key, *val, *eq;
        const cr_opt *o;
        lineno++;
        key = trim(line);
        if (!*key || *key == '#')
            continue;
        eq = strchr(key, '=');
        if (!eq) {
            rc = cr_error_set(CR_ERR_INVALID, "%s:%d: expected 'name = value'", path, lineno);
            break;
        }
        *eq = '\0';
        val = trim(eq + 1);
        key = trim(key);
        o = opt_find(opts, n, key, strlen(key));
        if (!o) {
            rc = cr_error_set(CR_ERR_INVALID, "%s:%d: unknown option '%s'", path, lineno, key);
            break;
        }
        rc = opt_assign(o, val, path);
        set[o - opts] = 1;
    }
    fclose(f);
    return rc;
}

static cr_err load_env(const char *prefix, const cr_opt *opts, size_t n, unsigned char *set)
{
    char name[256];
    for (size_t i = 0; i < n; i++) {
        const char *v;
        size_t len = (size_t)snprintf(name, sizeof name, "%s_%s", prefix, opts[i].name);
        for (size_t j = 0; j < len && j < sizeof name; j++)
            name[j] = name[j] == '-' ? '_' : (char)toupper((unsigned char)name[j]);
        v = getenv(name);
        if (v) {
            cr_err rc = opt_assign(&opts[i], v, name);
            if (rc)
                return rc;
            set[i] = 1;
        }
    }
    return CR_OK;
}

void cr_config_usage(const char *program, const char *env_prefix, const cr_opt *opts, size_t n)
{
    static const char *const types[] = {"STR", "N", "X", ""};
    printf("Usage: %s [--config FILE] [options]\n\nOptions (also %s_<NAME> in the environment "
           "or 'name = value' in the config file):\n",
           program, env_prefix);
    for (size_t i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", opts[i].name, types[opts[i].type]);
        printf("  %-26s %s", left, opts[i].help);
        if (opts[i].required)
            printf(" (required)");
        else if (opts[i].defval)
            printf(" (default: %s)", opts[i].defval);
        printf("\n");
    }
    printf("  %-26s %s\n", "--config FILE", "read options from FILE");
    printf("  %-26s %s\n", "--help", "show this help");
}

static void log_values(const char *program, const cr_opt *opts, size_t n)
{
    char buf[2048];
    size_t off = 0;
    for (size_t i = 0; i < n && off < sizeof buf; i++) {
        const cr_opt *o = &opts[i];
        int w = 0;
        switch (o->type) {
        case CR_OPT_STRING: {
            const char *s = *(char **)o->target;
            w = snprintf(buf + off, sizeof buf - off, " %s=%s", o->name, s ? s : "(none)");
            break;
        }
        case CR_OPT_INT:
            w = snprintf(buf + off, sizeof buf - off, " %s=%lld", o->name,
                         *(long long *)o->target);
            break;
        case CR_OPT_DOUBLE:
            w = snprintf(buf + off, sizeof buf - off, " %s=%g", o->name, *(double *)o->target);
            break;
        case CR_OPT_BOOL:
            w = snprintf(buf + off, sizeof buf - off, " %s=%s", o->name,
                         *(int *)o->target ? "true" : "false");
            break;
        }
        if (w > 0)
            off += (size_t)w;
    }
    CR_INFO(program, "config:%s", buf);
}

static void init_targets(const cr_opt *opts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (opts[i].type) {
        case CR_OPT_STRING: *(char **)opts[i].target = NULL; break;
        case CR_OPT_INT: *(long long *)opts[i].target = 0; break;
        case CR_OPT_DOUBLE: *(double *)opts[i].target = 0; break;
        case CR_OPT_BOOL: *(int *)opts[i].target = 0; break;
        }
    }
}

cr_err cr_config_load(const char *program, const char *env_prefix, const cr_opt *opts, size_t n,
                      int argc, char **argv, int *help_shown)
{
    unsigned char *set = calloc(n ? n : 1, 1);
    const char *file = NULL;
    cr_err rc = CR_OK;

    *help_shown = 0;
    if (!set)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    init_targets(opts, n);
    for (size_t i = 0; i < n && !rc; i++)
        if (opts[i].defval)
            rc = opt_assign(&opts[i], opts[i].defval, "default");
    for (int i = 1; i < argc && !rc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cr_config_usage(program, env_prefix, opts, n);
            *help_shown = 1;
            goto out;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                rc = cr_error_set(CR_ERR_INVALID, "--config needs a file");
            else
                file = argv[++i];
        }
    }
    if (!rc && file)
        rc = load_file(file, opts, n, set);
    if (!rc)
        rc = load_env(env_prefix, opts, n, set);
    for (int i = 1; i < argc && !rc; i++) {
        const char *arg = argv[i], *eq;
        const cr_opt *o;
        size_t len;
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            rc = cr_error_set(CR_ERR_INVALID, "unexpected argument '%s' (see --help)", arg);
            break;
        }
        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        o = opt_find(opts, n, arg, len);
        if (!o) {
            rc = cr_error_set(CR_ERR_INVALID, "unknown option '--%.*s' (see --help)", (int)len,
                              arg);
            break;
        }
        if (eq)
            rc = opt_assign(o, eq + 1, "command line");
        else if (o->type == CR_OPT_BOOL)
            rc = opt_assign(o, "true", "command line");
        else if (i + 1 >= argc)
            rc = cr_error_set(CR_ERR_INVALID, "option '--%s' needs a value", o->name);
        else
            rc = opt_assign(o, argv[++i], "command line");
        set[o - opts] = 1;
    }
    for (size_t i = 0; i < n && !rc; i++)
        if (opts[i].required && !set[i])
            rc = cr_error_set(CR_ERR_INVALID, "option '--%s' is required (see --help)",
                              opts[i].name);
    if (!rc)
        log_values(program, opts, n);
out:
    free(set);
    return rc;
}

void cr_config_free(const cr_opt *opts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].type == CR_OPT_STRING) {
            free(*(char **)opts[i].target);
            *(char **)opts[i].target = NULL;
        }
}
