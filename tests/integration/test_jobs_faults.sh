#!/usr/bin/env bash
# The job broker's faults and bad input (issue #12), real processes: cirrus serve --worker-bind
# (heartbeat 200 ms), Python composite workers, misbehaving peers (jobs_peer.py).
#  - a worker silent mid-job (a peer that stops heartbeating; a real worker SIGSTOPped): found
#    dead within 3 intervals of its last heartbeat, the job requeued to another worker and
#    succeeds (attempts 2); the late progress and result of the silent one are ignored and
#    logged, and the SIGCONTed worker comes back and serves again;
#  - deadlines: a queued job whose deadline passes ends expired; a running one ends at the
#    worker's next step (failed, "deadline"); a kind no worker offers waits for its deadline
#    and expires saying no worker has the capability;
#  - results evicted by size (--job-store-mb: the oldest first) and by age (--job-result-ttl),
#    reported as evicted by JobStatus, `cirrus job -o` and GET /v1/jobs/{id}/image;
#  - bad input at submit through the CLI, POST /v1/generate (4xx, {"error":{code,message}})
#    and raw Generate frames past libcirrus (the broker's own checks): undecodable and
#    oversized images, unknown garment id, unknown kind, steps, sizes, guidance, category; a
#    worker's result for a job it does not hold. After each, a normal job still completes;
#  - a full job store (--job-store-mb 2): the submit refused, clearly; records that cannot be
#    written retried once a heartbeat interval (not a busy loop), a status of a job whose end
#    state cannot be written answers that at once, and the broker keeps answering.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/jobs_lib.sh"
export CIRRUS_WORKER_PROTO_DIR=${CIRRUS_WORKER_PROTO_DIR:-$(sed -n \
  's/.*CIRRUS_WORKER_PROTO_DIR:-\([^}]*\)}.*/\1/p' "$BIN/cirrus-worker")}
