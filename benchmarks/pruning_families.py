"""Pruning families: distillation, the gradual schedule and the slimming warm-up against prunepilot
without them, side by side.

For each task (mnist at 30% of the baseline's latency, digits at 20%) and seed:

1. ``prunepilot search`` without any family (as users run it today);
2. the final fine-tune made again for that search's ranked front (the same final candidates, the
   same steps, the same budget judgement on re-measurement), in three arms measured one after the
   other: one-shot (today's), ``--distill`` and ``--schedule gradual``. These arms are paired: the
   same policies, only the final fine-tune differs;
3. ``prunepilot search --slimming-steps N``: a search of its own (the warm-up changes the model the
   trials rank), compared with step 1's final model.

Reported per arm: the test accuracy of the chosen model and whether it met the budget on
re-measurement (when no candidate does, the cheapest one finalized is scored),
the per-seed difference to one-shot (to step 1 for slimming), and the median over seeds. The
final fine-tune's wall time shows each arm's cost.

    .venv/bin/python benchmarks/pruning_families.py [--tasks mnist,digits] [--seeds 0,1,2] [--trials 16]
        [--slimming-steps 300] [--json benchmarks/results/pruning_families.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from results_file import finish

from prunepilot.api import run
from prunepilot.distill import Distillation
from prunepilot.errors import UsageError
from prunepilot.final import finalize_candidates
from prunepilot.pipeline import prepare
from prunepilot.search import open_study
from prunepilot.search.pareto import maximizes, ranked_front
from prunepilot.spec import JobSpec

BUDGETS = {"mnist": "30%", "digits": "20%"}
ARMS = ("oneshot", "distill", "gradual")


def _quiet(_text: str) -> None:
    pass


def search(spec: JobSpec, out: Path) -> dict:
    """Runs ``spec`` and returns its report (None for the final when no candidate met the budget)."""
    run(spec, progress=False, log=_quiet)
    return json.loads((out / str(spec.name) / "report.json").read_text())


def refinalize(spec: JobSpec, out: Path) -> dict[str, dict]:
    """The run's final fine-tune made again in each arm, on the run's ranked front."""
    prepared = prepare(spec.resolve(), progress=False)
    run_dir = out / str(spec.name)
    baseline = json.loads((run_dir / "baseline.json").read_text())
    budget = prepared.job.budget_limit(baseline)
    study = open_study(run_dir, spec.seed)
    ranked = ranked_front(study)
    final = spec.final_settings(prepared.with_reference(baseline))
    arms = {
        "oneshot": final,
        "distill": replace(final, distill=Distillation(spec.distill_temperature, spec.distill_weight)),
        "gradual": replace(final, schedule="gradual", schedule_stages=spec.schedule_stages),
    }
    results = {}
    for arm, settings in arms.items():
        start = time.perf_counter()
        done = finalize_candidates(
            ranked, prepared.task, settings, budget, _quiet, spec.device, maximizes(study)
        )
        met = done is not None and done.final["budget_met"]
        results[arm] = {
            "test_accuracy": done.final["test_accuracy"] if done else None,
            "val_accuracy": done.final["val_accuracy"] if done else None,
            "trial": done.trial.number if done else None,
            "budget_met": met,
            "wall_s": round(time.perf_counter() - start, 1),
            "fine_tune_s": round(done.final["timings"].get("fine_tune", 0.0), 1) if done else None,
        }
        print(f"    {arm:8s} test {results[arm]['test_accuracy']}  trial {results[arm]['trial']}  "
              f"{results[arm]['wall_s']} s", flush=True)  # fmt: skip
    return results


def summarize(rows: list[dict], arm: str, reference: str) -> dict:
    """Per-seed differences of ``arm`` to ``reference`` (in points) and their median."""
    deltas = [
        round(100 * (row[arm] - row[reference]), 2)
        for row in rows
        if row.get(arm) is not None and row.get(reference) is not None
    ]
    return {"deltas_pt": deltas, "median_pt": statistics.median(deltas) if deltas else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mnist,digits")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--slimming-steps", type=int, default=300)
    parser.add_argument("--slimming-reg", type=float, default=JobSpec.slimming_reg)
    parser.add_argument("--json", default="benchmarks/results/pruning_families.json")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict = {"settings": vars(args), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for task in args.tasks.split(","):
            rows = []
            for seed in (int(s) for s in args.seeds.split(",")):
                print(f"{task} seed {seed}: search at {BUDGETS[task]} ...", flush=True)
                spec = JobSpec(budget=BUDGETS[task], task=task, trials=args.trials, seed=seed, out=str(out),
                               name=f"{task}-{seed}", ratio_max=0.9)  # fmt: skip
                try:
                    plain = search(spec, out)
                except UsageError as exc:  # a budget the space cannot reach
                    print(f"  {exc}", flush=True)
                    rows.append({"seed": seed, "error": str(exc)})
                    continue
                row = {"seed": seed, "search": plain["final"] and plain["final"]["test_accuracy"],
                       "baseline": plain["final"] and plain["final"]["baseline_test_accuracy"]}  # fmt: skip
                arms = refinalize(spec, out)
                row.update({arm: arms[arm]["test_accuracy"] for arm in ARMS}, arms=arms)
                print(f"  slimming warm-up of {args.slimming_steps} steps, then the search ...", flush=True)
                slimmed = search(replace(spec, name=f"{task}-{seed}-slim", slimming_steps=args.slimming_steps,
                                         slimming_reg=args.slimming_reg), out)  # fmt: skip
                row["slimming"] = slimmed["final"] and slimmed["final"]["test_accuracy"]
                row["slimming_record"] = slimmed["slimming"]
                row["budget_met"] = {"search": plain["budget_met"], "slimming": slimmed["budget_met"],
                                     **{arm: arms[arm]["budget_met"] for arm in ARMS}}  # fmt: skip
                print(f"  {json.dumps({k: row[k] for k in ('search', *ARMS, 'slimming')})}", flush=True)
                rows.append(row)
            results["tasks"][task] = {
                "budget": BUDGETS[task],
                "rows": rows,
                "distill": summarize(rows, "distill", "oneshot"),
                "gradual": summarize(rows, "gradual", "oneshot"),
                "slimming": summarize(rows, "slimming", "search"),
            }
            print(f"{task}: " + json.dumps({k: v for k, v in results["tasks"][task].items() if k != "rows"}),
                  flush=True)  # fmt: skip
    finish(args.json, results, started)


if __name__ == "__main__":
    main()
