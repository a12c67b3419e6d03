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

Two more parts, each a search per arm and seed: ``--part sparsity``, mnist under a size budget of
25% of the baseline's zlib-compressed weights, channels and blocks only against the same with
``--sparsity global``; ``--part tabular``, the tabular task under 40% of the baseline's FLOPs,
channels only against ``--input-features``, the best trial keeping at most half the features,
given the final fine-tune, and the model keeping the better half of its features and every channel.

    .venv/bin/python benchmarks/pruning_families.py [--tasks mnist,digits] [--seeds 0,1,2] [--trials 16]
        [--slimming-steps 300] [--json benchmarks/results/pruning_families.json]
    .venv/bin/python benchmarks/pruning_families.py --part sparsity [--size-share 0.25]
    .venv/bin/python benchmarks/pruning_families.py --part tabular [--flops-share 0.4]
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
from prunepilot.errors import UsageError
from prunepilot.evaluators import count_flops
from prunepilot.families.distill import Distillation
from prunepilot.final import finalize, finalize_candidates, score_on_test
from prunepilot.inputs import example_batch
from prunepilot.pipeline import PreparedJob, prepare
from prunepilot.policies import Policy
from prunepilot.search import open_study
from prunepilot.search.pareto import maximizes, ranked_front, violation
from prunepilot.spec import JobSpec
from prunepilot.trial import deploy

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


def families_part(args: argparse.Namespace, out: Path) -> dict:
    """Distillation, the gradual schedule and the slimming warm-up (steps 1 to 3 above)."""
    results = {}
    for task in args.tasks.split(","):
        rows = []
        for seed in _seeds(args):
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
        results[task] = {
            "budget": BUDGETS[task],
            "rows": rows,
            "distill": summarize(rows, "distill", "oneshot"),
            "gradual": summarize(rows, "gradual", "oneshot"),
            "slimming": summarize(rows, "slimming", "search"),
        }
        print(f"{task}: " + json.dumps({k: v for k, v in results[task].items() if k != "rows"}), flush=True)
    return results


def sparsity_part(args: argparse.Namespace, out: Path) -> dict:
    """mnist under a size budget (a share of the baseline's zlib-compressed weights): channels and
    blocks only, against the same with unstructured sparsity in the space."""
    probe = prepare(JobSpec(budget="1GB", task="mnist", size_measure="zlib").resolve(), progress=False)
    task = probe.task
    baseline = deploy(task.model, task.train, task.input_shape, probe.settings).size_bytes
    budget = f"{int(args.size_share * baseline)}B"
    rows = []
    for seed in _seeds(args):
        row: dict = {"seed": seed}
        for arm, fields in (("channels", {"size_measure": "zlib"}), ("sparsity", {"sparsity": "global"})):
            print(
                f"mnist seed {seed}: {arm} at {budget} ({args.size_share:.0%} of {baseline} B) ...",
                flush=True,
            )
            spec = JobSpec(budget=budget, task="mnist", trials=args.trials, seed=seed, out=str(out),
                           name=f"size-{seed}-{arm}", ratio_max=0.9, **fields)  # fmt: skip
            final = search(spec, out)["final"]
            row[arm] = final and final["test_accuracy"]
            row[f"{arm}_final"] = final and {
                k: final.get(k) for k in ("size_bytes", "params", "budget_met", "sparsity", "latency_ms")
            }
            print(f"  test {row[arm]}  {row[f'{arm}_final']}", flush=True)
        rows.append(row)
    return {"budget": budget, "baseline_zlib_bytes": baseline, "rows": rows,
            "sparsity": summarize(rows, "sparsity", "channels")}  # fmt: skip


