"""The worker: one DEALER socket owned by one thread, jobs on threads of their own.

Only the socket thread (Worker.run) touches the ZeroMQ socket (sockets are not thread-safe).
Job threads hand their Progress and Result messages to it through a bounded queue and wake it
through a pipe it polls beside the socket. The socket thread never runs a job step, so its
heartbeats keep going however long a step takes.

Liveness (docs/protocol.md, "Diffusion workers: the worker side"): the worker heartbeats every
interval; the broker is presumed gone after 3 intervals without any message from it; the worker
then drops the jobs it holds, closes the socket and connects again after a backoff (1 s doubling
to 32 s, reset by the next message from the broker), sending Ready first.
"""

import logging
import os
import queue
import socket
import threading
import time

import zmq

from . import __version__, pb
from .errors import (CR_ERR_INTERNAL, CR_ERR_INVALID, CR_ERR_NOMEM, CR_ERR_OVERLOADED,
                     CR_ERR_UNSUPPORTED, JobCancelled, JobError, is_out_of_memory)

log = logging.getLogger("cirrus_worker")

EXIT_OOM = 75             # EX_TEMPFAIL: recycled after an out-of-memory error; restart me
LIVENESS = 3              # intervals of silence after which the peer is presumed gone
MAX_FRAME = 64 << 20      # as common/wire.h CR_WIRE_DEFAULT_MAX_FRAME
OUT_QUEUE = 4096          # messages from job threads waiting for the socket thread

_KIND_NAMES = {"tryon": "JOB_TRYON", "edit": "JOB_EDIT", "text2image": "JOB_TEXT2IMAGE"}


def kind_value(name):
    return getattr(pb.load(), _KIND_NAMES[name])


def kind_name(value):
    for name, enum in _KIND_NAMES.items():
        if getattr(pb.load(), enum) == value:
            return name
    return None


class JobContext:
    """What a backend sees of its job: progress, cancel and deadline checks."""

    def __init__(self, run, post):
        self.job_id = run.job_id
        self.kind = run.kind
        self.attempt = run.attempt
        self.step = 0
        self._run = run
        self._post = post

    def check(self):
        """Raises JobCancelled when a Cancel arrived, the job was dropped or its deadline
        passed. Backends call it between steps."""
        r = self._run
        if r.cancel.is_set():
            raise JobCancelled("%s at step %d" % (r.cancel_reason or "cancelled", self.step))
        if r.deadline and time.monotonic() >= r.deadline:
            raise JobCancelled("deadline exceeded at step %d" % self.step)

    def sleep(self, seconds):
        """Waits `seconds`, ending early (JobCancelled) on cancel."""
        self._run.cancel.wait(seconds)
        self.check()

    def progress(self, step, total):
        self.step = step
        msg = pb.load().WorkerMsg()
        msg.progress.job_id = self.job_id
        msg.progress.step = step
        msg.progress.fraction = min(1.0, step / total) if total else 0.0
        self._post(self._run, msg, droppable=True)


class JobRun:
    """A job the worker holds."""

    def __init__(self, job, kind, gen):
        self.job_id = job.job_id
        self.attempt = job.attempt
        self.kind = kind
        self.request = job.request
        self.gen = gen                  # connection generation it was received on
        self.cancel = threading.Event()
        self.cancel_reason = ""
        self.dropped = False            # no Result goes out (reconnect, recycle, shutdown)
        self.deadline = time.monotonic() + job.deadline_ms / 1000.0 if job.deadline_ms else 0
        self.thread = None


