"""Search quality: prunepilot against the hand-made recipe and random search, side by side.

For each task and seed, every method gets the same number of trials, the same trial (BatchNorm
recalibration + the same short fine-tune), the same final fine-tune and the same latency
measurement (each pruned model timed alongside the base model, on Ray with the node's gate):

- prunepilot: ``prunepilot search`` as users run it (budget-aware multivariate TPE with warm
  starts), one run per budget, and one with the budget ``100%`` (the whole trade-off: a sweep of
  uniform policies first, no policy filled up to the budget) whose trials give its hypervolume;
- uniform L1: the standard Torch-Pruning recipe, one ratio for every group scored by L1 magnitude,
  swept over ``trials`` evenly spaced ratios of the same range;
- random: random search over prunepilot's own space (no screen, no warm start);
- global LAMP, global Taylor: Torch-Pruning's own global pruning (``global_pruning=True``, one
  importance threshold across all layers) with LAMP or Taylor importance, its overall ratio swept
  like uniform L1's (``tp_recipes.py``); its final candidates get the same final fine-tune and
  re-timing.

Every method searches ratios up to ``--ratio-max`` (0.9: at 0.8, 30% of the digits model's latency
is at the very edge of the space).

Reported per method: the hypervolume of its (validation accuracy, latency / baseline latency)
trials against the reference point (accuracy 0.5, latency ratio 1.0) (beside it, that of every point
any method found for the seed, and that of one model of accuracy 1.0 at the lowest latency found, a
bound on any front) and within each budget (reference latency ratio 0.5 or 0.3), and the test
accuracy of the best model within 50% and 30% of the baseline's latency, chosen as ``prunepilot
search`` chooses (see ``prunepilot.final.finalize_candidates``). Medians and the spread over seeds
are printed; everything is written as JSON, with each method's final selection per budget.

    .venv/bin/python benchmarks/search_quality.py [--tasks digits,mnist] [--seeds 0,1,2] [--trials 40]
        [--finetune-steps 120]
    .venv/bin/python benchmarks/search_quality.py --tasks mnist --methods prunepilot,random --no-budgets
        [--no-fill]   # hypervolumes only (prunepilot's --budget 100% run), prunepilot with --no-fill
        [--keep DIR]  # every run's folder kept, for benchmarks/promotion.py
    .venv/bin/python benchmarks/search_quality.py --tasks mnist,hf_resnet --tight-only \
        --methods prunepilot,uniform_l1,global_lamp,global_taylor   # against Torch-Pruning's recipes
    .venv/bin/python benchmarks/search_quality.py --merge a.json b.json --json all.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import hf_task
import optuna
from results_file import finish
from tp_recipes import RECIPES, final_of_recipe, global_trial, sweep_policy

from prunepilot.api import run
from prunepilot.budget import BudgetLimit, parse_budget
from prunepilot.evaluators import measure_latency
from prunepilot.final import finalize_candidates
from prunepilot.pipeline import prepare
from prunepilot.search import open_study, run_search, warm_start
from prunepilot.search.executors import RayExecutor
from prunepilot.search.pareto import best_first, hypervolume, pareto_trials
from prunepilot.spec import JobSpec
from prunepilot.trial import run_trial

FRACTIONS = (0.5, 0.3)
REFERENCE = (0.5, 1.0)  # (validation accuracy floor, latency ratio ceiling)
METHODS = ("prunepilot", "uniform_l1", "random", *RECIPES)


def _quiet(_text: str) -> None:
    pass


def task_fields(task: str) -> dict:
    """The JobSpec fields naming a task: a built-in one, or the Hugging Face ResNet on mnist
    (``hf_task.py``, trained and cached on first use), timed at batch 64 like the built-in tasks."""
    if task != hf_task.NAME:
        return {"task": task}
    weights = str(hf_task.weights())
    return {"model": "hf_task:model", "data": "hf_task:data", "weights": weights, "latency_batch": 64}


def run_name(method: str, task: str, seed: int, fraction: float = 1.0) -> str:
    """The folder a method's run is kept in (prunepilot: one run per budget ``fraction``)."""
    return f"prunepilot-{task}-{seed}-{fraction}" if method == "prunepilot" else f"{method}-{task}-{seed}"


def spread(values: list) -> str:
    """Median [min, max] of the values present (None: a budget missed)."""
    present = [v for v in values if v is not None]
    missed = len(values) - len(present)
    if not present:
        return "none met"
    text = f"{statistics.median(present):.4f} [{min(present):.4f}, {max(present):.4f}]"
    return text + (f" ({missed} missed)" if missed else "")


