/* run.h — runs a composed-image-retrieval benchmark through a live cirrus endpoint
 * (part of libcirrus; what `cirrus eval run` calls).
 *
 * Reads CIRCO, FashionIQ or CIRR from the directory layout their authors publish, optionally
 * indexes the dataset's gallery images through the endpoint (batched Upserts with image bytes,
 * the server encodes them), runs every query as a composed search whose reference is the
 * reference image's catalog id (so the stored vector is used), writes the predictions in the
 * official submission formats, and, for splits with ground truth, computes the metrics with
 * the cirrus_eval_* functions of eval.h.
 *
 *   cirrus_client *c;            // cirrus_client_open(&c, "tcp://127.0.0.1:7700", NULL)
 *   cirrus_eval_run_params p = cirrus_eval_run_default_params();
 *   p.dataset = CIRRUS_EVAL_RUN_CIRR;
 *   p.root = "/data/CIRR";
 *   p.out_dir = "preds";
 *   cirrus_eval_run_report rep;
 *   if (cirrus_eval_run_execute(c, &p, &rep) < 0) die(cr_error_message());
 *   cirrus_eval_run_print(stdout, &rep);   // or cirrus_eval_run_json(&rep)
 *   ... rep.n_failed + rep.n_index_failed say whether anything went wrong ...
 *
 * Dataset layouts (ROOT = params.root; alternatives accepted are listed after "or"):
 *
 *   CIRCO     ROOT/annotations/{val,test}.json
 *             ROOT/COCO2017_unlabeled/unlabeled2017/<12-digit id>.jpg
 *               or ROOT/unlabeled2017/, or ROOT/images/
 *             ROOT/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json (the gallery
 *               list: "images": [{"id", "file_name"}]), or ROOT/annotations/
 *               image_info_unlabeled2017.json; when absent, every image file in the image
 *               directory whose name is a decimal number is the gallery.
 *             Catalog ids are the COCO ids in decimal ("243611"); predictions are those ints.
 *             The reference is not removed from the ranking (SEARLE / CIRCO protocol).
 *   FashionIQ ROOT/captions/cap.{dress,shirt,toptee}.{val,test,train}.json
 *             ROOT/image_splits/split.{dress,shirt,toptee}.{split}.json
 *             ROOT/images/<name>.png (or .jpg, .jpeg, .webp)
 *             A category whose caption file is missing is skipped (at least one must exist).
 *             Catalog ids are the image names; each indexed image carries the attribute
 *             `category` (the FashionIQ categories whose split lists it) and every query is
 *             filtered to its category's gallery, as the CLIP4Cir / SEARLE validation does.
 *             The two captions are stripped of leading/trailing " .?," and sent as caption and
 *             caption2 (the server averages "{c1} and {c2}" and the reverse). The reference is
 *             not removed from the ranking.
 *   CIRR      ROOT/cirr/captions/cap.rc2.{val,test1}.json
 *             ROOT/cirr/image_splits/split.rc2.{split}.json (image name -> path relative to
 *             ROOT, e.g. "./dev/dev-245-2-img0.png"); ROOT may also be the `cirr` directory
 *             itself (paths are then tried relative to ROOT and to its parent).
 *             Split "test" means "test1". Catalog ids are the image names; each indexed image
 *             carries the attribute `name` (= its id) so that the subset ranking (img_set
 *             members) can be asked for with a filter. The reference is removed from both
 *             rankings (k + 1 asked for).
 *
 * Errors: a missing or malformed annotation/split file fails the run (CR_ERR_IO /
 * CR_ERR_INVALID, the message names the file). A gallery image that cannot be read or
 * indexed, and a query that fails (e.g. its reference is not in the catalog), is reported on
 * params.log, counted in the report, and the run continues: such a query gets an empty
 * ranking in the prediction files (it scores 0).
 *
 * Thread rules: the client handle is used by this thread only for the duration of the call.
 */
#ifndef CIRRUS_EVAL_RUN_H
#define CIRRUS_EVAL_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "client/client.h"
#include "eval/eval.h"
#include "common/err.h"

