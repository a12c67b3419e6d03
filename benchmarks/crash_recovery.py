"""Crash recovery: kill -9 at random points of a search, and a study journal cut at random bytes.

1. A reference search on the built-in digits task (a latency budget, so it calibrates) gives each
   phase's start and length (``report.json`` ``run.phases_s``).
2. ``--kills`` searches are each killed with SIGKILL at a random time inside a phase, taken in turn
   from calibration, a trial, the final fine-tune, the export, and right after a journal append,
   then continued with ``--resume``: it must finish (exit 0, exports checked), and every trial
   completed before the kill must still be there with the same values.
3. ``--cuts`` copies of the reference run have their journal cut at a random byte offset; then
   ``report``, ``export --trial N`` (a trial completed before the cut) and ``search --resume`` must
   each work or answer with one line, and no trial completed before the cut may be lost.

Run: ``python benchmarks/crash_recovery.py`` (about 25 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from results_file import finish

from prunepilot.search.journal import open_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)
PHASES = ("calibration", "trials", "final", "export", "journal")
SEARCH = ["--budget", "2x", "--finetune-steps", "60", "--final-steps", "200", "--workers", "0", "--quiet"]


def prunepilot(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunepilot", *map(str, args)], capture_output=True, text=True
    )


def start(out: Path, name: str, trials: int, seed: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "prunepilot", "search", *SEARCH, "--trials", str(trials),
               "--seed", str(seed), "--out", str(out), "--name", name]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def completed(journal: Path) -> dict[int, list[float]]:
    """Completed trials (number -> values) of a journal, read from a copy (its torn end dropped)."""
    if not journal.is_file():
        return {}
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "study.journal"
        shutil.copy(journal, copy)
        storage = open_journal(copy, warn=lambda _: None)
        names = [s.study_name for s in storage.get_all_studies()]
        if not names:
            return {}
        study = optuna.load_study(study_name=names[0], storage=storage)
        return {t.number: t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}


def one_line(result: subprocess.CompletedProcess) -> bool:
    """The command worked (exit 0, or 3: the report written, no model within the budget chosen), or
    answered with one line (exit 2) and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("prunepilot: error")]
    worked = result.returncode in (0, 3) and not lines
    return worked or (result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr)


def kill_at(out: Path, name: str, phase: str, offset: float, trials: int, seed: int) -> dict:
    """Starts a search, kills it at ``offset`` s (or after a journal append), then resumes it."""
    process = start(out, name, trials, seed)
    began = time.perf_counter()
    journal = out / name / "study.journal"
    if phase == "journal":  # the first append after ``offset`` seconds
        time.sleep(offset)
        size = journal.stat().st_size if journal.exists() else 0
        while process.poll() is None and (journal.stat().st_size if journal.exists() else 0) == size:
            time.sleep(0.001)
    else:
        while process.poll() is None and time.perf_counter() - began < offset:
            time.sleep(0.01)
    finished_first = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = time.perf_counter() - began
    before = completed(journal)
    resumed = prunepilot("search", "--resume", "--name", name, "--out", out, "--quiet")
    after = completed(journal)
    kept = all(after.get(number) == values for number, values in before.items())
    return {
        "phase": phase, "killed_at_s": round(killed_at, 2), "finished_before_the_kill": finished_first,
        "completed_before": len(before), "completed_after": len(after), "kept_every_completed": kept,
        "resume_exit": resumed.returncode,
        "resume_error": resumed.stderr.strip()[-300:] if resumed.returncode else "",
    }  # fmt: skip


def cut_at(reference: Path, out: Path, name: str, offset: int) -> dict:
    """A copy of ``reference`` with its journal cut at ``offset``: report, export, resume."""
    run = out / name
    shutil.copytree(reference, run)
    journal = run / "study.journal"
    with journal.open("r+b") as f:
        f.truncate(offset)
    before = completed(journal)
    report = prunepilot("report", run, "--quiet")
    trial = min(before) if before else None
    export = prunepilot("export", run, "--trial", trial, "--format", "plan", "--quiet") if before else None
    resumed = prunepilot("search", "--resume", "--name", name, "--out", out, "--quiet")
    after = completed(journal)
    return {
        "offset": offset, "completed_before_the_cut": len(before), "completed_after_resume": len(after),
        "kept_every_completed": all(after.get(n) == v for n, v in before.items()),
        "report_exit": report.returncode, "report_one_line": one_line(report),
        "export_trial": trial, "export_exit": export.returncode if export else None,
        "export_one_line": one_line(export) if export else None,
        "resume_exit": resumed.returncode, "resume_one_line": one_line(resumed),
        "errors": [r.stderr.strip()[-300:] for r in (report, export, resumed) if r and r.returncode],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="benchmarks/results/crash_recovery.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = random.Random(args.seed)
    out = Path(tempfile.mkdtemp(prefix="crash-recovery-"))
    began = time.perf_counter()
    reference = start(out, "reference", args.trials, args.seed)
    assert reference.wait() == 0, reference.stderr.read()
    run = json.loads((out / "reference" / "report.json").read_text())["run"]
    phases = run["phases_s"]
    # The phases start once the process has imported its libraries.
    starts, clock = {}, max(0.0, time.perf_counter() - began - run["wall_s"])
    print(f"reference: {clock:.1f} s before the first phase", flush=True)
    for phase, seconds in phases.items():
        starts[phase], clock = (clock, seconds), clock + seconds
    print("reference phases (s):", {k: round(v, 1) for k, v in phases.items()}, flush=True)
    kills = []
    for k in range(args.kills):
        phase = PHASES[k % len(PHASES)]
        begin, length = starts.get(phase, (rng.uniform(0, clock), 0.0))
        offset = begin + rng.uniform(0.1, 0.9) * length
        kills.append(kill_at(out, f"kill-{k}", phase, offset, args.trials, args.seed + 1 + k))
        print(json.dumps(kills[-1]), flush=True)
    size = (out / "reference" / "study.journal").stat().st_size
    cuts = []
    for k, offset in enumerate(sorted(rng.randrange(1, size) for _ in range(args.cuts))):
        cuts.append(cut_at(out / "reference", out, f"cut-{k}", offset))
        print(json.dumps(cuts[-1]), flush=True)
    summary = {
        "kills_resumed": sum(k["resume_exit"] == 0 for k in kills),
        "kills_keeping_every_trial": sum(k["kept_every_completed"] for k in kills),
        "trials_completed_before_kills": sum(k["completed_before"] for k in kills),
        "cuts_answered": sum(
            c["report_one_line"] and c["resume_one_line"] and c["export_one_line"] is not False for c in cuts
        ),  # fmt: skip
        "cuts_resumed": sum(c["resume_exit"] == 0 for c in cuts),
        "cuts_keeping_every_trial": sum(c["kept_every_completed"] for c in cuts),
        "trials_completed_before_cuts": sum(c["completed_before_the_cut"] for c in cuts),
    }
    print(json.dumps(summary, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    finish(args.json, {"phases_s": phases, "kills": kills, "cuts": cuts, "summary": summary}, started)


if __name__ == "__main__":
    main()
