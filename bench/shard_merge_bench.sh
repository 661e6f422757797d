#!/usr/bin/env bash
# Issue 14 target 3 (docs/performance.md, "#14 target 3: coalesced search"): a shard under
# 1 / 8 / 16 concurrent clients against the same FAISS index in-process searching batches
# on both cores, in the same cirrus-bench run, with the CPU time and context switches per
# query of the clients and of the server:
#   bench/shard_merge_bench.sh [BUILD_DIR] [N] [ROUNDS] [MODES]
# N x 128-d clustered vectors (100k by default, 1,000 clusters, 1,000 queries), HNSW32 ef 64
# and IVF1024,Flat nprobe 16; MODES = "NAME:--flag=v,--flag=v ..." (shard flags per mode,
# restarting the same shard; default merged / merged with --spin-us 0 / alone), each mode
# ROUNDS times (2), interleaved. The peer is built once per index (--peer-cache); its OpenMP
# threads sleep between batches (OMP_WAIT_POLICY=passive, PEER_WAIT_POLICY overrides), so
# that its CPU time per query is work, not spinning, on a machine shared with other load.
# SPECS="FACTORY|PARAMS;..." overrides the indexes. Prints one Markdown row per level, with
# the load average beside each run.
set -euo pipefail
BUILD=${1:-build}; N=${2:-100000}; ROUNDS=${3:-2}
MODES=${4:-"merged:--merge-max=32 merged-nospin:--merge-max=32,--spin-us=0 alone:--merge-max=1"}
BIN="$(cd "$BUILD/bin" && pwd)"
W=$(mktemp -d /tmp/cirrus-merge-bench-XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$W"' EXIT
port() { local p; while :; do p=$((10000 + RANDOM % 22000)); (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
ready() { for _ in $(seq 1 600); do "$BIN/cirrus" --endpoint "$1" --timeout 300 health >/dev/null 2>&1 && return; sleep 0.1; done; exit 1; }
export OPENBLAS_NUM_THREADS=1
cat >"$W/row.py" <<'PY'
import json, sys
o = json.load(sys.stdin); p = o["peer"]
for lv in o["levels"]:
    print("| %s | %s | %s | %s | %d | %.0f | %.3f | %.3f | %.3f | %.0f | %.0f | %.2f | %.2f | %.0f | %.3f | %.2f | %.0f |" % (
        sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], lv["concurrency"], lv["qps"],
        lv["p50_ms"], lv["p99_ms"], lv["recall"], lv["cpu_us_per_query"],
        lv.get("server_cpu_us_per_query", -1), lv["cswitch_per_query"],
        lv.get("server_cswitch_per_query", -1), p["qps"], p["recall"], lv["qps"] / p["qps"],
        p["cpu_us_per_query"]))
PY

"$BIN/cirrus-bench" gen --n "$N" --dim 128 --clusters 1000 --queries 1000 --out "$W/b.fvecs" \
  --query-out "$W/q.fvecs" >&2
"$BIN/cirrus-bench" truth --base "$W/b.fvecs" --queries "$W/q.fvecs" --k 10 --metric l2 \
  --out "$W/t.ivecs" >&2
echo "| index | mode | round | load (1/5/15 min) | c | QPS | p50 ms | p99 ms | recall | client CPU us/q | server CPU us/q | client cs/q | server cs/q | peer QPS | peer recall | ratio | peer CPU us/q |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
IFS=';' read -r -a SPECS <<<"${SPECS:-HNSW32|--ef 64;IVF1024,Flat|--nprobe 16}"
for spec in "${SPECS[@]}"; do
  IFS='|' read -r index params <<<"$spec"
  ep="tcp://127.0.0.1:$(port)"
  rm -rf "$W/s"
  "$BIN/cirrus-shard" --dir "$W/s" --bind "$ep" --create --dim 128 --metric l2 --index "$index" \
    --log-level warn 2>>"$W/shard.log" &
  PID=$!
  ready "$ep"
  "$BIN/cirrus" --endpoint "$ep" --timeout 600000 load --vectors "$W/b.fvecs" --id-prefix r \
    --batch 1024 --window 4 >/dev/null 2>&1
  # the index must hold everything (a snapshot waits for the indexer; on a loaded machine it
  # may give up after 30 s without progress: ask again)
  until "$BIN/cirrus" --endpoint "$ep" --timeout 600000 snapshot >/dev/null 2>&1; do sleep 2; done
  kill -TERM "$PID"; wait "$PID" || true; PID=""
  for r in $(seq 1 "$ROUNDS"); do
    for m in $MODES; do
      name=${m%%:*}; flags=${m#*:}
      # shellcheck disable=SC2086
      "$BIN/cirrus-shard" --dir "$W/s" --bind "$ep" --log-level warn $(tr ",=" "  " <<<"$flags") \
        2>>"$W/shard.log" &
      PID=$!
      ready "$ep"
      load=$(cut -d' ' -f1-3 /proc/loadavg)
      # shellcheck disable=SC2086
      out=$(OMP_WAIT_POLICY=${PEER_WAIT_POLICY:-passive} "$BIN/cirrus-bench" search --endpoint "$ep" --queries "$W/q.fvecs" --truth "$W/t.ivecs" \
        --id-prefix r --k 10 --concurrency 1,8,16 --duration 5 $params --metric l2 \
        --peer-base "$W/b.fvecs" --peer-index "$index" --peer-threads 2 --peer-batch 256 \
        --peer-cache "$W/peer-${index%%,*}.idx" \
        --server-pid "$PID" --json)
      echo "$out" >"$W/$index-$name-$r.json"
      python3 "$W/row.py" "$index" "$name" "$r" "$load" <"$W/$index-$name-$r.json"
      kill -TERM "$PID"; wait "$PID" || true; PID=""
    done
  done
done
