"""One run, end to end: run folder → catalog → connect → facts → plan → engine → report.

The CLI turns flags into a :class:`RunRequest` and calls :func:`execute`; everything that
can go wrong on the way is caught here, recorded in result.json (and, once the plan is
built, in the journal) and turned into one exit code, so the caller never sees a
traceback and the run folder always tells the story.

A run holds its target's lock (``agent.lock``) from before the run folder is made to the
end. ``RunRequest.resume`` continues an earlier run in its own folder instead
(:func:`_resume`; :mod:`agent.resume` reads the journal, rebuilds and compares the plan
and checks the target), then the engine resumes. A new run and a resumed one share one
session (:func:`_run_session`): the same handlers turn every ending into the report.
Refusals that come before any contact (busy target, bad or foreign run folder, changed
plan, unsafe resume) raise instead and leave every folder as it was.

Logging is set up here (:func:`agent.logging.configure_run_logging`) unless the request
says the caller keeps its own (``RunRequest.configure_logging=False``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__, errors, resume
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
from agent.engine import BackupGate, Engine, EngineResult, RunObserver
from agent.executors import create_executor
from agent.executors.base import Executor
from agent.executors.ssh import SshOptions
from agent.facts import Facts, describe, gather_facts
from agent.journal import JOURNAL_FILE, Journal, file_hashes, plan_hash, step_entry
from agent.lock import TargetLock
from agent.logging import configure_run_logging
from agent.outcome import ExitCode, exit_code_for_error
from agent.plan import Plan, Selection, plan_for
from agent.recorder import ProgressSink, Recorder
from agent.records import is_verification_phase
from agent.report import LOG_FILE, RunFolder, RunRecord, default_run_dir, new_run_id, utc_now
from agent.targets import Target
from agent.vmlock import LockHolder, VmLockHolder

if TYPE_CHECKING:
    from agent.executors.winrm import WinRmOptions
    from agent.facts_windows import WindowsFacts

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
    # False: leave logging as the caller set it up (an application embedding the runner);
    # True: the run's own set-up, console at log_format plus the run folder's log file.
    configure_logging: bool = True
    # `run --resume RUN_DIR`: continue that run; its plan options come from its journal.
    resume: Path | None = None
    # --platform (power state after shutdown) and --capture (agent/capture.py).
    platform_spec: str | None = None
    capture_spec: str | None = None
    replace_version: bool = False
    # A catalog already loaded from profiles_dirs/playbooks_dirs: a fleet loads it once
    # for all its hosts (loading and validating it costs about 0.4 s of CPU each time).
    catalog: Catalog | None = None


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
    winrm_options = request.winrm_options
    if request.target.is_windows:
        from agent import windows_run

        winrm_options = windows_run.winrm_options(winrm_options, request.var_overrides or {})
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


def _started_record(
    request: RunRequest, console: RunObserver, run_id: str, folder: RunFolder
) -> Recorder:
    """A new run's recorder, its result.json written: the run has begun."""
    started_at = utc_now()
    record = RunRecord(
        run_id=run_id,
        started_at=started_at,
        target=request.target.display,
        playbook=request.playbook,
        profile=request.profile,
        backup_waiver=request.no_backup_reason,
        log_file=folder.log_path.name,
        journal_file=JOURNAL_FILE,
        sessions=({"session": 1, "started_at": started_at},),
    )
    recorder = Recorder(folder, record.to_dict(), console)
    recorder.save()
    return recorder


def _execute(request: RunRequest, console: RunObserver, run_id: str, run_dir: Path) -> RunOutcome:
    folder = RunFolder.create(run_dir)
    recorder = _started_record(request, console, run_id, folder)

    def body(session: _Session) -> EngineResult:
        log.info(
            "run.start",
            playbook=request.playbook,
            profile=request.profile,
            run_dir=str(folder.path),
        )
        data = recorder.data
        catalog = request.catalog or load_catalog(request.profiles_dirs, request.playbooks_dirs)
        playbook = catalog.get_playbook(request.playbook)
        provider = _check_backup_request(request, playbook.requires_backup)
        stage = _platform_stage(request.platform_spec, request.capture_spec, request)
        with _connected(request) as executor:
            facts = _lock_and_gather(request, executor, run_id, recorder)
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
            if request.target.is_windows:
                from agent import windows_run

                windows_run.before_run(executor, folder.path, plan)
            session.engine = Engine(plan, executor, gate, recorder)
            result = _run_engine(request, session.engine, executor, folder, plan, stage)
        if stage is not None:
            result = finish_on_platform(stage, result, recorder, run_id=run_id, plan=plan)
        return result

    return _run_session(request, recorder, run_id, body, _Session())


