#!/usr/bin/env bash
# The coordinator benchmark of docs/performance.md:
#   bench/coordinator_bench.sh [BUILD_DIR] [N]
# 1. N x 128-d (200k) in a local cluster of 2 shard groups x 2 replicas (HNSW32): p50
#    end-to-end through the coordinator vs p50 of the slowest shard queried directly, and QPS
#    with one client vs in-process FAISS over the same data at the same recall; then QPS and
#    p50 with 4 and 16 clients.
# 2. Composed queries through `cirrus serve` with random ViT-B/32-shaped CLIP + phi: the
#    latency breakdown (encode / compose / search / merge) from the answers' timing fields.
set -euo pipefail
BUILD=${1:-build}; N=${2:-200000}
BIN="$(cd "$BUILD/bin" && pwd)"; SRC="$(cd "$(dirname "$0")/.." && pwd)"
W=$(mktemp -d /tmp/cirrus-cbench-XXXXXX)
SERVE=""
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$W/cl" >/dev/null 2>&1; [ -n "$SERVE" ] && kill -9 $SERVE 2>/dev/null; rm -rf "$W"' EXIT
num() { grep -o "\"$2\":[-0-9.e]*" <<<"$1" | head -1 | cut -d: -f2; }
peer() { grep -o '"peer":{[^}]*' <<<"$1" | grep -o "\"$2\":[-0-9.e]*" | cut -d: -f2; }

"$BIN/cirrus-bench" gen --n "$N" --dim 128 --clusters 1000 --queries 1000 --out "$W/b.fvecs" \
  --query-out "$W/q.fvecs" >&2
"$BIN/cirrus-bench" truth --base "$W/b.fvecs" --queries "$W/q.fvecs" --k 10 --out "$W/t.ivecs" >&2
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$W/cl" --bin "$BIN" --dim 128 --index HNSW32)
. "$W/cl/cluster.env"
"$BIN/cirrus" --endpoint "$ep" --timeout 600000 load --vectors "$W/b.fvecs" --id-prefix r \
  --batch 256 >/dev/null 2>&1
"$BIN/cirrus" --endpoint "$ep" --timeout 600000 snapshot >/dev/null # waits for the indexers
# Clients busy-poll for replies (--spin-us 300), as a latency-sensitive client would; the
# shards at ef 32 each (2 x 100k) reach the recall of one 200k index at ef 64.
e2e=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --truth "$W/t.ivecs" \
  --id-prefix r --k 10 --ef 64 --concurrency 1 --duration 10 --spin-us 300 --peer-base "$W/b.fvecs" \
  --peer-index HNSW32 --peer-threads 1 --json)
e32=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --truth "$W/t.ivecs" \
  --id-prefix r --k 10 --ef 32 --concurrency 1 --duration 10 --spin-us 300 --json)
# Several clients at once (ef 64): the coordinator's throughput under concurrency.
conc=""
for c in 4 16; do
  r=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --k 10 --ef 64 \
    --concurrency "$c" --duration 5 --spin-us 300 --json)
  conc="$conc| QPS / p50, $c clients through the coordinator (ef 64) | $(num "$r" qps) / $(num "$r" p50_ms) ms | |
"
done
ping=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --k 10 --ping \
  --duration 3 --spin-us 300 --json)
slow=0; slow32=0
for s in "$SHARD_0_0" "$SHARD_1_0"; do
  r=$("$BIN/cirrus-bench" search --endpoint "$s" --queries "$W/q.fvecs" --k 10 --ef 64 \
    --concurrency 1 --duration 5 --spin-us 300 --json)
  slow=$(awk -v a="$slow" -v b="$(num "$r" p50_ms)" 'BEGIN { print (b > a) ? b : a }')
  r=$("$BIN/cirrus-bench" search --endpoint "$s" --queries "$W/q.fvecs" --k 10 --ef 32 \
    --concurrency 1 --duration 5 --spin-us 300 --json)
  slow32=$(awk -v a="$slow32" -v b="$(num "$r" p50_ms)" 'BEGIN { print (b > a) ? b : a }')
