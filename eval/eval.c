/* eval.c — CIRCO, FashionIQ and CIRR metrics from prediction files (see eval.h). */
#include "eval/eval.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonfile.h"

static const int circo_ranks[CIRRUS_EVAL_CIRCO_NRANKS] = {5, 10, 25, 50};
static const char *const circo_aspects[CIRRUS_EVAL_CIRCO_NASPECTS] = {
    "cardinality",          "addition",
    "negation",             "direct_addressing",
    "compare_change",       "comparative_statement",
    "statement_with_conjunction", "spatial_relations_background",
    "viewpoint"};
static const char *const fiq_cats[CIRRUS_EVAL_FIQ_NCATS] = {"dress", "shirt", "toptee"};
static const int cirr_ranks[CIRRUS_EVAL_CIRR_NRANKS] = {1, 5, 10, 50};
static const int cirr_subset_ranks[CIRRUS_EVAL_CIRR_NSUBSET] = {1, 2, 3};

int cirrus_eval_circo_rank(int i)
{
    return i >= 0 && i < CIRRUS_EVAL_CIRCO_NRANKS ? circo_ranks[i] : 0;
}

const char *cirrus_eval_circo_aspect(int i)
{
    return i >= 0 && i < CIRRUS_EVAL_CIRCO_NASPECTS ? circo_aspects[i] : "";
}

const char *cirrus_eval_fiq_category(int i)
{
    return i >= 0 && i < CIRRUS_EVAL_FIQ_NCATS ? fiq_cats[i] : "";
}

int cirrus_eval_cirr_rank(int i)
{
    return i >= 0 && i < CIRRUS_EVAL_CIRR_NRANKS ? cirr_ranks[i] : 0;
}

int cirrus_eval_cirr_subset_rank(int i)
{
    return i >= 0 && i < CIRRUS_EVAL_CIRR_NSUBSET ? cirr_subset_ranks[i] : 0;
}

/* ---- shared helpers ------------------------------------------------------------------- */

