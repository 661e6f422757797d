#!/usr/bin/env python3
"""Prints, for each id on stdin, "id group" under a placement: the documented functions of
coordinator/placement.h written again from their definitions (FNV-1a 64 or the legacy basis,
then Lamping & Veach's jump hash), so the test checks the C code against its documentation."""
import sys

BASIS = {"fnv1a64-jump": 0xcbf29ce484222325, "legacy-fnv-jump": 1469598103934665603}


def fnv(data, h):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def jump(key, buckets):
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


placement, groups = sys.argv[1], int(sys.argv[2])
for line in sys.stdin:
    i = line.strip()
    if i:
        print(i, jump(fnv(i.encode(), BASIS[placement]), groups))
