"""Crash recovery: kill -9 and SIGTERM at random points of a search, and a study journal cut at
random bytes.

1. A reference search on the built-in digits task (a latency budget, so it calibrates) gives each
   phase's start and length (``report.json`` ``run.phases_s``).
2. ``--kills`` searches are each stopped at a random time inside a phase, taken in turn from
   calibration, a trial, the final fine-tune, the export, and right after a journal append, by
   SIGKILL and SIGTERM in turn, half of them run with a relative ``--out``; each is then continued
   with ``--resume`` (under a 300 s limit: a resume waiting on a lock fails it): it must finish
   (exit 0, exports checked), and every trial completed before the stop must still be there with
   the same values.
3. ``--cuts`` copies of the reference run have their journal cut at a random byte offset; then
   ``report``, ``export --trial N`` (a trial completed before the cut) and ``search --resume`` must
   each work or answer with one line, and no trial completed before the cut may be lost.
4. ``prunepilot repair`` of journals of ``--repair-mb`` MB built from the reference run's records
   (its trials repeated under new numbers), every other line damaged: timed.

Run: ``python benchmarks/crash_recovery.py`` (about 70 minutes on 2 cores; ``--kills 10 --cuts 4`` for a
quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
from results_file import finish

from prunepilot.search.journal import open_journal
from prunepilot.tasks.builtin import cache_dir

optuna.logging.set_verbosity(optuna.logging.WARNING)
PHASES = ("calibration", "trials", "final", "export", "journal")
#: The line each phase begins with (the calibration prints none).
MARKERS = {"trials": "Trials run", "journal": "Trials run", "final": "Final fine-tune of trial",
           "export": "Exporting trial"}  # fmt: skip
SEARCH = ["--budget", "2x", "--finetune-steps", "60", "--final-steps", "200", "--workers", "0", "--quiet"]


#: Seconds a resume may take before it counts as hung (waiting on a lock).
RESUME_LIMIT = 300


def prunepilot(
    *args: object, cache: Path | None = None, cwd: Path | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PRUNEPILOT_CACHE": str(cache)} if cache else {})}
    command = [sys.executable, "-m", "prunepilot", *map(str, args)]
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 124, "", f"hung: still running after {timeout} s")


def start(out: Path, name: str, trials: int, seed: int, relative: bool = False) -> subprocess.Popen:
    """Starts a search with a cache of its own holding the built-in model (so that its latency
    calibration is measured, not reused); its output is read line by line. ``relative``: run from
    ``out``'s parent with a relative ``--out``."""
    cache = out / f"cache-{name}"
    cache.mkdir()
    for trained in cache_dir().glob("digits_*.pt"):
        shutil.copy2(trained, cache / trained.name)
    where = out.name if relative else str(out)
    command = [sys.executable, "-m", "prunepilot", "search", *SEARCH, "--trials", str(trials),
               "--seed", str(seed), "--out", where, "--name", name]  # fmt: skip
    env = {**os.environ, "PRUNEPILOT_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=out.parent if relative else None)  # fmt: skip


class Lines:
    """The lines a process prints, read by a thread of their own."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.seen: list[str] = []
        self.thread = threading.Thread(target=lambda: self.seen.extend(process.stdout), daemon=True)
        self.thread.start()

    def wait_for(self, marker: str, process: subprocess.Popen) -> bool:
        """Waits until a line starts with ``marker``; False when the process ended first."""
        while not any(line.startswith(marker) for line in self.seen):
            if process.poll() is not None:
                return False
            time.sleep(0.005)
        return True


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


def kill_at(
    out: Path, name: str, phase: str, delay: float, trials: int, seed: int, stop: int, relative: bool
) -> dict:
    """Starts a search, sends it ``stop`` (SIGKILL or SIGTERM) ``delay`` s after its phase begins
    (for ``journal``, at the first journal append after that), then resumes it."""
    process = start(out, name, trials, seed, relative)
    lines = Lines(process)
    journal = out / name / "study.journal"
    began = time.perf_counter()
    if phase == "calibration":  # it prints nothing as it starts: measured from the process start
        time.sleep(delay)
    else:
        lines.wait_for(MARKERS[phase], process)
        time.sleep(delay)
    if phase == "journal":
        size = journal.stat().st_size
        while process.poll() is None and journal.stat().st_size == size:
            time.sleep(0.0005)
    finished_first = process.poll() is not None
    process.send_signal(stop)
    process.wait()
    killed_at = time.perf_counter() - began
    before = completed(journal)
    started = time.perf_counter()
    resumed = prunepilot(
        "search", "--resume", "--name", name, "--out", out.name if relative else out, "--quiet",
        cache=out / f"cache-{name}", cwd=out.parent if relative else None, timeout=RESUME_LIMIT,
    )  # fmt: skip
    after = completed(journal)
    return {
        "phase": phase, "signal": signal.Signals(stop).name, "out": "relative" if relative else "absolute",
        "stop_exit": process.returncode, "resume_s": round(time.perf_counter() - started, 1),
        "killed_at_s": round(killed_at, 2), "finished_before_the_kill": finished_first,
        "last_line_before_the_kill": lines.seen[-1].strip()[:100] if lines.seen else "",
        "completed_before": len(before), "completed_after": len(after),
        "kept_every_completed": all(after.get(number) == values for number, values in before.items()),
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


def damaged_journal(reference: Path, target: Path, megabytes: float) -> int:
    """Writes at ``target`` a journal of about ``megabytes`` MB: the reference journal's study
    records, then its trial records repeated under new trial ids, every other line made unreadable
    (its first half replaced by garbage). Returns its line count."""
    records = [json.loads(line) for line in reference.read_bytes().splitlines()]
    head = [r for r in records if "trial_id" not in r and r["op_code"] != 4]  # the study's own
    trial_records = [r for r in records if r not in head]
    trials = sum(r["op_code"] == 4 for r in records)
    lines = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in head]
    size, offset = sum(map(len, lines)), 0
    while size < megabytes * 2**20:
        for record in trial_records:
            moved = {**record, **({"trial_id": record["trial_id"] + offset} if "trial_id" in record else {})}
            lines.append(json.dumps(moved, separators=(",", ":")).encode() + b"\n")
            size += len(lines[-1])
        offset += trials
    for index in range(len(head) + 1, len(lines), 2):
        lines[index] = b"\x00garbage " + lines[index][len(lines[index]) // 2 :]
    target.write_bytes(b"".join(lines))
    return len(lines)


def time_repair(reference: Path, out: Path, megabytes: float) -> dict:
    """``prunepilot repair`` of a damaged journal of ``megabytes`` MB, timed in its own process."""
    target = out / f"repair-{megabytes:g}MB.journal"
    lines = damaged_journal(reference, target, megabytes)
    started = time.perf_counter()
    result = prunepilot("repair", target, timeout=RESUME_LIMIT)
    seconds = round(time.perf_counter() - started, 2)
    return {"megabytes": megabytes, "lines": lines, "exit": result.returncode, "seconds": seconds,
            "said": result.stdout.strip()[-200:]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repair-mb", type=float, nargs="*", default=[8, 32])
    parser.add_argument("--json", default="benchmarks/results/crash_recovery.json")
    args = parser.parse_args()
    began = time.perf_counter()
    rng = random.Random(args.seed)
    out = Path(tempfile.mkdtemp(prefix="crash-recovery-"))
    reference = start(out, "reference", args.trials, args.seed)
    output, _ = reference.communicate()
    assert reference.returncode == 0, output
    run = json.loads((out / "reference" / "report.json").read_text())["run"]
    phases = run["phases_s"]
    startup = max(0.0, time.perf_counter() - began - run["wall_s"])  # imports, before the first phase
    print(f"reference: {startup:.1f} s of start-up, phases (s):", phases, flush=True)
    kills = []
    for k in range(args.kills):
        phase = PHASES[k % len(PHASES)]
        length = phases["trials" if phase == "journal" else phase]
        delay = rng.uniform(0.1, 0.8) * length
        if phase == "calibration":
            delay += startup + phases["prepare"] + phases.get("baseline", 0.0)
        stop, relative = (signal.SIGKILL, signal.SIGTERM)[k % 2], (k // 2) % 2 == 1
        kills.append(kill_at(out, f"kill-{k}", phase, delay, args.trials, args.seed + 1 + k, stop, relative))
        print(json.dumps(kills[-1]), flush=True)
    size = (out / "reference" / "study.journal").stat().st_size
    cuts = []
    for k, offset in enumerate(sorted(rng.randrange(1, size) for _ in range(args.cuts))):
        cuts.append(cut_at(out / "reference", out, f"cut-{k}", offset))
        print(json.dumps(cuts[-1]), flush=True)
    repairs = [time_repair(out / "reference" / "study.journal", out, mb) for mb in args.repair_mb]
    for repair in repairs:
        print(json.dumps(repair), flush=True)
    summary = {
        "kills_resumed": sum(k["resume_exit"] == 0 for k in kills),
        "kills_by_signal": {name: sum(k["signal"] == name for k in kills) for name in ("SIGKILL", "SIGTERM")},
        "kills_with_a_relative_out": sum(k["out"] == "relative" for k in kills),
        "resumes_hung": sum(k["resume_exit"] == 124 for k in kills),
        "slowest_resume_s": max((k["resume_s"] for k in kills), default=0.0),
        "kills_keeping_every_trial": sum(k["kept_every_completed"] for k in kills),
        "trials_completed_before_kills": sum(k["completed_before"] for k in kills),
        "cuts_answered": sum(
            c["report_one_line"] and c["resume_one_line"] and c["export_one_line"] is not False for c in cuts
        ),  # fmt: skip
        "cuts_resumed": sum(c["resume_exit"] == 0 for c in cuts),
        "cuts_keeping_every_trial": sum(c["kept_every_completed"] for c in cuts),
        "trials_completed_before_cuts": sum(c["completed_before_the_cut"] for c in cuts),
        "repair_s": {f"{r['megabytes']:g} MB": r["seconds"] for r in repairs},
    }
    print(json.dumps(summary, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    results = {"phases_s": phases, "kills": kills, "cuts": cuts, "repairs": repairs, "summary": summary}
    finish(args.json, results, began)


if __name__ == "__main__":
    main()
