/* eval.h — composed-image-retrieval benchmark metrics from prediction files (on libcirrus; not installed).
 *
 * Three benchmarks, each computed the way its official evaluation computes it:
 *
 *   CIRCO      mAP@{5,10,25,50} over all ground truths, Recall@{5,10,25,50} on the single
 *              target, semantic mAP@10 per aspect (miccunifi/CIRCO src/evaluation.py).
 *   FashionIQ  Recall@{10,50} per category (dress, shirt, toptee), their mean, and the average
 *              of R@10 and R@50 (the CLIP4Cir / SEARLE validation protocol).
 *   CIRR       Recall@{1,5,10,50} with the reference image removed from the ranking,
 *              Recall_subset@{1,2,3} within the query's img_set (reference removed), and
 *              Avg = (Recall@5 + Recall_subset@1) / 2 (the CIRR evaluation server).
 *
 * Usage:
 *
 *   cirrus_eval_circo_result r;
 *   if (cirrus_eval_circo_compute("val.json", "preds.json", &r))
 *       die(cr_error_message());          // names the file and the query at fault
 *   json_t *j = cirrus_eval_circo_json(&r);  // the structure of the official metrics dump
 *   cirrus_eval_circo_print(stdout, &r);     // a readable table
 *
 * All metrics are fractions in [0, 1] (the text tables print percentages). A metric that is
 * undefined (no query in its group) is NAN in the result structs and null in JSON.
 *
 * Input formats
 * -------------
 * CIRCO annotations: the official `val.json` — a JSON array of objects with "id" (int),
 *   "target_img_id" (int), "gt_img_ids" (array of int, non-empty) and optionally
 *   "semantic_aspects" (array of string). Other keys are ignored.
 * CIRCO predictions: the official submission format — a JSON object mapping each query id
 *   (a decimal string, e.g. "17") to its ranked list of image ids (ints, best first, top-50).
 *   Every annotated query must be present, no other query may be, and no image id may appear
 *   twice in one list (all errors). Lists shorter than 50 are accepted and scored as given.
 *
 * FashionIQ predictions (what `cirrus eval run` writes): JSON Lines, one object per query —
 *     {"category": "dress", "candidate": "B008MTHLHQ", "target": "B005X4PL1G",
 *      "ranking": ["B005X4PL1G", "B00A0I8CUE", ...]}
 *   or a JSON array of the same objects. "category" is one of dress|shirt|toptee, "target" the
 *   target image name, "ranking" the ranked candidate image names (best first, at least the
 *   top-50; no name twice). "candidate" (FashionIQ's name for the reference image) and any
 *   other key are optional and ignored: like the official protocol, the reference is NOT
 *   removed from the ranking. Blank lines are skipped. Categories absent from the file have
 *   n_queries 0 and NAN metrics; the mean is taken over the categories present.
 *
 * CIRR annotations: the official `cap.rc2.val.json` — a JSON array of objects with "pairid"
 *   (int), "reference" (string), "target_hard" (string) and, for subset recall,
 *   "img_set": {"members": [string, ...]}.
 * CIRR predictions: the official submission format — a JSON object mapping each pairid (a
 *   decimal string) to its ranked list of image names (best first, top-50), plus the optional
 *   special keys "version" (string) and "metric" ("recall"). The reference image may appear
 *   in the list: it is removed before scoring, as the official evaluation does.
 * CIRR subset predictions: the same with "metric": "recall_subset" and, per pairid, the
 *   ranked img_set members (top-3). The reference and any name that is not a member of the
 *   query's img_set are skipped, so a full top-50 list is accepted as well.
 *   In both CIRR files every annotated pairid must be present, no other pairid may be, and no
 *   name may appear twice in one list.
 *
 * Errors: CR_ERR_IO (cannot read a file), CR_ERR_INVALID (malformed JSON, wrong types,
 * duplicates, missing or unknown queries), CR_ERR_NOMEM; the message (cr_error_message())
 * names the file, and the query and position when there is one.
 *
 * Thread rules: no shared state; results are plain structs owned by the caller.
 */
#ifndef CIRRUS_EVAL_H
#define CIRRUS_EVAL_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "common/err.h"

/* ---- CIRCO ---------------------------------------------------------------------------- */

#define CIRRUS_EVAL_CIRCO_NRANKS 4   /* K = 5, 10, 25, 50 */
#define CIRRUS_EVAL_CIRCO_NASPECTS 9 /* the semantic aspects, in the official order */

typedef struct cirrus_eval_circo_result {
    size_t n_queries;
    double map[CIRRUS_EVAL_CIRCO_NRANKS];    /* mAP@K over all ground truths */
    double recall[CIRRUS_EVAL_CIRCO_NRANKS]; /* Recall@K of target_img_id */
    double semantic_map10[CIRRUS_EVAL_CIRCO_NASPECTS]; /* mean AP@10 of the queries having
                                                          the aspect; NAN when none has it */
    size_t semantic_n[CIRRUS_EVAL_CIRCO_NASPECTS];     /* how many queries have each aspect */
} cirrus_eval_circo_result;

