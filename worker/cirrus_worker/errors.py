"""Job outcomes other than success, with the cr_err code the Result carries (common/err.h)."""

CR_OK = 0
CR_ERR_NOMEM = -1
CR_ERR_INVALID = -2
CR_ERR_PROTO = -3
CR_ERR_MODEL = -7
CR_ERR_OVERLOADED = -9
CR_ERR_DEADLINE = -10
CR_ERR_UNSUPPORTED = -11
CR_ERR_INTERNAL = -12


class JobError(Exception):
    """A job that cannot be done as asked; `code` goes into Result.status.code."""

    def __init__(self, message, code=CR_ERR_INVALID):
        super().__init__(message)
        self.code = code


class JobCancelled(JobError):
    """Raised by JobContext.check() when a Cancel arrived or the job's deadline passed."""

    def __init__(self, message):
        super().__init__(message, CR_ERR_DEADLINE)


class BackendUnavailable(RuntimeError):
    """A backend whose packages or weights are missing; the worker exits with its message."""


def is_out_of_memory(exc):
    """MemoryError, torch.cuda.OutOfMemoryError and friends (matched by name so that torch is
    never imported here)."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return "OutOfMemory" in name or "out of memory" in str(exc).lower()[:200]
