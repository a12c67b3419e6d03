"""Where trials run: in this process, or as Ray tasks across cores, GPUs and machines.

*What* to run (model, data, policy, settings) is kept apart from *where* it runs: the driver hands
policies to an executor and reads outcomes back as trials finish, in any order.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunepilot.errors import UsageError, check_integer, invalid_parameter
from prunepilot.gate import DEFAULT_DIR, NodeGate, NullGate
from prunepilot.policies import Policy
from prunepilot.settings.surface import named
from prunepilot.tasks.base import TaskData
from prunepilot.trial import TrialResult, TrialSettings, run_trial

TrialFn = Callable[..., TrialResult]

#: A gate folder per worker process: measurements are not coordinated (``--no-latency-gate``).
UNGATED_DIR = "{tmp}/prunepilot-gate-{pid}"
#: Ray's object store on a local instance (bytes): the model and data are put there once.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


@dataclass
class TrialOutcome:
    """How a trial ended (plain data).

    Attributes:
        result: What the trial measured, or None when it failed.
        error: One line saying why it failed, or None.
        traceback: The failing trial's traceback (shortened), or None.
        placement: Where it ran: node, process, device, GPU ids.
        worker_s: Seconds the trial took inside the worker.
        wall_s: Seconds from submission to the driver reading the outcome.
    """

    result: TrialResult | None
    error: str | None = None
    traceback: str | None = None
    placement: dict[str, Any] = field(default_factory=dict)
    worker_s: float = 0.0
    wall_s: float = 0.0


class TrialExecutor:
    """Runs trials somewhere.

    Rules a subclass keeps: :meth:`submit` returns at once with a handle (a trial runs with the
    executor's settings unless it is given its own); :meth:`wait_any` blocks
    until one submitted trial has ended and returns its handle and outcome (a failure is an outcome,
    never an exception); at most :attr:`capacity` trials are in flight; :meth:`shutdown` releases
    everything the executor started and may be called more than once.
    """

    capacity: int = 1

    def submit(self, policy: Policy, settings: TrialSettings | None = None) -> Hashable:
        raise NotImplementedError

    def wait_any(self) -> tuple[Hashable, TrialOutcome]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def shutdown(self) -> None:
        """Releases resources (nothing by default)."""

    def __enter__(self) -> TrialExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def execute(
    trial_fn: TrialFn,
    model: nn.Module,
    data: TaskData,
    policy: Policy,
    settings: TrialSettings,
    device: str = "cpu",
    gate: NullGate | None = None,
) -> TrialOutcome:
    """Runs one trial and turns any exception into a failed outcome."""
    start = time.perf_counter()
    placement = {"pid": os.getpid(), "device": device}
    try:
        result = trial_fn(model, data, policy, settings, device=device, gate=gate)
    except Exception as exc:  # noqa: BLE001 - a failing trial is an outcome, not a crash
        return TrialOutcome(
            None,
            f"{type(exc).__name__}: {exc}",
            traceback.format_exc(limit=8),
            placement,
            time.perf_counter() - start,
        )
    return TrialOutcome(result, placement=placement, worker_s=time.perf_counter() - start)


class InProcessExecutor(TrialExecutor):
    """Runs one trial at a time in the driver process (``--workers 0``)."""

    capacity = 1

    def __init__(
        self,
        model: nn.Module,
        data: TaskData,
        settings: TrialSettings,
        trial_fn: TrialFn = run_trial,
        device: str = "cpu",
    ) -> None:
        self.model, self.data, self.settings, self.trial_fn = model, data, settings, trial_fn
        self.device = device
        self._queue: deque[tuple[int, Policy, TrialSettings, float]] = deque()
        self._next = 0

    def submit(self, policy: Policy, settings: TrialSettings | None = None) -> Hashable:
        self._next += 1
        self._queue.append((self._next, policy, settings or self.settings, time.perf_counter()))
        return self._next

    def wait_any(self) -> tuple[Hashable, TrialOutcome]:
        handle, policy, settings, submitted = self._queue.popleft()
        outcome = execute(self.trial_fn, self.model, self.data, policy, settings, self.device)
        outcome.wall_s = time.perf_counter() - submitted
        return handle, outcome

    def describe(self) -> str:
        return f"in this process, one trial at a time, on {self.device}"


def _ray_trial(
    trial_fn: TrialFn,
    model: nn.Module,
    data: TaskData,
    policy: Policy,
    settings: TrialSettings,
    threads: int,
    gate_dir: str | None,
) -> TrialOutcome:
    """The body of a Ray task: threads to match the task's CPUs, CUDA when a GPU is assigned."""
    import ray

    torch.set_num_threads(max(1, threads))
    gpu_ids = ray.get_gpu_ids()
    device = "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"
    context = ray.get_runtime_context()
    folder = (gate_dir or str(DEFAULT_DIR)).replace("{tmp}", tempfile.gettempdir())
    gate = NodeGate(folder)  # resolved on the worker's node, not the driver's
    try:
        outcome = execute(trial_fn, model, data, policy, settings, device, gate)
    finally:
        gate.close()
    outcome.placement.update(
        node_id=context.get_node_id(),
        node_ip=ray.util.get_node_ip_address(),
        gpu_ids=[str(g) for g in gpu_ids],
        attempt=context.get_task_attempt_number() if hasattr(context, "get_task_attempt_number") else None,
    )
    if gpu_ids and device == "cpu":
        outcome.placement["note"] = "GPU assigned but CUDA is not available; ran on the CPU"
    return outcome


@dataclass(frozen=True)
class RaySettings:
    """Where Ray runs trials.

    Attributes:
        address: A cluster to join (``ray://`` or ``host:port``); None starts a local instance
            (``RAY_ADDRESS`` is honoured when set).
        workers: Trials in flight; None sizes it to the cluster (CPUs or GPUs per trial).
        cpus_per_trial: CPUs a trial reserves (and its torch threads).
        gpus_per_trial: GPUs a trial reserves (fractions allowed); a trial with a GPU runs on CUDA.
        max_retries: Times Ray re-runs a trial whose worker process or node died.
        gate_dir: Node-local folder of the latency measurement gate; None for the node's default
            (``{tmp}`` is the node's temporary folder; ``{pid}`` gives each worker process its own
            gate, i.e. no coordination).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 2
    gate_dir: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None:
            check_integer("RaySettings", "workers", self.workers, 1)
        if not self.cpus_per_trial > 0:
            raise invalid_parameter("cpus_per_trial", "RaySettings", "a number > 0", self.cpus_per_trial)
        if not self.gpus_per_trial >= 0:
            raise invalid_parameter("gpus_per_trial", "RaySettings", "a number >= 0", self.gpus_per_trial)
        check_integer("RaySettings", "max_retries", self.max_retries, 0)


def _trials_that_fit(nodes: list[dict], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the alive nodes hold at once (each trial on one node)."""
    total = 0
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        fit = int(resources.get("CPU", 0.0) / cpus_per_trial + 1e-9)
        if gpus_per_trial > 0:
            fit = min(fit, int(resources.get("GPU", 0.0) / gpus_per_trial + 1e-9))
        total += fit
    return total


class RayExecutor(TrialExecutor):
    """Runs trials as Ray tasks; the model and data go into the object store once.

    Args:
        model: The base model.
        data: The splits a trial may see.
        settings: Trial settings.
        ray_settings: Where and how many.
        trial_fn: The trial function (``run_trial``); must be importable on the workers.
    """

    def __init__(
        self,
        model: nn.Module,
        data: TaskData,
        settings: TrialSettings,
        ray_settings: RaySettings,
        trial_fn: TrialFn = run_trial,
    ) -> None:
        self.model, self.data, self.settings = model, data, settings
        self.ray_settings, self.trial_fn = ray_settings, trial_fn
        self._started_ray = False
        self._pending: dict[Any, float] = {}
        self._ray = None

    def start(self) -> RayExecutor:
        """Connects to (or starts) Ray, checks the resources and puts the model and data."""
        rs = self.ray_settings
        address = rs.address or os.environ.get("RAY_ADDRESS")
        if not address:
            # A local instance listens on loopback only (read when ray is first imported), and its
            # trials run at the driver's priority: Ray lowers its workers' (niceness 15) by default,
            # which on a shared machine starves the trials and skews the latency they measure.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_worker_niceness", "0")
        import ray

        self._ray = ray
        if not ray.is_initialized():
            try:
                if address:
                    # A cluster's nodes keep their own environment (code ships with the job's
                    # --working-dir or is installed there).
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                else:
                    python_path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)
                    runtime_env = {"env_vars": {"PYTHONPATH": python_path}}
                    cpus = None  # Ray's own count respects cgroup limits
                    if rs.workers is not None:
                        cpus = max(1, int(rs.workers * rs.cpus_per_trial + 0.999))
                    ray.init(
                        address="local",
                        num_cpus=cpus,
                        num_gpus=torch.cuda.device_count(),
                        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                        include_dashboard=False,
                        runtime_env=runtime_env,
                        log_to_driver=False,
                        logging_level="ERROR",
                    )
            except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached is bad input
                raise UsageError(
                    f"Cannot connect to the Ray cluster {address or '(local)'} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
                ) from exc
            self._started_ray = True
        try:
            fit = _trials_that_fit(ray.nodes(), rs.cpus_per_trial, rs.gpus_per_trial)
            if fit == 0:
                totals = ray.cluster_resources()
                raise UsageError(
                    f"A trial asks for {rs.cpus_per_trial:g} CPU(s) and {rs.gpus_per_trial:g} GPU(s) on one "
                    f"node but no node of the Ray cluster has that much (the cluster has "
                    f"{totals.get('CPU', 0):g} CPU(s) and {totals.get('GPU', 0):g} GPU(s) in all); lower "
                    f"{named('cpus_per_trial')} or {named('gpus_per_trial')}."
                )
            self.capacity = rs.workers or fit
            self._model_ref = ray.put(self.model)
            self._data_ref = ray.put(self.data)
            # Resources go to ray.remote itself: only then does Ray give GPU tasks a fresh worker
            # each time (max_calls=1), so a trial runs on the GPU it was assigned.
            self._remote = ray.remote(
                num_cpus=rs.cpus_per_trial,
                num_gpus=rs.gpus_per_trial,
                max_retries=rs.max_retries,
                retry_exceptions=False,
                max_calls=1 if rs.gpus_per_trial > 0 else 0,
            )(_ray_trial)
        except BaseException:
            self.shutdown()
            raise
        return self

    def submit(self, policy: Policy, settings: TrialSettings | None = None) -> Hashable:
        threads = max(1, int(self.ray_settings.cpus_per_trial))
        ref = self._remote.remote(
            self.trial_fn, self._model_ref, self._data_ref, policy, settings or self.settings, threads,
            self.ray_settings.gate_dir,
        )  # fmt: skip
        self._pending[ref] = time.perf_counter()
        return ref

    def wait_any(self) -> tuple[Hashable, TrialOutcome]:
        ray = self._ray
        assert ray is not None
        (ref,), _ = ray.wait(list(self._pending), num_returns=1)
        submitted = self._pending.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as exc:  # worker or node died, retries exhausted
            first = str(exc).strip().splitlines()
            reason = first[0] if first else ""
            outcome = TrialOutcome(None, f"{type(exc).__name__}: {reason}"[:500])
        outcome.wall_s = time.perf_counter() - submitted
        return ref, outcome

    def describe(self) -> str:
        rs = self.ray_settings
        where = rs.address or os.environ.get("RAY_ADDRESS") or "a local Ray instance"
        return (
            f"Ray ({where}): {self.capacity} trial(s) in flight, {rs.cpus_per_trial:g} CPU and "
            f"{rs.gpus_per_trial:g} GPU each"
        )

    def shutdown(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for ref in list(self._pending):
            with contextlib.suppress(Exception):  # the connection may be gone; shut down anyway
                ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False
