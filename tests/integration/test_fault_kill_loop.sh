#!/usr/bin/env bash
# Kill loops (issue 17, faults under load): 2 shard groups x 2 replicas and a coordinator, a
# write load through the coordinator (`cirrus load --acked`, with attributes) that never
# stops, and each round one process picked at random - a shard replica or the coordinator -
# killed with SIGKILL and restarted:
#  - a replica: the coordinator logs it down; writes go on and are acknowledged while it is
#    down (the load's and 10 of the test's own, d<round>-N); it restarts and is repaired;
#  - the coordinator: writes wait (the test's own fail, none is acknowledged); it restarts,
#    repairs every replica (it knows nothing of them) and the load goes on.
# A round ends when the coordinator's /metrics shows every replica live again (answering and
# proven current), and 10 more own writes (d<round>-aN) are acknowledged.
# At the end every acknowledged id (of the load and the test's own) is read back through the
# coordinator, and from each replica of its group alone, and compared byte for byte with what
# was written: the vector's float32 bits, every attribute's name, type and value. The load's
# client never hangs: each `cirrus load` runs under a timeout, which must never fire, and each
# must end with every row acknowledged (its retries span a coordinator restart).
# CIRRUS_FAULT_ROUNDS: rounds (default 4); CIRRUS_FAULT_SEED=N replays a schedule (printed).
. "$(dirname "$0")/lib.sh"
# shellcheck source=faults.sh
. "$(dirname "$0")/faults.sh"
SEED=${CIRRUS_FAULT_SEED:-$(( $(date +%s) % 100000 ))}
ROUNDS=${CIRRUS_FAULT_ROUNDS:-4}
RANDOM=$SEED
LOAD_TIMEOUT_S=${CIRRUS_FAULT_LOAD_TIMEOUT_S:-90} # one `cirrus load` of 200 rows (normally < 1 s)
OWN=10            # the test's own writes per phase of a round
echo "seed $SEED, $ROUNDS rounds (CIRRUS_FAULT_SEED=$SEED CIRRUS_FAULT_ROUNDS=$ROUNDS replays)"

"$BIN/cirrus-bench" gen --n 1000 --dim 16 --out "$WORK/v.fvecs" >/dev/null
# Attributes of every type; doubles with at most 9 digits (the CLI prints reals with 9).
awk 'BEGIN { for (i = 0; i < 1000; i++)
  printf "{\"row\":%d,\"color\":\"c%d\",\"score\":%.3f,\"even\":%s,\"tags\":[\"t%d\",\"u%d\"]}\n",
    i, i % 7, i / 8, (i % 2 ? "false" : "true"), i % 5, i % 3 }' >"$WORK/a.jsonl"
HP=$(free_port)
fault_cluster_up 2 2 16 CIRRUS_COORDINATOR_BACKEND_TIMEOUT_MS=1000 \
  CIRRUS_COORDINATOR_HTTP="127.0.0.1:$HP"
HTTP=http://127.0.0.1:$HP
wait_all_live "$HTTP"

# The load: `cirrus load` runs of 200 rows one after another (ids L<k>-<row>) until $WORK/stop
# exists; each under a timeout; "k rc seconds" of each in $WORK/runs. Retries for up to 30 s
# after a first failure: a coordinator restart takes a few seconds.
writer() {
  local k=0 rc t0
  while [ ! -e "$WORK/stop" ]; do
    echo "L$k- $WORK/acked_L$k" >>"$WORK/loads"
    t0=$SECONDS
    rc=0
    timeout -k 5 "$LOAD_TIMEOUT_S" "$BIN/cirrus" --endpoint "$EP" --timeout 2000 load \
      --vectors "$WORK/v.fvecs" --attrs "$WORK/a.jsonl" --id-prefix "L$k-" --limit 200 \
      --batch 4 --window 2 --retry-ms 30000 --acked "$WORK/acked_L$k" \
      >>"$WORK/load.log" 2>&1 || rc=$?
    echo "$k $rc $((SECONDS - t0))" >>"$WORK/runs"
    k=$((k + 1))
  done
}
: >"$WORK/loads"
: >"$WORK/runs"
: >"$WORK/own.jsonl"
acked_count() { cat "$WORK"/acked_L* 2>/dev/null | wc -l; }
# wait_acked N SECONDS WHY: until N more writes of the load are acknowledged.
wait_acked() {
  local want=$(($(acked_count) + $1)) until=$((SECONDS + $2))
  while [ "$(acked_count)" -lt "$want" ]; do
    [ $SECONDS -lt $until ] || fail "$3: fewer than $1 writes acknowledged in $2 s ($(tail -2 "$WORK/load.log"))"
    sleep 0.05
  done
}

