"""Ctrl-C right after a step's start is journaled: result.json says interrupted, not not_run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.catalog import Catalog
from agent.journal import Journal
from agent.plan import PlannedStep, Selection, plan_for
from agent.recorder import ProgressSink, Recorder
from agent.report import RunFolder


class InterruptedAfterStart(Journal):
    """A real journal; the signal lands just after the step_started line is on disk."""

    def step_started(self, step: PlannedStep) -> None:
        super().step_started(step)
        raise KeyboardInterrupt


def test_interrupt_right_after_step_started_is_recorded_as_interrupted(tmp_path: Path) -> None:
    """The step whose start is journaled is 'interrupted' in result.json."""
    plan = plan_for(
        Catalog.load(),
        playbook_name="check",
        profile_id="debian",
        facts=None,
        var_overrides={},
        selection=Selection(),
    )
    folder = RunFolder.create(tmp_path / "run")
    data: dict[str, Any] = {"steps": []}
    recorder = Recorder(folder, data, ProgressSink())
    recorder.set_plan(plan)
    recorder.journal = InterruptedAfterStart.create(folder.path)
    step = plan.steps[0]
    with pytest.raises(KeyboardInterrupt):
        recorder.step_started(step)
    recorder.interrupted()
    recorder.journal.close()
    entry = next(s for s in data["steps"] if s["name"] == step.name)
    assert entry["status"] == "interrupted"
    assert '"step_started"' in (folder.path / "journal.jsonl").read_text()
