"""Helpers for the worker tests: images built in memory, a job context for backend calls."""

import io
import threading

from PIL import Image, ImageDraw

from cirrus_worker import pb
from cirrus_worker.errors import JobCancelled


def png(im):
    b = io.BytesIO()
    im.save(b, format="PNG")
    return b.getvalue()


def solid(colour, size=(192, 256)):
    return png(Image.new("RGB", size, colour))


def pattern(size, seed):
    """A deterministic picture with edges and gradients (so resampling shows in the hash)."""
    w, h = size
    im = Image.new("RGB", size)
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 7 + seed * 31) % 256, (y * 5 + seed * 17) % 256, ((x ^ y) * 3) % 256)
    d = ImageDraw.Draw(im)
    d.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), outline=(255, 255, 255), width=3)
    return png(im)


def request(**kw):
    r = pb.load().GenerateRequest()
    for k, v in kw.items():
        if k == "pose":
            for x, y, s in v:
                kp = r.pose.add()
                kp.x, kp.y, kp.score = x, y, s
        else:
            setattr(r, k, v)
    return r


class Ctx:
    """The JobContext surface a backend uses, recording progress; cancel after `cancel_at`."""

    def __init__(self, kind="tryon", cancel_at=None):
        self.kind = kind
        self.job_id = "t"
        self.attempt = 1
        self.step = 0
        self.steps = []
        self.cancel_at = cancel_at
        self._ev = threading.Event()

    def check(self):
        if self.cancel_at is not None and self.step >= self.cancel_at:
            raise JobCancelled("cancelled at step %d" % self.step)

    def sleep(self, s):
        self._ev.wait(s)
        self.check()

    def progress(self, step, total):
        self.step = step
        self.steps.append((step, total))