# own_writes ROUND PHASE TIMEOUT_MS: OWN upserts d<ROUND>-<PHASE><n> (PHASE "" while down,
# "a" after), one `cirrus upsert` each (a vector of multiples of 1/64, exact in float32, and 5
# attributes); each one acknowledged goes to own.jsonl as written. Prints how many were.
own_writes() {
  local n id vec phase acked=0
  phase=$([ -z "$2" ] && echo down || echo after)
  for n in $(seq 0 $((OWN - 1))); do
    id="d$1-$2$n"
    vec=$(awk -v r="$1" -v n="$n" -v p="${#2}" 'BEGIN { for (j = 0; j < 16; j++)
      printf "%s%.6f", (j ? "," : ""), ((r * 131 + n * 17 + p * 29 + j * 7) % 512 - 256) / 64 }')
    if "$BIN/cirrus" --endpoint "$EP" --timeout "$3" upsert --id "$id" --vector "$vec" \
      --attr "round=$1" --attr "n=$n" --attr "phase=$phase" --attr "half=$n.5" \
      --attr "tags=[own,r$1]" >/dev/null 2>&1; then
      printf '{"id":"%s","vector":[%s],"attributes":{"round":%d,"n":%d,"phase":"%s","half":%d.5,"tags":["own","r%d"]}}\n' \
        "$id" "$vec" "$1" "$n" "$phase" "$n" "$1" >>"$WORK/own.jsonl"
      acked=$((acked + 1))
    fi
  done
  echo "$acked"
}

writer &
PIDS+=($!)
WRITER=$!

# pick ROUND: sets target, for the round: "c" (the coordinator) or "G R"; random, but a run
# of 2 or more rounds kills the coordinator and a replica at least once each. (Not called in
# a $(...): a subshell would draw from a RANDOM of its own and break the replay by seed.)
killed_coord=0
killed_replica=0
pick() {
  local x=$((RANDOM % 5))
  if [ "$1" = "$ROUNDS" ] && [ "$ROUNDS" -ge 2 ]; then
    [ $killed_coord = 1 ] || x=4
    [ $killed_replica = 1 ] || x=$((RANDOM % 4))
  fi
  if [ $x = 4 ]; then target=c; else target="$((x / 2)) $((x % 2))"; fi
}

t_start=$SECONDS
for round in $(seq 1 "$ROUNDS"); do
  t_round=$SECONDS
  pick "$round"
  wait_acked 20 60 "round $round: the load before the kill"
  sleep "0.$((RANDOM % 10))" # a random point of the load (the schedule, not a wait)
  if [ "$target" = c ]; then
    killed_coord=1
    before=()
    for g in 0 1; do for r in 0 1; do before+=("$(log_count "group $g replica $r repaired")"); done; done
    kill_coordinator
    down_acked=$(own_writes "$round" "" 300)
    [ "$down_acked" = 0 ] || fail "round $round: $down_acked writes acknowledged with the coordinator dead"
    start_coordinator
    # It knows nothing of any replica: each is compared with its peer before serving reads.
    i=0
    for g in 0 1; do for r in 0 1; do
      wait_log "group $g replica $r repaired" $((before[i] + 1)) 60
      i=$((i + 1))
    done; done
    wait_all_live "$HTTP" 60
    what="coordinator"
  else
    killed_replica=1
    read -r g r <<<"$target"
    e=SHARD_${g}_${r}
    downs=$(log_count "${!e} is down")
    repairs=$(log_count "group $g replica $r repaired")
    kill_replica "$g" "$r"
    wait_log "${!e} is down" $((downs + 1)) 30
    wait_acked 20 30 "round $round: writes with replica $g/$r down"
    down_acked=$(own_writes "$round" "" 3000)
    [ "$down_acked" = "$OWN" ] || fail "round $round: $down_acked of $OWN own writes acknowledged with replica $g/$r down"
    start_replica "$g" "$r"
    wait_log "group $g replica $r repaired" $((repairs + 1)) 60
    wait_all_live "$HTTP" 60 # a "repaired" replica that missed writes meanwhile is repaired again
    what="replica $g/$r"
  fi
  wait_acked 20 60 "round $round: the load after the restart"
  up_acked=$(own_writes "$round" "a" 3000)
  [ "$up_acked" = "$OWN" ] || fail "round $round: $up_acked of $OWN own writes acknowledged after the restart"
  all_alive
  echo "  round $round: killed $what; own writes acknowledged: $down_acked while down, $up_acked after; $(acked_count) load writes so far; $((SECONDS - t_round)) s"
