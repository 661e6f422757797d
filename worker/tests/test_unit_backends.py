"""Backend registry, the noop backend, the diffusers backends' clear failure without their
packages, the command line, and the protobuf loader's fallback."""

import importlib
import io
import os
import subprocess
import sys
import unittest

from PIL import Image

from cirrus_worker import backends
from cirrus_worker.backends import noop
from cirrus_worker.errors import BackendUnavailable
from wtest import Ctx, request

HERE = os.path.dirname(os.path.abspath(__file__))
DIFFUSERS = ("ladi-vton", "mgd", "sd-inpaint", "sd-text2image")


def worker_cli(*args, env=None):
    e = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "cirrus_worker"] + list(args), env=e,
                          capture_output=True, text=True, timeout=30)


def have_diffusers():
    try:
        for m in ("torch", "diffusers", "transformers"):
            importlib.import_module(m)
        return True
    except ImportError:
        return False


class Registry(unittest.TestCase):
    def test_builtin_modules_import_without_torch(self):
        for name in backends.BUILTIN:
            b = backends.create(name)
            self.assertTrue(b.kinds, name)
            self.assertTrue(set(b.kinds) <= set(backends.KINDS), name)
        self.assertNotIn("diffusers", sys.modules)

    def test_unknown_backend(self):
        with self.assertRaises(BackendUnavailable) as cm:
            backends.create("dalle")
        self.assertIn("unknown backend 'dalle'", str(cm.exception))

    def test_noop_png(self):
        out = noop.NoopBackend().run(request(kind=1), Ctx())
        im = Image.open(io.BytesIO(out))
        im.load()
        self.assertEqual((im.format, im.size, im.mode), ("PNG", (8, 8), "RGB"))


class CommandLine(unittest.TestCase):
    def test_diffusers_backends_fail_clearly_without_their_packages(self):
        if have_diffusers():
            self.skipTest("torch, diffusers and transformers are installed here")
        for name in DIFFUSERS:
            r = worker_cli("--connect", "tcp://127.0.0.1:1", "--backend", name)
            self.assertEqual(r.returncode, 3, name + ": " + r.stderr)
            self.assertNotIn("Traceback", r.stderr, name)
            self.assertRegex(r.stderr, r"the %s backend needs (torch|diffusers|transformers), "
                             r"which cannot be imported" % name)

    def test_usage_errors(self):
        r = worker_cli("--backend", "composite")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--connect", r.stderr)
        r = worker_cli("--connect", "tcp://127.0.0.1:1", "--backend", "nope")
        self.assertEqual((r.returncode, "Traceback" in r.stderr), (3, False))
        self.assertIn("unknown backend 'nope'", r.stderr)
        r = worker_cli("--connect", "tcp://127.0.0.1:1", "--backend", "ladi-vton", "--kinds", "edit")
        self.assertEqual(r.returncode, 2)
        self.assertIn("backend ladi-vton does tryon", r.stderr)
        r = worker_cli("--connect", "x", "--backend", "noop", "--concurrency", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--help", worker_cli("--help").stdout)

    def test_proto_generated_when_not_built(self):
        # no CIRRUS_WORKER_PROTO_DIR: pb.py runs protoc on the source tree's proto/cirrus.proto
        env = {k: v for k, v in os.environ.items() if k != "CIRRUS_WORKER_PROTO_DIR"}
        env["PYTHONPATH"] = os.path.dirname(HERE)
        r = subprocess.run([sys.executable, "-c", "from cirrus_worker import pb; "
                            "print(pb.load().WorkerMsg.DESCRIPTOR.full_name)"],
                           env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.strip(), "cirrus.v1.WorkerMsg", r.stderr)
        env["CIRRUS_WORKER_PROTO_DIR"] = "/nonexistent"
        r = subprocess.run([sys.executable, "-m", "cirrus_worker", "--connect", "x",
                            "--backend", "noop"], env=env, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 3)
        self.assertIn("CIRRUS_WORKER_PROTO_DIR=/nonexistent has no cirrus_pb2.py", r.stderr)


if __name__ == "__main__":
    unittest.main()
