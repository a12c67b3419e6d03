"""Wall time of each trial phase and of the whole search, on the built-in default task.

Runs ``prunepilot search --budget 2x`` with the default settings (24 trials) in a temporary folder
and prints the median seconds of each phase over the trials, and the search's wall time.

    .venv/bin/python benchmarks/trial_phases.py [--trials N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from prunepilot.cli import main as prunepilot
from prunepilot.trial import PHASES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--budget", default="2x")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        code = prunepilot(
            ["search", "--budget", args.budget, "--trials", str(args.trials), "--out", out,
             "--name", "bench", "--quiet"]
        )  # fmt: skip
        total = time.perf_counter() - start
        report = json.loads((Path(out) / "bench" / "report.json").read_text())
    trials = [t for t in report["trials"] if t["result"]]
    print(f"\nDefault task, budget {args.budget}, {len(trials)} completed trials (exit code {code})")
    print(f"{'phase':18} {'median s':>9} {'min s':>8} {'max s':>8}")
    per_trial = []
    for phase in PHASES:
        values = [t["result"]["timings"][phase] for t in trials]
        print(f"{phase:18} {statistics.median(values):9.3f} {min(values):8.3f} {max(values):8.3f}")
    per_trial = [sum(t["result"]["timings"].values()) for t in trials]
    durations = [t["duration_s"] for t in trials]
    print(f"{'trial (phases)':18} {statistics.median(per_trial):9.3f}")
    print(f"{'trial (wall)':18} {statistics.median(durations):9.3f}")
    print(f"search wall time: {report['run']['search_wall_s']:.1f} s")
    if report["final"]:
        print(f"final fine-tune + measurement: {report['final']['wall_s']:.1f} s")
        final = report["final"]
        print(
            f"chosen: test accuracy {final['test_accuracy']:.4f} "
            f"(baseline {final['baseline_test_accuracy']:.4f}), latency "
            f"{final['latency_ms']:.3f} ms (baseline {final['baseline_latency_ms']:.3f} ms)"
        )
    print(f"whole command (load, baseline, search, final, export, report): {total:.1f} s")


if __name__ == "__main__":
    main()
