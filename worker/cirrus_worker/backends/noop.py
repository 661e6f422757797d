"""noop: answers every job at once with a tiny fixed PNG (the broker benchmark's worker)."""

import struct
import zlib

from . import KINDS, Backend


def _tiny_png():
    """An 8x8 mid-grey RGB PNG, built by hand so that noop needs no image library."""
    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\x80" * 24 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


TINY_PNG = _tiny_png()


class NoopBackend(Backend):
    name = "noop"
    kinds = KINDS

    @property
    def inline(self):
        """Run on the socket thread (no thread per job) unless --step-ms makes it slow."""
        return not float(self.options.get("step_ms", 0) or 0)

    def run(self, req, ctx):
        # --step-ms paces it (tests of a broker with slow jobs); by default no step at all
        step_s = float(self.options.get("step_ms", 0) or 0) / 1000.0
        steps = (req.steps or 1) if step_s > 0 else 0
        for i in range(steps):
            ctx.sleep(step_s)
            ctx.progress(i + 1, steps)
        return TINY_PNG
