#!/usr/bin/env bash
# Replica repair (issue 10 item 2), with real processes: 1 shard group x 2 replicas.
#  1. The issue's sequence: B dies, 2,000 writes (and 100 deletes) are acknowledged by A alone,
#     A dies, B returns. B may be behind, so it must serve no reads: for a while every read
#     is partial/unavailable, never "missing". A returns: B is repaired from A, and both
#     replicas, queried directly, hold the same items and versions; every acknowledged write
#     reads back from each replica alone; the deletes reached B as versioned tombstones.
#  2. A short absence copies only what changed (the coordinator logs items copied per repair).
#  3. Across a coordinator restart nothing is known: B returning alone must not serve, and
#     when A returns a full comparison transfers only the differing items.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT

"$BIN/cirrus-bench" gen --n 4000 --dim 16 --out "$WORK/v.fvecs" >/dev/null
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --groups 1 --replicas 2 \
  --dim 16 --index Flat)
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_0_1_PID")
A=$SHARD_0_0
B=$SHARD_0_1
CLOG=$WORK/cl/coordinator.log
C=("$BIN/cirrus" --endpoint "$ep" --timeout 5000)

# wait_log PATTERN COUNT [SECONDS]: until the coordinator log holds COUNT lines with PATTERN.
wait_log() {
  local pat=$1 count=$2 secs=${3:-20}
  for _ in $(seq 1 $((secs * 20))); do
    [ "$(grep -cF -- "$pat" "$CLOG" || true)" -ge "$count" ] && return 0
    sleep 0.05
  done
  fail "coordinator log: no $count x '$pat' within ${secs}s: $(tail -5 "$CLOG")"
}
# shellcheck source=replicas.sh
. "$(dirname "$0")/replicas.sh"
# Every id ever written, so that a dump shows items, versions and absences alike.
ALL=$WORK/all_ids
same_replicas() { # both replicas hold the same items and versions
  dump "$A" "$WORK/a.dump"
  dump "$B" "$WORK/b.dump"
  [ -s "$WORK/a.dump" ] || fail "empty dump of $A"
  cmp -s "$WORK/a.dump" "$WORK/b.dump" ||
    fail "replicas differ: $(diff "$WORK/a.dump" "$WORK/b.dump" | head -5) ($(diff "$WORK/a.dump" "$WORK/b.dump" | grep -c '^[<>]') lines)"
}
# verify_at ENDPOINT PREFIX:ACKED...: prints "verified N of M" per set (M = acked ids).
verify_at() {
  local e=$1 set
  shift
  for set in "$@"; do
    "$BIN/cirrus" --endpoint "$e" --timeout 5000 verify --vectors "$WORK/v.fvecs" \
      --id-prefix "${set%%:*}" --acked "${set#*:}" 2>&1 || true
  done
}
each_replica_verifies() { # PREFIX:ACKED...: every acknowledged id reads back from each replica alone
  local e out want=""
  for set in "$@"; do want="$want verified $(wc -l <"${set#*:}") of $(wc -l <"${set#*:}")"; done
  for e in "$A" "$B"; do
    out=$(verify_at "$e" "$@" | tr '\n' ' ' | sed 's/ $//')
    [ " $out" = "$want" ] || fail "replica $e: $out (want$want)"
  done
  echo "  each replica alone:$want"
}
# no_stale_reads SECONDS PREFIX:ACKED...: while no up-to-date replica is live, reads through the
# coordinator may fail or be partial, but must never report an acknowledged item missing.
no_stale_reads() {
  local until=$((SECONDS + $1)) rounds=0 out res
  shift
  while [ $SECONDS -lt "$until" ] || [ $rounds -lt 3 ]; do
    out=$(verify_at "$ep" "$@")
    echo "$out" | grep -q ': missing' && fail "acknowledged writes read as missing: $(echo "$out" | head -3)"
    echo "$out" | grep -q '^verified' && fail "answered from a replica that may be behind: $out"
    res=$("${C[@]}" --json search --vector "$(seq -s, 1 16)" -k 5 2>&1) || true
    echo "$res" | grep -q '"partial":true' || fail "search not partial: $res"
    echo "$res" | grep -q '"missing_groups":\[0\]' || fail "missing group not named: $res"
    rounds=$((rounds + 1))
    sleep 0.2
  done
  echo "  $rounds rounds: reads partial or unavailable, never missing (last: $(echo "$out" | head -1))"
}
copied_in() { # LINE_NO PATTERN: items copied, from the LINE_NO-th repair log line matching PATTERN
  grep -F -- "$2" "$CLOG" | sed -n "${1}p" | sed -E 's/.*: ([0-9]+) items copied.*/\1/'
}
repairs() { grep -cF -- "group 0 replica $1 repaired" "$CLOG" || true; } # so far

note "preload 1000 items with both replicas up"
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix p --limit 1000 --acked "$WORK/acked_p" 2>/dev/null
{ seq -f 'p%g' 0 999; seq -f 'r%g' 0 1999; seq -f 's%g' 0 299; seq -f 't%g' 0 199; } >"$ALL"

note "the issue's sequence: kill B, 2000 writes + 100 deletes acked by A alone, kill A, restart B"
kill_shard 1
wait_log "$B is down" 1
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix r --limit 2000 --acked "$WORK/acked_r" 2>/dev/null
[ "$(wc -l <"$WORK/acked_r")" -eq 2000 ] || fail "only $(wc -l <"$WORK/acked_r") of 2000 writes acked"
"${C[@]}" delete $(seq -f '--id p%g' 0 99) >/dev/null
seq -f 'p%g' 0 99 >"$WORK/deleted"
grep -vxF -f "$WORK/deleted" "$WORK/acked_p" >"$WORK/acked_p_kept" # p100..p999
kill_shard 0
wait_log "$A is down" 1
start_shard 1
wait_log "$B is up" 1
k=$(repairs 1) # B's repair at the coordinator's start (nothing to copy)
no_stale_reads 2 "r:$WORK/acked_r" "p:$WORK/acked_p_kept"

note "restart A: B is repaired from A; both replicas hold the same items and versions"
start_shard 0
wait_log "group 0 replica 1 repaired" $((k + 1))
same_replicas
grep -q '^p5 $' "$WORK/b.dump" || fail "the delete of p5 did not reach B: $(grep '^p5 ' "$WORK/b.dump")"
each_replica_verifies "r:$WORK/acked_r" "p:$WORK/acked_p_kept"
n=$(copied_in $((k + 1)) "group 0 replica 1 repaired")
echo "  repair of B copied $n items (2000 writes + 100 deletes were missed; the group holds 2900)"
[ "$n" -ge 2100 ] && [ "$n" -le 2150 ] || fail "repair of B copied $n items, expected ~2100"

note "a short absence copies only what changed"
kill_shard 1
wait_log "$B is down" 2
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix s --limit 300 --acked "$WORK/acked_s" 2>/dev/null
k=$(repairs 1)
start_shard 1
wait_log "group 0 replica 1 repaired" $((k + 1))
n=$(copied_in $((k + 1)) "group 0 replica 1 repaired")
echo "  repair after the short absence copied $n items (300 written meanwhile; the group holds 3200)"
[ "$n" -ge 300 ] && [ "$n" -le 330 ] || fail "short absence: $n items copied, expected ~300"
sent=$(grep -F "group 0 replica 1 repaired" "$CLOG" | sed -n "$((k + 1))p" | sed -nE 's/.*\(([0-9]+) sent.*/\1/p')
[ "${sent:-0}" -le 330 ] || fail "short absence: $sent items sent, expected ~300"
same_replicas
each_replica_verifies "r:$WORK/acked_r" "p:$WORK/acked_p_kept" "s:$WORK/acked_s"

note "coordinator restart: B missed 200 writes, coordinator and A die, B returns alone"
kill_shard 1
wait_log "$B is down" 3
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix t --limit 200 --acked "$WORK/acked_t" 2>/dev/null
[ "$(wc -l <"$WORK/acked_t")" -eq 200 ] || fail "only $(wc -l <"$WORK/acked_t") of 200 writes acked"
kill -9 "$COORDINATOR_PID"
kill_shard 0
start_shard 1
CLOG=$WORK/coordinator2.log
start_bg "$CLOG" "$BIN/cirrus-coordinator" --map "$WORK/cl/map.json" --log-level info
for _ in $(seq 1 100); do # until it answers (ready or not)
  "$BIN/cirrus" --endpoint "$ep" --timeout 200 --json health 2>/dev/null | grep -q '"ready"' && break
  sleep 0.05
done
SETS=("r:$WORK/acked_r" "p:$WORK/acked_p_kept" "s:$WORK/acked_s" "t:$WORK/acked_t")
no_stale_reads 2 "${SETS[@]}"

note "A returns: a full comparison transfers only the differing items"
start_shard 0
wait_log "group 0 replica 0 repaired" 1
wait_log "group 0 replica 1 repaired" 1
n0=$(copied_in 1 "group 0 replica 0 repaired")
n1=$(copied_in 1 "group 0 replica 1 repaired")
echo "  after the coordinator restart: $n0 + $n1 items copied (200 differ; the group holds 3400)"
[ $((n0 + n1)) -ge 200 ] && [ $((n0 + n1)) -le 230 ] || fail "full comparison copied $n0 + $n1 items, expected ~200"
same_replicas
each_replica_verifies "${SETS[@]}"
out=$(verify_at "$ep" "${SETS[@]}" | tr '\n' ' ')
[ "$out" = "verified 2000 of 2000 verified 900 of 900 verified 300 of 300 verified 200 of 200 " ] ||
  fail "through the coordinator: $out"
kill -9 "$LAST_PID"
wait "$LAST_PID" 2>/dev/null || true
echo "1 passed, 0 failed"
