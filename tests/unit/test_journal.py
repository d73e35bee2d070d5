"""The journal: durable lines, strict reading (file:line), and the rules of resuming."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.engine import BackupGate
from agent.errors import JournalError, ResumeError, ResumeUnsafe, RunDirError, UsageError
from agent.journal import JOURNAL_FILE, Journal, load_journal, plan_hash
from agent.plan import Plan, build_plan
from agent.records import Step
from agent.results import StepStatus
from agent.resume import cannot_reconnect, check_resumable, identity_differences, resume_state
from tests.unit.sessions import StopAt, backup_context, first_session, resume_session
from tests.unit.test_engine import FixedBackup


def make_plan(work: Path, *, check: str | None = "auto", fail_wipe: bool = False) -> Plan:
    """clean (marker), wipe (destructive, counts its runs), verify (marker)."""
    runs = work / "wipe-runs"
    resume_check = f"test -s {runs}" if check == "auto" else check
    steps = {
        "cleanup": [Step(name="clean", description="Clean", run=f"echo x >> {work}/clean")],
        "deprovision": [
            Step(
                name="wipe",
                description="Wipe",
                run=f"echo x >> {runs}; exit {1 if fail_wipe else 0}",
                destructive=True,
                resume_check=resume_check,
            )
        ],
        "verify": [Step(name="check", description="Check", run=f"echo x >> {work}/verify")],
    }
    return build_plan(
        profile_id="t",
        profile_file="t.yaml",
        profile_phases=steps,
        profile_vars={},
        backup_paths=("/etc",),
        playbook_name="generalize",
        playbook_file="generalize.yaml",
        playbook_phases=("backup", "cleanup", "deprovision", "verify"),
        requires_backup=True,
        facts={},
    )


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def gate(tmp_path: Path, backup: FixedBackup | None = None) -> BackupGate:
    return BackupGate(provider=backup or FixedBackup(), context=backup_context(tmp_path))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_every_event_is_one_json_line_in_order(tmp_path: Path, run_dir: Path) -> None:
    """A run's journal is JSON lines with increasing seq, header first, run_finished last."""
    first_session(make_plan(tmp_path), run_dir, gate(tmp_path))
    events = [json.loads(line) for line in (run_dir / JOURNAL_FILE).read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "run_started"
    assert events[1]["event"] == "backup_recorded"
    assert events[-1]["event"] == "run_finished"
    assert {"event": "step_started", "step": "deprovision/wipe", "attempt": 1}.items() <= next(
        e for e in events if e.get("step") == "deprovision/wipe"
    ).items()


def _synced_lines(
    monkeypatch: pytest.MonkeyPatch, run_dir: Path, tmp_path: Path
) -> list[dict[str, object]]:
    """Run a session; the journal's last line at each fsync of the journal file."""
    real_fsync = os.fsync
    synced: list[dict[str, object]] = []

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == str(run_dir / JOURNAL_FILE):
            synced.append(json.loads((run_dir / JOURNAL_FILE).read_text().splitlines()[-1]))

    monkeypatch.setattr("agent.journal.os.fsync", recording_fsync)
    first_session(make_plan(tmp_path), run_dir, gate(tmp_path))
    return synced


def test_destructive_step_start_is_synced_before_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run_dir: Path
) -> None:
    """The write-ahead line of a destructive step is fsync'd: a power loss cannot hide it."""
    synced = _synced_lines(monkeypatch, run_dir, tmp_path)
    assert {"event": "step_started", "step": "deprovision/wipe"}.items() <= synced[2].items()
    assert [e["event"] for e in synced] == [
        "run_started",
        "backup_recorded",
        "step_started",
        "run_finished",
    ]


def test_routine_step_lines_are_written_without_a_flush(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run_dir: Path
) -> None:
    """Non-destructive starts and every step_finished are written, not fsync'd one by one."""
    synced = _synced_lines(monkeypatch, run_dir, tmp_path)
    written = [json.loads(x) for x in (run_dir / JOURNAL_FILE).read_text().splitlines()]
    unsynced = [e for e in written if e not in synced]
    assert [(e["event"], e["step"]) for e in unsynced] == [
        ("step_started", "cleanup/clean"),
        ("step_finished", "cleanup/clean"),
        ("step_finished", "deprovision/wipe"),
        ("step_started", "verify/check"),
        ("step_finished", "verify/check"),
    ]