typedef enum cirrus_eval_run_dataset {
    CIRRUS_EVAL_RUN_CIRCO = 0,
    CIRRUS_EVAL_RUN_FASHIONIQ = 1,
    CIRRUS_EVAL_RUN_CIRR = 2
} cirrus_eval_run_dataset;

#define CIRRUS_EVAL_RUN_PATH_MAX 4096

#define CIRRUS_EVAL_RUN_MAX_WINDOW 256 /* searches in flight at most */

/* Progress of the two long phases ("index", "queries"); any callback may be NULL. */
typedef struct cirrus_eval_progress {
    void *ctx;
    void (*begin)(void *ctx, const char *label, uint64_t total);
    void (*add)(void *ctx, uint64_t n);
    void (*end)(void *ctx);
} cirrus_eval_progress;

typedef struct cirrus_eval_run_params {
    cirrus_eval_run_dataset dataset;
    const char *root;         /* dataset directory (required) */
    const char *split;        /* "val" (default) | "test" | "train"; CIRR "test" = "test1" */
    int method;               /* a Cirrus__V1__ComposeMethod; 0 = the server's default */
    int index_catalog;        /* first upsert the gallery images */
    const char *out_dir;      /* where prediction files go; created if missing ("." default) */
    int k;                    /* ranking length written (default 50, 1..999) */
    int batch;                /* images per Upsert (default 16) */
    int window;               /* searches in flight (default 16) */
    uint32_t timeout_ms;      /* per request (default 30000) */
    cirrus_eval_progress progress; /* optional: told as images are indexed, queries run */
    FILE *log;                /* per-item problems; NULL = stderr */
} cirrus_eval_run_params;

cirrus_eval_run_params cirrus_eval_run_default_params(void);

/* "circo" | "fashioniq" | "cirr" -> *out; CR_ERR_INVALID otherwise. */
cr_err cirrus_eval_run_dataset_parse(const char *name, cirrus_eval_run_dataset *out);

/* "circo", "fashioniq", "cirr"; static storage. */
const char *cirrus_eval_run_dataset_name(cirrus_eval_run_dataset d);

typedef struct cirrus_eval_run_report {
    cirrus_eval_run_dataset dataset;
    char split[16];              /* as used on disk ("test1" for CIRR test) */
    size_t n_images;             /* gallery images found (with index_catalog) */
    size_t n_indexed;            /* ... of which upserted */
    size_t n_index_failed;       /* ... unreadable or refused by the server */
    size_t n_queries;            /* annotated queries */
    size_t n_failed;             /* queries whose search failed (empty ranking written) */
    size_t n_missing_reference;  /* ... of which: reference not in the catalog */
    size_t n_subset_fallback;    /* CIRR: subset ranking taken from the top-k list because the
                                    filtered search failed (gallery without `name`) */
    char predictions[CIRRUS_EVAL_RUN_PATH_MAX];        /* file written */
    char subset_predictions[CIRRUS_EVAL_RUN_PATH_MAX]; /* CIRR only; "" otherwise */
    char metrics_path[CIRRUS_EVAL_RUN_PATH_MAX];       /* metrics JSON, "" when none */
    int has_metrics;             /* the split has ground truth and metrics were computed */
    cirrus_eval_circo_result circo;
    cirrus_eval_fiq_result fiq;
    cirrus_eval_cirr_result cirr;
    double seconds_index, seconds_search;
} cirrus_eval_run_report;

/* Runs the benchmark (see the top of this file) and fills *out (zeroed first, also on
 * failure so that counts so far can be read). Returns CR_OK when the run completed — per-item
 * failures are counted in the report, not returned — or a negative code when it could not
 * (bad files, cannot write --out, the endpoint never answered). */
cr_err cirrus_eval_run_execute(cirrus_client *c, const cirrus_eval_run_params *p,
                               cirrus_eval_run_report *out);

/* {"dataset", "split", "queries", "failed", "missing_reference", "images", "indexed",
 *  "index_failed", "files": {...}, "metrics": {...} (eval.h structure; absent without
 *  ground truth), "seconds": {...}}. New reference; NULL on OOM. */
json_t *cirrus_eval_run_json(const cirrus_eval_run_report *r);

/* A readable summary and the metrics table. */
void cirrus_eval_run_print(FILE *out, const cirrus_eval_run_report *r);

#endif
