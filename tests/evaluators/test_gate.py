"""The node gate: a measurement waits for compute steps in flight and holds new ones back."""

import multiprocessing
import pickle
import time

from prunepilot.gate import NodeGate


def _compute_steps(folder, log, steps):
    gate = NodeGate(folder)
    for _ in range(steps):
        with gate.compute():
            start = time.monotonic()
            time.sleep(0.02)
            log.put((start, time.monotonic()))


def test_no_compute_step_overlaps_a_measurement(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    log = ctx.Queue()
    workers = [ctx.Process(target=_compute_steps, args=(str(tmp_path), log, 40)) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(0.3)
    gate = NodeGate(tmp_path)
    windows = []
    for _ in range(3):
        with gate.measure():
            begin = time.monotonic()
            time.sleep(0.1)
            windows.append((begin, time.monotonic()))
        time.sleep(0.05)
    for worker in workers:
        worker.join(timeout=30)
    steps = [log.get(timeout=5) for _ in range(80)]
    for begin, end in windows:
        # Every step either ended before the measurement began or started after it ended.
        for start, stop in steps:
            assert stop <= begin + 1e-3 or start >= end - 1e-3


def test_the_gate_pickles_without_its_open_files(tmp_path):
    gate = NodeGate(tmp_path)
    with gate.compute():
        clone = pickle.loads(pickle.dumps(gate))
    assert clone.folder == str(tmp_path)
    with clone.measure():
        pass
