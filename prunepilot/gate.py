"""The measurement gate: latency is measured while no other trial on the node computes.

Concurrent trials on the same cores corrupt latency measurements. Every compute step of a trial
(one training or evaluation batch) holds the node's gate *shared*; a latency measurement holds it
*exclusive*, so it waits for the steps in flight to end and pauses every other trial on the node
until it is done. A turnstile gives the measurement priority over new steps.

The gate is two lock files in a node-local folder (``flock``), so it needs no server, coordinates
every prunepilot process on the node (several searches included), and is released by the kernel
when a process dies, even by ``kill -9``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Default folder of the node's gate files.
DEFAULT_DIR = Path(tempfile.gettempdir()) / "prunepilot-gate"


class NullGate:
    """No coordination: for a single process that runs one trial at a time."""

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        yield


class NodeGate(NullGate):
    """A readers-writer lock over the node's cores, with writer priority.

    Picklable (it holds only a folder path): ship it to worker processes with the trial.

    Args:
        folder: Node-local folder of the lock files (created on first use).
    """

    def __init__(self, folder: str | Path = DEFAULT_DIR) -> None:
        # "{pid}" in the folder gives each process a gate of its own (no coordination: benchmarks).
        self.folder = str(folder).replace("{pid}", str(os.getpid()))
        self._handles: dict[str, int] | None = None

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "_handles": None}

    def _fd(self, name: str) -> int:
        if self._handles is None:
            self._handles = {}
        if name not in self._handles:
            folder = Path(self.folder)
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):  # shared by every user's trials on the node
                    folder.chmod(0o1777)
            path = os.path.join(self.folder, name)
            self._handles[name] = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            with contextlib.suppress(OSError):
                os.chmod(path, 0o666)
        return self._handles[name]

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        """Held around one compute step; waits while a measurement runs or waits to run."""
        turnstile, room = self._fd("turnstile.lock"), self._fd("room.lock")
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(room, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        """Held around a latency measurement: no compute step runs on the node meanwhile."""
        turnstile, room = self._fd("turnstile.lock"), self._fd("room.lock")
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(room, fcntl.LOCK_UN)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._handles or {}).values():
            os.close(fd)
        self._handles = None