[ -f "$CIRRUS_WORKER_PROTO_DIR/cirrus_pb2.py" ] || fail "no cirrus_pb2.py in '$CIRRUS_WORKER_PROTO_DIR'"
# a failure shows the end of the broker's log
fail() {
  echo "FAIL: $*" >&2
  tail -n 40 "$WORK/serve$SERVE_N.log" >&2 2>/dev/null
  [ -z "${JOBS_TEST_KEEP:-}" ] || cp "$WORK"/*.log "$JOBS_TEST_KEEP"/ 2>/dev/null
  exit 1
}
PEER=("$PY" "$(dirname "$0")/jobs_peer.py")
HURL=http://127.0.0.1:$HPORT
ms() { date +%s%3N; }
within() { # INTERVALS 'COMMAND': until COMMAND (eval'd) succeeds, at most INTERVALS heartbeats
  local end=$(($(ms) + $1 * HB_MS))
  until eval "$2"; do
    [ "$(ms)" -lt "$end" ] || return 1
    sleep 0.05
  done
}
logged() { grep -Eq "$1" "$WORK/serve$SERVE_N.log"; }
job_py() { # ID EXPR: a Python expression over the job's JSON `j`
  C job "$1" --json | $PY -c "import json,sys; j=json.load(sys.stdin); print($2)"
}
stepping() { [ "$(job_py "$1" "j['state'] == 'running' and j['step'] >= 1")" = True ]; }
png_size() { $PY -c "from PIL import Image; print('%dx%d' % Image.open('$1').size)"; }
NORMAL=() # a normal job after each bad input: every one must succeed
normal() { NORMAL+=("$(submit --steps 1)"); }

SERVE_N=1
# attempts to spare: on a loaded machine a healthy worker may miss 3 intervals now and then
serve 1 --job-attempts 10
note "a worker that falls silent mid-job: dead, its late progress and result ignored"
start_bg "$WORK/stale.out" "${PEER[@]}" stale "$WEP" "$HB_MS"
within 50 'grep -q "worker stale ready" "$WORK/serve1.log"' || fail "the stale peer did not connect"
J0=$(submit)
within 50 'test -s "$WORK/stale.out"' || fail "the stale peer got no job"
[ "$(cat "$WORK/stale.out")" = "$J0" ] || fail "the stale peer took $(cat "$WORK/stale.out"), not $J0"
within 10 'logged "worker stale: worker silent"' || fail "the silent peer is not declared dead"
worker wa --kinds tryon --step-ms 200
WA=$LAST_PID
wait_state "$J0" succeeded 30
within 30 'logged "result for job $J0 from a worker it does not know"' || fail "the stale result is not logged"
[ "$(job_py "$J0" "j['attempt_log'][0]['worker'], j['attempt_log'][0]['reason']")" = "stale worker silent" ] ||
  fail "J0's first attempt: $(job_py "$J0" "j['attempt_log'][0]")"
[ "$(field "$J0" attempts)" -ge 2 ] || fail "J0 attempts $(field "$J0" attempts)"
[ "$(field "$J0" worker)" = wa ] || fail "J0 ended on $(field "$J0" worker), not wa"
C job "$J0" -o "$WORK/j0.png" >/dev/null 2>&1
[ "$(png_size "$WORK/j0.png")" != 8x8 ] || fail "J0 holds the stale peer's result"

note "SIGSTOP a worker mid-job: found dead within 3 intervals, requeued; SIGCONT: ignored"
worker wb --kinds tryon --step-ms 200
WB=$LAST_PID
within 50 'logged "worker wb ready"' || fail "wb did not connect"
# the attempt that ran on worker $2 at time $3 (ms): "REASON ENDED_MS", or nothing
attempt_at() {
  job_py "$1" "' '.join('%s %d' % (a['reason'].replace(' ', '_'), a['ended_ms']) for a in j['attempt_log'] if a['worker'] == '$2' and a['started_ms'] <= $3 and (a['ended_ms'] == 0 or a['ended_ms'] >= $3))"
}
hit=
for _ in 1 2 3; do # a healthy worker may be dropped and the job moved just before the SIGSTOP
  J1=$(submit --steps 10)
  within 50 'stepping "$J1"' || fail "J1 is not running: $(C job "$J1")"
  V=$(field "$J1" worker)
  case $V in wa) VP=$WA; OTHER=wb ;; wb) VP=$WB; OTHER=wa ;; *) fail "J1 on '$V'" ;; esac
  T0=$(ms)
  kill -STOP "$VP"
  wait_state "$J1" succeeded 30
  hit=$(attempt_at "$J1" "$V" "$T0")
  [ -z "$hit" ] || break
  note "  J1 had left $V before the SIGSTOP: again"
  kill -CONT "$VP"
done
[ -n "$hit" ] || fail "the SIGSTOP never caught a worker mid-job"
[ "${hit% *}" = worker_silent ] || fail "J1's attempt on the stopped $V ended '$hit'"
[ "$(field "$J1" worker)" = "$OTHER" ] || fail "J1 ended on $(field "$J1" worker)"
J1_ATTEMPTS=$(field "$J1" attempts)
[ "$J1_ATTEMPTS" -ge 2 ] || fail "J1 attempts $J1_ATTEMPTS"
DETECT=$((${hit#* } - T0))
note "  found silent $DETECT ms after SIGSTOP (dead after 3 x $HB_MS ms without a heartbeat)"
# 3 intervals after the last heartbeat the broker read (at most one before SIGSTOP); typically
# 470-680 ms here, 1.3 s seen at load 40 on 2 cores (heartbeats read late): 8 intervals allowed
[ "$DETECT" -le $((8 * HB_MS)) ] || fail "found silent only after $DETECT ms"
READY=$(grep -c "worker $V ready" "$WORK/serve1.log")
C job "$J1" -o "$WORK/j1a.png" >/dev/null 2>&1
kill -CONT "$VP"
within 50 '[ "$(grep -c "worker $V ready" "$WORK/serve1.log")" -gt "$READY" ]' ||
  fail "the resumed worker $V did not come back"
C job "$J1" -o "$WORK/j1b.png" >/dev/null 2>&1
cmp -s "$WORK/j1a.png" "$WORK/j1b.png" || fail "J1's result changed after $V resumed"
[ "$(field "$J1" attempts)" = "$J1_ATTEMPTS" ] && [ "$(field "$J1" worker)" = "$OTHER" ] ||
  fail "J1 changed after $V resumed: $(C job "$J1")"
served=0
for _ in 1 2 3; do # two jobs at once, two idle workers: one each (unless one looks busy)
  P1=$(submit --steps 3); P2=$(submit --steps 3)
  wait_state "$P1" succeeded 20; wait_state "$P2" succeeded 20
  if [ "$(field "$P1" worker)" = "$V" ] || [ "$(field "$P2" worker)" = "$V" ]; then
    served=1; break
  fi
done
[ $served = 1 ] || fail "the resumed worker $V took no job"

note "deadlines: queued -> expired, running -> ends at the next step; a kind no worker offers"
B1=$(submit --steps 30); B2=$(submit --steps 30) # both workers busy (6 s), then cancelled
wait_state "$B1" running 10; wait_state "$B2" running 10
Q=$(submit --deadline-ms 400)
E=$(C generate --kind edit --person "$WORK/p.png" --category upper_body --text red --deadline-ms 800)
wait_state "$Q" expired 10
job_py "$Q" "j['error']" | grep -q "deadline passed while queued" || fail "Q: $(field "$Q" error)"
job_py "$Q" "j['error']" | grep -q "no connected worker" && fail "Q says no worker: $(field "$Q" error)"
[ "$(field "$Q" attempts)" = 0 ] || fail "the expired Q ran"
wait_state "$E" expired 10
job_py "$E" "j['error']" | grep -q "no connected worker offers kind edit" ||
  fail "E does not say why: $(field "$E" error)"
C cancel "$B1" >/dev/null # its worker is free at its next step: R runs there
R=$(submit --steps 60 --deadline-ms 3000)
wait_state "$R" running 10
wait_state "$R" "failed|expired" 20
if [ "$(field "$R" state)" = expired ]; then # its worker was dropped (load) and it was requeued
  job_py "$R" "j['attempt_log'][-1]['reason']" | grep -Eq "worker (silent|lost)" ||
    fail "R expired while running: $(C job "$R")"
  note "  R's worker was dropped as silent (load), R expired while queued again"
else
  job_py "$R" "j['error']" | grep -q "deadline passed while running" || fail "R: $(field "$R" error)"
fi
RAN=$(job_py "$R" "j['ended_ms'] - j['created_ms']")
note "  R ended $RAN ms after its submit (deadline 3000 ms; 60 steps would take 12000)"
[ "$RAN" -ge 3000 ] && [ "$RAN" -le $((3000 + 10 * HB_MS)) ] || fail "R ended after $RAN ms"
[ "$(field "$R" step)" -lt 60 ] || fail "R ran all its steps"
C cancel "$B2" >/dev/null
wait_state "$B1" "cancelled|succeeded" 10; wait_state "$B2" "cancelled|succeeded" 10

note "bad input through the CLI"
printf 'not an image\n' >"$WORK/bad.png"
{ printf '\x89PNG\r\n\x1a\n'; head -c $((17 << 20)) /dev/zero; } >"$WORK/big.png"
expect_error "not a PNG, JPEG or WebP" C generate --person "$WORK/bad.png" --garment "$WORK/g.png" --category upper_body; normal
expect_error "more than 16777216" C generate --person "$WORK/big.png" --garment "$WORK/g.png" --category upper_body; normal
expect_error "no-such-item" C generate --person "$WORK/p.png" --garment-id no-such-item --category upper_body; normal
expect_error "kind: unknown 'paint'" submit --kind paint; normal
expect_error "steps" submit --steps 5000; normal
expect_error "width: 4000" submit --width 4000; normal
expect_error "height: 100 " submit --height 100; normal

note "bad input through POST /v1/generate"
http_case() { # STATUS PATTERN PYTHON-EDIT-OF-THE-BODY-d
  $PY - "$WORK" "$3" <<'PYEOF'
import base64, json, sys
w, edit = sys.argv[1], sys.argv[2]
b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
d = {"person_image": b64(w + "/p.png"), "garment_image": b64(w + "/g.png"), "category": "upper_body"}
exec(edit)
json.dump(d, open(w + "/body.json", "w"))
PYEOF
  local code
  code=$(curl -s -o "$WORK/resp.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data-binary "@$WORK/body.json" "$HURL/v1/generate")
  [ "$code" = "$1" ] || fail "POST /v1/generate ($3): $code, not $1: $(head -c 300 "$WORK/resp.json")"
  $PY -c "import json,sys; e=json.load(open('$WORK/resp.json'))['error']; assert e['code'] and e['message']; print('  rejected:', e['code'], e['message'])" ||
    fail "no {error:{code,message}} in $(head -c 300 "$WORK/resp.json")"
  grep -Eq "$2" "$WORK/resp.json" || fail "POST ($3) does not say '$2': $(cat "$WORK/resp.json")"
}
http_case 400 "not a PNG, JPEG or WebP" "d['person_image'] = base64.b64encode(b'not an image').decode()"; normal
http_case 413 "too_large" "d['person_image'] = base64.b64encode(b'\\x89PNG\\r\\n\\x1a\\n' + bytes(17 << 20)).decode()"; normal
http_case 400 "no-such-item" "del d['garment_image']; d['garment_item_id'] = 'no-such-item'"; normal
http_case 400 "kind: unknown" "d['kind'] = 'paint'"; normal
http_case 400 "steps" "d['steps'] = 5000"; normal
http_case 400 "width" "d['width'] = 100"; normal
curl -sf "$HURL/v1/generate" -X POST -H 'Content-Type: application/json' --data-binary \
  "{\"person_image\":\"$(base64 -w0 "$WORK/p.png")\",\"garment_image\":\"$(base64 -w0 "$WORK/g.png")\",\"category\":\"upper_body\",\"steps\":1}" \
  >"$WORK/ok.json" || fail "a good POST /v1/generate failed"
NORMAL+=("$($PY -c "import json; print(json.load(open('$WORK/ok.json'))['job_id'])")")

note "bad input in raw Generate frames (the broker's own checks)"
for c in "undecodable:not a PNG, JPEG or WebP" "oversized:16 MiB|too large|exceeds" \
         "kind:unknown job kind" "steps:steps" "width:width" "height:height" \
         "guidance:guidance" "category:category" "garment_id:no-such-item"; do
  out=$("${PEER[@]}" raw "$EP" "${c%%:*}") || fail "raw ${c%%:*} was accepted: $out"
  echo "$out" | grep -Eq "${c#*:}" || fail "raw ${c%%:*}: '$out' does not say '${c#*:}'"
  echo "  rejected (${c%%:*}): $out"
  normal
done

note "a worker's result for a job it does not hold is dropped and logged"
"${PEER[@]}" foreign "$WEP" "$J1" j-00000000000bad00
within 20 'logged "worker foreign: result for job $J1 it does not hold"' || fail "not logged ($J1)"
logged "worker foreign: result for job j-00000000000bad00 it does not hold" || fail "not logged (bad id)"
C job "$J1" -o "$WORK/j1c.png" >/dev/null 2>&1
cmp -s "$WORK/j1a.png" "$WORK/j1c.png" || fail "J1's result changed by a foreign worker"
normal
for j in "${NORMAL[@]}"; do wait_state "$j" succeeded 30; done
kill -0 "$SERVE_PID" || fail "the broker died"
echo "  ${#NORMAL[@]} normal jobs succeeded between the bad inputs"

note "size eviction (--job-store-mb 4: results within 2 MiB, the oldest first)"
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
$PY -c "
import os; from PIL import Image
Image.frombytes('RGB', (384, 512), os.urandom(384 * 512 * 3)).save('$WORK/noise.png')
Image.frombytes('RGB', (64, 64), os.urandom(64 * 64 * 3)).save('$WORK/gnoise.png')"
SERVE_N=2 DATA=$WORK/data2 serve 2 --job-store-mb 4 --job-attempts 10
SERVE_N=2
EV=()
for _ in 1 2 3 4 5 6; do # one at a time: queued inputs (600 KB each) take room in the store too
  EV+=("$(C generate --person "$WORK/noise.png" --garment "$WORK/gnoise.png" --category upper_body --steps 1)")
  wait_state "${EV[-1]}" succeeded 30
done
sleep $(awk "BEGIN { print 2 * $HB_MS / 1000 }") # two ticks: eviction runs on the tick
gone=0 kept=0 bytes=0
for j in $(for j in "${EV[@]}"; do echo "$(job_py "$j" "j['ended_ms']") $j"; done | sort -n | cut -d' ' -f2); do
  if [ "$(field "$j" has_image)" = True ]; then
    kept=$((kept + 1))
    C job "$j" -o "$WORK/e.png" >/dev/null 2>&1
    bytes=$((bytes + $(stat -c %s "$WORK/e.png")))
  else
    [ $kept = 0 ] || fail "$j was evicted after a newer result was kept (not oldest first)"
    gone=$((gone + 1))
    field "$j" error | grep -q "result evicted (over --job-store-mb)" || fail "$j: $(field "$j" error)"
    expect_error "evicted" C job "$j" -o "$WORK/e.png"
    curl -s "$HURL/v1/jobs/$j/image" | grep -q "evicted" || fail "GET image of $j does not say evicted"
  fi
done
note "  $gone evicted, $kept kept ($bytes bytes)"
[ $gone -ge 1 ] && [ $kept -ge 1 ] || fail "$gone evicted, $kept kept"
[ $bytes -le $((2 << 20)) ] || fail "kept $bytes bytes, over the 2 MiB budget"

note "TTL eviction (--job-result-ttl 5)"
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
SERVE_N=3 DATA=$WORK/data3 serve 3 --job-result-ttl 5 --job-attempts 10
SERVE_N=3
T=$(submit --steps 1)
wait_state "$T" succeeded 20
[ "$(field "$T" has_image)" = True ] || fail "T lost its result at once"
within 75 '[ "$(field "$T" has_image)" = False ]' || fail "T kept its result past the TTL"
AGE=$(($(ms) - $(field "$T" ended_ms)))
[ $AGE -ge 5000 ] || fail "T's result was evicted after $AGE ms, before the 5 s TTL"
field "$T" error | grep -q "result evicted (older than --job-result-ttl)" || fail "T: $(field "$T" error)"
expect_error "evicted" C job "$T" -o "$WORK/t.png"

note "a full store: the submit is refused clearly; records that cannot be written are retried once an interval, not in a busy loop"
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
WEP=tcp://127.0.0.1:$(free_port) # no worker connected until the store is full
SERVE_N=4 DATA=$WORK/data4 serve 4 --job-store-mb 2 --job-attempts 10
SERVE_N=4
FULL=()
for _ in 1 2 3 4 5; do # 600 KB of input each in a 2 MiB map
  out=$(C generate --person "$WORK/noise.png" --garment "$WORK/gnoise.png" --category upper_body --steps 1 2>&1) ||
    { echo "$out" | grep -q "job store full" || fail "a refused submit says: $out"; break; }
  FULL+=("$out")
done
[ ${#FULL[@]} -ge 1 ] && [ ${#FULL[@]} -lt 5 ] || fail "${#FULL[@]} of 5 submits taken by a 2 MiB store"
note "  ${#FULL[@]} submits taken, then: job store full"
worker wf --kinds tryon # runs them; their results cannot be written
# Their end states cannot be written: a status answers that at once (never "succeeded" before
# the result is durable, and no client held until a write that needs a bigger store).
for j in "${FULL[@]}"; do
  for _ in $(seq 1 300); do
    out=$(C job "$j" 2>&1) && { sleep 0.1; continue; }
    echo "$out" | grep -q "cannot be written to the job store" && break
    fail "status of $j with a full store: $out"
  done
  echo "$out" | grep -q "cannot be written to the job store" || fail "$j: no store error in 30 s: $out"
done
n0=$(grep -c "writing .* job records" "$WORK/serve4.log" || true)
sleep $(awk "BEGIN { print 10 * $HB_MS / 1000 }")
n1=$(grep -c "writing .* job records" "$WORK/serve4.log" || true)
note "  $((n1 - n0)) failed writes in 10 intervals"
[ $((n1 - n0)) -le 20 ] || fail "$((n1 - n0)) failed writes in 10 heartbeat intervals: a busy retry loop"
C jobs >/dev/null || fail "the broker does not answer with a full store"
kill -0 "$SERVE_PID" || fail "the broker died with a full store"
echo "ok"
