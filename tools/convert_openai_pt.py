#!/usr/bin/env python3
"""Convert an OpenAI CLIP checkpoint or a CLIP4Cir fine-tuned checkpoint (.pt) to .safetensors
with the tensor names that cirrus loads.

  tools/convert_openai_pt.py RN50x4.pt RN50x4.safetensors [--dtype f16|f32|keep]
  tools/convert_openai_pt.py fiq_clip_RN50x4_fullft.pt fiq-clip-rn50x4.safetensors
  tools/convert_openai_pt.py fiq_comb_RN50x4_fullft.pt fiq-combiner-rn50x4.safetensors

Inputs:
- OpenAI CLIP (ViT-B/32, ViT-L/14, RN50, RN101, RN50x4, RN50x16, ...): the TorchScript archives
  that `clip.load` downloads, or a plain state dict. Written with the OpenAI names
  (`visual.conv1.weight`, `visual.layer1.0.bn1.running_var`, `transformer.resblocks.N...`).
- CLIP4Cir (Baldrati et al.) checkpoints, saved by its `save_model` as
  {"epoch": n, "<class name>": state_dict}: "CLIP" (a fine-tuned CLIP: a cirrus model file)
  or "Combiner" (the Combiner head: a file for `--combiner`, names kept as in the state dict:
  `text_projection_layer.weight`, `combiner_layer.weight`, `dynamic_scalar.0.weight`, ...).
  Other wrappers ({"state_dict": ...}, {"model": ...}, a "module." prefix) are unwrapped too.

Needs torch (Debian: python3-torch; `make bench-deps`). The `safetensors` package is not
needed: the file is written directly (8-byte header length, JSON header, raw little-endian
data packed back to back). Only the model's parameters and BatchNorm running statistics are
written; the TorchScript attributes `input_resolution`, `context_length` and `vocab_size` and
the BatchNorm `num_batches_tracked` counters are dropped (cirrus derives everything from the
shapes). The weights are never modified except for the dtype conversion asked.
"""
import argparse
import json
import sys

SKIP = {"input_resolution", "context_length", "vocab_size"}
# CLIP4Cir's save_model stores {"epoch": n, model.__class__.__name__: state_dict}
WRAPPERS = ("CLIP", "Combiner", "state_dict", "model")


def unwrap(sd):
    """The state dict inside a checkpoint, and the wrapper key it was under (or None)."""
    if hasattr(sd, "state_dict") and not isinstance(sd, dict):
        return sd.state_dict(), None
    if isinstance(sd, dict):
        for key in WRAPPERS:
            if key in sd and isinstance(sd[key], dict):
                return sd[key], key
    return sd, None


def kind_of(sd):
    if "visual.conv1.weight" in sd and "token_embedding.weight" in sd:
        return "CLIP (ResNet image tower)" if "visual.layer1.0.conv1.weight" in sd else "CLIP (ViT)"
    if "text_projection_layer.weight" in sd and "combiner_layer.weight" in sd:
        return "CLIP4Cir Combiner"
    return None


def load_state_dict(torch, path):
    wrapper = None
    try:
        model = torch.jit.load(path, map_location="cpu")
        sd = model.state_dict()
    except RuntimeError:
        sd, wrapper = unwrap(torch.load(path, map_location="cpu"))
    if not isinstance(sd, dict):
        raise SystemExit(f"{path}: neither a TorchScript model nor a state dict")
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k in SKIP or k.endswith(".num_batches_tracked") or not hasattr(v, "dtype"):
            continue
        out[k] = v
    kind = kind_of(out)
    if kind is None:
        raise SystemExit(f"{path}: neither OpenAI CLIP tensors (visual.conv1.weight, "
                         "token_embedding.weight) nor a CLIP4Cir Combiner "
                         "(text_projection_layer.weight, combiner_layer.weight)")
    return out, kind, wrapper


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
        description="Convert an OpenAI CLIP .pt (TorchScript or state dict) or a CLIP4Cir "
                    "checkpoint (CLIP or Combiner) to .safetensors for cirrus.")
    ap.add_argument("src", help="checkpoint, e.g. RN50x4.pt or fiq_clip_RN50x4_fullft.pt")
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
    tensors, kind, wrapper = load_state_dict(torch, args.src)
    n = write_safetensors(torch, tensors, args.dst, args.dtype)
    src = f" (the checkpoint's \"{wrapper}\" entry)" if wrapper else ""
    print(f"{args.dst}: {kind}{src}, {len(tensors)} tensors, {n / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