done
echo "| metric | ef 64 on each shard | ef 32 on each shard |"
echo "|---|---|---|"
echo "| p50 end to end through the coordinator (1 client) | $(num "$e2e" p50_ms) ms | $(num "$e32" p50_ms) ms |"
echo "| p50 of the slowest shard, queried directly | $slow ms | $slow32 ms |"
echo "| coordinator overhead (difference) | $(awk -v a="$(num "$e2e" p50_ms)" -v b="$slow" 'BEGIN{printf "%.3f", a-b}') ms | $(awk -v a="$(num "$e32" p50_ms)" -v b="$slow32" 'BEGIN{printf "%.3f", a-b}') ms |"
echo "| p50 of a Health round trip through the coordinator (transport floor) | $(num "$ping" p50_ms) ms | |"
echo "| QPS, 1 client through the coordinator (recall@10) | $(num "$e2e" qps) ($(num "$e2e" recall)) | $(num "$e32" qps) ($(num "$e32" recall)) |"
printf '%s' "$conc"
echo "| QPS, in-process FAISS HNSW32 ef 64 over all $N, 1 thread (recall@10) | $(peer "$e2e" qps) ($(peer "$e2e" recall)) | |"
echo "| ratio | $(awk -v a="$(num "$e2e" qps)" -v b="$(peer "$e2e" qps)" 'BEGIN{printf "%.2f", a/b}') | $(awk -v a="$(num "$e32" qps)" -v b="$(peer "$e2e" qps)" 'BEGIN{printf "%.2f", a/b}') |"
bash "$SRC/deploy/local/cluster.sh" down --dir "$W/cl"

# Composed-query latency breakdown with ViT-B/32 shapes (random weights) in cirrus serve.
"$BIN/cirrus-bench" tiny-model --out "$W/m" --vit-b-32 >&2
"$BIN/cirrus-bench" catalog --out "$W/cat" --n 300 >/dev/null 2>&1
p=$((10000 + RANDOM % 22000)); sep="tcp://127.0.0.1:$p"
"$BIN/cirrus" serve --data "$W/serve" --model "$W/m/model.safetensors" --phi "$W/m/phi.safetensors" \
  --shards 2 --bind "$sep" 2>"$W/serve.log" &
SERVE=$!
for _ in $(seq 1 300); do "$BIN/cirrus" --endpoint "$sep" --timeout 300 health >/dev/null 2>&1 && break; sleep 0.2; done
"$BIN/cirrus" --endpoint "$sep" --timeout 120000 ingest --catalog "$W/cat/catalog.jsonl" --images "$W/cat" >/dev/null 2>&1
echo
echo "| composed query (searle, ViT-B/32 shapes, 300 items, 2 shards) | encode ms | compose ms | search ms | merge ms | total ms |"
echo "|---|---|---|---|---|---|"
for kind in ref-id image; do
  : >"$W/t.txt"
  for i in $(seq 1 20); do
    if [ $kind = ref-id ]; then q=(--ref-id "sku-$i"); else q=(--image "$W/cat/images/sku-$i.png"); fi
    "$BIN/cirrus" --endpoint "$sep" --timeout 60000 --json search "${q[@]}" --caption "is red with short sleeves" \
      --method searle -k 10 | grep -o '"timing":{[^}]*}' >>"$W/t.txt"
  done
  awk -F'[:,}]' -v kind="$kind" '{ e += $3; c += $5; s += $7; m += $9; t += $11; n++ }
    END { printf "| reference by %s (mean of %d) | %.1f | %.1f | %.2f | %.3f | %.1f |\n",
          kind, n, e/n/1000, c/n/1000, s/n/1000, m/n/1000, t/n/1000 }' "$W/t.txt"
done
kill -TERM "$SERVE"; wait "$SERVE" || true; SERVE=""
