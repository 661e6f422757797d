#!/usr/bin/env bash
# Kept images travel with their items through replica repair: 1 group x 2 replicas, every
# shard with --keep-images (CIRRUS_SHARD_KEEP_IMAGES, the flag's environment form). Replica B
# is down while the catalog is ingested (acknowledged by A alone); when B returns and is
# repaired from A, B itself, asked directly, returns each image byte-equal to the ingested file.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
export CIRRUS_SHARD_KEEP_IMAGES=true

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 12 >/dev/null 2>&1
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --groups 1 --replicas 2 \
  --dim 64 --index Flat --model "$FIX/clip-openai-names.safetensors")
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_0_1_PID")
A=$SHARD_0_0
B=$SHARD_0_1
CLOG=$WORK/cl/coordinator.log
wait_log() { # PATTERN COUNT
  for _ in $(seq 1 400); do
    [ "$(grep -cF -- "$1" "$CLOG" || true)" -ge "$2" ] && return 0
    sleep 0.05
  done
  fail "coordinator log: no $2 x '$1' within 20 s: $(tail -5 "$CLOG")"
}
# shellcheck source=replicas.sh
. "$(dirname "$0")/replicas.sh"
same_image() { # ENDPOINT ID
  "$BIN/cirrus" --endpoint "$1" --timeout 5000 get --id "$2" --no-vector --image "$WORK/got.png" \
    >/dev/null || fail "get --image $2 from $1"
  cmp -s "$WORK/got.png" "$WORK/cat/images/$2.png" || fail "$1: image of $2 differs"
}

note "B down; the catalog is ingested on A alone"
kill_shard 1
wait_log "$B is down" 1
"$BIN/cirrus" --endpoint "$ep" --timeout 20000 ingest --catalog "$WORK/cat/catalog.jsonl" \
  --images "$WORK/cat" >/dev/null
same_image "$A" sku-4
"$BIN/cirrus" --endpoint "$A" get --id sku-4 >/dev/null || fail "A lacks sku-4"

note "B returns and is repaired from A: its images are the ingested files"
start_shard 1
wait_log "group 0 replica 1 repaired" 2 # the first: at start
for i in 0 4 11; do same_image "$B" "sku-$i"; done
echo "1 passed, 0 failed"
