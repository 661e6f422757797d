#!/usr/bin/env bash
# cirrus-bench jobs (issue #12, "Benchmark") on a small run: no-op worker threads against
# `cirrus serve --worker-bind`; the table and the JSON are sane (every job succeeded, the
# latencies and the floor are positive, the store's syncs are counted); a wrong worker
# endpoint makes the bench fail. Then kill -9 of the broker under the bench's load: every job
# id the bench was given survives the restart and completes on a noop worker.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
[ -x "$BIN/cirrus-bench" ] || { echo "skip: no $BIN/cirrus-bench"; exit 77; }

PORT=$(free_port); WPORT=$(free_port); HPORT=$(free_port)
EP=tcp://127.0.0.1:$PORT; WEP=tcp://127.0.0.1:$WPORT
serve() { # N DATA_DIR
  start_bg "$WORK/serve$1.log" "$BIN/cirrus" serve --data "$2" --dim 8 --bind "$EP" \
    --worker-bind "$WEP" --http "127.0.0.1:$HPORT"
  SERVE_PID=$LAST_PID
  wait_ready "$EP"
}
serve 1 "$WORK/data"

note "a small run: the JSON parses and every figure is sane"
"$BIN/cirrus-bench" jobs --endpoint "$EP" --worker-endpoint "$WEP" --workers 1,4 --jobs 200 \
  --latency-jobs 30 --floor 300 --metrics "http://127.0.0.1:$HPORT/metrics" --json \
  >"$WORK/b.json" || fail "the bench failed: $(cat "$WORK/b.json")"
$PY - "$WORK/b.json" <<'PYEOF' || fail "bad bench output: $(cat "$WORK/b.json")"
import json, sys
d = json.load(open(sys.argv[1]))
runs = d["runs"]
assert [r["workers"] for r in runs] == [1, 4], runs
for r in runs:
    assert r["ok"] is True and r["failed"] == 0, r
    assert 0 < r["floor_p50_ms"] <= r["floor_p99_ms"], r
    assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"], r
    assert r["latency_p50_ms"] < r["ack_p99_ms"] + 1000, r
    assert abs(r["overhead_p99_ms"] - (r["latency_p99_ms"] - r["floor_p99_ms"])) < 1e-3, r
    assert 0 < r["jobs_per_s"] < 1e6 and r["seconds"] > 0, r
    assert abs(r["ratio_to_target"] - r["jobs_per_s"] / 2000) < 1e-3, r
    assert 0 <= r["syncs_per_job"] <= 5, r  # the broker's counter was read
PYEOF
C() { "$BIN/cirrus" --endpoint "$EP" "$@"; }
N=$(C jobs --limit 1000 --json | $PY -c "import json,sys; j=json.load(sys.stdin)['jobs']; print(sum(x['state']=='succeeded' for x in j))")
# per count: 8 per worker (warm-up) + 30 + 200
[ "$N" = $(( (8 + 30 + 200) + (32 + 30 + 200) )) ] || fail "$N jobs succeeded in the broker"

note "the table form"
"$BIN/cirrus-bench" jobs --endpoint "$EP" --worker-endpoint "$WEP" --workers 2 --jobs 50 \
  --latency-jobs 10 --floor 100 >"$WORK/t.txt" || fail "table run failed"
grep -Eq '^ +2 +[0-9.]+ .* yes$' "$WORK/t.txt" || fail "no table row: $(cat "$WORK/t.txt")"

note "no worker can reach the broker: the bench fails"
if "$BIN/cirrus-bench" jobs --endpoint "$EP" --worker-endpoint "tcp://127.0.0.1:$(free_port)" \
  --workers 1 --jobs 5 --latency-jobs 2 --floor 10 --timeout-ms 1500 --json >"$WORK/f.json" 2>&1; then
  fail "the bench passed without workers: $(cat "$WORK/f.json")"
fi

note "kill -9 of the broker under the bench's load: every acknowledged job survives"
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
serve 2 "$WORK/data2"
rm -f "$WORK/ids"
"$BIN/cirrus-bench" jobs --endpoint "$EP" --worker-endpoint "$WEP" --workers 4 --jobs 20000 \
  --latency-jobs 1 --floor 10 --concurrency 16 --timeout-ms 3000 --ids "$WORK/ids" \
  >"$WORK/k.txt" 2>&1 &
BENCH=$!
PIDS+=("$BENCH")
for _ in $(seq 1 300); do
  [ -f "$WORK/ids" ] && [ "$(wc -l <"$WORK/ids")" -ge 300 ] && break
  sleep 0.05
done
kill -9 "$SERVE_PID"
ACKED=$(wc -l <"$WORK/ids")
[ "$ACKED" -ge 100 ] || fail "only $ACKED jobs acknowledged before the kill"
wait "$BENCH" 2>/dev/null && fail "the bench passed with its broker killed"
serve 3 "$WORK/data2"
start_bg "$WORK/noop.log" "$BIN/cirrus-worker" --connect "$WEP" --backend noop --concurrency 8
for _ in $(seq 1 600); do
  LEFT=$(C jobs --limit 1000 --json | $PY -c "import json,sys; print(sum(x['state'] not in ('succeeded',) for x in json.load(sys.stdin)['jobs']))")
  [ "$LEFT" = 0 ] && break
  sleep 0.1
done
C jobs --limit 1000 --json >"$WORK/list.json"
$PY - "$WORK/ids" "$WORK/list.json" <<'PYEOF' || fail "acknowledged jobs lost or not completed after the restart"
import json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
jobs = {j["job_id"]: j for j in json.load(open(sys.argv[2]))["jobs"]}
assert len(jobs) < 1000, "the listing is cut: %d jobs" % len(jobs)
bad = [(i, jobs[i]["state"] if i in jobs else "lost") for i in ids
       if i not in jobs or jobs[i]["state"] != "succeeded"]
print("%d acknowledged before the kill, %d in the store, %d not succeeded" %
      (len(ids), len(jobs), len(bad)))
print(bad[:5])
sys.exit(1 if bad else 0)
PYEOF
echo "PASS"
