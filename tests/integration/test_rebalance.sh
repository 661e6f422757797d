#!/usr/bin/env bash
# cirrus rebalance, real processes: a 2-group cluster (group 0 with two replicas) grown to 3
# groups while a loader writes through the coordinator and a query load runs; the rebalance
# is killed with SIGKILL in the middle of its copy and run again, and finishes. Checked: the
# query load never failed and always found each queried item (its own vector, top 1, recall
# 1.0), no search result ever lists an id twice, every acknowledged id is afterwards in
# exactly one group, the one that owns it under the new map (placement recomputed by
# placement.py from its documented definition), with its exact vector; the map file holds
# the new map. Then a legacy-fnv-jump cluster is moved to fnv1a64-jump on the same groups
# (--dry-run first), and refusals (shrinking, a state of another move).
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
D=16
C=("$BIN/cirrus" --timeout 20000)

"$BIN/cirrus-bench" gen --n 10000 --dim $D --out "$WORK/a.fvecs" --query-out "$WORK/unused.fvecs" \
  --queries 1 >/dev/null
"$BIN/cirrus-bench" gen --n 400000 --dim $D --seed 9 --out "$WORK/w.fvecs" >/dev/null
# Queries: items of the first load, by their own vectors; the truth of each is itself.
"$BIN/cirrus-bench" gen --n 300 --dim $D --out "$WORK/q.fvecs" >/dev/null # the same seed: a0..a299
"$BIN/cirrus-bench" truth --base "$WORK/a.fvecs" --queries "$WORK/q.fvecs" --out "$WORK/t.ivecs" \
  --k 1 --metric l2 >/dev/null

shard() { # shard NAME -> endpoint in $EP
  local p
  p=$(free_port)
  EP="tcp://127.0.0.1:$p"
  start_bg "$WORK/$1.log" "$BIN/cirrus-shard" --dir "$WORK/$1" --bind "$EP" --create --dim $D \
    --metric l2 --index Flat --log-level info
  wait_ready "$EP"
}

# map FILE PLACEMENT BIND GROUP... : each GROUP a comma-separated list of endpoints.
map() {
  local f=$1 pl=$2 bind=$3
  shift 3
  printf '%s\n' "$@" | jq -R 'split(",")' | jq -s --arg pl "$pl" --arg b "$bind" \
    '{bind: $b, metric: "l2", placement: $pl, groups: .}' >"$f"
}

# check_owned MAP PLACEMENT GROUPS ACKED...: every acked id in exactly one group, its owner.
check_owned() {
  local m=$1 pl=$2 n=$3
  shift 3
  : >"$WORK/held"
  for g in $(seq 0 $((n - 1))); do
    ep=$(jq -r ".groups[$g][0]" "$m")
    "${C[@]}" --endpoint "$ep" dump | jq -r --arg g "$g" '.id + " " + $g' >>"$WORK/held"
  done
  sort "$WORK/held" >"$WORK/held.s"
  dup=$(cut -d' ' -f1 "$WORK/held.s" | uniq -d | wc -l)
  [ "$dup" -eq 0 ] || fail "$dup ids are in more than one group: $(cut -d' ' -f1 "$WORK/held.s" | uniq -d | head -3)"
  cut -d' ' -f1 "$WORK/held.s" | python3 "$HERE/placement.py" "$pl" "$n" | sort >"$WORK/owner.s"
  cmp -s "$WORK/held.s" "$WORK/owner.s" ||
    fail "an id is held by a group that does not own it: $(diff "$WORK/held.s" "$WORK/owner.s" | head -4)"
  cat "$@" | sort -u >"$WORK/acked.s"
  missing=$(cut -d' ' -f1 "$WORK/held.s" | comm -13 - "$WORK/acked.s" | wc -l)
  [ "$missing" -eq 0 ] || fail "$missing acknowledged ids are in no group"
  echo "  $(wc -l <"$WORK/acked.s") acknowledged ids, $(wc -l <"$WORK/held.s") held, each once, by its owner"
}

note "a cluster of 2 groups (group 0: two replicas), 10000 items"
shard g0a; E0A=$EP; shard g0b; E0B=$EP; shard g1; E1=$EP; shard g2; E2=$EP
cp=$(free_port); CEP="tcp://127.0.0.1:$cp"
map "$WORK/map.json" fnv1a64-jump "$CEP" "$E0A,$E0B" "$E1"
map "$WORK/new.json" fnv1a64-jump "$CEP" "$E0A,$E0B" "$E1" "$E2"
start_bg "$WORK/coord.log" "$BIN/cirrus-coordinator" --map "$WORK/map.json" --log-level info
wait_ready "$CEP"
"${C[@]}" --endpoint "$CEP" load --vectors "$WORK/a.fvecs" --id-prefix a --acked "$WORK/acked-a" \
  2>/dev/null