def run_prunepilot(
    task: str,
    seed: int,
    trials: int,
    out: Path,
    ratio_max: float,
    steps: int,
    budgets: bool = True,
    fill: bool = True,
    fractions: tuple[float, ...] = FRACTIONS,
    whole: bool = True,
) -> dict:
    """``prunepilot search`` as users run it: once with the budget ``100%`` (which the baseline
    meets: the run maps the whole trade-off) for the hypervolume, and (with ``budgets``) once per
    budget for the test accuracy within it and the hypervolume within it."""
    result: dict = {"test_accuracy": {}, "budget_met": {}, "hypervolume": {}, "fill": fill}
    for fraction in ((1.0,) if whole else ()) + (fractions if budgets else ()):
        name = run_name("prunepilot", task, seed, fraction)
        spec = JobSpec(
            budget=f"{fraction:.0%}", **task_fields(task), trials=trials, seed=seed, out=str(out), name=name,
            ratio_max=ratio_max, finetune_steps=steps, fill=fill,
        )  # fmt: skip
        run(spec, progress=False, log=_quiet)
        report = json.loads((out / name / "report.json").read_text())
        base_ms = report["baseline"]["latency_ms"]
        points = [
            (t["result"]["accuracy"], t["result"]["latency_ms"] / base_ms)
            for t in report["trials"]
            if t["result"]
        ]
        key = f"{fraction:.0%}"
        result["hypervolume"][key] = hypervolume(points, REFERENCE)
        result.setdefault("points", {})[key] = points
        if fraction == 1.0:
            continue
        # Within the budget: the front below the budget's latency (the region the run searches).
        within = hypervolume(points, (REFERENCE[0], fraction))
        result.setdefault("hypervolume_within_budget", {})[key] = within
        final = report["final"]
        result.setdefault("final", {})[key] = final
        result["test_accuracy"][key] = final["test_accuracy"] if final else None
        result["budget_met"][key] = report["budget_met"]
        result.setdefault("screening", {})[key] = report["screening"]
    result["hypervolume_value"] = result["hypervolume"].get("100%")
    return result


def run_baseline_method(
    method: str,
    task: str,
    seed: int,
    trials: int,
    out: Path,
    ratio_max: float,
    steps: int,
    budgets: bool = True,
    fractions: tuple[float, ...] = FRACTIONS,
) -> dict:
    """The uniform L1 sweep or random search, with prunepilot's trial, final fine-tune and selection
    (the final fine-tunes within each budget only with ``budgets``)."""
    spec = JobSpec(
        budget=f"{FRACTIONS[-1]:.0%}", **task_fields(task), trials=trials, seed=seed, ratio_max=ratio_max,
        finetune_steps=steps,
    )  # fmt: skip
    job = prepare(spec.resolve(), progress=False)
    base_ms = statistics.median(
        measure_latency(job.task.model, job.task.input_shape, job.settings.latency) for _ in range(3)
    )
    settings = replace(job.settings, reference_latency_ms=base_ms)
    run_dir = out / run_name(method, task, seed)
    run_dir.mkdir(parents=True)
    space = job.space
    if method == "random":
        study = open_study(run_dir, seed, optuna.samplers.RandomSampler(seed=seed))
    else:  # a sweep of evenly spaced ratios: uniform L1's, or a global recipe's overall ratio
        study = open_study(run_dir, seed)
        ratios = [
            space.ratio_low + i * (space.max_ratio - space.ratio_low) / (trials - 1) for i in range(trials)
        ]
        criterion = RECIPES.get(method, "l1")
        warm_start(study, space, [sweep_policy(space, round(r, 4), criterion) for r in ratios])
    widest = BudgetLimit("latency_ms", FRACTIONS[-1] * base_ms)
    trial_fn = global_trial if method in RECIPES else run_trial
    with RayExecutor(
        job.task.model, job.task.search_data, settings, spec.executor_settings(), trial_fn=trial_fn
    ).start() as ex:
        run_search(study, ex, space, widest, trials, progress=False)
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    points = [(t.values[0], t.values[1] / base_ms) for t in completed]
    result: dict = {
        "test_accuracy": {},
        "budget_met": {},
        "hypervolume_value": hypervolume(points, REFERENCE),
        "hypervolume_within_budget": {f"{f:.0%}": hypervolume(points, (REFERENCE[0], f)) for f in FRACTIONS},
        "points": {"all": points},
    }
    for fraction in fractions if budgets else ():
        key = f"{fraction:.0%}"
        budget = parse_budget(key).resolve(base_ms)  # fraction * base_ms
        within = [t for t in completed if budget.fits(t.values[1])]
        ranked = best_first(pareto_trials(within))  # as prunepilot search ranks
        if method in RECIPES:
            final = final_of_recipe(ranked, job.task, spec.final_settings(settings), budget)
        else:
            done = finalize_candidates(ranked, job.task, spec.final_settings(settings), budget, _quiet)
            final = done.final if done else None
        result.setdefault("final", {})[key] = final
        result["test_accuracy"][key] = final["test_accuracy"] if final else None
        result["budget_met"][key] = bool(final and final["budget_met"])
    return result


