"""A battery of hostile inputs, across the command line, job files, policy files, run directories
and the Python API: each is answered with one line and the right exit code, without a traceback,
and leaves every file of an earlier run exactly as it was (nothing new written either)."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import prunepilot
from prunepilot import UsageError
from tests import zoo
from tests.helpers import FAST_FLAGS, run_cli

pytestmark = pytest.mark.slow

MB = 1 << 20


class _RunsCode:
    """Unpickling this object would create the file ``PWNED`` (a checkpoint that runs code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_weights) -> dict[str, str]:
    """The finished run every case must leave alone, the tiny model's flags and hostile files."""
    root = tmp_path_factory.mktemp("hostile")
    tiny = ["--model", "tests.zoo:tiny_resnet", "--weights", str(tiny_weights), "--data",
            "tests.zoo:small_digits_data", *FAST_FLAGS]  # fmt: skip
    out = root / "runs"
    code = prunepilot.cli.main(["search", "--budget", "1000ms", "--trials", "2", "--out", str(out),
                                "--name", "done", *tiny])  # fmt: skip
    assert code == 0
    files = root / "files"
    files.mkdir()
    big = files / "big.bin"
    with big.open("wb") as f:
        f.write(os.urandom(50 * MB))
    (files / "big.json").write_text("[" + "0," * (25 * MB) + "0]")
    (files / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (files / "deep.toml").write_text("budget = " + "[" * 100_000 + "]" * 100_000)
    (files / "binary.toml").write_bytes(os.urandom(4096))
    (files / "empty.pt").write_bytes(b"")
    (files / "text.pt").write_text('{"stem.0.weight": [1, 2, 3]}')
    (files / "pwned.pt").write_bytes(pickle.dumps(_RunsCode(str(files / "PWNED"))))
    torch.save({"elsewhere.weight": torch.zeros(3)}, files / "other.pt")
    policies = {
        "not_json.json": "ratio: 0.5",
        "list.json": "[0.5, 0.5]",
        "nan.json": '{"groups": {"stem.0": {"ratio": NaN, "criterion": "l1"}}}',
        "huge.json": '{"groups": {"stem.0": {"ratio": 1e308, "criterion": "l1"}}}',
        "negative.json": '{"groups": {"stem.0": {"ratio": -0.5, "criterion": "l1"}}}',
        "unknown_group.json": '{"groups": {"backbone.conv9": {"ratio": 0.5, "criterion": "l1"}}}',
        "unicode_group.json": '{"groups": {"stém.０": {"ratio": 0.5, "criterion": "l1"}}}',
        "bad_criterion.json": '{"groups": {"stem.0": {"ratio": 0.5, "criterion": "magic"}}}',
        "string_ratio.json": '{"groups": {"stem.0": {"ratio": "half", "criterion": "l1"}}}',
    }
    for name, text in policies.items():
        (files / name).write_text(text, encoding="utf-8")
    jobs = {
        "unknown.toml": 'budget = "2x"\nbudgte = "3x"',
        "nan.toml": 'budget = "2x"\ntrials = nan',
        "inf.toml": 'budget = "2x"\n[finetune]\nlr = inf',
        "huge.toml": 'budget = "2x"\ntrials = 9223372036854775807',
        "negative.toml": 'budget = "2x"\ntimeout = -1',
        "traversal.toml": 'budget = "2x"\nname = "../../etc"',
        "bom.toml": '\ufeffbudget = "2x"',
        "table.toml": 'budget = "2x"\n[model.task]\nname = "digits"',
        "empty.toml": "",
        "array.toml": 'budget = ["2x", "3x"]',
    }
    for name, text in jobs.items():
        (files / name).write_text(text, encoding="utf-8")
    (files / "a_folder.toml").mkdir()
    (files / "dangling").symlink_to(files / "nowhere")
    (files / "notes.txt").write_text("meeting notes, not a journal\n")
    broken = out / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"budget": ')
    (out / "empty_run").mkdir()
    shutil.copytree(out / "done", out / "journal_dir")
    (out / "journal_dir" / "study.journal").unlink()
    (out / "journal_dir" / "study.journal").mkdir()
    return {"@out": str(out), "@run": str(out / "done"), "@files": str(files), "@tiny": tiny}


def _expand(args: tuple, places: dict) -> list[str]:
    expanded: list[str] = []
    for arg in args:
        if arg == "@tiny":
            expanded += places["@tiny"]
            continue
        for key in ("@out", "@run", "@files"):
            arg = arg.replace(key, places[key])
        expanded.append(arg)
    return expanded


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


S = ("search", "--out", "@out", "@tiny")  # a search on the tiny model into the finished run's folder
B = (*S, "--budget", "1000ms")  # the same with a budget the model meets

#: (id, arguments, exit code, fragments of the one line)
CASES = [
    # budgets
    ("empty budget", (*S, "--budget", ""), 2, ["budget"]),
    ("negative budget", (*S, "--budget=-5ms"), 2, ["budget"]),
    ("nan budget", (*S, "--budget", "nanms"), 2, ["budget"]),
    ("infinite budget", (*S, "--budget", "1e400ms"), 2, ["budget"]),
    ("zero budget", (*S, "--budget", "0%"), 2, ["budget"]),
    ("unknown unit", (*S, "--budget", "30parsecs"), 2, ["budget"]),
    ("unmeetable budget", (*S, "--budget", "0.0001ms"), 2, ["cannot be met"]),
    # numbers
    ("negative trials", (*B, "--trials", "-1"), 2, ["trials"]),
    ("huge trials", (*B, "--trials", "9" * 40), 2, ["trials"]),
    ("nan trials", (*B, "--trials", "nan"), 2, ["trials"]),
    ("negative timeout", (*B, "--timeout", "-1"), 2, ["timeout"]),
    ("nan timeout", (*B, "--timeout", "nan"), 2, ["timeout"]),
    ("nan lr", (*B, "--lr", "nan"), 2, ["lr"]),
    ("infinite lr", (*B, "--lr", "inf"), 2, ["lr"]),
    ("negative lr", (*B, "--lr", "-0.1"), 2, ["lr"]),
    ("zero batch size", (*B, "--batch-size", "0"), 2, ["batch_size"]),
    ("batch size over the data", (*B, "--batch-size", "1000000000"), 2, ["batch"]),
    ("ratio over 1", (*B, "--ratio-max", "1.5"), 2, ["ratio_max"]),
    ("nan ratio", (*B, "--ratio-max", "nan"), 2, ["ratio_max"]),
    ("ratio min over max", (*B, "--ratio-min", "0.9", "--ratio-max", "0.5"), 2, ["ratio_min"]),
    ("negative seed", (*B, "--seed", "-1"), 2, ["seed"]),
    ("huge seed", (*B, "--seed", "9" * 30), 2, ["seed"]),
    ("negative workers", (*B, "--workers", "-3"), 2, ["workers"]),
    ("zero threads", (*B, "--threads", "0"), 2, ["threads"]),
    ("zero latency repeats", (*B, "--latency-repeats", "0"), 2, ["latency_repeats"]),
    ("nan promotion share", (*B, "--promotion-share", "nan"), 2, ["promotion_share"]),
    ("negative discovery memory", (*B, "--discovery-memory-gb", "-1"), 2, ["discovery_memory_gb"]),
    ("zero round-to", (*B, "--round-to", "0"), 2, ["round_to"]),
    ("empty criteria", (*B, "--criteria", ","), 2, ["criteria"]),
    ("unknown criterion", (*B, "--criteria", "l1,magic"), 2, ["criteria"]),
    ("unknown excluded group", (*B, "--exclude", "backbone.conv9"), 2, ["backbone.conv9"]),
    # run names and places
    ("traversal name", (*B, "--name", "../escape"), 2, ["--name"]),
    ("name with a slash", (*B, "--name", "a/b"), 2, ["--name"]),
    ("absolute name", (*B, "--name", "/tmp/x"), 2, ["--name"]),
    ("empty name", (*B, "--name", ""), 2, ["--name"]),
    ("dot name", (*B, "--name", ".."), 2, ["--name"]),
    ("name with a newline", (*B, "--name", "a\nb"), 2, ["--name"]),
    ("overlong name", (*B, "--name", "n" * 300), 2, ["--name"]),
    ("existing run name", (*B, "--name", "done"), 2, ["already exists"]),
    (
        "out is a device file",
        ("search", "--out", "/dev/null", "@tiny", "--budget", "1000ms"),
        2,
        ["/dev/null"],
    ),
    ("resume of no run", (*S, "--resume", "--name", "nothing"), 2, ["Cannot resume"]),
    ("resume by traversal", (*S, "--resume", "--name", "../../.."), 2, ["--name"]),
    ("resume of a broken config", (*S, "--resume", "--name", "broken"), 2, ["config.json"]),
    # model, weights, data, shapes, devices
    ("model runs os.system", (*B, "--model", "os:system"), 2, ["--model"]),
    ("model not importable", (*B, "--model", "../../etc:passwd"), 2, ["--model"]),
    ("weights are 50 MB of noise", (*B, "--weights", "@files/big.bin"), 2, ["big.bin"]),
    ("weights run code", (*B, "--weights", "@files/pwned.pt"), 2, ["pwned.pt"]),
    ("weights are JSON text", (*B, "--weights", "@files/text.pt"), 2, ["text.pt"]),
    ("weights are empty", (*B, "--weights", "@files/empty.pt"), 2, ["empty.pt"]),
    ("weights of another model", (*B, "--weights", "@files/other.pt"), 2, ["other.pt"]),
    ("weights are a folder", (*B, "--weights", "@files"), 2, ["--weights"]),
    ("zero input shape", (*B, "--input-shape", "0x8x8"), 2, ["--input-shape"]),
    ("negative input shape", (*B, "--input-shape", "1,-8,8"), 2, ["--input-shape"]),
    ("huge input shape", (*B, "--input-shape", "1,100000,100000"), 2, ["--input-shape"]),
    ("unknown dtype", (*B, "--input-dtype", "float128"), 2, ["--input-dtype"]),
    ("missing metric", (*B, "--metric", "tests.zoo:missing"), 2, ["--metric"]),
    ("absent GPU", (*B, "--device", "cuda:7"), 2, ["cuda"]),
    ("unknown device", (*B, "--device", "tpu"), 2, ["device"]),
    ("unknown storage", (*B, "--study", "s", "--storage", "bogus://x"), 2, ["storage"]),
    # policy files
    ("policy missing", (*B, "--policy", "@files/none.json"), 2, ["none.json"]),
    ("policy 50 MB", (*B, "--policy", "@files/big.json"), 2, ["big.json"]),
    ("policy deeply nested", (*B, "--policy", "@files/deep.json"), 2, ["deep.json"]),
    ("policy not JSON", (*B, "--policy", "@files/not_json.json"), 2, ["not_json.json"]),
    ("policy a list", (*B, "--policy", "@files/list.json"), 2, ["list.json"]),
    ("policy ratio NaN", (*B, "--policy", "@files/nan.json"), 2, ["nan.json", "ratio"]),
    ("policy ratio huge", (*B, "--policy", "@files/huge.json"), 2, ["huge.json", "ratio"]),
    ("policy ratio negative", (*B, "--policy", "@files/negative.json"), 2, ["negative.json", "ratio"]),
    ("policy unknown group", (*B, "--policy", "@files/unknown_group.json"), 2, ["backbone.conv9"]),
    ("policy unicode group", (*B, "--policy", "@files/unicode_group.json"), 2, ["stém"]),
    ("policy bad criterion", (*B, "--policy", "@files/bad_criterion.json"), 2, ["magic"]),
    ("policy string ratio", (*B, "--policy", "@files/string_ratio.json"), 2, ["ratio"]),
    # where a run writes
    ("storage a text file", (*B, "--storage", "@files/notes.txt"), 2, ["notes.txt is not a study journal"]),
    ("storage too long", (*B, "--storage", "@files/" + "s" * 300), 2, ["--storage is too long"]),
    ("out a link to nothing", (*B, "--out", "@files/dangling"), 2, ["symbolic link to nothing"]),
    ("out too long", (*B, "--out", "@files/" + "o" * 300), 2, ["--out is too long"]),
    # job files
    ("job missing", ("search", "@files/none.toml", "--out", "@out"), 2, ["none.toml"]),
    ("job 50 MB", ("search", "@files/big.bin", "--out", "@out"), 2, ["big.bin"]),
    ("job deeply nested", ("search", "@files/deep.toml", "--out", "@out"), 2, ["deep.toml"]),
    ("job binary", ("search", "@files/binary.toml", "--out", "@out"), 2, ["binary.toml"]),
    ("job a folder", ("search", "@files/a_folder.toml", "--out", "@out"), 2, ["a_folder.toml"]),
    ("job unknown key", ("search", "@files/unknown.toml", "--out", "@out"), 2, ["budgte"]),
    ("job nan trials", ("search", "@files/nan.toml", "--out", "@out"), 2, ["trials"]),
    ("job infinite lr", ("search", "@files/inf.toml", "--out", "@out"), 2, ["lr"]),
    ("job huge trials", ("search", "@files/huge.toml", "--out", "@out"), 2, ["trials"]),
    ("job negative timeout", ("search", "@files/negative.toml", "--out", "@out"), 2, ["timeout"]),
    ("job traversal name", ("search", "@files/traversal.toml", "--out", "@out"), 2, ["name"]),
    ("job table for a value", ("search", "@files/table.toml", "--out", "@out"), 2, ["model.task"]),
    ("job empty", ("search", "@files/empty.toml", "--out", "@out"), 2, ["budget"]),
    ("job array budget", ("search", "@files/array.toml", "--out", "@out"), 2, ["budget"]),
    ("validate 50 MB", ("validate", "@files/big.bin"), 2, ["big.bin"]),
    # run directories
    ("report of no run", ("report", "@out/nothing"), 2, ["nothing"]),
    ("report of a file", ("report", "@files/big.bin"), 2, ["big.bin"]),
    ("report of an empty folder", ("report", "@out/empty_run"), 2, ["empty_run"]),
    ("report of a broken config", ("report", "@out/broken"), 2, ["config.json"]),
    ("report of a journal folder", ("report", "@out/journal_dir"), 2, ["journal_dir"]),
    ("export of a negative trial", ("export", "@run", "--trial", "-1"), 2, ["-1"]),
    ("export of a trial not run", ("export", "@run", "--trial", "99999"), 2, ["99999"]),
    ("export of a nan trial", ("export", "@run", "--trial", "nan"), 2, ["--trial"]),
    ("export of no run", ("export", "@out/nothing", "--trial", "0"), 2, ["nothing"]),
    ("repair of no run", ("repair", "@out/nothing"), 2, ["nothing"]),
    ("repair of a file", ("repair", "@files/big.bin"), 2, ["big.bin"]),
    ("repair of a journal folder", ("repair", "@out/journal_dir"), 2, ["journal_dir"]),
]


@pytest.mark.parametrize(
    ("args", "exit_code", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_hostile_input_gets_one_line_and_changes_nothing(capsys, hostile, args, exit_code, fragments):
    out = Path(hostile["@out"])
    before = _snapshot(out)
    code, _, err = run_cli(capsys, *_expand(args, hostile))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("prunepilot: error: "), err
    assert "Traceback" not in err
    assert code == exit_code, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert _snapshot(out) == before
    assert not (Path(hostile["@files"]) / "PWNED").exists()


def _api(model=None, **settings):
    splits = dict(zip(("train", "val", "test"), zoo.small_digits_data()))
    splits.update({name: settings.pop(name) for name in list(settings) if name in splits})
    model = zoo.tiny_resnet() if model is None else model
    return prunepilot.search(model, **splits, progress=False, workers=0, **settings)


API_CASES = [
    ("not a model", lambda out: _api("resnet18", budget="2x", out=out), ["model"]),
    ("no budget", lambda out: _api(budget=None, out=out), ["budget"]),
    ("nan budget", lambda out: _api(budget=float("nan"), out=out), ["budget"]),
    ("unknown setting", lambda out: _api(budget="2x", out=out, trails=3), ["trails"]),
    ("negative trials", lambda out: _api(budget="2x", out=out, trials=-1), ["trials"]),
    ("nan lr", lambda out: _api(budget="2x", out=out, lr=float("nan")), ["lr"]),
    ("traversal name", lambda out: _api(budget="2x", out=out, name="../x"), ["name"]),
    ("policy not a path", lambda out: _api(budget="2x", out=out, policy={"groups": {}}), ["policy"]),
    ("huge seed", lambda out: _api(budget="2x", out=out, seed=2**64), ["seed"]),
    ("absolute name", lambda out: _api(budget="2x", out=out, name="/etc"), ["name"]),
    ("empty training split", lambda out: _api(budget="2x", out=out, train=[]), ["train"]),
]


@pytest.mark.parametrize("call, fragments", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_the_python_api_refuses_hostile_input_with_one_line(tmp_path, call, fragments):
    with pytest.raises(UsageError) as refused:
        call(str(tmp_path))
    message = str(refused.value)
    assert "\n" not in message.strip(), message
    for fragment in fragments:
        assert fragment in message, message
    assert not any(tmp_path.iterdir())
