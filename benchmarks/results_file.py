"""Where a benchmark's figures go: printed wall time, and a JSON file under benchmarks/results/."""

from __future__ import annotations

import json
import time
from pathlib import Path


def finish(path: str, results: object, started: float) -> None:
    """Prints the wall time since ``started`` and writes ``results`` to ``path`` as JSON."""
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {path}")
