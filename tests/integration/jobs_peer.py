#!/usr/bin/python3
"""jobs_peer.py — misbehaving peers of the job broker for test_jobs_faults.sh, speaking the
protocol of proto/cirrus.proto with the cirrus_pb2 the build generates ($CIRRUS_WORKER_PROTO_DIR).

  stale WORKER_EP HB_MS   a worker that takes one try-on job, reports a step, then falls silent
                          for 8 heartbeat intervals (the broker declares it dead) and sends
                          stale progress and a result (an 8x8 PNG) for that job; prints the id
  foreign WORKER_EP ID... a worker that announces itself, then sends a result for each job id
                          (jobs it does not hold) and a heartbeat
  raw CLIENT_EP CASE      a Generate straight to the broker, past libcirrus's checks; prints
                          "CODE MESSAGE" of the answer (exit 0 when it is not OK)
"""
import importlib.util
import io
import os
import sys
import time

import zmq
from PIL import Image


def load_pb():
    path = os.path.join(os.environ["CIRRUS_WORKER_PROTO_DIR"], "cirrus_pb2.py")
    spec = importlib.util.spec_from_file_location("cirrus_pb2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pb = load_pb()


def png(w, h, color=(0, 255, 0)):
    b = io.BytesIO()
    Image.new("RGB", (w, h), color).save(b, "PNG")
    return b.getvalue()


def dealer(ep):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 1000)
    s.connect(ep)
    return s


def ready(s, name):
    m = pb.WorkerMsg()
    m.ready.worker_id = name
    m.ready.capabilities.append(pb.JOB_TRYON)
    m.ready.concurrency = 1
    s.send(m.SerializeToString())


def heartbeat(s):
    m = pb.WorkerMsg()
    m.heartbeat.active_jobs = 0
    s.send(m.SerializeToString())


def result(s, job_id, image):
    m = pb.WorkerMsg()
    m.result.job_id = job_id
    m.result.status.code = 0
    m.result.image = image
    s.send(m.SerializeToString())


def stale(ep, hb_ms):
    hb = hb_ms / 1000.0
    s = dealer(ep)
    ready(s, "stale")
    job_id = None
    end = time.monotonic() + 30
    while job_id is None and time.monotonic() < end:
        if s.poll(int(hb * 1000)):
            d = pb.DispatchMsg.FromString(s.recv_multipart()[-1])
            if d.WhichOneof("msg") == "job":
                job_id = d.job.job_id
        heartbeat(s)
    if job_id is None:
        sys.exit("stale: no job within 30 s")
    print(job_id, flush=True)
    m = pb.WorkerMsg()
    m.progress.job_id, m.progress.step, m.progress.fraction = job_id, 1, 0.1
    s.send(m.SerializeToString())
    time.sleep(8 * hb)  # silent: no heartbeat
    m.progress.step, m.progress.fraction = 9, 0.9
    s.send(m.SerializeToString())
    result(s, job_id, png(8, 8))
    heartbeat(s)
    time.sleep(2 * hb)


def foreign(ep, ids):
    s = dealer(ep)
    ready(s, "foreign")
    heartbeat(s)
    time.sleep(0.2)
    for job_id in ids:
        result(s, job_id, png(8, 8))
    heartbeat(s)
    time.sleep(0.3)


def raw(ep, case):
    g = pb.GenerateRequest(kind=pb.JOB_TRYON, person_image=png(96, 128), garment_image=png(32, 32),
                           category="upper_body")
    if case == "undecodable":
        g.person_image = b"this is not an image at all"
    elif case == "oversized":
        g.person_image = png(8, 8) + b"\0" * (17 << 20)
    elif case == "kind":
        g.kind = 9
    elif case == "steps":
        g.steps = 5000
    elif case == "width":
        g.width = 100
    elif case == "height":
        g.height = 4096
    elif case == "guidance":
        g.guidance = 1e9
    elif case == "category":
        g.category = "hats"
    elif case == "garment_id":
        g.ClearField("garment_image")
        g.garment_item_id = "no-such-item"
    else:
        sys.exit("raw: unknown case " + case)
    rq = pb.Request(id=7, generate=g)
    s = dealer(ep)
    s.setsockopt(zmq.LINGER, 0)
    s.send(rq.SerializeToString())
    if not s.poll(10000):
        sys.exit("raw %s: no answer in 10 s" % case)
    resp = pb.Response.FromString(s.recv_multipart()[-1])
    print(resp.status.code, resp.status.message)
    sys.exit(0 if resp.status.code != 0 else 1)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "stale":
        stale(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "foreign":
        foreign(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "raw":
        raw(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
