#!/usr/bin/env bash
# The demo model (models/demo, unpacked by the build into build/models/demo) answers composed queries right: through `cirrus serve`
# over a synthetic catalog, "like sku-N but red" (searle) returns red garments of sku-N's
# shape and pattern first, for references of every shape; a text query "a blue striped dress"
# returns blue striped dresses. A random model fails this (about 1 hit in 140 is right).
. "$(dirname "$0")/lib.sh"
M="$BIN/../models/demo"
[ -f "$M/model.safetensors" ] || fail "$M/model.safetensors missing (the build unpacks it)"

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 700 >/dev/null 2>&1
ep="tcp://127.0.0.1:$(free_port)"
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --model "$M" \
  --phi "$M/phi.safetensors" --shards 2 --index Flat --bind "$ep"
wait_ready "$ep"
C=("$BIN/cirrus" --endpoint "$ep" --timeout 30000)
"${C[@]}" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null 2>&1

check() { # NAME WANT_CATEGORY WANT_PATTERN WANT_COLOR (reads JSON hits on stdin)
  python3 -c '
import json, sys
hits = json.load(sys.stdin)["hits"]
name, k, p, c = sys.argv[1:5]
good = sum(1 for h in hits if (h["attributes"]["category"], h["attributes"]["pattern"], h["attributes"]["color"]) == (k, p, c))
print(f"  {name}: {good} of {len(hits)} hits are {c} {p} {k}")
sys.exit(0 if good >= 3 else 1)' "$@"
}
for n in 1 43 85 127 169; do # products 0, 6, 12, 18, 24: every shape, every pattern
  ref=$(sed -n "$((n + 1))p" "$WORK/cat/catalog.jsonl")
  k=$(grep -o '"category":"[a-z]*"' <<<"$ref" | cut -d'"' -f4)
  p=$(grep -o '"pattern":"[a-z]*"' <<<"$ref" | cut -d'"' -f4)
  "${C[@]}" --json search --ref-id "sku-$n" --caption "is red" --method searle -k 5 |
    check "sku-$n ($p $k) + is red" "$k" "$p" red || fail "composed query for sku-$n"
done
"${C[@]}" --json search --text "a blue striped dress" -k 5 | check "text" dress striped blue ||
  fail "text query"
echo "1 passed, 0 failed"