@dataclass
class _Session:
    """What the shared handlers of :func:`_run_session` need to know of a session's body."""

    engine: Engine | None = None
    # Before the engine is made: whether an earlier session passed the point of no return.
    point_of_no_return: bool = False
    # Resuming: how to explain a transport error before the engine started.
    cannot_reconnect: Callable[[errors.TransportError], tuple[ExitCode, str]] | None = None


def _run_session(
    request: RunRequest,
    recorder: Recorder,
    run_id: str,
    body: Callable[[_Session], EngineResult],
    session: _Session,
) -> RunOutcome:
    """One session of a run, new or resumed: whatever ``body`` raises ends in the report.

    ``recorder.data`` is already in result.json. Every way out writes the final report
    and closes the journal: an engine result, Ctrl-C, a refusal (its exit code), or a bug
    (exit 1 in result.json, then the exception surfaces).
    """
    folder = recorder.folder
    if request.configure_logging:
        configure_run_logging(request.log_format, folder.log_path)
    structlog.contextvars.bind_contextvars(run_id=run_id, target=request.target.display)
    try:
        result = body(session)
        return _finish(recorder, folder, run_id, result.exit_code, result.message, result)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI's handler
        recorder.interrupted()
        engine = session.engine
        reached = engine.point_of_no_return_reached if engine else session.point_of_no_return
        return _finish(recorder, folder, run_id, ExitCode.INTERRUPTED, _interrupted(reached), None)
    except errors.TransportError as exc:
        if session.engine is not None or session.cannot_reconnect is None:
            # A new run: the error's own exit code. The engine turns its own into results.
            return _finish(recorder, folder, run_id, exit_code_for_error(exc), str(exc), None)
        code, message = session.cannot_reconnect(exc)
        return _finish(recorder, folder, run_id, code, message, None)
    except errors.ImagePrepError as exc:
        return _finish(recorder, folder, run_id, exit_code_for_error(exc), str(exc), None)
    except Exception as exc:  # a bug: still leave a final report, then let it surface
        _internal_error(recorder, folder, run_id, exc)
        raise
    finally:
        if recorder.journal is not None:
            recorder.journal.close()
        structlog.contextvars.unbind_contextvars("run_id", "target")


def _run_engine(
    request: RunRequest,
    engine: Engine,
    executor: Executor,
    folder: RunFolder,
    plan: Plan,
    stage: PlatformStage | None,
) -> EngineResult:
    result = engine.run()
    if request.target.is_windows:
        from agent import windows_run

        result = windows_run.after_run(
            executor, folder.path, plan, result, watch_listener=stage is None
        )
    return result


def _internal_error(recorder: Recorder, folder: RunFolder, run_id: str, exc: Exception) -> None:
    """result.json says the run ended (exit 1), never "running", whatever broke."""
    log.debug("internal_error", exc_info=exc)
    message = f"internal error ({type(exc).__name__}): a bug in imageprep; see {LOG_FILE}"
    with contextlib.suppress(errors.ImagePrepError, OSError):
        _finish(recorder, folder, run_id, ExitCode.INTERNAL_ERROR, message, None)


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
            # Real paths, so that a refused resume can name the file that changed.
            "files": file_hashes(str(p) for p in catalog.profile_paths(plan.profile_id)),
        },
        "playbook": {
            "name": plan.playbook_name,
            "files": file_hashes([str(catalog.playbook_origin(plan.playbook_name).path.resolve())]),
        },
        "facts": facts.as_dict(),
        "plan_hash": plan_hash(plan),
        "steps": len(plan.steps),
    }


# -- resume ---------------------------------------------------------------------------------


def _resume(request: RunRequest, run_dir: Path, console: RunObserver) -> RunOutcome:
    run_id = resume.check_target(run_dir, request.target)
    with TargetLock.acquire(request.target, run_id=run_id, run_dir=run_dir):
        prepared = resume.prepare(run_dir, request.target)
        asked = prepared.asked
        stage = _platform_stage(asked.get("platform"), asked.get("capture"), request, asked)
        return _continue(request, console, RunFolder(run_dir), prepared, stage)


