"""python3 -m cirrus_worker --connect EP --backend NAME [options]  (see --help)."""

import argparse
import logging
import os
import signal
import sys

EXIT_USAGE = 2
EXIT_BACKEND = 3   # the backend cannot run here (packages or weights missing)


Z85_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      ".-:+=^!/*?&<>()[]{}@%$#")


def key_valid(s):
    return len(s) == 40 and all(c in Z85_CHARS for c in s)


def read_key(path, what):
    """The key of a .key or .pub file (cirrus keygen): its first line that is not a comment."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as e:
        raise ValueError("%s %s: %s" % (what, path, e.strerror or e))
    if not lines or not key_valid(lines[0]):
        raise ValueError("%s %s: no Z85 key (40 characters) in the file" % (what, path))
    return lines[0]


def public_arg(arg):
    """--curve-server-pub: a Z85 public key, or a file holding one."""
    if key_valid(arg) and not os.path.exists(arg):
        return arg
    return read_key(arg, "--curve-server-pub")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="cirrus_worker",
        description="A cirrus diffusion worker: connects to a job broker's worker endpoint, "
                    "announces its kinds and runs the jobs it is given.")
    p.add_argument("--connect", required=True, metavar="EP",
                   help="the broker's worker endpoint, e.g. tcp://127.0.0.1:7790")
    p.add_argument("--backend", required=True, metavar="NAME",
                   help="composite, noop, ladi-vton, mgd, sd-inpaint, sd-text2image, or "
                        "module:Class")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="jobs run at once (default 1)")
    p.add_argument("--worker-id", metavar="ID", help="name sent in Ready (default host-pid)")
    p.add_argument("--heartbeat-ms", type=int, default=1000, metavar="MS",
                   help="heartbeat interval; the broker is presumed gone after 3 (default 1000)")
    p.add_argument("--kinds", metavar="K,K",
                   help="announce only these of the backend's kinds (tryon, edit, text2image)")
    p.add_argument("--step-ms", type=int, default=0, metavar="MS",
                   help="composite/noop: pause per step (slow jobs for tests and demos)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option (e.g. device=cuda, model=ID); repeatable")
    p.add_argument("--reconnect-min-ms", type=int, default=1000, metavar="MS",
                   help="first reconnect backoff, doubled each time (default 1000)")
    p.add_argument("--reconnect-max-ms", type=int, default=32000, metavar="MS",
                   help="largest reconnect backoff (default 32000)")
    p.add_argument("--oom-exit", action="store_true",
                   help="after an out-of-memory error exit with code 75 instead of re-executing "
                        "(for a supervisor that restarts the worker)")
    p.add_argument("--curve-secret", metavar="FILE",
                   help="CURVE secret key file (cirrus keygen): encrypt and authenticate the "
                        "connection; the broker must list this key's .pub in its --curve-allow")
    p.add_argument("--curve-server-pub", metavar="KEY",
                   help="the broker's CURVE public key: a Z85 key or a .pub file (with "
                        "--curve-secret)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    a = p.parse_args(argv)
    if bool(a.curve_secret) != bool(a.curve_server_pub):
        p.error("--curve-secret and --curve-server-pub go together")
    a.curve = None
    if a.curve_secret:
        try:
            a.curve = (read_key(a.curve_secret, "--curve-secret"),
                       public_arg(a.curve_server_pub))
        except ValueError as e:
            p.error(str(e))
    if a.concurrency < 1 or a.concurrency > 256:
        p.error("--concurrency must be in [1, 256]")
    if a.heartbeat_ms < 10 or a.heartbeat_ms > 60000:
        p.error("--heartbeat-ms must be in [10, 60000]")
    if a.reconnect_min_ms < 1 or a.reconnect_max_ms < a.reconnect_min_ms:
        p.error("--reconnect-min-ms must be >= 1 and <= --reconnect-max-ms")
    a.options = {}
    for kv in a.option:
        if "=" not in kv:
            p.error("--option wants KEY=VALUE, got '%s'" % kv)
        k, v = kv.split("=", 1)
        a.options[k.strip().replace("-", "_")] = v
    if a.step_ms:
        a.options["step_ms"] = str(a.step_ms)
    return p, a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser, a = parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s cirrus_worker[" + str(os.getpid())
                               + "] %(levelname)s %(message)s")
    log = logging.getLogger("cirrus_worker")
    try:
        import zmq
        import google.protobuf  # noqa: F401
    except ImportError as e:
        print("cirrus_worker: %s (Debian: python3-zmq python3-protobuf)" % e, file=sys.stderr)
        return EXIT_BACKEND
    from . import backends, pb
    from .errors import BackendUnavailable
    from .worker import EXIT_OOM, Worker

    try:
        pb.load()
        backend = backends.create(a.backend, a.options)
        kinds = backend.kinds
        if a.kinds:
            kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
            bad = [k for k in kinds if k not in backend.kinds]
            if bad or not kinds:
                parser.error("--kinds %s: backend %s does %s" % (a.kinds, backend.name,
                                                                  ", ".join(backend.kinds)))
        if a.curve and not zmq.has("curve"):
            raise BackendUnavailable("--curve-secret: this libzmq has no CURVE")
        backend.load()
    except (BackendUnavailable, pb.ProtoMissing) as e:
        print("cirrus_worker: %s" % e, file=sys.stderr)
        return EXIT_BACKEND

    w = Worker(a.connect, backend, kinds=kinds, concurrency=a.concurrency,
               worker_id=a.worker_id, heartbeat_ms=a.heartbeat_ms,
               reconnect_min_ms=a.reconnect_min_ms, reconnect_max_ms=a.reconnect_max_ms,
               curve=a.curve)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: w.stop("signal %d" % s))
    code = w.run()
    if code == EXIT_OOM and not a.oom_exit:
        # Recycle: a fresh process gets back whatever the failed job left allocated (GPU
        # memory above all). The broker saw Disconnect and requeues what this process held.
        log.warning("re-executing after an out-of-memory error")
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "cirrus_worker"] + argv)
    return code


if __name__ == "__main__":
    sys.exit(main())