def test_new_run_refuses_a_folder_with_a_journal(tmp_path: Path, run_dir: Path) -> None:
    """A second run never appends to another run's journal."""
    Journal.create(run_dir).close()
    with pytest.raises(RunDirError, match="--resume"):
        Journal.create(run_dir)


def test_the_journal_is_not_executable(run_dir: Path) -> None:
    """Created 0o666 less the umask, like the run folder's other files (not 0o777)."""
    old_umask = os.umask(0o022)
    try:
        Journal.create(run_dir).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((run_dir / JOURNAL_FILE).stat().st_mode) == 0o644


def test_corrupt_line_is_named_by_file_and_line(tmp_path: Path, run_dir: Path) -> None:
    """A damaged line in the middle is an error naming journal.jsonl:LINE."""
    first_session(make_plan(tmp_path), run_dir, gate(tmp_path))
    path = run_dir / JOURNAL_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = '{"v": 1, "seq": 3, "event": "step_sta\n'
    path.write_text("".join(lines))
    with pytest.raises(JournalError, match=rf"{path}:3: not a JSON object"):
        load_journal(run_dir)


def test_unknown_event_is_named_by_file_and_line(tmp_path: Path, run_dir: Path) -> None:
    """A well-formed line with an unknown event is refused, with its location."""
    first_session(make_plan(tmp_path), run_dir, gate(tmp_path))
    path = run_dir / JOURNAL_FILE
    with path.open("a") as handle:
        handle.write('{"v": 1, "seq": 999, "event": "step_exploded", "step": "a/b"}\n')
    count_lines = len(path.read_text().splitlines())
    with pytest.raises(JournalError, match=rf"{path}:{count_lines}: unknown event"):
        load_journal(run_dir)


def test_torn_last_line_is_ignored_and_the_next_session_starts_clean(
    tmp_path: Path, run_dir: Path
) -> None:
    """A half-written last line (a crash mid-write) was never acted on: it is skipped."""
    plan = make_plan(tmp_path)
    first_session(plan, run_dir, gate(tmp_path), StopAt(event=3, before_write=False, how="kill"))
    path = run_dir / JOURNAL_FILE
    with path.open("a") as handle:
        handle.write('{"v":1,"seq":5,"event":"step_sta')
    state = load_journal(run_dir)
    assert state.torn_tail
    resume_session(plan, run_dir, gate(tmp_path))
    assert load_journal(run_dir).finished is not None
    assert load_journal(run_dir).finished["status"] == "succeeded"  # type: ignore[index]


def test_finished_run_is_not_resumed(tmp_path: Path, run_dir: Path) -> None:
    """A run that succeeded has nothing to resume: a clear refusal."""
    first_session(make_plan(tmp_path), run_dir, gate(tmp_path))
    with pytest.raises(ResumeError, match="already finished successfully"):
        check_resumable(load_journal(run_dir))


def test_missing_run_dir_and_missing_journal_are_refused(tmp_path: Path) -> None:
    """No folder, or a folder without a journal: each a clear ResumeError."""
    with pytest.raises(ResumeError, match="no such directory"):
        load_journal(tmp_path / "nope")
    with pytest.raises(ResumeError, match="not an imageprep run folder"):
        load_journal(tmp_path)


def test_resume_keeps_finished_steps_and_the_backup(tmp_path: Path, run_dir: Path) -> None:
    """Killed after cleanup: the resume neither re-cleans nor takes a second backup."""
    plan = make_plan(tmp_path)
    backup = FixedBackup()
    first_session(plan, run_dir, gate(tmp_path, backup), StopAt(3, False, "kill"))
    session = resume_session(plan, run_dir, gate(tmp_path, backup))
    assert session.result is not None
    assert session.result.exit_code == 0
    assert backup.taken == 1
    assert count(tmp_path / "clean") == 1
    assert count(tmp_path / "wipe-runs") == 1


