#!/usr/bin/env bash
# Generation jobs with CURVE end to end, the layout of deploy/compose.sh on host processes: a
# broker (cirrus-coordinator --jobs-dir --worker-bind with --curve-secret/--curve-allow) whose
# worker endpoint admits only the workers' keys of its allow directory, a second coordinator
# (CURVE) that names the broker in its map as "jobs": {"endpoint", "curve_pub"}, and Python
# composite workers with --curve-secret/--curve-server-pub. A worker with an unlisted key or
# none gets no job; the listed one runs it.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! $PY -c "import zmq, google.protobuf, PIL; assert zmq.has('curve')" 2>/dev/null; then
  echo "skip: /usr/bin/python3 lacks zmq (with CURVE), protobuf or PIL"
  exit 77
fi
[ -x "$BIN/cirrus-worker" ] || { echo "skip: no $BIN/cirrus-worker (build cirrus_worker_pb)"; exit 77; }
PA=$(free_port); PB=$(free_port); WP=$(free_port); SP=$(free_port)
K=$WORK/keys
mkdir -p "$K/allow-broker" "$K/allow-coord"
for n in broker coord app worker rogue; do "$BIN/cirrus" keygen --out "$K/$n" >/dev/null; done
cp "$K/coord.pub" "$K/worker.pub" "$K/allow-broker/"
cp "$K/app.pub" "$K/allow-coord/"
pub() { grep -v '^#' "$K/$1.pub" | head -1; }
$PY -c "from PIL import Image; Image.new('RGB',(96,128),(200,120,90)).save('$WORK/p.png'); Image.new('RGB',(32,32),(10,40,200)).save('$WORK/g.png')"
# the shard group is never started: job ops do not need it
echo "{\"bind\":\"tcp://127.0.0.1:$PA\",\"groups\":[[{\"endpoint\":\"tcp://127.0.0.1:$SP\",\"curve_pub\":\"$(pub rogue)\"}]]}" >"$WORK/a.json"
echo "{\"bind\":\"tcp://127.0.0.1:$PB\",\"groups\":[[{\"endpoint\":\"tcp://127.0.0.1:$SP\",\"curve_pub\":\"$(pub rogue)\"}]],
  \"jobs\":{\"endpoint\":\"tcp://127.0.0.1:$PA\",\"curve_pub\":\"$(pub broker)\"}}" >"$WORK/b.json"
W=("$BIN/cirrus-worker" --connect "tcp://127.0.0.1:$WP" --backend composite --heartbeat-ms 250)

note "the worker's CURVE flags: bad use is refused before it connects"
expect_error "go together" "${W[@]}" --curve-secret "$K/worker.key"
expect_error "no Z85 key" "${W[@]}" --curve-secret "$WORK/p.png" --curve-server-pub "$K/broker.pub"
expect_error "No such file" "${W[@]}" --curve-secret "$K/none.key" --curve-server-pub "$K/broker.pub"

note "a CURVE map entry for the broker without curve_pub is refused by a CURVE coordinator"
echo "{\"bind\":\"tcp://127.0.0.1:$PB\",\"groups\":[[{\"endpoint\":\"tcp://127.0.0.1:$SP\",\"curve_pub\":\"$(pub rogue)\"}]],\"jobs\":\"tcp://127.0.0.1:$PA\"}" >"$WORK/nopub.json"
expect_error "no curve_pub" "$BIN/cirrus-coordinator" --map "$WORK/nopub.json" \
  --curve-secret "$K/coord.key" --curve-allow "$K/allow-coord"

start_bg "$WORK/a.log" "$BIN/cirrus-coordinator" --map "$WORK/a.json" --jobs-dir "$WORK/jobs" \
  --worker-bind "tcp://127.0.0.1:$WP" --job-heartbeat-ms 250 \
  --curve-secret "$K/broker.key" --curve-allow "$K/allow-broker"
start_bg "$WORK/b.log" "$BIN/cirrus-coordinator" --map "$WORK/b.json" \
  --curve-secret "$K/coord.key" --curve-allow "$K/allow-coord"
