#!/usr/bin/env bash
# GET /v1/schema through `cirrus serve --http` with two shard groups: the attributes the items
# hold, merged over the groups (string values with counts summed, most frequent first; numeric
# ranges widened; integer vs number; bool counts), following writes, replaces and deletes.
. "$(dirname "$0")/lib.sh"

ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --dim 4 --index Flat \
  --shards 2 --bind "$ep" --http ":$hp"
wait_ready "$ep"
H="http://127.0.0.1:$hp"
code() { curl -s -o "$WORK/body" -w '%{http_code}' "$@"; }

note "an empty catalog has an empty schema"
[ "$(code "$H/v1/schema")" = 200 ] || fail "schema: $(cat "$WORK/body")"
grep -q '"attributes":\[\]' "$WORK/body" || fail "empty schema: $(cat "$WORK/body")"

note "40 items over two groups"
python3 - "$WORK/items.json" <<'PY'
import json, sys
colors = ["red", "red", "red", "blue", "blue", "green", "black", "white"]
items = []
for i in range(40):
    items.append({"id": "sku-%d" % i, "vector": [1, i % 3, i % 5, 1],
                  "attributes": {"color": colors[i % 8], "price": 5 + i * 2.5,
                                 "stock": i, "in_stock": i % 4 != 0,
                                 "sizes": ["s", "m"] if i % 2 else ["l"]}})
json.dump({"items": items}, open(sys.argv[1], "w"))
PY
[ "$(code -X POST "$H/v1/items" --data-binary "@$WORK/items.json")" = 200 ] ||
  fail "upsert: $(cat "$WORK/body")"
stats=$(curl -s "$H/v1/stats")
python3 -c 'import json,sys; g=json.loads(sys.argv[1])["groups"]; assert len(g)==2 and all(x["count"]>0 for x in g), g' \
  "$stats" || fail "items not on both groups: $stats"

check() { # PYTHON-ASSERTIONS on `s`, the schema
  curl -s "$H/v1/schema" > "$WORK/schema.json"
  python3 - "$WORK/schema.json" "$1" <<'PY' || fail "schema: $(cat "$WORK/schema.json")"
import json, sys
s = json.load(open(sys.argv[1]))
a = {x["name"]: x for x in s["attributes"]}
exec(sys.argv[2])
PY
}
check '
assert s["items"] == 40 and s["partial"] is False and s["missing_groups"] == []
assert [x["name"] for x in s["attributes"]] == sorted(a), "sorted by name"
c = a["color"]
assert c["type"] == "string" and c["types"] == ["string"] and c["items"] == 40, c
assert c["values"] == [{"value": "red", "count": 15}, {"value": "blue", "count": 10},
                       {"value": "black", "count": 5}, {"value": "green", "count": 5},
                       {"value": "white", "count": 5}], c["values"]
assert c["distinct"] == 5
p = a["price"]
assert p["type"] == "number" and p["min"] == 5 and p["max"] == 102.5 and "values" not in p, p
st = a["stock"]
assert st["type"] == "integer" and st["min"] == 0 and st["max"] == 39, st
assert isinstance(st["min"], int), st
b = a["in_stock"]
assert b["type"] == "bool" and b["true"] == 30 and b["false"] == 10, b
z = a["sizes"]
assert {v["value"]: v["count"] for v in z["values"]} == {"s": 20, "m": 20, "l": 20}, z
'

note "a replace and a delete move the counts and the range"
[ "$(code -X POST "$H/v1/items" -d '{"items":[{"id":"sku-0","vector":[1,0,0,1],"attributes":{"color":"pink","price":1000}}]}')" = 200 ] ||
  fail "replace: $(cat "$WORK/body")"
[ "$(code -X DELETE "$H/v1/items/sku-39")" = 200 ] || fail "delete: $(cat "$WORK/body")"
check '
assert s["items"] == 39, s["items"]
c = {v["value"]: v["count"] for v in a["color"]["values"]}
assert c["red"] == 14 and c["pink"] == 1 and c["white"] == 4, c
assert a["price"]["max"] == 1000 and a["price"]["items"] == 39
assert a["stock"]["items"] == 38 and a["stock"]["max"] == 38 and a["stock"]["min"] == 1
assert a["in_stock"]["false"] == 9 and a["in_stock"]["true"] == 29
'

note "a filter built from the schema finds what the counts say"
out=$(curl -s -X POST "$H/v1/search" -d '{"vector":[1,1,1,1],"k":100,"filter":"color = \"blue\""}')
n=$(echo "$out" | grep -o '"id":"sku-[0-9]*"' | wc -l)
[ "$n" = 10 ] || fail "blue items: $n, schema says 10: $out"

[ "$(code -X POST "$H/v1/schema")" = 404 ] || fail "POST /v1/schema not 404: $(cat "$WORK/body")"
kill -0 "${PIDS[0]}" || fail "cirrus serve died"
note "ok"
