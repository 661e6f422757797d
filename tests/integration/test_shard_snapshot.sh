#!/usr/bin/env bash
# Snapshots: search results are identical before and after a snapshot + restart, and a
# restart after more writes (past the snapshot) replays them; deletes after the snapshot
# stay deleted.
. "$(dirname "$0")/lib.sh"

"$BIN/cirrus-bench" gen --n 5000 --dim 32 --queries 20 --out "$WORK/b.fvecs" \
  --query-out "$WORK/q.fvecs" >/dev/null
ep="tcp://127.0.0.1:$(free_port)"
dir="$WORK/s"
C=("$BIN/cirrus" --endpoint "$ep" --json)

start_bg "$WORK/s1.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --create --dim 32 \
  --index "IVF16,Flat" --train-size 2000 --log-level warn
pid=$LAST_PID
wait_ready "$ep"
"${C[@]}" load --vectors "$WORK/b.fvecs" --id-prefix p --limit 4000 >/dev/null
"${C[@]}" snapshot | grep -q '"high_water":4000' || fail "snapshot high water"
q=$(head -c 0 /dev/null; "${C[@]}" get --id p17 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
# The hits only: the answer also carries timings, which differ from call to call.
hits() { "${C[@]}" search --vector "$q" -k 10 --nprobe 16 | sed 's/,"timing":{[^}]*}//'; }
before=$(hits)
"${C[@]}" stats | grep -q '"trained":true' || fail "index not trained after 4000 vectors"

kill -TERM "$pid"; wait "$pid"
start_bg "$WORK/s2.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --log-level warn
pid=$LAST_PID
wait_ready "$ep"
after=$(hits)
[ "$before" = "$after" ] || fail "results differ after restart: $before vs $after"

# Writes and a delete after the snapshot, then kill -9 (no snapshot on the way down).
"$BIN/cirrus" --endpoint "$ep" load --vectors "$WORK/b.fvecs" --id-prefix x --limit 500 >/dev/null
"${C[@]}" delete --id p17 | grep -q '"deleted":true' || fail "delete"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
start_bg "$WORK/s3.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --log-level warn
wait_ready "$ep"
"${C[@]}" stats | grep -q '"count":4499' || fail "count after replay: $("${C[@]}" stats)"
"${C[@]}" search --vector "$q" -k 10 --nprobe 16 | grep -q '"id":"p17"' && fail "deleted p17 came back"
"${C[@]}" search --vector "$q" -k 10 --nprobe 16 | grep -q '"id":"x17"' || fail "x17 (after snapshot) missing"
echo "1 passed, 0 failed"
