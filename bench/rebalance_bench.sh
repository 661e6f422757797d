#!/usr/bin/env bash
# Rebalance 2 -> 3 groups (issue #13): items moved per second by `cirrus rebalance`, against
# the peer, loading the same items into a running cluster through the coordinator (`cirrus
# load`: what growing a cluster without rebalance costs, a full reload); and the query p99
# before the move and during it (cirrus-bench search, concurrency 2, the same queries).
#   bench/rebalance_bench.sh [--bin build/bin] [--n 100000] [--dim 128] [--runs 2]
# Prints a markdown table row per run and writes $OUT (JSON lines).
set -euo pipefail
BIN=build/bin N=100000 DIM=128 RUNS=2 OUT=${OUT:-/tmp/rebalance_bench.jsonl}
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;; --n) N=$2; shift 2 ;; --dim) DIM=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;; *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
W=$(mktemp -d /tmp/cirrus-rb-bench-XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"' EXIT
port() { echo $(( 10000 + RANDOM % 22000 )); }
ready() { for _ in $(seq 1 300); do "$BIN/cirrus" --endpoint "$1" --timeout 200 health >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
now() { date +%s.%N; }

"$BIN/cirrus-bench" gen --n "$N" --dim "$DIM" --out "$W/base.fvecs" --query-out "$W/q.fvecs" \
  --queries 500 >/dev/null
: >"$OUT"
echo "| run | items | moved | moved/s (rebalance) | items/s (cirrus load, peer) | ratio | p99 before ms | p99 during ms | queries failed |"
echo "|---|---|---|---|---|---|---|---|---|"
for run in $(seq 1 "$RUNS"); do
  eps=()
  for g in 0 1 2; do
    p=$(port); ep="tcp://127.0.0.1:$p"
    "$BIN/cirrus-shard" --dir "$W/r$run-g$g" --bind "$ep" --create --dim "$DIM" --metric l2 \
      --index Flat --log-level warn >"$W/r$run-g$g.log" 2>&1 &
    PIDS+=($!); ready "$ep"; eps+=("$ep")
  done
  cp=$(port); cep="tcp://127.0.0.1:$cp"
  jq -n --arg b "$cep" --arg a "${eps[0]}" --arg c "${eps[1]}" \
    '{bind: $b, metric: "l2", placement: "fnv1a64-jump", groups: [[$a], [$c]]}' >"$W/map$run.json"
  jq --arg e "${eps[2]}" '.groups += [[$e]]' "$W/map$run.json" >"$W/new$run.json"
  "$BIN/cirrus-coordinator" --map "$W/map$run.json" --log-level warn >"$W/c$run.log" 2>&1 &
  PIDS+=($!); ready "$cep"
  # The new group starts with one item of its own (an empty Flat shard races its first adds
  # with searches; see docs/performance.md).
  "$BIN/cirrus" --endpoint "${eps[2]}" upsert --id seed-2 --vector "$(seq -s, 1 "$DIM")" >/dev/null
  t0=$(now)
  "$BIN/cirrus" --endpoint "$cep" --timeout 60000 load --vectors "$W/base.fvecs" --batch 256 \
    2>"$W/load$run.err" | tail -1 >&2
  load_s=$(echo "$(now) - $t0" | bc)
  "$BIN/cirrus-bench" search --endpoint "$cep" --queries "$W/q.fvecs" --k 10 --concurrency 2 \
    --duration 10 --json >"$W/before$run.json" 2>/dev/null
  # During the move: back-to-back 2 s query runs until it ends; the worst p99 of them counts.
  "$BIN/cirrus" --json rebalance --map "$W/map$run.json" --new-map "$W/new$run.json" \
    2>/dev/null >"$W/rb$run.all" &
  rpid=$!; PIDS+=("$rpid")
  : >"$W/during$run.jsonl"
  while kill -0 "$rpid" 2>/dev/null; do
    "$BIN/cirrus-bench" search --endpoint "$cep" --queries "$W/q.fvecs" --k 10 --concurrency 2 \
      --duration 2 --json 2>/dev/null | tail -1 >>"$W/during$run.jsonl"
  done
  wait "$rpid"
  tail -1 "$W/rb$run.all" >"$W/rb$run.json"
  cat "$W/rb$run.all" >&2
  jq -s '{p99_ms: (map(.p99_ms) | max), errors: (map(.errors) | add)}' "$W/during$run.jsonl" \
    >"$W/during$run.json"
  moved=$(jq .copied "$W/rb$run.json"); secs=$(jq .seconds "$W/rb$run.json")
  jq -c --argjson n "$N" --argjson load_s "$load_s" --slurpfile b "$W/before$run.json" \
    --slurpfile d "$W/during$run.json" \
    '. + {items: $n, load_s: $load_s, p99_before: $b[0].p99_ms, p99_during: ($d[0].p99_ms // null),
          during_errors: ($d[0].errors // null)}' "$W/rb$run.json" >>"$OUT"
  jq -r --arg run "$run" '"| \($run) | \(.items) | \(.copied) | \(.copied / .seconds | floor) | \(.items / .load_s | floor) | \((.copied / .seconds) / (.items / .load_s) * 100 | floor / 100) | \(.p99_before) | \(.p99_during) | \(.during_errors) |"' <(tail -1 "$OUT")
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  PIDS=()
done
