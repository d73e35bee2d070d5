"""One run, end to end: run folder → catalog → connect → facts → plan → engine → report.

The CLI turns flags into a :class:`RunRequest` and calls :func:`execute`; everything that
can go wrong on the way is caught here, recorded in result.json (and, once the plan is
built, in the journal) and turned into one exit code, so the caller never sees a
traceback and the run folder always tells the story.

A run holds its target's lock (``agent.lock``) from before the run folder is made to the
end. ``RunRequest.resume`` continues an earlier run in its own folder instead
(:func:`_resume`): journal read, plan rebuilt and compared, target checked, then the
engine resumes. Refusals that come before any contact (busy target, bad or foreign run
folder, changed plan, unsafe resume) raise instead and leave every folder as it was.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__, errors
from agent.backups.base import BackupContext, BackupProvider, provider_from_spec
from agent.capture import (
    PlatformStage,
    PoweredOffTarget,
    check_before_run,
    finish_on_platform,
    nothing_left,
    prepare_stage,
)
from agent.catalog import Catalog
from agent.engine import BackupGate, Engine, EngineResult, ResumeState, RunObserver
from agent.executors import create_executor
from agent.executors.base import Executor
from agent.executors.ssh import SshOptions
from agent.facts import Facts, describe, gather_facts
from agent.facts_windows import WindowsFacts, gather_windows_facts
from agent.facts_windows import describe as describe_windows
from agent.journal import (
    JOURNAL_FILE,
    Journal,
    JournalState,
    check_header,
    check_resumable,
    file_hashes,
    identity_differences,
    load_journal,
    plan_hash,
    read_header,
    resume_state,
    step_entry,
)
from agent.limits import MAX_JOURNAL_BYTES
from agent.lock import TargetLock
from agent.outcome import ExitCode, exit_code_for_error
from agent.plan import Plan, Selection, plan_for
from agent.recorder import ProgressSink, Recorder
from agent.report import LOG_FILE, RESULT_FILE, RunFolder, default_run_dir, new_run_id, utc_now
from agent.safefiles import read_regular
from agent.targets import Target
from agent.windows_logs import collect_on_failure, save_old_panther
from agent.windows_oobe import with_oobe_password
from agent.windows_power import DEFAULT_WATCH_SECONDS, ListenerProbe, confirm_power_off

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
    # Var overrides as given (text from --var, typed values from --var-file), typed
    # against the profile when the plan is built; var_origins: var -> FILE:LINE.
    var_overrides: Mapping[str, Any] = field(default_factory=dict)
    var_origins: Mapping[str, str] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)
    log_format: str = "json"
    # `run --resume RUN_DIR`: continue that run; its plan options come from its journal.
    resume: Path | None = None
    # --platform (power state after shutdown) and --capture (agent/capture.py).
    platform_spec: str | None = None
    capture_spec: str | None = None
    replace_version: bool = False


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    exit_code: ExitCode
    message: str
    run_dir: Path
    result: Mapping[str, Any]


def load_catalog(profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]) -> Catalog:
    return Catalog.load(profiles_dirs=profiles_dirs, playbooks_dirs=playbooks_dirs)


@contextlib.contextmanager
def _connected(request: RunRequest) -> Iterator[Executor]:
    winrm_options = with_oobe_password(request.winrm_options, request.var_overrides or {})
    executor = create_executor(
        request.target, ssh_options=request.ssh_options, winrm_options=winrm_options
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
    """Run a playbook against a target, or resume a run (``request.resume``).

    Everything that happens once the run folder is being written is recorded there and
    returned as an outcome. Raises (ImagePrepError) only for refusals before that: the
    target's lock is held by another run, ``--run-dir`` already holds a run, or (resume)
    the run folder cannot be continued; those leave every run folder as it was.
    """
    if request.resume is not None:
        return _resume(request, request.resume, console or ProgressSink())
    run_id = new_run_id()
    run_dir = request.run_dir or default_run_dir(run_id)
    if (run_dir / JOURNAL_FILE).exists():
        raise errors.RunDirError(
            f"--run-dir {run_dir} already holds a run ({JOURNAL_FILE}): continue it with "
            f"`imageprep run --resume {run_dir}`, or give another --run-dir"
        )
    with TargetLock.acquire(request.target, run_id=run_id, run_dir=run_dir):
        return _execute(request, console or ProgressSink(), run_id, run_dir)


def _execute(request: RunRequest, console: RunObserver, run_id: str, run_dir: Path) -> RunOutcome:
    folder = RunFolder.create(run_dir)
    started_at = utc_now()
    data: dict[str, Any] = {
        "run_id": run_id,
        "tool_version": __version__,
        "started_at": started_at,
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
        "journal_file": JOURNAL_FILE,
        "sessions": [{"session": 1, "started_at": started_at}],
    }
    recorder = Recorder(folder, data, console)
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
        stage = _platform_stage(request.platform_spec, request.capture_spec, request)
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
                var_origins=request.var_origins,
                selection=request.selection,
            )
            data["profile"] = plan.profile_id
            data["profile_file"] = plan.profile_file
            data["playbook_file"] = plan.playbook_file
            recorder.set_plan(plan)
            recorder.journal = Journal.create(folder.path, waiver=request.no_backup_reason)
            recorder.journal.run_started(_header(request, run_id, catalog, plan, facts))
            if stage is not None:
                check_before_run(stage, plan, run_id)
            gate = _backup_gate(request, provider, plan, run_id, folder)
            if request.target.is_windows and plan.has_destructive_steps:
                save_old_panther(executor, folder.path)  # cleanup deletes the folder
            engine = Engine(plan, executor, gate, recorder)
            result = engine.run()
            if request.target.is_windows:
                # With --platform, the platform says whether the VM is off; else the
                # listener is watched for a reboot.
                result = _after_windows_run(
                    executor, folder.path, plan, result, watch_listener=stage is None
                )
        if stage is not None:
            result = finish_on_platform(stage, result, recorder, run_id=run_id, plan=plan)
        return _finish(recorder, folder, run_id, result.exit_code, result.message, result)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI's handler
        recorder.interrupted()
        reached = engine.point_of_no_return_reached if engine else False
        return _finish(recorder, folder, run_id, ExitCode.INTERRUPTED, _interrupted(reached), None)
    except errors.ImagePrepError as exc:
        return _finish(recorder, folder, run_id, exit_code_for_error(exc), str(exc), None)
    except Exception as exc:  # a bug: still leave a final report, then let it surface
        _internal_error(recorder, folder, run_id, exc)
        raise
    finally:
        if recorder.journal is not None:
            recorder.journal.close()
        structlog.contextvars.unbind_contextvars("run_id", "target")


def _internal_error(recorder: Recorder, folder: RunFolder, run_id: str, exc: Exception) -> None:
    """result.json says the run ended (exit 1), never "running", whatever broke."""
    log.debug("internal_error", exc_info=exc)
    message = f"internal error ({type(exc).__name__}): a bug in imageprep; see {LOG_FILE}"
    with contextlib.suppress(errors.ImagePrepError, OSError):
        _finish(recorder, folder, run_id, ExitCode.INTERNAL_ERROR, message, None)


def _after_windows_run(
    executor: Executor, run_dir: Path, plan: Plan, result: EngineResult, *, watch_listener: bool
) -> EngineResult:
    """Panther logs of a failure; a power-off that turned out to be a reboot (exit 6)."""
    if result.exit_code is not ExitCode.OK:
        result = collect_on_failure(executor, run_dir, result)
    if watch_listener and isinstance(executor, ListenerProbe):
        watch = float(plan.vars.get("power_off_watch_seconds", DEFAULT_WATCH_SECONDS))
        result = confirm_power_off(result, executor, watch_seconds=watch)
    return result


def _interrupted(point_of_no_return: bool) -> str:
    if point_of_no_return:
        return (
            "interrupted after the point of no return: continue with `imageprep run --resume "
            "RUN_DIR`, or restore the VM from the backup"
        )
    return "interrupted before the point of no return: continue with `imageprep run --resume`"


def _header(
    request: RunRequest,
    run_id: str,
    catalog: Catalog,
    plan: Plan,
    facts: Facts | WindowsFacts,
) -> dict[str, Any]:
    """The journal's run_started event: all ``--resume`` needs to rebuild and check."""
    selection = request.selection
    return {
        "run_id": run_id,
        "tool_version": __version__,
        "target": request.target.display,
        "request": {
            "playbook": request.playbook,
            "profile": request.profile,
            # Typed as the plan used them: a resume needs no var file.
            "vars": {k: plan.vars[k] for k in request.var_overrides},
            "selection": {
                "only": sorted(selection.only),
                "skip": sorted(selection.skip),
                "tags": sorted(selection.tags),
            },
            "profiles_dirs": [str(p.resolve()) for p in request.profiles_dirs],
            "playbooks_dirs": [str(p.resolve()) for p in request.playbooks_dirs],
            "backup": request.backup_spec,
            "no_backup_reason": request.no_backup_reason,
            "platform": request.platform_spec,
            "capture": request.capture_spec,
            "replace_version": request.replace_version,
        },
        "profile": {
            "id": plan.profile_id,
            "files": file_hashes(catalog.get_profile(plan.profile_id).chain),
        },
        "playbook": {"name": plan.playbook_name, "files": file_hashes([plan.playbook_file])},
        "facts": facts.as_dict(),
        "plan_hash": plan_hash(plan),
        "steps": len(plan.steps),
    }


