"""Trials as Ray tasks on a real two-node cluster on this machine (loopback), without a GPU."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from prunepilot import discover_groups
from prunepilot.budget import BudgetLimit
from prunepilot.evaluators import LatencySettings
from prunepilot.search import SearchSpace, open_study, run_search
from prunepilot.search.executors import RayExecutor, RaySettings
from prunepilot.tasks import TaskData
from prunepilot.trial import TrialSettings
from tests import zoo
from tests.helpers import REPO

#: Every test runs on a two-node Ray cluster started on this machine.
pytestmark = [pytest.mark.ray, pytest.mark.slow]

SHAPE = (1, 8, 8)
STORE = 80 * 1024**2


@pytest.fixture(scope="module")
def pid_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pids")


@pytest.fixture(scope="module")
def cluster(pid_dir):
    """A head node (1 CPU) and a worker node (1 CPU, 1 logical GPU), stopped afterwards."""
    ray.shutdown()
    node = {"num_cpus": 1, "object_store_memory": STORE}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    gpu_node = cluster.add_node(**node, num_gpus=1)
    env = {"PYTHONPATH": str(REPO), "PRUNEPILOT_TEST_PIDS": str(pid_dir), "PRUNEPILOT_TEST_PAUSE": "2"}
    ray.init(address=cluster.address, runtime_env={"env_vars": env}, logging_level="ERROR")
    yield cluster, gpu_node
    ray.shutdown()
    cluster.shutdown()


def _search(trained_tiny, digits, ray_settings, n_trials, trial_fn=None, tmp_path=None):
    groups = tuple(discover_groups(trained_tiny, SHAPE))
    space = SearchSpace(groups)
    data = TaskData(digits[0], digits[1], SHAPE)
    settings = TrialSettings(
        bn_batches=1, finetune_steps=3, latency=LatencySettings(batch_size=4, warmup=1, repeats=3)
    )
    kwargs = {} if trial_fn is None else {"trial_fn": trial_fn}
    executor = RayExecutor(trained_tiny, data, settings, ray_settings, **kwargs).start()
    study = open_study(tmp_path, seed=0)
    with executor:
        run_search(study, executor, space, BudgetLimit("latency_ms", 1e6), n_trials, progress=False)
    return study, executor


def test_trials_land_on_both_nodes_and_all_complete(cluster, trained_tiny, digits, tmp_path):
    study, executor = _search(trained_tiny, digits, RaySettings(), 6, tmp_path=tmp_path)
    assert executor.capacity == 2  # sized to the cluster: 2 CPUs, 1 per trial
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 6
    nodes = {t.user_attrs["placement"]["node_id"] for t in study.trials}
    assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert all(t.user_attrs["result"]["latency_ms"] > 0 for t in study.trials)
    assert ray.is_initialized()  # the executor leaves a cluster it did not start running


def test_gpus_per_trial_schedules_on_the_gpu_node(cluster, trained_tiny, digits, tmp_path):
    _, gpu_node = cluster
    study, executor = _search(trained_tiny, digits, RaySettings(gpus_per_trial=1), 3, tmp_path=tmp_path)
    assert executor.capacity == 1  # one logical GPU
    for trial in study.trials:
        placement = trial.user_attrs["placement"]
        assert trial.state.name == "COMPLETE"
        assert placement["node_id"] == gpu_node.node_id
        assert placement["gpu_ids"] == ["0"]
        assert placement["device"] == "cpu" and "CUDA is not available" in placement["note"]


def test_asking_for_more_gpus_than_the_cluster_has_is_refused(cluster, trained_tiny, digits):
    from prunepilot.errors import UsageError

    data = TaskData(digits[0], digits[1], SHAPE)
    with pytest.raises(UsageError, match="cluster has 2 CPU"):
        RayExecutor(trained_tiny, data, TrialSettings(), RaySettings(gpus_per_trial=2)).start()


def _kill_first_running(pid_dir: Path, stop: threading.Event, killed: list) -> None:
    while not stop.is_set():
        markers = sorted(pid_dir.iterdir())
        if markers:
            pid = int(markers[0].name.split(".")[0])
            os.kill(pid, signal.SIGKILL)
            markers[0].unlink(missing_ok=True)
            killed.append(pid)
            return
        time.sleep(0.05)


@pytest.mark.parametrize(("retries", "expect_fail"), [(1, False), (0, True)])
def test_a_worker_killed_mid_trial_is_retried_or_fails_with_the_reason(
    cluster, trained_tiny, digits, tmp_path, pid_dir, retries, expect_fail
):
    for marker in pid_dir.iterdir():
        marker.unlink()
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_running, args=(pid_dir, stop, killed))
    killer.start()
    try:
        study, _ = _search(
            trained_tiny, digits, RaySettings(max_retries=retries), 3, zoo.slow_trial, tmp_path
        )
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    states = [t.state.name for t in study.trials]
    assert len(states) == 3 and "RUNNING" not in states
    if expect_fail:
        assert states.count("FAIL") == 1
        failed = next(t for t in study.trials if t.state.name == "FAIL")
        assert "Worker" in failed.user_attrs["error"] or "died" in failed.user_attrs["error"]
    else:
        assert states == ["COMPLETE"] * 3


def test_a_node_leaving_mid_trial_gets_its_trials_rescheduled(
    cluster, trained_tiny, digits, tmp_path, pid_dir
):
    c, _ = cluster
    for marker in pid_dir.iterdir():
        marker.unlink()
    victim = c.add_node(num_cpus=1, object_store_memory=STORE)
    c.wait_for_nodes()
    removed = []

    def remove_victim_when_busy() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not removed:
            if any(m.name.endswith(victim.node_id) for m in pid_dir.iterdir()):
                c.remove_node(victim)
                removed.append(victim.node_id)
            time.sleep(0.05)

    remover = threading.Thread(target=remove_victim_when_busy)
    remover.start()
    try:
        study, _ = _search(
            trained_tiny, digits, RaySettings(workers=3, max_retries=2), 4, zoo.slow_trial, tmp_path
        )
    finally:
        remover.join()
    assert removed, "no trial ran on the node that was to leave"
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert all(t.user_attrs["placement"]["node_id"] != victim.node_id for t in study.trials)


def test_a_trial_that_raises_on_a_worker_fails_with_its_error_text(cluster, trained_tiny, digits, tmp_path):
    study, _ = _search(trained_tiny, digits, RaySettings(), 2, zoo.failing_trial, tmp_path)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all("ValueError: bad batch norm" in t.user_attrs["error"] for t in study.trials)
    assert all("failing_trial" in t.user_attrs["traceback"] for t in study.trials)


def test_the_cli_joins_an_existing_cluster_by_address(cluster, tiny_flags, tmp_path, capsys):
    import json

    from prunepilot.cli import main

    c, _ = cluster
    ray.shutdown()  # the CLI connects by itself, like a job on a real cluster
    try:
        flags = [f for f in tiny_flags]
        flags[flags.index("--workers") + 1] = "2"
        code = main(["search", "--budget", "1000ms", "--trials", "4", "--out", str(tmp_path), "--name", "a",
                     "--ray-address", c.address, *flags])  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0
        assert f"Ray ({c.address})" in out
        report = json.loads((tmp_path / "a" / "report.json").read_text())
        assert [t["state"] for t in report["trials"]] == ["COMPLETE"] * 4
        assert not ray.is_initialized()  # disconnected; the cluster itself keeps running
        assert all(node.remaining_processes_alive() for node in c.list_all_nodes())
    finally:
        if not ray.is_initialized():
            ray.init(address=c.address, logging_level="ERROR")
