#!/usr/bin/env bash
# The web page at / (gateway/web/index.html) in Debian's headless Chromium, driven by
# playwright-core (tools/web_check.js), on `cirrus serve --http` with the fixture CLIP and a
# 70-item synthetic catalog: a text query, a result made the reference, a composed change, a
# filter, an uploaded photo, paging, the page at 375 px; each step's results must be exactly
# the HTTP API's answer to the same query; the filter controls built from /v1/schema (a select
# and a price range, combined with the free-text filter), group by product, and a "Try on"
# from a hit run by a composite worker on `serve --keep-images` until its image shows.
# Screenshots: build/test-artifacts/web/ (1-text.png ... 8-filters.png, 9-group.png,
# 10-tryon.png, shot-1440.png, shot-375.png).
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }
[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium missing: run make deps"
[ -d "$SRC/tools/node_modules/playwright-core" ] || fail "tools/node_modules lacks playwright-core: run make deps"
OUT="$BIN/../test-artifacts/web"

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 70 >/dev/null 2>&1
ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
wep="tcp://127.0.0.1:$(free_port)"
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" \
  --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" --shards 2 \
  --bind "$ep" --http ":$hp" --keep-images --worker-bind "$wep" --job-heartbeat-ms 200
wait_ready "$ep"
TRYON=0
if /usr/bin/python3 -c "import zmq, google.protobuf, PIL" 2>/dev/null && [ -x "$BIN/cirrus-worker" ]; then
  start_bg "$WORK/worker.log" "$BIN/cirrus-worker" --connect "$wep" --backend composite \
    --heartbeat-ms 200 --step-ms 20 --worker-id web-w1
  TRYON=1
else
  echo "  try-on skipped: no python3 zmq/protobuf/PIL or cirrus-worker"
fi
"$BIN/cirrus" --endpoint "$ep" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null 2>&1
page=$(curl -s -D "$WORK/headers" "http://127.0.0.1:$hp/")
grep -q 'id="results"' <<<"$page" || fail "GET / is not the page"
grep -qi '^content-security-policy:' "$WORK/headers" || fail "the page has no Content-Security-Policy"
grep -Eq 'https?://' <<<"$(grep -o '<script[^>]*src=[^>]*>' <<<"$page")" && fail "the page loads a script from elsewhere"
HOME="$WORK" timeout 120 node "$SRC/tools/web_check.js" "http://127.0.0.1:$hp" \
  "$WORK/cat/images/sku-7.png" "$OUT" "$TRYON" || fail "the page does not show what the API answers"
echo "1 passed, 0 failed"
