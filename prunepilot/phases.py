"""Wall time per phase of a run (prepare, baseline, calibration, trials, promotion, final, export),
kept in ``report.json`` and printed at the end of a run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PHASES", "PhaseClock"]

#: The phases of a run, in the order they run.
PHASES = ("prepare", "baseline", "calibration", "trials", "promotion", "final", "export")


@dataclass
class PhaseClock:
    """Wall seconds spent in each phase of one run (a resumed run counts its own time only).

    Attributes:
        seconds: Seconds per phase name (a phase entered twice adds up).
        started: When the clock started (``time.perf_counter``).
        last: The phase entered last (the one an interruption stopped).
    """

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    last: str | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Counts the time spent inside the ``with`` block towards ``name``."""
        if name not in PHASES:
            raise ValueError(
                f"The 'name' parameter of PhaseClock.phase must be in {PHASES}. Got {name!r} instead."
            )
        start, self.last = time.perf_counter(), name
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.started

    def to_dict(self) -> dict[str, Any]:
        """The report's entries: ``phases_s`` (in run order), ``wall_s`` (the whole run up to now)
        and ``calibration_share`` (the latency calibration's share of ``wall_s``)."""
        wall = self.elapsed()
        return {
            "phases_s": {name: round(self.seconds[name], 3) for name in PHASES if name in self.seconds},
            "wall_s": round(wall, 3),
            "calibration_share": round(self.seconds.get("calibration", 0.0) / wall, 4) if wall > 0 else 0.0,
        }

    def summary(self) -> str:
        """One line: each phase's seconds, then the whole run's."""
        times = self.to_dict()
        parts = [f"{name} {seconds:.0f} s" for name, seconds in times["phases_s"].items()]
        share = times["calibration_share"]
        if "calibration" in times["phases_s"]:
            parts[list(times["phases_s"]).index("calibration")] += f" ({100 * share:.0f}%)"
        return f"Wall time: {', '.join(parts)}; {times['wall_s']:.0f} s in all."
