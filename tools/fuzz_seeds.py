#!/usr/bin/python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/corpus/NAME/seed-*.

Run from the project root: /usr/bin/python3 tools/fuzz_seeds.py (Debian's python). Needs protoc (Debian protobuf-compiler)
for the protobuf seeds and python3-pil for the images. Inputs that once found a bug are kept
beside the seeds as crash-* files and are never rewritten by this script."""
import io
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def pb(message, text):
    return subprocess.run(["protoc", "--encode=cirrus.v1." + message, "-I",
                           os.path.join(ROOT, "proto"), "cirrus.proto"],
                          input=text.encode(), capture_output=True, check=True).stdout


REQUESTS = {
    "search-vector": 'id: 1 search { query { vector { values: [0.1, 0.2, 0.3] } k: 10 } }',
    "search-filter": 'id: 2 search { query { text: "red dress" k: 5 filter { cmp { attr: "price" '
                     'op: CMP_LT value { i: 100 } } } group_by: "brand" } }',
    "search-composed": 'id: 3 search { query { composed { reference { item_id: "sku-1" } '
                       'caption: "but red" method: COMPOSE_SEARLE } k: 10 } }',
    "batch": 'id: 4 search_batch { queries { vector { values: [1, 2] } k: 3 } '
             'queries { item_id: "a" k: 1 } }',
    "upsert": 'id: 5 upsert { items { id: "sku-1" vector { values: [1, 0, 0] } attributes { '
              'name: "color" value { s: "red" } } attributes { name: "price" value { d: 9.5 } } } }',
    "delete": 'id: 6 delete { items { id: "sku-1" } }',
    "get": 'id: 7 get { ids: ["a", "b"] include_vector: true include_image: true }',
    "generate": 'id: 8 generate { kind: JOB_TRYON garment_item_id: "sku-1" category: '
                '"upper_body" steps: 20 idempotency_key: "k1" }',
    "stats": 'id: 9 stats {}',
}
RESPONSES = {
    "search": 'id: 1 status { code: 0 } search { hits { id: "a" score: 0.9 attributes { '
              'name: "color" value { s: "red" } } } hits { id: "b" score: 0.5 } }',
    "error": 'id: 2 status { code: -3 message: "k: must be 1..1000" }',
    "get": 'id: 3 status { code: 0 } get { items { id: "a" vector { values: [1, 2] } '
           'version: 7 } missing: "z" }',
    "job": 'id: 4 status { code: 0 } generate { job_id: "j1" state: JOB_RUNNING progress: 0.5 }',
}
WORKER = {
    "ready": (0, 'WorkerMsg', 'ready { worker_id: "w1" capabilities: [JOB_TRYON] '
                              'concurrency: 2 version: "1" }'),
    "progress": (0, 'WorkerMsg', 'progress { job_id: "j1" fraction: 0.25 step: 5 }'),
    "result": (0, 'WorkerMsg', 'result { job_id: "j1" status { code: 0 } image: "\\x89PNG" }'),
    "job": (1, 'DispatchMsg', 'job { job_id: "j1" request { kind: JOB_TRYON category: '
                              '"dresses" } deadline_ms: 60000 attempt: 1 }'),
    "cancel": (1, 'DispatchMsg', 'cancel { job_id: "j1" }'),
}
FILTERS = ["color = 'red'", "price < 100 and (size in ['S', 'M'] or brand != 'x')",
           "not (stock >= 1)", "price >= 10 and price < 20", "a = 1 or b = 2.5 or c = true",
           "name = 'caf\u00e9'"]
TEXTS = ["a photo of a red dress", "&amp; &lt;b&gt; &#x27;quoted&#x27;", "\u00e9t\u00e9 \u2603 "
         "\U0001F600", "   multiple   spaces\tand\nlines ", "x" * 300, "don't can't 's 'll"]
JSONL = [{"id": "sku-1", "image": "a.jpg", "attributes": {"color": "red", "price": 9.5,
                                                           "sizes": ["S", "M"], "new": True}},
         {"color": "blue", "stock": 3}, {"id": "", "line": 2, "error": "bad"}]
BODIES = [{"vector": [0.1, 0.2], "k": 5}, {"text": "red shirt", "filter": "price < 30"},
          {"ref_id": "sku-1", "caption": "but blue", "method": "searle", "group_by": "brand"},
          {"image": "iVBORw0KGgo=", "k": 3, "offset": 10, "ef": 64, "exact": True},
          {"item_id": "sku-2", "nprobe": 8, "include_metadata": False}]
ITEMS = [{"items": [{"id": "sku-1", "vector": [0.1, -2, 3e5], "attributes": {"color": "red",
                     "price": 19.99, "tags": ["a", "b"]}, "image_uri": "https://x/y.jpg"}]},
         {"items": [{"id": "sku-2", "image": "iVBORw0KGgo=", "version": 7},
                    {"id": "sku-3", "vector": [1]}]}]
MAPS = [{"bind": "tcp://127.0.0.1:7700", "groups": [["tcp://127.0.0.1:7701"],
         ["tcp://127.0.0.1:7702", "tcp://127.0.0.1:7703"]], "encoders": ["tcp://127.0.0.1:7710"],
         "metric": "ip", "write_quorum": 1, "hedge_ms": 30, "default_method": "searle",
         "placement": "fnv1a64-jump"},
        {"bind": "inproc://c", "groups": [["inproc://s0"]], "metric": "l2"}]


def safetensors(tensors):
    header, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


def images():
    from PIL import Image
    im = Image.new("RGB", (7, 5))
    for x in range(7):
        for y in range(5):
            im.putpixel((x, y), (x * 30, y * 50, (x + y) * 20))
    out = {}
    for fmt, mode in [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"),
                      ("JPEG", "RGB"), ("JPEG", "L"), ("WEBP", "RGB"), ("GIF", "P"),
                      ("BMP", "RGB")]:
        b = io.BytesIO()
        im.convert(mode).save(b, fmt)
        out[f"{fmt.lower()}-{mode.lower()}"] = b.getvalue()
    return out


def main():
    for name, text in REQUESTS.items():
        put("request", name, pb("Request", text))
    for name, text in RESPONSES.items():
        put("response", name, pb("Response", text))
    for name, (sel, msg, text) in WORKER.items():
        put("worker_msg", name, bytes([sel]) + pb(msg, text))
    for i, f in enumerate(FILTERS):
        put("filter", str(i), f)
    for i, t in enumerate(TEXTS):
        put("tokenizer", str(i), t)
    for i, j in enumerate(JSONL):
        put("jsonl", str(i), json.dumps(j))
    for i, j in enumerate(BODIES):
        put("search_body", str(i), json.dumps(j))
    for i, j in enumerate(ITEMS):
        put("items_body", str(i), json.dumps(j))
    for i, j in enumerate(MAPS):
        put("clustermap", str(i), json.dumps(j))
    put("safetensors", "f32", safetensors([("w", "F32", [2, 3], struct.pack("<6f", *range(6))),
                                           ("b", "F16", [2], b"\x00\x3c\x00\x40")]))
    put("safetensors", "bf16", safetensors([("x", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
                                            ("s", "F64", [], struct.pack("<d", 1.5))]))
    for name, data in images().items():
        put("image", name, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