out=$("$BIN/cirrus" --json rebalance --map "$WORK/map.json" --new-map "$WORK/new.json" --dry-run |
  tail -1)
echo "  dry run: $out"
mv=$(echo "$out" | jq '.moving')
to2=$(echo "$out" | jq '.moving_to[2]')
[ "$mv" -eq "$to2" ] || fail "growing 2 -> 3 must move items only to the new group: $out"
[ "$mv" -gt 2800 ] && [ "$mv" -lt 3900 ] || fail "about 1/3 of 10000 should move, not $mv"
[ ! -e "$WORK/new.json.rebalance" ] || fail "a dry run left a state file"

# The new group gets one item it owns before the move: a shard whose Flat index starts empty
# fails a few searches that race its first adds ("vector::_M_range_check", shard/index.c; seen
# without any rebalance: cirrus-bench search against a fresh shard being loaded). That is not
# what this test is about, and its query check allows no error.
seed=$(seq 1 50 | sed 's/^/seed/' | python3 "$HERE/placement.py" fnv1a64-jump 3 | awk '$2 == 2 { print $1; exit }')
"${C[@]}" --endpoint "$E2" upsert --id "$seed" --vector "$(seq -s, 1 16)" >/dev/null

note "2 -> 3 groups under a write and query load; SIGKILL during the copy, then resume"
"${C[@]}" --endpoint "$CEP" load --vectors "$WORK/w.fvecs" --id-prefix w --batch 16 --window 2 \
  --acked "$WORK/acked-w" >"$WORK/loader.log" 2>&1 &
loader=$!; PIDS+=("$loader")
"$BIN/cirrus-bench" search --endpoint "$CEP" --queries "$WORK/q.fvecs" --truth "$WORK/t.ivecs" \
  --id-prefix a --k 1 --concurrency 2 --duration 20 --json >"$WORK/qload.json" 2>"$WORK/qload.err" &
qload=$!; PIDS+=("$qload")
# Result lists must never name an item twice (one search a loop turn, k=30).
( while :; do
    "${C[@]}" --endpoint "$CEP" --json search --vector "$(jq -rn '[range(16)] | map(. / 10) | map(tostring) | join(",")')" \
      -k 30 --no-metadata 2>>"$WORK/dups.err" |
      jq -e '([.hits[].id] | length) == ([.hits[].id] | unique | length) and (.partial // false | not)' \
        >/dev/null || echo bad >>"$WORK/dups"
    sleep 0.05
  done ) &
dupl=$!; PIDS+=("$dupl")
sleep 1
start_bg "$WORK/rb1.log" "$BIN/cirrus" --json rebalance --map "$WORK/map.json" \
  --new-map "$WORK/new.json" --rate 2000 --batch 200
rb=$LAST_PID
for _ in $(seq 1 200); do
  [ -s "$WORK/new.json.rebalance" ] && [ "$(jq .copied "$WORK/new.json.rebalance")" -ge 800 ] && break
  sleep 0.05
done
kill -9 "$rb"; wait "$rb" 2>/dev/null || true
st=$(jq -c '{phase, group, copied}' "$WORK/new.json.rebalance")
echo "  killed at $st"
[ "$(jq -r .phase "$WORK/new.json.rebalance")" = copy ] || fail "not killed during the copy: $st"
jq -e '.moving_from.reads == "old"' "$WORK/map.json" >/dev/null || fail "map.json is not the copy's map"
"$BIN/cirrus" --json rebalance --map "$WORK/map.json" --new-map "$WORK/new.json" \
  >"$WORK/rb2.json" 2>"$WORK/rb2.err" || fail "resume failed: $(cat "$WORK/rb2.err")"
echo "  $(tail -1 "$WORK/rb2.json")"
jq -se '.[-1].resumed == true and .[-1].copied > 0' "$WORK/rb2.json" >/dev/null ||
  fail "the second run did not resume"
