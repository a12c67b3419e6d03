"""The run directory: one folder per run, locked while in use, every file written atomically."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from prunepilot.errors import UsageError, cut, invalid_parameter

LOCK_FILE = ".lock"
#: Temporary files start with this; a writer killed mid-write leaves one, removed at the next open.
TEMPORARY_PREFIX = ".tmp-"


def cache_dir() -> Path:
    """Where what outlives a run is kept: trained built-in models, latency calibrations
    (``$PRUNEPILOT_CACHE``, default ``~/.cache/prunepilot``)."""
    return Path(os.environ.get("PRUNEPILOT_CACHE", Path.home() / ".cache" / "prunepilot"))


#: What a run name may be, in the standard message's words.
FOLDER_NAME = "a folder name (no '/', '\\' or control characters, not '.' or '..', at most 200 bytes)"


def is_folder_name(name: object) -> bool:
    """Whether ``name`` is one folder inside ``--out`` (never a path leading elsewhere)."""
    return (
        isinstance(name, str) and name not in ("", ".", "..") and name.isprintable()
        and not any(c in name for c in "/\\") and len(name.encode("utf-8", "replace")) <= 200
    )  # fmt: skip


def default_run_name(root: str | Path) -> str:
    """A timestamped run name not yet used under ``root``, e.g. ``search-20261123-154501``."""
    base = time.strftime("search-%Y%m%d-%H%M%S")
    name, suffix = base, 1
    while (Path(root) / name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def resume_command_line(name: str, out: str | Path) -> str:
    """The command that continues run ``name`` under ``out``, quoted for a POSIX shell (a name with
    spaces or ``;`` pastes as one argument)."""
    return shlex.join(["prunepilot", "search", "--resume", "--name", name, "--out", str(out)])


def write_atomically(path: Path, data: bytes | str) -> None:
    """Writes ``data`` to a temporary file beside ``path``, then renames it over ``path``.

    The file gets the usual permissions (0666 less the umask); a failed write leaves ``path`` as it
    was and no temporary file behind.
    """
    payload = data.encode() if isinstance(data, str) else data
    umask = os.umask(0)
    os.umask(umask)
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115
        dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.name}.", delete=False
    )
    try:
        with tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, 0o666 & ~umask)
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise


class RunDir:
    """A run's folder. Use :meth:`open`; hold it with ``with`` to keep the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_handle = None

    @staticmethod
    def check(root: str | Path, name: str, resume: bool) -> Path:
        """Checks, without creating anything, that ``root/name`` can be opened; returns the path.

        Raises:
            UsageError: when the folder exists without ``resume`` or holds no run with ``resume``.
        """
        if not is_folder_name(name):
            raise invalid_parameter("name", "JobSpec (--name)", FOLDER_NAME, name)
        RunDir.check_root(root)
        path = Path(root) / name
        check_length(path, "--out and --name")
        if resume and not (path / "config.json").is_file():
            raise UsageError(
                f"Cannot resume {str(path)!r}: it holds no run (no config.json); "
                "drop --resume to start a new run."
            )
        if not resume and path.exists():
            raise _exists(path)
        return path

    @staticmethod
    def check_root(root: str | Path) -> None:
        """Refuses a ``--out`` that cannot hold runs: a link to nothing, a path too long for the system.

        Raises:
            UsageError: one line naming it and what is accepted.
        """
        check_length(Path(root), "--out")
        if os.path.islink(root) and not os.path.exists(root):
            raise UsageError(
                f"--out {cut(str(root))!r} is a symbolic link to nothing ({cut(os.readlink(root))}); give a "
                "folder (it is created when missing)."
            )

    @classmethod
    def open(cls, root: str | Path, name: str, resume: bool) -> RunDir:
        """Creates ``root/name`` (or reopens it with ``resume``).

        Raises:
            UsageError: when the folder exists without ``resume``, is missing with ``resume``,
                or cannot be written.
        """
        path = cls.check(root, name, resume)
        try:
            path.mkdir(parents=True, exist_ok=resume)
            probe = path / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except FileExistsError:  # created by another run since the check
            raise _exists(path) from None
        except OSError as exc:
            raise UsageError(
                f"Cannot write the output directory {str(path)!r}: {exc.strerror}; choose a writable --out."
            ) from None
        return cls(path)

    def __enter__(self) -> RunDir:
        handle = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UsageError(
                f"The run directory {str(self.path)!r} is in use by another prunepilot process; "
                "wait for it to finish or choose another --name."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        # Holding the lock, no other process writes here: temporaries are a killed writer's.
        for stale in self.path.rglob(f"{TEMPORARY_PREFIX}*"):
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        path = self.file(name)
        write_atomically(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def read_config(self) -> dict[str, Any]:
        """The run's saved job (``config.json``).

        Raises:
            UsageError: when it is not a JSON object (a damaged run directory).
        """
        try:
            config = self.read_json("config.json")
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
            config = exc
        if not isinstance(config, dict):
            raise UsageError(
                f"The saved job {str(self.file('config.json'))!r} is not a JSON object of settings "
                f"({config}); the run directory is damaged, so start a new run."
            )
        return config


def check_length(path: Path, what: str) -> None:
    """Refuses a path the system cannot hold: a name over 255 bytes, or over 4,095 bytes in all.

    Raises:
        UsageError: naming ``what`` gave it.
    """
    parts = [len(part.encode("utf-8", "replace")) for part in path.parts]
    if max(parts, default=0) > 255 or len(str(path).encode("utf-8", "replace")) > 4095:
        raise UsageError(
            f"The path from {what} is too long for the system ({cut(str(path), 80)}): at most 255 bytes "
            "a name and 4,095 in all."
        )


def _exists(path: Path) -> UsageError:
    return UsageError(
        f"The run directory {str(path)!r} already exists; pass --resume to continue it "
        "or choose another --name."
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"Cannot write {type(obj).__name__} to JSON")