/* Reads a whole file into a NUL-terminated buffer (works on pipes too). */
static cr_err read_text(const char *path, char **out, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *nb;
    size_t cap = 0, len = 0, n;
    cr_err rc = CR_OK;
    if (!f)
        return cr_error_set(CR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    do {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 131072;
            nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = cr_error_set(CR_ERR_NOMEM, "%s: out of memory", path);
                goto out;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        rc = cr_error_set(CR_ERR_IO, "%s: read error", path);
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    *len_out = len;
    buf = NULL;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* A query id given as an object key: decimal digits only, as the official code's int(). */
static int parse_key(const char *s, long long *out)
{
    long long v = 0;
    size_t i;
    if (!*s || strlen(s) > 18)
        return -1;
    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* JSON number for a metric: null when undefined. */
static json_t *num(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static double mean_or_nan(double sum, size_t n)
{
    return n ? sum / (double)n : NAN;
}

/* Percent for tables, or "-" when undefined. */
static void print_pct(FILE *out, double v, int width)
{
    if (isnan(v))
        fprintf(out, "%*s", width, "-");
    else
        fprintf(out, "%*.2f", width, v * 100.0);
}

/* A right-aligned "K=5" column header. */
static void print_k(FILE *out, int k, int width)
{
    char h[16];
    snprintf(h, sizeof h, "K=%d", k);
    fprintf(out, "%*s", width, h);
}

/* Finds a query by id in a table sorted by id (the first field of each entry is the id). */
typedef struct id_entry {
    long long id;
    size_t index;
} id_entry;

static int cmp_id_entry(const void *a, const void *b)
{
    return cmp_ll(&((const id_entry *)a)->id, &((const id_entry *)b)->id);
}

static const id_entry *id_find(const id_entry *tab, size_t n, long long id)
{
    id_entry key = {id, 0};
    return bsearch(&key, tab, n, sizeof *tab, cmp_id_entry);
}

/* Sorts (id, index) pairs and reports a repeated id. */
static cr_err id_table_sort(id_entry *tab, size_t n, const char *path, const char *what)
{
    qsort(tab, n, sizeof *tab, cmp_id_entry);
    for (size_t i = 1; i < n; i++)
        if (tab[i].id == tab[i - 1].id)
            return cr_error_set(CR_ERR_INVALID, "%s: %s %lld appears twice", path, what,
                                tab[i].id);
    return CR_OK;
}

/* Checks that a JSON array holds distinct strings; fills names[0..n) (borrowed). `scratch`
 * holds n pointers. */
static cr_err string_list(const json_t *list, const char *path, const char *what, long long id,
                          const char **names, const char **scratch)
{
    size_t i, n = json_array_size(list);
    for (i = 0; i < n; i++) {
        const json_t *e = json_array_get(list, i);
        if (!json_is_string(e))
            return cr_error_set(CR_ERR_INVALID, "%s: %s %lld: entry %zu is not a string", path,
                                what, id, i);
        names[i] = json_string_value(e);
        scratch[i] = names[i];
    }
    qsort(scratch, n, sizeof *scratch, cmp_str);
    for (i = 1; i < n; i++)
        if (strcmp(scratch[i], scratch[i - 1]) == 0)
            return cr_error_set(CR_ERR_INVALID, "%s: %s %lld: duplicate prediction '%s'", path,
                                what, id, scratch[i]);
    return CR_OK;
}

/* ---- CIRCO ---------------------------------------------------------------------------- */

typedef struct circo_query {
    long long id;
    long long target;
    const json_t *gt;      /* array of int */
    const json_t *aspects; /* array of string, or NULL */
    int seen;
} circo_query;

static cr_err circo_load_annotations(const json_t *ann, const char *name, circo_query **qs_out,
                                     id_entry **tab_out, size_t *n_out)
{
    size_t n = json_array_size(ann), i, g;
    circo_query *qs = NULL;
    id_entry *tab = NULL;
    cr_err rc = CR_OK;

    if (!json_is_array(ann))
        return cr_error_set(CR_ERR_INVALID, "%s: expected a JSON array of queries", name);
    if (n == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: no queries", name);
    qs = calloc(n, sizeof *qs);
    tab = calloc(n, sizeof *tab);
    if (!qs || !tab) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        const json_t *q = json_array_get(ann, i), *id, *tgt, *gt, *asp;
        if (!json_is_object(q)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: entry %zu is not an object", name, i);
            goto out;
        }
        id = json_object_get(q, "id");
        tgt = json_object_get(q, "target_img_id");
        gt = json_object_get(q, "gt_img_ids");
        asp = json_object_get(q, "semantic_aspects");
        if (!json_is_integer(id) || json_integer_value(id) < 0) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: entry %zu: \"id\" is not a non-negative "
                              "integer", name, i);
            goto out;
        }
        qs[i].id = json_integer_value(id);
        if (!json_is_integer(tgt) || !json_is_array(gt) || json_array_size(gt) == 0) {
            rc = cr_error_set(CR_ERR_INVALID,
                              "%s: query %lld has no integer \"target_img_id\" or no "
                              "\"gt_img_ids\" (the test split has none; use the evaluation "
                              "server)", name, qs[i].id);
            goto out;
        }
        for (g = 0; g < json_array_size(gt); g++)
            if (!json_is_integer(json_array_get(gt, g))) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld: gt_img_ids[%zu] is not an "
                                  "integer", name, qs[i].id, g);
                goto out;
            }
        if (asp && !json_is_null(asp)) {
            if (!json_is_array(asp)) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld: \"semantic_aspects\" is not "
                                  "an array", name, qs[i].id);
                goto out;
            }
            for (g = 0; g < json_array_size(asp); g++)
                if (!json_is_string(json_array_get(asp, g))) {
                    rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld: semantic_aspects[%zu] "
                                      "is not a string", name, qs[i].id, g);
                    goto out;
                }
            qs[i].aspects = asp;
        }
        qs[i].target = json_integer_value(tgt);
        qs[i].gt = gt;
        tab[i].id = qs[i].id;
        tab[i].index = i;
    }
    rc = id_table_sort(tab, n, name, "query id");
    if (rc)
        goto out;
    *qs_out = qs;
    *tab_out = tab;
    *n_out = n;
    qs = NULL;
    tab = NULL;
out:
    free(qs);
    free(tab);
    return rc;
}

static int circo_is_gt(const json_t *gt, long long img)
{
    for (size_t g = 0; g < json_array_size(gt); g++)
        if (json_integer_value(json_array_get(gt, g)) == img)
            return 1;
    return 0;
}

