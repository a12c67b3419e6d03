"""An honest front: how far the accuracy a whole-trade-off run's front shows is from what its
points reach after the final fine-tune, and what front promotion costs.

Per task and seed: ``prunepilot search --budget 100%`` as users run it (the baseline meets the
budget: the run maps the whole trade-off, and promotes the front's cheapest points within
``--promotion-share`` of the trials' worker time). Then every front point under ``--below`` of the
baseline's latency is made again with the final fine-tune (``finalize``, as ``prunepilot export
--trial N`` makes it) and scored on the validation split. Printed per run: for those points, the
gap between that score and what the front shows (the promoted score where the point was
promoted, else the trial score), next to the gap of the trial scores alone (the front before
promotion); and the promotions' worker time as a share of the trials'. Medians over all points.

    .venv/bin/python benchmarks/front_honesty.py [--tasks mnist] [--seeds 0,1,2] [--trials 24]
        [--below 0.3] [--promotion-share 0.3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from results_file import finish

from prunepilot.api import run
from prunepilot.final import finalize
from prunepilot.pipeline import prepare
from prunepilot.policies import Policy
from prunepilot.spec import JobSpec


def _quiet(_text: str) -> None:
    pass


def measure(task: str, seed: int, trials: int, below: float, share: float, out: Path) -> dict:
    """One whole-trade-off run and the final fine-tune of its front points under ``below``."""
    spec = JobSpec(budget="100%", task=task, trials=trials, seed=seed, out=str(out), name=f"{task}-{seed}",
                   promotion_share=share)  # fmt: skip
    started = time.perf_counter()
    run(spec, progress=False, log=_quiet)
    run_s = time.perf_counter() - started
    report = json.loads((out / spec.name / "report.json").read_text())
    base_ms = report["baseline"]["latency_ms"]
    by_number = {t["number"]: t for t in report["trials"]}
    cheap = [by_number[n] for n in report["front"] if by_number[n]["result"]["latency_ms"] <= below * base_ms]
    job = prepare(spec.resolve(), progress=False)
    settings = spec.final_settings(job.settings)
    points = []
    for trial in cheap:
        final = finalize(job.task, Policy.from_dict(trial["policy"]), settings).final["val_accuracy"]
        shown = trial["promoted"]["val_accuracy"] if trial["promoted"] else trial["result"]["accuracy"]
        points.append({
            "number": trial["number"],
            "latency_ratio": trial["result"]["latency_ms"] / base_ms,
            "trial_score": trial["result"]["accuracy"],
            "shown": shown,
            "promoted": bool(trial["promoted"]),
            "final_val_accuracy": final,
        })  # fmt: skip
    phases = report["run"]["phases_s"]
    return {
        "task": task,
        "seed": seed,
        "front_size": len(report["front"]),
        "points": points,
        "promotion": report["promotion"],
        "promotion_wall_share_of_trials": phases.get("promotion", 0.0) / phases["trials"],
        "run_s": run_s,
    }


def _gaps(rows: list[dict], key: str) -> list[float]:
    return [100 * abs(p["final_val_accuracy"] - p[key]) for r in rows for p in r["points"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=JobSpec.trials)
    parser.add_argument("--below", type=float, default=0.3, help="front points under this latency share")
    parser.add_argument("--promotion-share", type=float, default=JobSpec.promotion_share)
    parser.add_argument("--json", default="benchmarks/results/front_honesty.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                row = measure(task, seed, args.trials, args.below, args.promotion_share, Path(tmp))
                rows.append(row)
                shown, trial = _gaps([row], "shown"), _gaps([row], "trial_score")
                print(
                    f"{task} seed {seed}: {len(row['points'])} front points under {args.below:.0%} "
                    f"({sum(p['promoted'] for p in row['points'])} promoted); gap shown "
                    f"{statistics.median(shown) if shown else float('nan'):.1f} pt, trial score "
                    f"{statistics.median(trial) if trial else float('nan'):.1f} pt; promotion "
                    f"{row['promotion']['share_of_trials'] or 0:.0%} of the trials' worker time, "
                    f"{row['promotion_wall_share_of_trials']:.0%} of their wall time ({row['run_s']:.0f} s)",
                    flush=True,
                )
    shown, trial = _gaps(rows, "shown"), _gaps(rows, "trial_score")
    summary = {
        "median_gap_shown_pt": statistics.median(shown) if shown else None,
        "median_gap_trial_score_pt": statistics.median(trial) if trial else None,
        "points": len(shown),
        "median_promotion_share_of_trials": statistics.median(
            r["promotion"]["share_of_trials"] or 0.0 for r in rows
        ),
    }
    print(
        f"\nfront points under {args.below:.0%} of the baseline's latency, all runs ({summary['points']}): "
        f"median gap shown {summary['median_gap_shown_pt']} pt (target <= 2), trial scores alone "
        f"{summary['median_gap_trial_score_pt']} pt; promotion's median share of the trials' worker time "
        f"{summary['median_promotion_share_of_trials']:.0%} (target <= 30%)"
    )
    finish(args.json, {"rows": rows, "summary": summary, "settings": vars(args)}, started)


if __name__ == "__main__":
    main()
