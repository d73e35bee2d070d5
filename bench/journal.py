"""Benchmark: what the journal adds per step.

    .venv/bin/python -m bench.journal [--steps 200] [--repeat 5]

A plan of N trivial steps (``true``) runs on the local-bash executor (tests/local_executor)
four ways; the median wall time of each is printed, and the journal's cost per step:

* bare: the engine with an observer that does nothing;
* journal: the engine with the journal as its observer (one write + fsync per event);
* report: the engine with the runner's recorder writing result.json after every event
  (what a run did before the journal);
* report+journal: the recorder with the journal (what a run does now).

Also the journal alone: 2 events per step, no engine, no bash. The journal directory is
a fresh temporary directory on the file system ``TMPDIR`` points to; fsync cost depends
on it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from agent.backups.base import BackupRecord
from agent.engine import BackupGate, Engine, RunObserver
from agent.journal import Journal
from agent.plan import Plan, PlannedStep, build_plan
from agent.recorder import ProgressSink, Recorder
from agent.records import Step
from agent.report import RunFolder
from agent.results import StepResult, StepStatus
from tests.local_executor import LocalShellExecutor


def make_plan(steps: int) -> Plan:
    phase = [Step(name=f"s{i}", description=f"Step {i}", run="true") for i in range(steps)]
    return build_plan(
        profile_id="bench",
        profile_file="bench.yaml",
        profile_phases={"cleanup": phase},
        profile_vars={},
        backup_paths=(),
        playbook_name="bench",
        playbook_file="bench.yaml",
        playbook_phases=("cleanup",),
        requires_backup=False,
        facts={},
    )


class Nothing:
    def step_started(self, step: PlannedStep) -> None:
        return None

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        return None

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        return None


def timed(plan: Plan, observer_for: Callable[[Path], RunObserver]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        observer = observer_for(Path(tmp))
        engine = Engine(plan, LocalShellExecutor(), BackupGate(None, None), observer)
        started = time.perf_counter()
        result = engine.run()
        elapsed = time.perf_counter() - started
        assert int(result.exit_code) == 0
        return elapsed


def journal_only(steps: int) -> float:
    plan = make_plan(steps)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.create(Path(tmp))
        result = StepResult("cleanup", "s", status=StepStatus.OK)
        started = time.perf_counter()
        for step in plan.steps:
            journal.step_started(step)
            journal.step_finished(step, result)
        elapsed = time.perf_counter() - started
        journal.close()
        return elapsed


def recorder(folder: Path, *, with_journal: bool) -> RunObserver:
    rec = Recorder(RunFolder(folder), {"run_id": "bench", "steps": []}, ProgressSink())
    if with_journal:
        rec.journal = Journal.create(folder)
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40)  # errors only: time the work
    )
    plan = make_plan(args.steps)
    ways: dict[str, Callable[[Path], RunObserver]] = {
        "bare": lambda _: Nothing(),
        "journal": lambda folder: Journal.create(folder),
        "report": lambda folder: recorder(folder, with_journal=False),
        "report+journal": lambda folder: recorder(folder, with_journal=True),
    }
    medians: dict[str, float] = {}
    for name, observer_for in ways.items():
        samples = [timed(plan, observer_for) for _ in range(args.repeat)]
        medians[name] = statistics.median(samples)
    alone = statistics.median(journal_only(args.steps) for _ in range(args.repeat))
    n = args.steps
    print(f"{n} trivial steps on local bash, median of {args.repeat}:")
    for name, seconds in medians.items():
        print(f"  {name:<15} {seconds:7.3f} s   {seconds / n * 1000:6.2f} ms/step")
    print(
        f"journal per step: +{(medians['journal'] - medians['bare']) / n * 1000:.2f} ms over "
        f"bare, +{(medians['report+journal'] - medians['report']) / n * 1000:.2f} ms over "
        f"report; journal alone (2 events, no engine): {alone / n * 1000:.2f} ms/step"
    )


if __name__ == "__main__":
    main()
