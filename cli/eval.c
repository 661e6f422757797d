/* cirrus eval circo | fashioniq | cirr — CIR benchmark metrics from prediction files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/eval.h"
#include "eval/run.h"

static int usage_eval(FILE *out)
{
    fprintf(out,
            "Usage: cirrus eval BENCHMARK [options] [--json]\n"
            "Computes CIR benchmark metrics from prediction files, as the official evaluations\n"
            "do. Metrics are fractions in JSON, percentages in the table.\n\n"
            "  cirrus eval circo --annotations val.json --predictions preds.json\n"
            "      mAP@5/10/25/50 over all ground truths (AP@K / min(#gt, K)), Recall@K of\n"
            "      target_img_id, semantic mAP@10 per aspect.\n"
            "      preds.json: the official submission format, {\"<query id>\": [img_id, ...]}\n"
            "      with the top-50 COCO image ids (ints) of every query, best first.\n\n"
            "  cirrus eval fashioniq --predictions preds.jsonl\n"
            "      Recall@10 and Recall@50 per category (dress, shirt, toptee), their mean,\n"
            "      and the average of R@10 and R@50. preds.jsonl: JSON Lines (or a JSON array\n"
            "      of the same objects), one query per line:\n"
            "        {\"category\": \"dress\", \"candidate\": \"B008MTHLHQ\", \"target\": "
            "\"B005X4PL1G\",\n"
            "         \"ranking\": [\"B005X4PL1G\", \"B00A0I8CUE\", ...]}\n"
            "      category: dress|shirt|toptee; target: the target image name; ranking: the\n"
            "      ranked image names (top-50 or more, no repeats). \"candidate\" (the\n"
            "      reference) is optional and, as in the official protocol, not removed.\n\n"
            "  cirrus eval cirr --annotations cap.rc2.val.json --predictions preds.json\n"
            "                   [--subset-predictions subset.json]\n"
            "      Recall@1/5/10/50 with the reference image removed from the ranking;\n"
            "      with --subset-predictions, Recall_subset@1/2/3 within img_set.members\n"
            "      (reference removed), and Avg = (R@5 + Rsubset@1) / 2. Either prediction\n"
            "      file may be given alone. Both use CIRR's submission format:\n"
            "        {\"version\": \"rc2\", \"metric\": \"recall\", \"<pairid>\": [name, ...]}\n"
            "      (top-50 names; \"metric\": \"recall_subset\" and the top-3 img_set members for\n"
            "      subset predictions — non-members are skipped, so a full list works too).\n\n"
            "Every annotated query must have predictions, no unknown query may, and no image\n"
            "may repeat within a list; any of these is an error naming the query.\n\n"
            "Options:\n"
            "  --annotations FILE         circo: val.json; cirr: cap.rc2.val.json\n"
            "  --predictions FILE         ranked predictions (format above)\n"
            "  --subset-predictions FILE  cirr only: ranked img_set members\n"
            "  --json                     print one JSON object\n\n"
            "  cirrus eval run ...        run a dataset through an endpoint (eval run --help)\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static void print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

int cli_cmd_eval(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"annotations", required_argument, NULL, 'a'},
                                         {"predictions", required_argument, NULL, 'p'},
                                         {"subset-predictions", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *bench, *ann = NULL, *pred = NULL, *subset = NULL;
    int json = ctx->json, c;
    cr_err rc;

    if (argc < 2)
        return usage_eval(stderr);
    bench = argv[1];
    if (strcmp(bench, "--help") == 0 || strcmp(bench, "-h") == 0 || strcmp(bench, "help") == 0)
        return usage_eval(stdout);
    if (strcmp(bench, "run") == 0)
        return cli_eval_run(ctx->endpoint, ctx->timeout_ms, ctx->json, argc - 1, argv + 1);
    if (strcmp(bench, "circo") != 0 && strcmp(bench, "fashioniq") != 0 &&
        strcmp(bench, "cirr") != 0) {
        cli_error("eval", "unknown benchmark '%s' (circo, fashioniq, cirr, run)", bench);
        return CLI_USAGE;
    }
    optind = 1;
    while ((c = cli_getopt(ctx, argc - 1, argv + 1, "", opts)) != -1) {
        switch (c) {
        case 'a': ann = optarg; break;
        case 'p': pred = optarg; break;
        case 's': subset = optarg; break;
        case 'j': json = 1; break;
        case 'h': return usage_eval(stdout);
        default: return usage_eval(stderr);
        }
    }
    if (optind < argc - 1) {
        cli_error("eval", "unexpected argument '%s'", argv[1 + optind]);
        return CLI_USAGE;
    }

    if (strcmp(bench, "circo") == 0) {
        cirrus_eval_circo_result r;
        if (!ann || !pred || subset) {
            cli_error("eval", "circo needs --annotations and --predictions");
            return CLI_USAGE;
        }
        rc = cirrus_eval_circo_compute(ann, pred, &r);
        if (rc) {
            cli_error("eval", "circo: %s", cr_error_message());
            return CLI_FAIL;
        }
        if (json)
            print_json(cirrus_eval_circo_json(&r));
        else
            cirrus_eval_circo_print(stdout, &r);
    } else if (strcmp(bench, "fashioniq") == 0) {
        cirrus_eval_fiq_result r;
        if (!pred || ann || subset) {
            cli_error("eval", "fashioniq needs --predictions (and no other file)");
            return CLI_USAGE;
        }
        rc = cirrus_eval_fiq_compute(pred, &r);
        if (rc) {
            cli_error("eval", "fashioniq: %s", cr_error_message());
            return CLI_FAIL;
        }
        if (json)
            print_json(cirrus_eval_fiq_json(&r));
        else
            cirrus_eval_fiq_print(stdout, &r);
    } else {
        cirrus_eval_cirr_result r;
        if (!ann || (!pred && !subset)) {
            cli_error("eval", "cirr needs --annotations and --predictions and/or "
                              "--subset-predictions");
            return CLI_USAGE;
        }
        rc = cirrus_eval_cirr_compute(ann, pred, subset, &r);
        if (rc) {
            cli_error("eval", "cirr: %s", cr_error_message());
            return CLI_FAIL;
        }
        if (json)
            print_json(cirrus_eval_cirr_json(&r));
        else
            cirrus_eval_cirr_print(stdout, &r);
    }
    return CLI_OK;
}
