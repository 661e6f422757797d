#!/usr/bin/env bash
# Paired A/B of two coordinator builds on the same shards:
#   bench/coordinator_ab.sh BEFORE_BUILD AFTER_BUILD [N] [ROUNDS]
# One local cluster (2 groups x 2 replicas, HNSW32, N x 128-d, built with BEFORE's binaries);
# each round starts a fresh coordinator of each build on the same shards (so neither carries
# the history of earlier rounds), then runs 1 and 4 clients (ef 64, 3 s) against both,
# alternating which goes first. Prints one row per round and client count.
set -euo pipefail
A=$(cd "${1:?before build dir}/bin" && pwd); B=$(cd "${2:?after build dir}/bin" && pwd)
N=${3:-200000}; ROUNDS=${4:-8}
SRC="$(cd "$(dirname "$0")/.." && pwd)"; W=$(mktemp -d /tmp/cirrus-ab2-XXXXXX)
PIDS=""
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$W/cl" >/dev/null 2>&1; for p in $PIDS; do kill $p 2>/dev/null || true; done; rm -rf "$W"' EXIT
num() { grep -o "\"$2\":[-0-9.e]*" <<<"$1" | head -1 | cut -d: -f2; }
"$A/cirrus-bench" gen --n "$N" --dim 128 --clusters 1000 --queries 1000 --out "$W/b.fvecs" --query-out "$W/q.fvecs" >&2
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$W/cl" --bin "$A" --dim 128 --index HNSW32)
"$A/cirrus" --endpoint "$ep" --timeout 600000 load --vectors "$W/b.fvecs" --id-prefix r --batch 256 >/dev/null 2>&1
"$A/cirrus" --endpoint "$ep" --timeout 600000 snapshot >/dev/null
start() { # BIN -> endpoint on stdout, pid in $W/pid
  local p=$((10000 + RANDOM % 22000)); local e="tcp://127.0.0.1:$p"
  "$1/cirrus-coordinator" --map "$W/cl/map.json" --bind "$e" --log-level warn >>"$W/c.log" 2>&1 &
  echo $! >"$W/pid"
  for _ in $(seq 1 100); do "$A/cirrus" --endpoint "$e" --timeout 300 health >/dev/null 2>&1 && break; sleep 0.1; done
  echo "$e"
}
run() { "$A/cirrus-bench" search --endpoint "$1" --queries "$W/q.fvecs" --k 10 --ef 64 --concurrency "$2" --duration 3 --spin-us 300 --json; }
echo "| round | clients | before QPS | before p50 ms | after QPS | after p50 ms |"
echo "|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  ea=$(start "$A"); pa=$(cat "$W/pid"); eb=$(start "$B"); pb=$(cat "$W/pid"); PIDS="$pa $pb"
  for c in 1 4; do
    if [ $((r % 2)) = 1 ]; then ra=$(run "$ea" $c); rb=$(run "$eb" $c); else rb=$(run "$eb" $c); ra=$(run "$ea" $c); fi
    echo "| $r | $c | $(num "$ra" qps) | $(num "$ra" p50_ms) | $(num "$rb" qps) | $(num "$rb" p50_ms) |"
  done
  kill $pa $pb; wait $pa $pb 2>/dev/null || true
done
