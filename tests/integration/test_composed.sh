#!/usr/bin/env bash
# Composed queries through the distributed system: a coordinator, 2 shard groups x 2 replicas
# and a CLIP encoder (the fixture model) as separate processes. A catalog is ingested as
# images; then composed searches ("like this item, but <caption>") through the coordinator
# must equal the exact top-k computed from the stored vectors and the composed query vector
# computed independently by `cirrus compose`.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
MODEL=$FIX/clip-openai-names.safetensors

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 210 >/dev/null 2>&1
ep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --dim 64 --index Flat \
  --model "$MODEL" --phi "$FIX/phi.safetensors" --combiner "$FIX/combiner.safetensors")
C=("$BIN/cirrus" --endpoint "$ep" --timeout 20000)

note "ingest images through the coordinator (the encoder embeds them)"
"${C[@]}" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" 2>/dev/null
"${C[@]}" --json stats | grep -q '"count":210' || fail "not all items stored: $("${C[@]}" --json stats)"

# The stored raw vector of an item equals the model's embedding of its image.
ref=$("${C[@]}" --json get --id sku-17 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
img=$("$BIN/cirrus" embed --model "$MODEL" --image "$WORK/cat/images/sku-17.png" |
  sed 's/.*"embedding":\[\([^]]*\)\].*/\1/')
awk -v a="$ref" -v b="$img" 'BEGIN { n = split(a, x, ","); split(b, y, ","); e = 0;
  for (i = 1; i <= n; i++) e += (x[i] - y[i]) ^ 2; exit !(e < 1e-8) }' ||
  fail "stored vector differs from the image embedding"

for method in searle combiner sum; do
  note "composed search, method $method: equals the exact top-10 of the composed vector"
  got=$("${C[@]}" --json search --ref-id sku-17 --caption "is red and striped" --method "$method" -k 10 |
    grep -o '"id":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')
  vec=$("$BIN/cirrus" compose --model "$MODEL" --method "$method" --phi "$FIX/phi.safetensors" \
    --combiner "$FIX/combiner.safetensors" --ref-vector "$ref" --caption "is red and striped" |
    sed 's/.*"embedding":\[\([^]]*\)\].*/\1/')
  want=$("${C[@]}" --json search --vector "$vec" -k 10 --exact |
    grep -o '"id":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')
  echo "  $method: $got"
  [ -n "$got" ] && [ "$got" = "$want" ] || fail "$method: coordinator gave [$got], exact top-10 is [$want]"
done

note "composed search from an uploaded image equals the one from the stored item"
a=$("${C[@]}" --json search --image "$WORK/cat/images/sku-17.png" --caption "in blue" --method sum -k 5 |
  grep -o '"id":"[^"]*"' | tr '\n' ' ')
b=$("${C[@]}" --json search --ref-id sku-17 --caption "in blue" --method sum -k 5 |
  grep -o '"id":"[^"]*"' | tr '\n' ' ')
[ "$a" = "$b" ] || fail "image reference [$a] differs from item reference [$b]"

note "filters and grouping on composed queries"
out=$("${C[@]}" --json search --ref-id sku-17 --caption "is red" --method searle -k 5 \
  --filter 'color = "red"')
echo "$out" | grep -o '"color":"[a-z]*"' | grep -vq '"color":"red"' && fail "filter violated: $out"
out=$("${C[@]}" --json search --ref-id sku-17 --caption "is red" --method searle -k 5 --group-by product)
n=$(echo "$out" | grep -o '"product":"[^"]*"' | sort | uniq -d | wc -l)
[ "$n" = 0 ] || fail "group_by returned two hits of one product: $out"

note "bad composed input"
expect_error "reference item 'nope' not found" "${C[@]}" search --ref-id nope --caption red
# A PNG whose header claims 100000 x 100000 pixels: refused from the header, before decoding.
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00\x00\x00\x00\x00' \
  >"$WORK/huge.png"
expect_error "limit" "${C[@]}" search --image "$WORK/huge.png" --caption red
head -c 3000 /dev/urandom >"$WORK/junk.jpg"
expect_error "image" "${C[@]}" search --image "$WORK/junk.jpg" --caption red
echo "1 passed, 0 failed"