static cr_err circo_compute(const json_t *annotations, const char *ann_name,
                            const json_t *predictions, const char *pred_name,
                            cirrus_eval_circo_result *out)
{
    circo_query *qs = NULL;
    id_entry *tab = NULL;
    long long *ids = NULL, *sorted = NULL;
    size_t nq = 0, cap = 0, i, k;
    double map_sum[CIRRUS_EVAL_CIRCO_NRANKS] = {0}, rec_sum[CIRRUS_EVAL_CIRCO_NRANKS] = {0};
    double asp_sum[CIRRUS_EVAL_CIRCO_NASPECTS] = {0};
    size_t asp_n[CIRRUS_EVAL_CIRCO_NASPECTS] = {0};
    cirrus_eval_circo_result r;
    const char *key;
    json_t *list;
    cr_err rc;

    memset(&r, 0, sizeof r);
    rc = circo_load_annotations(annotations, ann_name, &qs, &tab, &nq);
    if (rc)
        goto out;
    if (!json_is_object(predictions)) {
        rc = cr_error_set(CR_ERR_INVALID, "%s: expected a JSON object mapping query ids to "
                          "lists of image ids", pred_name);
        goto out;
    }
    json_object_foreach((json_t *)predictions, key, list) {
        long long qid;
        const id_entry *e;
        circo_query *q;
        size_t n = json_array_size(list);
        double prec_sum = 0.0, hits = 0.0, ap;
        long long target_pos = -1;

        if (parse_key(key, &qid)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: key '%s' is not a query id", pred_name, key);
            goto out;
        }
        e = id_find(tab, nq, qid);
        if (!e) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld is not in the annotations",
                              pred_name, qid);
            goto out;
        }
        q = &qs[e->index];
        if (q->seen) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld is given twice", pred_name, qid);
            goto out;
        }
        q->seen = 1;
        if (!json_is_array(list)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld: predictions are not a list",
                              pred_name, qid);
            goto out;
        }
        if (n > cap) {
            long long *a = realloc(ids, n * sizeof *a), *b;
            if (!a) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
            ids = a;
            b = realloc(sorted, n * sizeof *b);
            if (!b) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
            sorted = b;
            cap = n;
        }
        for (i = 0; i < n; i++) {
            const json_t *v = json_array_get(list, i);
            if (!json_is_integer(v)) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld: prediction %zu is not an "
                                  "integer image id", pred_name, qid, i);
                goto out;
            }
            ids[i] = sorted[i] = json_integer_value(v);
        }
        if (n)
            qsort(sorted, n, sizeof *sorted, cmp_ll);
        for (i = 1; i < n; i++)
            if (sorted[i] == sorted[i - 1]) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld: duplicate prediction %lld",
                                  pred_name, qid, sorted[i]);
                goto out;
            }

        /* AP@K = sum over ranks i < K holding a ground truth of precision@i, divided by
         * min(#gt, K); Recall@K = target_img_id within the first K. */
        k = 0;
        for (i = 0; i < n && i < 50; i++) {
            if (circo_is_gt(q->gt, ids[i])) {
                hits += 1.0;
                prec_sum += hits / (double)(i + 1);
            }
            if (ids[i] == q->target)
                target_pos = (long long)i;
            while (k < CIRRUS_EVAL_CIRCO_NRANKS && i + 1 == (size_t)circo_ranks[k]) {
                size_t ngt = json_array_size(q->gt);
                size_t denom = ngt < (size_t)circo_ranks[k] ? ngt : (size_t)circo_ranks[k];
                map_sum[k] += prec_sum / (double)denom;
                k++;
            }
        }
        for (; k < CIRRUS_EVAL_CIRCO_NRANKS; k++) { /* lists shorter than K */
            size_t ngt = json_array_size(q->gt);
            size_t denom = ngt < (size_t)circo_ranks[k] ? ngt : (size_t)circo_ranks[k];
            map_sum[k] += prec_sum / (double)denom;
        }
        for (k = 0; k < CIRRUS_EVAL_CIRCO_NRANKS; k++)
            if (target_pos >= 0 && target_pos < circo_ranks[k])
                rec_sum[k] += 1.0;

        /* AP@10 again, for the semantic aspects of the query. */
        prec_sum = 0.0;
        hits = 0.0;
        for (i = 0; i < n && i < 10; i++)
            if (circo_is_gt(q->gt, ids[i])) {
                hits += 1.0;
                prec_sum += hits / (double)(i + 1);
            }
        {
            size_t ngt = json_array_size(q->gt);
            ap = prec_sum / (double)(ngt < 10 ? ngt : 10);
        }
        for (i = 0; q->aspects && i < json_array_size(q->aspects); i++) {
            const char *a = json_string_value(json_array_get(q->aspects, i));
            for (k = 0; k < CIRRUS_EVAL_CIRCO_NASPECTS; k++)
                if (strcmp(a, circo_aspects[k]) == 0) {
                    asp_sum[k] += ap;
                    asp_n[k]++;
                }
        }
        r.n_queries++;
    }
    for (i = 0; i < nq; i++)
        if (!qs[tab[i].index].seen) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: query %lld has no predictions", pred_name,
                              tab[i].id);
            goto out;
        }
    for (k = 0; k < CIRRUS_EVAL_CIRCO_NRANKS; k++) {
        r.map[k] = map_sum[k] / (double)r.n_queries;
        r.recall[k] = rec_sum[k] / (double)r.n_queries;
    }
    for (k = 0; k < CIRRUS_EVAL_CIRCO_NASPECTS; k++) {
        r.semantic_map10[k] = mean_or_nan(asp_sum[k], asp_n[k]);
        r.semantic_n[k] = asp_n[k];
    }
    *out = r;
