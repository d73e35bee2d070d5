"""The engine's rules, with every step really run by local bash (tests/local_executor.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from agent.backups.base import BackupContext, BackupRecord
from agent.engine import BackupGate, Engine, EngineResult, ResumeState
from agent.errors import BackupError
from agent.executors.base import Executor
from agent.outcome import ExitCode
from agent.plan import PlannedStep, build_plan
from agent.records import Step
from agent.results import CommandResult, StepResult, StepStatus
from agent.targets import Target
from tests.local_executor import LocalShellExecutor

PHASES = ("backup", "preflight", "cleanup", "deprovision", "verify", "shutdown")
TARGET = Target(scheme="ssh", user="azureuser", host="vm.example", port=22)


class Recorder:
    """Collects what the engine reports, in order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, StepStatus]] = []
        self.backups: list[tuple[BackupRecord | None, str | None]] = []

    def step_started(self, step: PlannedStep) -> None:
        self.started.append(step.key)

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        self.finished.append((step.key, result.status))

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        self.backups.append((record, error))


class FixedBackup:
    """A backup provider whose outcome the test decides; it records that it ran."""

    scheme = "test"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.taken = 0

    def describe(self) -> str:
        return "test backup"

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord:
        self.taken += 1
        if self.fail:
            raise BackupError("snapshot quota exceeded")
        return BackupRecord(
            provider="test",
            reference="snap-1",
            created_at="2026-01-01T00:00:00Z",
            duration=0.0,
            restore_hint="restore snap-1",
        )


def step(name: str, run: str, **fields: Any) -> Step:
    return Step(name=name, description=f"Step {name}", run=run, become=False, **fields)


def run_engine(
    phases: dict[str, list[Step]],
    *,
    backup: FixedBackup | None = None,
    waiver: str | None = None,
    playbook_phases: tuple[str, ...] = PHASES,
    recorder: Recorder | None = None,
    executor: Executor | None = None,
    resume: ResumeState | None = None,
    disconnect_timeout: float = 180.0,
) -> EngineResult:
    plan = build_plan(
        profile_id="test",
        profile_file="test.yaml",
        profile_phases=phases,
        profile_vars={},
        backup_paths=("/etc",),
        playbook_name="generalize",
        playbook_file="generalize.yaml",
        playbook_phases=playbook_phases,
        requires_backup="backup" in playbook_phases,
        facts={},
    )
    context = BackupContext(run_id="r1", target=TARGET, paths=("/etc",), run_dir=Path("/tmp"))
    gate = BackupGate(provider=backup, context=context if backup else None, waiver_reason=waiver)
    engine = Engine(
        plan,
        executor or LocalShellExecutor(),
        gate,
        recorder or Recorder(),
        sleep=lambda _: None,
        resume=resume,
        disconnect_timeout=disconnect_timeout,
    )
    return engine.run()


def status_of(result: EngineResult, key: str) -> StepStatus:
    return next(s.status for s in result.steps if f"{s.phase}/{s.name}" == key)


def test_all_steps_ok_is_exit_0() -> None:
    """A plan whose steps all exit 0 succeeds."""
    result = run_engine({"cleanup": [step("a", "true")]}, backup=FixedBackup())
    assert result.exit_code is ExitCode.OK


def test_destructive_step_refused_without_backup() -> None:
    """No backup and no waiver: the destructive step never starts."""
    recorder = Recorder()
    result = run_engine(
        {"deprovision": [step("wipe", "true", destructive=True)]},
        playbook_phases=("preflight", "deprovision"),
        recorder=recorder,
    )
    assert "deprovision/wipe" not in recorder.started
    assert "no successful backup" in result.message


def test_destructive_step_runs_with_a_waiver() -> None:
    """--no-backup --reason lets a destructive step run."""
    result = run_engine(
        {"deprovision": [step("wipe", "true", destructive=True)]},
        playbook_phases=("preflight", "deprovision"),
        waiver="scratch VM",
    )
    assert result.exit_code is ExitCode.OK


def test_failed_backup_stops_before_any_step(tmp_path: Path) -> None:
    """A backup failure is exit 8 and no step runs."""
    marker = tmp_path / "ran"
    result = run_engine(
        {"preflight": [step("a", f"touch {marker}")]}, backup=FixedBackup(fail=True)
    )
    assert result.exit_code is ExitCode.BACKUP_FAILED
    assert not marker.exists()


def test_preflight_failure_is_exit_3_and_stops() -> None:
    """A failing preflight check ends the run with exit 3 before cleanup."""
    result = run_engine(
        {"preflight": [step("check", "exit 1")], "cleanup": [step("clean", "true")]},
        backup=FixedBackup(),
    )
    assert result.exit_code is ExitCode.PREFLIGHT_FAILED
    assert status_of(result, "cleanup/clean") is StepStatus.NOT_RUN


def test_a_playbooks_own_preflight_phase_failure_is_exit_3() -> None:
    """azure-ready's `azure-preflight` phase fails with exit 3 too, as `preflight` does."""
    result = run_engine(
        {
            "azure-preflight": [step("module-active", "exit 1")],
            "azure-prepare": [step("install", "true")],
        },
        backup=FixedBackup(),
        playbook_phases=("backup", "azure-preflight", "azure-prepare"),
    )
    assert result.exit_code is ExitCode.PREFLIGHT_FAILED
    assert "nothing on the VM was changed" in result.message
    assert status_of(result, "azure-prepare/install") is StepStatus.NOT_RUN


def test_cleanup_failure_before_destructive_is_exit_5() -> None:
    """A failure before any destructive step says the VM is still usable."""
    result = run_engine({"cleanup": [step("clean", "exit 4")]}, backup=FixedBackup())
    assert result.exit_code is ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN
    assert result.point_of_no_return_reached is False


