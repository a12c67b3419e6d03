"""Latency calibrations kept across runs, keyed by what their measurements depend on."""

from __future__ import annotations

import json
import os

import pytest

from prunepilot.evaluators import LatencySettings
from prunepilot.policies import discover_groups
from prunepilot.search import SearchSpace, calibration_store
from prunepilot.search.calibration import Calibration, calibration_policies
from prunepilot.search.calibration_store import calibration_key, load_calibration, save_calibration
from prunepilot.tasks.resnet import SmallResNet
from tests import zoo

SHAPE = (1, 8, 8)


@pytest.fixture()
def policies(trained_tiny):
    return calibration_policies(SearchSpace(tuple(discover_groups(trained_tiny, SHAPE))), 8, seed=0)


def test_the_key_follows_the_structure_and_the_measurement_not_the_weights(trained_tiny, policies):
    settings = LatencySettings(batch_size=8, repeats=3)
    key = calibration_key(trained_tiny, SHAPE, policies, settings, "torch", "cpu")
    untrained = zoo.tiny_resnet()  # the same architecture, other weights: the same latencies
    assert calibration_key(untrained, SHAPE, policies, settings, "torch", "cpu") == key
    others = [
        calibration_key(SmallResNet(width=12), SHAPE, policies, settings, "torch", "cpu"),
        calibration_key(trained_tiny, (1, 10, 10), policies, settings, "torch", "cpu"),
        calibration_key(trained_tiny, SHAPE, policies[:-1], settings, "torch", "cpu"),
        calibration_key(trained_tiny, SHAPE, policies, LatencySettings(batch_size=16), "torch", "cpu"),
        calibration_key(trained_tiny, SHAPE, policies, settings, "onnxruntime", "cpu"),
        calibration_key(trained_tiny, SHAPE, policies, settings, "torch", "cuda"),
    ]
    assert key not in others and len(set(others)) == len(others)


def test_a_kept_calibration_is_read_back_and_a_damaged_one_is_measured_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path / "cache"))
    assert load_calibration("abc", 1) is None  # nothing kept yet
    calibration = Calibration([{"conv": [1, 2]}], [0.5], {"conv": [2, 2]}, [False])
    path = save_calibration("abc", calibration)
    assert path is not None and path.parent == tmp_path / "cache" / "calibration"
    loaded, where = load_calibration("abc", 1)
    assert loaded == calibration and where == path
    assert capsys.readouterr().err == ""
    path.write_text('{"tables": [')  # cut short
    assert load_calibration("abc", 1) is None
    assert "is unreadable (JSONDecodeError); measured again" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ('{"tables": [{"c": [1]}], "ratios": [NaN], "base": {"c": [2]}, "int8": []}', "finite positive"),
        ('{"tables": [{"c": [1]}], "ratios": ["0.5"], "base": {"c": [2]}, "int8": []}', "finite positive"),
        ('{"tables": [], "ratios": [], "base": {}, "int8": []}', "of the 1 policies"),
        ('{"tables": [{"conv": "x"}], "ratios": [0.5], "base": {"conv": [2]}, "int8": []}', "layer tables"),
        ("[" * 100_000 + "]" * 100_000, "unreadable"),
        ('"a string"', "unreadable"),
    ],
)
def test_a_cache_entry_that_is_not_a_calibration_is_measured_again_with_one_warning(
    tmp_path, monkeypatch, capsys, entry, said
):
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path))
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "abc.json").write_text(entry)
    assert load_calibration("abc", 1) is None
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and said in err


def test_a_cache_entry_that_is_huge_a_fifo_or_a_link_is_not_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path))
    folder = tmp_path / "calibration"
    folder.mkdir()
    monkeypatch.setattr(calibration_store, "MAX_ENTRY_BYTES", 1000)
    (folder / "big.json").write_text(" " * 2000 + "{}")
    assert load_calibration("big", 1) is None and "over the 1,000" in capsys.readouterr().err
    os.mkfifo(folder / "fifo.json")
    assert load_calibration("fifo", 1) is None and "not a regular file" in capsys.readouterr().err
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps(Calibration([{"c": [1]}], [0.5], {"c": [2]}, []).to_dict()))
    (folder / "link.json").symlink_to(secret)
    assert load_calibration("link", 1) is None  # a link is not followed


def test_a_cache_that_cannot_be_written_does_not_stop_the_run(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(blocked))
    assert save_calibration("abc", Calibration([], [], {}, [])) is None
