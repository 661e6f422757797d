#!/usr/bin/env bash
# compose.sh — cirrus as separate containers of the `cirrus:latest` image (make image), with
# CURVE on every ZeroMQ socket: a coordinator (with its HTTP API), 2 shard groups x 2 replicas,
# an encoder (the demo model), a job broker (a second cirrus-coordinator with --jobs-dir and
# --worker-bind, named "jobs" in the first one's cluster map) and a `composite` diffusion
# worker (python3 -m cirrus_worker), each its own container. No private container network can
# be made in this sandbox, so every container uses host networking on its own loopback port:
# BASE coordinator, +1..+4 shards, +5 encoder, +6 HTTP, +7 broker, +8 broker's workers.
#
#   deploy/compose.sh up   DIR    keys, cluster map, containers; writes DIR/compose.env
#   deploy/compose.sh down DIR    removes the containers
#   deploy/compose.sh test DIR    up; ingest; search; kill -9 a shard container; the answers
#                                 must stay complete and the same; then a write still lands
#                                 (write_quorum 1: with 0, all live replicas, the first write
#                                 after a replica dies waits out the backend timeout); a try-on
#                                 job through the coordinator, run by the worker container
#                                 (the result PNG checked); down (make test-deploy)
#   KEEP_IMAGES=1 deploy/compose.sh up DIR: the shards run with --keep-images
set -euo pipefail
cmd=${1:?usage: compose.sh up|down|test DIR}
DIR=${2:?usage: compose.sh up|down|test DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd) # podman -v takes an absolute path (a relative one names a volume)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CIRRUS_BIN:-$ROOT/build/bin}
IMAGE=${CIRRUS_IMAGE:-cirrus:latest}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/build-image/containers.conf}
P=(podman --runtime /usr/sbin/runc)
BASE=${COMPOSE_PORT:-$(( 21000 + RANDOM % 8000 ))}
DIM=64
MODEL=/usr/local/share/cirrus/models/demo
NAME=cirrus-compose

say() { echo "== $*"; }
die() { echo "compose: $*" >&2; exit 1; }

keys() { # the pairs, the allow directories and the cluster map
  local k=$DIR/keys n
  rm -rf "$k" "$DIR"/s[01]r[01] # a fresh cluster each time
  mkdir -p "$k/allow-backend" "$k/allow-coord" "$k/allow-broker"
  for n in coord encoder app broker worker s0r0 s0r1 s1r0 s1r1; do
    "$BIN/cirrus" keygen --out "$k/$n" >/dev/null
  done
  cp "$k/coord.pub" "$k/allow-backend/"  # shards and the encoder admit the coordinator
  cp "$k/app.pub" "$k/allow-coord/"      # the coordinator admits the application
  cp "$k/coord.pub" "$k/worker.pub" "$k/allow-broker/" # the broker: job ops and the worker
  pub() { grep -v '^#' "$k/$1.pub" | head -1; }
  cat >"$k/map.json" <<EOF
{
  "bind": "tcp://127.0.0.1:$BASE",
  "groups": [
    [{"endpoint": "tcp://127.0.0.1:$((BASE + 1))", "curve_pub": "$(pub s0r0)"},
     {"endpoint": "tcp://127.0.0.1:$((BASE + 2))", "curve_pub": "$(pub s0r1)"}],
    [{"endpoint": "tcp://127.0.0.1:$((BASE + 3))", "curve_pub": "$(pub s1r0)"},
     {"endpoint": "tcp://127.0.0.1:$((BASE + 4))", "curve_pub": "$(pub s1r1)"}]
  ],
  "encoders": [{"endpoint": "tcp://127.0.0.1:$((BASE + 5))", "curve_pub": "$(pub encoder)"}],
  "jobs": {"endpoint": "tcp://127.0.0.1:$((BASE + 7))", "curve_pub": "$(pub broker)"},
  "metric": "ip",
  "write_quorum": 1,
  "placement": "fnv1a64-jump"
}
EOF
  # The broker is a coordinator for its job store only: the one group its map must name is
  # never started (job ops do not touch shards).
  cat >"$k/broker.json" <<EOF
{
  "bind": "tcp://127.0.0.1:$((BASE + 7))",
  "groups": [[{"endpoint": "tcp://127.0.0.1:$((BASE + 9))", "curve_pub": "$(pub s0r0)"}]]
}
EOF
}