def tabular_part(args: argparse.Namespace, out: Path) -> dict:
    """The tabular task under a FLOPs budget: channels only, against the same with input features
    in the space; and the best front point keeping at most half the features, finalized."""
    probe = prepare(JobSpec(budget="1GFLOPs", task="tabular").resolve(), progress=False)
    flops = count_flops(probe.task.model, example_batch(probe.task.input_shape))
    budget = f"{args.flops_share * flops / 1000:.3f}kFLOPs"
    rows = []
    for seed in _seeds(args):
        row: dict = {"seed": seed}
        for arm, fields in (("channels", {}), ("features", {"input_features": True})):
            print(f"tabular seed {seed}: {arm} at {budget} ...", flush=True)
            spec = JobSpec(budget=budget, task="tabular", trials=args.trials, seed=seed, out=str(out),
                           name=f"tab-{seed}-{arm}", **fields)  # fmt: skip
            report = search(spec, out)
            final = report["final"]
            row[arm] = final and final["test_accuracy"]
            row["baseline"] = final and final["baseline_test_accuracy"]
            row[f"{arm}_kept"] = (final.get("input_features") or {}).get("kept", 30) if final else None
        prepared = prepare(spec.resolve(), progress=False)  # once, for both re-finalizations
        row["half"] = _best_with_half_the_features(spec, prepared, out)
        row["half_features_only"] = _half_the_features_only(spec, prepared)
        print(f"  {json.dumps(row)}", flush=True)
        rows.append(row)
    return {"budget": budget, "baseline_flops": flops, "rows": rows,
            "features": summarize(rows, "features", "channels")}  # fmt: skip


def _best_with_half_the_features(spec: JobSpec, prepared: PreparedJob, out: Path) -> dict | None:
    """The trial within budget keeping at most half the input features with the best trial score
    (on the front or not), given the final fine-tune and scored on test."""
    features = len(prepared.space.feature_order)
    run_dir = out / str(spec.name)
    baseline = json.loads((run_dir / "baseline.json").read_text())
    study = open_study(run_dir, spec.seed)
    half = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE" and violation(t) == 0
         and 2 * len(Policy.from_dict(t.user_attrs["policy"]).input_features or range(features)) <= features),
        key=lambda t: -t.values[0],
    )  # fmt: skip
    done = finalize_candidates(half[:1], prepared.task, spec.final_settings(prepared.settings),
                               prepared.job.budget_limit(baseline), _quiet)  # fmt: skip
    if done is None:
        return None
    return {
        "trial": done.trial.number,
        "kept": len(done.policy.input_features or ()),
        "test_accuracy": done.final["test_accuracy"],
        "baseline": done.final["baseline_test_accuracy"],
    }


def _half_the_features_only(spec: JobSpec, prepared: PreparedJob) -> dict:
    """The model keeping the better-ranked half of its input features and every channel, given the
    final fine-tune and scored on test (what the features alone cost, whatever the budget)."""
    kept = prepared.space.kept_features(0.5)
    done = finalize(prepared.task, Policy(input_features=kept), spec.final_settings(prepared.settings))
    scores = score_on_test(prepared.task, done.model, prepared.settings, deployed=done.deployed)
    return {"kept": len(kept), "flops": done.final["flops"], **scores}


def _seeds(args: argparse.Namespace) -> list[int]:
    return [int(s) for s in args.seeds.split(",")]


PARTS = {"families": families_part, "sparsity": sparsity_part, "tabular": tabular_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=list(PARTS), default="families")
    parser.add_argument("--tasks", default="mnist,digits")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--slimming-steps", type=int, default=300)
    parser.add_argument("--slimming-reg", type=float, default=JobSpec.slimming_reg)
    parser.add_argument(
        "--size-share", type=float, default=0.25, help="size budget: this share of the baseline's"
    )
    parser.add_argument("--flops-share", type=float, default=0.4, help="tabular FLOPs budget: this share")
    parser.add_argument(
        "--json", default=None, help="default: benchmarks/results/pruning_families[-PART].json"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"settings": vars(args), "results": PARTS[args.part](args, Path(tmp))}
    suffix = "" if args.part == "families" else f"-{args.part}"
    finish(args.json or f"benchmarks/results/pruning_families{suffix}.json", results, started)


if __name__ == "__main__":
    main()
