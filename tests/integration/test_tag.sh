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

TPY=
for p in "${CIRRUS_PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$p" ] && "$p" -c 'import torch, numpy' >/dev/null 2>&1; then TPY=$p; break; fi
done
if [ -n "$TPY" ]; then
  note "learned context (CoOp layout, random ctx [4, 128]) against tools/torch_peer.py's text tower"
  "$TPY" - "$WORK/ctx.safetensors" <<'PYEOF'
import json, struct, sys
import numpy as np
ctx = (np.random.default_rng(5).standard_normal((4, 128)) * 0.05).astype("<f4")
hdr = json.dumps({"ctx": {"dtype": "F32", "shape": [4, 128], "data_offsets": [0, ctx.nbytes]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + ctx.tobytes())
PYEOF
  "$BIN/cirrus" tag --model "$MODEL" --threads 1 --attribute color=red,blue,green,black \
    --prompts "$WORK/ctx.safetensors" "${imgs[@]}" >"$WORK/tagctx.jsonl"
  for v in red blue green black; do "$BIN/cirrus" tokenize "X X X X $v."; done >"$WORK/ctxtok.jsonl"
  "$TPY" - "${CIRRUS_SOURCE_DIR:-$(dirname "$0")/../..}/tools" "$MODEL" "$FIX/expected.safetensors" \
    "$WORK/ctx.safetensors" "$WORK/ctxtok.jsonl" "$WORK/tagctx.jsonl" <<'PYEOF' || fail "tag --prompts"
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
import torch_peer
model = torch_peer.build_model(torch, torch_peer.read_safetensors(sys.argv[2], np))[0]
img = torch_peer.read_safetensors(sys.argv[3], np)["image_embeds"][[0, 1, 3]].astype(np.float64)
ctx = torch.from_numpy(torch_peer.read_safetensors(sys.argv[4], np)["ctx"])
tok = torch.tensor([json.loads(l) for l in open(sys.argv[5])], dtype=torch.long)
with torch.no_grad():  # CoOp's PromptLearner + TextEncoder: [SOT] ctx [name . EOT ...]
    x = model.token_embedding(tok)
    x = torch.cat([x[:, :1], ctx.expand(len(tok), -1, -1), x[:, 5:]], dim=1)
    x = x + model.positional_embedding
    mask = torch.full((77, 77), float("-inf")).triu_(1)
    x = model.ln_final(model.transformer(x.transpose(0, 1), mask).transpose(0, 1))
    txt = (x[torch.arange(len(tok)), tok.argmax(-1)] @ model.text_projection).double().numpy()
img /= np.linalg.norm(img, axis=1, keepdims=True)
txt /= np.linalg.norm(txt, axis=1, keepdims=True)
values, worst, ok = ["red", "blue", "green", "black"], 0.0, True
got = [json.loads(l) for l in open(sys.argv[6])]
for i, row in enumerate(got):
    logit = 100 * txt @ img[i]
    p = np.exp(logit - logit.max()); p /= p.sum()
    g = row["attributes"]["color"]
    worst = max(worst, float(np.abs(np.array([g["probs"][v] for v in values]) - p).max()))
    ok &= g["value"] == values[int(p.argmax())]
print(f"  3 images, 4 values with learned context: largest probability difference {worst:.2e}")
sys.exit(0 if ok and len(got) == 3 and worst < 1e-4 else 1)
PYEOF
else
  echo "  (no python3 with torch: the learned-context check is skipped)"
fi

note "bad arguments"
expect_error "attribute" "$BIN/cirrus" tag --model "$MODEL" --attribute color "${imgs[0]}"
expect_error "template" "$BIN/cirrus" tag --model "$MODEL" --attribute c=a,b --template "x" "${imgs[0]}"
echo "1 passed, 0 failed"
