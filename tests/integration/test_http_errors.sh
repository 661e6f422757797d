#!/usr/bin/env bash
# The HTTP API's errors and limits (gateway/api.h): every error is {"error": {"code": NAME,
# "message"}} with its status — 400 (bad JSON, nesting deeper than 32), 404, 409 (a write
# whose version is not newer than the stored one), 413 (body over 48 MiB, image over 16 MiB,
# item and query), 429 (more requests than the gateway queues, with Retry-After), 503 (no
# encoder, with Retry-After), 504 (a hung shard) — and CORS: off by default on `cirrus serve`
# (no Access-Control-* header, OPTIONS is 404), on with --http-cors on cirrus-coordinator (a
# listed origin gets the headers and its preflight answered 204; another origin gets none) and
# on `cirrus serve --http-cors "*"`.
. "$(dirname "$0")/lib.sh"

sep="tcp://127.0.0.1:$(free_port)"
cep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/shard.log" "$BIN/cirrus-shard" --dir "$WORK/shard" --bind "$sep" --create \
  --dim 4 --index Flat --log-level warn
SHARD=$LAST_PID
cat >"$WORK/map.json" <<JSON
{"bind": "$cep", "groups": [["$sep"]], "metric": "ip"}
JSON
wait_ready "$sep"
start_bg "$WORK/coord.log" "$BIN/cirrus-coordinator" --map "$WORK/map.json" \
  --backend-timeout-ms 500 --http ":$hp" --http-cors "https://shop.example, https://b.example" \
  --log-level warn
COORD=$LAST_PID
wait_ready "$cep"
H="http://127.0.0.1:$hp"

code() { rm -f "$WORK/body" "$WORK/headers"; curl -s -m 30 -D "$WORK/headers" -o "$WORK/body" -w '%{http_code}' "$@" || true; }
# expect STATUS NAME MESSAGE-REGEX CURL-ARGS...: the status and the error body's code name.
expect() {
  local want=$1 name=$2 msg=$3 got
  shift 3
  got=$(code "$@")
  [ "$got" = "$want" ] || fail "$*: HTTP $got, want $want: $(head -c 300 "$WORK/body")"
  grep -Eq "^\{\"error\":\{\"code\":\"$name\",\"message\":\"[^\"]*$msg" "$WORK/body" ||
    fail "$*: error body: $(head -c 300 "$WORK/body")"
  echo "  $want $name: $(head -c 120 "$WORK/body")"
}

note "400, 404"
expect 400 invalid_argument "" -X POST "$H/v1/search" -d 'not json'
deep=$(printf '[%.0s' $(seq 33))1$(printf ']%.0s' $(seq 33))
expect 400 invalid_argument "deeper than 32" -X POST "$H/v1/search" -d "{\"vector\":$deep}"
ok32=$(printf '[%.0s' $(seq 31))1$(printf ']%.0s' $(seq 31))
code -X POST "$H/v1/search" -d "{\"vector\":$ok32}" >/dev/null
grep -q "deeper than" "$WORK/body" && fail "32 levels refused as too deep: $(cat "$WORK/body")"
huge=$(printf '[%.0s' $(seq 100000))
expect 400 invalid_argument "deeper than 32" -X POST "$H/v1/items" -d "{\"items\":$huge}"
expect 404 not_found "no such item" "$H/v1/items/nope"
expect 404 not_found "no such endpoint" "$H/v2/nothing"

note "409: a write whose version is not newer than the stored one"
[ "$(code -X POST "$H/v1/items" -d '{"items":[{"id":"v","vector":[1,0,0,0],"version":1000}]}')" = 200 ] ||
  fail "versioned write: $(cat "$WORK/body")"
expect 409 version_conflict "item 'v'" -X POST "$H/v1/items" \
  -d '{"items":[{"id":"v","vector":[0,1,0,0],"version":999}]}'
grep -q '"items":\[{"id":"v","version":[0-9]*,"status":"stale"}\]' "$WORK/body" ||
  fail "409 without the item's status: $(cat "$WORK/body")"
curl -s "$H/v1/items/v" | grep -q '"vector":\[1' || fail "a conflicting write changed the item"
[ "$(code -X POST "$H/v1/items" -d '{"items":[{"id":"v","vector":[0,1,0,0],"version":1001}]}')" = 200 ] ||
  fail "a newer version: $(cat "$WORK/body")"

