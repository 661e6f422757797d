#!/usr/bin/env bash
# cirrus build (offline/build.h), real processes: vectors + attributes built offline into 2
# groups with Flat, served by cirrus-shard + cirrus-coordinator from the directories as they
# are, answer every query exactly as a cluster fed the same items online through `cirrus load`
# (same ids and scores, with and without a filter; the same items, attributes and vectors in
# each group). A build killed with SIGKILL three times (at chosen commits, and once by the
# shell at a random moment) and then finished is identical to an uninterrupted one (dumps
# with versions). --group builds, one per group, give the same groups as one build. Bad input
# lines are reported with their line numbers, skipped and summarized; the exit status is 1.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
N=6000
D=32

"$BIN/cirrus-bench" gen --n $N --dim $D --out "$WORK/v.fvecs" >/dev/null
for i in $(seq 0 $((N - 1))); do
  echo "{\"cat\": \"c$((i % 7))\", \"price\": $((i % 100)), \"tags\": [\"t$((i % 3))\"]}"
done >"$WORK/attrs.jsonl"

# dump_dir DIR OUT: the items of a shard directory, served for the time of a dump.
dump_dir() {
  local p ep
  p=$(free_port); ep="tcp://127.0.0.1:$p"
  start_bg "$WORK/dump-shard.log" "$BIN/cirrus-shard" --dir "$1" --bind "$ep" --log-level warn
  local pid=$LAST_PID
  wait_ready "$ep"
  "$BIN/cirrus" --endpoint "$ep" dump >"$2" || fail "dump of $1"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

B=("$BIN/cirrus" build --groups 2 --index Flat --metric ip --vectors "$WORK/v.fvecs"
   --attrs "$WORK/attrs.jsonl" --id-prefix v)

note "build 2 groups offline"
"${B[@]}" --out "$WORK/built" --json >"$WORK/build.json" 2>"$WORK/build.err" ||
  fail "build failed: $(cat "$WORK/build.err")"
for s in plan write index map summary; do
  grep -q "\"stage\":\"$s\"" "$WORK/build.json" || fail "no JSON line for stage $s: $(cat "$WORK/build.json")"
done
grep -q '"stage":"summary".*"items":6000' "$WORK/build.json" || fail "summary: $(tail -1 "$WORK/build.json")"
grep -q '"placement": "fnv1a64-jump"' "$WORK/built/cluster.json" || fail "map template: $(cat "$WORK/built/cluster.json")"
cp -r "$WORK/built" "$WORK/served"

note "the same items loaded online into a 2-group cluster"
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --dim $D --index Flat \
  --replicas 1)
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_1_0_PID")
"$BIN/cirrus" --endpoint "$ep" load --vectors "$WORK/v.fvecs" --attrs "$WORK/attrs.jsonl" \
  --id-prefix v 2>/dev/null || fail "online load"

note "serve the built directories as they are"
eps=()
for g in 0 1; do
  p=$(free_port); eps+=("tcp://127.0.0.1:$p")
  start_bg "$WORK/built-$g.log" "$BIN/cirrus-shard" --dir "$WORK/built/group-$g" --bind "${eps[$g]}" \
    --log-level info
  PIDS+=("$LAST_PID")
done
for g in 0 1; do wait_ready "${eps[$g]}"; done
grep -q 'replayed 0' "$WORK/built-0.log" || fail "the built shard replayed items: $(cat "$WORK/built-0.log")"
cp=$(free_port); cep="tcp://127.0.0.1:$cp"
sed -e "s#tcp://cirrus-group-0-replica-0:7701#${eps[0]}#" \
    -e "s#tcp://cirrus-group-1-replica-0:7701#${eps[1]}#" "$WORK/built/cluster.json" |
  jq --arg b "$cep" '. + {bind: $b}' >"$WORK/built-map.json"
