/* test_eval — CIRCO parity with the official evaluation (fixtures/circo), hand-computed
 * FashionIQ and CIRR cases, and the error paths of every input format. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"
#include "common/test.h"

static char tmpdir[] = "/tmp/cirrus_test_eval_XXXXXX";
static char paths[64][512];
static int npaths;

/* Writes a file in the temp dir (printf-style) and returns its path. */
__attribute__((format(printf, 2, 3))) static const char *put(const char *name, const char *fmt,
                                                              ...)
{
    char *p = paths[npaths++ % 64];
    FILE *f;
    va_list ap;
    snprintf(p, 512, "%s/%s", tmpdir, name);
    f = fopen(p, "w");
    if (!f) {
        perror(p);
        exit(1);
    }
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    return p;
}

static int msg_has(const char *s)
{
    int ok = strstr(cr_error_message(), s) != NULL;
    if (!ok)
        fprintf(stderr, "  message was: %s (wanted '%s')\n", cr_error_message(), s);
    return ok;
}

/* ---- CIRCO ---------------------------------------------------------------------------- */

static void test_circo_parity(const char *shared)
{
    char ann[1024], pred[1024], exp_path[1024];
    cirrus_eval_circo_result r;
    json_t *expected, *mine;
    json_error_t jerr;
    const char *key;
    json_t *v;
    cr_err rc;

    snprintf(ann, sizeof ann, "%s/fixtures/circo/val.json", shared);
    snprintf(pred, sizeof pred, "%s/fixtures/circo/submission_val.json", shared);
    snprintf(exp_path, sizeof exp_path, "%s/fixtures/circo/expected_metrics.json", shared);
    expected = json_load_file(exp_path, 0, &jerr);
    CR_CHECK(expected != NULL);
    rc = cirrus_eval_circo_compute(ann, pred, &r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (!expected || rc)
        goto out;
    CR_CHECK(r.n_queries == 220);
    for (int i = 0; i < CIRRUS_EVAL_CIRCO_NRANKS; i++) {
        char k[8];
        snprintf(k, sizeof k, "%d", cirrus_eval_circo_rank(i));
        CR_CHECK_NEAR(r.map[i], json_real_value(json_object_get(json_object_get(expected, "mAP"),
                                                                k)), 1e-9);
        CR_CHECK_NEAR(r.recall[i],
                      json_number_value(json_object_get(json_object_get(expected, "recall"), k)),
                      1e-9);
    }
    for (int i = 0; i < CIRRUS_EVAL_CIRCO_NASPECTS; i++) {
        json_t *e = json_object_get(json_object_get(expected, "semantic_mAP@10"),
                                    cirrus_eval_circo_aspect(i));
        CR_CHECK_MSG(e != NULL, "aspect %s", cirrus_eval_circo_aspect(i));
        CR_CHECK_NEAR(r.semantic_map10[i], json_number_value(e), 1e-9);
    }
    printf("CIRCO parity: mAP@5 %.12f mAP@10 %.12f mAP@25 %.12f mAP@50 %.12f\n", r.map[0],
           r.map[1], r.map[2], r.map[3]);

    /* The JSON has exactly the keys of the official dump, with the same values. */
    mine = cirrus_eval_circo_json(&r);
    CR_CHECK(mine != NULL);
    CR_CHECK(json_object_size(mine) == json_object_size(expected));
    json_object_foreach(expected, key, v) {
        json_t *m = json_object_get(mine, key), *ev;
        const char *k2;
        CR_CHECK_MSG(m && json_object_size(m) == json_object_size(v), "key %s", key);
        json_object_foreach(v, k2, ev) {
            json_t *mv = m ? json_object_get(m, k2) : NULL;
            CR_CHECK_MSG(mv && fabs(json_number_value(mv) - json_number_value(ev)) <= 1e-9,
                         "%s.%s", key, k2);
        }
    }
    json_decref(mine);
out:
    json_decref(expected);
}

static void test_circo_small(void)
{
    cirrus_eval_circo_result r;
    const char *ann = put("circo_ann.json",
                          "[{\"id\": 0, \"target_img_id\": 2, \"gt_img_ids\": [1, 2, 3],"
                          "  \"semantic_aspects\": [\"cardinality\", \"viewpoint\"]},"
                          " {\"id\": 1, \"target_img_id\": 5, \"gt_img_ids\": [5],"
                          "  \"semantic_aspects\": [\"viewpoint\", \"not_an_aspect\"]}]");
    const char *pred = put("circo_pred.json",
                           "{\"1\": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 5],"
                           " \"0\": [9, 1, 8, 2, 7]}");
    cr_err rc = cirrus_eval_circo_compute(ann, pred, &r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (rc)
        return;
    /* q0: GTs at ranks 2 and 4 -> (1/2 + 2/4) / min(3, K) = 1/3 for every K; target at rank 4.
     * q1: its one GT (the target) at rank 12 -> AP@5 = AP@10 = 0, AP@25 = AP@50 = 1/12. */
    CR_CHECK_NEAR(r.map[0], 1.0 / 6, 1e-12);
    CR_CHECK_NEAR(r.map[1], 1.0 / 6, 1e-12);
    CR_CHECK_NEAR(r.map[2], 5.0 / 24, 1e-12);
    CR_CHECK_NEAR(r.map[3], 5.0 / 24, 1e-12);
    CR_CHECK_NEAR(r.recall[0], 0.5, 1e-12);
    CR_CHECK_NEAR(r.recall[1], 0.5, 1e-12);
    CR_CHECK_NEAR(r.recall[2], 1.0, 1e-12);
    CR_CHECK_NEAR(r.recall[3], 1.0, 1e-12);
    CR_CHECK_NEAR(r.semantic_map10[0], 1.0 / 3, 1e-12); /* cardinality: q0 */
    CR_CHECK(r.semantic_n[0] == 1);
    CR_CHECK_NEAR(r.semantic_map10[8], 1.0 / 6, 1e-12); /* viewpoint: q0 and q1 */
    CR_CHECK(r.semantic_n[8] == 2);
    CR_CHECK(isnan(r.semantic_map10[1]) && r.semantic_n[1] == 0); /* addition: none */
    {
        json_t *j = cirrus_eval_circo_json(&r);
        CR_CHECK(j && json_is_null(json_object_get(json_object_get(j, "semantic_mAP@10"),
                                                   "addition")));
        json_decref(j);
    }
}

static void test_circo_errors(void)
{
    cirrus_eval_circo_result r;
    const char *ann = put("circo_ann2.json",
                          "[{\"id\": 0, \"target_img_id\": 2, \"gt_img_ids\": [1, 2]},"
                          " {\"id\": 1, \"target_img_id\": 5, \"gt_img_ids\": [5]}]");
    const char *p;

    p = put("dup.json", "{\"0\": [1, 2, 3], \"1\": [4, 5, 4]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("query 1") && msg_has("duplicate prediction 4"));

    p = put("missing.json", "{\"0\": [1, 2, 3]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("query 1 has no predictions"));

    p = put("unknown.json", "{\"0\": [1], \"1\": [5], \"7\": [1]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("query 7 is not in the annotations"));

    p = put("twice.json", "{\"0\": [1], \"1\": [5], \"01\": [1]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("query 1 is given twice"));

    p = put("dupkey.json", "{\"0\": [1], \"1\": [5], \"1\": [1]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("malformed JSON"));

    p = put("malformed.json", "{\"0\": [1, 2, 3], \"1\": [4, 5");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("malformed JSON") && msg_has("malformed.json"));

    p = put("strid.json", "{\"0\": [1, \"2\"], \"1\": [5]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("query 0") && msg_has("not an integer"));

    p = put("floatid.json", "{\"0\": [1, 2.5], \"1\": [5]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);

    p = put("notlist.json", "{\"0\": 1, \"1\": [5]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("query 0") && msg_has("not a list"));

    p = put("badkey.json", "{\"zero\": [1], \"1\": [5]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("'zero'"));

    p = put("array.json", "[[1], [5]]");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_ERR_INVALID);

    p = put("ok.json", "{\"0\": [1], \"1\": [5]}");
    CR_CHECK(cirrus_eval_circo_compute(ann, p, &r) == CR_OK);
    CR_CHECK(cirrus_eval_circo_compute("/nonexistent/val.json", p, &r) == CR_ERR_IO);
    CR_CHECK(cirrus_eval_circo_compute(ann, "/nonexistent/p.json", &r) == CR_ERR_IO);

    /* Annotations: test split (no ground truths), repeated ids, wrong types. */
    CR_CHECK(cirrus_eval_circo_compute(put("test_ann.json", "[{\"id\": 0, \"reference_img_id\":"
                                           " 3}]"), p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("gt_img_ids"));
    CR_CHECK(cirrus_eval_circo_compute(put("rep_ann.json",
                                           "[{\"id\": 0, \"target_img_id\": 2, \"gt_img_ids\":"
                                           " [2]}, {\"id\": 0, \"target_img_id\": 2,"
                                           " \"gt_img_ids\": [2]}]"), p, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("appears twice"));
    CR_CHECK(cirrus_eval_circo_compute(put("type_ann.json",
                                           "[{\"id\": \"0\", \"target_img_id\": 2,"
                                           " \"gt_img_ids\": [2]}]"), p, &r) == CR_ERR_INVALID);
}

/* ---- FashionIQ ------------------------------------------------------------------------ */

/* One JSONL record whose ranking is 60 distinct names with the target at `pos` (or absent
 * when pos < 0). */
static void fiq_line(FILE *f, const char *cat, const char *target, int pos)
{
    fprintf(f, "{\"category\": \"%s\", \"candidate\": \"ref\", \"target\": \"%s\", \"ranking\": [",
            cat, target);
    for (int i = 0; i < 60; i++) {
        if (i == pos)
            fprintf(f, "%s\"%s\"", i ? ", " : "", target);
        else
            fprintf(f, "%s\"img%d\"", i ? ", " : "", i);
    }
    fprintf(f, "]}\n");
}

static void test_fiq(void)
{
    char p[600];
    cirrus_eval_fiq_result r;
    FILE *f;
    cr_err rc;

    snprintf(p, sizeof p, "%s/fiq.jsonl", tmpdir);
    f = fopen(p, "w");
    CR_CHECK(f != NULL);
    if (!f)
        return;
    fiq_line(f, "dress", "d1", 0);   /* R@10, R@50 */
    fiq_line(f, "dress", "d2", 10);  /* R@50 only */
    fprintf(f, "\n   \n");           /* blank lines are skipped */
    fiq_line(f, "dress", "d3", -1);  /* miss */
    fiq_line(f, "shirt", "s1", 9);   /* R@10, R@50 */
    fiq_line(f, "toptee", "t1", 49); /* R@50 only */
    fiq_line(f, "toptee", "t2", 50); /* miss */
    fclose(f);
    rc = cirrus_eval_fiq_compute(p, &r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (rc)
        return;
    CR_CHECK(r.cat[0].n_queries == 3 && r.cat[1].n_queries == 1 && r.cat[2].n_queries == 2);
    CR_CHECK_NEAR(r.cat[0].recall10, 1.0 / 3, 1e-12);
    CR_CHECK_NEAR(r.cat[0].recall50, 2.0 / 3, 1e-12);
    CR_CHECK_NEAR(r.cat[0].avg, 0.5, 1e-12);
    CR_CHECK_NEAR(r.cat[1].recall10, 1.0, 1e-12);
    CR_CHECK_NEAR(r.cat[1].recall50, 1.0, 1e-12);
    CR_CHECK_NEAR(r.cat[2].recall10, 0.0, 1e-12);
    CR_CHECK_NEAR(r.cat[2].recall50, 0.5, 1e-12);
    CR_CHECK(r.n_categories == 3 && r.mean.n_queries == 6);
    CR_CHECK_NEAR(r.mean.recall10, 4.0 / 9, 1e-12);
    CR_CHECK_NEAR(r.mean.recall50, 13.0 / 18, 1e-12);
    CR_CHECK_NEAR(r.mean.avg, 7.0 / 12, 1e-12);
    {
        json_t *j = cirrus_eval_fiq_json(&r);
        CR_CHECK(j != NULL);
        CR_CHECK_NEAR(json_number_value(json_object_get(
                          json_object_get(json_object_get(j, "mean"), "recall"), "50")),
                      13.0 / 18, 1e-12);
        json_decref(j);
    }

    /* A JSON array of the same records; one category only. */
    rc = cirrus_eval_fiq_compute(
        put("fiq.json", "[{\"category\": \"shirt\", \"target\": \"a\", \"ranking\": [\"b\", "
                        "\"a\"]}, {\"category\": \"shirt\", \"target\": \"c\", \"ranking\": "
                        "[\"b\"]}]"),
        &r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (!rc) {
        CR_CHECK(r.n_categories == 1 && isnan(r.cat[0].recall10));
        CR_CHECK_NEAR(r.mean.recall10, 0.5, 1e-12);
    }

    /* Errors. */
    CR_CHECK(cirrus_eval_fiq_compute(put("e1.jsonl", "{\"category\": \"pants\", \"target\": "
                                         "\"a\", \"ranking\": []}\n"), &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("line 1") && msg_has("pants"));
    CR_CHECK(cirrus_eval_fiq_compute(put("e2.jsonl", "{\"category\": \"dress\", \"target\": "
                                         "\"a\", \"ranking\": [\"a\"]}\n{\"category\": "
                                         "\"dress\", \"target\": \"a\", \"ranking\": [\"b\", "
                                         "\"c\", \"b\"]}\n"), &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("line 2") && msg_has("duplicate prediction 'b'"));
    CR_CHECK(cirrus_eval_fiq_compute(put("e3.jsonl", "{\"category\": \"dress\", \"ranking\": "
                                         "[\"a\"]}\n"), &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("\"target\""));
    CR_CHECK(cirrus_eval_fiq_compute(put("e4.jsonl", "{\"category\": \"dress\", \"target\": "
                                         "\"a\", \"ranking\": [\"a\"]}\n{\"category\": \n"),
                                     &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("line 2") && msg_has("malformed JSON"));
    CR_CHECK(cirrus_eval_fiq_compute(put("e5.jsonl", "{\"category\": \"dress\", \"target\": "
                                         "\"a\", \"ranking\": [\"a\", 3]}\n"), &r) ==
             CR_ERR_INVALID);
    CR_CHECK(msg_has("ranking[1] is not a string"));
    CR_CHECK(cirrus_eval_fiq_compute(put("e6.jsonl", "\n\n"), &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("no queries"));
    CR_CHECK(cirrus_eval_fiq_compute("/nonexistent/x.jsonl", &r) == CR_ERR_IO);
}

/* ---- CIRR ----------------------------------------------------------------------------- */

static void test_cirr(void)
{
    cirrus_eval_cirr_result r;
    char full[4096];
    size_t off;
    const char *ann, *pred, *sub;
    cr_err rc;

    ann = put("cirr_ann.json",
              "[{\"pairid\": 11, \"reference\": \"r1\", \"target_hard\": \"t1\", \"caption\": "
              "\"x\", \"img_set\": {\"id\": 1, \"members\": [\"r1\", \"t1\", \"a\", \"b\", \"c\","
              " \"d\"]}},"
              " {\"pairid\": 12, \"reference\": \"r2\", \"target_hard\": \"t2\", \"img_set\": "
              "{\"members\": [\"r2\", \"t2\", \"e\", \"f\", \"g\", \"h\"]}},"
              " {\"pairid\": 13, \"reference\": \"r3\", \"target_hard\": \"t3\", \"img_set\": "
              "{\"members\": [\"r3\", \"t3\", \"e3\", \"f3\", \"g3\", \"h3\"]}}]");
    /* 11: reference first, target second -> rank 1 once the reference is removed (R@5).
     * 12: reference at 9, target at 10 -> rank 9 after removal: R@10 only thanks to it.
     * 13: 50 names, no target. */
    off = (size_t)snprintf(full, sizeof full, "{\"version\": \"rc2\", \"metric\": \"recall\", "
                           "\"11\": [\"r1\", \"x\", \"t1\"], \"12\": [\"x0\", \"x1\", \"x2\", "
                           "\"x3\", \"x4\", \"x5\", \"x6\", \"x7\", \"x8\", \"r2\", \"t2\"], "
                           "\"13\": [");
    for (int i = 0; i < 50; i++)
        off += (size_t)snprintf(full + off, sizeof full - off, "%s\"n%d\"", i ? ", " : "", i);
    snprintf(full + off, sizeof full - off, "]}");
    pred = put("cirr_pred.json", "%s", full);
    /* 11: top-3 members: target first. 12: a full list: non-members and the reference are
     * skipped -> e, f, t2: rank 2. 13: rank 1. */
    sub = put("cirr_sub.json", "{\"version\": \"rc2\", \"metric\": \"recall_subset\", "
                               "\"11\": [\"r1\", \"t1\", \"a\"], \"12\": [\"zz\", \"e\", \"r2\", "
                               "\"f\", \"t2\"], \"13\": [\"e3\", \"t3\", \"f3\"]}");
    rc = cirrus_eval_cirr_compute(ann, pred, sub, &r);
    CR_CHECK_MSG(rc == CR_OK, "%s", cr_error_message());
    if (!rc) {
        CR_CHECK(r.n_queries == 3 && r.has_recall && r.has_subset);
        CR_CHECK_NEAR(r.recall[0], 0.0, 1e-12);
        CR_CHECK_NEAR(r.recall[1], 1.0 / 3, 1e-12);
        CR_CHECK_NEAR(r.recall[2], 2.0 / 3, 1e-12);
        CR_CHECK_NEAR(r.recall[3], 2.0 / 3, 1e-12);
        CR_CHECK_NEAR(r.recall_subset[0], 1.0 / 3, 1e-12);
        CR_CHECK_NEAR(r.recall_subset[1], 2.0 / 3, 1e-12);
        CR_CHECK_NEAR(r.recall_subset[2], 1.0, 1e-12);
        CR_CHECK_NEAR(r.avg, 1.0 / 3, 1e-12);
    }
    rc = cirrus_eval_cirr_compute(ann, NULL, sub, &r);
    CR_CHECK(rc == CR_OK && !r.has_recall && r.has_subset && isnan(r.avg));
    rc = cirrus_eval_cirr_compute(ann, pred, NULL, &r);
    CR_CHECK(rc == CR_OK && r.has_recall && !r.has_subset);
    if (!rc) {
        json_t *j = cirrus_eval_cirr_json(&r);
        CR_CHECK(j && json_object_get(j, "recall") && !json_object_get(j, "recall_subset") &&
                 !json_object_get(j, "avg"));
        json_decref(j);
    }

    /* Errors. */
    CR_CHECK(cirrus_eval_cirr_compute(ann, NULL, NULL, &r) == CR_ERR_INVALID);
    CR_CHECK(cirrus_eval_cirr_compute(ann, sub, NULL, &r) == CR_ERR_INVALID); /* metric */
    CR_CHECK(msg_has("\"metric\" must be \"recall\""));
    CR_CHECK(cirrus_eval_cirr_compute(ann, put("c1.json", "{\"11\": [\"a\"], \"12\": [\"b\"]}"),
                                      NULL, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("pairid 13 has no predictions"));
    CR_CHECK(cirrus_eval_cirr_compute(ann, put("c2.json", "{\"11\": [\"a\"], \"12\": [\"b\", "
                                               "\"c\", \"b\"], \"13\": []}"), NULL, &r) ==
             CR_ERR_INVALID);
    CR_CHECK(msg_has("pairid 12") && msg_has("duplicate prediction 'b'"));
    CR_CHECK(cirrus_eval_cirr_compute(ann, put("c3.json", "{\"11\": [\"a\"], \"12\": [], "
                                               "\"13\": [], \"99\": []}"), NULL, &r) ==
             CR_ERR_INVALID);
    CR_CHECK(msg_has("pairid 99 is not in the annotations"));
    CR_CHECK(cirrus_eval_cirr_compute(ann, put("c4.json", "{\"11\": [1], \"12\": [], "
                                               "\"13\": []}"), NULL, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("pairid 11") && msg_has("not a string"));
    CR_CHECK(cirrus_eval_cirr_compute(ann, put("c5.json", "{\"11\": [\"a\"]"), NULL, &r) ==
             CR_ERR_INVALID);
    CR_CHECK(msg_has("malformed JSON"));
    /* Test-split annotations have no target; subset recall needs img_set. */
    CR_CHECK(cirrus_eval_cirr_compute(put("c_test.json", "[{\"pairid\": 1, \"reference\": "
                                          "\"r\"}]"), pred, NULL, &r) == CR_ERR_INVALID);
    CR_CHECK(msg_has("target_hard"));
    CR_CHECK(cirrus_eval_cirr_compute(put("c_noset.json", "[{\"pairid\": 11, \"reference\": "
                                          "\"r1\", \"target_hard\": \"t1\"}]"), NULL,
                                      put("c_s.json", "{\"11\": [\"t1\"]}"), &r) ==
             CR_ERR_INVALID);
    CR_CHECK(msg_has("img_set.members"));
}

int main(void)
{
    const char *shared;
    CR_TEST_BEGIN();
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_circo_small();
    test_circo_errors();
    test_fiq();
    test_cirr();
    for (int i = 0; i < npaths && i < 64; i++)
        unlink(paths[i]);
    {
        char p[600];
        snprintf(p, sizeof p, "%s/fiq.jsonl", tmpdir);
        unlink(p);
    }
    rmdir(tmpdir);
    if (cr_test_failed)
        return CR_TEST_END();
    shared = cr_test_shared_dir(); /* exits 77 when absent, after the self-contained tests */
    test_circo_parity(shared);
    return CR_TEST_END();
}
