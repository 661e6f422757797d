#!/usr/bin/env bash
# --keep-images (issue #16) and garment item ids (issue #12): `cirrus serve --keep-images` with
# the fixture CLIP keeps each ingested item's original image; GET /v1/items/{id}/image and
# `cirrus get --image` return it byte-equal to the ingested file; it survives a restart; a
# delete removes it; an item with only an image_uri is a 302 to it; without --keep-images the
# image is a 404. A Generate with --garment-id on a composite worker resolves the kept image
# (and an image_uri file); an unknown id and an item with neither are clear errors at submit.
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }
MODEL=$FIX/clip-openai-names.safetensors
PY=/usr/bin/python3

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 24 >/dev/null 2>&1
EP=tcp://127.0.0.1:$(free_port); HP=$(free_port); WEP=tcp://127.0.0.1:$(free_port)
H="http://127.0.0.1:$HP"
C() { "$BIN/cirrus" --endpoint "$EP" --timeout 20000 "$@"; }
code() { curl -s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$@"; }
serve() { # DATA EXTRA...
  local data=$1; shift
  start_bg "$WORK/serve-$(basename "$data").log" "$BIN/cirrus" serve --data "$data" \
    --model "$MODEL" --threads 1 --index Flat --bind "$EP" --http "127.0.0.1:$HP" "$@"
  SERVE_PID=$LAST_PID
  wait_ready "$EP"
}
stop() { kill -TERM "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; }
same_image() { # ID: GET /v1/items/ID/image is the ingested file, as image/png
  [ "$(code "$H/v1/items/$1/image")" = 200 ] || fail "image of $1: $(cat "$WORK/body")"
  cmp -s "$WORK/body" "$WORK/cat/images/$1.png" || fail "image of $1 differs from the file"
  grep -qi '^content-type: image/png' "$WORK/headers" || fail "type: $(cat "$WORK/headers")"
}

note "serve --keep-images, ingest the synthetic catalog"
serve "$WORK/keep" --keep-images --worker-bind "$WEP" --job-heartbeat-ms 200
C ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null
for i in 0 7 23; do same_image "sku-$i"; done
C get --id sku-7 --no-vector --image "$WORK/got.png" >/dev/null || fail "cirrus get --image"
cmp -s "$WORK/got.png" "$WORK/cat/images/sku-7.png" || fail "cirrus get --image differs"
[ "$(code "$H/v1/items/nope/image")" = 404 ] || fail "unknown id: $(cat "$WORK/body")"
grep -q '"error":{"code":"not_found"' "$WORK/body" || fail "404 body: $(cat "$WORK/body")"

note "an item with only an image_uri: 302 to it; with neither: 404"
cp "$WORK/cat/images/sku-5.png" "$WORK/uri.png"
body="{\"items\":[{\"id\":\"uri-1\",\"vector\":$(C get --id sku-5 | jq -c .vector),\"image_uri\":\"file://$WORK/uri.png\"},
 {\"id\":\"web-1\",\"vector\":$(C get --id sku-6 | jq -c .vector),\"image_uri\":\"https://img.example/1.jpg\"},
 {\"id\":\"bare-1\",\"vector\":$(C get --id sku-6 | jq -c .vector)}]}"
[ "$(code -X POST "$H/v1/items" -d "$body")" = 200 ] || fail "upsert: $(cat "$WORK/body")"
[ "$(code "$H/v1/items/uri-1/image")" = 302 ] || fail "image_uri: $(cat "$WORK/body")"
grep -qi "^location: file://$WORK/uri.png" "$WORK/headers" || fail "Location: $(cat "$WORK/headers")"
[ "$(code "$H/v1/items/bare-1/image")" = 404 ] || fail "no image: $(cat "$WORK/body")"
grep -q 'no stored image' "$WORK/body" || fail "404 message: $(cat "$WORK/body")"

note "generate with --garment-id on a composite worker"
if $PY -c "import zmq, google.protobuf, PIL" 2>/dev/null && [ -x "$BIN/cirrus-worker" ]; then
  start_bg "$WORK/worker.log" "$BIN/cirrus-worker" --connect "$WEP" --backend composite \
    --heartbeat-ms 200 --worker-id w1
  $PY -c "from PIL import Image; Image.new('RGB',(96,128),(200,120,90)).save('$WORK/p.png')"
  gen() { timeout 60 "$BIN/cirrus" --endpoint "$EP" --timeout 20000 generate \
    --person "$WORK/p.png" --category upper_body "$@"; }
  J=$(gen --garment-id sku-7 --wait -o "$WORK/tryon.png") || fail "generate: $J"
  head -c 8 "$WORK/tryon.png" | od -An -tx1 | grep -q "89 50 4e 47" || fail "no PNG result"
  C job "$(echo "$J" | grep -o 'j-[A-Za-z0-9_-]*' | head -1)" --json | grep -q '"state":"succeeded"' ||
    fail "job: $J"
  gen --garment-id uri-1 --wait -o "$WORK/tryon2.png" >/dev/null || fail "generate from image_uri"
  expect_error "garment item 'sku-nope' not found" gen --garment-id sku-nope
  expect_error "garment item 'bare-1': it has neither" gen --garment-id bare-1
  expect_error "garment item 'web-1': its image_uri is an http\(s\) URL" gen --garment-id web-1
else
  echo "  skipped: no python3 zmq/protobuf/PIL or cirrus-worker"
fi

note "restart: the images are still there; a delete removes one"
stop
serve "$WORK/keep" --keep-images
same_image sku-23
[ "$(code -X DELETE "$H/v1/items/sku-23")" = 200 ] || fail "delete: $(cat "$WORK/body")"
[ "$(code "$H/v1/items/sku-23/image")" = 404 ] || fail "deleted item's image: $(cat "$WORK/body")"
grep '"sku-23"' "$WORK/cat/catalog.jsonl" >"$WORK/one.jsonl"
C ingest --catalog "$WORK/one.jsonl" --images "$WORK/cat" >/dev/null
same_image sku-23
stop

note "without --keep-images: no image is kept"
serve "$WORK/plain"
C ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null
[ "$(code "$H/v1/items/sku-7/image")" = 404 ] || fail "image kept without --keep-images"
[ "$(code "$H/v1/items/sku-7")" = 200 ] || fail "item missing: $(cat "$WORK/body")"
stop
echo "1 passed, 0 failed"
