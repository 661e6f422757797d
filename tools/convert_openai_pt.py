#!/usr/bin/env python3
"""Convert an OpenAI CLIP checkpoint (.pt: the TorchScript archives that `clip.load` downloads,
or a plain state dict) to .safetensors with the OpenAI/OpenCLIP tensor names that cirrus loads
(`visual.conv1.weight`, `transformer.resblocks.N...`, `token_embedding.weight`, ...).

  tools/convert_openai_pt.py ViT-B-32.pt ViT-B-32.safetensors [--dtype f16|f32|keep]

Needs torch (Debian: python3-torch; `make bench-deps`). The `safetensors` package is not
needed: the file is written directly (8-byte header length, JSON header, raw little-endian
data packed back to back). Only the model's parameters are written; the TorchScript
attributes `input_resolution`, `context_length` and `vocab_size` are dropped (cirrus reads
them from the shapes). The weights are never modified except for the dtype conversion asked.
"""
import argparse
import json
import sys

SKIP = {"input_resolution", "context_length", "vocab_size"}


def load_state_dict(torch, path):
    try:
        model = torch.jit.load(path, map_location="cpu")
        sd = model.state_dict()
    except RuntimeError:
        sd = torch.load(path, map_location="cpu")
        if hasattr(sd, "state_dict"):
            sd = sd.state_dict()
        for key in ("state_dict", "model"):
            if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
                sd = sd[key]
    if not isinstance(sd, dict):
        raise SystemExit(f"{path}: neither a TorchScript model nor a state dict")
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k in SKIP or not hasattr(v, "dtype"):
            continue
        out[k] = v
    if "visual.conv1.weight" not in out or "token_embedding.weight" not in out:
        raise SystemExit(f"{path}: no OpenAI CLIP tensors (visual.conv1.weight, "
                         "token_embedding.weight); is this a ResNet CLIP or another model?")
    return out


def write_safetensors(torch, tensors, path, dtype):
    names = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32"}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.is_floating_point() and dtype != "keep":
            t = t.to(torch.float16 if dtype == "f16" else torch.float32)
        if t.dtype not in names:
            raise SystemExit(f"tensor {name}: unsupported dtype {t.dtype}")
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt", "source": "convert_openai_pt.py"}
    # Tensors are packed back to back (the format allows no gaps); the header is padded with
    # spaces to a multiple of 8 so that the data area starts aligned.
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(len(hjson).to_bytes(8, "little"))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return off


def main():
    ap = argparse.ArgumentParser(
        description="Convert an OpenAI CLIP .pt (TorchScript or state dict) to .safetensors "
                    "with OpenAI tensor names.")
    ap.add_argument("src", help="OpenAI CLIP checkpoint, e.g. ViT-B-32.pt")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--dtype", choices=["f16", "f32", "keep"], default="keep",
                    help="floating tensors as fp16, fp32, or as stored (default keep; OpenAI "
                         "checkpoints are fp16)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("convert_openai_pt.py: PyTorch is required (Debian: apt-get install "
              "python3-torch, or `make bench-deps`)", file=sys.stderr)
        return 3
    tensors = load_state_dict(torch, args.src)
    n = write_safetensors(torch, tensors, args.dst, args.dtype)
    print(f"{args.dst}: {len(tensors)} tensors, {n / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
