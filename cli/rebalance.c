/* cirrus rebalance — moves a live cluster to a new cluster map (more groups, another
 * placement) while it serves (offline/rebalance.h): flags, a progress bar per step on a
 * terminal (one JSON line per step with --json), a summary. Killed, the same command resumes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "common/config.h"
#include "offline/rebalance.h"

#define REBAL_MAX_COORDS 64

typedef struct rebal_ui {
    int json;
    cr_progress prog;
} rebal_ui;

static void ui_begin(void *ctx, const char *stage, uint64_t total)
{
    rebal_ui *u = ctx;
    cr_progress_begin(&u->prog, stage, total, u->json);
}

static void ui_advance(void *ctx, uint64_t n)
{
    cr_progress_add(&((rebal_ui *)ctx)->prog, n);
}

static void ui_end(void *ctx, const offline_rebal_report *r)
{
    rebal_ui *u = ctx;
    if (u->prog.label)
        cr_progress_end(&u->prog);
    u->prog.label = NULL;
    if (u->json) {
        json_t *j = json_pack("{sssIsIsIsf}", "stage", r->stage, "scanned",
                              (json_int_t)r->scanned, "copied", (json_int_t)r->copied,
                              "deleted", (json_int_t)r->deleted, "seconds", r->seconds);
        if (j)
            cli_print_json(j);
    }
}

static int usage_rebalance(FILE *out)
{
    fprintf(out,
            "Usage: cirrus rebalance --map OLD.json --new-map NEW.json [--coordinator EP]...\n"
            "         [--dry-run] [--state FILE] [--batch N] [--rate ITEMS/S] [--drain-ms MS]\n"
            "         [--json]\n"
            "Moves a live cluster from the map in OLD.json (the file its coordinators load) to\n"
            "NEW.json: more groups (the old ones first, unchanged) and/or another placement.\n"
            "Only items whose group changes move, copied with their versions; meanwhile writes\n"
            "go to both owners and every query sees each item once. Then the old copies are\n"
            "deleted and OLD.json holds the new map. Every coordinator is told each step with\n"
            "the Reload op (--coordinator, repeatable; default: the map's bind address).\n"
            "Killed or failed, the same command continues (state in NEW.json.rebalance).\n"
            "--dry-run counts what would move. --rate caps items scanned per second.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

/* The map's bind address as a place to connect to (0.0.0.0 and * mean this host). */
static int bind_endpoint(const char *map_path, char *out, size_t cap)
{
    static coord_map m; /* large */
    const char *host;
    if (coord_map_load(map_path, &m) || !m.bind[0])
        return -1;
    host = strstr(m.bind, "://");
    if (host && (strncmp(host + 3, "0.0.0.0:", 8) == 0 || strncmp(host + 3, "*:", 2) == 0))
        snprintf(out, cap, "tcp://127.0.0.1%s", strchr(host + 3, ':'));
    else
        snprintf(out, cap, "%s", m.bind);
    return 0;
}

