# Helpers for the fault tests (test_fault_*.sh): a local cluster of GROUPS x REPLICAS shards
# (deploy/local/cluster.sh), kill/stop/restart of any replica or the coordinator, and checks
# that every acknowledged write is on every replica of its group. Source after lib.sh.
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT

# fault_cluster_up GROUPS REPLICAS DIM [ENV=VALUE...]: starts the cluster, sets EP, NG, NR and
# the SHARD_g_r / *_PID variables of cluster.env. ENV (e.g. CIRRUS_COORDINATOR_HTTP=...)
# applies to the coordinator (and the shards) as cluster.sh starts them.
fault_cluster_up() {
  NG=$1 NR=$2
  local dim=$3
  shift 3
  EP=$(env "$@" bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" \
    --groups "$NG" --replicas "$NR" --dim "$dim" --index Flat)
  # shellcheck disable=SC1091
  . "$WORK/cl/cluster.env"
  COORD_ENV=("$@")
  local g r v
  PIDS+=("$COORDINATOR_PID")
  for g in $(seq 0 $((NG - 1))); do
    for r in $(seq 0 $((NR - 1))); do
      v=SHARD_${g}_${r}_PID
      PIDS+=("${!v}")
    done
  done
}

# pid_gone PID: kill -9 it and wait until it is gone (our child or not).
pid_gone() {
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do sleep 0.02; done
}
kill_replica() { # G R
  local v=SHARD_${1}_${2}_PID
  pid_gone "${!v}"
}
start_replica() { # G R: on its directory and endpoint; waits until it answers
  local e=SHARD_${1}_${2}
  "$BIN/cirrus-shard" --dir "$WORK/cl/shard-$1-$2" --bind "${!e}" --log-level warn \
    >>"$WORK/cl/shard-$1-$2.log" 2>&1 &
  PIDS+=($!)
  eval "SHARD_${1}_${2}_PID=$!"
  wait_ready "${!e}"
}
kill_coordinator() { pid_gone "$COORDINATOR_PID"; }
start_coordinator() { # with the environment it first had
  env "${COORD_ENV[@]}" "$BIN/cirrus-coordinator" --map "$WORK/cl/map.json" --log-level info \
    >>"$WORK/cl/coordinator.log" 2>&1 &
  COORDINATOR_PID=$!
  PIDS+=($!)
  wait_ready "$EP"
}

# all_alive: every process of the cluster still runs (none crashed behind the test's back).
all_alive() {
  local g r v
  kill -0 "$COORDINATOR_PID" 2>/dev/null || fail "the coordinator died: $(tail -3 "$WORK/cl/coordinator.log")"
  for g in $(seq 0 $((NG - 1))); do
    for r in $(seq 0 $((NR - 1))); do
      v=SHARD_${g}_${r}_PID
      kill -0 "${!v}" 2>/dev/null || fail "replica $g/$r died: $(tail -3 "$WORK/cl/shard-$g-$r.log")"
    done
  done
}

# split_groups ACKED: writes ACKED.g<N> (the ids placed on group N, by placement.py).
split_groups() {
  local g
  for g in $(seq 0 $((NG - 1))); do : >"$1.g$g"; done
  [ -s "$1" ] || return 0
  sort -u "$1" | python3 "$HERE/placement.py" fnv1a64-jump "$NG" |
    awk -v f="$1" '{ print $1 > (f ".g" $2) }'
}

# replicas_hold VECTORS PREFIX ACKED [SECONDS]: every id of ACKED reads back with exactly its
# vector (row i of VECTORS for id PREFIX<i>) from each replica of its group alone; polls up to
# SECONDS (repair may still be copying) and fails with the last answer.
replicas_hold() {
  local vec=$1 pre=$2 acked=$3 secs=${4:-30} g r e out want ok
  split_groups "$acked"
  for _ in $(seq 1 $((secs * 2))); do
    ok=1
    for g in $(seq 0 $((NG - 1))); do
      [ -s "$acked.g$g" ] || continue
      want="verified $(wc -l <"$acked.g$g") of $(wc -l <"$acked.g$g")"
      for r in $(seq 0 $((NR - 1))); do
        e=SHARD_${g}_${r}
        out=$("$BIN/cirrus" --endpoint "${!e}" --timeout 5000 verify --vectors "$vec" \
          --id-prefix "$pre" --acked "$acked.g$g" 2>&1 || true)
        [ "$out" = "$want" ] || { ok=0; break 2; }
      done
    done
    [ $ok = 1 ] && return 0
    sleep 0.5
  done
  fail "replica $g/$r after ${secs}s: $(echo "$out" | head -3) (want $want)"
}

# json_num FIELD: the number FIELD of the one JSON object on stdin.
json_num() { sed -nE "s/.*\"$1\": *([0-9.eE+-]+).*/\1/p" | head -1; }

# log_count PATTERN: lines of the coordinator's log (all its runs) holding PATTERN so far.
log_count() { grep -cF -- "$1" "$WORK/cl/coordinator.log" 2>/dev/null || true; }
# wait_log PATTERN COUNT [SECONDS]: until the coordinator's log holds COUNT lines with PATTERN.
wait_log() {
  local pat=$1 count=$2 until=$((SECONDS + ${3:-30}))
  while [ "$(log_count "$pat")" -lt "$count" ]; do
    [ $SECONDS -lt $until ] ||
      fail "coordinator log: no $count x '$pat' within ${3:-30}s: $(tail -3 "$WORK/cl/coordinator.log")"
    sleep 0.05
  done
}
# wait_all_live URL [SECONDS]: until the coordinator's /metrics at URL (it runs with
# CIRRUS_COORDINATOR_HTTP) shows every replica up and serving reads (cirrus_replica_up 1:
# answering, and proven to hold every acknowledged write).
wait_all_live() {
  local until=$((SECONDS + ${2:-30})) m
  while :; do
    m=$(curl -s -m 5 "$1/metrics" 2>/dev/null | grep '^cirrus_replica_up{' || true)
    [ -n "$m" ] && ! echo "$m" | grep -qv ' 1$' && return 0
    [ $SECONDS -lt $until ] ||
      fail "replicas not all live within ${2:-30}s: $(echo "${m:-no metrics}" | grep -v ' 1$' | tr '\n' ' ')"
    sleep 0.1
  done
}
