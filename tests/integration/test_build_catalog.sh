#!/usr/bin/env bash
# cirrus build from a catalog (JSONL + images, encoded in-process by the fixture CLIP): the
# built groups hold exactly what a cluster with an encoder stores when the same catalog is
# ingested online (same ids, attributes and vectors in each group), bad lines (a missing
# image, an undecodable one, bad JSON) are reported with their line numbers and left out,
# a build killed during its encode stage and rerun is identical, and --group builds are the
# groups of one build (identical to the bit: a group's images are batched alike in every
# run with the same --checkpoint, so the forward passes round alike).
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
MODEL=$FIX/clip-openai-names.safetensors

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 120 >/dev/null 2>&1
cat="$WORK/cat/catalog.jsonl"
sed -i -e '5s#images/sku-4.png#images/missing.png#' -e '9s/.*/{"id": "sku-8", oops/' "$cat"
printf 'not an image' >"$WORK/cat/images/broken.png"
sed -i -e '13s#images/sku-12.png#images/broken.png#' "$cat"

dump_dir() {
  local p ep
  p=$(free_port); ep="tcp://127.0.0.1:$p"
  start_bg "$WORK/dump-shard.log" "$BIN/cirrus-shard" --dir "$1" --bind "$ep" --log-level warn
  local pid=$LAST_PID
  wait_ready "$ep"
  "$BIN/cirrus" --endpoint "$ep" dump | jq -c "${2:-.}" || fail "dump of $1"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

B=("$BIN/cirrus" build --groups 2 --index Flat --metric ip --catalog "$cat" --images "$WORK/cat"
   --model "$MODEL" --threads 1 --checkpoint 30)

note "build from the catalog"
rc=0
"${B[@]}" --out "$WORK/built" >"$WORK/build.out" 2>"$WORK/build.err" || rc=$?
[ $rc -eq 1 ] || fail "exit status $rc with 3 bad lines: $(cat "$WORK/build.err")"
for l in 5 9 13; do
  grep -q "line $l " "$WORK/build.err" || fail "line $l not reported: $(cat "$WORK/build.err")"
done
grep -q '117 items from 120 records, 3 bad' "$WORK/build.out" || fail "summary: $(cat "$WORK/build.out")"
[ ! -e "$WORK/built/.build/encoded.fvecs" ] || fail "the spill was left behind"

note "the same catalog ingested online (encoder in the cluster)"
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --dim 64 --index Flat \
  --replicas 1 --model "$MODEL")
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_1_0_PID" "$ENCODER_PID")
"$BIN/cirrus" --endpoint "$ep" --timeout 20000 ingest --catalog "$cat" --images "$WORK/cat" \
  >/dev/null 2>&1 || true
for g in 0 1; do
  v=SHARD_${g}_0
  "$BIN/cirrus" --endpoint "${!v}" dump | jq -c 'del(.version)' >"$WORK/o$g.jsonl"
  dump_dir "$WORK/built/group-$g" 'del(.version)' >"$WORK/b$g.jsonl"
  [ "$(wc -l <"$WORK/b$g.jsonl")" -gt 40 ] || fail "group $g is nearly empty"
  # Vectors agree to float rounding (one forward pass per batch online and offline).
  jq -n --slurpfile a "$WORK/o$g.jsonl" --slurpfile b "$WORK/b$g.jsonl" '
    ($a | length) == ($b | length) and
    ([range($a | length)] | all(. as $i | $a[$i].id == $b[$i].id and
       $a[$i].attributes == $b[$i].attributes and
       ([range($a[$i].vector | length)] | all(. as $j |
         (($a[$i].vector[$j] - $b[$i].vector[$j]) | fabs) < 1e-4))))' | grep -q true ||
    fail "group $g differs from the online one"
done

note "killed during the encode stage, then rerun: identical"
rc=0
CIRRUS_BUILD_FAULTS=kill-after-puts=1 "${B[@]}" --out "$WORK/killed" \
  >/dev/null 2>&1 || rc=$?
[ $rc -eq 137 ] || fail "not killed (rc $rc)"
[ -f "$WORK/killed/.build/encode.json" ] || fail "no encode progress record"
"${B[@]}" --out "$WORK/killed" >/dev/null 2>&1 || [ $? -eq 1 ] || fail "rerun"
for g in 0 1; do
  dump_dir "$WORK/built/group-$g" >"$WORK/ref$g.jsonl"
  dump_dir "$WORK/killed/group-$g" >"$WORK/k$g.jsonl"
  cmp -s "$WORK/ref$g.jsonl" "$WORK/k$g.jsonl" || fail "resumed group $g differs"
done

note "--group builds are the groups of one build"
for g in 0 1; do
  "${B[@]}" --group $g --out "$WORK/per-$g" >/dev/null 2>&1 || [ $? -eq 1 ] || fail "--group $g"
  dump_dir "$WORK/per-$g/group-$g" >"$WORK/p$g.jsonl"
  cmp -s "$WORK/ref$g.jsonl" "$WORK/p$g.jsonl" || fail "--group $g differs from the one build"
done
bad=$(cat "$WORK"/per-0/.build/group-0.errors "$WORK"/per-1/.build/group-1.errors | wc -l)
[ "$bad" -eq 3 ] || fail "the --group builds report $bad bad lines, not 3"
note "ok"