# -- resume ---------------------------------------------------------------------------------


def recorded_target(run_dir: Path) -> str:
    """The target URL a run folder's journal names (``run --resume`` without --target)."""
    return str(read_header(run_dir)["target"])


def _resume(request: RunRequest, run_dir: Path, console: RunObserver) -> RunOutcome:
    header = read_header(run_dir)
    if header.get("target") != request.target.display:
        raise errors.ResumeError(
            f"--resume {run_dir}: that run (run {header.get('run_id')}) is against "
            f"{header.get('target')}, not {request.target.display}"
        )
    with TargetLock.acquire(request.target, run_id=str(header["run_id"]), run_dir=run_dir):
        state = load_journal(run_dir)
        check_resumable(state)
        plan = _rebuild_plan(run_dir, state)
        resume = resume_state(state, plan)
        gate = _resume_gate(request, state, plan, RunFolder(run_dir))
        asked = state.header["request"]
        stage = _platform_stage(asked.get("platform"), asked.get("capture"), request, asked)
        return _continue(request, console, RunFolder(run_dir), state, plan, resume, gate, stage)


def _rebuild_plan(run_dir: Path, state: JournalState) -> Plan:
    """The run's plan, from today's catalog and the facts it was first built from."""
    header = state.header
    check_header(state.path, header)
    asked = header["request"]
    try:
        catalog = load_catalog(
            tuple(Path(p) for p in asked["profiles_dirs"]),
            tuple(Path(p) for p in asked["playbooks_dirs"]),
        )
        plan = plan_for(
            catalog,
            playbook_name=asked["playbook"],
            profile_id=header["profile"]["id"],
            facts=header["facts"],
            var_overrides=asked["vars"],
            selection=Selection(
                only=frozenset(asked["selection"]["only"]),
                skip=frozenset(asked["selection"]["skip"]),
                tags=frozenset(asked["selection"]["tags"]),
            ),
        )
    except errors.ValidationError as exc:
        raise errors.ResumeError(
            f"--resume {run_dir}: cannot rebuild the plan of run {state.run_id}: {exc}"
        ) from exc
    except (KeyError, TypeError) as exc:
        raise errors.JournalError(f"{state.path}:1: the run_started header lacks {exc}") from None
    if plan_hash(plan) != header["plan_hash"]:
        recorded = {**header["profile"]["files"], **header["playbook"]["files"]}
        changed = [
            path for path, digest in file_hashes(recorded).items() if digest != recorded[path]
        ]
        why = (
            f"changed since: {', '.join(changed)}"
            if changed
            else "imageprep or a profile it extends changed since"
        )
        raise errors.ResumeError(
            f"--resume {run_dir}: the plan rebuilt today differs from the one run "
            f"{state.run_id} was started with ({why}); a resumed run runs the same plan: "
            "put those files back as they were"
        )
    return plan


