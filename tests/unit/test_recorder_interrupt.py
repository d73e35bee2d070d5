"""Ctrl-C right after a step's start is journaled: result.json says interrupted, not not_run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.catalog import Catalog
from agent.journal import Journal
from agent.plan import Plan, PlannedStep, Selection, plan_for
from agent.recorder import ProgressSink, Recorder
from agent.report import RunFolder


class InterruptedAfterStart(Journal):
    """A real journal; the signal lands just after the step_started line is on disk."""

    def step_started(self, step: PlannedStep) -> None:
        super().step_started(step)
        raise KeyboardInterrupt


def _check_plan() -> Plan:
    return plan_for(
        Catalog.load(),
        playbook_name="check",
        profile_id="debian",
        facts=None,
        var_overrides={},
        selection=Selection(),
    )


def test_interrupt_right_after_step_started_is_recorded_as_interrupted(tmp_path: Path) -> None:
    """The step whose start is journaled is 'interrupted' in result.json."""
    plan = _check_plan()
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


def _fsyncs_of_result_json(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, for each fsync of an atomic rewrite (agent.atomicwrite), which file it was."""
    seen: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("agent.atomicwrite.os.fsync", recording_fsync)
    return seen


def _recorder(tmp_path: Path) -> Recorder:
    return Recorder(RunFolder.create(tmp_path / "run"), {"steps": []}, ProgressSink())


def test_progress_rewrites_of_result_json_are_not_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving the plan and a finished routine step writes result.json without an fsync."""
    seen = _fsyncs_of_result_json(monkeypatch)
    recorder = _recorder(tmp_path)
    recorder.set_plan(_check_plan())
    recorder.save()
    assert seen == []
    assert (tmp_path / "run" / "result.json").exists()


def test_the_final_result_json_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """save(durable=True), as the end of a run uses it, fsyncs result.json before renaming."""
    seen = _fsyncs_of_result_json(monkeypatch)
    recorder = _recorder(tmp_path)
    recorder.save(durable=True)
    assert [Path(p).name for p in seen] == ["result.json.tmp"]


def test_an_interruption_fsyncs_result_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Ctrl-C the 'interrupted' record is on disk, not only in the page cache."""
    seen = _fsyncs_of_result_json(monkeypatch)
    recorder = _recorder(tmp_path)
    recorder.set_plan(_check_plan())
    recorder.interrupted()
    assert len(seen) == 1


def _interrupted_with_steps_sent_ahead(tmp_path: Path) -> tuple[Plan, dict[str, Any]]:
    """The first step runs with the next two sent ahead of it when Ctrl-C lands."""
    plan = _check_plan()
    data: dict[str, Any] = {"steps": []}
    recorder = Recorder(RunFolder.create(tmp_path / "run"), data, ProgressSink())
    recorder.set_plan(plan)
    recorder.step_started(plan.steps[0])
    recorder.steps_sent_ahead(plan.steps[1:3])
    recorder.interrupted()
    return plan, data


def test_steps_sent_ahead_of_an_interrupted_step_may_have_run(tmp_path: Path) -> None:
    """Their outcome is unknown too: result.json must not say they never ran."""
    plan, data = _interrupted_with_steps_sent_ahead(tmp_path)
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert [statuses[s.name] for s in plan.steps[:4]] == [
        "interrupted",
        "unknown",
        "unknown",
        "not_run",
    ]


def test_a_step_sent_ahead_says_why_its_outcome_is_unknown(tmp_path: Path) -> None:
    plan, data = _interrupted_with_steps_sent_ahead(tmp_path)
    entry = next(s for s in data["steps"] if s["name"] == plan.steps[1].name)
    assert entry["message"] == "sent to the target ahead of the interrupted step: it may have run"