/* K of map[i] and recall[i]: 5, 10, 25, 50. i < CIRRUS_EVAL_CIRCO_NRANKS. */
int cirrus_eval_circo_rank(int i);

/* Name of semantic aspect i ("cardinality", "addition", "negation", "direct_addressing",
 * "compare_change", "comparative_statement", "statement_with_conjunction",
 * "spatial_relations_background", "viewpoint"); static storage. Aspects not in this list
 * are ignored, as in the official code. */
const char *cirrus_eval_circo_aspect(int i);

/* Reads the annotation and prediction files and computes the metrics into *out (written only
 * on success). */
cr_err cirrus_eval_circo_compute(const char *annotations_path, const char *predictions_path,
                                 cirrus_eval_circo_result *out);

/* The same from parsed JSON (borrowed). `pred_name` names the predictions in messages
 * (NULL = "predictions"). */
cr_err cirrus_eval_circo_compute_json(const json_t *annotations, const json_t *predictions,
                                      const char *pred_name, cirrus_eval_circo_result *out);

/* {"mAP": {"5": x, ...}, "recall": {"5": x, ...}, "semantic_mAP@10": {"cardinality": x, ...}}
 * — the structure of the official metrics dump. New reference (json_decref it); NULL on OOM. */
json_t *cirrus_eval_circo_json(const cirrus_eval_circo_result *r);

/* A readable table, in percent. */
void cirrus_eval_circo_print(FILE *out, const cirrus_eval_circo_result *r);

/* ---- FashionIQ ------------------------------------------------------------------------ */

#define CIRRUS_EVAL_FIQ_NCATS 3 /* dress, shirt, toptee */

typedef struct cirrus_eval_fiq_scores {
    size_t n_queries;
    double recall10, recall50; /* NAN when n_queries == 0 */
    double avg;                /* (recall10 + recall50) / 2 */
} cirrus_eval_fiq_scores;

typedef struct cirrus_eval_fiq_result {
    cirrus_eval_fiq_scores cat[CIRRUS_EVAL_FIQ_NCATS]; /* by cirrus_eval_fiq_category(i) */
    cirrus_eval_fiq_scores mean; /* mean over the categories present; n_queries = total */
    int n_categories;            /* categories present */
} cirrus_eval_fiq_result;

/* "dress", "shirt", "toptee"; static storage. */
const char *cirrus_eval_fiq_category(int i);

/* Reads a FashionIQ prediction file (format above) into *out (written only on success). */
cr_err cirrus_eval_fiq_compute(const char *predictions_path, cirrus_eval_fiq_result *out);

/* {"dress": {"n_queries": n, "recall": {"10": x, "50": x}, "avg": x}, "shirt": ...,
 *  "toptee": ..., "mean": {"n_queries": n, "recall": {...}, "avg": x}}. New reference. */
json_t *cirrus_eval_fiq_json(const cirrus_eval_fiq_result *r);

void cirrus_eval_fiq_print(FILE *out, const cirrus_eval_fiq_result *r);

/* ---- CIRR ----------------------------------------------------------------------------- */

#define CIRRUS_EVAL_CIRR_NRANKS 4  /* K = 1, 5, 10, 50 */
#define CIRRUS_EVAL_CIRR_NSUBSET 3 /* K = 1, 2, 3 */

typedef struct cirrus_eval_cirr_result {
    size_t n_queries;
    int has_recall;                         /* predictions were given */
    double recall[CIRRUS_EVAL_CIRR_NRANKS]; /* Recall@K, reference removed */
    int has_subset;                         /* subset predictions were given */
    double recall_subset[CIRRUS_EVAL_CIRR_NSUBSET];
    double avg; /* (Recall@5 + Recall_subset@1) / 2 when both; else NAN */
} cirrus_eval_cirr_result;

int cirrus_eval_cirr_rank(int i);        /* 1, 5, 10, 50 */
int cirrus_eval_cirr_subset_rank(int i); /* 1, 2, 3 */

/* Reads the annotations and either or both prediction files (NULL = not given; at least one)
 * and computes the metrics into *out (written only on success). */
cr_err cirrus_eval_cirr_compute(const char *annotations_path, const char *predictions_path,
                                const char *subset_predictions_path,
                                cirrus_eval_cirr_result *out);

/* {"n_queries": n, "recall": {"1": x, "5": x, "10": x, "50": x},
 *  "recall_subset": {"1": x, "2": x, "3": x}, "avg": x}; the keys of what was not computed
 * are left out. New reference. */
json_t *cirrus_eval_cirr_json(const cirrus_eval_cirr_result *r);

void cirrus_eval_cirr_print(FILE *out, const cirrus_eval_cirr_result *r);

#endif
