#!/usr/bin/env python3
"""Convert a SEARLE / iSEARLE phi checkpoint to the safetensors file cirrus loads.

Input: a torch pickle holding the phi state dict under the key "Phi" (as SEARLE's released
checkpoints do), or a bare state dict. Output: F32 tensors layers.{0,3,6}.{weight,bias}
(Linear -> GELU -> Dropout -> Linear -> GELU -> Dropout -> Linear), e.g. 512 -> 2048 -> 2048
-> 512 for ViT-B/32 and 768 -> 3072 -> 3072 -> 768 for ViT-L/14 (input = CLIP embed_dim,
output = text tower width).

Needs torch to read the pickle; uses the safetensors package when installed, else writes the
format by hand (8-byte little-endian header length, JSON header, raw little-endian F32 data).

    python3 tools/convert_phi.py searle_phi_vit_b32.pt phi-b32.safetensors
"""
import argparse
import array
import json
import struct
import sys

KEYS = [f"layers.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
PREFIXES = ("module.", "phi.", "_orig_mod.")


def load_state_dict(path, unsafe):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe)
    except TypeError:  # torch < 1.13 has no weights_only
        obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict) and "Phi" in obj:
        obj = obj["Phi"]
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        sys.exit(f"{path}: expected a state dict or a dict with key 'Phi', got {type(obj)}")
    sd = {}
    for k, v in obj.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        sd[k] = v
    missing = [k for k in KEYS if k not in sd]
    if missing:
        sys.exit(f"{path}: missing {', '.join(missing)} (have: {', '.join(sorted(sd))})")
    return {k: sd[k].detach().float().cpu().contiguous() for k in KEYS}


def check_shapes(t, embed_dim, text_width):
    w0, w3, w6 = (t[f"layers.{i}.weight"].shape for i in (0, 3, 6))
    ok = (len(w0) == len(w3) == len(w6) == 2 and w3[1] == w0[0] and w6[1] == w3[0]
          and all(tuple(t[f"layers.{i}.bias"].shape) == (t[f"layers.{i}.weight"].shape[0],)
                  for i in (0, 3, 6)))
    if not ok:
        sys.exit(f"inconsistent phi shapes: {[(k, tuple(t[k].shape)) for k in KEYS]}")
    if embed_dim and w0[1] != embed_dim:
        sys.exit(f"phi input is {w0[1]}, expected embed_dim {embed_dim}")
    if text_width and w6[0] != text_width:
        sys.exit(f"phi output is {w6[0]}, expected text width {text_width}")
    return w0[1], w0[0], w3[0], w6[0]


def write_safetensors(path, tensors, metadata):
    try:
        from safetensors.torch import save_file
        save_file(tensors, path, metadata=metadata)
        return
    except ImportError:
        pass
    header, off, blobs = {"__metadata__": metadata}, 0, []
    for k in sorted(tensors):
        a = array.array("f", tensors[k].reshape(-1).tolist())
        if sys.byteorder == "big":
            a.byteswap()
        data = a.tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape),
                     "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # align the data area
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("input", help="phi checkpoint (.pt/.pth torch pickle)")
    ap.add_argument("output", help="output .safetensors")
    ap.add_argument("--embed-dim", type=int, default=0,
                    help="check the input size (CLIP embed_dim)")
    ap.add_argument("--text-width", type=int, default=0, help="check the output size (text width)")
    ap.add_argument("--unsafe", action="store_true",
                    help="unpickle arbitrary objects (only for checkpoints you trust)")
    a = ap.parse_args()
    t = load_state_dict(a.input, a.unsafe)
    dims = check_shapes(t, a.embed_dim, a.text_width)
    write_safetensors(a.output, t, {"format": "pt", "source": "SEARLE phi",
                                    "dims": "->".join(map(str, dims))})
    print(f"wrote {a.output}: phi {' -> '.join(map(str, dims))}")


if __name__ == "__main__":
    main()
