#include "coordinator/merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"

size_t coord_merge_fetch_k(size_t k, size_t offset, const char *group_by, size_t group_size)
{
    size_t want = k + offset;
    if (group_by && group_by[0])
        want *= 4 * (group_size ? group_size : 1); /* room for several hits per product */
    return want > CR_MAX_K ? CR_MAX_K : want;
}

static int hit_cmp(const void *a, const void *b, void *ctx)
{
    const Cirrus__V1__Hit *x = *(Cirrus__V1__Hit *const *)a, *y = *(Cirrus__V1__Hit *const *)b;
    int metric_l2 = *(const int *)ctx;
    if (x->score != y->score)
        return metric_l2 ? (x->score < y->score ? -1 : 1) : (x->score > y->score ? -1 : 1);
    return strcmp(x->id, y->id);
}

/* The grouping key of a hit: its attribute's value as text; NULL when it has none. */
static const char *group_key(const Cirrus__V1__Hit *h, const char *attr, char *buf, size_t len)
{
    for (size_t i = 0; i < h->n_attributes; i++) {
        const Cirrus__V1__Attribute *a = h->attributes[i];
        if (strcmp(a->name, attr) != 0 || !a->value)
            continue;
        switch (a->value->value_case) {
        case CIRRUS__V1__ATTR_VALUE__VALUE_S: return a->value->s;
        case CIRRUS__V1__ATTR_VALUE__VALUE_I:
            snprintf(buf, len, "i:%lld", (long long)a->value->i);
            return buf;
        case CIRRUS__V1__ATTR_VALUE__VALUE_D:
            snprintf(buf, len, "d:%.17g", a->value->d);
            return buf;
        case CIRRUS__V1__ATTR_VALUE__VALUE_B: return a->value->b ? "b:true" : "b:false";
        default: return NULL;
        }
    }
    return NULL;
}

cr_err coord_merge(const Cirrus__V1__SearchResult *const *results, size_t n,
                   const coord_merge_params *p, Cirrus__V1__SearchResult *out)
{
    size_t total = 0, m = 0, kept = 0, skipped = 0;
    Cirrus__V1__Hit **all, **sel;
    size_t gsize = p->group_size ? p->group_size : 1;
    int grouping = p->group_by && p->group_by[0];

    for (size_t i = 0; i < n; i++)
        total += results[i] ? results[i]->n_hits : 0;
    all = malloc((total ? total : 1) * sizeof *all);
    sel = malloc((p->k ? p->k : 1) * sizeof *sel);
    if (!all || !sel) {
        free(all);
        free(sel);
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; results[i] && j < results[i]->n_hits; j++)
            all[m++] = results[i]->hits[j];
    qsort_r(all, m, sizeof *all, hit_cmp, (void *)&p->metric_l2);
    for (size_t i = 0; i < m && kept < p->k; i++) {
        if (i > 0 && strcmp(all[i]->id, all[i - 1]->id) == 0)
            continue;
        if (grouping) {
            char b1[64], b2[64];
            const char *key = group_key(all[i], p->group_by, b1, sizeof b1);
            size_t same = 0;
            /* Count earlier kept-or-skipped hits of the same group (small k: quadratic ok). */
            for (size_t j = 0; key && j < i; j++) {
                if (j > 0 && strcmp(all[j]->id, all[j - 1]->id) == 0)
                    continue; /* a hedged duplicate counts once */
                const char *k2 = group_key(all[j], p->group_by, b2, sizeof b2);
                if (k2 && strcmp(k2, key) == 0 && strcmp(all[j]->id, all[i]->id) != 0)
                    same++;
            }
            if (same >= gsize)
                continue;
        }
        if (skipped < p->offset) {
            skipped++;
            continue;
        }
        sel[kept++] = all[i];
    }
    free(all);
    out->hits = sel;
    out->n_hits = kept;
    return CR_OK;
}