run() { # NAME ENTRYPOINT ARGS...: one detached container
  local name=$1 entry=$2
  shift 2
  "${P[@]}" run -d --name "$NAME-$name" --network host --entrypoint "$entry" \
    -v "$DIR:/w:Z" "$IMAGE" "$@" >/dev/null
}

up() {
  "${P[@]}" image exists "$IMAGE" || die "no image $IMAGE: run make image"
  mkdir -p "$DIR"
  keys
  local i=1 g r
  for g in 0 1; do
    for r in 0 1; do
      mkdir -p "$DIR/s${g}r$r"
      run "s${g}r$r" cirrus-shard --dir "/w/s${g}r$r" --bind "tcp://127.0.0.1:$((BASE + i))" \
        --create --dim $DIM --index HNSW32 --metric ip ${KEEP_IMAGES:+--keep-images} \
        --curve-secret "/w/keys/s${g}r$r.key" --curve-allow /w/keys/allow-backend
      i=$((i + 1))
    done
  done
  run encoder cirrus-encoder --model "$MODEL/model.safetensors" --phi "$MODEL/phi.safetensors" \
    --bind "tcp://127.0.0.1:$((BASE + 5))" --threads 1 \
    --curve-secret /w/keys/encoder.key --curve-allow /w/keys/allow-backend
  rm -rf "$DIR/jobs"
  mkdir -p "$DIR/jobs"
  run broker cirrus-coordinator --map /w/keys/broker.json --jobs-dir /w/jobs \
    --worker-bind "tcp://127.0.0.1:$((BASE + 8))" \
    --curve-secret /w/keys/broker.key --curve-allow /w/keys/allow-broker
  run worker cirrus-worker --connect "tcp://127.0.0.1:$((BASE + 8))" --backend composite \
    --curve-secret /w/keys/worker.key --curve-server-pub /w/keys/broker.pub
  run coordinator cirrus-coordinator --map /w/keys/map.json --http "127.0.0.1:$((BASE + 6))" \
    --curve-secret /w/keys/coord.key --curve-allow /w/keys/allow-coord
  cat >"$DIR/compose.env" <<EOF
COORDINATOR=tcp://127.0.0.1:$BASE
HTTP=http://127.0.0.1:$((BASE + 6))
CURVE_SECRET=$DIR/keys/app.key
CURVE_SERVER_PUB=$DIR/keys/coord.pub
EOF
  say "up: coordinator tcp://127.0.0.1:$BASE (HTTP :$((BASE + 6))), 4 shards, 1 encoder," \
    "broker :$((BASE + 7)) (workers :$((BASE + 8))), 1 composite worker"
}

down() {
  local c
  for c in $("${P[@]}" ps -a --format '{{.Names}}' | grep "^$NAME-" || true); do
    "${P[@]}" rm -f "$c" >/dev/null 2>&1 || true
  done
}

client() {
  "$BIN/cirrus" --endpoint "tcp://127.0.0.1:$BASE" --timeout 10000 \
    --curve-secret "$DIR/keys/app.key" --curve-server-pub "$DIR/keys/coord.pub" "$@"
}

wait_ready() {
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$((BASE + 6))/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  "${P[@]}" logs "$NAME-coordinator" 2>&1 | tail -5
  die "the coordinator did not become ready"
}

# Top-10 ids of each query vector, one line per query (the answer's "partial" must be false).
answers() {
  local q out
  while read -r q; do
    out=$(client --json search --vector "$q" -k 10) || die "search failed: $out"
    grep -q '"partial":false' <<<"$out" || die "a partial answer: $out"
    grep -o '"id":"[^"]*"' <<<"$out" | tr '\n' ' '
    echo
  done <"$DIR/queries.txt"
}

