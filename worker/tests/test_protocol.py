"""A real worker process against a Python ROUTER playing the broker (framing as common/wire.c:
the ROUTER sees [routing id, body]; the worker sends and expects one body frame)."""

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import zmq
from PIL import Image

from cirrus_worker import pb
from wtest import request, solid

HERE = os.path.dirname(os.path.abspath(__file__))
# 250 ms: the 3-interval liveness (750 ms) must survive a loaded 2-core test machine
HB_MS = 250
HB = HB_MS / 1000.0
T = pb.load()


class Broker:
    """A ROUTER that heartbeats every worker it has heard from, from a thread of its own, while
    `beat` is set (a lock keeps the socket to one thread at a time)."""

    def __init__(self):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self.lock = threading.Lock()
        self.routes = set()
        self.beat = True
        self.heartbeats = []   # (time, route) of every worker heartbeat received
        self.done = threading.Event()
        self.beater = threading.Thread(target=self._beat, daemon=True)
        self.beater.start()

    def _beat(self):
        hb = T.DispatchMsg()
        hb.heartbeat.SetInParent()
        body = hb.SerializeToString()
        while not self.done.wait(HB):
            if self.beat:
                with self.lock:
                    for r in list(self.routes):
                        self.sock.send_multipart([r, body])

    def close(self):
        self.done.set()
        self.beater.join()
        self.sock.close(0)

    def send(self, route, dispatch, delimiter=False):
        frames = [route] + ([b""] if delimiter else []) + [dispatch.SerializeToString()]
        with self.lock:
            self.sock.send_multipart(frames)

    def send_raw(self, route, body):
        with self.lock:
            self.sock.send_multipart([route, body])

    def recv(self, want, timeout=5.0):
        """The next message whose oneof is in `want` as (route, WorkerMsg, time); heartbeats
        are recorded and skipped unless wanted. AssertionError on timeout."""
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= end:
                raise AssertionError("no %s within %.1f s" % (want, timeout))
            with self.lock:
                frames = None
                if self.sock.poll(max(1, min(20, int((end - now) * 1000)))):
                    frames = self.sock.recv_multipart()
            if frames is None:
                continue
            assert len(frames) == 2, "worker frames: %r" % (frames,)  # one body, no delimiter
            route, m = frames[0], T.WorkerMsg.FromString(frames[1])
            which = m.WhichOneof("msg")
            with self.lock:
                if which != "disconnect":
                    self.routes.add(route)
            if which == "heartbeat":
                self.heartbeats.append((time.monotonic(), route))
            if which in want:
                return route, m, time.monotonic()

    def quiet(self, seconds, unwanted):
        """Runs the loop for `seconds`, failing if a message in `unwanted` arrives."""
        try:
            _, m, _ = self.recv(unwanted, timeout=seconds)
        except AssertionError:
            return
        raise AssertionError("unexpected %s: %s" % (m.WhichOneof("msg"), m))


def job(job_id, **kw):
    d = T.DispatchMsg()
    d.job.job_id = job_id
    d.job.attempt = kw.pop("attempt", 1)
    d.job.deadline_ms = kw.pop("deadline_ms", 0)
    d.job.request.CopyFrom(request(**kw))
    return d


def tryon(job_id, **kw):
    return job(job_id, kind=T.JOB_TRYON, person_image=solid((255, 0, 0)),
               garment_image=solid((0, 0, 255)), category="upper_body", **kw)


def cancel(job_id):
    d = T.DispatchMsg()
    d.cancel.job_id = job_id
    return d


