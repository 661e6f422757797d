/* build_input.h — the records of an offline build, read in streaming order: rows of a vector
 * file (.fvecs / .npy) with, optionally, one JSONL line of attributes per row (row i = line
 * i + 1), ids PREFIX + row number as `cirrus load` names them. Or, in "items" mode, a vector
 * file whose side file names each row itself: {"id": "...", "line": N, "attributes": {...}}
 * (the encoded spill of a catalog build; N is the catalog line), or records a line that could
 * not be encoded: {"id": "..." (may be ""), "line": N, "error": "why"} (its row is zeros;
 * offline_input_load fails with that message).
 *
 *     offline_input *in;
 *     rc = offline_input_open(&in, "v.fvecs", "attrs.jsonl", "sku-", 0);
 *     rc = offline_input_seek(in, 0, 0);
 *     while ((rc = offline_input_next(in, &rec)) == CR_OK) {
 *         if (wanted(rec.id)) rc = offline_input_load(in, vec, &attrs, &n_attrs);
 *     }
 *
 * A record's `line` is what error messages name and what its version is made of (lines only
 * grow, so a later line of the same id wins, as it would loaded online). One thread. */
#ifndef OFFLINE_BUILD_INPUT_H
#define OFFLINE_BUILD_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

typedef struct offline_input offline_input;

typedef struct offline_record {
    uint64_t index; /* 0-based record number */
    uint64_t line;  /* 1-based: the attrs / catalog line it comes from */
    const char *id; /* valid until the next offline_input_next */
} offline_record;

/* side may be NULL (no attributes; not in items mode). items_mode: the side file names each
 * row (see above); prefix is then ignored. Fails (CR_ERR_INVALID) when the side file has
 * fewer lines than the vector file has rows. */
cr_err offline_input_open(offline_input **out, const char *vectors, const char *side,
                          const char *prefix, int items_mode);
void offline_input_close(offline_input **pp);

uint64_t offline_input_records(const offline_input *in);
int offline_input_dim(const offline_input *in);

/* The next offline_input_next returns record `index`, whose side line starts at byte
 * `side_offset` (0 with index 0; else a value offline_input_offset gave). */
cr_err offline_input_seek(offline_input *in, uint64_t index, uint64_t side_offset);

/* Moves to the next record: CR_OK, CR_NOTFOUND past the last, CR_ERR_INVALID for an items-mode
 * line without an id (the record still advances; rec->line says which). */
cr_err offline_input_next(offline_input *in, offline_record *rec);

/* The current record's vector (dim floats into vec) and attributes (*attrs malloc'd: free with
 * cr_attrs_free). CR_ERR_INVALID naming the line for bad JSON or attribute types. */
cr_err offline_input_load(offline_input *in, float *vec, Cirrus__V1__Attribute ***attrs,
                          size_t *n_attrs);

/* Byte offset of the side file just past the current record (a resume point). */
uint64_t offline_input_offset(const offline_input *in);

/* Random access for training samples: row `index`'s vector. */
void offline_input_row(const offline_input *in, uint64_t index, float *vec);

#endif