out:
    free(ids);
    free(sorted);
    free(qs);
    free(tab);
    return rc;
}

cr_err cirrus_eval_circo_compute_json(const json_t *annotations, const json_t *predictions,
                                      const char *pred_name, cirrus_eval_circo_result *out)
{
    return circo_compute(annotations, "annotations", predictions,
                         pred_name ? pred_name : "predictions", out);
}

cr_err cirrus_eval_circo_compute(const char *annotations_path, const char *predictions_path,
                                 cirrus_eval_circo_result *out)
{
    json_t *ann = NULL, *pred = NULL;
    cr_err rc = cr_json_load_file(annotations_path, &ann);
    if (rc)
        goto out;
    rc = cr_json_load_file(predictions_path, &pred);
    if (rc)
        goto out;
    rc = circo_compute(ann, annotations_path, pred, predictions_path, out);
out:
    json_decref(pred);
    json_decref(ann);
    return rc;
}

static json_t *ranks_json(const double *v, const int *ranks, int n)
{
    json_t *o = json_object();
    char key[16];
    for (int i = 0; o && i < n; i++) {
        snprintf(key, sizeof key, "%d", ranks[i]);
        json_object_set_new(o, key, num(v[i]));
    }
    return o;
}

json_t *cirrus_eval_circo_json(const cirrus_eval_circo_result *r)
{
    json_t *o = json_object(), *sem = json_object();
    if (!o || !sem) {
        json_decref(o);
        json_decref(sem);
        return NULL;
    }
    json_object_set_new(o, "mAP", ranks_json(r->map, circo_ranks, CIRRUS_EVAL_CIRCO_NRANKS));
    json_object_set_new(o, "recall",
                        ranks_json(r->recall, circo_ranks, CIRRUS_EVAL_CIRCO_NRANKS));
    for (int i = 0; i < CIRRUS_EVAL_CIRCO_NASPECTS; i++)
        json_object_set_new(sem, circo_aspects[i], num(r->semantic_map10[i]));
    json_object_set_new(o, "semantic_mAP@10", sem);
    return o;
}

void cirrus_eval_circo_print(FILE *out, const cirrus_eval_circo_result *r)
{
    int i;
    fprintf(out, "CIRCO, %zu queries (percent)\n\n%-30s", r->n_queries, "");
    for (i = 0; i < CIRRUS_EVAL_CIRCO_NRANKS; i++)
        print_k(out, circo_ranks[i], 8);
    fprintf(out, "\n%-30s", "mAP@K (all ground truths)");
    for (i = 0; i < CIRRUS_EVAL_CIRCO_NRANKS; i++)
        print_pct(out, r->map[i], 8);
    fprintf(out, "\n%-30s", "Recall@K (target image)");
    for (i = 0; i < CIRRUS_EVAL_CIRCO_NRANKS; i++)
        print_pct(out, r->recall[i], 8);
    fprintf(out, "\n\n%-30s %8s %8s\n", "semantic aspect", "queries", "mAP@10");
    for (i = 0; i < CIRRUS_EVAL_CIRCO_NASPECTS; i++) {
        fprintf(out, "%-30s %8zu ", circo_aspects[i], r->semantic_n[i]);
        print_pct(out, r->semantic_map10[i], 8);
        fputc('\n', out);
    }
}

/* ---- FashionIQ ------------------------------------------------------------------------ */

typedef struct fiq_acc {
    size_t n;
    double hit10, hit50;
} fiq_acc;

