"""Backends for the protocol tests, loaded by the worker as `testbackends:Name`."""

import time

from cirrus_worker.backends import KINDS, Backend
from cirrus_worker.backends.noop import TINY_PNG


class BusyBackend(Backend):
    """Each step spins the CPU in pure Python for `busy_ms` (default 1500): a long step that
    holds the interpreter, like a model call that does not return for a while."""
    name = "busy"
    kinds = KINDS

    def run(self, req, ctx):
        steps = req.steps or 2
        busy = float(self.options.get("busy_ms", 1500)) / 1000.0
        for i in range(steps):
            ctx.check()
            end = time.monotonic() + busy
            n = 0
            while time.monotonic() < end:
                n += sum(range(200))
            ctx.progress(i + 1, steps)
        return TINY_PNG


class OomBackend(Backend):
    """Fails every job the way an allocation failure would."""
    name = "oom"
    kinds = KINDS

    def run(self, req, ctx):
        ctx.progress(1, 2)
        raise MemoryError("cannot allocate 12 GiB")
