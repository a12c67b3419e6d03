"""Ray on the default task: trials per minute with 1 and 2 workers, per-trial overhead, and
whether latency measured during a busy search matches latency measured alone.

    .venv/bin/python benchmarks/ray_scaling.py [--trials 16] [--rounds 8]

Each worker count gets a fresh local Ray instance; two warm-up trials per worker run first (the
worker processes import torch) and are not counted. Overhead is the wall time the driver waits for
a trial that is not spent in its phases (apply, BN recalibration, fine-tune, evaluation, latency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on loopback

import ray  # noqa: E402
import torch  # noqa: E402

from prunepilot.evaluators import LatencySettings  # noqa: E402
from prunepilot.policies import discover_groups  # noqa: E402
from prunepilot.search import SearchSpace  # noqa: E402
from prunepilot.search.executors import RayExecutor, RaySettings  # noqa: E402
from prunepilot.tasks import digits_task  # noqa: E402
from prunepilot.trial import PHASES, TrialSettings  # noqa: E402


def _policies(space: SearchSpace, n: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    ratios = [round(0.05 * int(x), 2) for x in torch.randint(2, 15, (n,), generator=generator)]
    return [space.uniform(r) for r in ratios]


def _run(executor: RayExecutor, policies) -> tuple[float, list]:
    queue, outcomes, in_flight = list(policies), [], 0
    start = time.perf_counter()
    while queue or in_flight:
        while queue and in_flight < executor.capacity:
            executor.submit(queue.pop(0))
            in_flight += 1
        _, outcome = executor.wait_any()
        in_flight -= 1
        outcomes.append(outcome)
    return time.perf_counter() - start, outcomes


def scaling(task, space, settings, trials: int, gate_dir: str | None = None) -> dict[int, float]:
    rates = {}
    for workers in (1, 2):
        ray_settings = RaySettings(workers=workers, **({"gate_dir": gate_dir} if gate_dir else {}))
        with RayExecutor(task.model, task.search_data, settings, ray_settings) as executor:
            executor.start()
            _run(executor, _policies(space, 2 * workers, seed=99))  # warm-up, not counted
            wall, outcomes = _run(executor, _policies(space, trials, seed=1))
        failed = [o.error for o in outcomes if o.result is None]
        phases = {p: statistics.median(o.result.timings[p] for o in outcomes if o.result) for p in PHASES}
        print(
            f"  {workers} worker(s) phase medians (s): "
            + ", ".join(f"{k} {v:.3f}" for k, v in phases.items())
        )
        rates[workers] = 60 * trials / wall
        overheads = [o.wall_s - sum(o.result.timings.values()) for o in outcomes if o.result]
        shares = [(o.wall_s - sum(o.result.timings.values())) / o.wall_s for o in outcomes if o.result]
        print(
            f"{workers} worker(s): {trials} trials in {wall:.1f} s = {rates[workers]:.1f} trials/min; "
            f"per-trial overhead median {1e3 * statistics.median(overheads):.0f} ms = "
            f"{100 * statistics.median(shares):.1f}% of a trial (mean {100 * statistics.mean(shares):.1f}%)"
            + (f"; {len(failed)} failed: {failed[0]}" if failed else "")
        )
    speedup = rates[2] / rates[1]
    print(f"speed-up {speedup:.2f}x with 2 workers, parallel efficiency {speedup / 2:.2f} (target >= 0.85)")
    return rates


def latency_honesty(task, space, settings, rounds: int, gated: bool) -> None:
    """The same policy measured by a trial alone on the node, then by a trial running beside
    another, alternately (so drift in the machine's speed hits both alike)."""
    probe = space.uniform(0.5)
    busy, alone = [], []
    with tempfile.TemporaryDirectory() as scratch:  # noqa: SIM117 - the executor line is long
        with RayExecutor(
            task.model, task.search_data, settings, RaySettings(workers=2, gate_dir=scratch)
        ) as ex:
            ex.start()
            _run(ex, _policies(space, 4, seed=99))  # warm-up
            for index, other in enumerate(_policies(space, rounds, seed=7)):
                if not gated:  # each task gets a gate of its own: no coordination at all
                    ex.ray_settings = RaySettings(workers=2, gate_dir=f"{scratch}/{index}")
                ex.submit(probe)
                alone.append(ex.wait_any()[1].result.latency_ms)
                probe_handle = ex.submit(probe)
                if not gated:
                    ex.ray_settings = RaySettings(workers=2, gate_dir=f"{scratch}/{index}-other")
                ex.submit(other)
                for _ in range(2):
                    handle, outcome = ex.wait_any()
                    if handle == probe_handle:
                        busy.append(outcome.result.latency_ms)
    ratio = statistics.median(busy) / statistics.median(alone)
    paired = sorted(b / a for b, a in zip(busy, alone, strict=True))
    quartiles = statistics.quantiles(paired, n=4)
    print(
        f"latency of one policy, {'with' if gated else 'WITHOUT'} the node gate, {rounds} alternating "
        f"rounds: alone median {statistics.median(alone):.3f} ms, during a busy 2-worker search median "
        f"{statistics.median(busy):.3f} ms: ratio of medians {ratio:.3f} "
        f"({100 * abs(ratio - 1):.1f}% apart, target <= 5%); per-round busy/alone ratio median "
        f"{statistics.median(paired):.3f}, quartiles {quartiles[0]:.3f}..{quartiles[2]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--no-gate", action="store_true", help="scaling only, each worker with its own gate")
    args = parser.parse_args()
    task = digits_task()
    space = SearchSpace(tuple(discover_groups(task.model, task.input_shape)))
    settings = TrialSettings(latency=LatencySettings(batch_size=64, threads=1, warmup=10, repeats=30))
    if args.no_gate:
        with tempfile.TemporaryDirectory() as scratch:
            print("WITHOUT the latency gate (--no-latency-gate: each worker process its own gate):")
            scaling(task, space, settings, args.trials, gate_dir=scratch + "/{pid}")
        return
    scaling(task, space, settings, args.trials)
    latency_honesty(task, space, settings, args.rounds, gated=True)
    latency_honesty(task, space, settings, args.rounds, gated=False)
    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    main()
