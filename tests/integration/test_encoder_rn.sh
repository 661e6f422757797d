#!/usr/bin/env bash
# A CLIP with the ModifiedResNet image tower (../shared/fixtures/clip-rn-tiny) through every
# front: `cirrus embed` (image files decoded, resized to 96 px and embedded: within 1e-3 of
# OpenAI CLIP's outputs for the PNGs, also after removing the mean), `cirrus-encoder` (health,
# stats), and `cirrus serve` with the Combiner and phi heads (ingest images, composed searches
# equal to the exact top-k of the vector `cirrus compose` makes from the stored reference).
. "$(dirname "$0")/lib.sh"

SHARED=${CIRRUS_SHARED_DIR:-}
FIX="$SHARED/fixtures/clip-rn-tiny"
TINY="$SHARED/fixtures/clip-tiny" # its Combiner and phi fit (embedding 64, text width 128)
MODEL="$FIX/clip-rn-openai-names.safetensors"
if [ ! -f "$MODEL" ] || [ ! -f "$TINY/combiner.safetensors" ]; then
  echo "SKIP: clip-rn-tiny / clip-tiny fixtures not found under ${SHARED:-(CIRRUS_SHARED_DIR unset)}"
  exit 77
fi
PY=python3
command -v "$PY" >/dev/null || { echo "SKIP: python3 not found"; exit 77; }

note "cirrus embed of the fixture's PNG files against OpenAI CLIP's image_embeds"
pngs=(img0_40x30_rgb.png img1_32x32_rgb.png img2_23x57_rgb.png img3_80x64_rgba.png img4_33x33_l.png)
args=()
for f in "${pngs[@]}"; do args+=(--image "$FIX/images/$f"); done
"$BIN/cirrus" embed --model "$MODEL" --threads 1 "${args[@]}" >"$WORK/emb.jsonl"
[ "$(wc -l <"$WORK/emb.jsonl")" -eq 5 ] || fail "embed: 5 lines expected"
"$PY" - "$FIX/expected.safetensors" "$WORK/emb.jsonl" <<'EOF' || fail "embed parity"
import json, math, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
    info = hdr["image_embeds"]
    f.seek(8 + n + info["data_offsets"][0])
    rows, dim = info["shape"]
    want = struct.unpack("<%df" % (rows * dim), f.read(4 * rows * dim))
want = [list(want[i * dim:(i + 1) * dim]) for i in range(5)]
got = [json.loads(line)["embedding"] for line in open(sys.argv[2])]
def worst(a, b):
    w = 0
    for x, y in zip(a, b):
        num = sum((p - q) ** 2 for p, q in zip(x, y))
        w = max(w, math.sqrt(num / sum(q * q for q in y)))
    return w
def center(m):
    mean = [sum(c) / len(m) for c in zip(*m)]
    return [[v - u for v, u in zip(r, mean)] for r in m]
plain, centered = worst(got, want), worst(center(got), center(want))
print(f"  PNG embeddings: rel L2 err {plain:.2e}, after removing the mean {centered:.2e}")
sys.exit(0 if plain <= 1e-3 and centered <= 1e-3 else 1)
EOF

note "cirrus-encoder serves the RN model"
ep="tcp://127.0.0.1:$(free_port)"
start_bg "$WORK/enc.log" "$BIN/cirrus-encoder" --model "$MODEL" --bind "$ep" --threads 1 \
  --phi "$TINY/phi.safetensors" --combiner "$TINY/combiner.safetensors"
enc=$LAST_PID
wait_ready "$ep"
stats=$("$BIN/cirrus" --endpoint "$ep" --json stats)
echo "$stats" | grep -q '"dim":64' || fail "encoder stats: $stats"
kill -TERM "$enc"
wait "$enc" || fail "cirrus-encoder did not exit 0: $(tail -3 "$WORK/enc.log")"

note "cirrus serve with the RN model: ingest images, composed searches"
mkdir -p "$WORK/cat"
: >"$WORK/cat/catalog.jsonl"
i=0
for f in "${pngs[@]}" img5_60x45.jpg; do
  cp "$FIX/images/$f" "$WORK/cat/"
  echo "{\"id\":\"it-$i\",\"image\":\"$f\",\"attributes\":{\"n\":$i}}" >>"$WORK/cat/catalog.jsonl"
  i=$((i + 1))
done
ep="tcp://127.0.0.1:$(free_port)"
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --model "$MODEL" --index Flat \
  --phi "$TINY/phi.safetensors" --combiner "$TINY/combiner.safetensors" --bind "$ep" --threads 1
serve=$LAST_PID
wait_ready "$ep" 60
C=("$BIN/cirrus" --endpoint "$ep" --timeout 20000)
"${C[@]}" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" 2>/dev/null
"${C[@]}" --json stats | grep -q '"count":6' || fail "not all items stored: $("${C[@]}" --json stats)"
ref=$("${C[@]}" --json get --id it-2 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
for method in combiner searle sum; do
  got=$("${C[@]}" --json search --ref-id it-2 --caption "is red and striped" --method "$method" -k 6 |
    grep -o '"id":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')
  vec=$("$BIN/cirrus" compose --model "$MODEL" --method "$method" --phi "$TINY/phi.safetensors" \
    --combiner "$TINY/combiner.safetensors" --ref-vector "$ref" --caption "is red and striped" |
    sed 's/.*"embedding":\[\([^]]*\)\].*/\1/')
  want=$("${C[@]}" --json search --vector "$vec" -k 6 --exact |
    grep -o '"id":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')
  echo "  $method: $got"
  [ -n "$got" ] && [ "$got" = "$want" ] || fail "$method: serve gave [$got], exact top-6 is [$want]"
done
kill -TERM "$serve"
wait "$serve" || fail "serve did not exit 0: $(tail -3 "$WORK/serve.log")"
echo "1 passed, 0 failed"
