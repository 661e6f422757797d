#!/usr/bin/env bash
# Durability: kill -9 the shard in the middle of a load, restart it, and verify that every
# write `load` saw acknowledged is stored with exactly its vector. Three rounds, each
# resuming the load where the file says, on the same directory.
. "$(dirname "$0")/lib.sh"

"$BIN/cirrus-bench" gen --n 60000 --dim 64 --queries 10 --out "$WORK/base.fvecs" >/dev/null
port=$(free_port)
ep="tcp://127.0.0.1:$port"
dir="$WORK/shard"
acked="$WORK/acked.txt"
: >"$acked"

for round in 1 2 3; do
  create=""
  [ "$round" = 1 ] && create="--create --dim 64 --index HNSW16"
  # shellcheck disable=SC2086
  start_bg "$WORK/shard-$round.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" $create \
    --log-level warn
  shard=$LAST_PID
  wait_ready "$ep"
  start_bg "$WORK/load-$round.log" "$BIN/cirrus" --endpoint "$ep" --timeout 3000 load \
    --vectors "$WORK/base.fvecs" --id-prefix r --batch 128 --acked "$acked"
  load=$LAST_PID
  # Kill at a point that varies per round, once this round's load has some writes
  # acknowledged. The file keeps every round's ids (a load writes all of them again), so
  # count from this round's start: counting the total let round 3 kill a finished load.
  base=$(wc -l <"$acked")
  for _ in $(seq 1 400); do
    [ "$(wc -l <"$acked")" -gt $((base + round * 2000)) ] && break
    sleep 0.02
  done
  sleep "0.0$((RANDOM % 5))"
  kill -9 "$shard"
  note "round $round: killed the shard with $(wc -l <"$acked") acknowledged ids"
  # load must notice and exit non-zero within its timeout, never hang.
  set +e
  timeout 20 tail --pid="$load" -f /dev/null
  wait "$load"
  rc=$?
  set -e
  [ "$rc" -ne 0 ] || [ $(($(wc -l <"$acked") - base)) -eq 60000 ] ||
    fail "load exited 0 after the kill"
  [ "$rc" -ne 124 ] || fail "load hung after the server died"
  grep -q "no reply\|acknowledged" "$WORK/load-$round.log" || [ "$rc" -eq 0 ] ||
    fail "load did not report the failure: $(cat "$WORK/load-$round.log")"

  start_bg "$WORK/shard-$round-b.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" \
    --log-level warn
  shard=$LAST_PID
  wait_ready "$ep"
  out=$("$BIN/cirrus" --endpoint "$ep" verify --vectors "$WORK/base.fvecs" --id-prefix r \
    --acked "$acked")
  echo "$out"
  n=$(wc -l <"$acked")
  [ "$out" = "verified $n of $n" ] || fail "round $round: $out"
  # Search works after recovery and finds a known row exactly.
  "$BIN/cirrus" --endpoint "$ep" --json search --vector "$("$BIN/cirrus" --endpoint "$ep" \
    --json get --id r0 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')" -k 10 --ef 200 | grep -q '"id":"r0"' ||
    fail "round $round: r0 not found by its own vector"
  kill -TERM "$shard"
  wait "$shard" || fail "shard did not exit 0 on SIGTERM"
done
echo "1 passed, 0 failed"
