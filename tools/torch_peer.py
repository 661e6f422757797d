#!/usr/bin/env python3
"""PyTorch peer of `cirrus-bench encoder`: the same CLIP (OpenAI names, .safetensors) in
PyTorch, on the same shapes, timed the same way, so the C engine is compared against the best
peer on this machine in the same run.

It picks PyTorch's fastest intra-op thread count (1..CPUs, measured on the batch-8 image
forward), then measures images/s at batch 1 and 8, and the latency of one caption through the
text tower with CLIP's full 77-token context (what `CLIP.encode_text` runs) and cut at 12
tokens (the work cirrus does for a 12-token caption, which stops at the end-of-text token).

Only numpy and torch are needed (Debian: python3-numpy python3-torch; `make bench-deps`).
Prints a table, or one JSON object with --json. Exits 3 with "PyTorch not available" when
torch cannot be imported.
"""
import argparse
import json
import math
import os
import struct
import sys
import time
from collections import OrderedDict

DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "<u2"}


def read_safetensors(path, np):
    """Returns {name: float32 numpy array} for the floating tensors of a .safetensors file."""
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        out = {}
        for name, info in header.items():
            if name == "__metadata__" or info["dtype"] not in DTYPES:
                continue
            begin, end = info["data_offsets"]
            f.seek(base + begin)
            raw = np.frombuffer(f.read(end - begin), dtype=DTYPES[info["dtype"]])
            if info["dtype"] == "BF16":
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            out[name] = raw.astype(np.float32).reshape(info["shape"])
    return out


