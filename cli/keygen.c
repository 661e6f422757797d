/* cirrus keygen — the keys of docs/security.md: a CURVE key pair for a node or a client
 * (--out NAME: NAME.key, mode 0600, and NAME.pub), or an HTTP API key (--http ROLES: a random
 * bearer token and the line of the --http-keys file that holds its SHA-256). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/curve.h"
#include "gateway/auth.h"

static int usage(FILE *out)
{
    fprintf(out,
            "Usage: cirrus keygen --out NAME\n"
            "       cirrus keygen --http ROLE[,ROLE...] [--name NAME] [--append KEYS_FILE]\n"
            "--out: a CURVE key pair for --curve-secret (NAME.key, mode 0600: keep it on its\n"
            "node) and its public key NAME.pub (put it in servers' --curve-allow directories,\n"
            "or as curve_pub in the cluster map). Prints the public key.\n"
            "--http: an HTTP API key with roles read, write, admin (sets, not levels). Prints\n"
            "the token (shown once: the server keeps only its SHA-256) and, without --append,\n"
            "the line for the --http-keys file; with --append, adds that line to KEYS_FILE\n"
            "(created with mode 0600) and prints only the token. Send the token as\n"
            "'Authorization: Bearer TOKEN'; SIGHUP makes a server read its keys file again.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static int curve_pair(const char *name)
{
    char pub[CR_CURVE_KEY_LEN + 1];
    if (cr_curve_write_pair(name, pub)) {
        cli_error("keygen", "%s", cr_error_message());
        return CLI_FAIL;
    }
    printf("%s\n", pub);
    return CLI_OK;
}

/* Appends `line` to path (created 0600) in one write. */
static int append_line(const char *path, const char *line)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    size_t n = strlen(line);
    int ok = fd >= 0 && write(fd, line, n) == (ssize_t)n;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    if (!ok)
        cli_error("keygen", "cannot append to %s: %s", path, strerror(errno));
    return ok ? CLI_OK : CLI_FAIL;
}

static int http_key(const char *roles, const char *name, const char *append)
{
    char token[96], hash[GW_AUTH_HASH_HEX], line[256];
    unsigned set;
    int ret = CLI_OK;
    if (gw_auth_roles_parse(roles, &set) || gw_auth_token_new(token, sizeof token) ||
        gw_auth_hash(token, hash)) {
        cli_error("keygen", "%s", cr_error_message());
        return CLI_USAGE;
    }
    if (name && (!name[0] || strcspn(name, " \t\n") != strlen(name) || strlen(name) > 63)) {
        cli_error("keygen", "--name must be one word of at most 63 characters");
        return CLI_USAGE;
    }
    snprintf(line, sizeof line, "%s %s %s\n", roles, hash, name ? name : "unnamed");
    if (append)
        ret = append_line(append, line);
    if (ret == CLI_OK)
        printf("%s\n%s", token, append ? "" : line);
    memset(token, 0, sizeof token);
    return ret;
}

int cli_cmd_keygen(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},    {"http", required_argument, 0, 'H'},
        {"name", required_argument, 0, 'n'},   {"append", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *out = NULL, *roles = NULL, *name = NULL, *append = NULL;
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'H': roles = optarg; break;
        case 'n': name = optarg; break;
        case 'a': append = optarg; break;
        case 'h': return usage(stdout);
        default: return usage(stderr);
        }
    }
    if (!out == !roles || optind < argc) {
        cli_error("keygen", "give --out NAME or --http ROLES");
        return usage(stderr);
    }
    return out ? curve_pair(out) : http_key(roles, name, append);
}
