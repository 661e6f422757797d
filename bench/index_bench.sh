#!/usr/bin/env bash
# Index quality of docs/performance.md: recall@10 of a shard's index (the engine in-process,
# through its backlog and indexer thread) beside the same FAISS index built in-process from the
# same vectors, under three write patterns, for HNSW32, IVF1024,Flat, IVF1024,PQ16 and SQ8.
#   bench/index_bench.sh [BUILD_DIR] [N] [SEED]
# N x 128-d clustered vectors (100k by default), 1,000 queries, L2, efSearch 16, nprobe 16.
# Exit 3 when some shard recall falls more than 0.01 below the in-process one.
set -euo pipefail
BUILD=${1:-build}; N=${2:-100000}; SEED=${3:-42}
BIN="$(cd "$BUILD/bin" && pwd)"
W=$(mktemp -d /tmp/cirrus-idxbench-XXXXXX)
trap 'rm -rf "$W"' EXIT
"$BIN/cirrus-bench" gen --n "$N" --dim 128 --clusters 1000 --queries 1000 --seed "$SEED" \
  --out "$W/b.fvecs" --query-out "$W/q.fvecs" >&2
"$BIN/cirrus-bench" truth --base "$W/b.fvecs" --queries "$W/q.fvecs" --k 10 --metric l2 \
  --out "$W/t.ivecs" >&2
exec "$BIN/cirrus-bench" index --base "$W/b.fvecs" --queries "$W/q.fvecs" --truth "$W/t.ivecs" \
  --metric l2 --ef 16 --nprobe 16 --batch 256 --workdir "$W" \
  --index HNSW32 --index IVF1024,Flat --index IVF1024,PQ16 --index SQ8
