#!/usr/bin/env bash
# `cirrus ingest --tag` (issue 15): attributes an item lacks are filled from its image by the
# zero-shot classifier of `cirrus tag`, against a reference computed independently with numpy:
# image embeddings are the fixture's (OpenAI CLIP's image_embeds for clip-rn-tiny's PNGs), the
# prompt embeddings the text tower's outputs (`cirrus embed --text` of each filled template,
# averaged over templates), and for learned context (CoOp's layout, a random ctx [4, 128]) a
# numpy text transformer over the fixture weights (itself checked against `cirrus embed
# --text` first). Stored: NAME = argmax and NAME_prob = softmax(100 cos) when above
# --tag-threshold; a catalog value is kept; below the threshold the attribute stays missing.
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-rn-tiny
MODEL=$FIX/clip-rn-openai-names.safetensors
[ -f "$MODEL" ] || { echo "SKIP: $FIX not found"; exit 77; }
PY=
for p in "${CIRRUS_PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$p" ] && "$p" -c 'import numpy' >/dev/null 2>&1; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "SKIP: no python3 with numpy"; exit 77; }

EP=tcp://127.0.0.1:$(free_port)
C() { "$BIN/cirrus" --endpoint "$EP" --timeout 30000 "$@"; }
COLORS=red,blue,green,black
T1="a photo of a {} garment"
T2="a {} piece of clothing"
IMGS=(0:img0_40x30_rgb.png 1:img1_32x32_rgb.png 2:img2_23x57_rgb.png 3:img3_80x64_rgba.png 4:img4_33x33_l.png)

catalog() { # PREFIX: 5 items, item 2 with a color of its own
  for e in "${IMGS[@]}"; do
    i=${e%%:*}
    if [ "$i" = 2 ]; then a='{"color":"purple","kind":"x"}'; else a='{"kind":"x"}'; fi
    echo "{\"id\":\"$1-$i\",\"image\":\"${e#*:}\",\"attributes\":$a}"
  done >"$WORK/$1.jsonl"
}
for k in one avg ctx; do catalog "$k"; done

"$PY" - "$WORK/ctx.safetensors" <<'PYEOF'
import json, struct, sys
import numpy as np
ctx = (np.random.default_rng(7).standard_normal((4, 128)) * 0.05).astype("<f4")
hdr = json.dumps({"ctx": {"dtype": "F32", "shape": [4, 128], "data_offsets": [0, ctx.nbytes]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + ctx.tobytes())
PYEOF
for v in red blue green black; do
  "$BIN/cirrus" embed --model "$MODEL" --threads 1 --text "a photo of a $v garment"
done >"$WORK/t1.jsonl"
for v in red blue green black; do
  "$BIN/cirrus" embed --model "$MODEL" --threads 1 --text "a $v piece of clothing"
done >"$WORK/t2.jsonl"
for v in red blue green black; do "$BIN/cirrus" tokenize "X X X X $v."; done >"$WORK/ctxtok.jsonl"
"$BIN/cirrus" tokenize "a photo of a red garment" >"$WORK/checktok.json"

note "numpy reference (and its text transformer against cirrus embed --text)"
"$PY" - "$MODEL" "$FIX/expected.safetensors" "$WORK" <<'PYEOF' || fail "reference"
import json, struct, sys
import numpy as np
def st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n)); base = 8 + n; out = {}
        for k, v in hdr.items():
            if k == "__metadata__": continue
            f.seek(base + v["data_offsets"][0])
            dt = {"F16": "<f2", "F32": "<f4"}[v["dtype"]]
            b = f.read(v["data_offsets"][1] - v["data_offsets"][0])
            out[k] = np.frombuffer(b, dt).reshape(v["shape"]).astype(np.float64)
    return out