/* Scores one record; `where` is "line N" or "entry N". */
static cr_err fiq_record(const json_t *rec, const char *path, const char *where,
                         fiq_acc *acc, const char ***scratch, size_t *cap)
{
    const json_t *cat, *tgt, *ranking;
    const char *target, *c;
    size_t n, i;
    int ci = -1;
    long long pos = -1;

    if (!json_is_object(rec))
        return cr_error_set(CR_ERR_INVALID, "%s: %s: expected a JSON object", path, where);
    cat = json_object_get(rec, "category");
    tgt = json_object_get(rec, "target");
    ranking = json_object_get(rec, "ranking");
    if (!json_is_string(cat))
        return cr_error_set(CR_ERR_INVALID, "%s: %s: \"category\" missing or not a string",
                            path, where);
    c = json_string_value(cat);
    for (i = 0; i < CIRRUS_EVAL_FIQ_NCATS; i++)
        if (strcmp(c, fiq_cats[i]) == 0)
            ci = (int)i;
    if (ci < 0)
        return cr_error_set(CR_ERR_INVALID, "%s: %s: unknown category '%s' (dress, shirt, "
                            "toptee)", path, where, c);
    if (!json_is_string(tgt))
        return cr_error_set(CR_ERR_INVALID, "%s: %s: \"target\" missing or not a string", path,
                            where);
    if (!json_is_array(ranking))
        return cr_error_set(CR_ERR_INVALID, "%s: %s: \"ranking\" missing or not a list", path,
                            where);
    target = json_string_value(tgt);
    n = json_array_size(ranking);
    if (n > *cap) {
        const char **s = realloc(*scratch, n * sizeof *s);
        if (!s)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        *scratch = s;
        *cap = n;
    }
    for (i = 0; i < n; i++) {
        const json_t *e = json_array_get(ranking, i);
        if (!json_is_string(e))
            return cr_error_set(CR_ERR_INVALID, "%s: %s: ranking[%zu] is not a string", path,
                                where, i);
        (*scratch)[i] = json_string_value(e);
        if (pos < 0 && strcmp((*scratch)[i], target) == 0)
            pos = (long long)i;
    }
    qsort(*scratch, n, sizeof **scratch, cmp_str);
    for (i = 1; i < n; i++)
        if (strcmp((*scratch)[i], (*scratch)[i - 1]) == 0)
            return cr_error_set(CR_ERR_INVALID, "%s: %s: duplicate prediction '%s'", path,
                                where, (*scratch)[i]);
    acc[ci].n++;
    if (pos >= 0 && pos < 10)
        acc[ci].hit10 += 1.0;
    if (pos >= 0 && pos < 50)
        acc[ci].hit50 += 1.0;
    return CR_OK;
}

cr_err cirrus_eval_fiq_compute(const char *predictions_path, cirrus_eval_fiq_result *out)
{
    fiq_acc acc[CIRRUS_EVAL_FIQ_NCATS];
    cirrus_eval_fiq_result r;
    const char **scratch = NULL;
    size_t cap = 0, len = 0, total = 0;
    char *text = NULL, *p, where[48];
    json_t *doc = NULL, *rec = NULL;
    json_error_t jerr;
    cr_err rc = CR_OK;
    double s10 = 0, s50 = 0;

    memset(acc, 0, sizeof acc);
    memset(&r, 0, sizeof r);
    rc = read_text(predictions_path, &text, &len);
    if (rc)
        goto out;
    p = text + strspn(text, " \t\r\n");
    if (*p == '[') { /* one JSON array of records */
        doc = json_loads(p, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: malformed JSON at line %d, column %d: %s",
                              predictions_path, jerr.line, jerr.column, jerr.text);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(doc); i++) {
            snprintf(where, sizeof where, "entry %zu", i);
            rc = fiq_record(json_array_get(doc, i), predictions_path, where, acc, &scratch,
                            &cap);
            if (rc)
                goto out;
        }
    } else { /* JSON Lines */
        size_t line = 0;
        char *s = text;
        while (*s) {
            char *nl = strchr(s, '\n');
            line++;
            if (nl)
                *nl = '\0';
            if (s[strspn(s, " \t\r")] != '\0') {
                rec = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
                if (!rec) {
                    rc = cr_error_set(CR_ERR_INVALID, "%s: line %zu: malformed JSON at column "
                                      "%d: %s", predictions_path, line, jerr.column, jerr.text);
                    goto out;
                }
                snprintf(where, sizeof where, "line %zu", line);
                rc = fiq_record(rec, predictions_path, where, acc, &scratch, &cap);
                if (rc)
                    goto out;
                json_decref(rec);
                rec = NULL;
            }
            if (!nl)
                break;
            s = nl + 1;
        }
    }
    for (int c = 0; c < CIRRUS_EVAL_FIQ_NCATS; c++) {
        cirrus_eval_fiq_scores *sc = &r.cat[c];
        sc->n_queries = acc[c].n;
        sc->recall10 = mean_or_nan(acc[c].hit10, acc[c].n);
        sc->recall50 = mean_or_nan(acc[c].hit50, acc[c].n);
        sc->avg = (sc->recall10 + sc->recall50) / 2.0;
        if (acc[c].n) {
            r.n_categories++;
            s10 += sc->recall10;
            s50 += sc->recall50;
            total += acc[c].n;
        }
    }
    if (!r.n_categories) {
        rc = cr_error_set(CR_ERR_INVALID, "%s: no queries", predictions_path);
        goto out;
    }
    r.mean.n_queries = total;
    r.mean.recall10 = s10 / r.n_categories;
    r.mean.recall50 = s50 / r.n_categories;
    r.mean.avg = (r.mean.recall10 + r.mean.recall50) / 2.0;
    *out = r;
