#!/usr/bin/env bash
# The distributed system on loopback: a coordinator, 2 shard groups x 2 replicas as separate
# processes. Checks that searches through the coordinator equal the exact top-k over the
# stored vectors, that killing one replica under query load fails no query, that killing a
# whole group gives partial answers that say so, and that returning replicas are repaired
# from their peer (copying only what they missed) so that no acknowledged write is lost.
# tests/integration/test_replica_repair.sh and test_replica_chaos.sh test repair in depth.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT

"$BIN/cirrus-bench" gen --n 6000 --dim 32 --queries 50 --out "$WORK/b.fvecs" \
  --query-out "$WORK/q.fvecs" >/dev/null
"$BIN/cirrus-bench" truth --base "$WORK/b.fvecs" --queries "$WORK/q.fvecs" --k 10 \
  --out "$WORK/t.ivecs" >/dev/null
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --dim 32 --index Flat)
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_0_1_PID" "$SHARD_1_0_PID" "$SHARD_1_1_PID")
C=("$BIN/cirrus" --endpoint "$ep" --timeout 5000)

note "ingest through the coordinator"
"${C[@]}" load --vectors "$WORK/b.fvecs" --id-prefix r --limit 5000 --acked "$WORK/acked" 2>/dev/null
n0=$("$BIN/cirrus" --endpoint "$SHARD_0_0" --json stats | sed 's/.*"count":\([0-9]*\).*/\1/')
n1=$("$BIN/cirrus" --endpoint "$SHARD_1_0" --json stats | sed 's/.*"count":\([0-9]*\).*/\1/')
[ $((n0 + n1)) -eq 5000 ] || fail "groups hold $n0 + $n1 items, expected 5000"
[ "$n0" -gt 2000 ] && [ "$n1" -gt 2000 ] || fail "placement is unbalanced: $n0 / $n1"
n01=$("$BIN/cirrus" --endpoint "$SHARD_0_1" --json stats | sed 's/.*"count":\([0-9]*\).*/\1/')
[ "$n0" -eq "$n01" ] || fail "replicas of group 0 differ: $n0 vs $n01"

note "searches equal the exact top-10 (Flat shards, recall must be 1)"
"${C[@]}" load --vectors "$WORK/b.fvecs" --id-prefix r --acked "$WORK/acked" 2>/dev/null
out=$("$BIN/cirrus-bench" search --endpoint "$ep" --queries "$WORK/q.fvecs" --truth "$WORK/t.ivecs" \
  --id-prefix r --k 10 --duration 1 --json)
echo "$out"
echo "$out" | grep -q '"recall":1\(\.0\)\?[,}]' || fail "recall through the coordinator is not 1: $out"

note "kill one replica of group 1 under query load: no query may fail"
"$BIN/cirrus-bench" search --endpoint "$ep" --queries "$WORK/q.fvecs" --k 10 --duration 4 \
  --concurrency 4 --json >"$WORK/load.json" &
bench=$!
sleep 1
kill -9 "$SHARD_1_0_PID"
wait "$bench" || fail "queries failed while a replica died: $(cat "$WORK/load.json")"
grep -q '"errors":0' "$WORK/load.json" || fail "errors under failover: $(cat "$WORK/load.json")"

note "write while replica 1/0 is down, then kill the whole group 1"
for i in $(seq 1 20); do
  "${C[@]}" upsert --id "late-$i" --vector "$(seq -s, "$i" $((i + 31)))" --attr note=late >/dev/null ||
    fail "write late-$i failed with one replica down"
done
late_g1=()
for i in $(seq 1 20); do
  "$BIN/cirrus" --endpoint "$SHARD_1_1" get --id "late-$i" --no-vector >/dev/null 2>&1 && late_g1+=("late-$i")
