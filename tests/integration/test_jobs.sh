#!/usr/bin/env bash
# The job broker end to end (issue #12): cirrus serve --worker-bind with real Python composite
# workers (worker/). Capability dispatch, a worker SIGKILLed mid-job (retried elsewhere,
# attempts = 2), idempotent resubmit, cancel queued and running, a full queue (OVERLOADED),
# kill -9 of the broker with jobs queued and running (all complete after the restart), and
# malformed worker frames (dropped, the broker keeps serving).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/jobs_lib.sh"

serve 1 --job-queue 4
note "dispatch by capability: a text2image worker does not take a try-on"
worker t2i --kinds text2image
J1=$(submit)
sleep 1
[ "$(field "$J1" state)" = queued ] || fail "try-on ran without a try-on worker"
worker wb --step-ms 250
WB=$LAST_PID
wait_state "$J1" running 10
[ "$(field "$J1" worker)" = wb ] || fail "J1 runs on $(field "$J1" worker)"

note "SIGKILL of the worker mid-job: retried on another"
worker wc --step-ms 250
sleep 0.5
kill -9 "$WB"
wait_state "$J1" succeeded 20
[ "$(field "$J1" attempts)" = 2 ] || fail "attempts $(field "$J1" attempts), not 2"
[ "$(field "$J1" worker)" = wc ] || fail "J1 succeeded on $(field "$J1" worker)"
C job "$J1" --json | grep -q '"reason":"worker silent"' || fail "the lost attempt has no reason"
C job "$J1" -o "$WORK/out.png" >/dev/null
head -c 8 "$WORK/out.png" | od -An -tx1 | grep -q "89 50 4e 47" || fail "no PNG"
M=$(curl -sf "http://127.0.0.1:$HPORT/metrics") || fail "no /metrics"
echo "$M" | grep -Eq '^cirrus_jobs_retries_total\{reason="worker silent"\} 1$' ||
  fail "the retry is not counted by reason: $(echo "$M" | grep retries)"

note "idempotent resubmit"
K1=$(submit --key same); K2=$(submit --key same)
[ "$K1" = "$K2" ] || fail "the same key made $K1 and $K2"
wait_state "$K1" succeeded 20

note "cancel running and queued"
R=$(submit); Q=$(submit)
wait_state "$R" running 10
C cancel "$Q" >/dev/null
[ "$(field "$Q" state)" = cancelled ] || fail "queued job not cancelled at once"
C cancel "$R" >/dev/null
wait_state "$R" cancelled 10

note "full queue: OVERLOADED"
A=$(submit --steps 24); wait_state "$A" running 10 # 6 s: still running after the 4 submits
Q1=$(submit); Q2=$(submit); Q3=$(submit); Q4=$(submit)
expect_error "overloaded|queue is full" submit

note "kill -9 of the broker with jobs running and queued: all complete after the restart"
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null || true
serve 2 --job-queue 4
for j in "$A" "$Q1" "$Q2" "$Q3" "$Q4"; do wait_state "$j" succeeded 30; done
grep -q "broker restart" <(C job "$A" --json) || fail "the interrupted attempt is not recorded"

note "malformed worker frames are dropped"
$PY - "$WEP" <<'PYEOF'
import sys, time, zmq
s = zmq.Context().socket(zmq.DEALER); s.connect(sys.argv[1])
for m in [b"\xff\xff\xff\xff", b"\x22\x05garbage", b"", b"\x0a\x02\x08"]:
    s.send(m)
s.send_multipart([b"a", b"b", b"c"])
time.sleep(0.3)
PYEOF
grep -q "dropped a malformed worker frame" "$WORK/serve2.log" || fail "no malformed frame logged"
S=$(submit); wait_state "$S" succeeded 20
C jobs | grep -q "$S" || fail "cirrus jobs lacks $S"

note "metrics"
M=$(curl -sf "http://127.0.0.1:$HPORT/metrics") || fail "no /metrics"
echo "$M" | grep -Eq '^cirrus_jobs\{kind="tryon",state="succeeded"\} [1-9]' || fail "no succeeded jobs in /metrics"
echo "$M" | grep -Eq '^cirrus_jobs_workers [1-9]' || fail "no workers in /metrics"
echo "$M" | grep -Eq '^cirrus_jobs_queue_depth 0' || fail "queue depth not 0 in /metrics"
echo "$M" | grep -Eq '^cirrus_jobs_workers_by_capability\{kind="tryon"\} [1-9]' || fail "no try-on workers by capability"
# Histograms: cumulative buckets ending at +Inf = count, a run observed since the restart.
for h in queue_wait run; do
  n=$(echo "$M" | awk -v m="cirrus_jobs_${h}_seconds_count" '$1 == m { print $2 }')
  inf=$(echo "$M" | awk -v m="cirrus_jobs_${h}_seconds_bucket{le=\"+Inf\"}" '$1 == m { print $2 }')
  [ -n "$n" ] && [ "$n" -ge 1 ] && [ "$inf" = "$n" ] || fail "histogram $h: count '$n', +Inf '$inf'"
  echo "$M" | awk -v p="cirrus_jobs_${h}_seconds_bucket" 'index($1, p) == 1 { if ($2 < last) bad = 1; last = $2 }
    END { exit bad }' || fail "histogram $h buckets are not cumulative"
done
echo "ok"
