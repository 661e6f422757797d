"""Backends: what turns a GenerateRequest into a PNG.

A backend is a class with `name`, `kinds` (a subset of "tryon", "edit", "text2image"),
`load()` (called once at start: load weights; raise BackendUnavailable when it cannot) and
`run(request, ctx) -> bytes` (the PNG; call ctx.check() between steps and ctx.progress(step,
total) after each; raise JobError for bad input). The diffusers backends are imported only when
chosen, so the package runs without torch.
"""

import importlib

from ..errors import BackendUnavailable

KINDS = ("tryon", "edit", "text2image")

BUILTIN = {
    "composite": "cirrus_worker.backends.composite:CompositeBackend",
    "noop": "cirrus_worker.backends.noop:NoopBackend",
    "ladi-vton": "cirrus_worker.backends.ladi_vton:LadiVtonBackend",
    "mgd": "cirrus_worker.backends.mgd:MgdBackend",
    "sd-inpaint": "cirrus_worker.backends.sd:SdInpaintBackend",
    "sd-text2image": "cirrus_worker.backends.sd:SdText2ImageBackend",
}


class Backend:
    name = ""
    kinds = ()

    def __init__(self, options=None):
        self.options = dict(options or {})

    def load(self):
        pass

    def run(self, req, ctx):
        raise NotImplementedError


def create(name, options=None):
    """The backend called `name` (a built-in name or `module:Class`), constructed, not loaded."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise BackendUnavailable("unknown backend '%s' (built in: %s; or module:Class)"
                                 % (name, ", ".join(sorted(BUILTIN))))
    mod_name, cls_name = target.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
        cls = getattr(mod, cls_name)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable("backend '%s' cannot be loaded: %s" % (name, e))
    return cls(options)