note "413: body and image limits"
head -c $((48 * 1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$WORK/big.json"
expect 413 too_large "larger than 50331648 bytes" -X POST "$H/v1/items" --data-binary "@$WORK/big.json"
python3 - "$WORK/bigimg.json" "$WORK/bigq.json" <<'PY'
import sys
b64 = "A" * ((16 * 1024 * 1024 + 3) // 3 * 4 + 4)  # just over 16 MiB decoded
open(sys.argv[1], "w").write('{"items":[{"id":"big","image":"%s"}]}' % b64)
open(sys.argv[2], "w").write('{"image":"%s","k":1}' % b64)
PY
expect 413 too_large "items\[0\]\.image: more than 16777216 bytes" -X POST "$H/v1/items" \
  --data-binary "@$WORK/bigimg.json"
expect 413 too_large "image: more than 16777216 bytes" -X POST "$H/v1/search" \
  --data-binary "@$WORK/bigq.json"

note "503 with Retry-After: no encoder for an image"
expect 503 unavailable "encoder" -X POST "$H/v1/items" -d '{"items":[{"id":"x","image":"iVBORw0KGgo="}]}'
grep -qi '^Retry-After: 1' "$WORK/headers" || fail "503 without Retry-After: $(cat "$WORK/headers")"

note "CORS on the coordinator (--http-cors with two origins)"
code -H "Origin: https://b.example" "$H/v1/stats" >/dev/null
grep -qi '^Access-Control-Allow-Origin: https://b.example' "$WORK/headers" ||
  fail "listed origin without ACAO: $(cat "$WORK/headers")"
grep -qi '^Vary: Origin' "$WORK/headers" || fail "no Vary: Origin"
code -H "Origin: https://evil.example" "$H/v1/stats" >/dev/null
grep -qi '^Access-Control' "$WORK/headers" && fail "unlisted origin got CORS headers: $(cat "$WORK/headers")"
[ "$(code -X OPTIONS -H "Origin: https://shop.example" -H "Access-Control-Request-Method: POST" \
     -H "Access-Control-Request-Headers: content-type" "$H/v1/search")" = 204 ] ||
  fail "preflight: $(cat "$WORK/body")"
for h in 'Access-Control-Allow-Origin: https://shop.example' 'Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS' \
         'Access-Control-Allow-Headers: content-type' 'Access-Control-Max-Age: 600'; do
  grep -qi "^$h" "$WORK/headers" || fail "preflight lacks $h: $(cat "$WORK/headers")"
done
expect 404 not_found "CORS is off, or this origin" -X OPTIONS -H "Origin: https://evil.example" "$H/v1/search"
code -H "Origin: https://shop.example" "$H/v1/items/nope" >/dev/null
grep -qi '^Access-Control-Allow-Origin: https://shop.example' "$WORK/headers" ||
  fail "an error answer without ACAO: $(cat "$WORK/headers")"

note "a hung shard: 504, and 429 with Retry-After once the gateway's queue (8 + 64) is full"
kill -STOP "$SHARD"
expect 504 deadline_exceeded "" "$H/v1/items/v"
F="$WORK/flood"
mkdir -p "$F"
CURLS=()
for i in $(seq 1 90); do
  curl -s -m 60 -D "$F/h$i" -o "$F/b$i" -w '%{http_code}\n' "$H/v1/items/v" >"$F/s$i" &
  CURLS+=($!)
done
for _ in $(seq 1 100); do # until one is refused (at once: the queue is full), or 10 s
  cat "$F"/s* 2>/dev/null | grep -q '^429$' && break
  sleep 0.1
done
kill -CONT "$SHARD"
wait "${CURLS[@]}" || true
statuses=$(sort "$F"/s* | uniq -c | tr '\n' ' ')
grep -qx 429 "$F"/s* || fail "no 429 among 90 requests on a hung shard: $statuses"
grep -Evqx '429|504|503|200' "$F"/s* && fail "unexpected statuses: $statuses"
f=$(grep -lx 429 "$F"/s* | head -1); i=${f##*/s}
grep -q '"code":"overloaded"' "$F/b$i" || fail "429 body: $(cat "$F/b$i")"
grep -qi '^Retry-After: 1' "$F/h$i" || fail "429 without Retry-After: $(cat "$F/h$i")"
echo "  statuses: $statuses"
for _ in $(seq 1 100); do [ "$(code "$H/v1/items/v")" = 200 ] && break; sleep 0.1; done
[ "$(code "$H/v1/items/v")" = 200 ] || fail "no recovery after the shard resumed: $(cat "$WORK/body")"

note "CORS off by default on cirrus serve; on with --http-cors '*'"
sp=$(free_port); sh=$(free_port); sp2=$(free_port); sh2=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/s1" --dim 4 --index Flat \
  --bind "tcp://127.0.0.1:$sp" --http ":$sh"
start_bg "$WORK/serve2.log" "$BIN/cirrus" serve --data "$WORK/s2" --dim 4 --index Flat \
  --bind "tcp://127.0.0.1:$sp2" --http ":$sh2" --http-cors '*'
wait_ready "tcp://127.0.0.1:$sp"
wait_ready "tcp://127.0.0.1:$sp2"
code -H "Origin: https://shop.example" "http://127.0.0.1:$sh/v1/stats" >/dev/null
grep -qi '^Access-Control' "$WORK/headers" && fail "CORS headers while off: $(cat "$WORK/headers")"
expect 404 not_found "CORS is off" -X OPTIONS -H "Origin: https://shop.example" \
  -H "Access-Control-Request-Method: POST" "http://127.0.0.1:$sh/v1/search"
code -H "Origin: https://any.example" "http://127.0.0.1:$sh2/v1/stats" >/dev/null
grep -qi '^Access-Control-Allow-Origin: \*' "$WORK/headers" || fail "serve --http-cors '*': $(cat "$WORK/headers")"
[ "$(code -X OPTIONS -H "Origin: https://any.example" -H "Access-Control-Request-Method: DELETE" \
     "http://127.0.0.1:$sh2/v1/items/a")" = 204 ] || fail "serve preflight: $(cat "$WORK/body")"
kill -0 "$COORD" || fail "the coordinator died"
note "ok"
