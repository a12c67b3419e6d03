"""Promotion: how much of a front's shortfall is the short trial fine-tune's, not the search's?

Reads the runs that ``search_quality.py --no-budgets --keep DIR --json F`` kept. For each run
(prunepilot's ``--budget 100%`` run, or a uniform-L1 or random run), the trials on its front of
(validation accuracy, latency / baseline latency) faster than ``--below`` are fine-tuned again from
the start for ``--steps`` steps (the final fine-tune's length by default), as a search that promotes
its promising trials to a longer fine-tune would, and the hypervolume is recomputed with their new
validation accuracy (the latency is unchanged: same policy, same architecture). Promotions run two
at a time, one thread each, like trials; their fine-tune time is reported against the run's own
trial fine-tune time, the cost to weigh against the gain.

Printed per task and method: the hypervolume before and after promotion (median [min, max] over
seeds), and the ratios to random search's hypervolume as searched and after the same promotion: a
search strategy may promote, but promotion lifts any search's front, so only the second ratio
credits the search itself.

    .venv/bin/python benchmarks/search_quality.py --tasks mnist --methods prunepilot,random \\
        --no-budgets --keep runs-kept --json kept.json
    .venv/bin/python benchmarks/promotion.py kept.json runs-kept [--steps 600] [--below 1.0]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from results_file import finish
from search_quality import REFERENCE, run_name, spread

from prunepilot.evaluators import top1_accuracy
from prunepilot.pipeline import prepare
from prunepilot.policies import Policy
from prunepilot.search.pareto import hypervolume, pareto_indices
from prunepilot.search.study import STUDY_FILE, STUDY_NAME, open_storage
from prunepilot.spec import JobSpec
from prunepilot.trial import prune_and_train


def trained_trials(folder: Path, points: list) -> list[tuple[dict, float, float, float]]:
    """(policy, val accuracy, latency ratio, trial fine-tune seconds) of each trained trial of the
    run kept in ``folder``, in the order of its row's ``points``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(str(folder / STUDY_FILE)))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if [t.values[0] for t in done] != [accuracy for accuracy, _ in points]:
        raise SystemExit(f"{folder}: its completed trials do not match the points of its JSON row")
    return [
        (t.user_attrs["policy"], accuracy, latency, t.user_attrs["result"]["timings"]["fine_tune"])
        for t, (accuracy, latency) in zip(done, points, strict=True)
    ]


def promote(job_args: tuple[str, int, dict, int]) -> tuple[float, float]:
    """The validation accuracy of ``policy`` after ``steps`` fine-tune steps, and the seconds taken."""
    task_name, seed, policy, steps = job_args
    torch.set_num_threads(1)
    job = prepare(JobSpec(task=task_name, seed=seed, dry_run=True).resolve(), progress=False)
    start = time.perf_counter()
    model, _ = prune_and_train(
        job.task.model,
        job.task.train,
        job.task.input_shape,
        Policy.from_dict(policy),
        replace(job.settings, finetune_steps=steps),
    )
    seconds = time.perf_counter() - start
    return top1_accuracy(model, job.task.val), seconds


def promoted_row(row: dict, keep: Path, steps: int, below: float, pool) -> dict:
    points = row["points"]["100%" if row["method"] == "prunepilot" else "all"]
    trials = trained_trials(keep / run_name(row["method"], row["task"], row["seed"]), points)
    chosen = [i for i in pareto_indices(points) if points[i][1] < below]
    outcomes = pool.map(promote, [(row["task"], row["seed"], trials[i][0], steps) for i in chosen])
    new = list(points)
    for i, (accuracy, _) in zip(chosen, outcomes, strict=True):
        new[i] = (accuracy, points[i][1])
    return {
        "task": row["task"],
        "seed": row["seed"],
        "method": row["method"],
        "promoted": len(chosen),
        "hypervolume": hypervolume(points, REFERENCE),
        "hypervolume_promoted": hypervolume(new, REFERENCE),
        "promotion_s": sum(seconds for _, seconds in outcomes),
        "trial_fine_tune_s": sum(t[3] for t in trials),
        "accuracies": [(points[i][1], points[i][0], new[i][0]) for i in chosen],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", help="the JSON file search_quality.py wrote (--json)")
    parser.add_argument("keep", help="the folder search_quality.py kept its runs in (--keep)")
    parser.add_argument("--steps", type=int, default=JobSpec().final_steps)
    parser.add_argument(
        "--below", type=float, default=1.0, help="promote front points faster than this ratio"
    )
    parser.add_argument("--json", default="benchmarks/results/promotion.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = json.loads(Path(args.rows).read_text())["rows"]
    out = []
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for row in rows:
            done = promoted_row(row, Path(args.keep), args.steps, args.below, pool)
            out.append(done)
            print(
                f"{done['task']} seed {done['seed']} {done['method']:11} hv {done['hypervolume']:.4f} "
                f"-> {done['hypervolume_promoted']:.4f} ({done['promoted']} promoted, "
                f"{done['promotion_s']:.0f} s against {done['trial_fine_tune_s']:.0f} s of trial fine-tunes)",
                flush=True,
            )
    for task in dict.fromkeys(r["task"] for r in out):
        print(f"\n== {task} ==  {args.steps} steps for front points below latency ratio {args.below}")
        medians = {}
        for method in dict.fromkeys(r["method"] for r in out):
            mine = [r for r in out if r["task"] == task and r["method"] == method]
            before = [r["hypervolume"] for r in mine]
            after = [r["hypervolume_promoted"] for r in mine]
            cost = statistics.median(r["promotion_s"] / r["trial_fine_tune_s"] for r in mine)
            medians[method] = statistics.median(before), statistics.median(after)
            print(
                f"{method:11} {spread(before)} -> {spread(after)}  "
                f"(promotion: {cost:.0%} of trial fine-tune time)"
            )
        if "prunepilot" in medians and "random" in medians:
            pp, rand = medians["prunepilot"], medians["random"]
            print(f"prunepilot promoted / random as searched: {pp[1] / rand[0]:.3f}x")
            print(f"prunepilot promoted / random promoted:    {pp[1] / rand[1]:.3f}x")
            print(f"prunepilot / random, neither promoted:    {pp[0] / rand[0]:.3f}x")
    finish(args.json, {"rows": out, "steps": args.steps, "below": args.below}, started)


if __name__ == "__main__":
    main()