def test_in_doubt_destructive_step_is_checked_not_rerun(tmp_path: Path, run_dir: Path) -> None:
    """Killed after the destructive command ran but before it reported: its check decides."""
    plan = make_plan(tmp_path)
    # events: backup 1, clean started 2, finished 3, wipe started 4, finished 5
    first_session(plan, run_dir, gate(tmp_path), StopAt(5, True, "kill"))
    session = resume_session(plan, run_dir, gate(tmp_path))
    assert session.result is not None
    assert session.result.exit_code == 0
    assert count(tmp_path / "wipe-runs") == 1
    wipe = next(s for s in session.result.steps if s.name == "wipe")
    assert "resume_check found its effect in place" in wipe.message


def test_in_doubt_step_whose_check_fails_is_exit_6_and_not_rerun(
    tmp_path: Path, run_dir: Path
) -> None:
    """Start journaled, command never sent: the check says not in place; restore, never rerun."""
    plan = make_plan(tmp_path)
    first_session(plan, run_dir, gate(tmp_path), StopAt(4, False, "interrupt"))
    session = resume_session(plan, run_dir, gate(tmp_path))
    assert session.result is not None
    assert int(session.result.exit_code) == 6
    assert count(tmp_path / "wipe-runs") == 0
    assert count(tmp_path / "verify") == 0


def test_in_doubt_step_without_check_refuses_to_resume(tmp_path: Path, run_dir: Path) -> None:
    """No resume_check: resuming is refused (exit 6 material) before anything runs."""
    plan = make_plan(tmp_path, check=None)
    first_session(plan, run_dir, gate(tmp_path), StopAt(4, False, "kill"))
    with pytest.raises(ResumeUnsafe, match=r"no resume_check.*restore the VM from the backup"):
        resume_state(load_journal(run_dir), plan)


def test_failed_destructive_step_refuses_to_resume(tmp_path: Path, run_dir: Path) -> None:
    """A destructive step that ran and failed is never run again."""
    plan = make_plan(tmp_path, fail_wipe=True)
    first_session(plan, run_dir, gate(tmp_path))
    with pytest.raises(ResumeUnsafe, match="deprovision/wipe ran in session 1 and failed"):
        resume_state(load_journal(run_dir), plan)


def test_destructive_step_refused_for_no_backup_runs_on_resume(
    tmp_path: Path, run_dir: Path
) -> None:
    """The gate refused it (backup failed), so it never started: a resume may run it."""
    plan = make_plan(tmp_path)
    first_session(plan, run_dir, gate(tmp_path, FixedBackup(fail=True)))
    state = load_journal(run_dir)
    assert resume_state(state, plan).in_doubt == frozenset()
    session = resume_session(plan, run_dir, gate(tmp_path))
    assert session.result is not None
    assert session.result.exit_code == 0
    assert count(tmp_path / "wipe-runs") == 1


def test_interrupt_records_the_running_step_as_interrupted(tmp_path: Path, run_dir: Path) -> None:
    """Ctrl-C inside a step: the journal says step_interrupted, never step_finished ok."""
    plan = make_plan(tmp_path)
    first_session(plan, run_dir, gate(tmp_path), StopAt(5, True, "interrupt"))
    events = [json.loads(x) for x in (run_dir / JOURNAL_FILE).read_text().splitlines()]
    assert [e["event"] for e in events[-2:]] == ["step_interrupted", "run_finished"]
    assert events[-2]["step"] == "deprovision/wipe"
    assert events[-1]["status"] == "interrupted"
    assert load_journal(run_dir).in_doubt() == ["deprovision/wipe"]


def test_plan_hash_follows_commands_not_file_paths(tmp_path: Path) -> None:
    """The same steps from another path hash the same; a changed command does not."""
    plan = make_plan(tmp_path)
    moved = Plan(**{**plan.__dict__, "profile_file": "/elsewhere/t.yaml"})
    assert plan_hash(moved) == plan_hash(plan)
    changed = make_plan(tmp_path, check="true")
    assert plan_hash(changed) != plan_hash(plan)