note "a worker with an unlisted key and a plaintext worker connect first"
start_bg "$WORK/rogue.log" "${W[@]}" --worker-id rogue --curve-secret "$K/rogue.key" \
  --curve-server-pub "$K/broker.pub"
start_bg "$WORK/plain.log" "${W[@]}" --worker-id plain
C=("$BIN/cirrus" --endpoint "tcp://127.0.0.1:$PB" --timeout 5000 --curve-secret "$K/app.key"
   --curve-server-pub "$K/coord.pub")
id=""
for _ in $(seq 1 50); do # until the coordinator's pings see the broker up
  id=$("${C[@]}" generate --person "$WORK/p.png" --garment "$WORK/g.png" --category upper_body \
       2>/dev/null) && break
  id=""
  sleep 0.2
done
[ -n "$id" ] || fail "no job was accepted through the CURVE coordinator: $(tail -3 "$WORK/b.log")"
# both workers are up (python starts slowly on a loaded machine) and the broker refused the key
for _ in $(seq 1 200); do
  grep -q "refused a CURVE client" "$WORK/a.log" && grep -q "connected to" "$WORK/plain.log" && break
  sleep 0.1
done
grep -q "refused a CURVE client" "$WORK/a.log" ||
  fail "the broker did not refuse the unlisted worker key: $(tail -3 "$WORK/a.log")"
grep -q "connected to" "$WORK/plain.log" || fail "the plaintext worker did not start: $(cat "$WORK/plain.log")"
sleep 2 # a dozen worker heartbeats: a worker the broker accepted would have the job by now
"${C[@]}" job "$id" | grep -q "state *queued" ||
  fail "a worker without a listed key got the job: $("${C[@]}" job "$id")"
if grep -q "worker .* ready" "$WORK/a.log"; then fail "the broker took a worker it must not"; fi

note "the listed worker runs the job"
start_bg "$WORK/w.log" "${W[@]}" --worker-id good --curve-secret "$K/worker.key" \
  --curve-server-pub "$(pub broker)"
"${C[@]}" job "$id" --wait --wait-timeout 30 -o "$WORK/out.png" >/dev/null ||
  fail "the job did not succeed: $("${C[@]}" job "$id"; tail -3 "$WORK/w.log")"
$PY -c "
from PIL import Image
im = Image.open('$WORK/out.png')
assert im.format == 'PNG' and im.size == (384, 512), (im.format, im.size)
c = {x for _, x in im.convert('RGB').getcolors(1 << 20)}
assert (200, 120, 90) in c and (10, 40, 200) in c, 'not a composite of the inputs'
" || fail "the result is not the try-on PNG"
grep -q "worker good ready" "$WORK/a.log" || fail "the broker log names no worker good"
if grep -Eq "worker (rogue|plain)" "$WORK/a.log"; then fail "an unadmitted worker was seen"; fi

note "cirrus serve --worker-bind with CURVE: its workers are checked the same way"
SV=$(free_port); SW=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/sv" --dim 4 --index Flat \
  --bind "tcp://127.0.0.1:$SV" --worker-bind "tcp://127.0.0.1:$SW" \
  --curve-secret "$K/broker.key" --curve-allow "$K/allow-broker"
start_bg "$WORK/sw.log" "$BIN/cirrus-worker" --connect "tcp://127.0.0.1:$SW" --backend composite \
  --curve-secret "$K/worker.key" --curve-server-pub "$K/broker.pub"
S=("$BIN/cirrus" --endpoint "tcp://127.0.0.1:$SV" --timeout 5000 --curve-secret "$K/coord.key"
   --curve-server-pub "$K/broker.pub")
ok=0
for _ in $(seq 1 50); do
  if "${S[@]}" generate --person "$WORK/p.png" --garment "$WORK/g.png" --category upper_body \
      --wait --wait-timeout 20 -o "$WORK/sv.png" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ $ok = 1 ] || fail "no job succeeded on cirrus serve with CURVE: $(tail -3 "$WORK/serve.log")"
head -c 8 "$WORK/sv.png" | od -An -tx1 | grep -q "89 50 4e 47" || fail "no PNG from cirrus serve"
echo ok
