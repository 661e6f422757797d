#!/usr/bin/env bash
# Restart needs only --dir and --bind: a shard created with --metric l2, --dim 24 and
# --index HNSW16 starts again without them (the defaults are not requests) and serves with
# its own parameters; a creation flag given explicitly is checked, and a conflicting one is
# refused with a message naming both values.
. "$(dirname "$0")/lib.sh"

"$BIN/cirrus-bench" gen --n 300 --dim 24 --queries 5 --out "$WORK/b.fvecs" >/dev/null
ep="tcp://127.0.0.1:$(free_port)"

# ready_or_dead PID LOG: polls until the shard answers, failing as soon as it exits.
ready_or_dead() {
  for _ in $(seq 1 300); do
    "$BIN/cirrus" --endpoint "$ep" --timeout 200 health >/dev/null 2>&1 && return 0
    kill -0 "$1" 2>/dev/null || fail "the shard exited: $(grep -v ' INFO ' "$2")"
    sleep 0.1
  done
  fail "$ep did not become ready"
}
dir="$WORK/s"
C=("$BIN/cirrus" --endpoint "$ep" --json)

start_bg "$WORK/s1.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --create --dim 24 \
  --metric l2 --index HNSW16 --log-level warn
pid=$LAST_PID
wait_ready "$ep"
"${C[@]}" load --vectors "$WORK/b.fvecs" --id-prefix r >/dev/null
vec=$("${C[@]}" get --id r5 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
kill -9 "$pid"; wait "$pid" 2>/dev/null || true

note "restart with --dir and --bind only"
start_bg "$WORK/s2.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --log-level warn
pid=$LAST_PID
ready_or_dead "$pid" "$WORK/s2.log"
st=$("${C[@]}" stats)
echo "$st" | grep -q '"count":300' || fail "count after restart: $st"
echo "$st" | grep -q '"dim":24' || fail "dim after restart: $st"
echo "$st" | grep -qi '"metric":"[a-z_]*l2"' || fail "metric after restart: $st"
echo "$st" | grep -q '"index":"HNSW16"' || fail "index after restart: $st"
"${C[@]}" search --vector "$vec" -k 3 | grep -q '"id":"r5"' || fail "r5 not found by its vector"
kill -TERM "$pid"; wait "$pid" || fail "shard did not exit 0 on SIGTERM"

note "the same flags as at creation (but --metric) are accepted too"
start_bg "$WORK/s3.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --create --dim 24 \
  --index HNSW16 --log-level warn
pid=$LAST_PID
ready_or_dead "$pid" "$WORK/s3.log"
kill -TERM "$pid"; wait "$pid" || fail "shard did not exit 0 on SIGTERM"

note "conflicting explicit flags are refused"
refused() { # PATTERN FLAGS...: the shard must exit non-zero at once, saying PATTERN
  local pat=$1 rc=0 out
  shift
  out=$(timeout 20 "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --log-level warn "$@" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "cirrus-shard $* was not refused (rc $rc): $out"
  echo "$out" | grep -Eq "$pat" || fail "cirrus-shard $*: expected '$pat', got: $out"
  echo "  refused: $(echo "$out" | grep -E "$pat" | head -1)"
}
refused "has metric l2, expected ip" --metric ip
refused "has dim 24, expected 32" --dim 32
refused 'has index factory "HNSW16", expected "Flat"' --index Flat
refused "has metric l2, expected ip" --create --dim 24 --index HNSW16 --metric ip
CIRRUS_SHARD_METRIC=ip refused "has metric l2, expected ip"

note "an explicit matching --metric l2 is fine"
start_bg "$WORK/s4.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" --metric l2 --log-level warn
pid=$LAST_PID
ready_or_dead "$pid" "$WORK/s4.log"
"${C[@]}" stats | grep -q '"count":300' || fail "count with --metric l2"
kill -TERM "$pid"; wait "$pid" || fail "shard did not exit 0 on SIGTERM"

note "cirrus serve: a catalog made with --metric l2 --index HNSW16 restarts with --data only"
sep="tcp://127.0.0.1:$(free_port)"
S=("$BIN/cirrus" --endpoint "$sep" --json)
start_bg "$WORK/v1.log" "$BIN/cirrus" serve --data "$WORK/serve" --dim 24 --metric l2 \
  --index HNSW16 --bind "$sep"
pid=$LAST_PID
wait_ready "$sep"
"${S[@]}" load --vectors "$WORK/b.fvecs" --id-prefix r >/dev/null
kill -TERM "$pid"; wait "$pid" || fail "serve did not exit 0 on SIGTERM"
start_bg "$WORK/v2.log" "$BIN/cirrus" serve --data "$WORK/serve" --dim 24 --bind "$sep"
pid=$LAST_PID
ep=$sep ready_or_dead "$pid" "$WORK/v2.log"
st=$("${S[@]}" stats)
echo "$st" | grep -q '"count":300' || fail "serve count after restart: $st"
"${S[@]}" search --vector "$vec" -k 1 | grep -q '"id":"r5"' || fail "serve: r5 not found (metric?)"
kill -TERM "$pid"; wait "$pid" || fail "serve did not exit 0 on SIGTERM"
out=$(timeout 20 "$BIN/cirrus" serve --data "$WORK/serve" --dim 24 --metric ip --bind "$sep" 2>&1) \
  && fail "serve with a conflicting --metric ip started: $out"
echo "$out" | grep -q "has metric l2, expected ip" || fail "serve --metric ip: $out"
echo "1 passed, 0 failed"
