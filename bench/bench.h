/* bench.h — cirrus-bench: load generator, dataset generator, ground truth, and the
 * side-by-side peers (in-process FAISS, PyTorch) that performance claims are measured
 * against. Each subcommand prints a table and, with --json, one JSON object. */
#ifndef CIRRUS_BENCH_H
#define CIRRUS_BENCH_H

#include <stddef.h>
#include <stdint.h>

int bench_cmd_gen(int argc, char **argv);
int bench_cmd_catalog(int argc, char **argv);
int bench_cmd_tiny_model(int argc, char **argv);
int bench_cmd_truth(int argc, char **argv);
int bench_cmd_search(int argc, char **argv);
int bench_cmd_index(int argc, char **argv);
int bench_cmd_restart(int argc, char **argv);
int bench_cmd_raw(int argc, char **argv);
int bench_cmd_echo(int argc, char **argv);
int bench_cmd_encoder(int argc, char **argv);
int bench_cmd_soak(int argc, char **argv);

/* Latency percentiles over `n` samples (sorted in place), in the samples' unit. */
double bench_percentile(double *samples, size_t n, double p);

/* Recall@k of `got` (k ids per query; -1 = none) against the first k of `truth`
 * (truth_k ids per query). */
double bench_recall(const int64_t *got, const int32_t *truth, size_t nq, size_t k,
                    size_t truth_k);

/* NDCG@k with binary relevance (a hit is relevant when it is among the first k of `truth`),
 * averaged over the queries: VectorDBBench's `ndcg`. */
double bench_ndcg(const int64_t *got, const int32_t *truth, size_t nq, size_t k, size_t truth_k);

/* `cirrus-bench search --load FILE`: upserts FILE's rows as PREFIX<row> through `endpoint`
 * in acknowledged batches, then waits until its Stats report nothing unindexed. *seconds is
 * the wall time until then (VectorDBBench's load_duration: insert + index build),
 * *insert_seconds until the last write was acknowledged. 0 or 1 (printed). */
int bench_endpoint_load(const char *endpoint, const char *path, const char *prefix,
                        double *seconds, double *insert_seconds, size_t *loaded);

/* Peak resident set size of this process in MiB (VmHWM). */
double bench_peak_rss_mb(void);

#endif
