# Helpers of the job broker tests (test_jobs.sh, test_jobs_faults.sh): a `cirrus serve
# --worker-bind` broker and Python composite workers (worker/). Source after lib.sh; skips
# (exit 77) without the Python packages or the worker launcher. Sets PY, EP, WEP, HPORT, C.
PY=/usr/bin/python3
if ! $PY -c "import zmq, google.protobuf, PIL" 2>/dev/null; then
  echo "skip: /usr/bin/python3 lacks zmq, protobuf or PIL (python3-zmq python3-protobuf python3-pil)"
  exit 77
fi
[ -x "$BIN/cirrus-worker" ] || { echo "skip: no $BIN/cirrus-worker (build cirrus_worker_pb)"; exit 77; }

PORT=$(free_port); WPORT=$(free_port); HPORT=$(free_port)
EP=tcp://127.0.0.1:$PORT; WEP=tcp://127.0.0.1:$WPORT
HB_MS=${JOBS_TEST_HB_MS:-200} # the broker's and the workers' heartbeat interval (ms)
C() { "$BIN/cirrus" --endpoint "$EP" "$@"; }
$PY -c "from PIL import Image; Image.new('RGB',(96,128),(200,120,90)).save('$WORK/p.png'); Image.new('RGB',(32,32),(10,40,200)).save('$WORK/g.png')"
submit() { C generate --person "$WORK/p.png" --garment "$WORK/g.png" --category upper_body "$@"; }
field() { C job "$1" --json | $PY -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
wait_state() { # ID STATE SECONDS (STATE may be a|b)
  for _ in $(seq 1 $(($3 * 20))); do
    C job "$1" --json | grep -Eq "\"state\":\"($2)\"" && return 0
    sleep 0.05
  done
  fail "job $1 is $(field "$1" state), not $2, after $3 s"
}
# serve N [FLAGS...]: the broker (log serveN.log, data under ${DATA:-$WORK/data}), in SERVE_PID.
serve() {
  local n=$1; shift
  start_bg "$WORK/serve$n.log" "$BIN/cirrus" serve --data "${DATA:-$WORK/data}" --dim 8 \
    --bind "$EP" --worker-bind "$WEP" --job-heartbeat-ms "$HB_MS" --http "127.0.0.1:$HPORT" "$@"
  SERVE_PID=$LAST_PID
  wait_ready "$EP"
}
worker() { # NAME ARGS...: a composite worker, its pid in LAST_PID, its log NAME.log
  local name=$1; shift
  start_bg "$WORK/$name.log" "$BIN/cirrus-worker" --connect "$WEP" --backend composite \
    --heartbeat-ms "$HB_MS" --worker-id "$name" --reconnect-min-ms 100 --reconnect-max-ms 400 "$@"
}