out:
    json_decref(rec);
    json_decref(doc);
    free(scratch);
    free(text);
    return rc;
}

static json_t *fiq_scores_json(const cirrus_eval_fiq_scores *s)
{
    json_t *o = json_object(), *rec = json_object();
    if (!o || !rec) {
        json_decref(o);
        json_decref(rec);
        return NULL;
    }
    json_object_set_new(o, "n_queries", json_integer((json_int_t)s->n_queries));
    json_object_set_new(rec, "10", num(s->recall10));
    json_object_set_new(rec, "50", num(s->recall50));
    json_object_set_new(o, "recall", rec);
    json_object_set_new(o, "avg", num(s->avg));
    return o;
}

json_t *cirrus_eval_fiq_json(const cirrus_eval_fiq_result *r)
{
    json_t *o = json_object();
    for (int c = 0; o && c < CIRRUS_EVAL_FIQ_NCATS; c++)
        json_object_set_new(o, fiq_cats[c], fiq_scores_json(&r->cat[c]));
    if (o)
        json_object_set_new(o, "mean", fiq_scores_json(&r->mean));
    return o;
}

void cirrus_eval_fiq_print(FILE *out, const cirrus_eval_fiq_result *r)
{
    fprintf(out, "FashionIQ (percent)\n\n%-10s %8s %8s %8s %8s\n", "category", "queries", "R@10",
            "R@50", "avg");
    for (int c = 0; c <= CIRRUS_EVAL_FIQ_NCATS; c++) {
        const cirrus_eval_fiq_scores *s = c < CIRRUS_EVAL_FIQ_NCATS ? &r->cat[c] : &r->mean;
        fprintf(out, "%-10s %8zu", c < CIRRUS_EVAL_FIQ_NCATS ? fiq_cats[c] : "mean",
                s->n_queries);
        print_pct(out, s->recall10, 9);
        print_pct(out, s->recall50, 9);
        print_pct(out, s->avg, 9);
        fputc('\n', out);
    }
    if (r->n_categories < CIRRUS_EVAL_FIQ_NCATS)
        fprintf(out, "(mean over the %d categories present)\n", r->n_categories);
}

/* ---- CIRR ----------------------------------------------------------------------------- */

typedef struct cirr_query {
    long long pairid;
    const char *reference, *target;
    const json_t *members; /* array of string, or NULL */
    int seen;
} cirr_query;

static cr_err cirr_load_annotations(const json_t *ann, const char *path, int need_members,
                                    cirr_query **qs_out, id_entry **tab_out, size_t *n_out)
{
    size_t n = json_array_size(ann), i, m;
    cirr_query *qs = NULL;
    id_entry *tab = NULL;
    cr_err rc = CR_OK;

    if (!json_is_array(ann))
        return cr_error_set(CR_ERR_INVALID, "%s: expected a JSON array of queries", path);
    if (n == 0)
        return cr_error_set(CR_ERR_INVALID, "%s: no queries", path);
    qs = calloc(n, sizeof *qs);
    tab = calloc(n, sizeof *tab);
    if (!qs || !tab) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        const json_t *q = json_array_get(ann, i), *id, *ref, *tgt, *set, *mem;
        if (!json_is_object(q)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: entry %zu is not an object", path, i);
            goto out;
        }
        id = json_object_get(q, "pairid");
        ref = json_object_get(q, "reference");
        tgt = json_object_get(q, "target_hard");
        set = json_object_get(q, "img_set");
        mem = json_is_object(set) ? json_object_get(set, "members") : NULL;
        if (!json_is_integer(id) || json_integer_value(id) < 0) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: entry %zu: \"pairid\" is not a "
                              "non-negative integer", path, i);
            goto out;
        }
        qs[i].pairid = json_integer_value(id);
        if (!json_is_string(ref)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld: \"reference\" missing or not a "
                              "string", path, qs[i].pairid);
            goto out;
        }
        if (!json_is_string(tgt)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld has no \"target_hard\" (the "
                              "test split has none; use the CIRR evaluation server)", path,
                              qs[i].pairid);
            goto out;
        }
        if (mem) {
            if (!json_is_array(mem)) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld: img_set.members is not a "
                                  "list", path, qs[i].pairid);
                goto out;
            }
            for (m = 0; m < json_array_size(mem); m++)
                if (!json_is_string(json_array_get(mem, m))) {
                    rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld: img_set.members[%zu] "
                                      "is not a string", path, qs[i].pairid, m);
                    goto out;
                }
        } else if (need_members) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld has no img_set.members (needed "
                              "for subset recall)", path, qs[i].pairid);
            goto out;
        }
        qs[i].reference = json_string_value(ref);
        qs[i].target = json_string_value(tgt);
        qs[i].members = mem;
        tab[i].id = qs[i].pairid;
        tab[i].index = i;
    }
    rc = id_table_sort(tab, n, path, "pairid");
    if (rc)
        goto out;
    *qs_out = qs;
    *tab_out = tab;
    *n_out = n;
    qs = NULL;
    tab = NULL;