def _summary(rows: list[dict], task: str) -> dict:
    """Medians and spreads over seeds, and the issue's two comparisons."""
    summary: dict = {"task": task}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method and r["task"] == task]
        entry = {"hypervolume": [r["hypervolume_value"] for r in mine]}
        for fraction in FRACTIONS:  # absent from hypervolume-only rows (--no-budgets)
            key = f"{fraction:.0%}"
            within = [r.get("hypervolume_within_budget", {}) for r in mine]
            entry[f"hypervolume_within_{key}"] = [w.get(key) for w in within]
        for fraction in FRACTIONS:
            key = f"{fraction:.0%}"
            entry[f"test_accuracy@{key}"] = [
                r["test_accuracy"][key] if r["budget_met"].get(key) else None for r in mine
            ]
        summary[method] = entry

    def median(values: list) -> float | None:
        return statistics.median([v for v in values if v is not None] or [None])

    def ratio(mine: float | None, theirs: float | None) -> float | None:
        return mine / theirs if mine is not None and theirs else None
    tight = f"test_accuracy@{FRACTIONS[-1]:.0%}"
    pp, uni = median(summary["prunepilot"][tight]), median(summary["uniform_l1"][tight])
    summary["prunepilot_minus_uniform_at_30%_pt"] = None if pp is None or uni is None else 100 * (pp - uni)
    # Against the best of the recipes (uniform L1 and Torch-Pruning's global ones), seed by seed.
    recipes = [m for m in ("uniform_l1", *RECIPES) if any(v is not None for v in summary[m][tight])]
    gaps = []
    for i, mine in enumerate(summary["prunepilot"][tight]):
        theirs = [summary[m][tight][i] for m in recipes if i < len(summary[m][tight])]
        theirs = [v for v in theirs if v is not None]
        if mine is not None and theirs:
            gaps.append(100 * (mine - max(theirs)))
    summary["minus_best_recipe_at_30%_pt"] = gaps
    best = max((median(summary[m][tight]) for m in recipes), default=None, key=lambda v: v or 0)
    summary["minus_best_recipe_median_at_30%_pt"] = None if None in (pp, best) else 100 * (pp - best)
    hv_pp, hv_rand = median(summary["prunepilot"]["hypervolume"]), median(summary["random"]["hypervolume"])
    summary["hypervolume_ratio_prunepilot_over_random"] = ratio(hv_pp, hv_rand)
    # The most any method could show: the front of every point found for a seed, by any method;
    # and a bound on any front: one model of validation accuracy 1.0 at the lowest latency any
    # method measured for the seed (nothing in the space was found faster).
    pooled, ceiling = [], []
    for seed in sorted({r["seed"] for r in rows if r["task"] == task}):
        points = [
            p
            for r in rows
            if r["task"] == task and r["seed"] == seed
            for run_points in r["points"].values()
            for p in run_points
        ]
        pooled.append(hypervolume(points, REFERENCE))
        ceiling.append(hypervolume([(1.0, min(latency for _, latency in points))], REFERENCE))
    summary["hypervolume_pooled"] = pooled
    summary["hypervolume_ratio_pooled_over_random"] = ratio(median(pooled), hv_rand)
    summary["hypervolume_ceiling"] = ceiling
    summary["hypervolume_ratio_ceiling_over_random"] = ratio(median(ceiling), hv_rand)
    for fraction in FRACTIONS:
        key = f"hypervolume_within_{fraction:.0%}"
        mine, theirs = median(summary["prunepilot"][key]), median(summary["random"][key])
        summary[f"{key}_ratio_prunepilot_over_random"] = ratio(mine, theirs)
    return summary


