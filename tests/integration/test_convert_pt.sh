#!/usr/bin/env bash
# tools/convert_openai_pt.py on checkpoints built here with torch: an OpenAI-style TorchScript
# archive and a CLIP4Cir fine-tuned checkpoint of a tiny random ResNet CLIP, and a CLIP4Cir
# Combiner; cirrus must give torch's embeddings and combine_features from the converted files
# (convert_pt_check.py). First, the torch ModifiedResNet it uses (tools/torch_peer.py, also the
# benchmark's peer) is checked against OpenAI CLIP's outputs in ../shared/fixtures/clip-rn-tiny.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=
for p in "${CIRRUS_PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$p" ] && "$p" -c 'import torch, numpy' >/dev/null 2>&1; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "SKIP: no python3 imports torch and numpy (make bench-deps)"; exit 77; }

FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-rn-tiny
if [ -f "$FIX/expected.safetensors" ]; then
  note "tools/torch_peer.py's ModifiedResNet against OpenAI CLIP (clip-rn-tiny)"
  "$PY" - "$SRC/tools" "$FIX" <<'PYEOF' || fail "torch_peer's ResNet differs from the fixture"
import sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
import torch_peer
w = torch_peer.read_safetensors(sys.argv[2] + "/clip-rn-openai-names.safetensors", np)
e = torch_peer.read_safetensors(sys.argv[2] + "/expected.safetensors", np)
model = torch_peer.build_model(torch, w)[0]
with torch.no_grad():
    got = model.visual(torch.from_numpy(e["pixels"])).numpy()
want = e["image_embeds"]
err = lambda g, w: float(max(np.linalg.norm(g - w, axis=1) / np.linalg.norm(w, axis=1)))
a, b = err(got, want), err(got - got.mean(0), want - want.mean(0))
print(f"  rel L2 err {a:.2e}, after removing the mean {b:.2e}")
sys.exit(0 if a <= 1e-4 and b <= 1e-4 else 1)
PYEOF
fi

note "convert and compare"
"$PY" "$(dirname "$0")/convert_pt_check.py" "$BIN" "$SRC" "$WORK"
