#!/usr/bin/env bash
# Local cluster on loopback: 1 coordinator, GROUPS shard groups x REPLICAS replicas and (with
# --model) one encoder, each a separate process. For tests, benchmarks and trying things out.
#
#   deploy/local/cluster.sh up   --dir DIR [--bin BUILD/bin] [--groups 2] [--replicas 2]
#                                [--dim 512] [--index HNSW32] [--metric ip] [--model PATH]
#                                [--phi FILE] [--combiner FILE] [--port 7700]
#   deploy/local/cluster.sh down --dir DIR
#
# `up` prints the coordinator endpoint and writes DIR/cluster.env (COORDINATOR=..., SHARD_g_r=
# endpoints and pids) for scripts; `down` stops everything it started (SIGTERM, then SIGKILL).
set -euo pipefail

cmd=${1:-}; shift || true
DIR=""; BIN="$(cd "$(dirname "$0")/../.." && pwd)/build/bin"
GROUPS_N=2; REPLICAS=2; DIM=512; INDEX=HNSW32; METRIC=ip; MODEL=""; PHI=""; COMB=""; PORT=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --groups) GROUPS_N=$2; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --dim) DIM=$2; shift 2 ;;
    --index) INDEX=$2; shift 2 ;;
    --metric) METRIC=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --phi) PHI=$2; shift 2 ;;
    --combiner) COMB=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$DIR" ] || { echo "cluster.sh: --dir is required" >&2; exit 2; }

# Ports come from 10000-31999, below the kernel's ephemeral range (32768+): a port picked
# there could be taken by some client connection's source port before the server binds it.
free_port() {
  local p
  for _ in $(seq 1 500); do
    p=$((10000 + RANDOM % 22000))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
  done
  echo "cluster.sh: no free port" >&2; exit 1
}

# wait_ready ENDPOINT LOG: polls health for up to 30 s; on failure shows the process's log.
wait_ready() {
  local until=$((SECONDS + 30))
  while [ $SECONDS -lt $until ]; do
    "$BIN/cirrus" --endpoint "$1" --timeout 300 health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "cluster.sh: $1 did not become ready; its log ($2):" >&2
  tail -5 "$2" >&2 || true
  stop_all
  exit 1
}

# Stops every process listed in DIR/cluster.env: SIGTERM, then SIGKILL after 5 s.
stop_all() {
  [ -f "$DIR/cluster.env" ] || return 0
  local pids
  pids=$(grep '_PID=' "$DIR/cluster.env" | cut -d= -f2)
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  kill -9 $pids 2>/dev/null || true
}

case $cmd in
up)
  mkdir -p "$DIR"
  # New clusters place items by standard FNV-1a (coordinator/placement.h); a directory whose
  # map predates placement names keeps the legacy function, so its items are still found.
  placement=fnv1a64-jump
  if [ -f "$DIR/map.json" ] && ! grep -q '"placement"' "$DIR/map.json"; then
    placement=legacy-fnv-jump
  elif [ -f "$DIR/map.json" ]; then
    placement=$(sed -n 's/.*"placement": *"\([a-z0-9-]*\)".*/\1/p' "$DIR/map.json")
  fi
  env="$DIR/cluster.env"; : >"$env"
  groups_json=""
  for g in $(seq 0 $((GROUPS_N - 1))); do
    reps=""
    for r in $(seq 0 $((REPLICAS - 1))); do
      p=$(free_port); ep="tcp://127.0.0.1:$p"
      "$BIN/cirrus-shard" --dir "$DIR/shard-$g-$r" --bind "$ep" --create --dim "$DIM" \
        --metric "$METRIC" --index "$INDEX" --log-level warn >"$DIR/shard-$g-$r.log" 2>&1 &
      echo "SHARD_${g}_${r}=$ep" >>"$env"; echo "SHARD_${g}_${r}_PID=$!" >>"$env"
      reps="$reps${reps:+, }\"$ep\""
    done
    groups_json="$groups_json${groups_json:+, }[$reps]"
  done
  enc_json=""
  if [ -n "$MODEL" ]; then
    p=$(free_port); ep="tcp://127.0.0.1:$p"
    extra=()
    [ -n "$PHI" ] && extra+=(--phi "$PHI")
    [ -n "$COMB" ] && extra+=(--combiner "$COMB")
    "$BIN/cirrus-encoder" --model "$MODEL" --bind "$ep" "${extra[@]}" \
      >"$DIR/encoder.log" 2>&1 &
    echo "ENCODER=$ep" >>"$env"; echo "ENCODER_PID=$!" >>"$env"
    enc_json="\"$ep\""
  fi
  cport=${PORT:-$(free_port)}; cep="tcp://127.0.0.1:$cport"
  cat >"$DIR/map.json" <<JSON
{"bind": "$cep", "groups": [$groups_json], "encoders": [$enc_json], "metric": "$METRIC",
 "placement": "$placement"}
JSON
  . "$env"
  for g in $(seq 0 $((GROUPS_N - 1))); do
    for r in $(seq 0 $((REPLICAS - 1))); do
      v=SHARD_${g}_${r}; wait_ready "${!v}" "$DIR/shard-$g-$r.log"
    done
  done
  [ -n "$MODEL" ] && wait_ready "$ENCODER" "$DIR/encoder.log"
  "$BIN/cirrus-coordinator" --map "$DIR/map.json" --log-level info >"$DIR/coordinator.log" 2>&1 &
  echo "COORDINATOR=$cep" >>"$env"; echo "COORDINATOR_PID=$!" >>"$env"
  wait_ready "$cep" "$DIR/coordinator.log"
  echo "$cep"
  ;;
down)
  stop_all
  ;;
*) sed -n '2,12p' "$0"; exit 2 ;;
esac
