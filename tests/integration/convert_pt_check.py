#!/usr/bin/env python3
"""tools/convert_openai_pt.py on checkpoints made here with torch (nothing is downloaded):

1. a tiny random CLIP with CLIP's ModifiedResNet image tower (stages (1, 1, 2, 1), width 8,
   64 px, embedding 32; tools/torch_peer.py's module, checked against the clip-rn-tiny fixture
   by test_convert_pt.sh first), saved as a TorchScript archive like OpenAI's RN50x4.pt
   (with the input_resolution / context_length / vocab_size attributes) and as a CLIP4Cir
   fine-tuned checkpoint ({"epoch": n, "CLIP": state_dict}, num_batches_tracked included);
2. a CLIP4Cir Combiner ({"epoch": n, "Combiner": state_dict}).

Each converted file must hold exactly the parameters and BatchNorm statistics (the attributes
and counters dropped, values bit-equal); cirrus must load the converted CLIPs and give torch's
embeddings (a 64x64 PNG, whose preprocessing is the identity resize, and a caption), and
`cirrus compose --method combiner` with the converted Combiner must give CLIP4Cir's
combine_features. Usage: convert_pt_check.py BIN_DIR SOURCE_DIR WORK_DIR
"""
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import torch

BIN, SRC, WORK = sys.argv[1:4]
sys.path.insert(0, os.path.join(SRC, "tools"))
import torch_peer  # noqa: E402

CONVERT = os.path.join(SRC, "tools", "convert_openai_pt.py")
failures = []


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what)
    if not ok:
        failures.append(what)


def stub_shapes():
    """The few tensors torch_peer.build_model reads shapes from (the model is built empty)."""
    z = np.zeros
    w = {"visual.layer1.0.conv1.weight": z((8, 8, 1, 1)),
         "visual.attnpool.positional_embedding": z((5, 256)),
         "ln_final.weight": z(64), "text_projection": z((64, 32)),
         "positional_embedding": z((77, 64)), "token_embedding.weight": z((49408, 1)),
         "transformer.resblocks.0.ln_1.weight": z(64)}
    for stage, n in enumerate((1, 1, 2, 1)):
        for j in range(n):
            w.setdefault(f"visual.layer{stage + 1}.{j}.conv1.weight", None)
    return w


def random_clip():
    torch.manual_seed(7)
    model = torch_peer.build_model(torch, stub_shapes(), load=False)[0]
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand_like(m.weight) + 0.5)
    return model.eval()


class Combiner(torch.nn.Module):
    """CLIP4Cir's Combiner (combiner.py): the same parameter names and combine_features."""

    def __init__(self, dim, proj, hidden):
        super().__init__()
        nn = torch.nn
        self.text_projection_layer = nn.Linear(dim, proj)
        self.image_projection_layer = nn.Linear(dim, proj)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(), nn.Dropout(), nn.Dropout()
        self.combiner_layer = nn.Linear(proj * 2, hidden)
        self.output_layer = nn.Linear(hidden, dim)
        self.dynamic_scalar = nn.Sequential(nn.Linear(proj * 2, hidden), nn.ReLU(),
                                            nn.Dropout(), nn.Linear(hidden, 1), nn.Sigmoid())

    def combine_features(self, image, text):
        relu = torch.nn.functional.relu
        t = self.dropout1(relu(self.text_projection_layer(text)))
        i = self.dropout2(relu(self.image_projection_layer(image)))
        raw = torch.cat((t, i), -1)
        comb = self.dropout3(relu(self.combiner_layer(raw)))
        lam = self.dynamic_scalar(raw)
        out = self.output_layer(comb) + lam * text + (1 - lam) * image
        return torch.nn.functional.normalize(out, dim=-1)


def read_st(path):
    return torch_peer.read_safetensors(path, np)


def convert(src, dst, *extra):
    r = subprocess.run([sys.executable, CONVERT, src, dst, *extra], capture_output=True,
                       text=True)
    print("  " + (r.stdout.strip() or r.stderr.strip()))
    check(r.returncode == 0, f"convert {os.path.basename(src)}")
    return r.stdout


def same_tensors(got, want, label):
    want = {k: v for k, v in want.items()
            if not k.endswith("num_batches_tracked") and k not in torch_peer_skip}
    check(set(got) == set(want), f"{label}: the converted names are the state dict's "
          f"(missing {sorted(set(want) - set(got))[:3]}, extra {sorted(set(got) - set(want))[:3]})")
    bad = [k for k in want if k in got and not np.array_equal(got[k], want[k].float().numpy())]
    check(not bad, f"{label}: every value bit-equal ({bad[:3]})")