def test_identity_differences_ignore_what_the_run_changes() -> None:
    """Hostname and the ovf-env user change during a run; OS and architecture do not."""
    before = {"os": {"id": "debian", "version_id": "12"}, "arch": "x86_64", "hostname": "vm1"}
    during = {**before, "hostname": "localhost", "ovf_user": None}
    assert identity_differences(before, during) == []
    other = {**before, "os": {"id": "ubuntu", "version_id": "22.04"}}
    assert identity_differences(before, other) == [
        "os.id: debian -> ubuntu",
        "os.version_id: 12 -> 22.04",
    ]


def test_kill_hook_refuses_a_malformed_value(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test hook cannot be armed by a typo: a bad value is a usage error."""
    monkeypatch.setenv("IMAGEPREP_TEST_KILL_AFTER", "step_finish:cleanup/x")
    with pytest.raises(UsageError, match="IMAGEPREP_TEST_KILL_AFTER"):
        Journal.create(run_dir)


def test_step_results_round_trip(tmp_path: Path, run_dir: Path) -> None:
    """What the journal stores of a result reads back as the same StepResult."""
    first_session(make_plan(tmp_path), run_dir, gate(tmp_path))
    state = load_journal(run_dir)
    result = state.steps["deprovision/wipe"].result
    assert result is not None
    assert (result.status, result.destructive, result.exit_code) == (StepStatus.OK, True, 0)


def test_resume_check_is_only_for_destructive_steps() -> None:
    """Other steps are simply rerun on resume; a resume_check on them is a schema error."""
    with pytest.raises(ValueError, match="resume_check is only for destructive steps"):
        Step(name="x", description="X", run="true", resume_check="true")


def test_every_builtin_destructive_step_has_a_resume_check() -> None:
    """waagent deprovision, the extra userdel and Sysprep can all be settled on resume."""
    from agent.catalog import Catalog

    catalog = Catalog.load()
    destructive = {
        f"{pid}:{phase}/{step.name}": step.resume_check
        for pid in catalog.profile_ids()
        for phase, steps in catalog.get_profile(pid).phases.items()
        for step in steps
        if step.destructive
    }
    assert destructive
    assert {key for key, check in destructive.items() if not check} == set()


def _power_off_plan(work: Path) -> Plan:
    steps = {
        "cleanup": [Step(name="clean", description="Clean", run="true")],
        "deprovision": [
            Step(name="wipe", description="Wipe", run="true", destructive=True, resume_check="true")
        ],
        "shutdown": [Step(name="off", description="Off", run="true", expect_disconnect=True)],
    }
    return build_plan(
        profile_id="t",
        profile_file="t.yaml",
        profile_phases=steps,
        profile_vars={},
        backup_paths=("/etc",),
        playbook_name="generalize",
        playbook_file="generalize.yaml",
        playbook_phases=("backup", "cleanup", "deprovision", "shutdown"),
        requires_backup=True,
        facts={},
    )


@pytest.mark.parametrize(
    ("stop_event", "code", "says"),
    [
        (5, 6, "cannot log in again to resume"),  # after the destructive step
        (6, 4, "most likely powered off already"),  # after power-off started
    ],
)
def test_a_resume_that_cannot_connect_says_what_state_the_vm_is_in(
    tmp_path: Path, run_dir: Path, stop_event: int, code: int, says: str
) -> None:
    """Past the point of no return: restore (6); only the power-off left: probably off (4)."""
    from agent.errors import ConnectError
    from tests.unit.sessions import TARGET

    plan = _power_off_plan(tmp_path)
    first_session(plan, run_dir, gate(tmp_path), StopAt(stop_event, False, "kill"))
    state = load_journal(run_dir)
    exit_code, message = cannot_reconnect(
        TARGET,
        state,
        plan,
        resume_state(state, plan),
        ConnectError("connection refused"),
    )
    assert (int(exit_code), says in message) == (code, True), message