class Worker:
    def __init__(self, endpoint, backend, kinds=None, concurrency=1, worker_id=None,
                 heartbeat_ms=1000, reconnect_min_ms=1000, reconnect_max_ms=32000,
                 oom_exit=True, curve=None):
        """curve: None (plaintext) or (secret, server_public), Z85 keys: the connection is
        a CURVE client of the broker's worker endpoint."""
        self.endpoint = endpoint
        self.curve = curve
        self.backend = backend
        self.kinds = list(kinds or backend.kinds)
        self.concurrency = max(1, concurrency)
        self.worker_id = worker_id or "%s-%d" % (socket.gethostname(), os.getpid())
        self.hb = heartbeat_ms / 1000.0
        self.backoff_min = reconnect_min_ms / 1000.0
        self.backoff_max = reconnect_max_ms / 1000.0
        self.backoff = self.backoff_min
        self.oom_exit = oom_exit
        self.ctx = zmq.Context.instance()
        self.sock = None
        self.gen = 0
        self.jobs = {}                  # job_id -> JobRun; touched by the socket thread only
        self.out = queue.Queue(OUT_QUEUE)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.stop_reason = None         # set (from a signal handler too) to end run()
        self.oom = False
        self.exit_code = 0

    # ---- called from any thread -------------------------------------------------------------
    def stop(self, reason="shutdown"):
        self.stop_reason = reason
        self._wake()

    def _wake(self):
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the socket thread is awake already

    def _post(self, run, msg, droppable=False):
        """From a job thread: queue `msg` for the socket thread. Progress is dropped when the
        queue is full (the next one supersedes it); a Result waits for room."""
        try:
            self.out.put((run, msg), block=not droppable, timeout=None if droppable else 30)
        except queue.Full:
            if not droppable:
                log.error("job %s: result dropped, the send queue stayed full", run.job_id)
            return
        self._wake()

    # ---- the socket thread ------------------------------------------------------------------
    def run(self):
        """Runs until stop(); returns the process exit code."""
        self._connect()
        poller = zmq.Poller()
        poller.register(self.wake_r, zmq.POLLIN)
        next_hb = time.monotonic() + self.hb
        while self.stop_reason is None:
            if self.sock not in dict(poller.sockets):
                poller.register(self.sock, zmq.POLLIN)
            timeout = max(0.0, min(next_hb, self.broker_deadline) - time.monotonic())
            events = dict(poller.poll(timeout * 1000.0))
            if self.sock in events:
                self._receive_all()
            if self.wake_r in events:
                self._drain_pipe()
            self._flush()
            now = time.monotonic()
            if now >= next_hb:
                self._send_heartbeat()
                next_hb = now + self.hb
            if self.stop_reason is None and now >= self.broker_deadline:
                poller.unregister(self.sock)
                self._reconnect()
                next_hb = time.monotonic() + self.hb
        self._shutdown(self.stop_reason)
        return self.exit_code

    def _connect(self):
        self.gen += 1
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 500)
        s.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + MAX_FRAME // 4)
        s.setsockopt(zmq.SNDHWM, 10000)
        s.setsockopt(zmq.RCVHWM, 10000)
        if self.curve:
            secret, server = self.curve
            s.curve_secretkey = secret.encode()
            s.curve_publickey = zmq.curve_public(secret.encode())
            s.curve_serverkey = server.encode()
        s.connect(self.endpoint)
        self.sock = s
        self._send_ready()
        self.broker_deadline = time.monotonic() + LIVENESS * self.hb
        log.info("connected to %s as %s (backend %s, kinds %s, concurrency %d)", self.endpoint,
                 self.worker_id, self.backend.name, ",".join(self.kinds), self.concurrency)

    def _reconnect(self):
        log.warning("broker silent for %d intervals: reconnecting in %.1f s", LIVENESS, self.backoff)
        self._drop_jobs("broker silent")
        self.sock.close(linger=0)
        self._wait(self.backoff)
        self.backoff = min(self.backoff * 2, self.backoff_max)
        if self.stop_reason is None:
            self._connect()

    def _wait(self, seconds):
        """Sleeps, but wakes for stop(). Job messages meanwhile are discarded by _flush."""
        end = time.monotonic() + seconds
        while self.stop_reason is None and time.monotonic() < end:
            zmq.select([self.wake_r], [], [], max(0.0, end - time.monotonic()))
            self._drain_pipe()
            self._flush()

    def _send(self, msg):
        # One frame: a DEALER adds no delimiter; common/wire.c takes the last frame as the body
        # and everything before it as the route.
        try:
            self.sock.send(msg.SerializeToString(), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("send queue full: %s dropped", msg.WhichOneof("msg"))

    def _send_ready(self):
        m = pb.load().WorkerMsg()
        m.ready.worker_id = self.worker_id
        m.ready.capabilities.extend(kind_value(k) for k in self.kinds)
        m.ready.concurrency = self.concurrency
        m.ready.version = "cirrus_worker %s (%s)" % (__version__, self.backend.name)
        self._send(m)

    def _send_heartbeat(self):
        m = pb.load().WorkerMsg()
        m.heartbeat.active_jobs = len(self.jobs)
        self._send(m)

    def _send_result(self, job_id, code, message, image=b""):
        m = pb.load().WorkerMsg()
        m.result.job_id = job_id
        m.result.status.code = code
        m.result.status.message = message
        if image:
            m.result.image = image
        self._send(m)

    def _drain_pipe(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _flush(self):
        """Sends what job threads queued; a message of a dropped job, or of a job received on
        an earlier connection, is discarded."""
        while True:
            try:
                run, msg = self.out.get_nowait()
            except queue.Empty:
                return
            if msg.WhichOneof("msg") == "result" and self.jobs.get(run.job_id) is run:
                del self.jobs[run.job_id]
            if run.dropped or run.gen != self.gen:
                continue
            self._send(msg)

    def _receive_all(self):
        for _ in range(1000):  # bounded, so heartbeats go out under a flood
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.broker_deadline = time.monotonic() + LIVENESS * self.hb
            self.backoff = self.backoff_min
            try:
                d = pb.load().DispatchMsg.FromString(frames[-1])
            except Exception as e:
                log.warning("malformed frame from the broker dropped (%d bytes): %s",
                            len(frames[-1]), e)
                continue
            self._handle(d)

    def _handle(self, d):
        which = d.WhichOneof("msg")
        if which == "job":
            self._start_job(d.job)
        elif which == "cancel":
            run = self.jobs.get(d.cancel.job_id)
            if run is None:
                log.info("cancel for job %s ignored: not held", d.cancel.job_id)
            else:
                run.cancel_reason = "cancelled"
                run.cancel.set()
        elif which == "reconnect":
            log.warning("broker asks to reconnect (%s): dropping %d job(s), sending Ready",
                        d.reconnect.reason or "no reason", len(self.jobs))
            self._drop_jobs("broker asked to reconnect")
            self.gen += 1  # what the dropped jobs still post is stale
            self._send_ready()
        elif which == "heartbeat":
            pass
        else:
            log.warning("dispatch message without a body dropped")

    def _start_job(self, job):
        kind = kind_name(job.request.kind)
        if not job.job_id:
            log.warning("job without an id dropped")
            return
        if job.job_id in self.jobs:
            log.info("job %s: already held, duplicate dispatch ignored", job.job_id)
            return
        if kind not in self.kinds:
            self._log_job(job.job_id, job.attempt, kind or str(job.request.kind), "unsupported", 0, 0)
            self._send_result(job.job_id, CR_ERR_UNSUPPORTED,
                              "this worker does not do kind %s" % (kind or job.request.kind))
            return
        if len(self.jobs) >= self.concurrency or self.oom:
            self._log_job(job.job_id, job.attempt, kind, "overloaded", 0, 0)
            self._send_result(job.job_id, CR_ERR_OVERLOADED,
                              "worker is at its concurrency of %d" % self.concurrency)
            return
        run = JobRun(job, kind, self.gen)
        self.jobs[run.job_id] = run
        if getattr(self.backend, "inline", False):
            # an instant backend (noop): a thread per job would cost more than the job
            self._job_thread(run)
            self._flush()
            return
        run.thread = threading.Thread(target=self._job_thread, args=(run,), daemon=True,
                                      name="job-" + run.job_id[:16])
        run.thread.start()

    def _drop_jobs(self, reason):
        for run in self.jobs.values():
            run.dropped = True
            run.cancel_reason = reason
            run.cancel.set()
        self.jobs.clear()

    # ---- job threads -------------------------------------------------------------------------
    def _job_thread(self, run):
        ctx = JobContext(run, self._post)
        t0 = time.monotonic()
        code, message, image = 0, "", b""
        try:
            image = self.backend.run(run.request, ctx)
            if not isinstance(image, (bytes, bytearray)) or not image:
                raise JobError("backend returned no image", CR_ERR_INTERNAL)
        except JobError as e:
            code, message = e.code, str(e)
        except BaseException as e:  # noqa: B036 - a job must never take the worker down
            if is_out_of_memory(e):
                code, message = CR_ERR_NOMEM, "out of memory: %s" % (str(e)[:200] or type(e).__name__)
                self.oom = True
            else:
                log.exception("job %s: backend failed", run.job_id)
                code, message = CR_ERR_INTERNAL, "%s: %s" % (type(e).__name__, str(e)[:300])
        ms = (time.monotonic() - t0) * 1000.0
        status = "ok" if code == 0 else ("dropped" if run.dropped else message)
        self._log_job(run.job_id, run.attempt, run.kind, status, ctx.step, ms, len(image))
        m = pb.load().WorkerMsg()
        m.result.job_id = run.job_id
        m.result.status.code = code
        m.result.status.message = message
        if code == 0:
            m.result.image = bytes(image)
        self._post(run, m)
        if self.oom:
            self.stop("out of memory: recycling")

    def _log_job(self, job_id, attempt, kind, status, steps, ms, nbytes=0):
        log.info("job %s attempt=%d kind=%s status=%s steps=%d ms=%.0f bytes=%d",
                 job_id, attempt, kind, status, steps, ms, nbytes)

    # ---- end ---------------------------------------------------------------------------------
    def _shutdown(self, reason):
        """Sends what is queued (an OOM job's Result first), drops the rest, says Disconnect."""
        self._flush()
        held = len(self.jobs)
        self._drop_jobs(reason)
        if not self.sock.closed:  # closed when stopped during a reconnect backoff
            m = pb.load().WorkerMsg()
            m.disconnect.reason = reason
            self._send(m)
            self.sock.close(linger=1000)
        log.info("disconnecting (%s), %d job(s) dropped", reason, held)
        self.ctx.term()  # waits (up to the linger) for the Disconnect to leave, even before exec
        if self.oom:
            self.exit_code = EXIT_OOM