done
[ ${#late_g1[@]} -gt 0 ] || fail "no late write landed in group 1"
kill -9 "$SHARD_1_1_PID"
sleep 2.5
res=$("${C[@]}" --json search --vector "$(seq -s, 1 32)" -k 5)
echo "$res" | grep -q '"partial":true' || fail "answer not marked partial: $res"
echo "$res" | grep -q '"missing_groups":\[1\]' || fail "missing group not named: $res"
"${C[@]}" health >/dev/null && fail "health says ready with a group down"

note "restart both replicas of group 1: repaired, full answers again"
# (each replica was compared with its peer once at the coordinator's start: count from here)
seen=$(grep -c "group 1 replica 0 repaired" "$WORK/cl/coordinator.log" || true)
"$BIN/cirrus-shard" --dir "$WORK/cl/shard-1-1" --bind "$SHARD_1_1" --log-level warn \
  >"$WORK/s11.log" 2>&1 &
PIDS+=($!)
sleep 1.5
"$BIN/cirrus-shard" --dir "$WORK/cl/shard-1-0" --bind "$SHARD_1_0" --log-level warn \
  >"$WORK/s10.log" 2>&1 &
PIDS+=($!)
repaired() { [ "$(grep -c "group 1 replica 0 repaired" "$WORK/cl/coordinator.log" || true)" -gt "$seen" ]; }
for _ in $(seq 1 300); do
  repaired && break
  sleep 0.1
done
repaired || fail "no repair: $(tail "$WORK/cl/coordinator.log")"
# Only what it missed was copied (the 20 late writes that hash to group 1), not the group.
n=$(grep "group 1 replica 0 repaired" "$WORK/cl/coordinator.log" | tail -1 | sed -E 's/.*: ([0-9]+) items copied.*/\1/')
[ "$n" -eq ${#late_g1[@]} ] || fail "the repair copied $n items; ${#late_g1[@]} writes were missed"
# The replica that missed the writes now has them, and holds what its peer holds.
for id in "${late_g1[@]}"; do
  "$BIN/cirrus" --endpoint "$SHARD_1_0" get --id "$id" --no-vector >/dev/null ||
    fail "$id missing on the repaired replica"
done
a=$("$BIN/cirrus" --endpoint "$SHARD_1_0" --json stats | sed 's/.*"count":\([0-9]*\).*/\1/')
b=$("$BIN/cirrus" --endpoint "$SHARD_1_1" --json stats | sed 's/.*"count":\([0-9]*\).*/\1/')
[ "$a" = "$b" ] || fail "group 1 replicas differ after repair: $a vs $b"
res=$("${C[@]}" --json search --vector "$(seq -s, 1 32)" -k 5)
echo "$res" | grep -q '"partial":false' || fail "still partial after restart: $res"
"${C[@]}" health >/dev/null || fail "not ready after restart"
out=$("${C[@]}" verify --vectors "$WORK/b.fvecs" --id-prefix r --acked "$WORK/acked")
n=$(wc -l <"$WORK/acked")
[ "$out" = "verified $n of $n" ] || fail "acknowledged writes lost: $out"
echo "$out"

note "bad input at the coordinator"
expect_error "reference item 'no-such-item' not found" "${C[@]}" search --ref-id no-such-item --caption red
expect_error "unknown attribute 'nope'" "${C[@]}" search --vector "$(seq -s, 1 32)" --filter 'nope = 1'
expect_error "out of range" "${C[@]}" search --vector "$(seq -s, 1 32)" -k 5000
expect_error "expected 32" "${C[@]}" search --vector 1,2,3
expect_error "needs an encoder" "${C[@]}" search --text "red dress"
note "malformed and oversized frames at the coordinator get an error reply"
out=$("$BIN/cirrus-bench" raw --endpoint "$ep" --hex 0a0bffffffffff)
echo "$out" | grep -q '"code":-3' || fail "malformed protobuf: $out"
out=$("$BIN/cirrus-bench" raw --endpoint "$ep" --zeros 70000000) # over the 64 MiB cap, under ZeroMQ's hard limit
echo "$out" | grep -q '"code":-3' || fail "oversized frame: $out"
echo "  $out"

note "SIGHUP: a bad map is refused and the old one stays; a good one is applied"
cp "$WORK/cl/map.json" "$WORK/map.good"
echo '{"groups": []}' >"$WORK/cl/map.json"
kill -HUP "$COORDINATOR_PID"
sleep 0.5
grep -q "reload refused" "$WORK/cl/coordinator.log" || fail "bad map not refused"
"${C[@]}" search --vector "$(seq -s, 1 32)" -k 3 >/dev/null || fail "not serving after a refused reload"
sed 's/"metric"/"hedge_ms": 40, "metric"/' "$WORK/map.good" >"$WORK/cl/map.json"
kill -HUP "$COORDINATOR_PID"
for _ in $(seq 1 30); do grep -q "cluster map reloaded" "$WORK/cl/coordinator.log" && break; sleep 0.1; done
grep -q "cluster map reloaded" "$WORK/cl/coordinator.log" || fail "good map not applied"
out=$("${C[@]}" verify --vectors "$WORK/b.fvecs" --id-prefix r --acked "$WORK/acked")
[ "$out" = "verified $n of $n" ] || fail "after reload: $out"
bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl"
echo "1 passed, 0 failed"
