/* cirrus eval run — a CIR benchmark through a live endpoint (eval/run.h), from the command
 * line, with progress bars. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "common/config.h"
#include "common/log.h"
#include "eval/run.h"

static void prog_begin(void *ctx, const char *label, uint64_t total)
{
    cr_progress_begin(ctx, label, total, 0);
}

static void prog_add(void *ctx, uint64_t n)
{
    cr_progress_add(ctx, n);
}

static void prog_end(void *ctx)
{
    cr_progress_end(ctx);
}

static int usage_run(FILE *out)
{
    fprintf(out,
        "Usage: cirrus [--endpoint EP] [--timeout MS] [--json] eval run\n"
        "           --dataset circo|fashioniq|cirr --root DIR [--split val|test]\n"
        "           [--method searle|combiner|sum|text|image] [--index-catalog] [--out DIR]\n"
        "           [--k 50] [--batch 16] [--window 16] [--quiet]\n"
        "Runs a CIR benchmark through a live endpoint (cirrus serve or a coordinator): every\n"
        "query is a composed search whose reference is the reference image's catalog id.\n"
        "Writes the official prediction files into --out and, when the split has ground\n"
        "truth, prints the metrics (see `cirrus eval --help` for the formats).\n\n"
        "  --dataset NAME     circo | fashioniq | cirr\n"
        "  --root DIR         the dataset as its authors publish it:\n"
        "                       circo: annotations/{val,test}.json,\n"
        "                              COCO2017_unlabeled/unlabeled2017/<12-digit id>.jpg\n"
        "                       fashioniq: captions/cap.<cat>.<split>.json,\n"
        "                              image_splits/split.<cat>.<split>.json, images/<name>.png\n"
        "                       cirr: cirr/captions/cap.rc2.<split>.json,\n"
        "                              cirr/image_splits/split.rc2.<split>.json, dev/, test1/\n"
        "  --split S          val (default) | test (CIRR: test1)\n"
        "  --method M         composition method (default: the server's)\n"
        "  --index-catalog    first upsert the split's gallery images (ids = image ids/names)\n"
        "  --out DIR          where prediction files go (default .)\n"
        "  --k K              ranking length (default 50)\n"
        "  --batch N          images per upsert (default 16)\n"
        "  --window N         searches in flight (default 16)\n"
        "  --quiet            no progress bars\n"
        "The request timeout is the larger of --timeout and 60 s. Exit status: 0 when every\n"
        "image and query succeeded, 1 when anything failed (reported on stderr), 2 on a bad\n"
        "command line.\n");
    return out == stdout ? 0 : 2;
}

int cli_eval_run(const char *endpoint, uint32_t timeout_ms, int json, int argc,
                        char **argv)
{
    static const struct option opts[] = {
        {"dataset", required_argument, NULL, 'd'}, {"root", required_argument, NULL, 'r'},
        {"split", required_argument, NULL, 's'},   {"method", required_argument, NULL, 'm'},
        {"index-catalog", no_argument, NULL, 'i'}, {"out", required_argument, NULL, 'o'},
        {"k", required_argument, NULL, 'k'},       {"batch", required_argument, NULL, 'b'},
        {"window", required_argument, NULL, 'w'},  {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'j'},          {"help", no_argument, NULL, 'h'},
        /* the tool's global options, also accepted after the command (cli/util.c) */
        {"endpoint", required_argument, NULL, 'E'}, {"timeout", required_argument, NULL, 'T'},
        {"log", required_argument, NULL, 'L'},     {NULL, 0, NULL, 0}};
    static const char *const methods[] = {"default", "searle", "combiner", "sum", "text",
                                          "image"};
    cirrus_eval_run_params p = cirrus_eval_run_default_params();
    cirrus_eval_run_report rep;
    cirrus_client *c = NULL;
    const char *dataset = NULL;
    long long v;
    cr_progress prog;
    int ch, ret = 1, quiet = 0;
    cr_err rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': dataset = optarg; break;
        case 'r': p.root = optarg; break;
        case 's': p.split = optarg; break;
        case 'o': p.out_dir = optarg; break;
        case 'i': p.index_catalog = 1; break;
        case 'q': quiet = 1; break;
        case 'j': json = 1; break;
        case 'E': endpoint = optarg; break;
        case 'T':
            if (cr_parse_ll(optarg, 1, 3600000, &v)) {
                fprintf(stderr, "cirrus eval run: --timeout: %s\n", cr_error_message());
                return 2;
            }
            timeout_ms = (uint32_t)v;
            break;
        case 'L':
            if (cr_log_level_parse(optarg) < 0) {
                fprintf(stderr, "cirrus eval run: --log: unknown level '%s'\n", optarg);
                return 2;
            }
            cr_log_set_level((cr_log_level)cr_log_level_parse(optarg));
            break;
        case 'm':
            p.method = -1;
            for (int i = 0; i < (int)(sizeof methods / sizeof methods[0]); i++)
                if (strcmp(optarg, methods[i]) == 0)
                    p.method = i; /* the order of ComposeMethod */
            if (p.method < 0) {
                fprintf(stderr, "cirrus eval run: --method must be "
                                "searle|combiner|sum|text|image\n");
                return 2;
            }
            break;
        case 'k': case 'b': case 'w':
            if (cr_parse_ll(optarg, 1, ch == 'k' ? 999 : ch == 'b' ? 256 : CIRRUS_EVAL_RUN_MAX_WINDOW, &v)) {
                fprintf(stderr, "cirrus eval run: --%s: %s\n",
                        ch == 'k' ? "k" : ch == 'b' ? "batch" : "window", cr_error_message());
                return 2;
            }
            *(ch == 'k' ? &p.k : ch == 'b' ? &p.batch : &p.window) = (int)v;
            break;
        case 'h': return usage_run(stdout);
        default: return usage_run(stderr);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cirrus eval run: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    p.timeout_ms = timeout_ms > 60000 ? timeout_ms : 60000;
    if (!dataset || !p.root) {
        fprintf(stderr, "cirrus eval run: --dataset and --root are required\n");
        return usage_run(stderr);
    }
    if (cirrus_eval_run_dataset_parse(dataset, &p.dataset)) {
        fprintf(stderr, "cirrus eval run: %s\n", cr_error_message());
        return 2;
    }
    quiet |= json;
    if (!quiet) {
        p.progress.ctx = &prog;
        p.progress.begin = prog_begin;
        p.progress.add = prog_add;
        p.progress.end = prog_end;
    }
    if ((rc = cirrus_client_open(&c, endpoint, NULL))) {
        fprintf(stderr, "cirrus eval run: %s (endpoint %s)\n", cr_error_message(), endpoint);
        return 1;
    }
    rc = cirrus_eval_run_execute(c, &p, &rep);
    if (rc < 0) {
        if (rc == CR_ERR_UNAVAILABLE || rc == CR_ERR_NET)
            fprintf(stderr, "cirrus eval run: %s (endpoint %s)\n", cr_error_message(),
                    endpoint);
        else
            fprintf(stderr, "cirrus eval run: %s\n", cr_error_message());
        goto out;
    }
    if (json) {
        json_t *j = cirrus_eval_run_json(&rep);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(j);
    } else {
        cirrus_eval_run_print(stdout, &rep);
    }
    if (rep.n_failed)
        fprintf(stderr, "cirrus eval run: %zu of %zu queries failed\n", rep.n_failed,
                rep.n_queries);
    if (rep.n_index_failed)
        fprintf(stderr, "cirrus eval run: %zu of %zu gallery images failed\n",
                rep.n_index_failed, rep.n_images);
    ret = rep.n_failed || rep.n_index_failed ? 1 : 0;
out:
    cirrus_client_close(&c);
    return ret;
}