static int parse(cli_ctx *ctx, offline_rebal_opts *o, const char **coords, int argc, char **argv)
{
    static const struct option opts[] = {
        {"map", required_argument, 0, 'm'},      {"new-map", required_argument, 0, 'n'},
        {"coordinator", required_argument, 0, 'c'}, {"dry-run", no_argument, 0, 'd'},
        {"state", required_argument, 0, 's'},    {"batch", required_argument, 0, 'b'},
        {"rate", required_argument, 0, 'r'},     {"drain-ms", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    long long v;
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'm': o->map_path = optarg; break;
        case 'n': o->new_map_path = optarg; break;
        case 's': o->state_path = optarg; break;
        case 'd': o->dry_run = 1; break;
        case 'c':
            if (o->n_coordinators == REBAL_MAX_COORDS) {
                cli_error("rebalance", "at most %d --coordinator", REBAL_MAX_COORDS);
                return CLI_USAGE;
            }
            coords[o->n_coordinators++] = optarg;
            break;
        case 'b':
        case 'r':
        case 'D':
            if (cr_parse_ll(optarg, c == 'r' ? 0 : 1, c == 'b' ? 8192 : 1000000000ll, &v)) {
                cli_error("rebalance", "%s: %s", c == 'b' ? "--batch" : c == 'r' ? "--rate"
                                                                               : "--drain-ms",
                          cr_error_message());
                return CLI_USAGE;
            }
            if (c == 'b') o->batch = (uint32_t)v;
            else if (c == 'r') o->rate = (uint64_t)v;
            else o->drain_ms = (uint32_t)v;
            break;
        case 'h': return usage_rebalance(stdout);
        default: return usage_rebalance(stderr);
        }
    }
    if (optind < argc) {
        cli_error("rebalance", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (!o->map_path || !o->new_map_path) {
        cli_error("rebalance", "--map and --new-map are required");
        return usage_rebalance(stderr);
    }
    return -1;
}

static void print_summary(const offline_rebal_opts *o, const offline_rebal_summary *s, int json)
{
    double secs = s->seconds[0] + s->seconds[1] + s->seconds[2];
    if (json) {
        json_t *j = json_pack("{sssbsisisssssIsIsIsbsb}", "stage", "summary", "dry_run",
                              o->dry_run, "old_groups", s->old_groups, "new_groups",
                              s->new_groups, "old_placement", s->old_placement,
                              "new_placement", s->new_placement, "scanned",
                              (json_int_t)s->scanned, "copied", (json_int_t)s->copied,
                              "deleted", (json_int_t)s->deleted, "resumed", s->resumed,
                              "finished_before", s->finished_before);
        if (j && o->dry_run) {
            json_t *to = json_array();
            for (int g = 0; g < s->new_groups; g++)
                json_array_append_new(to, json_integer((json_int_t)s->moving_to[g]));
            json_object_set_new(j, "moving", json_integer((json_int_t)s->moving));
            json_object_set_new(j, "moving_to", to);
        }
        if (j && !o->dry_run) {
            json_object_set_new(j, "seconds", json_real(secs));
            json_object_set_new(j, "copy_seconds", json_real(s->seconds[0]));
        }
        if (j)
            cli_print_json(j);
        return;
    }
    if (o->dry_run) {
        printf("%d -> %d groups, %s -> %s: %llu items would move\n", s->old_groups,
               s->new_groups, s->old_placement, s->new_placement,
               (unsigned long long)s->moving);
        for (int g = 0; g < s->new_groups; g++)
            if (s->moving_to[g])
                printf("  to group %d: %llu\n", g, (unsigned long long)s->moving_to[g]);
    } else if (s->finished_before) {
        printf("this move was finished by an earlier run (remove its state file to start "
               "another)\n");
    } else {
        printf("moved %d -> %d groups (%s -> %s)%s: %llu items copied, %llu old copies "
               "deleted, %.1f s (copy %.1f s)\n",
               s->old_groups, s->new_groups, s->old_placement, s->new_placement,
               s->resumed ? ", resumed" : "", (unsigned long long)s->copied,
               (unsigned long long)s->deleted, secs, s->seconds[0]);
    }
}

int cli_cmd_rebalance(cli_ctx *ctx, int argc, char **argv)
{
    offline_rebal_opts o = offline_rebal_default_opts();
    const char *coords[REBAL_MAX_COORDS];
    char bound[COORD_MAX_ENDPOINT + 16];
    rebal_ui ui = {0};
    offline_rebal_events ev = {&ui, ui_begin, ui_advance, ui_end};
    offline_rebal_summary sum;
    int rc = parse(ctx, &o, coords, argc, argv);
    if (rc >= 0)
        return rc;
    if (!o.n_coordinators && bind_endpoint(o.map_path, bound, sizeof bound) == 0)
        coords[o.n_coordinators++] = bound;
    o.coordinators = coords;
    o.timeout_ms = ctx->timeout_ms > 30000 ? ctx->timeout_ms : 30000;
    ui.json = ctx->json;
    if (offline_rebalance(&o, &ev, &sum)) {
        if (ui.prog.label && ui.prog.tty)
            fputc('\n', stderr);
        cli_error("rebalance", "%s", cr_error_message());
        if (sum.resumed || sum.copied)
            fprintf(stderr, "run the same command again to continue\n");
        return CLI_FAIL;
    }
    print_summary(&o, &sum, ctx->json);
    return CLI_OK;
}
