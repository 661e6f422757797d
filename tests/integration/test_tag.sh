#!/usr/bin/env bash
# `cirrus tag` against a reference computed independently with numpy: the image embeddings
# are the fixture's (OpenAI CLIP's image_embeds for clip-rn-tiny's PNGs, which cirrus embed
# reproduces within 1e-6), the prompt embeddings the text tower's outputs (`cirrus embed
# --text` of each filled template); probabilities = softmax(100 x cos).
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-rn-tiny
MODEL=$FIX/clip-rn-openai-names.safetensors
[ -f "$MODEL" ] || { echo "SKIP: $FIX not found"; exit 77; }
PY=
for p in "${CIRRUS_PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$p" ] && "$p" -c 'import numpy' >/dev/null 2>&1; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "SKIP: no python3 with numpy"; exit 77; }

imgs=("$FIX/images/img0_40x30_rgb.png" "$FIX/images/img1_32x32_rgb.png" "$FIX/images/img3_80x64_rgba.png")
"$BIN/cirrus" tag --model "$MODEL" --threads 1 --attribute color=red,blue,green,black \
  --attribute kind=dress,shirt --template "a photo of a {} garment" "${imgs[@]}" >"$WORK/tag.jsonl"
for v in red blue green black dress shirt; do
  "$BIN/cirrus" embed --model "$MODEL" --threads 1 --text "a photo of a $v garment"
done >"$WORK/prompts.jsonl"

note "cirrus tag equals softmax(100 cos) from the fixture's image embeddings"
"$PY" - "$FIX/expected.safetensors" "$WORK/tag.jsonl" "$WORK/prompts.jsonl" <<'PYEOF' || fail "tag"
import json, struct, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    info = json.loads(f.read(n))["image_embeds"]
    f.seek(8 + n + info["data_offsets"][0])
    emb = np.frombuffer(f.read(4 * int(np.prod(info["shape"]))), "<f4").reshape(info["shape"])
img = emb[[0, 1, 3]].astype(np.float64)
txt = np.array([json.loads(l)["embedding"] for l in open(sys.argv[3])], np.float64)
img /= np.linalg.norm(img, axis=1, keepdims=True)
txt /= np.linalg.norm(txt, axis=1, keepdims=True)
got = [json.loads(l) for l in open(sys.argv[2])]
attrs = {"color": (["red", "blue", "green", "black"], txt[:4]), "kind": (["dress", "shirt"], txt[4:])}
worst, ok = 0.0, len(got) == 3
for i, row in enumerate(got):
    for name, (values, t) in attrs.items():
        logit = 100 * t @ img[i]
        p = np.exp(logit - logit.max()); p /= p.sum()
        g = row["attributes"][name]
        gp = np.array([g["probs"][v] for v in values])
        worst = max(worst, float(np.abs(gp - p).max()), abs(g["p"] - p.max()))
        ok &= g["value"] == values[int(p.argmax())]
print(f"  3 images x 2 attributes: largest probability difference {worst:.2e}")
sys.exit(0 if ok and worst < 1e-4 else 1)
PYEOF

note "bad arguments"
expect_error "attribute" "$BIN/cirrus" tag --model "$MODEL" --attribute color "${imgs[0]}"
expect_error "template" "$BIN/cirrus" tag --model "$MODEL" --attribute c=a,b --template "x" "${imgs[0]}"
echo "1 passed, 0 failed"