def _resume_gate(
    request: RunRequest, state: JournalState, plan: Plan, folder: RunFolder
) -> BackupGate:
    """The recorded backup (or waiver) when there is one; else the recorded --backup."""
    if state.backup is not None or state.waiver is not None:
        return BackupGate(provider=None, context=None, waiver_reason=state.waiver)
    asked = state.header["request"]
    spec, reason = asked.get("backup"), asked.get("no_backup_reason")
    if not spec:
        return BackupGate(provider=None, context=None, waiver_reason=reason)
    context = BackupContext(
        run_id=state.run_id, target=request.target, paths=plan.backup_paths, run_dir=folder.path
    )
    return BackupGate(provider=provider_from_spec(spec), context=context)


def _continue(
    request: RunRequest,
    console: RunObserver,
    folder: RunFolder,
    state: JournalState,
    plan: Plan,
    resume: ResumeState,
    gate: BackupGate,
    stage: PlatformStage | None = None,
) -> RunOutcome:
    """One more session of the run: journal appended, result.json rewritten."""
    run_id = state.run_id
    journal = Journal.reopen(state)
    session = {
        "session": journal.session,
        "started_at": utc_now(),
        "resumed_after": state.last_finished(),
        "in_doubt": state.in_doubt(),
    }
    data = _resumed_data(folder, state, plan, session)
    recorder = Recorder(folder, data, console)
    recorder.set_plan(plan)
    recorder.preload(state, resume)
    _log_to_run_folder(request, folder)
    structlog.contextvars.bind_contextvars(run_id=run_id, target=request.target.display)
    engine: Engine | None = None
    try:
        recorder.journal = journal
        journal.session_started(
            resumed_after=session["resumed_after"], in_doubt=session["in_doubt"]
        )
        log.info(
            "run.resume",
            session=journal.session,
            **{k: session[k] for k in ("resumed_after", "in_doubt")},
        )
        if stage is not None and nothing_left(plan, resume.completed):
            # Every step finished (the VM is off): only confirming and capturing are left.
            engine = Engine(plan, PoweredOffTarget(), gate, recorder, resume=resume)
            result = finish_on_platform(
                stage, engine.run(), recorder, run_id=run_id, plan=plan, offline=True
            )
            return _finish(recorder, folder, run_id, result.exit_code, result.message, result)
        with _connected(request) as executor:
            facts = _gather(request, executor)
            session["facts"] = facts.as_dict()
            differences = identity_differences(state.header["facts"], facts.as_dict())
            if differences:
                raise errors.ResumeError(
                    f"{request.target.display} is not the machine run {run_id} started on "
                    f"({'; '.join(differences)}); nothing was changed on it"
                )
            log.info("facts", summary=_describe(facts))
            engine = Engine(plan, executor, gate, recorder, resume=resume)
            result = engine.run()
            if request.target.is_windows:
                # With --platform, the platform says whether the VM is off; else the
                # listener is watched for a reboot.
                result = _after_windows_run(
                    executor, folder.path, plan, result, watch_listener=stage is None
                )
        if stage is not None:
            result = finish_on_platform(stage, result, recorder, run_id=run_id, plan=plan)
        return _finish(recorder, folder, run_id, result.exit_code, result.message, result)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI's handler
        recorder.interrupted()
        reached = engine.point_of_no_return_reached if engine else resume.point_of_no_return
        return _finish(recorder, folder, run_id, ExitCode.INTERRUPTED, _interrupted(reached), None)
    except errors.TransportError as exc:
        if engine is not None:  # pragma: no cover - the engine turns these into results
            raise
        code, message = _cannot_reconnect(request, state, plan, resume, exc)
        return _finish(recorder, folder, run_id, code, message, None)
    except errors.ImagePrepError as exc:
        return _finish(recorder, folder, run_id, exit_code_for_error(exc), str(exc), None)
    except Exception as exc:  # a bug: still leave a final report, then let it surface
        _internal_error(recorder, folder, run_id, exc)
        raise
    finally:
        journal.close()
        structlog.contextvars.unbind_contextvars("run_id", "target")


