#!/usr/bin/env bash
# make demo: the most complete end-to-end path cirrus has, on data generated on the fly.
set -euo pipefail
BUILD=${1:-build}
BIN="$(cd "$BUILD/bin" && pwd)"
WORK=$(mktemp -d /tmp/cirrus-demo-XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

port() { local p; while :; do p=$((20000 + RANDOM % 40000)); (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
wait_ready() { for _ in $(seq 1 100); do "$BIN/cirrus" --endpoint "$1" --timeout 200 health >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Generating a catalog: 20,000 clustered 64-d vectors with category/color/price attributes"
"$BIN/cirrus-bench" gen --n 20000 --dim 64 --clusters 50 --queries 5 --out "$WORK/catalog.fvecs" \
  --query-out "$WORK/queries.fvecs"
cats=(dress shirt skirt jacket coat); cols=(red blue green black white)
for i in $(seq 0 19999); do
  printf '{"category":"%s","color":"%s","price":%d.%02d,"in_stock":%s}\n' \
    "${cats[i % 5]}" "${cols[(i / 5) % 5]}" $((10 + i % 90)) $((i % 100)) \
    "$([ $((i % 3)) = 0 ] && echo false || echo true)"
done >"$WORK/attrs.jsonl"

EP="tcp://127.0.0.1:$(port)"
say "Starting cirrus-shard (HNSW32 over LMDB) on $EP"
"$BIN/cirrus-shard" --dir "$WORK/shard" --bind "$EP" --create --dim 64 --index HNSW32 \
  --log-level warn &
PIDS+=($!); SHARD=$!
wait_ready "$EP"
C=("$BIN/cirrus" --endpoint "$EP")

say "Bulk load with durable acknowledgements (progress bar on stderr)"
"${C[@]}" load --vectors "$WORK/catalog.fvecs" --attrs "$WORK/attrs.jsonl" --id-prefix sku- \
  --acked "$WORK/acked.txt"

Q=$("${C[@]}" --json get --id sku-42 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
say "Items most like sku-42"
"${C[@]}" search --vector "$Q" -k 5
say "...but only red dresses under 40"
"${C[@]}" search --vector "$Q" -k 5 --filter 'category = "dress" and color = "red" and price < 40'
say "...in stock, blue or green, as JSON for scripts"
"${C[@]}" --json search --vector "$Q" -k 3 --filter 'in_stock = true and color in ("blue", "green")'

say "kill -9 the shard, restart it, verify every acknowledged write"
kill -9 "$SHARD"; wait "$SHARD" 2>/dev/null || true
"$BIN/cirrus-shard" --dir "$WORK/shard" --bind "$EP" --log-level warn &
PIDS+=($!); SHARD=$!
wait_ready "$EP"
"${C[@]}" verify --vectors "$WORK/catalog.fvecs" --id-prefix sku- --acked "$WORK/acked.txt"
say "Shard stats"
"${C[@]}" stats
say "A bad request gets a clear error and changes nothing"
"${C[@]}" search --vector 1,2,3 -k 5 || true
"${C[@]}" search --vector "$Q" --filter 'colour = "red"' || true
"${C[@]}" search --vector "$Q" --filter 'price < ' || true
kill -TERM "$SHARD"; wait "$SHARD"
say "Done. (Shard stopped cleanly with a final index snapshot.)"
