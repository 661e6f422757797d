/* types.h — the values the shard engine speaks: attributes, items, hits, filters, stats and
 * scan pages. No protobuf here: shard/server.c translates the wire messages to and from these
 * (shard/convert.h), and the store encodes attributes on disk in its own format (store.h).
 *
 * Ownership: a struct handed IN to the engine is borrowed for the call. A struct the engine
 * hands OUT (shard_item, shard_hit) is one malloc'd block holding every string, attribute
 * and vector it points to: free() it once (shard_item_free / shard_hit_free say so).
 */
#ifndef SHARD_TYPES_H
#define SHARD_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The types an attribute value can have: exactly those of cirrus.proto's AttrValue (and
 * numbered as its oneof fields, which the store's disk format also uses). */
typedef enum shard_value_type {
    SHARD_VALUE_NONE = 0,    /* unset: invalid in an item, and in a filter */
    SHARD_VALUE_STRING = 1,  /* UTF-8, NUL-terminated */
    SHARD_VALUE_INT = 2,     /* int64 */
    SHARD_VALUE_DOUBLE = 3,  /* finite double */
    SHARD_VALUE_BOOL = 4,
    SHARD_VALUE_STRINGS = 5  /* a list of UTF-8 strings (multi-valued; may be empty) */
} shard_value_type;

typedef struct shard_value {
    shard_value_type type;
    union {
        const char *s;
        int64_t i;
        double d;
        int b; /* 0 or 1 */
        struct {
            const char *const *v;
            size_t n;
        } strings;
    } u;
} shard_value;

typedef struct shard_attr {
    const char *name; /* 1..128 bytes of UTF-8 */
    shard_value value;
} shard_attr;

/* An item: written (borrowed: id, vector and attributes are the caller's) or read back
 * (shard_engine_get: one block, free with shard_item_free). */
typedef struct shard_item {
    const char *id;       /* external id, 1..256 bytes of UTF-8 */
    const float *vector;  /* dim floats (raw); NULL for a delete, or when not asked for */
    size_t dim;
    const shard_attr *attrs;
    size_t n_attrs;
    uint64_t version;     /* 0 = assign (writes) */
    const void *image;    /* writes: the original encoded image (kept with --keep-images);
                             NULL in items the engine hands out */
    size_t image_len;
} shard_item;

void shard_item_free(shard_item **pp);

/* A resolved search hit (shard_engine_hits_fill): one block, free with shard_hit_free. */
typedef struct shard_hit {
    const char *id;
    float score;
    const shard_attr *attrs; /* when asked for */
    size_t n_attrs;
    const float *vector;     /* raw stored vector, when asked for (dim floats) */
    size_t dim;
} shard_hit;

void shard_hit_free(shard_hit **pp);

/* A compiled filter tree (shard/convert.c compiles the wire Filter into it; attrs.c
 * evaluates it). Semantics as cirrus.proto's Filter; see shard/attrs.h. */
typedef enum shard_filter_kind {
    SHARD_FILTER_NONE = 0, /* no operator: invalid */
    SHARD_FILTER_CMP,      /* attr op value */
    SHARD_FILTER_IN,       /* attr in (values) */
    SHARD_FILTER_RANGE,    /* lo <(=) attr <(=) hi, numbers */
    SHARD_FILTER_AND,      /* every kid (at least one) */
    SHARD_FILTER_OR,       /* any kid (at least one) */
    SHARD_FILTER_NOT       /* kids[0] does not match */
} shard_filter_kind;

typedef enum shard_cmp_op {
    SHARD_CMP_EQ = 0, SHARD_CMP_NE, SHARD_CMP_LT, SHARD_CMP_LE, SHARD_CMP_GT, SHARD_CMP_GE
} shard_cmp_op;

typedef struct shard_filter shard_filter;
struct shard_filter {
    shard_filter_kind kind;
    const char *attr;           /* CMP, IN, RANGE */
    shard_cmp_op op;            /* CMP */
    shard_value value;          /* CMP: string, int, double or bool */
    const shard_value *values;  /* IN */
    size_t n_values;
    int has_lo, lo_inclusive, has_hi, hi_inclusive; /* RANGE */
    double lo, hi;
    shard_filter *const *kids;  /* AND, OR (n_kids >= 1), NOT (n_kids = 1) */
    size_t n_kids;
};

/* The shard fields of a Stats answer (strings point into the engine: valid until close). */
typedef struct shard_stats {
    uint64_t count;                /* live items */
    uint32_t dim;
    int metric;                    /* shard_index_metric */
    const char *index;             /* factory string */
    int trained;
    uint64_t bytes_on_disk;
    int64_t last_snapshot_unix_ms;
    uint64_t snapshot_high_water;
    uint64_t uptime_s;
    uint64_t tombstones;
    uint64_t max_version;          /* >= every stored version (seeds coordinators) */
    uint64_t unindexed;            /* committed items not yet in the ANN index */
} shard_stats;

/* What a snapshot wrote. */
typedef struct shard_snapshot_info {
    uint64_t high_water; /* internal ids below it are covered */
    uint64_t bytes;
    uint64_t duration_ms;
} shard_snapshot_info;

/* One page of a scan (replica repair): items[i] (one block each, free with shard_item_free,
 * or all at once with shard_scan_page_clear) with deleted[i] set for tombstones. */
typedef struct shard_scan_page {
    shard_item **items;
    int *deleted;
    size_t n;
    int done;
} shard_scan_page;

void shard_scan_page_clear(shard_scan_page *p);

/* What the live items' attributes look like (shard_engine_schema, shard/schema.h), for
 * clients building filters. Every string is owned by the schema: shard_schema_clear frees all. */
typedef struct shard_schema_value {
    char *value;
    uint64_t count; /* live items holding it */
} shard_schema_value;

typedef struct shard_schema_attr {
    char *name;
    int has_strings, has_numbers, has_bools; /* types ever held (even by removed items) */
    uint64_t items;                /* live items holding the attribute */
    shard_schema_value *values;    /* most frequent string values: by count, then bytewise */
    size_t n_values;
    uint64_t distinct;             /* distinct string values held by live items */
    int has_range;                 /* min/max set: some live item holds a number */
    double min, max;
    int integer;                   /* every live number is an int64 */
    uint64_t n_true, n_false;
} shard_schema_attr;

typedef struct shard_schema {
    shard_schema_attr *attrs; /* by name, bytewise */
    size_t n;
    uint64_t items;           /* live items */
} shard_schema;

/* Frees what *s holds and zeroes it. NULL-safe. */
void shard_schema_clear(shard_schema *s);

/* Checks one attribute as the engine accepts it: a name of 1..128 bytes of UTF-8, a value of
 * a known type, UTF-8 strings, a finite double. CR_ERR_INVALID saying why. */
cr_err shard_attr_check(const shard_attr *a);

#endif