def _resumed_data(
    folder: RunFolder, state: JournalState, plan: Plan, session: dict[str, Any]
) -> dict[str, Any]:
    header = state.header
    sessions: list[Any] = [{"session": 1, "started_at": header.get("at")}]
    with contextlib.suppress(OSError, ValueError, AttributeError, RecursionError):
        # Only a regular file of a sane size: a forged run folder may hold a FIFO here.
        raw = read_regular(folder.path / RESULT_FILE, MAX_JOURNAL_BYTES)
        earlier = json.loads(raw).get("sessions")
        if isinstance(earlier, list) and earlier:
            sessions = earlier
    return {
        "run_id": state.run_id,
        "tool_version": __version__,
        "started_at": header.get("at"),
        "finished_at": None,
        "status": "running",
        "target": state.target,
        "playbook": plan.playbook_name,
        "profile": plan.profile_id,
        "profile_file": plan.profile_file,
        "playbook_file": plan.playbook_file,
        "backup": state.backup.to_dict() if state.backup else None,
        "backup_waiver": state.waiver or header["request"].get("no_backup_reason"),
        "point_of_no_return_reached": state.point_of_no_return,
        "powered_off": False,
        "facts": header["facts"],
        "plan": None,
        "steps": [],
        "log_file": folder.log_path.name,
        "journal_file": JOURNAL_FILE,
        "sessions": [*sessions, session],
    }