def build_model(torch, weights, load=True):
    """The CLIP of `weights` (a ViT or a ModifiedResNet image tower, from the shapes) and its
    image size; with load=False only the shapes of `weights` are read and the model is returned
    with uninitialized parameters."""
    nn = torch.nn

    class QuickGELU(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    class Block(nn.Module):
        def __init__(self, width, heads):
            super().__init__()
            self.ln_1 = nn.LayerNorm(width)
            self.attn = nn.MultiheadAttention(width, heads)
            self.ln_2 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(OrderedDict([
                ("c_fc", nn.Linear(width, 4 * width)),
                ("gelu", QuickGELU()),
                ("c_proj", nn.Linear(4 * width, width)),
            ]))

        def forward(self, x, mask):
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            return x + self.mlp(self.ln_2(x))

    class Tower(nn.Module):
        def __init__(self, width, layers, heads):
            super().__init__()
            self.resblocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])

        def forward(self, x, mask=None):
            for b in self.resblocks:
                x = b(x, mask)
            return x

    def count_layers(prefix):
        n = 0
        while f"{prefix}{n}.ln_1.weight" in weights:
            n += 1
        return n

    tw = weights["ln_final.weight"].shape[0]
    embed = weights["text_projection"].shape[1]
    ctx = weights["positional_embedding"].shape[0]
    vocab = weights["token_embedding.weight"].shape[0]

    class Bottleneck(nn.Module):
        # CLIP's anti-aliased Bottleneck: strided blocks average-pool after the 3x3
        # convolution and before the shortcut's 1x1 convolution.
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.downsample = None
            if stride > 1 or inplanes != planes * 4:
                self.downsample = nn.Sequential(OrderedDict([
                    ("-1", nn.AvgPool2d(stride)),
                    ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                    ("1", nn.BatchNorm2d(planes * 4)),
                ]))

        def forward(self, x):
            relu = torch.relu
            out = relu(self.bn1(self.conv1(x)))
            out = relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(self.avgpool(out)))
            idn = x if self.downsample is None else self.downsample(x)
            return relu(out + idn)

    class AttentionPool2d(nn.Module):
        def __init__(self, grid, channels, heads, out_dim):
            super().__init__()
            self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, channels))
            self.k_proj = nn.Linear(channels, channels)
            self.q_proj = nn.Linear(channels, channels)
            self.v_proj = nn.Linear(channels, channels)
            self.c_proj = nn.Linear(channels, out_dim)
            self.heads = heads

        def forward(self, x):
            x = x.flatten(start_dim=2).permute(2, 0, 1)  # [HW, B, C]
            x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
            x = x + self.positional_embedding[:, None, :]
            x, _ = nn.functional.multi_head_attention_forward(
                query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1],
                num_heads=self.heads, q_proj_weight=self.q_proj.weight,
                k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
                in_proj_weight=None,
                in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
                bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
                out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
                use_separate_proj_weight=True, training=False, need_weights=False)
            return x.squeeze(0)

    class ModifiedResNet(nn.Module):
        # Hyper-parameters from the shapes, as CLIP's build_model derives them.
        def __init__(self):
            super().__init__()
            width = weights["visual.layer1.0.conv1.weight"].shape[0]
            npos = weights["visual.attnpool.positional_embedding"].shape[0]
            grid = int(round(math.sqrt(npos - 1)))
            layers = [len({k.split(".")[2] for k in weights if k.startswith(f"visual.layer{b}.")})
                      for b in (1, 2, 3, 4)]
            self.size = grid * 32
            self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(width // 2)
            self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width // 2)
            self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(width)
            self.avgpool = nn.AvgPool2d(2)
            inplanes = width
            for i, n in enumerate(layers):
                planes = width * 2 ** i
                blocks = []
                for j in range(n):
                    blocks.append(Bottleneck(inplanes, planes, 2 if i > 0 and j == 0 else 1))
                    inplanes = planes * 4
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.attnpool = AttentionPool2d(grid, width * 32, width * 32 // 64, embed)

        def forward(self, x):
            relu = torch.relu
            x = relu(self.bn1(self.conv1(x)))
            x = relu(self.bn2(self.conv2(x)))
            x = self.avgpool(relu(self.bn3(self.conv3(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.attnpool(x)

    class Visual(nn.Module):
        def __init__(self):
            super().__init__()
            vw, _, patch, _ = weights["visual.conv1.weight"].shape
            grid = int(round(math.sqrt(weights["visual.positional_embedding"].shape[0] - 1)))
            self.size = grid * patch
            self.conv1 = nn.Conv2d(3, vw, patch, stride=patch, bias=False)
            self.class_embedding = nn.Parameter(torch.empty(vw))
            self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, vw))
            self.ln_pre = nn.LayerNorm(vw)
            self.transformer = Tower(vw, count_layers("visual.transformer.resblocks."), vw // 64)
            self.ln_post = nn.LayerNorm(vw)
            self.proj = nn.Parameter(torch.empty(vw, embed))

        def forward(self, x):
            x = self.conv1(x).flatten(2).transpose(1, 2)  # [B, grid^2, vw]
            cls = self.class_embedding.expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1) + self.positional_embedding
            x = self.ln_pre(x).transpose(0, 1)  # [T, B, W]
            x = self.transformer(x).transpose(0, 1)
            return self.ln_post(x[:, 0, :]) @ self.proj

    class Clip(nn.Module):
        def __init__(self):
            super().__init__()
            resnet = "visual.layer1.0.conv1.weight" in weights
            self.visual = ModifiedResNet() if resnet else Visual()
            self.token_embedding = nn.Embedding(vocab, tw)
            self.positional_embedding = nn.Parameter(torch.empty(ctx, tw))
            self.transformer = Tower(tw, count_layers("transformer.resblocks."), tw // 64)
            self.ln_final = nn.LayerNorm(tw)
            self.text_projection = nn.Parameter(torch.empty(tw, embed))

        def encode_text(self, tokens):
            n = tokens.shape[1]
            mask = torch.full((n, n), float("-inf")).triu_(1)
            x = self.token_embedding(tokens) + self.positional_embedding[:n]
            x = self.transformer(x.transpose(0, 1), mask).transpose(0, 1)
            x = self.ln_final(x)
            return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection

        def forward(self, image, tokens):
            return self.visual(image), self.encode_text(tokens)

    model = Clip()
    if not load:
        return model, model.visual.size
    state = {k: torch.from_numpy(v) for k, v in weights.items() if k in model.state_dict()}
    for k, v in model.state_dict().items():
        if k.endswith(".num_batches_tracked"):
            state[k] = v  # not stored in cirrus files; unused in eval mode
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise SystemExit(f"torch_peer: tensors missing from the model: {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, model.visual.size


def timed(fn, seconds, min_runs=3):
    fn()  # warm-up
    runs, lat = 0, []
    start = time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
        runs += 1
    return lat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="CLIP .safetensors with OpenAI names")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads (0 = the fastest of 1..CPUs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(f"PyTorch not available ({e}); install python3-torch python3-numpy "
              "(`make bench-deps`)", file=sys.stderr)
        return 3

    t0 = time.perf_counter()
    model, size = build_model(torch, read_safetensors(args.model, np))
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    px1 = torch.randn(1, 3, size, size, generator=g)
    px8 = torch.randn(8, 3, size, size, generator=g)
    tok77 = torch.zeros(1, 77, dtype=torch.long)
    tok77[0, 0] = 49406
    tok77[0, 1:11] = torch.arange(1, 11) * 37 + 320
    tok77[0, 11] = 49407
    tok12 = tok77[:, :12].clone()

    with torch.inference_mode():
        cpus = os.cpu_count() or 1
        candidates = [args.threads] if args.threads > 0 else list(range(1, cpus + 1))
        best_t, best = candidates[0], None
        for t in candidates:
            torch.set_num_threads(t)
            lat = min(timed(lambda: model.visual(px8), min(1.0, args.seconds), 2))
            if best is None or lat < best:
                best_t, best = t, lat
        torch.set_num_threads(best_t)
        b1 = timed(lambda: model.visual(px1), args.seconds)
        b8 = timed(lambda: model.visual(px8), args.seconds)
        t77 = timed(lambda: model.encode_text(tok77), args.seconds, 5)
        t12 = timed(lambda: model.encode_text(tok12), args.seconds, 5)

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    res = {
        "engine": "pytorch",
        "torch_version": torch.__version__,
        "threads": best_t,
        "load_s": load_s,
        "images_per_s_batch1": len(b1) / sum(b1),
        "images_per_s_batch8": 8 * len(b8) / sum(b8),
        "text_ms_77_tokens": 1000 * median(t77),
        "text_ms_12_tokens": 1000 * median(t12),
    }
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:22s} {v:.3f}" if isinstance(v, float) else f"{k:22s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
