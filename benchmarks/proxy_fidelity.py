"""Proxy fidelity: does the trial score rank policies the way the final fine-tune does?

For ``--policies`` random policies of prunepilot's space (a ratio and a criterion per group, seeded),
the trial score (validation accuracy after BatchNorm recalibration and a short fine-tune of S steps)
is compared with the test accuracy after the full final fine-tune (600 steps). Printed: the Spearman
rank correlation for each S, per task. Trials run two at a time, one thread each (nothing is timed).

    .venv/bin/python benchmarks/proxy_fidelity.py [--tasks digits,mnist] [--policies 20] [--steps 0,20,60,120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time
from dataclasses import replace

import torch
from results_file import finish
from scipy.stats import spearmanr

from prunepilot.evaluators import top1_accuracy
from prunepilot.policies import GroupSetting, Policy
from prunepilot.runner import _prepare
from prunepilot.spec import JobSpec
from prunepilot.trial import prune_and_train

FINAL_STEPS = 600


def random_policies(space, count: int, seed: int) -> list[Policy]:
    rng = random.Random(seed)
    steps = int(round((space.max_ratio - space.ratio_low) / space.ratio_step))
    return [
        Policy({
            g.name: GroupSetting(
                round(space.ratio_low + space.ratio_step * rng.randint(0, steps), 6),
                rng.choice(space.criteria_for(g)),
            )
            for g in space.groups
        })
        for _ in range(count)
    ]  # fmt: skip


def score_policy(job_args: tuple[str, dict, list[int]]) -> dict:
    """The trial score at each step count, and the test accuracy after the final fine-tune."""
    task_name, policy_dict, step_counts = job_args
    torch.set_num_threads(1)
    job = _prepare(JobSpec(task=task_name, dry_run=True).validate(), None, progress=False)
    task, policy = job.task, Policy.from_dict(policy_dict)
    scores = {}
    for steps in step_counts:
        model = prune_and_train(
            task.model, task.train, task.input_shape, policy, replace(job.settings, finetune_steps=steps)
        )
        scores[steps] = top1_accuracy(model, task.val)
    final = prune_and_train(
        task.model, task.train, task.input_shape, policy, replace(job.settings, finetune_steps=FINAL_STEPS)
    )
    return {"policy": policy_dict, "scores": scores, "final_test_accuracy": top1_accuracy(final, task.test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,mnist")
    parser.add_argument("--policies", type=int, default=20)
    parser.add_argument("--steps", default="0,20,60,120")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/proxy_fidelity.json")
    args = parser.parse_args()
    step_counts = [int(s) for s in args.steps.split(",")]
    started = time.perf_counter()
    results = {}
    for task_name in args.tasks.split(","):
        job = _prepare(JobSpec(task=task_name, dry_run=True).validate(), None, progress=True)
        policies = random_policies(job.space, args.policies, args.seed)
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            rows = pool.map(score_policy, [(task_name, p.to_dict(), step_counts) for p in policies])
        finals = [r["final_test_accuracy"] for r in rows]
        correlations = {}
        for steps in step_counts:
            rho = spearmanr([r["scores"][steps] for r in rows], finals).statistic
            correlations[steps] = float(rho)
        results[task_name] = {"rows": rows, "spearman": correlations}
        spread = f"final test accuracy {min(finals):.4f} .. {max(finals):.4f}"
        print(f"\n== {task_name}: {len(rows)} random policies, {spread} ==")
        print(f"{'fine-tune steps':>16} {'Spearman rho':>13}")
        for steps, rho in correlations.items():
            print(f"{steps:>16} {rho:>13.3f}")
    finish(args.json, results, started)


if __name__ == "__main__":
    main()
