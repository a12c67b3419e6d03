"""The study journal's lock, which cannot outlive its holder nor hold a command forever.

Optuna's own file lock is a symbolic link that a process killed while holding it leaves behind
(with a relative path it never resolves, and every later command spins on it). This one is a
``flock`` on ``<journal>.holder``: the system releases it when its holder dies. The file records the
holder (pid, host, since when) for messages; a record found on taking a free lock is a holder that
died holding it, said once as a warning. A lock held longer than ``wait`` seconds by a live process
ends the command with one line naming it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from optuna.storages.journal._file import BaseJournalFileLock

from prunepilot.errors import UsageError, cut

#: The holder file's suffix, beside the journal.
HOLDER_SUFFIX = ".holder"
#: Seconds a command waits for a lock another process holds (an append takes milliseconds).
WAIT_SECONDS = 60.0


class HolderLock(BaseJournalFileLock):
    """An exclusive lock on a journal, for Optuna's ``JournalFileBackend`` (``acquire``/``release``).

    Args:
        journal: The journal's path (made absolute: the lock does not depend on the working folder).
        wait: Seconds to wait for another holder before giving up.
    """

    def __init__(self, journal: str | Path, wait: float | None = None) -> None:
        self.journal = Path(os.path.abspath(journal))
        self.path = self.journal.with_name(self.journal.name + HOLDER_SUFFIX)
        self.wait = WAIT_SECONDS if wait is None else wait
        self._handle: int | None = None

    def acquire(self) -> bool:
        """Takes the lock, waiting at most :attr:`wait` seconds.

        Raises:
            UsageError: when a live process holds it that long, or the holder file is a link.
        """
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # the folder gone, read-only, full: as a write fails
                raise
            raise UsageError(
                f"Cannot lock the study journal {self.journal}: {self.path.name} is a symbolic link; "
                "prunepilot writes no file through a link: remove it."
            ) from None
        deadline, pause = time.monotonic() + self.wait, 0.001
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(handle) or "an unknown process"
                    os.close(handle)
                    raise UsageError(
                        f"The study journal {self.journal} has been locked for over {self.wait:.0f} s by "
                        f"{holder}; wait for that process to finish, or stop it, then run this again."
                    ) from None
                time.sleep(pause)
                pause = min(2 * pause, 0.1)
        left = _holder(handle)
        if left:  # a holder that died holding it: the system released it
            print(f"prunepilot: warning: {self.journal}: the lock left by {left} (gone) is taken over.",
                  file=sys.stderr)  # fmt: skip
        record = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(handle, 0)
        os.pwrite(handle, record.encode(), 0)
        self._handle = handle
        return True

    def release(self) -> None:
        """Clears the holder record and lets the lock go."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            os.ftruncate(handle, 0)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            os.close(handle)


def _holder(handle: int) -> str | None:
    """The holder record in the lock file (cut to a line's worth); None when it holds none."""
    record = os.pread(handle, 200, 0).decode("utf-8", "replace").strip()
    return cut(record, 120) if record else None