out:
    free(qs);
    free(tab);
    return rc;
}

static int cirr_is_member(const json_t *members, const char *name)
{
    for (size_t m = 0; m < json_array_size(members); m++)
        if (strcmp(json_string_value(json_array_get(members, m)), name) == 0)
            return 1;
    return 0;
}

/* Scores one prediction file: hits[k] counts the queries whose target is within ranks[k]
 * once the reference (and, for `subset`, every non-member) is removed from the ranking. */
static cr_err cirr_score(const char *path, int subset, cirr_query *qs, const id_entry *tab,
                         size_t nq, const int *ranks, int nranks, double *hits)
{
    json_t *pred = NULL, *list;
    const char **names = NULL, **scratch = NULL, *key;
    const char *want_metric = subset ? "recall_subset" : "recall";
    size_t cap = 0, i;
    cr_err rc;

    for (i = 0; i < nq; i++)
        qs[i].seen = 0;
    rc = cr_json_load_file(path, &pred);
    if (rc)
        goto out;
    if (!json_is_object(pred)) {
        rc = cr_error_set(CR_ERR_INVALID, "%s: expected a JSON object mapping pairids to "
                          "ranked lists of image names", path);
        goto out;
    }
    json_object_foreach(pred, key, list) {
        long long pid, pos = -1, rank = 0;
        const id_entry *e;
        cirr_query *q;
        size_t n;

        if (strcmp(key, "version") == 0) {
            if (!json_is_string(list)) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: \"version\" is not a string", path);
                goto out;
            }
            continue;
        }
        if (strcmp(key, "metric") == 0) {
            if (!json_is_string(list) || strcmp(json_string_value(list), want_metric) != 0) {
                rc = cr_error_set(CR_ERR_INVALID, "%s: \"metric\" must be \"%s\" in %s", path,
                                  want_metric,
                                  subset ? "--subset-predictions" : "--predictions");
                goto out;
            }
            continue;
        }
        if (parse_key(key, &pid)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: key '%s' is not a pairid", path, key);
            goto out;
        }
        e = id_find(tab, nq, pid);
        if (!e) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld is not in the annotations", path,
                              pid);
            goto out;
        }
        q = &qs[e->index];
        if (q->seen) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld is given twice", path, pid);
            goto out;
        }
        q->seen = 1;
        if (!json_is_array(list)) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld: predictions are not a list",
                              path, pid);
            goto out;
        }
        n = json_array_size(list);
        if (n > cap) {
            const char **a = realloc(names, n * sizeof *a), **b;
            if (!a) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
            names = a;
            b = realloc(scratch, n * sizeof *b);
            if (!b) {
                rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
                goto out;
            }
            scratch = b;
            cap = n;
        }
        rc = string_list(list, path, "pairid", pid, names, scratch);
        if (rc)
            goto out;
        for (i = 0; i < n && pos < 0; i++) {
            if (strcmp(names[i], q->reference) == 0)
                continue;
            if (subset && !cirr_is_member(q->members, names[i]))
                continue;
            if (strcmp(names[i], q->target) == 0)
                pos = rank;
            rank++;
        }
        for (int k = 0; k < nranks; k++)
            if (pos >= 0 && pos < ranks[k])
                hits[k] += 1.0;
    }
    for (i = 0; i < nq; i++)
        if (!qs[tab[i].index].seen) {
            rc = cr_error_set(CR_ERR_INVALID, "%s: pairid %lld has no predictions", path,
                              tab[i].id);
            goto out;
        }
