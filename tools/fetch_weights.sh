#!/usr/bin/env bash
# Downloads real CLIP weights (openai/clip-vit-base-patch32, safetensors, Hugging Face layout)
# into models/clip-vit-base-patch32/, where `make demo` finds them. Needs internet access;
# the build and tests never do. SEARLE phi heads are released as torch checkpoints: convert one
# with tools/convert_phi.py and pass it to the demo as CIRRUS_PHI=path.
set -euo pipefail
dest=${1:-models/clip-vit-base-patch32}
base=https://huggingface.co/openai/clip-vit-base-patch32/resolve/main
mkdir -p "$dest"
for f in model.safetensors config.json vocab.json merges.txt; do
  [ -s "$dest/$f" ] && { echo "have $dest/$f"; continue; }
  echo "fetching $f"
  curl -fL --retry 3 -o "$dest/$f.part" "$base/$f"
  mv "$dest/$f.part" "$dest/$f"
done
echo "CLIP ViT-B/32 is in $dest: run 'make demo' (or CIRRUS_MODEL=$dest make demo)"
