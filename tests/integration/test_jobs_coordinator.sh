#!/usr/bin/env bash
# Generation jobs through cirrus-coordinator: one runs the broker (--jobs-dir, --worker-bind);
# a second, without one, forwards job ops to the "jobs" endpoint of its cluster map (the first
# coordinator). A coordinator with neither answers UNSUPPORTED. Python composite worker.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! $PY -c "import zmq, google.protobuf, PIL" 2>/dev/null; then
  echo "skip: /usr/bin/python3 lacks zmq, protobuf or PIL (python3-zmq python3-protobuf python3-pil)"
  exit 77
fi
[ -x "$BIN/cirrus-worker" ] || { echo "skip: no $BIN/cirrus-worker (build cirrus_worker_pb)"; exit 77; }
PA=$(free_port); PB=$(free_port); PC=$(free_port); WP=$(free_port); SP=$(free_port)
$PY -c "from PIL import Image; Image.new('RGB',(96,128),(200,120,90)).save('$WORK/p.png'); Image.new('RGB',(32,32),(10,40,200)).save('$WORK/g.png')"
# the shard group is never started: job ops do not need it
echo "{\"bind\":\"tcp://127.0.0.1:$PA\",\"groups\":[[\"tcp://127.0.0.1:$SP\"]]}" >"$WORK/a.json"
echo "{\"bind\":\"tcp://127.0.0.1:$PB\",\"groups\":[[\"tcp://127.0.0.1:$SP\"]],\"jobs\":\"tcp://127.0.0.1:$PA\"}" >"$WORK/b.json"
echo "{\"bind\":\"tcp://127.0.0.1:$PC\",\"groups\":[[\"tcp://127.0.0.1:$SP\"]]}" >"$WORK/c.json"
start_bg "$WORK/a.log" "$BIN/cirrus-coordinator" --map "$WORK/a.json" --jobs-dir "$WORK/jobs" \
  --worker-bind "tcp://127.0.0.1:$WP"
start_bg "$WORK/b.log" "$BIN/cirrus-coordinator" --map "$WORK/b.json"
start_bg "$WORK/c.log" "$BIN/cirrus-coordinator" --map "$WORK/c.json"
start_bg "$WORK/w.log" "$BIN/cirrus-worker" --connect "tcp://127.0.0.1:$WP" --backend composite
gen() { "$BIN/cirrus" --endpoint "$1" generate --person "$WORK/p.png" --garment "$WORK/g.png" \
          --category upper_body "${@:2}"; }
for ep in tcp://127.0.0.1:$PA tcp://127.0.0.1:$PB; do
  note "generate through $ep"
  ok=0
  for _ in $(seq 1 50); do # until the coordinator sees the broker up (its pings)
    if gen "$ep" --wait --wait-timeout 20 -o "$WORK/out.png" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] || fail "no job succeeded through $ep: $(gen "$ep" 2>&1)"
  head -c 8 "$WORK/out.png" | od -An -tx1 | grep -q "89 50 4e 47" || fail "no PNG"
  rm -f "$WORK/out.png"
done
"$BIN/cirrus" --endpoint "tcp://127.0.0.1:$PB" jobs | grep -c succeeded | grep -qx 2 ||
  fail "cirrus jobs through the forwarding coordinator: $("$BIN/cirrus" --endpoint "tcp://127.0.0.1:$PB" jobs)"
expect_error "job broker|unsupported" gen "tcp://127.0.0.1:$PC"
echo ok
