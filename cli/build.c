/* cirrus build — shard directories from vectors or a catalog, without servers (offline/build.h):
 * the command's flags, a progress bar per stage on a terminal (one JSON line per stage with
 * --json), bad records on stderr as they come and a summary at the end. Exit status 1 when
 * any record was bad or the build failed (a rerun of the same command resumes it). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "common/config.h"
#include "offline/build.h"

#define BUILD_SHOW_BAD 20 /* bad records shown as they come, and in the summary */

typedef struct build_ui {
    int json;
    cr_progress prog;
    uint64_t bad_seen;
} build_ui;

static void ui_begin(void *ctx, const char *stage, uint64_t total)
{
    build_ui *u = ctx;
    cr_progress_begin(&u->prog, stage, total, u->json || total == 0);
}

static void ui_advance(void *ctx, uint64_t n)
{
    cr_progress_add(&((build_ui *)ctx)->prog, n);
}

static void ui_end(void *ctx, const offline_stage_report *r)
{
    build_ui *u = ctx;
    if (u->prog.label && strcmp(u->prog.label, r->stage) == 0)
        cr_progress_end(&u->prog);
    u->prog.label = NULL;
    if (u->json) {
        json_t *j = json_pack("{sssIsIsIsbsf}", "stage", r->stage, "items", (json_int_t)r->items,
                              "failed", (json_int_t)r->failed, "resumed_at",
                              (json_int_t)r->resumed_at, "skipped", r->skipped, "seconds",
                              r->seconds);
        if (j)
            cli_print_json(j);
    } else if (r->skipped) {
        fprintf(stderr, "%s: nothing to do\n", r->stage);
    }
}

static void ui_bad(void *ctx, uint64_t line, const char *id, const char *why)
{
    build_ui *u = ctx;
    if (u->bad_seen++ < BUILD_SHOW_BAD)
        fprintf(stderr, "%scirrus build: line %llu (%s): %s\n", u->prog.tty ? "\n" : "",
                (unsigned long long)line, id ? id : "?", why);
}

