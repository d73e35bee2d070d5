"""What a run records as it goes: the journal, result.json, and the console.

The engine reports events to one :class:`~agent.engine.RunObserver`; the
:class:`Recorder` turns each into a journal line (first: ``--resume`` trusts it), an
updated result.json and a console update, in that order.
"""

from __future__ import annotations

import time
from typing import Any

from agent.backups.base import BackupRecord
from agent.engine import ResumeState, RunObserver
from agent.journal import Journal, JournalState, step_entry
from agent.plan import Plan, PlannedStep
from agent.report import RunFolder, utc_now
from agent.results import StepResult


class ProgressSink(RunObserver):
    """Console progress for humans; the default does nothing."""

    def plan_ready(self, plan: Plan) -> None:
        return None

    def step_started(self, step: PlannedStep) -> None:
        return None

    def step_output(self, step: PlannedStep, stream: str, line: str) -> None:
        return None

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        return None

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        return None


class Recorder(RunObserver):
    """Journals every event, keeps result.json current, and forwards to the console.

    The journal comes first: it is what ``--resume`` trusts, and it is fsync'd before
    the engine goes on (a step's command is sent only after its start is on disk).
    result.json is a readable summary of the same events; rewriting it (redacted and
    serialized whole) costs more than a trivial step, so between the moments that matter
    (a destructive step starts, a backup, an interruption, the end) it is rewritten at
    most every ``SAVE_INTERVAL`` seconds. Only the crossing of the point of no return, an
    interruption and the end are fsync'd (``durable``): a reader after a power loss must
    see that the VM may be half-changed; every other rewrite is a progress view, written
    compact (RunFolder.write_result).
    """

    SAVE_INTERVAL = 1.0

    def __init__(self, folder: RunFolder, data: dict[str, Any], console: RunObserver) -> None:
        self._folder = folder
        self.data = data
        self._console = console
        self._steps: dict[str, dict[str, Any]] = {}
        self._notes: dict[str, dict[str, str]] = {}
        self.journal: Journal | None = None
        self._saved_at = float("-inf")
        self._sent_ahead: tuple[str, ...] = ()

    @property
    def folder(self) -> RunFolder:
        return self._folder

    def save(self, *, durable: bool = False) -> None:
        self._folder.write_result(self.data, durable=durable)
        self._saved_at = time.monotonic()

    def set_plan(self, plan: Plan) -> None:
        self.data["plan"] = plan.to_dict()
        self._steps = {
            s.key: {"phase": s.phase, "name": s.name, "status": "not_run"} for s in plan.steps
        }
        self.data["steps"] = list(self._steps.values())
        self.save()
        if isinstance(self._console, ProgressSink):
            self._console.plan_ready(plan)

    def preload(self, state: JournalState, resume: ResumeState) -> None:
        """Show what earlier sessions did: kept results, and steps left in doubt."""
        for key, result in resume.completed.items():
            self._steps[key] = step_entry(result)
        for key in state.in_doubt():
            if key in self._steps and key not in resume.completed:
                self._steps[key] |= {
                    "status": "unknown",
                    "message": "started in an earlier session that ended without its result",
                }
        self._refresh_steps()

    def interrupted(self) -> None:
        """Ctrl-C / SIGTERM: the running step's outcome is unknown, never "ok"."""
        if self.journal is not None:
            self.journal.step_interrupted()
        for entry in self._steps.values():
            if entry.get("status") == "running":
                entry["status"] = "interrupted"
                entry["message"] = "interrupted while it ran: its outcome is unknown"
                entry["finished_at"] = utc_now()
        for key in self._sent_ahead:
            if self._steps.get(key, {}).get("status") == "not_run":
                self._steps[key] |= {
                    "status": "unknown",
                    "message": "sent to the target ahead of the interrupted step: it may have run",
                }
        self._refresh_steps(durable=True)

    def steps_sent_ahead(self, steps: tuple[PlannedStep, ...]) -> None:
        """The steps the running one's command may have carried ahead of it (engine)."""
        self._sent_ahead = tuple(step.key for step in steps)

    def step_started(self, step: PlannedStep) -> None:
        # "running" in memory before the journal line: a Ctrl-C right after that line is
        # on disk then finds the step running and records it interrupted, never "not_run".
        self._steps[step.key] = {
            "phase": step.phase,
            "name": step.name,
            "status": "running",
            "started_at": utc_now(),
            "destructive": step.spec.destructive,
        }
        if self.journal is not None:
            self.journal.step_started(step)
        # Saved at once when the run crosses the point of no return: a reader of a run
        # whose controller died must see that the VM may be half-changed. Later steps
        # are saved at the usual pace (the journal is the record a resume trusts).
        crossing = step.spec.destructive and not self.data.get("point_of_no_return_reached")
        if step.spec.destructive:
            self.data["point_of_no_return_reached"] = True
        self._refresh_steps(force=crossing, durable=crossing)
        self._console.step_started(step)

    def step_output(self, step: PlannedStep, stream: str, line: str) -> None:
        """A line of the running step's output: only the console wants it (-v)."""
        if isinstance(self._console, ProgressSink):
            self._console.step_output(step, stream, line)

    def step_note(self, step: PlannedStep, key: str, value: str) -> None:
        """A fact the running step printed for the journal (and the report)."""
        if self.journal is not None:
            self.journal.step_note(step, key, value)
        self._notes.setdefault(step.key, {})[key] = value
        self._steps.setdefault(step.key, {})["notes"] = dict(self._notes[step.key])

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        if self.journal is not None:
            self.journal.step_finished(step, result)
        entry = step_entry(result)
        if step.key in self._notes:
            entry["notes"] = dict(self._notes[step.key])
        entry["started_at"] = self._steps.get(step.key, {}).get("started_at")
        entry["finished_at"] = utc_now()
        self._steps[step.key] = entry
        self._refresh_steps(force=False)
        self._console.step_finished(step, result)

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        if self.journal is not None:
            self.journal.backup_finished(record, error)
        self.data["backup"] = record.to_dict() if record else None
        if error:
            self.data["backup_error"] = error
        self.save()
        self._console.backup_finished(record, error)

    def _refresh_steps(self, *, force: bool = True, durable: bool = False) -> None:
        self.data["steps"] = list(self._steps.values())
        if force or time.monotonic() - self._saved_at >= self.SAVE_INTERVAL:
            self.save(durable=durable)
