#!/usr/bin/env bash
# make demo: cirrus end to end in embedded mode (`cirrus serve`: coordinator + 2 shards + CLIP
# encoder in one process) on a synthetic garment catalog generated on the fly.
#
# With real CLIP weights (CIRRUS_MODEL=path to a .safetensors file or a Hugging Face directory,
# optionally CIRRUS_PHI=SEARLE phi head; see tools/fetch_weights.sh) the rankings are
# meaningful. Without them the demo builds a tiny RANDOM CLIP and says so: every code path runs,
# but the rankings are not semantic.
set -euo pipefail
BUILD=${1:-build}
BIN="$(cd "$BUILD/bin" && pwd)"
WORK=$(mktemp -d /tmp/cirrus-demo-XXXXXX)
N=${CIRRUS_DEMO_ITEMS:-3000}
PY=/usr/bin/python3 # Debian's, with python3-pil (make deps); not a pyenv one
SERVE=""
trap '[ -n "$SERVE" ] && kill -9 "$SERVE" 2>/dev/null; rm -rf "$WORK"' EXIT

port() { local p; while :; do p=$((10000 + RANDOM % 22000)); (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
wait_ready() { for _ in $(seq 1 300); do "$BIN/cirrus" --endpoint "$1" --timeout 300 health >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

MODEL=${CIRRUS_MODEL:-}
PHI=${CIRRUS_PHI:-}
DEMO_MODEL=0
if [ -z "$MODEL" ] && [ -f models/clip-vit-base-patch32/model.safetensors ]; then
  MODEL=models/clip-vit-base-patch32
fi
DEMO_DIR="$(dirname "$BIN")/models/demo" # unpacked from models/demo by the build
if [ -z "$MODEL" ] && [ -f "$DEMO_DIR/model.safetensors" ]; then
  say "Using the demo model (models/demo): a small CLIP trained on synthetic garment images"
  echo "It knows 5 shapes, 7 colors and 4 patterns, nothing else: it is not CLIP (see models/demo/README.md)."
  MODEL="$DEMO_DIR"
  PHI="$DEMO_DIR/phi.safetensors"
  DEMO_MODEL=1
fi
if [ -z "$MODEL" ]; then
  say "No real CLIP weights found (set CIRRUS_MODEL, or run tools/fetch_weights.sh)"
  echo "Using a tiny RANDOM CLIP: every code path runs, but the rankings below are NOT semantic."
  "$BIN/cirrus-bench" tiny-model --out "$WORK/model"
  MODEL="$WORK/model/model.safetensors"
  PHI="$WORK/model/phi.safetensors"
fi

say "Generating a catalog of $N garments (5 shapes x 7 colors x 4 patterns) with attributes"
"$BIN/cirrus-bench" catalog --out "$WORK/catalog" --n "$N" 2>/dev/null
head -2 "$WORK/catalog/catalog.jsonl"

EP="tcp://127.0.0.1:$(port)"
HTTP="127.0.0.1:$(port)"
WEP="tcp://127.0.0.1:$(port)" # the job broker's worker endpoint (try-on at the end)
OUT="$(dirname "$BIN")/demo" # what the demo leaves behind: the try-on PNG
say "Starting cirrus serve (coordinator + 2 shards + encoder, one process) on $EP"
phi_opt=()
[ -n "$PHI" ] && phi_opt=(--phi "$PHI")
"$BIN/cirrus" serve --data "$WORK/data" --model "$MODEL" "${phi_opt[@]}" --shards 2 \
  --index HNSW32 --keep-images --bind "$EP" --http "$HTTP" --worker-bind "$WEP" 2>"$WORK/serve.log" &
SERVE=$!
wait_ready "$EP"
echo "The web page: http://$HTTP/ (while the demo runs; CIRRUS_DEMO_HOLD=1 keeps it up at the end)"
C=("$BIN/cirrus" --endpoint "$EP" --timeout 30000)

say "Ingesting the catalog: each image is encoded by CLIP and routed to its shard"
"${C[@]}" ingest --catalog "$WORK/catalog/catalog.jsonl" --images "$WORK/catalog" --batch 32

method=sum
[ -n "$PHI" ] && method=searle
# The reference: a blue striped dress. (sku-42, the garment of the try-on below, is already
# red: "like sku-42 but red" would ask for no change at all.)
REF=sku-43
ref=$(grep -m1 "\"id\":\"$REF\"" "$WORK/catalog/catalog.jsonl")
say "The reference: $REF ($(sed 's/.*"attributes"://; s/}}$/}/' <<<"$ref"))"
say "\"Like $REF, but red\" ($method)"
"${C[@]}" search --ref-id "$REF" --caption "is red" --method "$method" -k 5
# The check the demo makes of itself: red, and the reference's category and pattern kept.
"${C[@]}" --json search --ref-id "$REF" --caption "is red" --method "$method" -k 5 >"$WORK/red.json"
verdict=$(python3 - "$WORK/red.json" "$ref" <<'PY'
import json, sys
hits = json.loads(open(sys.argv[1]).read())["hits"]
ref = json.loads(sys.argv[2])["attributes"]
good = [h for h in hits if h["attributes"].get("color") == "red"
        and h["attributes"].get("category") == ref["category"]
        and h["attributes"].get("pattern") == ref["pattern"]]
print(f"{len(good)} of {len(hits)} hits are red, {ref['pattern']}, of category {ref['category']}")
PY
)
echo "check: $verdict"
if [ "$DEMO_MODEL" = 1 ] && ! grep -q '^[1-9]' <<<"$verdict"; then
  echo "the demo model did not find red versions of $REF" >&2
  exit 1
fi
say "...red, under 60 and in stock (filter)"
"${C[@]}" search --ref-id "$REF" --caption "is red" --method "$method" -k 5 \
  --filter 'color = "red" and price < 60 and in_stock = true'
say "...dotted instead, one hit per product (group by product), as JSON for scripts"
"${C[@]}" --json search --ref-id "$REF" --caption "is dotted" --method "$method" -k 3 \
  --group-by product
say "Text query: \"a blue striped dress\""
"${C[@]}" search --text "a blue striped dress" -k 5
say "Image query: the picture of sku-7"
"${C[@]}" search --image "$WORK/catalog/images/sku-7.png" -k 3

say "kill -9 the whole process, restart, and check that nothing acknowledged was lost"
before=$("${C[@]}" --json stats | grep -o '"count":[0-9]*' | head -1 | cut -d: -f2)
kill -9 "$SERVE"; wait "$SERVE" 2>/dev/null || true
"$BIN/cirrus" serve --data "$WORK/data" --model "$MODEL" "${phi_opt[@]}" --shards 2 \
  --keep-images --bind "$EP" --http "$HTTP" --worker-bind "$WEP" 2>"$WORK/serve2.log" &
SERVE=$!
wait_ready "$EP"
after=$("${C[@]}" --json stats | grep -o '"count":[0-9]*' | head -1 | cut -d: -f2)
echo "items before the kill: $before, after the restart: $after"
[ "$before" = "$after" ] || { echo "LOST WRITES" >&2; exit 1; }

say "Bad requests get clear errors and change nothing"
"${C[@]}" search --ref-id no-such-sku --caption "is red" || true
"${C[@]}" search --text "red" --filter 'colour = "red"' || true
"${C[@]}" search --text "red" --filter 'price < ' || true
say "Try-on: sku-42 on a generated person, by a composite worker (a CPU baseline, no diffusion)"
echo "A real deployment runs ladi-vton or mgd workers on GPUs (worker/README.md); the job path is the same."
WORKER=""
"$BIN/cirrus-worker" --connect "$WEP" --backend composite --step-ms 40 \
  --worker-id demo-composite 2>"$WORK/worker.log" &
WORKER=$!
trap '[ -n "$SERVE" ] && kill -9 "$SERVE" 2>/dev/null; [ -n "$WORKER" ] && kill -9 "$WORKER" 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
"$PY" tools/demo_person.py "$OUT/person.png"
case "$(sed -n 43p "$WORK/catalog/catalog.jsonl" | grep -o '"category":"[a-z]*"' | cut -d'"' -f4)" in
  dress) cat=dresses ;; trousers|skirt) cat=lower_body ;; *) cat=upper_body ;;
esac
"${C[@]}" generate --person "$OUT/person.png" --garment-id sku-42 \
  --category "$cat" --steps 20 --key demo-tryon-sku-42 --wait -o "$OUT/tryon.png"
echo "wrote $OUT/tryon.png (the person: $OUT/person.png; the garment: sku-42's image, kept by serve --keep-images)"
echo "The same try-on from the web page: http://$HTTP/ (search, then \"Try on\" on a result)"
"${C[@]}" jobs | head -5
kill -TERM "$WORKER"; wait "$WORKER" 2>/dev/null || true; WORKER=""

say "Stats"
"${C[@]}" stats | head -20
if [ "${CIRRUS_DEMO_HOLD:-0}" = 1 ]; then
  say "Holding: the web page is at http://$HTTP/ (Ctrl-C to stop)"
  wait "$SERVE"
fi
kill -TERM "$SERVE"; wait "$SERVE"; SERVE=""
say "Done: cirrus serve stopped cleanly (writes finished, indexes snapshotted)."