static int usage_build(FILE *out)
{
    fprintf(out,
            "Usage: cirrus build --out DIR --groups G [--group g] --index FACTORY "
            "--metric ip|l2\n"
            "         (--vectors FILE.fvecs|.npy [--attrs FILE.jsonl] [--id-prefix P]\n"
            "          | --catalog FILE.jsonl --images DIR --model M [--phi FILE] "
            "[--preprocess P])\n"
            "         [--train-size N] [--template FILE] [--threads T] [--placement NAME]\n"
            "         [--checkpoint N] [--json]\n"
            "Writes DIR/group-G/ shard directories (for cirrus-shard --dir) and DIR/cluster.json.\n"
            "Items go to group jump(fnv1a64(id), G) (--placement legacy-fnv-jump for a cluster\n"
            "made before placements had names). --group g builds one group (e.g. from\n"
            "$(JOB_COMPLETION_INDEX)). Killed, the same command resumes. Bad input lines are\n"
            "reported, skipped, listed in DIR/.build/group-G.errors; the exit status is 1 then.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static int parse_num(const char *flag, const char *arg, long long lo, long long hi, long long *v)
{
    if (cr_parse_ll(arg, lo, hi, v)) {
        cli_error("build", "%s: %s", flag, cr_error_message());
        return -1;
    }
    return 0;
}

static int build_parse(cli_ctx *ctx, offline_build_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},        {"groups", required_argument, 0, 'G'},
        {"group", required_argument, 0, 'g'},      {"index", required_argument, 0, 'x'},
        {"metric", required_argument, 0, 'm'},     {"vectors", required_argument, 0, 'v'},
        {"attrs", required_argument, 0, 'a'},      {"id-prefix", required_argument, 0, 'p'},
        {"catalog", required_argument, 0, 'c'},    {"images", required_argument, 0, 'i'},
        {"model", required_argument, 0, 'M'},      {"phi", required_argument, 0, 'P'},
        {"preprocess", required_argument, 0, 'r'}, {"train-size", required_argument, 0, 't'},
        {"template", required_argument, 0, 'T'},   {"threads", required_argument, 0, 'n'},
        {"placement", required_argument, 0, 'L'},  {"checkpoint", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    long long v;
    int c;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'o': o->out = optarg; break;
        case 'x': o->factory = optarg; break;
        case 'v': o->vectors = optarg; break;
        case 'a': o->attrs = optarg; break;
        case 'p': o->id_prefix = optarg; break;
        case 'c': o->catalog = optarg; break;
        case 'i': o->images = optarg; break;
        case 'M': o->model = optarg; break;
        case 'P': o->phi = optarg; break;
        case 'r': o->preprocess = optarg; break;
        case 'T': o->template_path = optarg; break;
        case 'L': o->placement = optarg; break;
        case 'm':
            if (strcmp(optarg, "ip") != 0 && strcmp(optarg, "l2") != 0) {
                cli_error("build", "--metric must be ip or l2");
                return CLI_USAGE;
            }
            o->metric_l2 = strcmp(optarg, "l2") == 0;
            break;
        case 'G':
        case 'g':
        case 't':
        case 'n':
        case 'k':
            if (parse_num(c == 'G' ? "--groups" : c == 'g' ? "--group" : c == 't' ? "--train-size"
                                               : c == 'n' ? "--threads" : "--checkpoint",
                          optarg, c == 'g' || c == 'n' ? 0 : 1,
                          c == 'G' || c == 'g' ? 256 : c == 'n' ? 1024 : 1000000000000ll, &v))
                return CLI_USAGE;
            if (c == 'G') o->groups = (int)v;
            else if (c == 'g') o->group = (int)v;
            else if (c == 't') o->train_size = v;
            else if (c == 'n') o->threads = (int)v;
            else o->checkpoint = (uint64_t)v;
            break;
        case 'h': return usage_build(stdout);
        default: return usage_build(stderr);
        }
    }
    if (optind < argc) {
        cli_error("build", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (!o->out || !o->groups || !o->factory || (!o->vectors && !o->catalog)) {
        cli_error("build", "--out, --groups, --index and --vectors or --catalog are required");
        return usage_build(stderr);
    }
    return -1;
}

/* The first bad records of the groups built, from their error logs. */
static json_t *bad_list(const offline_build_opts *o, int print)
{
    json_t *list = json_array();
    size_t shown = 0;
    for (int g = 0; g < o->groups && shown < BUILD_SHOW_BAD; g++) {
        char path[4200], *line = NULL;
        size_t cap = 0;
        ssize_t len;
        FILE *f;
        if (o->group >= 0 && g != o->group)
            continue;
        offline_build_errors_path(o->out, g, path, sizeof path);
        if (!(f = fopen(path, "r")))
            continue;
        while (shown < BUILD_SHOW_BAD && (len = getline(&line, &cap, f)) > 0) {
            line[len - 1] = line[len - 1] == '\n' ? 0 : line[len - 1];
            if (print)
                fprintf(stderr, "  %s\n", line);
            json_array_append_new(list, json_string(line));
            shown++;
        }
        free(line);
        fclose(f);
    }
    return list;
}

static void print_summary(const offline_build_opts *o, const offline_build_summary *s, int json)
{
    json_t *bad = bad_list(o, 0);
    if (json) {
        json_t *j = json_pack("{sssIsIsIsisO}", "stage", "summary", "records",
                              (json_int_t)s->records, "items", (json_int_t)s->items, "failed",
                              (json_int_t)s->failed, "groups", s->groups_built, "bad", bad);
        if (j)
            cli_print_json(j);
    } else {
        printf("built %d group%s in %s: %llu items from %llu records, %llu bad\n",
               s->groups_built, s->groups_built == 1 ? "" : "s", o->out,
               (unsigned long long)s->items, (unsigned long long)s->records,
               (unsigned long long)s->failed);
        if (s->failed) {
            fprintf(stderr, "bad records%s:\n", s->failed > BUILD_SHOW_BAD ? " (the first)" : "");
            json_decref(bad_list(o, 1));
            fprintf(stderr, "all of them in %s/.build/group-*.errors\n", o->out);
        }
    }
    json_decref(bad);
}

int cli_cmd_build(cli_ctx *ctx, int argc, char **argv)
{
    offline_build_opts o = offline_build_default_opts();
    build_ui ui = {0};
    offline_build_events ev = {&ui, ui_begin, ui_advance, ui_end, ui_bad};
    offline_build_summary sum;
    int rc = build_parse(ctx, &o, argc, argv);
    if (rc >= 0)
        return rc;
    ui.json = ctx->json; /* --json may come after the command */
    if (offline_build_run(&o, &ev, &sum)) {
        if (ui.prog.label && ui.prog.tty)
            fputc('\n', stderr);
        cli_error("build", "%s", cr_error_message());
        return CLI_FAIL;
    }
    print_summary(&o, &sum, ctx->json);
    return sum.failed ? CLI_FAIL : CLI_OK;
}