done

note "stop the load: every run ended by itself with every row acknowledged"
touch "$WORK/stop"
until_w=$((SECONDS + LOAD_TIMEOUT_S + 10))
while kill -0 "$WRITER" 2>/dev/null; do
  [ $SECONDS -lt $until_w ] || fail "the load did not stop"
  sleep 0.05
done
runs=$(wc -l <"$WORK/runs")
hung=$(awk '$2 == 124 || $2 == 137' "$WORK/runs" | wc -l)
[ "$hung" = 0 ] || fail "$hung load runs hung (killed by their ${LOAD_TIMEOUT_S}s timeout): $(awk '$2 == 124 || $2 == 137' "$WORK/runs" | head -3 | tr '\n' ';')"
failed=$(awk '$2 != 0' "$WORK/runs" | wc -l)
[ "$failed" = 0 ] || fail "$failed of $runs load runs failed: $(awk '$2 != 0' "$WORK/runs" | head -3 | tr '\n' ' '); $(grep -v '^load:' "$WORK/load.log" | tail -3)"
n_load=$(acked_count)
[ "$n_load" = $((runs * 200)) ] || fail "$n_load of $((runs * 200)) rows acknowledged by runs that ended well"
n_own=$(wc -l <"$WORK/own.jsonl")
echo "  $runs runs, none hung, the longest $(sort -k3 -n "$WORK/runs" | tail -1 | cut -d' ' -f3) s; $n_load load writes and $n_own own writes acknowledged in $((SECONDS - t_start)) s"

# read_back ENDPOINT IDS OUT: `cirrus --json get` of every id of IDS at ENDPOINT.
read_back() {
  sed 's/^/--id /' "$2" | xargs -n 1000 "$BIN/cirrus" --endpoint "$1" --timeout 10000 --json get \
    >"$3" 2>"$3.err" || true
}
note "every acknowledged write reads back byte for byte (vector, attributes): through the coordinator, and from each replica of its group alone"
{ cat "$WORK"/acked_L*; sed -E 's/^\{"id":"([^"]*)".*/\1/' "$WORK/own.jsonl"; } | sort -u >"$WORK/ids"
[ "$(wc -l <"$WORK/ids")" = $((n_load + n_own)) ] || fail "an id was acknowledged twice"
split_groups "$WORK/ids"
# Polls 30 s (a read may find no current replica for a moment; a lost write stays lost).
t0=$SECONDS
until=$((SECONDS + 30))
while :; do
  read_back "$EP" "$WORK/ids" "$WORK/got.c"
  reads=(--got coordinator "$WORK/got.c" "$WORK/ids")
  for g in 0 1; do
    for r in 0 1; do
      e=SHARD_${g}_${r}
      read_back "${!e}" "$WORK/ids.g$g" "$WORK/got.$g.$r"
      reads+=(--got "replica $g/$r" "$WORK/got.$g.$r" "$WORK/ids.g$g")
    done
  done
  if out=$(python3 "$HERE/acked_items.py" --vectors "$WORK/v.fvecs" --attrs "$WORK/a.jsonl" \
    --loads "$WORK/loads" --items "$WORK/own.jsonl" "${reads[@]}"); then
    break
  fi
  [ $SECONDS -lt $until ] || fail "$(echo "$out" | head -20) $(cat "$WORK"/got.*.err | head -3)"
  sleep 0.5
done
echo "$out" | sed 's/^/  /'
echo "  in $((SECONDS - t0)) s"
all_alive
grep -E 'is down|repaired' "$WORK/cl/coordinator.log" | tail -6 | sed 's/^/  /'
echo "1 passed, 0 failed"