W = st(sys.argv[1]); work = sys.argv[3]
def ln(x, p):
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * W[p + ".weight"] + W[p + ".bias"]
def text(tok, ctx=None):  # OpenAI CLIP's text tower (QuickGELU, heads = width / 64)
    tok = np.array(tok); x = W["token_embedding.weight"][tok].copy()
    if ctx is not None: x[1:1 + len(ctx)] = ctx
    x = x + W["positional_embedding"]; L, w = x.shape; H = w // 64
    mask = np.triu(np.full((L, L), -np.inf), 1)
    nl = len({k.split(".")[2] for k in W if k.startswith("transformer.resblocks.")})
    for l in range(nl):
        p = f"transformer.resblocks.{l}."
        q, k, v = np.split(ln(x, p + "ln_1") @ W[p + "attn.in_proj_weight"].T + W[p + "attn.in_proj_bias"], 3, -1)
        q, k, v = (t.reshape(L, H, w // H).transpose(1, 0, 2) for t in (q, k, v))
        a = q @ k.transpose(0, 2, 1) / np.sqrt(w // H) + mask
        a = np.exp(a - a.max(-1, keepdims=True)); a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(1, 0, 2).reshape(L, w)
        x = x + o @ W[p + "attn.out_proj.weight"].T + W[p + "attn.out_proj.bias"]
        h = ln(x, p + "ln_2") @ W[p + "mlp.c_fc.weight"].T + W[p + "mlp.c_fc.bias"]
        h = h / (1 + np.exp(-1.702 * h))
        x = x + h @ W[p + "mlp.c_proj.weight"].T + W[p + "mlp.c_proj.bias"]
    return ln(x, "ln_final")[tok.argmax()] @ W["text_projection"]
unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
rows = lambda f: np.array([json.loads(l)["embedding"] for l in open(f)], np.float64)
check = text(json.load(open(work + "/checktok.json")))
cos = float(unit(check) @ unit(rows(work + "/t1.jsonl")[0]))
print(f"  numpy text tower vs cirrus embed --text: cosine {cos:.7f}")
if cos < 0.99999: sys.exit(1)
ctx = st(work + "/ctx.safetensors")["ctx"]
txt = {"one": unit(rows(work + "/t1.jsonl")),
       "avg": unit(unit(rows(work + "/t1.jsonl")) + unit(rows(work + "/t2.jsonl"))),
       "ctx": unit(np.array([text(json.loads(l), ctx) for l in open(work + "/ctxtok.jsonl")]))}
img = unit(st(sys.argv[2])["image_embeds"][:5])
ref = {}
for kind, t in txt.items():
    logit = 100 * img @ t.T
    p = np.exp(logit - logit.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    ref[kind] = [[int(r.argmax()), float(r.max())] for r in p]
# a threshold between the top probabilities of the untagged items, so some fall below it
tops = sorted(p for i, (_, p) in enumerate(ref["avg"]) if i != 2)
thr = (tops[1] + tops[2]) / 2
if tops[2] - tops[1] < 1e-3: sys.exit("top probabilities too close for a threshold test")
json.dump({"ref": ref, "threshold": thr}, open(work + "/ref.json", "w"))
for kind in ref: print(f"  {kind}: " + ", ".join(f"{v}:{p:.4f}" for v, p in ref[kind]))
print(f"  threshold for the avg case: {thr:.4f}")
PYEOF
THR=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["threshold"])' "$WORK/ref.json")

start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --model "$MODEL" --threads 1 \
  --index Flat --bind "$EP"
wait_ready "$EP" 60

note "ingest --tag: one template, threshold 0; two templates averaged, threshold $THR; learned context"
C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" --tag color=$COLORS --tag-model "$MODEL" \
  --tag-threads 1 --tag-template "$T1" >"$WORK/ingest-one.txt" || fail "ingest one: $(cat "$WORK/ingest-one.txt")"
C ingest --catalog "$WORK/avg.jsonl" --images "$FIX/images" --tag color=$COLORS --tag-model "$MODEL" \
  --tag-threads 1 --tag-template "$T1" --tag-template "$T2" --tag-threshold "$THR" \
  >"$WORK/ingest-avg.txt" || fail "ingest avg: $(cat "$WORK/ingest-avg.txt")"
C ingest --catalog "$WORK/ctx.jsonl" --images "$FIX/images" --tag color=$COLORS --tag-model "$MODEL" \
  --tag-threads 1 --tag-prompts "$WORK/ctx.safetensors" >"$WORK/ingest-ctx.txt" \
  || fail "ingest ctx: $(cat "$WORK/ingest-ctx.txt")"
grep -q "below --tag-threshold" "$WORK/ingest-avg.txt" || fail "summary: $(cat "$WORK/ingest-avg.txt")"
ids=()
for k in one avg ctx; do for i in 0 1 2 3 4; do ids+=(--id "$k-$i"); done; done
C --json get "${ids[@]}" --no-vector >"$WORK/got.json" || fail "get"

note "stored attributes equal the reference"
"$PY" - "$WORK/ref.json" "$WORK/got.json" <<'PYEOF' || fail "tags differ from the reference"
import json, sys
R = json.load(open(sys.argv[1])); ref, thr = R["ref"], R["threshold"]
txt = open(sys.argv[2]).read()
try:
    got = json.loads(txt)
except ValueError:
    got = [json.loads(l) for l in txt.splitlines() if l.strip()]
items = got.get("items", got) if isinstance(got, dict) else got
by = {it["id"]: it.get("attributes", {}) for it in items}
values, ok, worst, below = ["red", "blue", "green", "black"], True, 0.0, 0
for kind in ("one", "avg", "ctx"):
    for i in range(5):
        a = by.get(f"{kind}-{i}")
        if a is None: print(f"  {kind}-{i}: missing item"); ok = False; continue
        if a.get("kind") != "x": print(f"  {kind}-{i}: lost 'kind': {a}"); ok = False
        if i == 2:
            if a.get("color") != "purple" or "color_prob" in a:
                print(f"  {kind}-{i}: catalog color not kept: {a}"); ok = False
            continue
        v, p = ref[kind][i]
        if kind == "avg" and p <= thr:
            below += 1
            if "color" in a or "color_prob" in a:
                print(f"  {kind}-{i}: p {p:.4f} <= {thr:.4f} but tagged: {a}"); ok = False
            continue
        if a.get("color") != values[v] or "color_prob" not in a:
            print(f"  {kind}-{i}: got {a}, want {values[v]} p {p:.5f}"); ok = False; continue
        worst = max(worst, abs(a["color_prob"] - p))
print(f"  12 tagged items: largest probability difference {worst:.2e}; {below} below the threshold left missing")
sys.exit(0 if ok and below == 2 and worst < 1e-4 else 1)
PYEOF

note "an image the tagger cannot decode fails that item only"
cp -r "$FIX/images" "$WORK/imgs" && echo "not an image" >"$WORK/imgs/bad.png"
printf '%s\n' '{"id":"bad-0","image":"bad.png"}' '{"id":"bad-1","image":"img0_40x30_rgb.png"}' \
  >"$WORK/bad.jsonl"
rc=0
C ingest --catalog "$WORK/bad.jsonl" --images "$WORK/imgs" --tag color=$COLORS --tag-model "$MODEL" \
  --tag-threads 1 --tag-template "$T1" >"$WORK/bad.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a bad image should fail the ingest: $(cat "$WORK/bad.out")"
grep -q "line 1 (bad-0): tagging:" "$WORK/bad.out" || fail "bad image: $(cat "$WORK/bad.out")"
grep -q "ingested 1 of 2" "$WORK/bad.out" || fail "summary: $(cat "$WORK/bad.out")"
want=$("$PY" -c 'import json,sys; print("red blue green black".split()[json.load(open(sys.argv[1]))["ref"]["one"][0][0]])' "$WORK/ref.json")
C --json get --id bad-1 --no-vector | grep -q "\"color\":\"$want\"" || fail "bad-1 not tagged $want"
got=$(C --json get --id bad-0 --no-vector 2>&1 || true)
echo "$got" | grep -q '"missing":true' || fail "bad-0 stored: $got"
echo "  rejected: $(grep tagging: "$WORK/bad.out")"

note "bad arguments change nothing"
before=$(C --json get --id one-0 --no-vector)
expect_error "needs --tag-model" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" --tag color=$COLORS
expect_error "need --tag" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" --tag-threshold 0.5
expect_error "tag-threshold" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" \
  --tag color=$COLORS --tag-model "$MODEL" --tag-threshold 1.5
expect_error "NAME=V1" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" --tag color \
  --tag-model "$MODEL"
expect_error "exactly once" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" \
  --tag color=$COLORS --tag-model "$MODEL" --tag-template "no braces"
expect_error "exclude" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" \
  --tag color=$COLORS --tag-model "$MODEL" --tag-template "$T1" --tag-prompts "$WORK/ctx.safetensors"
expect_error "nope.safetensors" C ingest --catalog "$WORK/one.jsonl" --images "$FIX/images" \
  --tag color=$COLORS --tag-model "$MODEL" --tag-prompts "$WORK/nope.safetensors"
[ "$(C --json get --id one-0 --no-vector)" = "$before" ] || fail "a rejected ingest changed one-0"
echo "1 passed, 0 failed"
