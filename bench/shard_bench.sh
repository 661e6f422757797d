#!/usr/bin/env bash
# The shard benchmark of docs/performance.md, side by side with in-process FAISS in one run:
#   bench/shard_bench.sh [BUILD_DIR] [N] [RESTART_N]
# 200k x 128-d clustered vectors by default; HNSW32 and IVF1024,Flat; prints a Markdown table.
#  - latency added by the server: p50 single client - p50 of the same index in-process;
#  - throughput: QPS with 8 concurrent clients vs the in-process index on both cores;
#  - durable ingest rate (batches of 256), recall@10 under 1/10/50% filters;
#  - restart-to-ready of a RESTART_N x 128-d shard (1M by default).
set -euo pipefail
BUILD=${1:-build}; N=${2:-200000}; RN=${3:-1000000}
BIN="$(cd "$BUILD/bin" && pwd)"
W=$(mktemp -d /tmp/cirrus-bench-XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$W"' EXIT
port() { local p; while :; do p=$((10000 + RANDOM % 22000)); (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
ready() { for _ in $(seq 1 600); do "$BIN/cirrus" --endpoint "$1" --timeout 300 health >/dev/null 2>&1 && return; sleep 0.1; done; exit 1; }
num() { grep -o "\"$2\":[-0-9.e]*" <<<"$1" | head -1 | cut -d: -f2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
"$BIN/cirrus-bench" gen --n "$N" --dim 128 --clusters 1000 --queries 1000 --out "$W/b.fvecs" \
  --query-out "$W/q.fvecs" >&2
"$BIN/cirrus-bench" truth --base "$W/b.fvecs" --queries "$W/q.fvecs" --k 10 --out "$W/t.ivecs" >&2
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "{\"bucket\":%d}\n", i % 100 }' >"$W/attrs.jsonl"

echo "| index | params | durable ingest vec/s (all indexed) | p50 server ms | p50 in-process ms | added us | recall server / in-process | QPS 8 clients | QPS in-process 2 thr | ratio | recall@10 filter 1% / 10% / 50% |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for spec in "HNSW32|ef=64|--ef 64" "IVF1024,Flat|nprobe=16|--nprobe 16"; do
  IFS='|' read -r index label params <<<"$spec"
  ep="tcp://127.0.0.1:$(port)"
  rm -rf "$W/s"
  "$BIN/cirrus-shard" --dir "$W/s" --bind "$ep" --create --dim 128 --index "$index" \
    --log-level warn 2>"$W/shard.log" &
  PID=$!
  ready "$ep"
  t0=$(date +%s.%N)
  "$BIN/cirrus" --endpoint "$ep" --timeout 600000 --json load --vectors "$W/b.fvecs" \
    --attrs "$W/attrs.jsonl" --id-prefix r --batch 256 --window 4 >"$W/load.json" 2>/dev/null
  t1=$(date +%s.%N)
  ingest=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  # Searches are measured once the index holds everything (a snapshot waits for the indexer).
  "$BIN/cirrus" --endpoint "$ep" --timeout 600000 snapshot >/dev/null
  t2=$(date +%s.%N)
  indexed=$(awk -v n="$N" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.0f", n / (b - a) }')
  # shellcheck disable=SC2086
  one=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --truth "$W/t.ivecs" \
    --id-prefix r --k 10 --concurrency 1 --duration 10 $params --spin-us 300 --peer-base "$W/b.fvecs" \
    --peer-index "$index" --peer-threads 1 --json)
  # shellcheck disable=SC2086
  eight=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --truth "$W/t.ivecs" \
    --id-prefix r --k 10 --concurrency 8 --duration 10 $params --peer-base "$W/b.fvecs" \
    --peer-index "$index" --peer-threads 2 --json)
  frec=""
  for f in "bucket < 1" "bucket < 10" "bucket < 50"; do
    # shellcheck disable=SC2086
    r=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --id-prefix r --k 10 \
      --duration 3 $params --filter "$f" --json)
    frec="$frec${frec:+ / }$(printf '%.3f' "$(num "$r" recall)")"
  done
  p50=$(num "$one" p50_ms); pp50=$(grep -o '"peer":{[^}]*' <<<"$one" | grep -o '"p50_ms":[0-9.e-]*' | cut -d: -f2)
  rec=$(num "$one" recall); prec=$(grep -o '"peer":{[^}]*' <<<"$one" | grep -o '"recall":[0-9.e-]*' | cut -d: -f2)
  qps=$(num "$eight" qps); pqps=$(grep -o '"peer":{[^}]*' <<<"$eight" | grep -o '"qps":[0-9.e-]*' | cut -d: -f2)
  printf '| %s | %s | %s (%s) | %.3f | %.3f | %.0f | %.3f / %.3f | %.0f | %.0f | %.2f | %s |\n' \
    "$index" "$label" "$ingest" "$indexed" "$p50" "$pp50" "$(awk -v a="$p50" -v b="$pp50" 'BEGIN{print (a-b)*1000}')" \
    "$rec" "$prec" "$qps" "$pqps" "$(awk -v a="$qps" -v b="$pqps" 'BEGIN{print a/b}')" "$frec"
  echo "$one" >"$W/one-$index.json"; echo "$eight" >"$W/eight-$index.json"
  kill -TERM "$PID"; wait "$PID" || true; PID=""
done

# Restart-to-ready of a large shard: load, snapshot (SIGTERM), then time the open.
"$BIN/cirrus-bench" gen --n "$RN" --dim 128 --clusters 1000 --queries 1 --out "$W/big.fvecs" >&2
ep="tcp://127.0.0.1:$(port)"
rm -rf "$W/big"
"$BIN/cirrus-shard" --dir "$W/big" --bind "$ep" --create --dim 128 --index HNSW32 \
  --log-level warn 2>"$W/big.log" &
PID=$!
ready "$ep"
"$BIN/cirrus" --endpoint "$ep" --timeout 600000 load --vectors "$W/big.fvecs" --id-prefix b \
  --batch 1024 >/dev/null 2>&1
kill -TERM "$PID"; wait "$PID" || true; PID=""
r=$("$BIN/cirrus-bench" restart --dir "$W/big" --json)
t0=$(date +%s.%N)
"$BIN/cirrus-shard" --dir "$W/big" --bind "$ep" --log-level warn 2>>"$W/big.log" &
PID=$!
ready "$ep"
t1=$(date +%s.%N)
echo
echo "restart-to-ready, $RN x 128-d HNSW32 shard: engine open $(num "$r" restart_ms) ms; process start to first answered health check $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms; disk $(du -sh "$W/big" | cut -f1)"