kill -0 "$loader" 2>/dev/null || fail "the loader ended before the move did: the test proves nothing"
kill "$loader"; wait "$loader" 2>/dev/null || true
wait "$qload" || fail "the query load failed: $(cat "$WORK/qload.err" "$WORK/qload.json")"
kill "$dupl"; wait "$dupl" 2>/dev/null || true
echo "  query load: $(jq -c '{queries, errors, recall, p99_ms}' "$WORK/qload.json")"
jq -e '.errors == 0 and .recall == 1 and .queries > 100' "$WORK/qload.json" >/dev/null ||
  fail "a query failed or missed its item during the move"
[ ! -e "$WORK/dups" ] || fail "$(wc -l <"$WORK/dups") searches listed an id twice or were partial"
jq -e '.groups | length == 3' "$WORK/map.json" >/dev/null && ! jq -e 'has("moving_from")' \
  "$WORK/map.json" >/dev/null || fail "map.json does not hold the new map"
grep -q "reload requested: 3 groups" "$WORK/coord.log" || fail "the coordinator was not reloaded"

note "afterwards: every acknowledged id once, in its owning group, exactly"
check_owned "$WORK/new.json" fnv1a64-jump 3 "$WORK/acked-a" "$WORK/acked-w"
"${C[@]}" --endpoint "$CEP" verify --vectors "$WORK/a.fvecs" --id-prefix a --acked "$WORK/acked-a" ||
  fail "an item of the first load is missing or differs"
"${C[@]}" --endpoint "$CEP" verify --vectors "$WORK/w.fvecs" --id-prefix w --acked "$WORK/acked-w" ||
  fail "an item written during the move is missing or differs"
[ "$("${C[@]}" --endpoint "$E0B" --json stats | jq .count)" = "$("${C[@]}" --endpoint "$E0A" --json stats | jq .count)" ] ||
  fail "the replicas of group 0 differ"
out=$("$BIN/cirrus" --json rebalance --map "$WORK/map.json" --new-map "$WORK/new.json" | tail -1)
echo "$out" | jq -e '.finished_before' >/dev/null || fail "a rerun after the end: $out"

note "refusals"
map "$WORK/small.json" fnv1a64-jump "$CEP" "$E0A,$E0B"
expect_error 'shrinking' "$BIN/cirrus" rebalance --map "$WORK/map.json" --new-map "$WORK/small.json" --dry-run
expect_error 'nothing to move' "$BIN/cirrus" rebalance --map "$WORK/map.json" --new-map "$WORK/new.json" \
  --state "$WORK/other.state" --dry-run
cp "$WORK/new.json.rebalance" "$WORK/x.state"
expect_error 'another map' "$BIN/cirrus" rebalance --map "$WORK/map.json" --new-map "$WORK/small.json" \
  --state "$WORK/x.state"

note "legacy-fnv-jump -> fnv1a64-jump on the same 2 groups"
shard l0; L0=$EP; shard l1; L1=$EP
lp=$(free_port); LEP="tcp://127.0.0.1:$lp"
map "$WORK/lmap.json" legacy-fnv-jump "$LEP" "$L0" "$L1"
map "$WORK/lnew.json" fnv1a64-jump "$LEP" "$L0" "$L1"
start_bg "$WORK/lcoord.log" "$BIN/cirrus-coordinator" --map "$WORK/lmap.json"
wait_ready "$LEP"
"${C[@]}" --endpoint "$LEP" load --vectors "$WORK/a.fvecs" --id-prefix a --limit 5000 \
  --acked "$WORK/acked-l" 2>/dev/null
out=$("$BIN/cirrus" --json rebalance --map "$WORK/lmap.json" --new-map "$WORK/lnew.json" --dry-run | tail -1)
echo "  dry run: $(echo "$out" | jq -c '{moving, moving_to}')"
mv=$(echo "$out" | jq .moving)
[ "$mv" -gt 2000 ] && [ "$mv" -lt 3000 ] || fail "about half of 5000 should move, not $mv"
"$BIN/cirrus" --json rebalance --map "$WORK/lmap.json" --new-map "$WORK/lnew.json" >"$WORK/lrb.json" ||
  fail "the placement move failed"
echo "  $(tail -1 "$WORK/lrb.json")"
jq -se ".[-1].copied == $mv and .[-1].deleted == $mv" "$WORK/lrb.json" >/dev/null ||
  fail "copied/deleted differ from the dry run's $mv"
check_owned "$WORK/lnew.json" fnv1a64-jump 2 "$WORK/acked-l"
"${C[@]}" --endpoint "$LEP" verify --vectors "$WORK/a.fvecs" --id-prefix a --acked "$WORK/acked-l" ||
  fail "an item is missing or differs after the placement move"
echo "PASS"
