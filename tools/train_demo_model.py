#!/usr/bin/python3
"""train_demo_model.py — trains the demo model of `make demo` and the web page: a small CLIP
(ViT image tower, causal text tower, CLIP's own BPE tokenizer and vocabulary) on the synthetic
garment catalog of `cirrus-bench catalog`, then a SEARLE-style phi head by textual inversion.

    /usr/bin/python3 tools/train_demo_model.py --bench build/bin/cirrus-bench --out models/demo

Reproducible (--seed), CPU only (Debian's python3-torch), a few minutes on 2 cores. The output
is an ordinary cirrus model directory: model.safetensors (OpenAI names, fp16) + config.json,
and phi.safetensors; model.tar.gz holds model.safetensors compressed, which is what git keeps
(the build unpacks it into build/models/demo). It is trained on synthetic images of 5 garment shapes x 7 colors x 4
patterns: it knows those words and nothing else. It is not CLIP.
"""
import argparse
import gzip
import json
import os
import random
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

CATEGORIES = ["tshirt", "dress", "trousers", "skirt", "coat"]
COLORS = ["red", "blue", "green", "black", "white", "yellow", "pink"]
PATTERNS = ["plain", "striped", "dotted", "checked"]
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
WIDTH, LAYERS, HEADS, EMBED, IMAGE, PATCH, CTX = 128, 2, 2, 64, 48, 8, 77
TEMPLATE = "a photo of $ that {}"


# ---- CLIP's tokenizer (OpenAI's simple_tokenizer, for the ASCII captions used here) ----------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class Tokenizer:
    def __init__(self, vocab_gz):
        merges = gzip.open(vocab_gz).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        self.pat = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, 1 << 30))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def encode(self, text):
        ids = [self.sot]
        for tok in self.pat.findall(" ".join(text.lower().split())):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids += [self.encoder[t] for t in self.bpe(tok)]
        ids.append(self.eot)
        return ids[:CTX]


# ---- the model (OpenAI CLIP's layout, small) ---------------------------------------------------

class Block(nn.Module):
    def __init__(self, causal):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.mlp = nn.Sequential()
        self.mlp.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.mlp.c_proj = nn.Linear(4 * WIDTH, WIDTH)
        self.causal = causal

    def forward(self, x):
        n = x.shape[1]
        mask = torch.full((n, n), float("-inf")).triu(1) if self.causal else None
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))  # quick_gelu