start_bg "$WORK/built-coord.log" "$BIN/cirrus-coordinator" --map "$WORK/built-map.json" --log-level warn
wait_ready "$cep"
note "and the same directory as it is under cirrus serve"
sp=$(free_port); sep="tcp://127.0.0.1:$sp"
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/served" --bind "$sep"
wait_ready "$sep"

note "each group holds the same items as the online cluster's (attributes and vectors)"
for g in 0 1; do
  "$BIN/cirrus" --endpoint "${eps[$g]}" dump | jq -c 'del(.version)' >"$WORK/b$g.jsonl"
  v=SHARD_${g}_0
  "$BIN/cirrus" --endpoint "${!v}" dump | jq -c 'del(.version)' >"$WORK/o$g.jsonl"
  n=$(wc -l <"$WORK/b$g.jsonl")
  [ "$n" -gt 2000 ] || fail "group $g holds only $n items"
  cmp -s "$WORK/b$g.jsonl" "$WORK/o$g.jsonl" || fail "group $g differs from the online one: $(diff "$WORK/b$g.jsonl" "$WORK/o$g.jsonl" | head -4)"
done

note "queries through both coordinators give the same top-10"
for i in 3 77 1234 2999 4321 5998; do
  vec=$("$BIN/cirrus" --endpoint "$ep" --json get --id "v$i" | jq -r '.vector | map(tostring) | join(",")')
  for f in "" 'cat = "c3" and price < 50'; do
    args=(search --vector "$vec" -k 10)
    [ -n "$f" ] && args+=(--filter "$f")
    a=$("$BIN/cirrus" --endpoint "$ep" --json "${args[@]}" | jq -c '[.hits[] | [.id, .score]]')
    b=$("$BIN/cirrus" --endpoint "$cep" --json "${args[@]}" | jq -c '[.hits[] | [.id, .score]]')
    c=$("$BIN/cirrus" --endpoint "$sep" --json "${args[@]}" | jq -c '[.hits[] | [.id, .score]]')
    [ "$(echo "$a" | jq length)" -eq 10 ] || fail "query v$i: $a"
    [ "$a" = "$b" ] || fail "query v$i ($f): online $a, built $b"
    [ "$a" = "$c" ] || fail "query v$i ($f): online $a, cirrus serve on the build $c"
  done
done

"$BIN/cirrus" --endpoint "$sep" --json get --id v5998 | grep -q '"cat":"c6"' ||
  fail "cirrus serve on the build cannot find v5998 (placement)"

note "kill -9 during a build (3 times), then finish: identical to the uninterrupted build"
for g in 0 1; do dump_dir "$WORK/built/group-$g" "$WORK/ref$g.jsonl"; done
for k in 3 5 4; do
  rc=0
  CIRRUS_BUILD_FAULTS=kill-after-puts=$k "${B[@]}" --out "$WORK/killed" --checkpoint 700 \
    >/dev/null 2>&1 || rc=$?
  [ $rc -eq 137 ] || fail "the build was not killed at put $k (rc $rc)"
done
[ -f "$WORK/killed/.build/group-0.json" ] || fail "no progress record after the kills"
"${B[@]}" --out "$WORK/killed" --checkpoint 700 --json >"$WORK/resume.json" 2>&1 ||
  fail "resumed build: $(cat "$WORK/resume.json")"
grep -q '"stage":"write".*"resumed_at":[1-9]' "$WORK/resume.json" || fail "did not resume: $(cat "$WORK/resume.json")"
for g in 0 1; do
  dump_dir "$WORK/killed/group-$g" "$WORK/k$g.jsonl"
  cmp -s "$WORK/ref$g.jsonl" "$WORK/k$g.jsonl" || fail "resumed group $g differs: $(diff "$WORK/ref$g.jsonl" "$WORK/k$g.jsonl" | head -4)"
done

note "kill -9 from outside at a random moment, then finish"
big=$((N * 20))
"$BIN/cirrus-bench" gen --n $big --dim $D --out "$WORK/big.fvecs" >/dev/null
BB=("$BIN/cirrus" build --groups 2 --index Flat --metric l2 --vectors "$WORK/big.fvecs" --id-prefix b
    --checkpoint 2000)