test_deploy() {
  trap down EXIT
  down
  up
  wait_ready
  say "ingest 2000 vectors through the coordinator (CURVE)"
  "$BIN/cirrus-bench" gen --out "$DIR/base.fvecs" --query-out "$DIR/q.fvecs" --n 2000 \
    --dim $DIM --queries 20 --seed 3 >/dev/null
  rm -f "$DIR/acked"
  client load --vectors "$DIR/base.fvecs" --id-prefix sku- --acked "$DIR/acked" >/dev/null
  [ "$(wc -l <"$DIR/acked")" -eq 2000 ] || die "only $(wc -l <"$DIR/acked") of 2000 acknowledged"
  /usr/bin/python3 - "$DIR/q.fvecs" >"$DIR/queries.txt" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
d = struct.unpack("<i", b[:4])[0]
for i in range(0, len(b), 4 + 4 * d):
    print(",".join("%.6f" % x for x in struct.unpack("<%df" % d, b[i + 4:i + 4 + 4 * d])))
PY
  answers >"$DIR/before.txt"
  say "a composed query (the encoder container: text tower + SEARLE head, over CURVE)"
  client --json search --ref-id sku-7 --caption "the same but in red" -k 5 | grep -q '"partial":false' ||
    die "the composed query failed"
  say "a client without the coordinator's key gets nothing"
  if "$BIN/cirrus" --endpoint "tcp://127.0.0.1:$BASE" --timeout 1500 health >/dev/null 2>&1; then
    die "a plaintext client was answered"
  fi
  say "kill -9 shard container s0r0; answers must stay complete and the same"
  "${P[@]}" kill -s KILL "$NAME-s0r0" >/dev/null
  answers >"$DIR/after.txt"
  cmp -s "$DIR/before.txt" "$DIR/after.txt" || { diff "$DIR/before.txt" "$DIR/after.txt" | head; die "answers changed"; }
  client upsert --id sku-new --vector "$(head -1 "$DIR/queries.txt")" >/dev/null ||
    die "a write with one replica down failed"
  client --json search --vector "$(head -1 "$DIR/queries.txt")" -k 1 | grep -q '"sku-new"' ||
    die "the new item is not found"
  say "a try-on job through the coordinator, the broker container and the worker container (CURVE)"
  /usr/bin/python3 - "$DIR" <<'PY' || die "cannot make the job's images (python3-pil)"
import sys
from PIL import Image
Image.new("RGB", (96, 128), (200, 120, 90)).save(sys.argv[1] + "/person.png")
Image.new("RGB", (32, 32), (10, 40, 200)).save(sys.argv[1] + "/garment.png")
PY
  rm -f "$DIR/tryon.png"
  local ok=0 out=""
  for _ in $(seq 1 50); do # until the coordinator's pings see the broker up
    if out=$(client generate --person "$DIR/person.png" --garment "$DIR/garment.png" \
        --category upper_body --wait --wait-timeout 30 -o "$DIR/tryon.png" 2>&1); then
      ok=1
      break
    fi
    sleep 0.3
  done
  [ $ok = 1 ] || { "${P[@]}" logs "$NAME-worker" 2>&1 | tail -5; die "no try-on job succeeded: $out"; }
  /usr/bin/python3 - "$DIR/tryon.png" <<'PY' || die "the try-on result is not the expected PNG"
import sys
from PIL import Image
im = Image.open(sys.argv[1])
assert im.format == "PNG" and im.size == (384, 512), (im.format, im.size)
colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
# the person resized to the output, the garment pasted into the upper-body box
assert (200, 120, 90) in colours and (10, 40, 200) in colours, sorted(colours)[:8]
print("compose: try-on result %dx%d PNG with the person's and the garment's colours" % im.size)
PY
  "${P[@]}" logs "$NAME-worker" 2>&1 | grep -q "status=ok" || die "the worker container did not log the job"
  say "test-deploy passed: 2000 items, 20 queries the same before and after a shard container was killed; a try-on job done by the worker container"
}

case $cmd in
  up) up ;;
  down) down ;;
  test) test_deploy ;;
  *) die "unknown command $cmd (up, down, test)" ;;
esac