class Clip(nn.Module):
    def __init__(self):
        super().__init__()
        s = WIDTH ** -0.5
        self.conv1 = nn.Conv2d(3, WIDTH, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(s * torch.randn(WIDTH))
        self.vpos = nn.Parameter(s * torch.randn((IMAGE // PATCH) ** 2 + 1, WIDTH))
        self.ln_pre, self.ln_post = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.vblocks = nn.ModuleList(Block(False) for _ in range(LAYERS))
        self.proj = nn.Parameter(s * torch.randn(WIDTH, EMBED))
        self.token_embedding = nn.Embedding(49408, WIDTH)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.pos = nn.Parameter(0.01 * torch.randn(CTX, WIDTH))
        self.tblocks = nn.ModuleList(Block(True) for _ in range(LAYERS))
        self.ln_final = nn.LayerNorm(WIDTH)
        self.text_projection = nn.Parameter(s * torch.randn(WIDTH, EMBED))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def image(self, px):
        x = self.conv1(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.vpos
        x = self.ln_pre(x)
        for b in self.vblocks:
            x = b(x)
        return self.ln_post(x[:, 0]) @ self.proj

    def text_from_embeddings(self, emb, eot_at):
        x = emb + self.pos[: emb.shape[1]]
        for b in self.tblocks:
            x = b(x)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot_at] @ self.text_projection

    def text(self, ids):
        return self.text_from_embeddings(self.token_embedding(ids), ids.argmax(-1))


def pad(batch):
    out = torch.zeros(len(batch), CTX, dtype=torch.long)
    for i, ids in enumerate(batch):
        out[i, : len(ids)] = torch.tensor(ids)
    return out


# ---- data -------------------------------------------------------------------------------------

def render_catalog(bench, n, workdir):
    subprocess.run([bench, "catalog", "--out", workdir, "--n", str(n)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = [json.loads(l) for l in open(os.path.join(workdir, "catalog.jsonl"))]
    px = np.stack([preprocess(os.path.join(workdir, it["image"])) for it in items])
    return items, torch.from_numpy(px)


def preprocess(path):
    """cirrus's `clip` preprocessing: shortest side to IMAGE (bicubic), centre crop, normalize."""
    im = Image.open(path).convert("RGB").resize((IMAGE, IMAGE), Image.BICUBIC)
    a = (np.asarray(im, dtype=np.float32) / 255.0 - MEAN) / STD
    return a.transpose(2, 0, 1)


def captions(a, rng):
    c, p, k = a["color"], a["pattern"], a["category"]
    forms = [f"a {c} {p} {k}", f"a photo of a {c} {p} {k}", f"a {p} {k} that is {c}",
             f"a photo of a {p} {k} that is {c}", f"a {c} {k} that is {p}",
             f"a photo of a {c} {k} that is {p}", f"a {c} {p} garment that is a {k}",
             f"a {k} that is {c} and {p}", f"a photo of a {k} that is {c} and {p}",
             f"a {k} that is {p} and {c}"]
    return rng.choice(forms)


def relative_change(a, rng):
    """A change of the reference's color, pattern, category, or color and pattern at once:
    (caption, the target's (category, pattern, color))."""
    k, p, c = a["category"], a["pattern"], a["color"]
    kind = rng.randrange(5)
    if kind == 4:  # no change: the pseudo-word alone must carry everything the image shows
        return "", (k, p, c)
    if kind == 0:
        c = rng.choice([x for x in COLORS if x != c])
        return f"is {c}", (k, p, c)
    if kind == 1:
        p = rng.choice([x for x in PATTERNS if x != p])
        return f"is {p}", (k, p, c)
    if kind == 2:
        k = rng.choice([x for x in CATEGORIES if x != k])
        return f"is a {k}", (k, p, c)
    c = rng.choice([x for x in COLORS if x != c])
    p = rng.choice([x for x in PATTERNS if x != p])
    return f"is {c} and {p}", (k, p, c)


# ---- training -------------------------------------------------------------------------------

def train_clip(model, items, px, tok, steps, rng, log):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    attrs = [it["attributes"] for it in items]
    for step in range(steps):
        idx = rng.sample(range(len(items)), 140)
        # one image per (category, color, pattern) in the batch, so that no two captions of
        # the batch describe the same garment
        seen, keep = set(), []
        for i in idx:
            key = (attrs[i]["category"], attrs[i]["color"], attrs[i]["pattern"])
            if key not in seen:
                seen.add(key)
                keep.append(i)
        ids = pad([tok.encode(captions(attrs[i], rng)) for i in keep])
        img = F.normalize(model.image(px[keep]), dim=-1)
        txt = F.normalize(model.text(ids), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
        labels = torch.arange(len(keep))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"clip step {step}: loss {loss.item():.3f}")


class Phi(nn.Module):
    """SEARLE's phi: Linear, GELU, Dropout, Linear, GELU, Dropout, Linear (layers.0/.3/.6)."""

    def __init__(self, hidden=256):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(EMBED, hidden), nn.GELU(), nn.Dropout(0.1),
                                    nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(0.1),
                                    nn.Linear(hidden, WIDTH))

    def forward(self, x):
        return self.layers(x)


def compose(model, tok, phi_out, caption):
    """The text tower on TEMPLATE with `$` (token 259) replaced by phi's pseudo-word."""
    ids = pad([tok.encode(TEMPLATE.replace("{}", c)) for c in caption])
    emb = model.token_embedding(ids)
    slot = (ids == 259).float().argmax(-1)
    emb = emb.clone()
    emb[torch.arange(len(caption)), slot] = phi_out
    return model.text_from_embeddings(emb, ids.argmax(-1))


def train_phi(model, phi, items, px, tok, steps, rng, log, lr=1e-3, temperature=30.0):
    """Textual inversion with the catalog's relative captions: the pseudo-word of an image, read
    in 'a photo of $ that <change>', must find the reference with that change applied."""
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(phi.parameters(), lr=lr, weight_decay=0.01)
    by_key = {}
    for i, it in enumerate(items):
        a = it["attributes"]
        by_key.setdefault((a["category"], a["pattern"], a["color"]), []).append(i)
    with torch.no_grad():
        raw = model.image(px)
        img = F.normalize(raw, dim=-1)
    keys = list(by_key)
    for step in range(steps):
        refs, caps, tgts = [], [], []
        for _ in range(128):
            k, p, c = rng.choice(keys)
            ref = rng.choice(by_key[(k, p, c)])
            cap, tkey = relative_change(items[ref]["attributes"], rng)
            refs.append(ref)
            tgts.append(rng.choice(by_key[tkey]))
            caps.append(cap)
        q = F.normalize(compose(model, tok, phi(raw[refs]), caps), dim=-1)
        logits = temperature * q @ img.t()
        # every image of the target's garment (category, pattern, color) is a right answer
        want = torch.zeros_like(logits)
        for r, t in enumerate(tgts):
            a = items[t]["attributes"]
            want[r, by_key[(a["category"], a["pattern"], a["color"])]] = 1.0
        loss = -(F.log_softmax(logits, -1) * want / want.sum(-1, keepdim=True)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"phi step {step}: loss {loss.item():.3f}")


# ---- output ------------------------------------------------------------------------------------

def load_tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = np.float16 if v["dtype"] == "F16" else np.float32
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"]).astype(np.float32))
    return out


def load_model(path):
    """A model this script wrote (model.safetensors, OpenAI names), to retrain phi alone."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    def get(name):
        v = header[name]
        a, b = v["data_offsets"]
        dt = np.float16 if v["dtype"] == "F16" else np.float32
        return torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"]).astype(np.float32))
    m = Clip()
    names = openai_names(m, list(range(49408)))
    with torch.no_grad():
        for name, param in names.items():
            param.copy_(get(name).reshape(param.shape))
    return m


def save_safetensors(path, tensors, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    code = {np.float16: "F16", np.float32: "F32"}[dtype]
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype(dtype))
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def openai_names(model, used):
    t = {}
    def block(prefix, b):
        t[f"{prefix}.attn.in_proj_weight"] = b.attn.in_proj_weight
        t[f"{prefix}.attn.in_proj_bias"] = b.attn.in_proj_bias
        t[f"{prefix}.attn.out_proj.weight"] = b.attn.out_proj.weight
        t[f"{prefix}.attn.out_proj.bias"] = b.attn.out_proj.bias
        for ln in ("ln_1", "ln_2"):
            t[f"{prefix}.{ln}.weight"] = getattr(b, ln).weight
            t[f"{prefix}.{ln}.bias"] = getattr(b, ln).bias
        t[f"{prefix}.mlp.c_fc.weight"] = b.mlp.c_fc.weight
        t[f"{prefix}.mlp.c_fc.bias"] = b.mlp.c_fc.bias
        t[f"{prefix}.mlp.c_proj.weight"] = b.mlp.c_proj.weight
        t[f"{prefix}.mlp.c_proj.bias"] = b.mlp.c_proj.bias
    # rows of tokens the model never saw stay zero: the file compresses to a fraction
    emb = torch.zeros_like(model.token_embedding.weight)
    emb[used] = model.token_embedding.weight[used]
    t["token_embedding.weight"] = emb if len(used) < 49408 else model.token_embedding.weight
    t["positional_embedding"] = model.pos
    t["text_projection"] = model.text_projection
    t["logit_scale"] = model.logit_scale.reshape(1)
    t["ln_final.weight"], t["ln_final.bias"] = model.ln_final.weight, model.ln_final.bias
    for i, b in enumerate(model.tblocks):
        block(f"transformer.resblocks.{i}", b)
    t["visual.class_embedding"] = model.class_embedding
    t["visual.positional_embedding"] = model.vpos
    t["visual.proj"] = model.proj
    t["visual.conv1.weight"] = model.conv1.weight
    for ln in ("ln_pre", "ln_post"):
        t[f"visual.{ln}.weight"] = getattr(model, ln).weight
        t[f"visual.{ln}.bias"] = getattr(model, ln).bias
    for i, b in enumerate(model.vblocks):
        block(f"visual.transformer.resblocks.{i}", b)
    return t


def config():
    tc = {"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_attention_heads": HEADS,
          "num_hidden_layers": LAYERS, "max_position_embeddings": CTX, "vocab_size": 49408,
          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "bos_token_id": 49406,
          "eos_token_id": 49407, "projection_dim": EMBED}
    vc = {"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_attention_heads": HEADS,
          "num_hidden_layers": LAYERS, "image_size": IMAGE, "patch_size": PATCH,
          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "num_channels": 3,
          "projection_dim": EMBED}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": EMBED,
            "text_config": tc, "vision_config": vc,
            "cirrus_note": "the cirrus demo model: trained on synthetic garment images by "
                           "tools/train_demo_model.py; not CLIP"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="the cirrus-bench binary (renders the catalog)")
    ap.add_argument("--out", required=True, help="the model directory to write")
    ap.add_argument("--vocab", default=os.path.join(os.path.dirname(__file__), "..", "encoder",
                                                    "data", "bpe_simple_vocab_16e6.txt.gz"))
    ap.add_argument("--items", type=int, default=1400)
    ap.add_argument("--clip-steps", type=int, default=600)
    ap.add_argument("--phi-steps", type=int, default=800)
    ap.add_argument("--init", help="a model directory this script wrote: keep its CLIP, "
                                   "train phi only")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    t0 = time.time()
    log = lambda s: print(f"[{time.time() - t0:6.1f}s] {s}", flush=True)
    tok = Tokenizer(args.vocab)
    with tempfile.TemporaryDirectory() as work:
        items, px = render_catalog(args.bench, args.items, work)
    log(f"{len(items)} catalog images rendered")
    if args.init:
        model = load_model(os.path.join(args.init, "model.safetensors"))
        log(f"CLIP from {args.init}")
    else:
        model = Clip()
        train_clip(model, items, px, tok, args.clip_steps, rng, log)
    model.eval()
    phi = Phi()
    init_phi = args.init and os.path.exists(os.path.join(args.init, "phi.safetensors"))
    if init_phi:  # fine-tune it: lower rate, sharper softmax (plain vs dotted is subtle at 48 px)
        phi.load_state_dict(load_tensors(os.path.join(args.init, "phi.safetensors")))
        log(f"phi from {args.init}")
    train_phi(model, phi, items, px, tok, args.phi_steps, rng, log,
              lr=3e-4 if init_phi else 1e-3, temperature=100.0 if init_phi else 30.0)
    phi.eval()
    words = set(CATEGORIES + COLORS + PATTERNS + "a photo of that is and garment".split() + ["$"])
    used = sorted({i for w in words for i in tok.encode(w)})
    os.makedirs(args.out, exist_ok=True)
    save_safetensors(os.path.join(args.out, "model.safetensors"), openai_names(model, used),
                     np.float16)
    save_safetensors(os.path.join(args.out, "phi.safetensors"),
                     {k: v for k, v in phi.state_dict().items()}, np.float32)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config(), f, indent=2)
    with tarfile.open(os.path.join(args.out, "model.tar.gz"), "w:gz") as tar:
        info = tar.gettarinfo(os.path.join(args.out, "model.safetensors"), "model.safetensors")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with open(os.path.join(args.out, "model.safetensors"), "rb") as f:
            tar.addfile(info, f)
    log(f"wrote {args.out} ({len(used)} token rows kept)")


if __name__ == "__main__":
    sys.exit(main())
