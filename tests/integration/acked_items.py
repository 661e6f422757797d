#!/usr/bin/env python3
"""Checks that every acknowledged write reads back exactly: vector (float32 bytes) and
attributes (name, type and value), from the `cirrus --json get` lines of one or more reads.

    acked_items.py --vectors V.fvecs --attrs A.jsonl --loads MANIFEST [--items OWN.jsonl]
                   --got NAME GOT IDS [--got NAME GOT IDS]...

MANIFEST: one "PREFIX ACKED_FILE" per `cirrus load` run over V.fvecs and A.jsonl (id PREFIX<i>
is row i of the vectors and line i of the attributes). OWN.jsonl: items written one by one,
acknowledged, as {"id", "vector", "attributes"} (the last line of an id wins: a rewrite).
Each --got: the reply lines GOT of a read (at endpoint NAME) of the ids IDS, each of which must
be an acknowledged one; `IDS` as "-" means every acknowledged id. Prints "NAME: verified N of
M" per read and exits 0 when every id of every read matched; else lists the first differences
and exits 1. The CLI prints reals with 9 significant digits: enough for every float32, so
vectors compare bit for bit; double attributes must have at most 9 digits.
"""
import argparse
import json
import struct
import sys


def read_fvecs(path):
    rows = []
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    while off < len(data):
        (dim,) = struct.unpack_from("<i", data, off)
        off += 4
        rows.append(data[off:off + 4 * dim])
        off += 4 * dim
    return rows


def f32_bytes(values):
    return struct.pack("<%df" % len(values), *values)


def typed(v):
    """An attribute value with its type, doubles as their bytes: 1 and 1.0 differ."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int):
        return ("i", v)
    if isinstance(v, float):
        return ("d", struct.pack("<d", v))
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, list):
        return ("l", tuple(v))
    return ("?", repr(v))


def typed_attrs(obj):
    return {k: typed(v) for k, v in (obj or {}).items()}


def acknowledged(a):
    """id -> (vector bytes, attributes as written) of every acknowledged write."""
    rows = read_fvecs(a.vectors)
    with open(a.attrs) as f:
        attrs = [json.loads(line) for line in f]
    want = {}
    with open(a.loads) as f:
        for line in f:
            if not line.strip():
                continue
            prefix, acked = line.split()
            with open(acked) as af:
                for id_ in af:
                    id_ = id_.strip()
                    if not id_:
                        continue
                    if not id_.startswith(prefix) or not id_[len(prefix):].isdigit():
                        sys.exit("acked_items: %s in %s is not %s<row>" % (id_, acked, prefix))
                    r = int(id_[len(prefix):])
                    want[id_] = (rows[r], attrs[r])
    if a.items:
        with open(a.items) as f:
            for line in f:
                if line.strip():
                    it = json.loads(line)
                    want[it["id"]] = (f32_bytes(it["vector"]), it["attributes"])
    return want


def check(name, got_path, ids_path, want):
    """Prints the read's result; returns whether every id matched."""
    if ids_path != "-":
        with open(ids_path) as f:
            only = {line.strip() for line in f if line.strip()}
        unknown = only - want.keys()
        if unknown:
            sys.exit("acked_items: %d ids of %s were never acknowledged, e.g. %s" %
                     (len(unknown), ids_path, sorted(unknown)[0]))
        want = {k: v for k, v in want.items() if k in only}
    got = {}
    with open(got_path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                it = json.loads(line)
                got[it["id"]] = it
    bad = []
    ok = 0
    for id_, (vec, at) in sorted(want.items()):
        it = got.get(id_)
        if it is None:
            bad.append("%s: no answer" % id_)
        elif it.get("missing"):
            bad.append("%s: missing" % id_)
        elif "vector" not in it or f32_bytes(it["vector"]) != vec:
            bad.append("%s: stored vector differs" % id_)
        elif typed_attrs(it.get("attributes")) != typed_attrs(at):
            bad.append("%s: attributes differ: %s, want %s" %
                       (id_, json.dumps(it.get("attributes")), json.dumps(at)))
        else:
            ok += 1
    print("%s: verified %d of %d" % (name, ok, len(want)))
    for b in bad[:10]:
        print("  " + b)
    if bad:
        print("  (%d differences)" % len(bad))
    return ok == len(want) and bool(want)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--attrs", required=True)
    ap.add_argument("--loads", required=True)
    ap.add_argument("--items")
    ap.add_argument("--got", nargs=3, action="append", required=True,
                    metavar=("NAME", "GOT", "IDS"))
    a = ap.parse_args()
    want = acknowledged(a)
    results = [check(name, got, ids, want) for name, got, ids in a.got]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
