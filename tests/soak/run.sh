#!/usr/bin/env bash
# make soak: 60 minutes (SOAK_MINUTES) of mixed load on one `cirrus serve` with the demo
# model: vector searches at 4 clients, 5 % upserts, 1 % deletes, 5 % composed searches (the
# encoder's text tower and SEARLE head), a snapshot every 5 minutes, and a try-on job every
# SOAK_JOB_S (5) seconds through the server's job broker (--worker-bind) to a Python
# `composite` worker (each job waited for; one that does not succeed is an error; skipped with
# a note when /usr/bin/python3 lacks zmq, protobuf or PIL). The server's RSS (anonymous and
# file-backed apart), open fds and threads, and the worker's, are sampled every 10 s by
# `cirrus-bench soak`, which judges the run (exit 1 on any error, RssAnon growth >= 5 % or
# fds/threads growing after warm-up) and plots the series to docs/soak.png (SOAK_PLOT).
# Not part of `make test`.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/$BUILD/bin"
MIN=${SOAK_MINUTES:-60}
JOB_S=${SOAK_JOB_S:-5}
PLOT=${SOAK_PLOT:-$ROOT/docs/soak.png}
WORK=$(mktemp -d /tmp/cirrus-soak-XXXXXX)
MODEL="$ROOT/$BUILD/models/demo"
PY=/usr/bin/python3
[ -f "$MODEL/model.safetensors" ] || { echo "soak: $MODEL missing: build first"; exit 1; }
port=$(( 20000 + RANDOM % 10000 ))
ep="tcp://127.0.0.1:$port"
wep="tcp://127.0.0.1:$(( port + 1 ))"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
jobs_ok=0
if [ "$JOB_S" -gt 0 ] && [ -x "$BIN/cirrus-worker" ] && $PY -c "import zmq, google.protobuf, PIL" 2>/dev/null; then
  jobs_ok=1
else
  echo "soak: no generation jobs (SOAK_JOB_S=0, no $BIN/cirrus-worker, or python3 lacks zmq/protobuf/PIL)"
fi
# A result is kept --job-result-ttl (120 s) so that the broker's store reaches its steady
# state within the warm-up: with the default hour, every job of the run would still be held
# at the end and the records would grow by design, not by a leak.
job_opts=()
[ "$jobs_ok" = 1 ] && job_opts=(--worker-bind "$wep" --job-result-ttl 120)
"$BIN/cirrus" serve --data "$WORK/data" --dim 64 --index HNSW32 --model "$MODEL/model.safetensors" \
  --phi "$MODEL/phi.safetensors" --bind "$ep" "${job_opts[@]}" >"$WORK/serve.log" 2>&1 &
SERVE=$!
WORKER=""
trap 'kill $SERVE 2>/dev/null || true; [ -n "$WORKER" ] && kill $WORKER 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do "$BIN/cirrus" --endpoint "$ep" --timeout 300 health >/dev/null 2>&1 && break; sleep 0.2; done
pids=(--pid "$SERVE")
bench_jobs=()
if [ "$jobs_ok" = 1 ]; then
  "$BIN/cirrus-worker" --connect "$wep" --backend composite --worker-id soak-composite \
    --step-ms 20 >"$WORK/worker.log" 2>&1 &
  WORKER=$!
  $PY -c "from PIL import Image; Image.new('RGB',(192,256),(200,120,90)).save('$WORK/person.png'); Image.new('RGB',(64,64),(10,40,200)).save('$WORK/garment.png')"
  pids+=(--pid "$WORKER")
  bench_jobs=(--job-s "$JOB_S" --job-person "$WORK/person.png" --job-garment "$WORK/garment.png" --job-steps 8)
fi
echo "soak: cirrus serve pid $SERVE on $ep${WORKER:+, composite worker pid $WORKER on $wep} for $MIN minutes; work dir $WORK"
echo "soak: MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-default}"
warm=$(( MIN >= 20 ? 300 : MIN * 60 / 4 ))
rc=0
"$BIN/cirrus-bench" soak --endpoint "$ep" --minutes "$MIN" --clients 4 --dim 64 --items 20000 \
  --write-pct 5 --delete-pct 1 --composed-pct 5 --snapshot-s 300 --sample-s 10 \
  --warmup-s "$warm" --compare-s "$warm" "${bench_jobs[@]}" \
  "${pids[@]}" --csv "$WORK/soak.csv" --plot "$PLOT" || rc=$?
cp "$WORK/soak.csv" "${PLOT%.png}.csv" 2>/dev/null || true
kill -0 $SERVE 2>/dev/null || { echo "soak: cirrus serve died"; tail -20 "$WORK/serve.log"; exit 1; }
[ -z "$WORKER" ] || kill -0 $WORKER 2>/dev/null || { echo "soak: the worker died"; tail -20 "$WORK/worker.log"; exit 1; }
exit $rc
