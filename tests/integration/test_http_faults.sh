#!/usr/bin/env bash
# The HTTP front when its backends hang (issue 10 #1): a cirrus-coordinator with --http in
# front of a real cirrus-shard and a real cirrus-encoder, each frozen in turn with SIGSTOP.
# Searches that need the frozen backend answer 504/503 with a JSON error
# {"error": {"code", "message"}}; the coordinator stays up and keeps answering /healthz.
# Also: an explicit --http address (0.0.0.0:PORT) is bound as given (fixture CLIP).
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }

sep="tcp://127.0.0.1:$(free_port)"
eep="tcp://127.0.0.1:$(free_port)"
cep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/shard.log" "$BIN/cirrus-shard" --dir "$WORK/shard" --bind "$sep" --create \
  --dim 64 --index Flat --log-level warn
SHARD=$LAST_PID
start_bg "$WORK/encoder.log" "$BIN/cirrus-encoder" --model "$FIX/clip-openai-names.safetensors" \
  --phi "$FIX/phi.safetensors" --bind "$eep"
ENCODER=$LAST_PID
cat >"$WORK/map.json" <<JSON
{"bind": "$cep", "groups": [["$sep"]], "encoders": ["$eep"], "metric": "ip"}
JSON
wait_ready "$sep"
wait_ready "$eep"
start_bg "$WORK/coord.log" "$BIN/cirrus-coordinator" --map "$WORK/map.json" \
  --backend-timeout-ms 1000 --http "0.0.0.0:$hp" --log-level warn
COORD=$LAST_PID
wait_ready "$cep"
H="http://127.0.0.1:$hp"
vec=$(seq 1 64 | awk '{printf "%s%.3f", (NR > 1 ? "," : ""), sin($1)}')
"$BIN/cirrus" --endpoint "$cep" upsert --id x --vector "$vec" >/dev/null

note "an explicit address is bound as given"
ss -ltnH "sport = :$hp" | grep -q "0.0.0.0:$hp" || fail "not bound on 0.0.0.0: $(ss -ltnH "sport = :$hp")"

code() { rm -f "$WORK/body"; curl -s -m 20 -o "$WORK/body" -w '%{http_code}' "$@" || true; }
# expect_backend_error WHAT CURL-ARGS...: 503 or 504 with a JSON error body, and the process
# still answers /healthz within 2 s.
expect_backend_error() {
  local what=$1 c
  shift
  c=$(code "$@")
  case $c in 503 | 504) ;; *) fail "$what: HTTP $c (want 503/504): $(cat "$WORK/body" 2>/dev/null)" ;; esac
  grep -Eq '^\{"error":\{"code":"[a-z_]+","message":"[^"]+"\}\}$' "$WORK/body" ||
    fail "$what: not a JSON error: $(cat "$WORK/body")"
  kill -0 "$COORD" 2>/dev/null || fail "$what: the coordinator died: $(tail -3 "$WORK/coord.log")"
  [ "$(curl -s -m 2 "$H/healthz")" = ok ] || fail "$what: /healthz does not answer"
  echo "  $what: HTTP $c $(cat "$WORK/body")"
}
# wait_http WHAT BODY: polls a search until it answers 200 (a resumed backend is back).
wait_http() {
  for _ in $(seq 1 100); do
    [ "$(code -X POST "$H/v1/search" -d "$2")" = 200 ] && return 0
    sleep 0.1
  done
  fail "$1: searches do not recover: $(cat "$WORK/body")"
}

[ "$(code -X POST "$H/v1/search" -d '{"item_id":"x","k":1}')" = 200 ] || fail "search: $(cat "$WORK/body")"
[ "$(code -X POST "$H/v1/search" -d '{"text":"a red dress","k":1}')" = 200 ] ||
  fail "text search: $(cat "$WORK/body")"

note "a hung shard group (SIGSTOP on its only replica)"
kill -STOP "$SHARD"
expect_backend_error "search by a stored item" -X POST "$H/v1/search" -d '{"item_id":"x"}'
expect_backend_error "get an item" "$H/v1/items/x"
expect_backend_error "search by a stored item, again" -X POST "$H/v1/search" -d '{"item_id":"x"}'
kill -CONT "$SHARD"
wait_http "shard resumed" '{"item_id":"x","k":1}'

note "a hung encoder (SIGSTOP)"
kill -STOP "$ENCODER"
expect_backend_error "text search" -X POST "$H/v1/search" -d '{"text":"a red dress"}'
expect_backend_error "composed search" -X POST "$H/v1/search" -d '{"ref_id":"x","caption":"in red"}'
kill -CONT "$ENCODER"
wait_http "encoder resumed" '{"text":"a red dress","k":1}'
kill -0 "$COORD" 2>/dev/null || fail "the coordinator died"
echo "1 passed, 0 failed"
