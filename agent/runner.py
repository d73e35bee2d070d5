"""One run, end to end: run folder → catalog → connect → facts → plan → engine → report.

The CLI turns flags into a :class:`RunRequest` and calls :func:`execute`; everything that
can go wrong on the way is caught here, recorded in result.json and turned into one exit
code, so the caller never sees a traceback and the run folder always tells the story.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__, errors
from agent.backups.base import BackupContext, BackupProvider, BackupRecord, provider_from_spec
from agent.catalog import Catalog
from agent.engine import BackupGate, Engine, EngineResult, RunObserver
from agent.executors import create_executor
from agent.executors.base import Executor
from agent.executors.ssh import SshOptions
from agent.facts import Facts, describe, gather_facts
from agent.facts_windows import WindowsFacts, gather_windows_facts
from agent.facts_windows import describe as describe_windows
from agent.outcome import ExitCode, exit_code_for_error
from agent.plan import Plan, PlannedStep, Selection, build_plan
from agent.report import RunFolder, default_run_dir, new_run_id, utc_now
from agent.results import StepResult
from agent.targets import Target
from agent.windows_logs import collect_on_failure

if TYPE_CHECKING:
    from agent.executors.winrm import WinRmOptions

log = structlog.get_logger("agent.runner")


@dataclass(frozen=True)
class RunRequest:
    target: Target
    playbook: str = "generalize"
    profile: str = "auto"
    ssh_options: SshOptions = field(default_factory=SshOptions)
    winrm_options: WinRmOptions | None = None  # for winrm:// and winrm+https:// targets
    backup_spec: str | None = None
    no_backup_reason: str | None = None
    run_dir: Path | None = None
    profiles_dirs: tuple[Path, ...] = ()
    playbooks_dirs: tuple[Path, ...] = ()
    var_overrides: Mapping[str, str] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)
    log_format: str = "json"


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    exit_code: ExitCode
    message: str
    run_dir: Path
    result: Mapping[str, Any]


class ProgressSink(RunObserver):
    """Console progress for humans; the default does nothing."""

    def step_started(self, step: PlannedStep) -> None:
        return None

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        return None

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        return None


class _Recorder(RunObserver):
    """Keeps result.json current after every event, and forwards to the console."""

    def __init__(self, folder: RunFolder, data: dict[str, Any], console: RunObserver) -> None:
        self._folder = folder
        self.data = data
        self._console = console
        self._steps: dict[str, dict[str, Any]] = {}

    def save(self) -> None:
        self._folder.write_result(self.data)

    def set_plan(self, plan: Plan) -> None:
        self.data["plan"] = plan.to_dict()
        self._steps = {
            s.key: {"phase": s.phase, "name": s.name, "status": "not_run"} for s in plan.steps
        }
        self.data["steps"] = list(self._steps.values())
        self.save()

    def step_started(self, step: PlannedStep) -> None:
        self._steps[step.key] = {
            "phase": step.phase,
            "name": step.name,
            "status": "running",
            "started_at": utc_now(),
            "destructive": step.destructive,
        }
        if step.destructive:
            self.data["point_of_no_return_reached"] = True
        self._refresh_steps()
        self._console.step_started(step)

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        entry = _step_entry(result)
        entry["started_at"] = self._steps.get(step.key, {}).get("started_at")
        entry["finished_at"] = utc_now()
        self._steps[step.key] = entry
        self._refresh_steps()
        self._console.step_finished(step, result)

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        self.data["backup"] = record.to_dict() if record else None
        if error:
            self.data["backup_error"] = error
        self.save()
        self._console.backup_finished(record, error)

    def _refresh_steps(self) -> None:
        self.data["steps"] = list(self._steps.values())
        self.save()


def _step_entry(result: StepResult) -> dict[str, Any]:
    return {
        "phase": result.phase,
        "name": result.name,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "attempts": result.attempts,
        "duration": round(result.duration, 3),
        "message": result.message,
        "destructive": result.destructive,
        "disconnected": result.disconnected,
        "stdout_tail": result.stdout_tail,
        "stderr_tail": result.stderr_tail,
    }


def load_catalog(profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]) -> Catalog:
    return Catalog.load(profiles_dirs=profiles_dirs, playbooks_dirs=playbooks_dirs)


def plan_for(
    catalog: Catalog,
    *,
    playbook_name: str,
    profile_id: str,
    facts: Facts | WindowsFacts | None,
    var_overrides: Mapping[str, str],
    selection: Selection,
) -> Plan:
    """Resolve the playbook and profile and build the validated plan."""
    playbook = catalog.get_playbook(playbook_name)
    if profile_id == "auto":
        if facts is None:
            raise errors.UsageError(
                "--profile auto needs --target (or name a profile with --profile ID)"
            )
        profile = catalog.match_profile(facts.os_release)
    else:
        profile = catalog.get_profile(profile_id)
    return build_plan(
        profile_id=profile.id,
        profile_file=str(profile.source_file),
        profile_phases=profile.phases,
        profile_vars=profile.vars,
        backup_paths=profile.backup_paths,
        playbook_name=playbook.name,
        playbook_file=str(catalog.playbook_file(playbook.name)),
        playbook_phases=playbook.phases,
        requires_backup=playbook.requires_backup,
        facts=facts.as_dict() if facts else None,
        var_overrides=var_overrides,
        selection=selection,
        shell="powershell" if profile.platform == "windows" else "sh",
    )


@contextlib.contextmanager
def _connected(request: RunRequest) -> Iterator[Executor]:
    executor = create_executor(
        request.target, ssh_options=request.ssh_options, winrm_options=request.winrm_options
    )
    with executor:
        yield executor


def _backup_gate(
    request: RunRequest, provider: BackupProvider | None, plan: Plan, run_id: str, folder: RunFolder
) -> BackupGate:
    if provider is None:
        return BackupGate(provider=None, context=None, waiver_reason=request.no_backup_reason)
    context = BackupContext(
        run_id=run_id, target=request.target, paths=plan.backup_paths, run_dir=folder.path
    )
    return BackupGate(provider=provider, context=context)


def _check_backup_request(request: RunRequest, requires_backup: bool) -> BackupProvider | None:
    if request.backup_spec and request.no_backup_reason:
        raise errors.UsageError("--backup and --no-backup exclude each other")
    if request.backup_spec:
        provider = provider_from_spec(request.backup_spec)
        if request.target.is_windows and provider.scheme == "archive":
            raise errors.UsageError(
                f"--backup {request.backup_spec}: archive backups stream Linux paths over a "
                "shell and are Linux-only; for a Windows target use command:'...' "
                "(a snapshot by your cloud or hypervisor CLI)"
            )
        return provider
    if requires_backup and not request.no_backup_reason:
        raise errors.UsageError(
            f"playbook {request.playbook} changes the VM and needs a backup first: "
            "give --backup PROVIDER:ARG, or --no-backup --reason TEXT"
        )
    return None


def execute(request: RunRequest, console: RunObserver | None = None) -> RunOutcome:
    """Run a playbook against a target; never raises for anything the tool knows about."""
    run_id = new_run_id()
    folder = RunFolder.create(request.run_dir or default_run_dir(run_id))
    data: dict[str, Any] = {
        "run_id": run_id,
        "tool_version": __version__,
        "started_at": utc_now(),
        "finished_at": None,
        "status": "running",
        "target": request.target.display,
        "playbook": request.playbook,
        "profile": request.profile,
        "backup": None,
        "backup_waiver": request.no_backup_reason,
        "point_of_no_return_reached": False,
        "powered_off": False,
        "facts": None,
        "plan": None,
        "steps": [],
        "log_file": folder.log_path.name,
    }
    recorder = _Recorder(folder, data, console or ProgressSink())
    recorder.save()
    _log_to_run_folder(request, folder)
    structlog.contextvars.bind_contextvars(run_id=run_id, target=request.target.display)
    log.info(
        "run.start", playbook=request.playbook, profile=request.profile, run_dir=str(folder.path)
    )
    engine: Engine | None = None
    try:
        catalog = load_catalog(request.profiles_dirs, request.playbooks_dirs)
        playbook = catalog.get_playbook(request.playbook)
        provider = _check_backup_request(request, playbook.requires_backup)
        with _connected(request) as executor:
            facts = _gather(request, executor)
            data["facts"] = facts.as_dict()
            log.info("facts", summary=_describe(facts))
            plan = plan_for(
                catalog,
                playbook_name=request.playbook,
                profile_id=request.profile,
                facts=facts,
                var_overrides=request.var_overrides,
                selection=request.selection,
            )
            data["profile"] = plan.profile_id
            data["profile_file"] = plan.profile_file
            data["playbook_file"] = plan.playbook_file
            recorder.set_plan(plan)
            gate = _backup_gate(request, provider, plan, run_id, folder)
            engine = Engine(plan, executor, gate, recorder)
            result = engine.run()
            if request.target.is_windows and result.exit_code is not ExitCode.OK:
                result = collect_on_failure(executor, folder.path, result)
        return _finish(recorder, folder, run_id, result.exit_code, result.message, result)
    except (KeyboardInterrupt, errors.Interrupted):
        reached = engine.point_of_no_return_reached if engine else False
        message = "interrupted" + (
            " after the point of no return: restore the VM from the backup" if reached else ""
        )
        return _finish(recorder, folder, run_id, ExitCode.INTERRUPTED, message, None)
    except errors.ImagePrepError as exc:
        return _finish(recorder, folder, run_id, exit_code_for_error(exc), str(exc), None)
    finally:
        structlog.contextvars.unbind_contextvars("run_id", "target")


def _gather(request: RunRequest, executor: Executor) -> Facts | WindowsFacts:
    """Linux facts over SSH, Windows facts over WinRM."""
    if request.target.is_windows:
        return gather_windows_facts(executor)
    return gather_facts(executor)


def _describe(facts: Facts | WindowsFacts) -> str:
    return describe_windows(facts) if isinstance(facts, WindowsFacts) else describe(facts)


def _log_to_run_folder(request: RunRequest, folder: RunFolder) -> None:
    from agent.logging import configure_logging

    level = "warning" if request.log_format == "text" else "info"
    configure_logging(
        console_format=request.log_format,  # type: ignore[arg-type]
        run_log=folder.log_path,
        level=level,
    )


def _finish(
    recorder: _Recorder,
    folder: RunFolder,
    run_id: str,
    code: ExitCode,
    message: str,
    result: EngineResult | None,
) -> RunOutcome:
    data = recorder.data
    if result is not None:
        data["point_of_no_return_reached"] = result.point_of_no_return_reached
        data["powered_off"] = result.powered_off
        data["failed_step"] = result.failed_step
        data["verification"] = [_step_entry(s) for s in result.steps if s.phase == "verify"]
    data["finished_at"] = utc_now()
    data["status"] = (
        "succeeded"
        if code is ExitCode.OK
        else ("interrupted" if code is ExitCode.INTERRUPTED else "failed")
    )
    data["exit_code"] = int(code)
    data["exit_reason"] = code.name.lower()
    data["message"] = message
    recorder.save()
    level = "info" if code is ExitCode.OK else "error"
    getattr(log, level)("run.end", status=data["status"], exit_code=int(code), message=message)
    return RunOutcome(
        run_id=run_id, exit_code=code, message=message, run_dir=folder.path, result=data
    )