def _continue(
    request: RunRequest,
    console: RunObserver,
    folder: RunFolder,
    prepared: resume.Resumption,
    stage: PlatformStage | None = None,
) -> RunOutcome:
    """One more session of the run: journal appended, result.json rewritten."""
    state, plan, gate, resumed = prepared.state, prepared.plan, prepared.gate, prepared.resume
    run_id = state.run_id
    journal = Journal.reopen(state)
    session_entry = {
        "session": journal.session,
        "started_at": utc_now(),
        "resumed_after": state.last_finished(),
        "in_doubt": state.in_doubt(),
    }
    record = resume.resumed_record(folder, state, plan, session_entry)
    recorder = Recorder(folder, record.to_dict(), console)
    recorder.set_plan(plan)
    recorder.preload(state, resumed)
    recorder.journal = journal

    def body(session: _Session) -> EngineResult:
        journal.session_started(
            resumed_after=session_entry["resumed_after"], in_doubt=session_entry["in_doubt"]
        )
        log.info(
            "run.resume",
            session=journal.session,
            **{k: session_entry[k] for k in ("resumed_after", "in_doubt")},
        )
        if stage is not None and nothing_left(plan, resumed.completed):
            # Every step finished (the VM is off): only confirming and capturing are left.
            session.engine = Engine(plan, PoweredOffTarget(), gate, recorder, resume=resumed)
            return finish_on_platform(
                stage, session.engine.run(), recorder, run_id=run_id, plan=plan, offline=True
            )
        with _connected(request) as executor:
            facts = _lock_and_gather(request, executor, run_id, recorder)
            session_entry["facts"] = facts.as_dict()
            resume.check_same_machine(request.target, state, facts.as_dict())
            log.info("facts", summary=_describe(facts))
            session.engine = Engine(plan, executor, gate, recorder, resume=resumed)
            result = _run_engine(request, session.engine, executor, folder, plan, stage)
        if stage is not None:
            result = finish_on_platform(stage, result, recorder, run_id=run_id, plan=plan)
        return result

    def cannot_reconnect(exc: errors.TransportError) -> tuple[ExitCode, str]:
        return resume.cannot_reconnect(request.target, state, plan, resumed, exc)

    session = _Session(
        point_of_no_return=resumed.point_of_no_return, cannot_reconnect=cannot_reconnect
    )
    return _run_session(request, recorder, run_id, body, session)


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


def _hold_vm_lock(executor: Executor, run_id: str, recorder: Recorder) -> None:
    """The lock on the VM itself (agent/vmlock.py): before the facts, the backup, any step.

    TargetBusy (exit 11) when another run holds it. A record left by a run whose holder
    is gone is reported, never silently taken over: a warning and result.json's vm_lock.
    """
    if not isinstance(executor, VmLockHolder):
        return
    got = executor.hold_vm_lock(LockHolder.this_run(run_id))
    recorder.data["vm_lock"] = got.as_dict()
    if got.stale_holder is not None:
        log.warning(
            "vm_lock.stale",
            message=f"the lock on the VM was left by {got.stale_holder.describe()}, which "
            "ended without releasing it (its controller died or lost the connection): "
            "what it did to the VM is unknown",
        )
    recorder.save()


def _lock_and_gather(
    request: RunRequest, executor: Executor, run_id: str, recorder: Recorder
) -> Facts | WindowsFacts:
    """The VM's lock, then the facts: Linux facts over SSH, Windows facts over WinRM.

    On Linux the unprivileged facts command runs while the lock is taken (gather_facts'
    ``meanwhile``): it only reads, and its answer is used only once the lock is held.
    """

    def hold() -> None:
        _hold_vm_lock(executor, run_id, recorder)

    if request.target.is_windows:
        from agent import windows_run

        return windows_run.lock_and_gather(executor, hold)
    return gather_facts(executor, meanwhile=hold)


def _describe(facts: Facts | WindowsFacts) -> str:
    if isinstance(facts, Facts):
        return describe(facts)
    from agent import windows_run

    return windows_run.describe(facts)


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
        data["verification"] = [
            step_entry(s) for s in result.steps if is_verification_phase(s.phase)
        ]
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
    recorder.save(durable=True)
    level = "info" if code is ExitCode.OK else "error"
    getattr(log, level)("run.end", status=data["status"], exit_code=int(code), message=message)
    return RunOutcome(
        run_id=run_id, exit_code=code, message=message, run_dir=folder.path, result=data
    )
