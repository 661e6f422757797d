/* bench.h — cirrus-bench: load generator, dataset generator, ground truth, and the
 * side-by-side peers (in-process FAISS, PyTorch) that performance claims are measured
 * against. Each subcommand prints a table and, with --json, one JSON object. */
#ifndef CIRRUS_BENCH_H
#define CIRRUS_BENCH_H

#include <stddef.h>
#include <stdint.h>

int bench_cmd_gen(int argc, char **argv);
int bench_cmd_catalog(int argc, char **argv);
/* Product i's catalog image, BENCH_CATALOG_IMG^2 RGB bytes (the one `catalog` writes). */
#define BENCH_CATALOG_IMG 96
void bench_catalog_draw(unsigned char *px, long long i);
int bench_cmd_tiny_model(int argc, char **argv);
int bench_cmd_truth(int argc, char **argv);
int bench_cmd_search(int argc, char **argv);
int bench_cmd_index(int argc, char **argv);
int bench_cmd_add(int argc, char **argv);
int bench_cmd_restart(int argc, char **argv);
int bench_cmd_raw(int argc, char **argv);
int bench_cmd_echo(int argc, char **argv);
int bench_cmd_encoder(int argc, char **argv);
int bench_cmd_jobs(int argc, char **argv);

/* bench_raw.c: n round trips of a bare ZeroMQ DEALER/ROUTER echo over TCP loopback (a ROUTER
 * thread bound on 127.0.0.1:port, 0 = any free port), each in ms into lat_ms[0..n). 0 on
 * success, -1 (printed) when the socket cannot be bound or a round trip fails. */
int bench_echo_roundtrips(int port, int n, double *lat_ms);

/* bench_precision.c: the bf16 path against fp32 (cirrus-bench encoder --precision-check). */
typedef struct bench_precision_result {
    int images, queries;
    double worst_cos_images, worst_cos_text; /* bf16 vs fp32 embeddings */
    double top10_same;    /* queries whose bf16 top-10 (bf16 index) is the fp32 top-10 set */
    double top10_overlap; /* mean fraction of the fp32 top-10 found by bf16 */
    double top10_same_text, top10_same_image; /* the same per query kind (nq of each) */
    double top10_overlap_image;               /* top10_overlap of the image queries */
    double worst_cos_queries;                 /* the held-out query images */
    double top10_same_fp32q_text, top10_same_fp32q_image; /* fp32 queries on the bf16 index */
    long differ_within_rounding; /* differing queries whose fp32 10th-11th score margin is
                                    below the bf16 score error on those items */
    double seconds_fp32, seconds_bf16;
} bench_precision_result;
/* Encodes `n` synthetic images (`catalog`: `cirrus-bench catalog`'s garments through the
 * CLIP preprocessing, else random plane waves at model size), `nq` random 12-token captions
 * and `nq` held-out images (items n..n+nq) with both precisions; each precision's catalog
 * goes into a FAISS Flat (inner product) index and both query kinds are searched. */
int bench_precision_check(const char *model, int threads, int n, int nq, int catalog,
                          bench_precision_result *r);
/* Best GFLOP/s of C[M,N] = A W^T: OpenBLAS sgemm, and gemm_bf16.h (0 without AVX512_BF16). */
void bench_gemm_pair(int M, int N, int K, double *sgemm_gflops, double *bf16_gflops);
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
