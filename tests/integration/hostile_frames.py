#!/usr/bin/python3
"""hostile_frames.py ENDPOINT — sends a cirrus server frames that once crashed nodes or that
protobuf-c mishandles, each as a DEALER request, and checks each gets an error Response
(status code < 0) rather than silence or a dead server. Exit 0 when all were answered."""
import sys

import zmq


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(tag, payload):
    return bytes([tag]) + varint(len(payload)) + payload


def deep_filter(depth):
    """Request{id: 7, search{query{filter: not not ... {}}}}. Each `not` holds only the next
    one, so the bytes are the field headers alone, outermost first; lengths bottom up."""
    heads, n = [], 0
    for _ in range(depth):
        head = b"\x32" + varint(n)
        heads.append(head)
        n += len(head)
    inner = b"".join(reversed(heads))
    return b"\x08\x07" + field(0x52, field(0x0A, field(0x5A, inner)))


FRAMES = {
    "filter nested 200,000 deep": deep_filter(200000),
    "field number 0 in a two-byte tag": b"\x08\x07\x82\x00\x01\x41",
    "a group (wire type 3)": b"\x08\x07\x0b\x0c",
    "truncated length": b"\x08\x07\x52\x7f\x0a",
}


def status_code(reply):
    """Response.status (field 2) .code (field 1, int32 varint) from raw bytes, or None."""
    i = 0
    while i < len(reply):
        tag = reply[i]
        i += 1
        if tag & 7 == 0:
            while reply[i] & 0x80:
                i += 1
            i += 1
        elif tag & 7 == 2:
            n, shift = 0, 0
            while True:
                b = reply[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if tag >> 3 == 2:
                body = reply[i:i + n]
                if body[:1] != b"\x08":
                    return 0
                v, shift, j = 0, 0, 1
                while True:
                    v |= (body[j] & 0x7F) << shift
                    shift += 7
                    if not body[j] & 0x80:
                        break
                    j += 1
                return v - (1 << 64) if v >= 1 << 63 else v
            i += n
        else:
            return None
    return None


def main():
    ctx = zmq.Context()
    bad = 0
    for name, frame in FRAMES.items():
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(sys.argv[1])
        s.send(frame)
        if not s.poll(5000):
            print(f"FAIL {name}: no reply within 5 s")
            bad = 1
        else:
            code = status_code(s.recv())
            ok = code is not None and code < 0
            print(f"{'ok' if ok else 'FAIL'} {name}: status code {code}")
            bad |= not ok
        s.close()
    return bad


if __name__ == "__main__":
    sys.exit(main())