def _print(summary: dict) -> None:
    print(f"\n== {summary['task']} ==  median [min, max] over seeds")
    header = ["hypervolume", *(f"hypervolume_within_{f:.0%}" for f in FRACTIONS)]
    header += [f"test_accuracy@{f:.0%}" for f in FRACTIONS]
    print(f"{'method':12} " + " ".join(f"{h:>34}" for h in header))
    for method in METHODS:
        if summary[method]["hypervolume"]:  # the methods that ran (--methods)
            print(f"{method:12} " + " ".join(f"{spread(summary[method][h]):>34}" for h in header))
    gap = summary["prunepilot_minus_uniform_at_30%_pt"]
    ratio = summary["hypervolume_ratio_prunepilot_over_random"]
    print(f"prunepilot - uniform L1 at 30%: {'n/a' if gap is None else f'{gap:+.2f} pt'} (target >= +1.0)")
    best = summary["minus_best_recipe_median_at_30%_pt"]
    per_seed = ", ".join(f"{g:+.1f}" for g in summary["minus_best_recipe_at_30%_pt"])
    print(f"prunepilot - best recipe (uniform L1, global LAMP, global Taylor) at 30%: "
          f"{'n/a' if best is None else f'{best:+.2f} pt'} (per seed, against that seed's best: {per_seed}) "
          "(target >= +1.0)")  # fmt: skip
    print(f"hypervolume prunepilot / random: {_times(ratio)} (target >= 1.1x)")
    pooled = summary["hypervolume_ratio_pooled_over_random"]
    print(f"  every point of every method (the most any could show) / random: {_times(pooled)}")
    ceiling = summary["hypervolume_ratio_ceiling_over_random"]
    print(f"  accuracy 1.0 at the fastest latency found (a bound on any front) / random: {_times(ceiling)}")
    for fraction in FRACTIONS:
        within = summary[f"hypervolume_within_{fraction:.0%}_ratio_prunepilot_over_random"]
        print(f"  within {fraction:.0%}: {_times(within)}")


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--ratio-max", type=float, default=0.9, help="the space's top ratio")
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=JobSpec().finetune_steps,
        help="short fine-tune steps of every trial, for every method (default: prunepilot's)",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"a subset of {','.join(METHODS)} (default: all)"
    )
    parser.add_argument(
        "--no-budgets",
        action="store_true",
        help="hypervolumes only: no budgeted prunepilot runs and no final fine-tunes (no test accuracy)",
    )
    parser.add_argument(
        "--no-fill", action="store_true", help="prunepilot's runs with --no-fill (an A/B of filling)"
    )
    parser.add_argument(
        "--tight-only",
        action="store_true",
        help=f"only the {100 * FRACTIONS[-1]:.0f}%% budget (no whole run, no {100 * FRACTIONS[0]:.0f}%%)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep every run's directory (report, study journal) under DIR, a new folder; "
        "default: a temporary folder, deleted at the end",
    )
    parser.add_argument("--json", default="benchmarks/results/search_quality.json")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="run nothing: summarize the rows of earlier runs' JSON files together (seeds run in parts)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.merge:
        rows = [row for path in args.merge for row in json.loads(Path(path).read_text())["rows"]]
    else:
        rows = _run(args)
    summaries = [_summary(rows, task) for task in dict.fromkeys(r["task"] for r in rows)]
    for summary in summaries:
        _print(summary)
    if not args.merge:
        print(f"\n{args.trials} trials per method and run, {args.finetune_steps} fine-tune steps per trial")
    finish(args.json, {"rows": rows, "summaries": summaries}, started)


def _run(args: argparse.Namespace) -> list[dict]:
    """Every method on every task and seed: one row each, printed as it ends."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray's workers import this folder's modules (the peers' trial, the Hugging Face task) too.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    budgets = not args.no_budgets
    fractions = FRACTIONS[-1:] if args.tight_only else FRACTIONS
    if args.keep and Path(args.keep).exists():
        raise SystemExit(f"--keep: {args.keep!r} already exists; give a new folder")
    rows = []
    folder = contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()
    with folder as tmp:
        for task in tasks:
            for seed in seeds:
                for method in methods:
                    t0 = time.perf_counter()
                    common = (task, seed, args.trials, Path(tmp), args.ratio_max, args.finetune_steps)
                    if method == "prunepilot":
                        row = run_prunepilot(*common, budgets=budgets, fill=not args.no_fill,
                                             fractions=fractions, whole=not args.tight_only)  # fmt: skip
                    else:
                        row = run_baseline_method(method, *common, budgets=budgets, fractions=fractions)
                    row.update(task=task, seed=seed, method=method, wall_s=time.perf_counter() - t0)
                    rows.append(row)
                    print(
                        f"{task} seed {seed} {method:11} hv {row['hypervolume_value'] or 0:.4f} "
                        f"test acc {row['test_accuracy']} met {row['budget_met']} ({row['wall_s']:.0f} s)",
                        flush=True,
                    )
    return rows


if __name__ == "__main__":
    main()
