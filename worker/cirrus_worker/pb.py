"""Loads cirrus_pb2, the Python code protoc generates from proto/cirrus.proto.

Looked for, in order:
  1. $CIRRUS_WORKER_PROTO_DIR/cirrus_pb2.py (the build tree: build/worker/python/; the
     build/bin/cirrus-worker launcher sets it);
  2. cirrus_worker/_gen/cirrus_pb2.py (where `cmake --install` puts it, beside the package);
  3. generated now with protoc from the source tree's proto/cirrus.proto into a temporary
     directory (a source checkout run without a build).
"""

import importlib.util
import os
import shutil
import subprocess
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE_PROTO = os.path.join(_HERE, "..", "..", "proto", "cirrus.proto")


class ProtoMissing(RuntimeError):
    pass


def _load_file(path):
    spec = importlib.util.spec_from_file_location("cirrus_pb2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _generate():
    proto = os.path.normpath(_SOURCE_PROTO)
    protoc = shutil.which("protoc")
    if not os.path.exists(proto) or protoc is None:
        raise ProtoMissing(
            "cirrus_pb2.py not found: set CIRRUS_WORKER_PROTO_DIR to the directory the build "
            "writes it to (build/worker/python) or install protobuf-compiler")
    out = tempfile.mkdtemp(prefix="cirrus_pb2.")
    subprocess.run([protoc, "--proto_path=" + os.path.dirname(proto), "--python_out=" + out,
                    proto], check=True, capture_output=True)
    return os.path.join(out, "cirrus_pb2.py")


def _find():
    env = os.environ.get("CIRRUS_WORKER_PROTO_DIR")
    for d in ([env] if env else []) + [os.path.join(_HERE, "_gen")]:
        path = os.path.join(d, "cirrus_pb2.py")
        if os.path.exists(path):
            return path
    if env:
        raise ProtoMissing("CIRRUS_WORKER_PROTO_DIR=%s has no cirrus_pb2.py" % env)
    return _generate()


_pb = None


def load():
    """The cirrus_pb2 module (loaded once)."""
    global _pb
    if _pb is None:
        _pb = _load_file(_find())
    return _pb
