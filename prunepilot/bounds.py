"""Running a step under a time and memory bound, so that a model whose tracing runs away ends with
one line instead of taking the machine down.

The time bound counts this process's CPU time (a ``SIGPROF`` timer, ``seconds`` for each of torch's
threads), so that the same step takes the same share of it however busy the machine is (wall time
swung 6-9x with other processes running);
a wall-clock timer at :data:`WALL_FACTOR` times the bound (``SIGALRM``) stops a step that waits
instead of computing. Both run in the main thread only (elsewhere no time bound applies);
the memory bound lowers this process's address-space limit (``RLIMIT_AS``) to what it uses now
plus the bound, so an allocation past it fails inside the step. Both are restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from prunepilot.errors import UsageError
from prunepilot.settings.surface import named

try:
    import resource
except ImportError:  # not on POSIX: no memory bound
    resource = None  # type: ignore[assignment]

#: The share of the machine's memory a bounded step may add to the process by default.
DEFAULT_MEMORY_SHARE = 0.5
GIB = 1024**3


#: A step may wait this many times its CPU bound in wall-clock time.
WALL_FACTOR = 10


class _OutOfTime(BaseException):
    """Raised by a timer inside the step (a BaseException, so the step's own handlers let it by).

    Attributes:
        wall: Whether the wall-clock backstop fired (else the CPU-time bound).
    """

    def __init__(self, wall: bool) -> None:
        super().__init__()
        self.wall = wall


def machine_memory() -> int | None:
    """The machine's physical memory in bytes, or None when it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_bound() -> int | None:
    """:data:`DEFAULT_MEMORY_SHARE` of the machine's memory (None when it cannot be read)."""
    total = machine_memory()
    return int(total * DEFAULT_MEMORY_SHARE) if total else None


@contextlib.contextmanager
def bounded(what: str, seconds: float | None, memory_bytes: int | None, setting: str) -> Iterator[None]:
    """Runs the ``with`` body under the bounds; ``what`` names the step in the error.

    Args:
        what: The step, as the error names it (``tracing the model``).
        seconds: CPU seconds the step may use (and :data:`WALL_FACTOR` times that in wall time);
            None for none.
        memory_bytes: Memory the step may add to the process; None for none.
        setting: What the user sets to raise the bounds (named in the error).

    Raises:
        UsageError: when the step runs past either bound.
    """
    with _memory_bound(memory_bytes), _time_bound(seconds):
        try:
            yield
        except _OutOfTime as late:
            waited = f"{WALL_FACTOR * seconds:g} s ({WALL_FACTOR} x its bound of {seconds:g} s of CPU time)"
            how = (f"made no progress in {waited}: it waits instead of computing" if late.wall else
                   f"took more than its bound of {seconds:g} s of CPU time; the model is too large or its "
                   "tracing runs away")  # fmt: skip
            raise UsageError(
                f"{what} {how} (raise {named(setting + '_timeout')} to allow more).", f"{setting}_timeout"
            ) from None
        except Exception as exc:
            # An allocation past the bound fails as MemoryError or torch's RuntimeError, perhaps
            # wrapped in the step's own error (an untraceable model's UsageError).
            if memory_bytes is None or not any(_out_of_memory(e) for e in (exc, exc.__cause__)):
                raise
            raise _memory_error(what, memory_bytes, setting) from None


def _out_of_memory(exc: BaseException | None) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "allocate memory" in str(exc).lower()
    )


def _memory_error(what: str, memory_bytes: int | None, setting: str) -> UsageError:
    return UsageError(
        f"{what} needed more than its memory bound of {(memory_bytes or 0) / GIB:.1f} GiB; the model is "
        f"too large or its tracing runs away (raise {named(setting + '_memory_gb')} to allow more).",
        f"{setting}_memory_gb",
    )


@contextlib.contextmanager
def _time_bound(seconds: float | None) -> Iterator[None]:
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, _frame: object) -> None:
        raise _OutOfTime(wall=signum == signal.SIGALRM)

    # A timer that fires inside an import leaves a half-made module behind; what tracing imports on
    # first use (torch's symbolic shapes) is imported before the timers start.
    import torch
    import torch.fx.experimental.symbolic_shapes  # noqa: F401

    previous = {s: signal.signal(s, expire) for s in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, seconds * torch.get_num_threads())  # each thread's share
    signal.setitimer(signal.ITIMER_REAL, WALL_FACTOR * seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _memory_bound(memory_bytes: int | None) -> Iterator[None]:
    used = _address_space()
    if memory_bytes is None or resource is None or used is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = used + memory_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int | None:
    """This process's virtual memory size in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
