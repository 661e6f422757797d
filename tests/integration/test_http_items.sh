#!/usr/bin/env bash
# The HTTP API's write and inventory resources (gateway/api.h) through `cirrus serve --http`
# with vectors only (no model): POST /v1/items (vectors, typed attributes, image_uri, a batch),
# GET /v1/items/{id}, a search that finds them, GET /v1/stats, DELETE /v1/items/{id}; and bad
# batches (unknown field, vector and image together, a wrong dimension, a non-number, an
# image without an encoder, too many items, not an object) answered 4xx/5xx with a message
# naming the item and field, leaving the catalog unchanged.
. "$(dirname "$0")/lib.sh"

ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --dim 4 --index Flat \
  --shards 2 --bind "$ep" --http ":$hp"
wait_ready "$ep"
H="http://127.0.0.1:$hp"
code() { curl -s -o "$WORK/body" -w '%{http_code}' "$@"; }
count() { curl -s "$H/v1/stats" | grep -o '"count":[0-9]*' | head -1 | cut -d: -f2; }

note "a batch of three items"
body='{"items":[
 {"id":"sku-1","vector":[1,0,0,0],"attributes":{"color":"red","price":19.5,"sizes":["s","m"]},"image_uri":"https://img.example/1.jpg"},
 {"id":"sku-2","vector":[0,1,0,0],"attributes":{"color":"blue","stock":3,"sale":true}},
 {"id":"sku-3","vector":[0,0,1,0]}]}'
[ "$(code -X POST "$H/v1/items" -d "$body")" = 200 ] || fail "upsert: $(cat "$WORK/body")"
grep -q '"items":\[{"id":"sku-1","version":[1-9][0-9]*,"status":"ok"}' "$WORK/body" ||
  fail "upsert answer: $(cat "$WORK/body")"
[ "$(grep -o '"status":"ok"' "$WORK/body" | wc -l)" = 3 ] || fail "three items: $(cat "$WORK/body")"
[ "$(count)" = 3 ] || fail "stats count $(count), expected 3: $(curl -s "$H/v1/stats")"
curl -s "$H/v1/stats" | grep -q '"groups":\[{' || fail "stats without groups"

out=$(curl -s "$H/v1/items/sku-1")
for want in '"id":"sku-1"' '"color":"red"' '"price":19.5' '"image_uri":"https://img.example/1.jpg"' \
            '"sizes":\["s","m"\]'; do
  echo "$out" | grep -q "$want" || fail "item lacks $want: $out"
done
out=$(curl -s -X POST "$H/v1/search" -d '{"vector":[0,1,0,0],"k":1}')
echo "$out" | grep -q '"hits":\[{"id":"sku-2"' || fail "search: $out"
out=$(curl -s -X POST "$H/v1/search" -d '{"vector":[1,1,1,0],"k":3,"filter":"color = \"red\""}')
echo "$out" | grep -q '"hits":\[{"id":"sku-1"' || fail "filtered search: $out"

note "a replacing write keeps one item; DELETE removes it"
[ "$(code -X POST "$H/v1/items" -d '{"items":[{"id":"sku-3","vector":[0,0,0,1]}]}')" = 200 ] ||
  fail "replace: $(cat "$WORK/body")"
[ "$(count)" = 3 ] || fail "count after replace $(count)"
[ "$(code -X DELETE "$H/v1/items/sku-3")" = 200 ] || fail "delete: $(cat "$WORK/body")"
grep -q '"id":"sku-3","version":[1-9]' "$WORK/body" || fail "delete answer: $(cat "$WORK/body")"
[ "$(code "$H/v1/items/sku-3")" = 404 ] || fail "deleted item still served"
[ "$(count)" = 2 ] || fail "count after delete $(count)"
[ "$(code -X DELETE "$H/v1/items/$(head -c 257 /dev/zero | tr '\0' a)")" = 400 ] || fail "long id"

note "bad batches change nothing"
bad() { # WANT_STATUS MESSAGE_REGEX BODY
  local got; got=$(code -X POST "$H/v1/items" -d "$3")
  [ "$got" = "$1" ] || fail "status $got (want $1) for $3: $(cat "$WORK/body")"
  grep -Eq "$2" "$WORK/body" || fail "message for $3: $(cat "$WORK/body")"
}
ok_item='{"id":"new-1","vector":[1,1,0,0]}'
bad 400 'items\[1\].colour: unknown field' "{\"items\":[$ok_item,{\"id\":\"x\",\"vector\":[1,0,0,0],\"colour\":1}]}"
bad 400 'items\[1\]: give exactly one of' "{\"items\":[$ok_item,{\"id\":\"x\",\"vector\":[1,0,0,0],\"image\":\"AAAA\"}]}"
bad 400 'items\[0\].vector\[2\]: expected a finite number' '{"items":[{"id":"x","vector":[1,0,"a",0]}]}'
bad 400 'items\[0\].id' '{"items":[{"vector":[1,0,0,0]}]}'
bad 400 'items\[0\].attributes' '{"items":[{"id":"x","vector":[1,0,0,0],"attributes":{"a":{"b":1}}}]}'
bad 400 'image_uri given twice' '{"items":[{"id":"x","vector":[1,0,0,0],"image_uri":"u","attributes":{"image_uri":"v"}}]}'
bad 400 'items: expected an array of 1..1024' '{"items":[]}'
bad 400 'extra: unknown field' "{\"items\":[$ok_item],\"extra\":1}"
bad 400 'must be a JSON object' '[1,2]'
bad 503 'encoder' '{"items":[{"id":"x","image":"iVBORw0KGgo="}]}'
many=$(python3 -c 'import json; print(json.dumps({"items":[{"id":"m%d"%i,"vector":[1,0,0,0]} for i in range(1025)]}))')
bad 400 'items: expected an array of 1..1024' "$many"
[ "$(count)" = 2 ] || fail "a bad batch changed the catalog: count $(count)"
[ "$(code "$H/v1/items/new-1")" = 404 ] || fail "an item of a refused batch was written"
[ "$(code -X PUT "$H/v1/items")" = 404 ] || fail "PUT /v1/items not 404"

note "a wrong dimension fails that item only, and says so per item"
[ "$(code -X POST "$H/v1/items" -d '{"items":[{"id":"d-1","vector":[1,0,0,0]},{"id":"d-2","vector":[1,0,0]}]}')" = 400 ] ||
  fail "wrong dimension: $(cat "$WORK/body")"
grep -Eq '"message":"item .d-2.: [^"]*dim' "$WORK/body" || fail "dimension message: $(cat "$WORK/body")"
grep -q '"id":"d-1","version":[1-9][0-9]*,"status":"ok"' "$WORK/body" || fail "d-1 status: $(cat "$WORK/body")"
[ "$(code "$H/v1/items/d-2")" = 404 ] || fail "d-2 written"
kill -0 "${PIDS[0]}" || fail "cirrus serve died"
echo "1 passed, 0 failed"