def test_failure_after_destructive_is_exit_6() -> None:
    """A failure after a destructive step started says: restore from backup."""
    result = run_engine(
        {"deprovision": [step("wipe", "true", destructive=True), step("after", "exit 1")]},
        backup=FixedBackup(),
    )
    assert result.exit_code is ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN
    assert result.point_of_no_return_reached is True


def test_failed_destructive_step_still_counts_as_point_of_no_return() -> None:
    """A destructive step that started and failed has crossed the point of no return."""
    result = run_engine(
        {"deprovision": [step("wipe", "exit 1", destructive=True)]}, backup=FixedBackup()
    )
    assert result.exit_code is ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN


def test_verify_failure_is_exit_7() -> None:
    """A failing verification is its own exit code."""
    result = run_engine({"verify": [step("machine-id-empty", "exit 1")]}, backup=FixedBackup())
    assert result.exit_code is ExitCode.VERIFICATION_FAILED


def test_continue_runs_the_rest_of_the_phase_only() -> None:
    """on_failure continue reports every check in its phase, then the run stops."""
    result = run_engine(
        {
            "verify": [step("one", "exit 1", on_failure="continue"), step("two", "true")],
            "shutdown": [step("off", "true")],
        },
        backup=FixedBackup(),
    )
    assert status_of(result, "verify/two") is StepStatus.OK
    assert status_of(result, "shutdown/off") is StepStatus.NOT_RUN


def test_ignore_keeps_the_run_successful() -> None:
    """on_failure ignore records the failure and the run still succeeds."""
    result = run_engine(
        {"cleanup": [step("optional", "exit 2", on_failure="ignore")]}, backup=FixedBackup()
    )
    assert result.exit_code is ExitCode.OK
    assert status_of(result, "cleanup/optional") is StepStatus.IGNORED


def test_ok_exit_codes_are_honoured() -> None:
    """An exit code listed in ok_exit_codes is success."""
    result = run_engine(
        {"cleanup": [step("grep-none", "exit 1", ok_exit_codes=[0, 1])]}, backup=FixedBackup()
    )
    assert result.exit_code is ExitCode.OK


def test_retries_rerun_until_success(tmp_path: Path) -> None:
    """A step with retries runs again and succeeds on the third attempt."""
    counter = tmp_path / "count"
    script = f'echo x >> {counter}; [ "$(wc -l < {counter})" -ge 3 ]'
    result = run_engine({"cleanup": [step("flaky", script, retries=2)]}, backup=FixedBackup())
    assert result.exit_code is ExitCode.OK
    assert next(s.attempts for s in result.steps if s.name == "flaky") == 3


def test_timeout_is_reported_as_timed_out() -> None:
    """A step running past its timeout is stopped and reported as timed out."""
    result = run_engine({"cleanup": [step("slow", "sleep 30", timeout=1)]}, backup=FixedBackup())
    assert status_of(result, "cleanup/slow") is StepStatus.TIMED_OUT


def test_false_condition_skips_the_step(tmp_path: Path) -> None:
    """A when: that is false skips the step without running it."""
    marker = tmp_path / "ran"
    result = run_engine(
        {"cleanup": [step("never", f"touch {marker}", when="1 == 2")]}, backup=FixedBackup()
    )
    assert status_of(result, "cleanup/never") is StepStatus.SKIPPED
    assert not marker.exists()


def test_failure_message_carries_the_last_stderr_line() -> None:
    """The run's message names the step and what it printed last."""
    result = run_engine(
        {"cleanup": [step("clean", "echo 'disk is read-only' >&2; exit 9")]},
        backup=FixedBackup(),
    )
    assert "cleanup/clean" in result.message
    assert "disk is read-only" in result.message


def test_backup_is_taken_once() -> None:
    """The backup phase runs the provider exactly once."""
    backup = FixedBackup()
    run_engine({"cleanup": [step("a", "true")]}, backup=backup)
    assert backup.taken == 1


def test_report_tail_of_one_endless_line_is_bounded() -> None:
    """A step printing one 1 MiB line leaves at most 8 KiB of it in the report."""
    result = run_engine(
        {"cleanup": [step("blob", "yes x | tr -d '\\n' | head -c 1048576")]},
        backup=FixedBackup(),
    )
    tail = next(s.stdout_tail for s in result.steps if s.name == "blob")
    assert tail == "x" * 8192


class ContextRecordingExecutor(LocalShellExecutor):
    """Notes structlog's context variables while each command runs."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[dict[str, Any]] = []

    def run(self, command: str, **kwargs: Any) -> CommandResult:
        self.contexts.append(structlog.contextvars.get_contextvars())
        return super().run(command, **kwargs)


def test_a_steps_command_runs_with_the_step_in_the_log_context() -> None:
    """The executor's own log events name the step (phase and step), and only during it."""
    plan = build_plan(
        profile_id="test",
        profile_file="test.yaml",
        profile_phases={"cleanup": [step("a", "true")], "verify": [step("b", "true")]},
        profile_vars={},
        backup_paths=(),
        playbook_name="check",
        playbook_file="check.yaml",
        playbook_phases=("cleanup", "verify"),
        requires_backup=False,
        facts={},
    )
    executor = ContextRecordingExecutor()
    gate = BackupGate(provider=None, context=None, waiver_reason=None)
    Engine(plan, executor, gate, Recorder(), sleep=lambda _: None).run()
    named = [(c.get("phase"), c.get("step")) for c in executor.contexts]
    assert named == [("cleanup", "a"), ("verify", "b")]
    assert "step" not in structlog.contextvars.get_contextvars()
