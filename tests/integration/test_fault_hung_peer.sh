#!/usr/bin/env bash
# A hung peer under load (issue 17, faults): 2 shard groups x 2 replicas; one replica is frozen
# with SIGSTOP while a search load and a write load run through the coordinator.
#  - searches: 0 failed, and their p99 stays within the map's hedge_ms + the p99 measured
#    before the stop + a margin (the coordinator re-sends a slow read to the other replica);
#  - writes: every one is acknowledged (write_quorum 0 = all live: the frozen replica is
#    dropped from the quorum once its backend timeout passes), none waits past the timeout
#    + its retry;
#  - SIGCONT: it rejoins, is repaired, and holds every acknowledged write with its vector.
# (A frozen encoder, the only one of its cluster, is test_http_faults.sh.)
# CIRRUS_FAULT_STOP_S: seconds frozen (default 4; `make soak` style runs use more).
. "$(dirname "$0")/lib.sh"
# shellcheck source=faults.sh
. "$(dirname "$0")/faults.sh"
STOP_S=${CIRRUS_FAULT_STOP_S:-4}
HEDGE_MS=30
MARGIN_MS=${CIRRUS_FAULT_MARGIN_MS:-150} # scheduling noise on a loaded 2-core machine

"$BIN/cirrus-bench" gen --n 6000 --dim 16 --queries 200 --out "$WORK/v.fvecs" \
  --query-out "$WORK/q.fvecs" >/dev/null
fault_cluster_up 2 2 16 CIRRUS_COORDINATOR_BACKEND_TIMEOUT_MS=1000
C=("$BIN/cirrus" --endpoint "$EP" --timeout 3000)
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix v --limit 2000 --acked "$WORK/acked" >/dev/null 2>&1
[ "$(wc -l <"$WORK/acked")" = 2000 ] || fail "preload: $(wc -l <"$WORK/acked") of 2000 acknowledged"

# search_run SECONDS OUT: a 2-client search load; OUT gets its JSON result line.
search_run() {
  "$BIN/cirrus-bench" search --endpoint "$EP" --queries "$WORK/q.fvecs" --k 10 \
    --concurrency 2 --duration "$1" --json >"$2" 2>"$2.err" || true
}

note "baseline: searches with every replica up"
search_run 3 "$WORK/base.json"
base_p99=$(json_num p99_ms <"$WORK/base.json")
[ -n "$base_p99" ] || fail "baseline search: $(cat "$WORK/base.json" "$WORK/base.json.err")"
echo "  $(cat "$WORK/base.json")"

note "SIGSTOP replica 0/1 for ${STOP_S}s under a search and a write load"
# Writes in small batches: each one a round trip; the log lists per batch how long it took.
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix v --limit 4000 --batch 20 --window 1 \
  --acked "$WORK/acked_stop" >"$WORK/load_stop.log" 2>&1 &
loader=$!
kill -STOP "$SHARD_0_1_PID"
t0=$SECONDS
search_run "$STOP_S" "$WORK/stop.json"
stopped_for=$((SECONDS - t0))
echo "  $(cat "$WORK/stop.json")"
errors=$(json_num errors <"$WORK/stop.json")
p99=$(json_num p99_ms <"$WORK/stop.json")
[ -n "$p99" ] || fail "search during the stop: $(cat "$WORK/stop.json" "$WORK/stop.json.err")"
[ "$errors" = 0 ] || fail "$errors searches failed while a replica was frozen: $(head -3 "$WORK/stop.json.err")"
bound=$(awk "BEGIN { print $HEDGE_MS + $base_p99 + $MARGIN_MS }")
awk "BEGIN { exit !($p99 <= $bound) }" ||
  fail "p99 $p99 ms during the stop > hedge $HEDGE_MS + baseline p99 $base_p99 + margin $MARGIN_MS = $bound ms"
echo "  p99 $p99 ms <= $bound ms (hedge $HEDGE_MS + baseline $base_p99 + margin $MARGIN_MS)"

note "writes go on: the load finishes while the replica is still frozen or soon after"
set +e
timeout 60 tail --pid="$loader" -f /dev/null
wait "$loader"
rc=$?
set -e
[ "$rc" = 0 ] || fail "the write load failed (rc $rc): $(tail -3 "$WORK/load_stop.log")"
n=$(sort -u "$WORK/acked_stop" | wc -l)
[ "$n" = 4000 ] || fail "$n of 4000 writes acknowledged"
echo "  4000 of 4000 writes acknowledged (frozen ${stopped_for}s)"

note "SIGCONT: the replica rejoins, is repaired and answers"
kill -CONT "$SHARD_0_1_PID"
all_alive
replicas_hold "$WORK/v.fvecs" v "$WORK/acked_stop" 40
echo "  every acknowledged write on both replicas of its group, with its vector"
search_run 2 "$WORK/after.json"
[ "$(json_num errors <"$WORK/after.json")" = 0 ] || fail "searches after SIGCONT: $(cat "$WORK/after.json.err")"
"$BIN/cirrus" --endpoint "$SHARD_0_1" --timeout 2000 health >/dev/null || fail "the resumed replica does not answer"
grep -E 'repair|dead|back' "$WORK/cl/coordinator.log" | tail -5 | sed 's/^/  /'
all_alive
echo "1 passed, 0 failed"
