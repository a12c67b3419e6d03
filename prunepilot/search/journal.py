"""The study journal on disk: records written whole or not at all, a torn end dropped when read,
damage elsewhere named with the way out (``prunepilot repair``), and the repair itself.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON record a line under
a file lock (here :class:`~prunepilot.search.journal_lock.HolderLock`, which no killed process
leaves behind). Reading, it skips a last line without its newline (a record still being written) but
raises on an unreadable line followed by a readable one, so a record cut by a crash or a full disk
breaks every later read once anything is appended after it. Here, under the same lock:

- an append that fails (no space left) is undone, so the file never ends in half a record;
- unreadable lines at the end (a torn last record) are moved to ``<journal>.torn`` and dropped,
  with one warning naming the count, as write-ahead logs drop a torn tail;
- an unreadable line with readable records after it, or a completed trial whose result record is
  missing, is damage: one line names the file and the line and points to ``prunepilot repair``.

:func:`repair_journal` keeps every readable record (a record appended onto a torn one is salvaged
from its line), keeps the damaged file as ``<journal>.bak``, and makes the trials whose records
were lost whole again or leaves them unfinished, so that ``--resume`` runs them again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

from prunepilot.errors import UsageError
from prunepilot.rundir import check_length, write_atomically
from prunepilot.search.journal_lock import HolderLock

__all__ = [
    "JournalDamaged", "RepairSummary", "WholeRecordBackend",
    "check_journal", "open_journal", "repair_journal",
]  # fmt: skip

TORN_SUFFIX = ".torn"
BACKUP_SUFFIX = ".bak"
#: What every completed trial of a prunepilot study records (a completed trial without them lost
#: a record).
COMPLETED_TRIAL_ATTRS = ("policy", "result")
_RECORD_START = b'{"op_code":'


class JournalDamaged(UsageError):
    """A study journal with damage that reading cannot skip (``prunepilot repair`` mends it)."""


class WholeRecordBackend(JournalFileBackend):
    """Optuna's journal file, whose appends are written whole or not at all: a failed write (no
    space left) is cut back off before the error is raised."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        payload = _as_lines(logs).encode()
        with get_lock_file(self._lock):
            handle = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.fstat(handle).st_size
                try:
                    written = 0
                    while written < len(payload):
                        written += os.write(handle, payload[written:])
                    os.fsync(handle)
                except OSError as exc:
                    os.ftruncate(handle, start)  # shrinking needs no space
                    raise OSError(exc.errno, exc.strerror, self._file_path) from exc
            finally:
                os.close(handle)


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based
    raw: bytes
    record: dict[str, Any] | None  # None: unreadable


def open_journal(path: str | Path, warn: Callable[[str], None] | None = None) -> JournalStorage:
    """The journal storage at ``path`` (created when missing), its torn end dropped first.

    Raises:
        JournalDamaged: one line naming the file, the damaged line and ``prunepilot repair``.
    """
    warn = warn or (lambda text: print(f"prunepilot: warning: {text}", file=sys.stderr))
    path = Path(path)
    check_journal(path)
    lock = HolderLock(path)
    backend = WholeRecordBackend(str(path), lock_obj=lock)
    with get_lock_file(lock):
        lines = _read_lines(path)
        readable = [line.number for line in lines if line.record is not None]
        torn = [line for line in lines if line.record is None and line.number > max(readable, default=0)]
        if torn:
            _drop_torn_end(path, torn)
            warn(
                f"{path}: dropped {len(torn)} torn record(s) at its end (a write cut short; kept in "
                f"{path.name}{TORN_SUFFIX}); the {len(readable)} records before them are read."
            )
    damaged = next((line for line in lines if line.record is None and line not in torn), None)
    if damaged is not None:
        raise _damage(path, damaged.number, "is not a readable record")
    storage = JournalStorage(backend)
    for study in storage.get_all_studies():
        for trial in storage.get_all_trials(study._study_id):  # noqa: SLF001 - no public study id
            lost = _lost_records(trial)
            if lost:
                raise _damage(path, None, f"holds trial {trial.number}, complete without its {lost} record")
    return storage


