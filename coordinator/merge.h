/* merge.h — gathering partial top-k lists from shard groups into one answer: order by the
 * metric, optionally keep at most `group_size` hits per value of a `group_by` attribute
 * (one hit per product), then skip `offset` and keep `k`. Pure functions; no I/O. */
#ifndef COORD_MERGE_H
#define COORD_MERGE_H

#include <stddef.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

typedef struct coord_merge_params {
    int metric_l2;        /* 0: higher score first; 1: lower first */
    size_t k, offset;
    const char *group_by; /* NULL or "" = no grouping */
    size_t group_size;    /* 0 = 1 */
} coord_merge_params;

/* Merges the hits of `n` results (borrowed) into out->hits (a new array of pointers that
 * BORROW the input hits: free only the array). Ties are broken by id for a stable order.
 * Hits with the same id (a hedged duplicate) are kept once. */
cr_err coord_merge(const Cirrus__V1__SearchResult *const *results, size_t n,
                   const coord_merge_params *p, Cirrus__V1__SearchResult *out);

/* The k to ask each shard for, so that grouping and offset can still fill k results. */
size_t coord_merge_fetch_k(size_t k, size_t offset, const char *group_by, size_t group_size);

#endif
