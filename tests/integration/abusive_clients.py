#!/usr/bin/python3
"""abusive_clients.py MODE ... — clients that misbehave against a cirrus server, for
test_abusive_clients.sh. Each runs for SECONDS and then writes one line of counts to STATUS
(and, while it runs, rewrites STATUS every 0.25 s, like slowloris.pl).

  idle HOST PORT N SRC SECONDS STATUS
      N plain TCP connections from source address SRC that never send a byte.
      STATUS: "TICK OPEN" (connections the server has not closed).
  zmq-idle ENDPOINT N SECONDS STATUS
      N ZeroMQ DEALER sockets that connect (a full ZMTP handshake) and never send a request.
      STATUS: "TICK N".
  oversized ENDPOINT BYTES SECONDS STATUS
      one DEALER that sends BYTES-byte frames (garbage past the server's frame limit) back to
      back, reading whatever comes back. STATUS: "TICK SENT ERRORS" (error replies read).
  noread ENDPOINT DIM K SECONDS STATUS
      one DEALER that sends searches (a DIM-d vector, k = K, with vectors and metadata: large
      replies) as fast as its send HWM lets it and never reads a reply.
      STATUS: "TICK SENT".
"""
import os
import socket
import struct
import sys
import time

import zmq


# protobuf's wire format by hand, shared with the hostile-frames test
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_frames import field, varint  # noqa: E402


def search_request(req_id, dim, k):
    """Request{id, search{query{vector{values}, k, include_metadata, include_vectors}}}."""
    vec = field(0x0A, struct.pack("<%df" % dim, *([0.5] * dim)))  # Vector.values, packed
    query = field(0x0A, vec) + b"\x50" + varint(k) + b"\x80\x01\x01" + b"\x88\x01\x01"
    return b"\x08" + varint(req_id) + field(0x52, field(0x0A, query))


def status(path, *values):
    with open(path + ".tmp", "w") as f:
        f.write(" ".join(str(v) for v in values) + "\n")
    import os
    os.replace(path + ".tmp", path)


def run_ticks(seconds, path, step):
    """Calls step() until SECONDS pass; step returns the values to report."""
    end = time.monotonic() + seconds
    tick, next_report = 0, 0.0
    while time.monotonic() < end:
        values = step()
        now = time.monotonic()
        if now >= next_report:
            tick += 1
            status(path, tick, *values)
            next_report = now + 0.25
    status(path, tick + 1, *step())


def mode_idle(host, port, n, src, seconds, path):
    conns = []
    for _ in range(int(n)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((src, 0))
            s.settimeout(2)
            s.connect((host, int(port)))
            s.setblocking(False)
            conns.append(s)
        except OSError:
            s.close()

    def step():
        for i, s in enumerate(conns):
            if s is None:
                continue
            try:
                data = s.recv(4096)
                if not data:  # closed by the server
                    s.close()
                    conns[i] = None
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                conns[i] = None
        time.sleep(0.1)
        return (sum(1 for s in conns if s is not None),)

    run_ticks(float(seconds), path, step)


def mode_zmq_idle(ep, n, seconds, path):
    ctx = zmq.Context()
    socks = []
    for _ in range(int(n)):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(ep)
        socks.append(s)

    def step():
        time.sleep(0.1)
        return (len(socks),)

    run_ticks(float(seconds), path, step)
    for s in socks:
        s.close()
    ctx.term()


def mode_oversized(ep, size, seconds, path):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 4)
    s.connect(ep)
    frame = b"\x08\x01\x52" + b"\xff" * (int(size) - 3)  # an id, then a length past the end
    counts = [0, 0]

    def step():
        try:
            s.send(frame, zmq.NOBLOCK, copy=False)
            counts[0] += 1
        except zmq.Again:
            pass
        while s.poll(0 if counts[0] % 4 else 20):
            s.recv()
            counts[1] += 1
        return tuple(counts)

    run_ticks(float(seconds), path, step)
    s.close()
    ctx.term()


def mode_noread(ep, dim, k, seconds, path):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 100000)
    s.setsockopt(zmq.RCVHWM, 1)
    s.setsockopt(zmq.RCVBUF, 4096)
    s.connect(ep)
    sent = [0]

    def step():
        for _ in range(200):
            try:
                s.send(search_request(sent[0] + 1, int(dim), int(k)), zmq.NOBLOCK)
                sent[0] += 1
            except zmq.Again:
                time.sleep(0.01)
                break
        return (sent[0],)

    run_ticks(float(seconds), path, step)
    s.close()
    ctx.term()


def main():
    modes = {"idle": (mode_idle, 6), "zmq-idle": (mode_zmq_idle, 4),
             "oversized": (mode_oversized, 4), "noread": (mode_noread, 5)}
    if len(sys.argv) < 2 or sys.argv[1] not in modes or len(sys.argv) - 2 != modes[sys.argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = modes[sys.argv[1]]
    fn(*sys.argv[2:])


if __name__ == "__main__":
    main()
