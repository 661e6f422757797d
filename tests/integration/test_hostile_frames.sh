#!/usr/bin/env bash
# Hostile protobuf frames (tests/integration/hostile_frames.py) against a real shard server
# and a real coordinator (cirrus serve): a filter nested 200,000 deep (it overflowed the
# stack in protobuf-c's unpack and killed the node before common/pb_check.c), a field number
# 0, a group, a truncated length. Each must get an error reply, and both servers must still
# answer a search afterwards.
. "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import zmq' 2>/dev/null || { echo "SKIP: Debian's python3-zmq is not installed"; exit 77; }
PY="$(dirname "$0")/hostile_frames.py"

sp=$(free_port); cp=$(free_port)
start_bg "$WORK/shard.log" "$BIN/cirrus-shard" --dir "$WORK/s0" --bind "tcp://127.0.0.1:$sp" \
  --create --dim 4 --index Flat --log-level warn
SHARD=$LAST_PID
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/s1" --dim 4 --index Flat \
  --bind "tcp://127.0.0.1:$cp"
SERVE=$LAST_PID
wait_ready "tcp://127.0.0.1:$sp"
wait_ready "tcp://127.0.0.1:$cp"
for ep in "tcp://127.0.0.1:$sp" "tcp://127.0.0.1:$cp"; do
  note "hostile frames to $ep"
  /usr/bin/python3 "$PY" "$ep" || fail "a hostile frame to $ep was not answered with an error"
done
kill -0 "$SHARD" 2>/dev/null || fail "the shard died: $(tail -5 "$WORK/shard.log")"
kill -0 "$SERVE" 2>/dev/null || fail "cirrus serve died: $(tail -5 "$WORK/serve.log")"
"$BIN/cirrus" --endpoint "tcp://127.0.0.1:$cp" upsert --id a --vector 1,0,0,0 >/dev/null ||
  fail "cirrus serve does not take a write after the hostile frames"
"$BIN/cirrus" --endpoint "tcp://127.0.0.1:$cp" search --vector 1,0,0,0 -k 1 | grep -q '"a"\|a ' ||
  fail "cirrus serve does not answer a search after the hostile frames"
"$BIN/cirrus" --endpoint "tcp://127.0.0.1:$sp" --timeout 2000 health >/dev/null ||
  fail "the shard does not answer after the hostile frames"
echo "PASS"
