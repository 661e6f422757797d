#!/usr/bin/env bash
# Offline builds (issue #13), all figures of one run side by side:
#  (a) N x 128-d clustered vectors into 4 groups, per index (HNSW32, IVF4096,PQ32): items/s of
#      `cirrus build` (wall, /usr/bin/time -v, with its max RSS) against the in-process FAISS
#      peer (`cirrus-bench add`: one shared training on the same sample size, one add per
#      group) and against `cirrus load` of the first ONLINE_N rows into a running 4-group
#      cluster through the coordinator (same index).
#  (b) IMAGES synthetic catalog images with a random ViT-B/32: images/s of
#      `cirrus build --catalog` against `cirrus-bench encoder` (batch 8) in the same run.
#   bench/build_bench.sh [--bin build/bin] [--n 1000000] [--online-n 200000] [--images 10000]
#                        [--threads 2] [--index F]... [--skip-catalog]
# Prints markdown rows, the load averages, and writes $OUT (JSON lines).
set -euo pipefail
BIN=build/bin N=1000000 ONLINE_N=200000 IMAGES=10000 THREADS=2 CATALOG=1
OUT=${OUT:-/tmp/build_bench.jsonl}
IDX=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;; --n) N=$2; shift 2 ;; --online-n) ONLINE_N=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;; --threads) THREADS=$2; shift 2 ;;
    --index) IDX+=("$2"); shift 2 ;; --skip-catalog) CATALOG=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ ${#IDX[@]} -gt 0 ] || IDX=(HNSW32 IVF4096,PQ32)
BIN=$(cd "$BIN" && pwd)
W=$(mktemp -d /tmp/cirrus-build-bench-XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"' EXIT
port() { echo $(( 10000 + RANDOM % 22000 )); }
ready() { for _ in $(seq 1 300); do "$BIN/cirrus" --endpoint "$1" --timeout 200 health >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
now() { date +%s.%N; }
# maxrss FILE: max RSS in MiB from /usr/bin/time -v output; wall FILE: elapsed seconds.
maxrss() { awk '/Maximum resident/ {printf "%.0f", $NF / 1024}' "$1"; }
wall() { awk '/Elapsed \(wall/ {n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s}' "$1"; }
: >"$OUT"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

"$BIN/cirrus-bench" gen --n "$N" --dim 128 --clusters 1000 --out "$W/v.fvecs" >/dev/null
"$BIN/cirrus-bench" gen --n "$ONLINE_N" --dim 128 --clusters 1000 --out "$W/on.fvecs" >/dev/null
echo "| index | items | build items/s | build max RSS MiB | FAISS in-process items/s | ratio | online items (cirrus load) | online items/s | build / online |"
echo "|---|---|---|---|---|---|---|---|---|"
for f in "${IDX[@]}"; do
  /usr/bin/time -v "$BIN/cirrus" build --out "$W/b" --groups 4 --index "$f" --metric l2 \
    --vectors "$W/v.fvecs" --id-prefix v --threads "$THREADS" >"$W/build.out" 2>"$W/build.time"
  bs=$(wall "$W/build.time"); brss=$(maxrss "$W/build.time")
  rm -rf "$W/b"
  "$BIN/cirrus-bench" add --base "$W/v.fvecs" --index "$f" --groups 4 --metric l2 \
    --threads "$THREADS" --workdir "$W" >"$W/peer.json"
  # Online: a 4-group cluster, the same index, `cirrus load` through the coordinator.
  eps=()
  for g in 0 1 2 3; do
    ep="tcp://127.0.0.1:$(port)"
    "$BIN/cirrus-shard" --dir "$W/s$g" --bind "$ep" --create --dim 128 --metric l2 --index "$f" \
      --log-level warn >"$W/s$g.log" 2>&1 &
    PIDS+=($!); ready "$ep"; eps+=("$ep")
  done
  cep="tcp://127.0.0.1:$(port)"
  printf '%s\n' "${eps[@]}" | jq -R '[.]' | jq -s --arg b "$cep" \
    '{bind: $b, metric: "l2", placement: "fnv1a64-jump", groups: .}' >"$W/map.json"
  "$BIN/cirrus-coordinator" --map "$W/map.json" --log-level warn >"$W/c.log" 2>&1 &
  PIDS+=($!); ready "$cep"
  t0=$(now)
  "$BIN/cirrus" --endpoint "$cep" --timeout 60000 load --vectors "$W/on.fvecs" --batch 256 \
    >/dev/null 2>"$W/load.err"
  ls=$(echo "$(now) - $t0" | bc)
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  PIDS=(); rm -rf "$W"/s?
  jq -c --arg f "$f" --argjson n "$N" --argjson bs "$bs" --argjson rss "$brss" \
    --argjson on "$ONLINE_N" --argjson ls "$ls" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    '{kind: "vectors", index: $f, items: $n, build_s: $bs, build_items_per_s: ($n / $bs),
      build_max_rss_mb: $rss, peer_items_per_s: .items_per_s, peer_rss_mb: .peak_rss_mb,
      online_items: $on, online_s: $ls, online_items_per_s: ($on / $ls), loadavg: $load}' \
    "$W/peer.json" >>"$OUT"
  tail -1 "$OUT" | jq -r '"| \(.index) | \(.items) | \(.build_items_per_s | floor) | \(.build_max_rss_mb) | \(.peer_items_per_s | floor) | \(.build_items_per_s / .peer_items_per_s * 100 | floor / 100) | \(.online_items) | \(.online_items_per_s | floor) | \(.build_items_per_s / .online_items_per_s * 10 | floor / 10) |"'
done

if [ "$CATALOG" = 1 ]; then
  "$BIN/cirrus-bench" catalog --out "$W/cat" --n "$IMAGES" >/dev/null 2>&1
  "$BIN/cirrus-bench" tiny-model --out "$W/m" --vit-b-32 >/dev/null
  /usr/bin/time -v "$BIN/cirrus" build --out "$W/cb" --groups 4 --index Flat --metric ip \
    --catalog "$W/cat/catalog.jsonl" --images "$W/cat" --model "$W/m/model.safetensors" \
    --threads "$THREADS" >"$W/cb.out" 2>"$W/cb.time" || [ $? -eq 1 ]
  cs=$(wall "$W/cb.time"); crss=$(maxrss "$W/cb.time")
  "$BIN/cirrus-bench" encoder --model "$W/m/model.safetensors" --threads "$THREADS" \
    --seconds 10 --no-peer --json >"$W/enc.json"
  jq -c --argjson n "$IMAGES" --argjson cs "$cs" --argjson rss "$crss" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    '{kind: "catalog", images: $n, build_s: $cs, build_images_per_s: ($n / $cs),
      build_max_rss_mb: $rss, encoder_images_per_s_b8: .images_per_s_batch8, loadavg: $load}' \
    "$W/enc.json" >>"$OUT"
  echo
  echo "| images | build images/s | build max RSS MiB | cirrus-bench encoder img/s (batch 8) | ratio |"
  echo "|---|---|---|---|---|"
  tail -1 "$OUT" | jq -r '"| \(.images) | \(.build_images_per_s * 10 | floor / 10) | \(.build_max_rss_mb) | \(.encoder_images_per_s_b8 * 10 | floor / 10) | \(.build_images_per_s / .encoder_images_per_s_b8 * 100 | floor / 100) |"'
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
