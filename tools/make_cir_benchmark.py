#!/usr/bin/env python3
"""make_cir_benchmark.py — a synthetic composed-image-retrieval benchmark in the CIRCO layout,
from the garment catalog of `cirrus-bench catalog`, for `cirrus eval run --dataset circo`:

    build/bin/cirrus-bench catalog --out CAT --n 700
    tools/make_cir_benchmark.py --catalog CAT --out BENCH [--queries 400] [--seed 7]
    cirrus eval run --dataset circo --root BENCH --index-catalog --method searle

BENCH/images/<n>.png is the catalog's sku-<n> (a symbolic link), and BENCH/annotations/val.json
lists queries {id, reference_img_id, relative_caption, target_img_id, gt_img_ids,
shared_concept, semantic_aspects}: a reference garment and a change of its color ("is red"),
pattern ("is striped"), category ("is a dress") or color and pattern at once ("is red and
dotted"); the ground truth is every image of the changed garment (same shape, pattern and
color), the target one of them.
"""
import argparse
import json
import os
import random

COLORS = ["red", "blue", "green", "black", "white", "yellow", "pink"]
PATTERNS = ["plain", "striped", "dotted", "checked"]
CATEGORIES = ["tshirt", "dress", "trousers", "skirt", "coat"]


def change(a, kind, rng):
    k, p, c = a["category"], a["pattern"], a["color"]
    if kind == "color":
        c = rng.choice([x for x in COLORS if x != c])
        return f"is {c}", (k, p, c)
    if kind == "pattern":
        p = rng.choice([x for x in PATTERNS if x != p])
        return f"is {p}", (k, p, c)
    if kind == "category":
        k = rng.choice([x for x in CATEGORIES if x != k])
        return f"is a {k}", (k, p, c)
    c = rng.choice([x for x in COLORS if x != c])
    p = rng.choice([x for x in PATTERNS if x != p])
    return f"is {c} and {p}", (k, p, c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", required=True, help="a `cirrus-bench catalog` directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    items = [json.loads(l) for l in open(os.path.join(args.catalog, "catalog.jsonl"))]
    by_key = {}
    for it in items:
        a = it["attributes"]
        by_key.setdefault((a["category"], a["pattern"], a["color"]), []).append(it)
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "annotations"), exist_ok=True)
    for it in items:
        n = int(it["id"].split("-")[1])
        dst = os.path.join(args.out, "images", f"{n}.png")
        if not os.path.lexists(dst):
            os.symlink(os.path.abspath(os.path.join(args.catalog, it["image"])), dst)
    kinds = ["color", "pattern", "category", "color+pattern"]
    queries = []
    while len(queries) < args.queries:
        ref = rng.choice(items)
        kind = kinds[len(queries) % len(kinds)]
        caption, key = change(ref["attributes"], kind, rng)
        if key not in by_key:
            continue
        gt = sorted(int(t["id"].split("-")[1]) for t in by_key[key])
        queries.append({"id": len(queries), "reference_img_id": int(ref["id"].split("-")[1]),
                        "relative_caption": caption, "target_img_id": rng.choice(gt),
                        "gt_img_ids": gt, "shared_concept": ref["attributes"]["category"],
                        "semantic_aspects": [kind]})
    with open(os.path.join(args.out, "annotations", "val.json"), "w") as f:
        json.dump(queries, f)
    print(f"{len(queries)} queries over {len(items)} images in {args.out}")


if __name__ == "__main__":
    main()
