"""Proxy fidelity: does the trial score rank policies the way the final fine-tune does?

For ``--policies`` random policies of prunepilot's space (a ratio and a criterion per group, and
each removable block removed or kept, seeded), the trial score (validation accuracy after BatchNorm
recalibration and a short fine-tune of S steps) is compared with the test accuracy after the full
final fine-tune (600 steps). Printed: the Spearman rank correlation for each S, per task. Trials
run two at a time, one thread each (nothing is timed).

Each policy gets ``--final-seeds`` final fine-tunes (seeds 0, 1, ...). The correlation is given
against the first (one final fine-tune, as a user runs it) and against their mean (the policy's
expected final accuracy, which is what a trial score should rank: one fine-tune's seed noise is
not a property of the policy).

Ceilings are printed beside it, since no score can rank better than the yardstick's own noise
allows: the correlation of two final fine-tunes of each policy with different seeds (the noise of
the fine-tune itself), and from it, by the Spearman-Brown formula, the most any score could reach
against one final fine-tune (the square root of that) and against the mean of all; and the
correlation of the final models' validation accuracy with their test accuracy (the noise of the two
splits alone). Also printed: the validation cross-entropy after S steps as a candidate score
(continuous, where accuracy moves in steps of one image).

Forty policies by default: two draws of 20 on mnist (``--seed 0`` and ``--seed 1``) disagreed on
which step count ranks best (0 steps led 0.885 to 0.774 against the mean of the finals in the
first, 60 steps led 0.744 to 0.476 in the second); rho over 20 policies is too noisy to choose by.

    .venv/bin/python benchmarks/proxy_fidelity.py [--tasks digits,mnist] [--policies 40] [--steps 0,20,60,120]
        [--final-seeds 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from results_file import finish
from scipy.stats import spearmanr

from prunepilot.evaluators import top1_accuracy
from prunepilot.pipeline import prepare
from prunepilot.policies import GroupSetting, Policy
from prunepilot.spec import JobSpec
from prunepilot.trial import prune_and_train

FINAL_STEPS = 600


def random_policies(space, count: int, seed: int) -> list[Policy]:
    """Policies drawn uniformly from the space: a ratio on the grid and a criterion per group, and
    each removable block removed with probability one half."""
    rng = random.Random(seed)
    steps = int(round((space.max_ratio - space.ratio_low) / space.ratio_step))
    policies = []
    for _ in range(count):
        settings = {
            g.name: GroupSetting(
                round(space.ratio_low + space.ratio_step * rng.randint(0, steps), 6),
                rng.choice(space.criteria_for(g)),
            )
            for g in space.groups
        }
        policies.append(Policy(settings, removed_blocks=tuple(b for b in space.blocks if rng.random() < 0.5)))
    return policies


def mean_cross_entropy(model: torch.nn.Module, dataset) -> float:
    model.eval()
    with torch.inference_mode():
        inputs, labels = zip(*(dataset[i] for i in range(len(dataset))))
        return float(F.cross_entropy(model(torch.stack(inputs)), torch.stack(labels).reshape(-1)))


def score_policy(job_args: tuple[str, dict, list[int], int]) -> dict:
    """The trial score at each step count, and the accuracies after final fine-tunes of seeds 0, 1, ..."""
    task_name, policy_dict, step_counts, final_seeds = job_args
    torch.set_num_threads(1)
    job = prepare(JobSpec(task=task_name, dry_run=True).resolve(), progress=False)
    task, policy = job.task, Policy.from_dict(policy_dict)
    scores, losses = {}, {}
    for steps in step_counts:
        model, _ = prune_and_train(
            task.model, task.train, task.input_shape, policy, replace(job.settings, finetune_steps=steps)
        )
        scores[steps] = top1_accuracy(model, task.val)
        losses[steps] = mean_cross_entropy(model, task.val)
    finals = [
        prune_and_train(
            task.model,
            task.train,
            task.input_shape,
            policy,
            replace(job.settings, finetune_steps=FINAL_STEPS, seed=seed),
        ).model
        for seed in range(final_seeds)
    ]
    return {
        "policy": policy_dict,
        "scores": scores,
        "val_losses": losses,
        "final_test_accuracies": [top1_accuracy(model, task.test) for model in finals],
        "final_val_accuracy": top1_accuracy(finals[0], task.val),
    }


def spearman_brown(reliability: float, copies: int) -> float:
    """The reliability of the mean of ``copies`` measurements, each of ``reliability``."""
    return copies * reliability / (1 + (copies - 1) * reliability)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,mnist")
    parser.add_argument("--policies", type=int, default=40)
    parser.add_argument("--steps", default="0,20,60,120")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--final-seeds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/proxy_fidelity.json")
    args = parser.parse_args()
    if args.final_seeds < 2:
        parser.error(f"--final-seeds must be at least 2 (the ceilings compare two); got {args.final_seeds}")
    step_counts = [int(s) for s in args.steps.split(",")]
    started = time.perf_counter()
    results = {}
    for task_name in args.tasks.split(","):
        job = prepare(JobSpec(task=task_name, dry_run=True).resolve(), progress=True)
        policies = random_policies(job.space, args.policies, args.seed)
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            jobs = [(task_name, p.to_dict(), step_counts, args.final_seeds) for p in policies]
            rows = pool.map(score_policy, jobs)
        finals = [r["final_test_accuracies"][0] for r in rows]
        expected = [statistics.mean(r["final_test_accuracies"]) for r in rows]

        def rho(scores: list[float], finals: list[float] = finals) -> float:
            return float(spearmanr(scores, finals).statistic)

        correlations = {steps: rho([r["scores"][steps] for r in rows]) for steps in step_counts}
        against_mean = {steps: rho([r["scores"][steps] for r in rows], expected) for steps in step_counts}
        by_loss = {steps: rho([-r["val_losses"][steps] for r in rows]) for steps in step_counts}
        seeds_agree = rho([r["final_test_accuracies"][1] for r in rows])
        ceilings = {
            "final_val_vs_test": rho([r["final_val_accuracy"] for r in rows]),
            "final_seed1_vs_seed0": seeds_agree,
            "best_score_vs_one_final": math.sqrt(max(seeds_agree, 0.0)),
            "best_score_vs_mean_of_finals": math.sqrt(
                max(spearman_brown(seeds_agree, args.final_seeds), 0.0)
            ),
        }
        results[task_name] = {
            "rows": rows,
            "spearman": correlations,
            "spearman_vs_mean_of_finals": against_mean,
            "spearman_val_loss": by_loss,
            "ceilings": ceilings,
        }
        spread = f"final test accuracy {min(finals):.4f} .. {max(finals):.4f}"
        print(f"\n== {task_name}: {len(rows)} random policies, {spread} ==")
        header = f"rho vs mean of {args.final_seeds} finals"
        print(f"{'fine-tune steps':>16} {'rho (val acc)':>14} {header:>24} {'rho (val loss)':>15}")
        for steps in step_counts:
            row = f"{correlations[steps]:>14.3f} {against_mean[steps]:>24.3f} {by_loss[steps]:>15.3f}"
            print(f"{steps:>16} {row}")
        print(
            f"ceilings: final fine-tune seed 1 vs seed 0 {seeds_agree:.3f}, so the best any score could "
            f"reach is {ceilings['best_score_vs_one_final']:.3f} against one final fine-tune and "
            f"{ceilings['best_score_vs_mean_of_finals']:.3f} against the mean of {args.final_seeds}; "
            f"final val vs test accuracy {ceilings['final_val_vs_test']:.3f}"
        )
    finish(args.json, results, started)


if __name__ == "__main__":
    main()
