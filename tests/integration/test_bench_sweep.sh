#!/usr/bin/env bash
# cirrus-bench search as users drive it: --load writes the base through a real shard and times
# it, --concurrency 1,2 gives one row per level, --json carries VectorDBBench's fields with
# values that agree with the rows (qps is the best level's, recall against brute-force truth),
# --plot writes a PNG; a bad level list is refused.
. "$(dirname "$0")/lib.sh"
command -v gnuplot >/dev/null || fail "gnuplot missing: run make deps"
"$BIN/cirrus-bench" gen --n 3000 --dim 16 --clusters 20 --queries 50 --out "$WORK/base.fvecs" \
  --query-out "$WORK/q.fvecs" >/dev/null
"$BIN/cirrus-bench" truth --base "$WORK/base.fvecs" --queries "$WORK/q.fvecs" --out "$WORK/gt.ivecs" \
  --k 10 --metric l2 >/dev/null
ep="tcp://127.0.0.1:$(free_port)"
start_bg "$WORK/shard.log" "$BIN/cirrus-shard" --dir "$WORK/shard" --bind "$ep" --create \
  --dim 16 --index Flat --metric l2 --log-level warn
wait_ready "$ep"

note "load + sweep at 1,2 with --json and --plot"
out=$("$BIN/cirrus-bench" search --endpoint "$ep" --load "$WORK/base.fvecs" --id-prefix v \
  --queries "$WORK/q.fvecs" --truth "$WORK/gt.ivecs" --k 10 --concurrency 1,2 --duration 1 \
  --plot "$WORK/sweep.png" --json)
echo "$out"
/usr/bin/python3 - "$out" <<'PYEOF' || fail "the JSON does not hold what the rows measured"
import json, sys
r = json.loads(sys.argv[1])
for f in ("qps", "serial_latency_p99", "recall", "ndcg", "load_duration",
          "conc_num_list", "conc_qps_list", "conc_latency_p99_list", "levels"):
    assert f in r, f"missing {f}"
assert r["conc_num_list"] == [1, 2], r["conc_num_list"]
assert len(r["conc_qps_list"]) == 2 and len(r["levels"]) == 2
best = max(range(2), key=lambda i: r["conc_qps_list"][i])
assert r["concurrency"] == r["conc_num_list"][best], "the top level is not the best level's run"
assert abs(r["p99_ms"] / 1000 - r["conc_latency_p99_list"][best]) < 1e-6, "p99 not the best level's"
assert abs(r["qps"] - max(r["conc_qps_list"])) <= 1e-6 * r["qps"] + 1e-9, "qps is not the best level"
assert all(q > 0 for q in r["conc_qps_list"])
assert 0 < r["serial_latency_p99"] < 1, r["serial_latency_p99"]
assert r["recall"] > 0.999, f"Flat recall {r['recall']}"
assert 0.99 < r["ndcg"] <= 1.0 + 1e-9, r["ndcg"]
assert 0 < r["load_duration"] < 60, r["load_duration"]
PYEOF
head -c 8 "$WORK/sweep.png" | od -An -tx1 | grep -q '89 50 4e 47' || fail "--plot wrote no PNG"

note "a bad level list is refused"
if "$BIN/cirrus-bench" search --endpoint "$ep" --queries "$WORK/q.fvecs" --concurrency 1,x \
  >"$WORK/err.txt" 2>&1; then fail "--concurrency 1,x accepted"; fi
grep -qi "concurrency" "$WORK/err.txt" || { cat "$WORK/err.txt"; fail "the error does not name the flag"; }
echo "PASS"
