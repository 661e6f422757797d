/* shard_writer.h — one shard directory written by an offline build: the only file of
 * offline/ that speaks the shard engine's API (shard/engine.h), so that a change of the
 * engine's types is adapted here alone.
 *
 *     offline_shard_params p = {.dim = 128, .metric_l2 = 0, .factory = "Flat"};
 *     offline_shard *s;
 *     rc = offline_shard_open(&s, "out/group-0", &p);      // creates, or reopens to resume
 *     rc = offline_shard_put(s, items, n, results);         // one synced commit
 *     rc = offline_shard_finish(s);                         // index drained, snapshotted
 *     offline_shard_close(&s);
 *
 * The directory is an ordinary shard: `cirrus-shard --dir` opens it as it is. Items carry
 * the caller's versions; putting an item again with the same version is a no-op (the shard
 * keeps only strictly newer versions), which is what makes a resumed build replay safely.
 * One thread per handle. */
#ifndef OFFLINE_SHARD_WRITER_H
#define OFFLINE_SHARD_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "cirrus.pb-c.h"
#include "common/err.h"

typedef struct offline_shard offline_shard;

typedef struct offline_shard_params {
    int dim;
    int metric_l2;             /* 0: ip, 1: l2 */
    const char *factory;       /* FAISS factory string */
    const char *template_path; /* trained template (NULL: none needed) */
} offline_shard_params;

/* One item: borrowed pointers, valid during the call. */
typedef struct offline_item {
    const char *id;
    const float *vector; /* dim floats, raw */
    Cirrus__V1__Attribute **attrs;
    size_t n_attrs;
    uint64_t version; /* >= 1 */
} offline_item;

typedef enum offline_put_status {
    OFFLINE_PUT_OK = 0,      /* stored */
    OFFLINE_PUT_PRESENT = 1, /* this version (or a newer one) was already stored */
    OFFLINE_PUT_INVALID = 2  /* refused (message says why): bad vector, attribute, id */
} offline_put_status;

typedef struct offline_put_result {
    offline_put_status status;
    char message[160];
} offline_put_result;

/* Opens `dir` as a shard, creating it when it holds none; an existing one must have the
 * same dim, metric and factory (CR_ERR_INVALID naming both otherwise). */
cr_err offline_shard_open(offline_shard **out, const char *dir, const offline_shard_params *p);
void offline_shard_close(offline_shard **pp);

/* Stores n items in one synced transaction; results[i] for items[i]. A negative return means
 * nothing was stored (store failure): results are meaningless then. Waits (bounded, 10 min)
 * while the index queue is full. */
cr_err offline_shard_put(offline_shard *s, const offline_item *items, size_t n,
                         offline_put_result *results);

/* Every stored item into the ANN index, then the index snapshot (the shard starts without
 * replay). */
cr_err offline_shard_finish(offline_shard *s);

/* Live items stored. */
cr_err offline_shard_count(offline_shard *s, uint64_t *count);

/* Opens an existing shard directory (never creates one), as a server would, and reports
 * its live items, dimension and index factory (cap bytes); closes it. A restore's check. */
cr_err offline_shard_verify(const char *dir, uint64_t *items, int *dim, char *factory,
                            size_t cap);

#endif