out:
    free(names);
    free(scratch);
    json_decref(pred);
    return rc;
}

cr_err cirrus_eval_cirr_compute(const char *annotations_path, const char *predictions_path,
                                const char *subset_predictions_path,
                                cirrus_eval_cirr_result *out)
{
    json_t *ann = NULL;
    cirr_query *qs = NULL;
    id_entry *tab = NULL;
    size_t nq = 0;
    double hits[CIRRUS_EVAL_CIRR_NRANKS] = {0}, sub[CIRRUS_EVAL_CIRR_NSUBSET] = {0};
    cirrus_eval_cirr_result r;
    cr_err rc;

    memset(&r, 0, sizeof r);
    r.avg = NAN;
    if (!predictions_path && !subset_predictions_path)
        return cr_error_set(CR_ERR_INVALID, "give predictions, subset predictions, or both");
    rc = cr_json_load_file(annotations_path, &ann);
    if (rc)
        goto out;
    rc = cirr_load_annotations(ann, annotations_path, subset_predictions_path != NULL, &qs, &tab,
                               &nq);
    if (rc)
        goto out;
    r.n_queries = nq;
    if (predictions_path) {
        rc = cirr_score(predictions_path, 0, qs, tab, nq, cirr_ranks, CIRRUS_EVAL_CIRR_NRANKS,
                        hits);
        if (rc)
            goto out;
        r.has_recall = 1;
        for (int k = 0; k < CIRRUS_EVAL_CIRR_NRANKS; k++)
            r.recall[k] = hits[k] / (double)nq;
    }
    if (subset_predictions_path) {
        rc = cirr_score(subset_predictions_path, 1, qs, tab, nq, cirr_subset_ranks,
                        CIRRUS_EVAL_CIRR_NSUBSET, sub);
        if (rc)
            goto out;
        r.has_subset = 1;
        for (int k = 0; k < CIRRUS_EVAL_CIRR_NSUBSET; k++)
            r.recall_subset[k] = sub[k] / (double)nq;
    }
    if (r.has_recall && r.has_subset)
        r.avg = (r.recall[1] + r.recall_subset[0]) / 2.0; /* R@5 and Rs@1 */
    *out = r;
out:
    free(qs);
    free(tab);
    json_decref(ann);
    return rc;
}

json_t *cirrus_eval_cirr_json(const cirrus_eval_cirr_result *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "n_queries", json_integer((json_int_t)r->n_queries));
    if (r->has_recall)
        json_object_set_new(o, "recall",
                            ranks_json(r->recall, cirr_ranks, CIRRUS_EVAL_CIRR_NRANKS));
    if (r->has_subset)
        json_object_set_new(o, "recall_subset", ranks_json(r->recall_subset, cirr_subset_ranks,
                                                           CIRRUS_EVAL_CIRR_NSUBSET));
    if (r->has_recall && r->has_subset)
        json_object_set_new(o, "avg", num(r->avg));
    return o;
}

void cirrus_eval_cirr_print(FILE *out, const cirrus_eval_cirr_result *r)
{
    int k;
    fprintf(out, "CIRR, %zu queries (percent)\n\n", r->n_queries);
    if (r->has_recall) {
        fprintf(out, "%-30s", "Recall@K (reference removed)");
        for (k = 0; k < CIRRUS_EVAL_CIRR_NRANKS; k++)
            print_k(out, cirr_ranks[k], 8);
        fprintf(out, "\n%-30s", "");
        for (k = 0; k < CIRRUS_EVAL_CIRR_NRANKS; k++)
            print_pct(out, r->recall[k], 8);
        fputc('\n', out);
    }
    if (r->has_subset) {
        fprintf(out, "%-30s", "Recall_subset@K");
        for (k = 0; k < CIRRUS_EVAL_CIRR_NSUBSET; k++)
            print_k(out, cirr_subset_ranks[k], 8);
        fprintf(out, "\n%-30s", "");
        for (k = 0; k < CIRRUS_EVAL_CIRR_NSUBSET; k++)
            print_pct(out, r->recall_subset[k], 8);
        fputc('\n', out);
    }
    if (r->has_recall && r->has_subset) {
        fprintf(out, "%-30s", "Avg (R@5 + Rsubset@1) / 2");
        print_pct(out, r->avg, 8);
        fputc('\n', out);
    }
}
