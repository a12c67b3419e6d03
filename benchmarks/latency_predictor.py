"""The latency predictor's error on held-out policies, and what channel rounding does to latency.

Per task: the predictor is calibrated as ``prunepilot search`` calibrates it (CALIBRATION_SAMPLES
policies, timed in batches with the base model) and, side by side, as it was calibrated before
(64 policies, each timed three times alone with the base model); then ``--held-out`` other random
policies are measured three times each (median of the ratios) and predicted by both. Printed: the
mean and largest absolute percentage error, next to a predictor fit on the same calibration by
plain least squares (the default is relative least squares) and a FLOPs-proportional guess
(latency ratio = FLOPs ratio). Then the latency ratio of uniform policies with channels rounded to
1, 8 and 16, the evidence behind the ``round_to`` default.

    .venv/bin/python benchmarks/latency_predictor.py [--tasks digits,mnist] [--held-out 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from results_file import finish

from prunepilot.evaluators import count_flops, relative_latency
from prunepilot.inputs import example_batch
from prunepilot.pipeline import prepare
from prunepilot.policies import apply_policy
from prunepilot.search.calibration import CALIBRATION_SAMPLES, calibrate_latency, calibration_policies
from prunepilot.search.latency_model import layer_table
from prunepilot.spec import JobSpec

ROUNDINGS = (1, 8, 16)
UNIFORM_RATIOS = (0.3, 0.5, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,mnist")
    parser.add_argument("--held-out", type=int, default=20)
    parser.add_argument("--skip-former", action="store_true", help="no side-by-side former calibration")
    parser.add_argument("--json", default="benchmarks/results/latency_predictor.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    started = time.perf_counter()
    for task_name in args.tasks.split(","):
        job = prepare(JobSpec(task=task_name, dry_run=True).resolve(), progress=True)
        task, space, latency = job.task, job.space, job.settings.latency
        shape, sample = task.input_shape, example_batch(task.input_shape)
        t0 = time.perf_counter()
        calibration = calibrate_latency(
            task.model, shape, calibration_policies(space, CALIBRATION_SAMPLES, seed=0), latency
        )
        predictor, plain = calibration.predictor(), calibration.predictor(relative=False)
        calibration_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        one_by_one = None if args.skip_former else calibrate_latency(
            task.model, shape, calibration_policies(space, 64, seed=0), latency, timings=(3, 3), batch=1
        ).predictor()  # fmt: skip
        one_by_one_s = time.perf_counter() - t0
        # Held out: the random part of another seed's policies (no uniform ones, none shared).
        held_out = calibration_policies(space, args.held_out + args.held_out // 3 + 2, seed=1)[
            -args.held_out :
        ]
        base_flops = count_flops(task.model, sample)
        errors, plain_errors, flops_errors, former_errors = [], [], [], []
        for policy in held_out:
            pruned = apply_policy(task.model, policy, shape).model
            truth = statistics.median(relative_latency(pruned, task.model, shape, latency) for _ in range(3))
            table = layer_table(pruned, shape)
            errors.append(abs(predictor.predict(table) - truth) / truth)
            plain_errors.append(abs(plain.predict(table) - truth) / truth)
            if one_by_one is not None:
                former_errors.append(abs(one_by_one.predict(table) - truth) / truth)
            flops_errors.append(abs(count_flops(pruned, sample) / base_flops - truth) / truth)
        rounding = {}
        for ratio in UNIFORM_RATIOS:
            for round_to in ROUNDINGS:
                policy = space.uniform(ratio)
                policy = type(policy)(policy.groups, round_to)
                pruned = apply_policy(task.model, policy, shape).model
                rounding[f"{ratio}/{round_to}"] = statistics.median(
                    relative_latency(pruned, task.model, shape, latency) for _ in range(3)
                )
        results[task_name] = {
            "predictor": predictor.describe(),
            "calibration_s": calibration_s,
            "held_out_mape": statistics.mean(errors),
            "held_out_max_ape": max(errors),
            "plain_least_squares_mape": statistics.mean(plain_errors),
            "one_by_one_64": one_by_one and {"calibration_s": one_by_one_s, "cv_mape": one_by_one.cv_mape,
                                             "held_out_mape": statistics.mean(former_errors)},
            "flops_proportional_mape": statistics.mean(flops_errors),
            "uniform_latency_ratio_by_ratio_and_round_to": rounding,
        }
        print(f"\n== {task_name} ==")
        print(
            f"calibration: {predictor.samples} policies in {calibration_s:.1f} s, vector width "
            f"{predictor.width}, cross-validated error {100 * predictor.cv_mape:.1f}%"
        )
        print(
            f"held-out ({len(held_out)} policies): MAPE {100 * statistics.mean(errors):.1f}% "
            f"(max {100 * max(errors):.1f}%)  (target <= 5%); plain least squares: "
            f"{100 * statistics.mean(plain_errors):.1f}%; FLOPs-proportional guess: "
            f"{100 * statistics.mean(flops_errors):.1f}%"
        )
        if one_by_one is not None:
            print(
                f"side by side, 64 policies each timed three times alone with the base model: "
                f"{one_by_one_s:.1f} s, cross-validated {100 * one_by_one.cv_mape:.1f}%, held-out MAPE "
                f"{100 * statistics.mean(former_errors):.1f}%"
            )
        print("latency / baseline of uniform policies:  " + "  ".join(f"round_to {r:>2}" for r in ROUNDINGS))
        for ratio in UNIFORM_RATIOS:
            cells = "  ".join(f"{rounding[f'{ratio}/{r}']:>11.3f}" for r in ROUNDINGS)
            print(f"  ratio {ratio:<33}{cells}")
    finish(args.json, results, started)


if __name__ == "__main__":
    main()
