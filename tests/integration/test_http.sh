#!/usr/bin/env bash
# The HTTP/JSON API and Prometheus metrics of the coordinator, through `cirrus serve --http`
# (fixture CLIP): health and readiness, composed search with a filter, items, clear errors with
# HTTP status codes, and /metrics counting what was served. Issue 10 #5: `--http :PORT` binds
# the loopback only; a slowloris (64 connections trickling a byte every 2 s, and more from a
# second client address than its per-client limit) leaves /healthz and searches answering and
# is cut off by the header timeout; a search body with a wrong type or an unknown key is a 400
# naming the field; an invalid item id is a 400.
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 70 >/dev/null 2>&1
ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" \
  --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" --shards 2 \
  --bind "$ep" --http ":$hp"
wait_ready "$ep"
ss -ltnH "sport = :$hp" | grep -q "127.0.0.1:$hp" ||
  fail "--http :PORT is not bound to the loopback: $(ss -ltnH "sport = :$hp")"
"$BIN/cirrus" --endpoint "$ep" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null 2>&1
H="http://127.0.0.1:$hp"

note "slowloris: 64 trickling connections, and 160 from a second address (limit 128 each)"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
perl "$SRC/tests/integration/slowloris.pl" "$hp" 64 160 14 "$WORK/slow" &
SLOW=$!
PIDS+=("$SLOW")
for _ in $(seq 1 100); do
  [ -f "$WORK/slow" ] && [ "$(cut -d' ' -f1 "$WORK/slow")" -ge 2 ] && break
  sleep 0.1
done
read -r _ open_local open_other <"$WORK/slow" || fail "slowloris did not start"
echo "  open: $open_local from 127.0.0.1, $open_other from 127.0.0.2"
[ "$open_local" = 64 ] || fail "only $open_local of 64 trickling connections were accepted"
[ "$open_other" -le 128 ] && [ "$open_other" -ge 120 ] ||
  fail "$open_other connections from one address stayed open (limit 128)"
[ "$(curl -s -m 2 "$H/healthz")" = ok ] || fail "/healthz unreachable during a slowloris"
curl -s -m 5 -X POST "$H/v1/search" -d '{"text":"a red dress","k":2}' | grep -q '"hits"' ||
  fail "search unreachable during a slowloris"

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
grep -Eq '^\{"error":\{"code":"not_found","message":"no such endpoint"\}\}$' "$WORK/body" ||
  fail "error body: $(cat "$WORK/body")"

note "a wrong type or an unknown key is a 400 naming the field"
# bad_field FIELD BODY: 400 whose message starts with "FIELD: ".
bad_field() {
  local c
  c=$(code -X POST "$H/v1/search" -d "$2")
  [ "$c" = 400 ] || fail "$2: HTTP $c, want 400: $(cat "$WORK/body")"
  grep -qF "\"message\":\"$1: " "$WORK/body" || fail "$2: message does not name $1: $(cat "$WORK/body")"
}
bad_field filter '{"text":"x","filter":123}'
bad_field vector '{"vector":"1,2"}'
bad_field 'vector[1]' '{"vector":[1,"2"]}'
bad_field text '{"text":1}'
bad_field image '{"image":[]}'
bad_field item_id '{"item_id":7}'
bad_field ref_id '{"ref_id":7,"caption":"x"}'
bad_field caption '{"ref_id":"sku-3","caption":1}'
bad_field caption2 '{"ref_id":"sku-3","caption":"x","caption2":{}}'
bad_field method '{"ref_id":"sku-3","caption":"x","method":2}'
bad_field k '{"text":"x","k":"3"}'
bad_field offset '{"text":"x","offset":1.5}'
bad_field group_by '{"text":"x","group_by":true}'
bad_field group_size '{"text":"x","group_by":"product","group_size":-1}'
bad_field nprobe '{"text":"x","nprobe":"8"}'
bad_field ef '{"text":"x","ef":null}'
bad_field exact '{"text":"x","exact":"yes"}'
bad_field include_metadata '{"text":"x","include_metadata":1}'
bad_field fliter '{"text":"x","fliter":"color = \"red\""}'
bad_field method '{"text":"x","method":"sum"}'
[ "$(code -X POST "$H/v1/search" -d '{"text":"x","filter":"a = 1","filter":"b = 2"}')" = 400 ] ||
  fail "duplicate key not 400"
[ "$(code -X POST "$H/v1/search" -d '[1]')" = 400 ] || fail "non-object body not 400"

note "an invalid item id is a 400"
[ "$(code "$H/v1/items/$(head -c 257 /dev/zero | tr '\0' a)")" = 400 ] || fail "257-byte id not 400"
[ "$(code "$H/v1/items/$(head -c 256 /dev/zero | tr '\0' a)")" = 404 ] || fail "256-byte id not 404"
[ "$(code "$H/v1/items/bad%C3")" = 400 ] || fail "invalid UTF-8 id not 400"
[ "$(code "$H/v1/items/%FF%FE")" = 400 ] || fail "invalid UTF-8 id not 400"
[ "$(code "$H/v1/items/sku-5%00x")" = 400 ] || fail "id with a NUL not 400"
[ "$(code "$H/v1/items/caf%C3%A9")" = 404 ] || fail "valid UTF-8 id not 404"

note "the trickling connections are cut off by the header timeout"
wait "$SLOW" || true
read -r tick open_local open_other <"$WORK/slow"
[ "$open_local $open_other" = "0 0" ] ||
  fail "after ${tick} ticks $open_local + $open_other trickling connections are still open"

m=$(curl -s "$H/metrics")
echo "$m" | grep -q '^cirrus_requests_total{op="search"} [1-9]' || fail "metrics: $m"
echo "$m" | grep -q '^cirrus_request_errors_total{op="search"} [1-9]' || fail "error counter"
echo "$m" | grep -q '^cirrus_replica_up{group="1",replica="0",endpoint="inproc://serve-shard-1"} 1' ||
  fail "replica gauge: $m"
echo "$m" | grep -q 'cirrus_request_duration_seconds_bucket{op="search",le="+Inf"}' || fail "histogram"
echo "1 passed, 0 failed"
