"""Front promotion: a whole-trade-off run's cheapest front points get the final fine-tune."""

from __future__ import annotations

import json

import pytest

from prunepilot.final import finalize
from prunepilot.pipeline import prepare
from prunepilot.policies import Policy
from prunepilot.spec import JobSpec
from tests.helpers import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def _search(capsys, tmp_path, tiny_flags, name, budget, share):
    code, out, _ = run_cli(
        capsys, "search", "--budget", budget, "--trials", "6", "--out", tmp_path, "--name", name,
        *tiny_flags, "--promotion-share", share,  # after the flags, which promote nothing
    )  # fmt: skip
    assert code in (0, 3)  # 3: a binding budget missed on re-measurement (the report is written)
    return json.loads((tmp_path / name / "report.json").read_text()), out


def test_the_cheapest_front_points_show_their_final_fine_tune_within_the_share(capsys, tmp_path, tiny_flags):
    report, out = _search(capsys, tmp_path, tiny_flags, "whole", "1000ms", "1")
    by_number = {t["number"]: t for t in report["trials"]}
    front = [by_number[n] for n in report["front"]]  # cheapest first
    promoted = [t for t in report["trials"] if t["promoted"]]
    assert promoted and report["promotion"]["promoted"] == len(promoted)
    # The cheapest points first: the promoted ones are the front's first ones.
    assert {t["number"] for t in front[: len(promoted)]} == {t["number"] for t in promoted}
    promoted.sort(key=lambda t: t["result"]["latency_ms"])
    assert "Promoting" in out and "promotion" in report["run"]["phases_s"]
    trial_s = sum(t["worker_s"] for t in report["trials"] if t["state"] == "COMPLETE")
    assert report["promotion"]["share_of_trials"] == pytest.approx(report["promotion"]["worker_s"] / trial_s)
    # A promoted point's score is what the final fine-tune of its policy reaches on validation.
    spec = JobSpec.from_dict(json.loads((tmp_path / "whole" / "config.json").read_text()))
    job = prepare(spec.resolve(), progress=False)
    settings = spec.final_settings(job.settings)
    cheapest = promoted[0]
    made = finalize(job.task, Policy.from_dict(cheapest["policy"]), settings)
    assert cheapest["promoted"]["val_accuracy"] == pytest.approx(made.final["val_accuracy"], abs=1e-6)
    assert cheapest["promoted"]["finetune_steps"] == spec.final_steps
    for page in ("report.md", "report.html"):
        text = (tmp_path / "whole" / page).read_text()
        assert "after final fine-tune" in text and f"{cheapest['promoted']['val_accuracy']:.4f}" in text


def test_no_promotion_with_a_share_of_0_or_a_budget_that_binds(capsys, tmp_path, tiny_flags):
    report, _ = _search(capsys, tmp_path, tiny_flags, "none", "1000ms", "0")
    assert report["promotion"]["promoted"] == 0 and "promotion" not in report["run"]["phases_s"]
    assert all(t["promoted"] is None for t in report["trials"])
    for page in ("report.md", "report.html"):  # no column of dashes
        assert "after final fine-tune" not in (tmp_path / "none" / page).read_text()
    report, _ = _search(capsys, tmp_path, tiny_flags, "binding", "70%", "1")
    assert report["promotion"]["promoted"] == 0 and "promotion" not in report["run"]["phases_s"]


def test_a_share_outside_0_to_1_is_refused(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--out", tmp_path, *tiny_flags,
                           "--promotion-share", "1.5")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "'promotion_share' parameter", "in [0, 1]", "1.5")
