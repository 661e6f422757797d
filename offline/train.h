/* train.h — the trained template of an offline build: an index that needs training (IVF, PQ,
 * OPQ, SQ ...) is trained ONCE on a sample drawn evenly across the whole input and the
 * trained, empty index is shared by every group's shard (shard_index_opts.template_path), so
 * every group quantizes alike and none trains on its own skewed slice. */
#ifndef OFFLINE_TRAIN_H
#define OFFLINE_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Whether `factory` needs training and how many vectors the sample takes: `train_size` when
 * > 0, else the index's own default (max(40 x nlist, 10000) for IVF); never more than
 * `records`. */
cr_err offline_train_plan(int dim, int metric_l2, const char *factory, int64_t train_size,
                          uint64_t records, bool *needs, uint64_t *sample);

/* The sample's record numbers: i * records / sample for i < sample (even, deterministic). */
uint64_t offline_train_pick(uint64_t i, uint64_t records, uint64_t sample);

/* Trains on n raw vectors (normalized here for ip, as the shard indexes them) and writes the
 * template to path. */
cr_err offline_train_write(int dim, int metric_l2, const char *factory, uint64_t n, float *x,
                           int threads, const char *path);

#endif
