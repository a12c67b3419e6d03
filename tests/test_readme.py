"""The README's Python example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def test_the_readme_python_example_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text()
    example = re.search(r"From Python.*?```python\n(.*?)```", readme, re.DOTALL).group(1)
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()  # progress lines, then what the example prints
    met, run_dir = next(line for line in lines if line.startswith(("True ", "False "))).split(" ", 1)
    assert met == "True" and (tmp_path / run_dir / "report.json").is_file()
    front = [line.split() for line in lines[1:] if re.fullmatch(r"\d+ [\d.e-]+ [\d.e-]+", line)]
    assert front and all(float(a[1]) <= float(b[1]) for a, b in zip(front, front[1:]))
    assert (tmp_path / run_dir / "exports" / f"trial-{front[-1][0]}" / "model.onnx").is_file()
