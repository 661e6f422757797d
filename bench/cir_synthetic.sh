#!/usr/bin/env bash
# The synthetic CIR benchmark of docs/evaluation.md, with the demo model:
#   bench/cir_synthetic.sh [BUILD_DIR] [MODEL_DIR] [N_ITEMS] [N_QUERIES]
# A catalog of N_ITEMS garments (cirrus-bench catalog), its CIRCO-layout benchmark
# (tools/make_cir_benchmark.py: color, pattern, category, and color+pattern changes), indexed
# once through `cirrus serve` (Flat, exact), then `cirrus eval run` per method. Prints a
# Markdown table: Recall@1/5/10 of the target and mAP@10 over every right answer, per method
# and per kind of change.
set -euo pipefail
BUILD=${1:-build}; MODEL=${2:-${1:-build}/models/demo}; N=${3:-700}; Q=${4:-400}
BIN="$(cd "$BUILD/bin" && pwd)"; SRC="$(cd "$(dirname "$0")/.." && pwd)"
W=$(mktemp -d /tmp/cirrus-cir-XXXXXX)
SERVE=""
trap '[ -n "$SERVE" ] && kill -9 $SERVE 2>/dev/null; rm -rf "$W"' EXIT
"$BIN/cirrus-bench" catalog --out "$W/cat" --n "$N" >/dev/null 2>&1
python3 "$SRC/tools/make_cir_benchmark.py" --catalog "$W/cat" --out "$W/bench" --queries "$Q" >&2
p=$((10000 + RANDOM % 22000)); ep="tcp://127.0.0.1:$p"
"$BIN/cirrus" serve --data "$W/data" --model "$MODEL" --phi "$MODEL/phi.safetensors" \
  --index Flat --bind "$ep" 2>"$W/serve.log" &
SERVE=$!
for _ in $(seq 1 300); do "$BIN/cirrus" --endpoint "$ep" health >/dev/null 2>&1 && break; sleep 0.1; done
first=--index-catalog
echo "| method | change | queries | Recall@1 | Recall@5 | Recall@10 | mAP@10 |"
echo "|---|---|---|---|---|---|---|"
for m in searle sum text image; do
  "$BIN/cirrus" --endpoint "$ep" eval run --dataset circo --root "$W/bench" $first --method "$m" \
    --out "$W/out-$m" --k 50 --quiet >/dev/null 2>"$W/eval-$m.log" || { cat "$W/eval-$m.log" >&2; exit 1; }
  first=""
  python3 - "$W/bench/annotations/val.json" "$W/out-$m" "$m" <<'PY'
import json, sys, glob
ann = {q["id"]: q for q in json.load(open(sys.argv[1]))}
pred = json.load(open(sys.argv[2] + "/circo_val.json"))
rows = {}
for qid, ranking in pred.items():
    q = ann[int(qid)]
    ranking = [int(x) for x in ranking]
    gt = set(q["gt_img_ids"])
    hits, ap = 0, 0.0
    for i, x in enumerate(ranking[:10]):
        if x in gt:
            hits += 1
            ap += hits / (i + 1)
    ap /= min(len(gt), 10)
    r = [int(q["target_img_id"] in ranking[:k]) for k in (1, 5, 10)]
    for kind in (q["semantic_aspects"][0], "all"):
        rows.setdefault(kind, []).append(r + [ap])
for kind in ["color", "pattern", "category", "color+pattern", "all"]:
    v = rows[kind]
    n = len(v)
    cols = [sum(x[i] for x in v) / n for i in range(4)]
    print(f"| {sys.argv[3]} | {kind} | {n} | " + " | ".join(f"{c:.3f}" for c in cols) + " |")
PY
done
