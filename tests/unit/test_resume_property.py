"""Property: across interruptions and resumes, no destructive step runs without a backup
recorded in the same run (or a --no-backup waiver), and none runs twice.

Generated plans (phases, destructive or not, failing or not, with or without a
``resume_check``), every backup situation (taken, failing, not given, waived), and a stop
anywhere (before or after any journal write, as SIGKILL or Ctrl-C), then a resume. The
steps really run in local bash; each destructive command looks into the run's journal
itself when it runs and records what it saw, so "a backup was recorded before me" is
checked where the effect happens, not from the engine's own account.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.backups.base import BackupContext, BackupRecord
from agent.engine import BackupGate
from agent.errors import BackupError, ResumeError, ResumeUnsafe
from agent.executors.base import Executor
from agent.journal import JOURNAL_FILE
from agent.plan import Plan, build_plan
from agent.records import Step
from tests.unit.sessions import StopAt, backup_context, first_session, resume_session

PHASE_NAMES = ("preflight", "cleanup", "deprovision", "verify")


class Backup:
    """A backup provider that succeeds or fails as told, and counts its backups."""

    scheme = "test"

    def __init__(self, ok: bool, taken: list[str]) -> None:
        self.ok = ok
        self.taken = taken

    def describe(self) -> str:
        return "test backup"

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord:
        if not self.ok:
            raise BackupError("snapshot quota exceeded")
        self.taken.append("snap")
        return BackupRecord(
            provider="test",
            reference=f"snap-{len(self.taken)}",
            created_at="2026-01-01T00:00:00Z",
            duration=0.0,
            restore_hint="restore snap",
        )


@dataclass(frozen=True)
class StepSpec:
    phase: str
    destructive: bool
    fails: bool
    has_check: bool


step_specs = st.builds(
    StepSpec,
    phase=st.sampled_from(PHASE_NAMES),
    destructive=st.booleans(),
    fails=st.sampled_from([False, False, False, True]),
    has_check=st.booleans(),
)


def stops(events: int) -> st.SearchStrategy[StopAt | None]:
    """No stop, or a stop at one of the ``events`` an uninterrupted session would have."""
    return st.none() | st.builds(
        StopAt,
        event=st.integers(min_value=1, max_value=max(events, 1)),
        before_write=st.booleans(),
        how=st.sampled_from(["kill", "interrupt"]),
    )


def make_plan(specs: list[StepSpec], with_backup_phase: bool, work: Path) -> Plan:
    journal = work / "run" / JOURNAL_FILE
    log = work / "executions"
    phases: dict[str, list[Step]] = {p: [] for p in PHASE_NAMES}
    for index, spec in enumerate(specs):
        name = f"s{index}"
        key = f"{spec.phase}/{name}"
        code = 1 if spec.fails else 0
        if spec.destructive:
            # What this command sees in the journal when it runs is the evidence: a backup
            # event, or a waiver in the run's header.
            seen = '"event":"backup_(recorded|waived)"|"no_backup_reason":"'
            run = (
                f"n=$(grep -cE '{seen}' {journal} || true)\necho \"{key} $n\" >> {log}\nexit {code}"
            )
            check = f"grep -q '^{key} ' {log}" if spec.has_check else None
        else:
            run, check = f"exit {code}", None
        phases[spec.phase].append(
            Step(
                name=name,
                description=f"Step {name}",
                run=run,
                become=False,
                destructive=spec.destructive,
                resume_check=check,
            )
        )
    playbook = (("backup",) if with_backup_phase else ()) + PHASE_NAMES
    return build_plan(
        profile_id="generated",
        profile_file="generated.yaml",
        profile_phases=phases,
        profile_vars={},
        backup_paths=("/etc",),
        playbook_name="generated",
        playbook_file="generated.yaml",
        playbook_phases=playbook,
        requires_backup=with_backup_phase,
        facts={},
    )


def gate_for(mode: str, taken: list[str], run_dir: Path) -> BackupGate:
    if mode == "waiver":
        return BackupGate(provider=None, context=None, waiver_reason="scratch VM")
    if mode == "none":
        return BackupGate(provider=None, context=None)
    return BackupGate(provider=Backup(mode == "ok", taken), context=backup_context(run_dir))


def count_events(specs: list[StepSpec], with_backup_phase: bool, backup_mode: str) -> int:
    """How many observer events an uninterrupted first session of this plan has."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "run").mkdir()
        plan = make_plan(specs, with_backup_phase, work)
        first_session(plan, work / "run", gate_for(backup_mode, [], work / "run"))
        events = _lines(work / "run" / JOURNAL_FILE)
        return len(events) - 2  # neither run_started nor run_finished is an observer event


@settings(max_examples=100, deadline=None)
@given(
    specs=st.lists(step_specs, min_size=1, max_size=6),
    with_backup_phase=st.booleans(),
    backup_mode=st.sampled_from(["ok", "fail", "none", "waiver"]),
    data=st.data(),
)
def test_no_destructive_step_without_backup_or_twice(
    specs: list[StepSpec],
    with_backup_phase: bool,
    backup_mode: str,
    data: st.DataObject,
) -> None:
    """Whatever the plan, backup and interruptions: destructive steps run at most once,
    and only after this run journaled a backup (or a waiver)."""
    events = count_events(specs, with_backup_phase, backup_mode)
    stop = data.draw(stops(events), label="stop")
    second_stop = data.draw(stops(events), label="second_stop")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = work / "run"
        run_dir.mkdir()
        taken: list[str] = []
        plan = make_plan(specs, with_backup_phase, work)
        session = first_session(plan, run_dir, gate_for(backup_mode, taken, run_dir), stop)
        stopped = int(session.stopped is not None)
        # Resume twice at most (the first resume may be stopped too); a refusal is fine.
        for resume_stop in (second_stop, None):
            try:
                gate = gate_for(backup_mode, taken, run_dir)
                session = resume_session(plan, run_dir, gate, resume_stop)
            except (ResumeUnsafe, ResumeError):
                break
            stopped += int(session.stopped is not None)

        executions = _lines(work / "executions")
        destructive_keys = [f"{s.phase}/s{i}" for i, s in enumerate(specs) if s.destructive]
        for key in destructive_keys:
            runs = [line for line in executions if line.split()[0] == key]
            assert len(runs) <= 1, f"{key} ran {len(runs)} times"
        for line in executions:
            seen_backups = int(line.split()[1])
            assert seen_backups >= 1, f"{line.split()[0]} ran before any backup was journaled"
            assert backup_mode in ("ok", "waiver")
        journal_events = [json.loads(x) for x in _lines(run_dir / JOURNAL_FILE)]
        recorded = [e for e in journal_events if e["event"] == "backup_recorded"]
        assert len(recorded) <= 1, "a second backup was taken after one was recorded"
        # Only a backup stopped before the journal heard of it is taken again.
        assert len(taken) - len(recorded) <= stopped
        starts = [e for e in journal_events if e["event"] == "step_started" and e["destructive"]]
        assert all(e["attempt"] == 1 for e in starts)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