def check_journal(path: Path) -> None:
    """Refuses what must not be taken for a study journal: a symbolic link (prunepilot writes no file
    through a link), anything but a regular file, and a file that is not a journal (its first line
    not a record: a file given by mistake, which reading would rewrite). A missing file is fine (a
    new journal). Nothing is written.

    Raises:
        UsageError: one line naming the path and what is accepted.
    """
    check_length(path, "--storage")
    if path.is_symlink():
        raise UsageError(
            f"The study journal {path} is a symbolic link; prunepilot writes no file through a link: "
            "put the journal itself there, or give another path.",
            "storage",
        )
    if not path.exists():
        return
    if not path.is_file():
        raise UsageError(
            f"The study journal {path} is not a file; move what stands in its place aside.", "storage"
        )
    with open(path, "rb") as handle:
        start = handle.read(len(_RECORD_START))
    if start and start != _RECORD_START:
        raise UsageError(
            f"{path} is not a study journal (it does not start with a record); give a journal's path, "
            "a new file's, or a storage URL such as sqlite:///studies.db.",
            "storage",
        )


@dataclass(frozen=True)
class RepairSummary:
    """What :func:`repair_journal` did.

    Attributes:
        kept: Records kept (salvaged ones included).
        dropped: Unreadable lines dropped.
        salvaged: Records recovered from a line that held a torn record before them.
        placeholders: Lost trial creations replaced (the trial keeps its number, unfinished).
        unfinished: Completed trials left unfinished because their result was lost.
        backup: Where the damaged file was kept; None when nothing needed repair (nothing written).
    """

    kept: int
    dropped: int
    salvaged: int
    placeholders: int
    unfinished: int
    backup: Path | None

    def describe(self) -> str:
        """One line for the user."""
        if self.backup is None:
            return f"nothing to repair ({self.kept} readable records)"
        parts = [f"kept {self.kept} records", f"dropped {self.dropped} unreadable line(s)"]
        if self.salvaged:
            parts.append(f"salvaged {self.salvaged} record(s) written onto a torn one")
        if self.placeholders:
            parts.append(f"{self.placeholders} trial(s) whose creation was lost kept their number")
        if self.unfinished:
            parts.append(f"{self.unfinished} completed trial(s) without their result left to run again")
        return ", ".join(parts) + f"; the damaged file is kept as {self.backup}"


def repair_journal(path: str | Path) -> RepairSummary:
    """Rewrites the journal at ``path`` with every readable record (see the module's docstring),
    after copying it to ``<path>.bak`` (``.bak.1``, ... when taken); a whole journal is left as it
    is. The caller holds the run."""
    path = Path(path)
    check_journal(path)
    lock = HolderLock(path)
    with get_lock_file(lock):
        lines = _read_lines(path)
        records, dropped, salvaged, placeholders = _readable_records(lines)
        records, unfinished = _applicable(records)
        if not (dropped or placeholders or unfinished) and len(records) == len(lines):
            return RepairSummary(len(records), 0, 0, 0, 0, None)
        backup = _free_name(path.with_name(path.name + BACKUP_SUFFIX))
        shutil.copy2(path, backup)
        write_atomically(path, _as_lines(records))
    return RepairSummary(len(records), dropped, salvaged, placeholders, unfinished, backup)


def _as_lines(records: list[dict[str, Any]]) -> str:
    """``records`` as the journal holds them: compact JSON, one a line (Optuna's own format)."""
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)


def _read_lines(path: Path) -> list[_Line]:
    if not path.exists():
        return []
    if not path.is_file():
        raise UsageError(f"The study journal {path} is not a file; move what stands in its place aside.")
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        lines.append(_Line(number, raw, _parse(raw) if raw.endswith(b"\n") else None))
    return lines


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("op_code"), int) else None


def _drop_torn_end(path: Path, torn: list[_Line]) -> None:
    """Moves the torn lines to ``<path>.torn`` and cuts them off ``path``."""
    tail = b"".join(line.raw for line in torn)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW  # never through a link
    kept = os.open(path.with_name(path.name + TORN_SUFFIX), flags, 0o666)
    try:
        os.write(kept, tail if tail.endswith(b"\n") else tail + b"\n")
    finally:
        os.close(kept)
    journal = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        os.ftruncate(journal, os.fstat(journal).st_size - len(tail))
    finally:
        os.close(journal)


