# Helpers for the replica tests over a local cluster of 1 group (deploy/local/cluster.sh):
# kill and restart replica N of group 0, and dump what a replica holds. Source it after lib.sh
# and cluster.env; set ALL to a file of every id ever written.

kill_shard() { # REPLICA: kill -9 and wait until it is gone
  local v=SHARD_0_${1}_PID
  kill -9 "${!v}" 2>/dev/null || true
  wait "${!v}" 2>/dev/null || true # reaps our own children; others are reaped by init
  while kill -0 "${!v}" 2>/dev/null; do sleep 0.02; done
}
start_shard() { # REPLICA: start it on its directory and endpoint, wait until it answers
  local e=SHARD_0_$1
  "$BIN/cirrus-shard" --dir "$WORK/cl/shard-0-$1" --bind "${!e}" --log-level warn \
    >>"$WORK/shard-$1.log" 2>&1 &
  PIDS+=($!)
  eval "SHARD_0_${1}_PID=$!"
  wait_ready "${!e}"
}
dump() { # ENDPOINT OUT: "id version" (or "id " when missing) per id of $ALL, sorted
  sed 's/^/--id /' "$ALL" | xargs -n 2000 "$BIN/cirrus" --endpoint "$1" --json get --no-vector \
    2>/dev/null | sed -E 's/^\{"id":"([^"]*)",("version":([0-9]+)|"missing":true).*/\1 \3/' |
    sort >"$2" || true
}