def _cannot_reconnect(
    request: RunRequest,
    state: JournalState,
    plan: Plan,
    resume: ResumeState,
    exc: errors.TransportError,
) -> tuple[ExitCode, str]:
    """Say honestly why a resume could not log in, and what the VM's state is."""
    done = state.last_finished() or "none"
    left = [s for s in plan.steps if s.will_run and s.key not in resume.completed]
    started = [s.key for s in left if s.key in state.steps and state.steps[s.key].started]
    if left and started and all(s.expect_disconnect for s in left):
        return (
            ExitCode.CONNECTION_FAILED,
            f"cannot connect to resume: {exc}. Every step before {started[0]} had finished "
            f"and {started[0]} was started: the VM is most likely powered off already; "
            "confirm that it is stopped before capturing it",
        )
    if state.point_of_no_return:
        hint = state.backup.restore_hint if state.backup else "no backup was taken"
        return (
            ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN,
            f"cannot log in again to resume: {exc}. The run is past the point of no return "
            f"(last step finished: {done}): deprovisioning deletes the login user, so a "
            "resume can only log in as an account that survives it (and, for SSH, while "
            f"sshd still accepts connections). Restore the VM from the backup: {hint}",
        )
    keys = (
        "; cleanup deletes the SSH host keys, after which sshd before OpenSSH 9.8 refuses "
        "new connections until the next boot regenerates them"
        if isinstance(exc, errors.ConnectError) and not request.target.is_windows
        else ""
    )
    return (
        ExitCode.CONNECTION_FAILED,
        f"cannot connect to resume: {exc}. The run had not reached the point of no return "
        f"(last step finished: {done}): the VM is still usable{keys}",
    )


def _platform_stage(
    platform: str | None,
    capture: str | None,
    request: RunRequest,
    asked: Mapping[str, Any] | None = None,
) -> PlatformStage | None:
    """--platform/--capture as given (or, resuming, as the journal recorded them)."""
    return prepare_stage(
        platform,
        capture,
        backup_spec=(asked or {}).get("backup") if asked is not None else request.backup_spec,
        replace_version=bool(
            (asked or {}).get("replace_version") if asked is not None else request.replace_version
        ),
    )


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
    recorder: Recorder,
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
        data["verification"] = [step_entry(s) for s in result.steps if s.phase == "verify"]
    data["finished_at"] = utc_now()
    data["status"] = (
        "succeeded"
        if code is ExitCode.OK
        else ("interrupted" if code is ExitCode.INTERRUPTED else "failed")
    )
    data["exit_code"] = int(code)
    data["exit_reason"] = code.name.lower()
    data["message"] = message
    if recorder.journal is not None:
        recorder.journal.run_finished(status=data["status"], exit_code=int(code), message=message)
    recorder.save()
    level = "info" if code is ExitCode.OK else "error"
    getattr(log, level)("run.end", status=data["status"], exit_code=int(code), message=message)
    return RunOutcome(
        run_id=run_id, exit_code=code, message=message, run_dir=folder.path, result=data
    )
