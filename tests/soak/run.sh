#!/usr/bin/env bash
# make soak: 60 minutes (SOAK_MINUTES) of mixed load on one `cirrus serve` with the demo
# model: vector searches at 4 clients, 5 % upserts, 1 % deletes, 5 % composed searches (the
# encoder's text tower and SEARLE head), a snapshot every 5 minutes; with the worker package
# and a broker present (`cirrus serve --worker-bind`), generation jobs too. The server's RSS,
# open fds and threads are sampled every 10 s by `cirrus-bench soak`, which judges the run
# (exit 1 on any error, RSS growth >= 5 % or fds/threads growing after warm-up) and plots the
# series to docs/soak.png (SOAK_PLOT). Not part of `make test`.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/$BUILD/bin"
MIN=${SOAK_MINUTES:-60}
PLOT=${SOAK_PLOT:-$ROOT/docs/soak.png}
WORK=$(mktemp -d /tmp/cirrus-soak-XXXXXX)
MODEL="$ROOT/$BUILD/models/demo"
[ -f "$MODEL/model.safetensors" ] || { echo "soak: $MODEL missing: build first"; exit 1; }
port=$(( 20000 + RANDOM % 10000 ))
ep="tcp://127.0.0.1:$port"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
"$BIN/cirrus" serve --data "$WORK/data" --dim 64 --index HNSW32 --model "$MODEL/model.safetensors" \
  --phi "$MODEL/phi.safetensors" --bind "$ep" >"$WORK/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do "$BIN/cirrus" --endpoint "$ep" --timeout 300 health >/dev/null 2>&1 && break; sleep 0.2; done
echo "soak: cirrus serve pid $SERVE on $ep for $MIN minutes; work dir $WORK"
"$BIN/cirrus-bench" soak --endpoint "$ep" --minutes "$MIN" --clients 4 --dim 64 --items 20000 \
  --write-pct 5 --delete-pct 1 --composed-pct 5 --snapshot-s 300 --sample-s 10 \
  --warmup-s "$(( MIN >= 20 ? 300 : MIN * 60 / 4 ))" --compare-s "$(( MIN >= 20 ? 300 : MIN * 60 / 4 ))" \
  --pid "$SERVE" --csv "$WORK/soak.csv" --plot "$PLOT"
rc=$?
cp "$WORK/soak.csv" "${PLOT%.png}.csv" 2>/dev/null || true
kill -0 $SERVE 2>/dev/null || { echo "soak: cirrus serve died"; tail -20 "$WORK/serve.log"; exit 1; }
exit $rc