torch_peer_skip = {"input_resolution", "context_length", "vocab_size"}


def png_rgb(path, pix):
    h, w, _ = pix.shape
    raw = b"".join(b"\0" + pix[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cirrus(*args):
    r = subprocess.run([os.path.join(BIN, "cirrus"), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cirrus {' '.join(args[:2])}: {r.stderr.strip()}")
    return [json.loads(line) for line in r.stdout.splitlines()]


def rel(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    model = random_clip()
    caption = "a red dress with long sleeves"
    tokens = torch.tensor([cirrus("tokenize", caption)[0]], dtype=torch.long)
    rng = np.random.default_rng(3)
    pix = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    png = os.path.join(WORK, "img.png")
    png_rgb(png, pix)
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    x = torch.from_numpy(((pix.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None])
    with torch.no_grad():
        want_img, want_txt = model(x, tokens)

    # 1a. a TorchScript archive like OpenAI's
    for name, val in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408)):
        model.register_buffer(name, torch.tensor(val))
    with torch.no_grad():
        jit = torch.jit.trace(model, (x, tokens), check_trace=False)
    jit_pt, clip4cir_pt = os.path.join(WORK, "RN-tiny.pt"), os.path.join(WORK, "fiq_clip.pt")
    jit.save(jit_pt)
    # 1b. CLIP4Cir's save_model: {"epoch": n, "CLIP": state_dict}
    sd = {k: v for k, v in model.state_dict().items() if k not in torch_peer_skip}
    torch.save({"epoch": 12, "CLIP": sd}, clip4cir_pt)
    for src, extra in ((jit_pt, ()), (clip4cir_pt, ()), (clip4cir_pt, ("--dtype", "f16"))):
        label = os.path.basename(src) + (" as f16" if extra else "")
        dst = os.path.join(WORK, label.replace(" ", "_") + ".safetensors")
        out = convert(src, dst, *extra)
        check("ResNet" in out, f"{label}: reported as a ResNet CLIP")
        got = read_st(dst)
        if not extra:
            same_tensors(got, model.state_dict(), label)
        emb = cirrus("embed", "--model", dst, "--threads", "1", "--image", png, "--text", caption)
        tol = 1e-4 if not extra else 5e-3
        ei, et = rel(emb[0]["embedding"], want_img), rel(emb[1]["embedding"], want_txt)
        print(f"  {label}: cirrus vs torch rel L2 err image {ei:.2e}, text {et:.2e}")
        check(ei <= tol and et <= tol, f"{label}: cirrus embeddings equal torch's within {tol}")

    # 2. CLIP4Cir's Combiner
    torch.manual_seed(9)
    comb = Combiner(32, 48, 96).eval()
    comb_pt, comb_st = os.path.join(WORK, "fiq_comb.pt"), os.path.join(WORK, "comb.safetensors")
    torch.save({"epoch": 30, "Combiner": comb.state_dict()}, comb_pt)
    out = convert(comb_pt, comb_st)
    check("Combiner" in out, "Combiner: reported as a CLIP4Cir Combiner")
    same_tensors(read_st(comb_st), comb.state_dict(), "Combiner")
    ref = want_img[0].numpy()
    got = cirrus("compose", "--model", os.path.join(WORK, "fiq_clip.pt.safetensors"),
                 "--method", "combiner", "--combiner", comb_st,
                 "--ref-vector", ",".join(f"{v:.9g}" for v in ref), "--caption", caption)
    with torch.no_grad():
        want = comb.combine_features(want_img, want_txt)[0].numpy()
    e = rel(got[0]["embedding"], want)
    print(f"  combiner: cirrus compose vs CLIP4Cir combine_features rel L2 err {e:.2e}")
    check(e <= 1e-4, "combiner: cirrus compose equals combine_features")

    # a checkpoint that is neither
    torch.save({"epoch": 1, "Other": {"w": torch.zeros(2)}}, os.path.join(WORK, "other.pt"))
    r = subprocess.run([sys.executable, CONVERT, os.path.join(WORK, "other.pt"),
                        os.path.join(WORK, "other.safetensors")], capture_output=True, text=True)
    check(r.returncode != 0 and "neither" in r.stderr, "an unknown checkpoint is refused")

    print(f"{'0' if failures else '1'} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