def _damage(path: Path, line: int | None, what: str) -> JournalDamaged:
    where = f"line {line} of the study journal {path}" if line else f"the study journal {path}"
    run = path.parent if path.name == "study.journal" else path
    return JournalDamaged(
        f"{where[0].upper()}{where[1:]} {what}; run 'prunepilot repair {run}' to keep every readable "
        f"record (the damaged file is kept as {path.name}{BACKUP_SUFFIX}), then resume or report."
    )


def _readable_records(lines: list[_Line]) -> tuple[list[dict], int, int, int]:
    """The readable records in order, a record salvaged from the end of an unreadable line, and a
    placeholder where a lost line created a trial (so that later trials keep their ids). One pass,
    linear in the journal's size."""
    records: list[dict] = []
    dropped = salvaged = placeholders = created = 0  # created: trials the kept records create
    for index, line in enumerate(lines):
        if line.record is not None:
            records.append(line.record)
            created += line.record["op_code"] == JournalOperation.CREATE_TRIAL
            continue
        dropped += 1
        if _lost_a_creation(line, lines, index + 1, created):
            records.append(_placeholder(records))
            placeholders += 1
            created += 1
        start = line.raw.rfind(_RECORD_START)
        embedded = _parse(line.raw[start:].rstrip(b"\n") + b"\n") if start > 0 else None
        if embedded is not None:
            records.append(embedded)
            salvaged += 1
            created += embedded["op_code"] == JournalOperation.CREATE_TRIAL
    return records, dropped, salvaged, placeholders


def _lost_a_creation(line: _Line, lines: list[_Line], after: int, created: int) -> bool:
    """Whether the unreadable ``line`` created a trial: its visible op code says so, or a record
    after it (``lines[after:]``, up to the next creation or unreadable line) names a trial id that
    none of the ``created`` trials before it has."""
    if line.raw.startswith(_RECORD_START):
        code = line.raw[len(_RECORD_START) :].split(b",", 1)[0]
        if code.isdigit():
            return int(code) == JournalOperation.CREATE_TRIAL
    for index in range(after, len(lines)):
        record = lines[index].record
        if record is None or record["op_code"] == JournalOperation.CREATE_TRIAL:
            return False
        if record.get("trial_id", -1) >= created:
            return True
    return False


def _placeholder(before: list[dict]) -> dict:
    study_id = next((r["study_id"] for r in reversed(before) if "study_id" in r), 0)
    return {"op_code": int(JournalOperation.CREATE_TRIAL), "worker_id": "prunepilot-repair",
            "study_id": study_id, "datetime_start": None, "system_attrs": {"repaired": True}}  # fmt: skip


def _applicable(records: list[dict]) -> tuple[list[dict], int]:
    """``records`` less those Optuna cannot apply, and less the state record of a completed trial
    that lost its result (left unfinished, a resumed run runs it again)."""
    replay = JournalStorageReplayResult("prunepilot-repair-")
    kept = []
    for record in records:
        try:
            replay.apply_logs([record])
        except Exception:  # noqa: BLE001, S112 - a record Optuna cannot apply is dropped
            continue
        kept.append(record)
    trials = replay._trials  # noqa: SLF001 - the replay's own state
    incomplete = {trial_id for trial_id, trial in trials.items() if _lost_records(trial)}
    kept = [r for r in kept if not (_completes(r) and r.get("trial_id") in incomplete)]
    return kept, len(incomplete)


def _lost_records(trial: FrozenTrial) -> str | None:
    """The first of :data:`COMPLETED_TRIAL_ATTRS` a completed ``trial`` lacks; None if whole."""
    if trial.state != TrialState.COMPLETE:
        return None
    return next((name for name in COMPLETED_TRIAL_ATTRS if name not in trial.user_attrs), None)


def _completes(record: dict) -> bool:
    """Whether ``record`` is the one that completes a trial."""
    finishing = record["op_code"] == JournalOperation.SET_TRIAL_STATE_VALUES
    return finishing and record.get("state") == TrialState.COMPLETE.value


def _free_name(path: Path) -> Path:
    candidate, suffix = path, 0
    while candidate.exists():
        suffix += 1
        candidate = path.with_name(f"{path.name}.{suffix}")
    return candidate