class WorkerProcess:
    def __init__(self, endpoint, *args, backend="composite"):
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([HERE, os.path.dirname(HERE),
                                            env.get("PYTHONPATH", "")])
        self.p = subprocess.Popen(
            [sys.executable, "-m", "cirrus_worker", "--connect", endpoint, "--backend", backend,
             "--heartbeat-ms", str(HB_MS), "--worker-id", "w-test"] + list(args),
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


class ProtocolTest(unittest.TestCase):
    def setUp(self):
        self.broker = Broker()
        self.workers = []

    def tearDown(self):
        result = getattr(self._outcome, "result", None)
        failed = result is not None and any(
            t is self for t, _ in result.failures + result.errors)
        for w in self.workers:
            w.stop()
            if failed:
                print("\n---- worker log (%s) ----\n%s" % (self.id(), w.output()))
        self.broker.close()

    def start(self, *args, **kw):
        w = WorkerProcess(self.broker.endpoint, *args, **kw)
        self.workers.append(w)
        route, m, _ = self.broker.recv({"ready"}, timeout=10)
        return w, route, m

    def test_ready_progress_result(self):
        w, route, ready = self.start("--concurrency", "2")
        self.assertEqual(ready.ready.worker_id, "w-test")
        self.assertEqual(list(ready.ready.capabilities),
                         [T.JOB_TRYON, T.JOB_EDIT, T.JOB_TEXT2IMAGE])
        self.assertEqual(ready.ready.concurrency, 2)
        self.assertIn("composite", ready.ready.version)
        self.broker.send(route, tryon("j1", steps=4))
        steps = []
        while True:
            _, m, _ = self.broker.recv({"progress", "result"})
            if m.HasField("result"):
                break
            self.assertEqual(m.progress.job_id, "j1")
            steps.append((m.progress.step, round(m.progress.fraction, 3)))
        self.assertEqual(steps, [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)])
        self.assertEqual((m.result.job_id, m.result.status.code), ("j1", 0))
        im = Image.open(io.BytesIO(m.result.image))
        self.assertEqual((im.format, im.size), ("PNG", (384, 512)))
        self.assertEqual(w.stop(), 0)
        self.assertIn("job j1 attempt=1 kind=tryon status=ok steps=4", w.output())

    def test_noop_answers_every_job(self):
        _, route, _ = self.start("--concurrency", "4", backend="noop")
        for i in range(4):
            self.broker.send(route, job("n%d" % i, kind=T.JOB_TEXT2IMAGE))
        got, sent = set(), 4
        while len(got) < 200:
            _, m, _ = self.broker.recv({"result", "progress"})
            self.assertTrue(m.HasField("result"), "noop sends no progress")
            self.assertEqual(m.result.status.code, 0)
            self.assertTrue(m.result.image.startswith(b"\x89PNG"))
            got.add(m.result.job_id)
            if sent < 200:
                self.broker.send(route, job("n%d" % sent, kind=T.JOB_TRYON))
                sent += 1
        self.assertEqual(len(got), 200)

    def test_delimiter_frame_tolerated_and_bad_frames_dropped(self):
        w, route, _ = self.start()
        self.broker.send_raw(route, b"\xff\xff\xff not protobuf")
        self.broker.send(route, tryon("j2", steps=1), delimiter=True)
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual((m.result.job_id, m.result.status.code), ("j2", 0))
        self.assertIn("malformed frame", w.output())

    def test_bad_image_unsupported_kind_overload(self):
        w, route, _ = self.start("--kinds", "tryon", "--step-ms", "300")
        d = tryon("bad")
        d.job.request.person_image = b"GIF89a broken"
        self.broker.send(route, d)
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual(m.result.status.code, -2)
        self.assertIn("person_image: cannot decode", m.result.status.message)
        self.broker.send(route, job("t2i", kind=T.JOB_TEXT2IMAGE, text="x"))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual((m.result.job_id, m.result.status.code), ("t2i", -11))
        self.broker.send(route, tryon("slow", steps=3))
        self.broker.recv({"progress"})
        self.broker.send(route, tryon("second"))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual((m.result.job_id, m.result.status.code), ("second", -9))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual((m.result.job_id, m.result.status.code), ("slow", 0))

    def test_cancel_mid_job(self):
        w, route, _ = self.start("--step-ms", "100")
        self.broker.send(route, cancel("not-held"))
        self.broker.send(route, tryon("c1", steps=50))
        self.broker.recv({"progress"})
        _, m, _ = self.broker.recv({"progress"})
        last = m.progress.step
        t0 = time.monotonic()
        self.broker.send(route, cancel("c1"))
        while True:
            _, m, t = self.broker.recv({"progress", "result"})
            if m.HasField("result"):
                break
            last = m.progress.step
        self.assertEqual((m.result.job_id, m.result.status.code), ("c1", -10))
        self.assertIn("cancelled at step", m.result.status.message)
        self.assertLess(last, 10)
        self.assertLess(t - t0, 1.0)
        self.assertIn("cancel for job not-held ignored", w.output())

    def test_deadline(self):
        _, route, _ = self.start("--step-ms", "100")
        self.broker.send(route, tryon("d1", steps=50, deadline_ms=300))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual(m.result.status.code, -10)
        self.assertIn("deadline exceeded", m.result.status.message)

    def test_heartbeats_during_long_step(self):
        _, route, _ = self.start("--option", "busy_ms=1500", backend="testbackends:BusyBackend")
        self.broker.heartbeats.clear()
        t0 = time.monotonic()
        self.broker.send(route, job("b1", kind=T.JOB_TRYON, steps=2))
        _, m, t1 = self.broker.recv({"result"}, timeout=10)
        self.assertEqual(m.result.status.code, 0)
        beats = [t for t, r in self.broker.heartbeats if r == route and t0 <= t <= t1]
        self.assertGreater(t1 - t0, 2.9)
        self.assertGreaterEqual(len(beats), 8, "heartbeats during a 3 s job: %d" % len(beats))
        gaps = [b - a for a, b in zip([t0] + beats, beats + [t1])]
        self.assertLess(max(gaps), 3 * HB_MS / 1000.0, "longest silence %.3f s" % max(gaps))

    def test_reconnect_after_broker_silence(self):
        w, route, _ = self.start("--step-ms", "100", "--reconnect-min-ms", "300",
                                 "--reconnect-max-ms", "1200")
        self.broker.send(route, tryon("held", steps=30))
        self.broker.recv({"progress"})
        self.broker.beat = False
        t0 = time.monotonic()
        r1, m, t1 = self.broker.recv({"ready"}, timeout=5)
        self.assertNotEqual(r1, route)  # a new socket: the broker sees a new peer
        # 3 silent intervals (counted from the last beat, up to one interval before t0), then
        # the first backoff
        self.assertGreater(t1 - t0, 2 * HB + 0.3 - 0.05)
        self.assertLess(t1 - t0, 3 * HB + 0.3 + 1.0)
        routes = [r1]
        for _ in range(3):  # still silent: the backoff doubles up to its cap
            routes.append(self.broker.recv({"ready"}, timeout=6)[0])
        self.assertEqual(len(set(routes + [route])), 5)
        with self.broker.lock:
            self.broker.routes = {routes[-1]}
        self.broker.beat = True
        # the job held on the first connection was dropped: no Result for it, anywhere
        self.broker.quiet(1.5, {"result", "ready"})
        self.broker.send(routes[-1], tryon("after", steps=1))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual((m.result.job_id, m.result.status.code), ("after", 0))
        waits = re.findall(r"broker silent for 3 intervals: reconnecting in ([0-9.]+) s",
                           w.output())
        self.assertEqual(waits, ["0.3", "0.6", "1.2", "1.2"])
        self.assertIn("job held attempt=1 kind=tryon status=dropped", w.output())

    def test_worker_reconnect_message(self):
        w, route, _ = self.start("--step-ms", "100")
        self.broker.send(route, tryon("old", steps=8))
        self.broker.recv({"progress"})
        d = T.DispatchMsg()
        d.reconnect.reason = "unknown worker"
        self.broker.send(route, d)
        r, m, _ = self.broker.recv({"ready"})
        self.assertEqual(r, route)
        self.assertEqual(m.ready.worker_id, "w-test")
        # the dropped job's remaining progress and result are not sent
        self.broker.quiet(1.2, {"result", "progress"})
        self.broker.send(route, tryon("new", steps=1))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual((m.result.job_id, m.result.status.code), ("new", 0))

    def test_out_of_memory_exits_75(self):
        w, route, _ = self.start("--oom-exit", backend="testbackends:OomBackend")
        self.broker.send(route, job("m1", kind=T.JOB_TRYON))
        _, m, _ = self.broker.recv({"result"})
        self.assertEqual(m.result.status.code, -1)
        self.assertIn("out of memory", m.result.status.message)
        _, m, _ = self.broker.recv({"disconnect"})
        self.assertIn("out of memory", m.disconnect.reason)
        self.assertEqual(w.p.wait(10), 75)

    def test_out_of_memory_reexecs(self):
        w, route, _ = self.start(backend="testbackends:OomBackend")
        self.broker.send(route, job("m2", kind=T.JOB_TRYON))
        self.broker.recv({"disconnect"})
        r, m, _ = self.broker.recv({"ready"}, timeout=10)  # the same pid, a fresh process image
        self.assertNotEqual(r, route)
        self.assertIsNone(w.p.poll())
        self.assertIn("re-executing", w.output())

    def test_sigterm_disconnects(self):
        w, route, _ = self.start()
        w.p.send_signal(signal.SIGTERM)
        _, m, _ = self.broker.recv({"disconnect"})
        self.assertIn("signal", m.disconnect.reason)
        self.assertEqual(w.p.wait(5), 0)

    def test_sigterm_during_reconnect_backoff(self):
        w, _, _ = self.start("--reconnect-min-ms", "20000")
        self.broker.beat = False
        end = time.monotonic() + 5
        while "reconnecting in 20.0 s" not in w.output():  # polls the log, bounded
            self.assertLess(time.monotonic(), end, "no reconnect after the broker went silent")
            time.sleep(0.05)
        t0 = time.monotonic()
        w.p.send_signal(signal.SIGTERM)
        self.assertEqual(w.p.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 2.0)


if __name__ == "__main__":
    unittest.main()
