#!/usr/bin/env bash
# The HTTP/JSON API and Prometheus metrics of the coordinator, through `cirrus serve --http`
# (fixture CLIP): health and readiness, composed search with a filter, items, clear errors with
# HTTP status codes, and /metrics counting what was served.
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 70 >/dev/null 2>&1
ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" \
  --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" --shards 2 \
  --bind "$ep" --http "127.0.0.1:$hp"
wait_ready "$ep"
"$BIN/cirrus" --endpoint "$ep" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null 2>&1
H="http://127.0.0.1:$hp"

[ "$(curl -s "$H/healthz")" = ok ] || fail "healthz"
[ "$(curl -s "$H/readyz")" = ready ] || fail "readyz"

out=$(curl -s -X POST "$H/v1/search" -d '{"ref_id":"sku-3","caption":"is red","method":"searle","k":3,"filter":"color = \"red\""}')
echo "$out" | grep -q '"hits":\[{"id":"sku-' || fail "composed search: $out"
echo "$out" | grep -o '"color":"[a-z]*"' | grep -vq '"color":"red"' && fail "filter violated: $out"
out=$(curl -s -X POST "$H/v1/search" -d '{"text":"a red dress","k":2,"group_by":"product"}')
echo "$out" | grep -q '"partial":false' || fail "text search: $out"
curl -s "$H/v1/items/sku-5" | grep -q '"id":"sku-5"' || fail "item"

code() { curl -s -o "$WORK/body" -w '%{http_code}' "$@"; }
[ "$(code -X POST "$H/v1/search" -d 'not json')" = 400 ] || fail "malformed JSON not 400"
[ "$(code -X POST "$H/v1/search" -d '{"ref_id":"nope","caption":"x"}')" = 400 ] || fail "unknown reference"
grep -q "reference item 'nope' not found" "$WORK/body" || fail "message: $(cat "$WORK/body")"
[ "$(code -X POST "$H/v1/search" -d '{"text":"x","filter":"price < "}')" = 400 ] || fail "bad filter"
grep -q "column" "$WORK/body" || fail "filter error without a position"
[ "$(code -X POST "$H/v1/search" -d '{"vector":[1,2],"text":"x"}')" = 400 ] || fail "two kinds"
[ "$(code "$H/v1/items/no-such")" = 404 ] || fail "missing item not 404"
[ "$(code "$H/nowhere")" = 404 ] || fail "unknown endpoint not 404"

m=$(curl -s "$H/metrics")
echo "$m" | grep -q '^cirrus_requests_total{op="search"} [1-9]' || fail "metrics: $m"
echo "$m" | grep -q '^cirrus_request_errors_total{op="search"} [1-9]' || fail "error counter"
echo "$m" | grep -q '^cirrus_replica_up{group="1",replica="0",endpoint="inproc://serve-shard-1"} 1' ||
  fail "replica gauge: $m"
echo "$m" | grep -q 'cirrus_request_duration_seconds_bucket{op="search",le="+Inf"}' || fail "histogram"
echo "1 passed, 0 failed"
