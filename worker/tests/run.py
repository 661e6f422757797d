#!/usr/bin/env python3
"""ctest entry: `run.py unit` or `run.py protocol` runs worker/tests/test_<that>*.py.

Exits 77 (skipped, with the reason) when python3-zmq, python3-protobuf or python3-pil is
missing or cirrus_pb2.py cannot be found or generated."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "unit"
    try:
        import zmq  # noqa: F401
        import google.protobuf  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        print("SKIP worker.%s: %s (Debian: python3-zmq python3-protobuf python3-pil)" % (which, e))
        return 77
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    from cirrus_worker import pb
    try:
        pb.load()
    except pb.ProtoMissing as e:
        print("SKIP worker.%s: %s" % (which, e))
        return 77
    suite = unittest.defaultTestLoader.discover(HERE, pattern="test_%s*.py" % which,
                                                top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if result.testsRun == 0:
        print("no tests ran")
        return 1
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