"${BB[@]}" --out "$WORK/big-ref" >/dev/null 2>&1 || fail "big build"
"${BB[@]}" --out "$WORK/big-killed" >/dev/null 2>&1 &
bpid=$!
# Once the first progress record is down, at a random moment of the next few checkpoints.
for _ in $(seq 1 500); do
  [ -f "$WORK/big-killed/.build/group-0.json" ] && break
  sleep 0.01
done
sleep 0.0$((RANDOM % 5))
kill -9 $bpid 2>/dev/null || true
wait $bpid 2>/dev/null || true
grep -q '"done": false' "$WORK/big-killed/.build/group-0.json" || note "(the build ended before the kill)"
"${BB[@]}" --out "$WORK/big-killed" >/dev/null 2>&1 || fail "big build resumed"
for g in 0 1; do
  dump_dir "$WORK/big-ref/group-$g" "$WORK/br$g.jsonl"
  dump_dir "$WORK/big-killed/group-$g" "$WORK/bk$g.jsonl"
  cmp -s "$WORK/br$g.jsonl" "$WORK/bk$g.jsonl" || fail "big group $g differs after the kill"
done

note "--group builds, one per group, are the groups of one build"
for g in 0 1; do
  "${B[@]}" --group $g --out "$WORK/per-$g" >/dev/null 2>&1 || fail "build --group $g"
  [ ! -d "$WORK/per-$g/group-$((1 - g))" ] || fail "--group $g wrote the other group"
  dump_dir "$WORK/per-$g/group-$g" "$WORK/p$g.jsonl"
  cmp -s "$WORK/ref$g.jsonl" "$WORK/p$g.jsonl" || fail "--group $g differs from the one build"
done
cmp -s "$WORK/built/cluster.json" "$WORK/per-0/cluster.json" || fail "the --group build's map differs"

note "bad input lines: reported with line numbers, skipped, summarized, exit status 1"
cp "$WORK/attrs.jsonl" "$WORK/bad.jsonl"
sed -i -e '17s/.*/{not json/' -e '4000s/.*/{"nested": {"x": 1}}/' "$WORK/bad.jsonl"
rc=0
"$BIN/cirrus" build --out "$WORK/bad" --groups 2 --index Flat --metric ip --vectors "$WORK/v.fvecs" \
  --attrs "$WORK/bad.jsonl" --id-prefix v >"$WORK/bad.out" 2>"$WORK/bad.err" || rc=$?
[ $rc -eq 1 ] || fail "exit status $rc with bad lines"
grep -q 'line 17 (v16)' "$WORK/bad.err" || fail "line 17 not reported: $(cat "$WORK/bad.err")"
grep -q 'line 4000 (v3999)' "$WORK/bad.err" || fail "line 4000 not reported: $(cat "$WORK/bad.err")"
grep -q '5998 items from 6000 records, 2 bad' "$WORK/bad.out" || fail "summary: $(cat "$WORK/bad.out")"
[ "$(cat "$WORK"/bad/.build/group-*.errors | wc -l)" -eq 2 ] || fail "error logs: $(cat "$WORK"/bad/.build/group-*.errors)"
rc=0
"$BIN/cirrus" build --out "$WORK/bad" --groups 2 --index Flat --metric ip --vectors "$WORK/v.fvecs" \
  --attrs "$WORK/bad.jsonl" --id-prefix v >"$WORK/bad2.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q '2 bad' "$WORK/bad2.out" || fail "a rerun of a finished build: rc $rc, $(cat "$WORK/bad2.out")"
expect_error 'index "Flat", not "HNSW32"|has index' "$BIN/cirrus" build --out "$WORK/bad" --groups 2 \
  --index HNSW32 --metric ip --vectors "$WORK/v.fvecs" --attrs "$WORK/bad.jsonl" --id-prefix v
note "ok"
