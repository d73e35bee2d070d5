"""Runs of the real engine and journal on local bash, stopped where a test says, then resumed.

This is the runner's journaling and resume logic without SSH: the observer journals each
event the way ``agent.runner._Recorder`` does (journal first), and can stop the run

* ``kill``: like SIGKILL, nothing more is written (the journal is simply abandoned);
* ``interrupt``: like Ctrl-C, the running step is journaled as interrupted and the run
  as finished with status interrupted;

either just before or just after the journal write of its N-th event. "Before the
write of step_finished" is a kill inside the step, after its command had its effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.backups.base import BackupContext, BackupRecord
from agent.engine import BackupGate, Engine, EngineResult, ResumeState
from agent.journal import Journal, load_journal, plan_hash
from agent.plan import Plan, PlannedStep
from agent.results import StepResult
from agent.resume import check_resumable, resume_state
from agent.targets import Target
from tests.local_executor import LocalShellExecutor

TARGET = Target(scheme="ssh", user="azureuser", host="vm.example", port=22)

How = Literal["kill", "interrupt"]


class Killed(BaseException):
    """The simulated SIGKILL: nothing catches it, nothing more is written."""


@dataclass(frozen=True)
class StopAt:
    event: int  # the N-th observer event of the session (1-based)
    before_write: bool
    how: How


class JournalingObserver:
    def __init__(self, journal: Journal, stop: StopAt | None) -> None:
        self.journal = journal
        self._stop = stop
        self._events = 0

    def _event(self, write: Callable[[], None]) -> None:
        self._events += 1
        stop = self._stop if self._stop and self._stop.event == self._events else None
        if stop is not None and stop.before_write:
            self._halt(stop.how)
        write()
        if stop is not None:
            self._halt(stop.how)

    @staticmethod
    def _halt(how: How) -> None:
        if how == "kill":
            raise Killed
        raise KeyboardInterrupt

    def step_started(self, step: PlannedStep) -> None:
        self._event(lambda: self.journal.step_started(step))

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        self._event(lambda: self.journal.step_finished(step, result))

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        self._event(lambda: self.journal.backup_finished(record, error))


@dataclass
class Session:
    result: EngineResult | None  # None when stopped
    stopped: How | None


def _run(
    plan: Plan,
    journal: Journal,
    gate: BackupGate,
    stop: StopAt | None,
    resume: ResumeState | None = None,
) -> Session:
    observer = JournalingObserver(journal, stop)
    engine = Engine(
        plan,
        LocalShellExecutor(),
        gate,
        observer,
        sleep=lambda _: None,
        resume=resume,
    )
    try:
        result = engine.run()
    except Killed:
        journal.close()
        return Session(None, "kill")
    except KeyboardInterrupt:
        journal.step_interrupted()
        journal.run_finished(status="interrupted", exit_code=130, message="interrupted")
        journal.close()
        return Session(None, "interrupt")
    status = "succeeded" if result.exit_code == 0 else "failed"
    journal.run_finished(status=status, exit_code=int(result.exit_code), message=result.message)
    journal.close()
    return Session(result, None)


def backup_context(run_dir: Path) -> BackupContext:
    return BackupContext(run_id="r1", target=TARGET, paths=("/etc",), run_dir=run_dir)


def first_session(
    plan: Plan,
    run_dir: Path,
    gate: BackupGate,
    stop: StopAt | None = None,
) -> Session:
    journal = Journal.create(run_dir, waiver=gate.waiver_reason)
    journal.run_started(
        {
            "run_id": "r1",
            "target": TARGET.display,
            "request": {"no_backup_reason": gate.waiver_reason},
            "plan_hash": plan_hash(plan),
            "facts": {},
        }
    )
    return _run(plan, journal, gate, stop)


def resume_session(
    plan: Plan,
    run_dir: Path,
    gate_if_no_backup: BackupGate,
    stop: StopAt | None = None,
) -> Session:
    """What `run --resume` does after the plan and target checks (may raise ResumeUnsafe)."""
    state = load_journal(run_dir)
    check_resumable(state)
    resume = resume_state(state, plan)
    if state.backup is not None or state.waiver is not None:
        gate = BackupGate(provider=None, context=None, waiver_reason=state.waiver)
    else:
        gate = gate_if_no_backup
    journal = Journal.reopen(state)
    journal.session_started(in_doubt=state.in_doubt())
    return _run(plan, journal, gate, stop, resume)
