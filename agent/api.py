"""imageprep for embedding: :func:`run`, :func:`check` and :func:`plan`, with typed results.

The CLI is one caller of the runner; a Python program (a build service, a pipeline
runner) is another. This module is the supported way in: plain keyword arguments, frozen
results, and the errors of :mod:`agent.errors`. Example::

    from agent import api
    from agent.executors.ssh import SshOptions

    ssh = SshOptions(identity=Path("~/.ssh/builder").expanduser())
    planned = api.plan("ssh://azureuser@10.0.0.5", ssh=ssh)
    print([step.key for step in planned.steps if step.will_run])
    result = api.run(
        "ssh://azureuser@10.0.0.5", ssh=ssh, backup="archive:/srv/backups/vm1"
    )
    if not result.ok:
        print(result.exit_code.name, result.message, result.run_dir)

**Errors.** Input that is wrong before anything is contacted raises, and nothing is
written: :class:`~agent.errors.UsageError` (a bad target URL, options for the other
transport, ``backup`` with ``no_backup_reason``, a playbook that changes the VM with
neither, ``resume`` with plan options, a backup provider whose optional package is not
installed), :class:`~agent.errors.ValidationError` and its subclasses (an unknown
playbook or profile, a YAML file that fails the schema). Refusals of the runner before
a run folder is written raise too: :class:`~agent.errors.TargetBusy` (this controller's
lock), :class:`~agent.errors.RunDirError`, :class:`~agent.errors.ResumeError`.
Everything that happens once a run has started (the target is unreachable, a step
fails, another controller holds the VM's lock) is a *result*, recorded in the run
folder: look at :attr:`RunResult.exit_code`, the README's exit-code table.
:func:`plan` with a target raises the transport's errors
(:class:`~agent.errors.TransportError`), as it writes no run folder.

**Logging.** These functions never configure logging: no handler, level, filter or
formatter of the standard library is added or changed, structlog's configuration is left
as it is, and the ``run_id``/``target`` context the runner binds lives in a copy of the
caller's context (:func:`contextvars.copy_context`), so the caller's own bound variables
are untouched. imageprep's events are structlog events from loggers named ``agent.*``
(and paramiko's and pywinrm's stdlib records): they go wherever the program's own
configuration sends them. Because writing the run folder's ``run.log.jsonl`` would need
a handler on the root logger and imageprep's structlog processors, an embedded run does
not write it (result.json's ``log_file`` still names it); result.json and journal.jsonl
are written as always. Nor are warnings filters or signal handlers touched: Ctrl-C
(KeyboardInterrupt) during a run ends it as the CLI's does, recorded as interrupted, and
the result says so (exit code 130); it is not re-raised.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent import errors
from agent.catalog import Catalog
from agent.engine import RunObserver
from agent.executors.ssh import SshOptions
from agent.executors.winrm import WinRmOptions
from agent.outcome import ExitCode
from agent.plan import Plan, PlannedStep, Selection, plan_for
from agent.report import RESULT_FILE
from agent.result_schema import ResultDocument
from agent.targets import Target, parse_target

if TYPE_CHECKING:
    from agent.runner import RunOutcome

__all__ = [
    "ExitCode",
    "PlanResult",
    "RunResult",
    "StepSummary",
    "check",
    "plan",
    "run",
]

Status = Literal["succeeded", "failed", "interrupted"]


@dataclass(frozen=True)
class StepSummary:
    """One planned step's outcome, from result.json's ``steps``."""

    phase: str
    name: str
    status: str  # ok, skipped, ignored, failed, timed_out, disconnected, not_run, ...
    exit_code: int | None
    duration: float | None  # seconds
    message: str | None

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.name}"


@dataclass(frozen=True)
class RunResult:
    """How a run (or check) ended; ``document`` is its result.json, parsed."""

    run_id: str
    exit_code: ExitCode
    status: Status
    message: str
    run_dir: Path
    steps: tuple[StepSummary, ...]
    document: ResultDocument

    @property
    def ok(self) -> bool:
        return self.exit_code is ExitCode.OK

    @property
    def point_of_no_return_reached(self) -> bool:
        """True: the VM was changed past recovery; on failure, restore it from the backup."""
        return self.document.point_of_no_return_reached


@dataclass(frozen=True)
class PlanResult:
    """The plan a run would execute: every step with its exact command; nothing ran."""

    plan: Plan
    facts: Mapping[str, Any] | None  # None: planned without a target

    @property
    def steps(self) -> tuple[PlannedStep, ...]:
        return self.plan.steps

    @property
    def profile(self) -> str:
        return self.plan.profile_id

    @property
    def playbook(self) -> str:
        return self.plan.playbook_name


def run(
    target: str | Target,
    *,
    playbook: str = "generalize",
    profile: str = "auto",
    backup: str | None = None,
    no_backup_reason: str | None = None,
    ssh: SshOptions | None = None,
    winrm: WinRmOptions | None = None,
    run_dir: Path | None = None,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    tags: Iterable[str] = (),
    profiles_dirs: Iterable[Path] = (),
    playbooks_dirs: Iterable[Path] = (),
    platform: str | None = None,
    capture: str | None = None,
    replace_version: bool = False,
    resume: Path | None = None,
    observer: RunObserver | None = None,
) -> RunResult:
    """Run ``playbook`` against ``target`` (``imageprep run``), or continue a run.

    ``backup`` is a provider spec as ``--backup`` takes it (``archive:DIR``,
    ``command:CMD``, ``azure-snapshot:…``, ``libvirt:…``); a playbook that changes the VM
    needs it or ``no_backup_reason``. ``variables`` override the profile's vars (text is
    typed against the profile, as ``--var`` is). ``resume``: the run folder of an
    earlier run to continue; its plan options come from its journal, so none may be
    given. ``observer`` receives the engine's events (plan ready, step started/finished).
    Raises the errors listed in the module docstring; every other ending is a result.
    """
    parsed = _target(target)
    if resume is not None:
        _refuse_with_resume(
            ("playbook", playbook != "generalize"),
            ("profile", profile != "auto"),
            ("backup", backup),
            ("no_backup_reason", no_backup_reason),
            ("run_dir", run_dir),
            ("variables", variables),
            ("only/skip/tags", tuple(only) or tuple(skip) or tuple(tags)),
            ("profiles_dirs/playbooks_dirs", tuple(profiles_dirs) or tuple(playbooks_dirs)),
            ("platform/capture", platform or capture or replace_version),
        )
    else:
        _check_backup(
            playbook, backup, no_backup_reason, tuple(profiles_dirs), tuple(playbooks_dirs)
        )
    return _execute(
        parsed,
        playbook=playbook,
        profile=profile,
        backup=backup,
        no_backup_reason=no_backup_reason,
        ssh=ssh,
        winrm=winrm,
        run_dir=run_dir,
        variables=variables,
        selection=_selection(only, skip, tags),
        profiles_dirs=tuple(profiles_dirs),
        playbooks_dirs=tuple(playbooks_dirs),
        platform=platform,
        capture=capture,
        replace_version=replace_version,
        resume=resume,
        observer=observer,
    )


def _refuse_with_resume(*options: tuple[str, object]) -> None:
    """UsageError naming the first (name, value) given: a resume takes its journal's."""
    given = [name for name, value in options if value]
    if given:
        raise errors.UsageError(
            f"resume continues a run with the options it was started with (its journal "
            f"has them); {given[0]} cannot be given with it"
        )


def check(
    target: str | Target,
    *,
    profile: str = "auto",
    ssh: SshOptions | None = None,
    winrm: WinRmOptions | None = None,
    run_dir: Path | None = None,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    tags: Iterable[str] = (),
    profiles_dirs: Iterable[Path] = (),
    playbooks_dirs: Iterable[Path] = (),
    observer: RunObserver | None = None,
) -> RunResult:
    """Run the preflight checks only (``imageprep check``); nothing on the VM changes.

    Exit code 0: ready; 3: a check failed (``steps`` says which). A run folder is
    written, as for :func:`run`.
    """
    # A run of the "check" playbook, which changes nothing and so needs no backup.
    return run(
        target,
        playbook="check",
        profile=profile,
        ssh=ssh,
        winrm=winrm,
        run_dir=run_dir,
        variables=variables,
        only=only,
        skip=skip,
        tags=tags,
        profiles_dirs=profiles_dirs,
        playbooks_dirs=playbooks_dirs,
        observer=observer,
    )


def plan(
    target: str | Target | None = None,
    *,
    playbook: str = "generalize",
    profile: str = "auto",
    ssh: SshOptions | None = None,
    winrm: WinRmOptions | None = None,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    tags: Iterable[str] = (),
    profiles_dirs: Iterable[Path] = (),
    playbooks_dirs: Iterable[Path] = (),
) -> PlanResult:
    """The plan a run would execute (``imageprep plan``); changes nothing anywhere.

    With a target its facts are read (read-only) and choose the profile; without one,
    give ``profile`` and conditions on facts stay undecided (``condition`` None). No run
    folder is written. Raises ValidationError/UsageError for bad input and, with a
    target, TransportError when it cannot be read.
    """
    parsed = _target(target) if target is not None else None
    if parsed is None:
        _no_transport_options(ssh, winrm)
    catalog = _catalog(tuple(profiles_dirs), tuple(playbooks_dirs))
    facts = _read_facts(parsed, ssh, winrm) if parsed is not None else None
    built = plan_for(
        catalog,
        playbook_name=playbook,
        profile_id=profile,
        facts=facts,
        var_overrides=dict(variables or {}),
        selection=_selection(only, skip, tags),
    )
    return PlanResult(plan=built, facts=built.facts)


# -- the parts ------------------------------------------------------------------------


def _target(target: str | Target) -> Target:
    if isinstance(target, Target):
        return target
    if not isinstance(target, str):
        raise errors.UsageError(f"target: expected a URL or a Target, not {type(target).__name__}")
    return parse_target(target)


def _no_transport_options(ssh: SshOptions | None, winrm: WinRmOptions | None) -> None:
    if ssh is not None or winrm is not None:
        raise errors.UsageError("ssh/winrm options without a target: give the target too")


def _transport_options(
    target: Target, ssh: SshOptions | None, winrm: WinRmOptions | None
) -> tuple[SshOptions, WinRmOptions | None]:
    """The options for the target's transport; the other transport's are refused."""
    if target.is_windows:
        if ssh is not None:
            raise errors.UsageError(f"target {target.display}: ssh options for a WinRM target")
        return SshOptions(), winrm or WinRmOptions()
    if winrm is not None:
        raise errors.UsageError(f"target {target.display}: winrm options for an SSH target")
    return ssh or SshOptions(), None


def _selection(only: Iterable[str], skip: Iterable[str], tags: Iterable[str]) -> Selection:
    for what, names in (("only", only), ("skip", skip), ("tags", tags)):
        if isinstance(names, str):
            # A string is an iterable of one-letter names: surely not what was meant.
            raise errors.UsageError(f"{what}: expected a list of names, not the string {names!r}")
    return Selection(only=frozenset(only), skip=frozenset(skip), tags=frozenset(tags))


def _catalog(profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]) -> Catalog:
    return Catalog.load(profiles_dirs=profiles_dirs, playbooks_dirs=playbooks_dirs)


def _check_backup(
    playbook: str,
    backup: str | None,
    no_backup_reason: str | None,
    profiles_dirs: tuple[Path, ...],
    playbooks_dirs: tuple[Path, ...],
) -> None:
    """What the runner would record as exit 2 in a run folder, raised before there is one."""
    from agent.backups.base import provider_from_spec

    if backup is not None and no_backup_reason is not None:
        raise errors.UsageError("backup and no_backup_reason exclude each other")
    if no_backup_reason is not None and not no_backup_reason.strip():
        raise errors.UsageError("no_backup_reason is empty: say why there is no backup")
    needs_backup = _catalog(profiles_dirs, playbooks_dirs).get_playbook(playbook).requires_backup
    if backup is not None:
        provider_from_spec(backup)
    elif needs_backup and no_backup_reason is None:
        raise errors.UsageError(
            f"playbook {playbook} changes the VM and needs a backup first: give "
            "backup='PROVIDER:ARG', or no_backup_reason='...'"
        )


def _read_facts(target: Target, ssh: SshOptions | None, winrm: WinRmOptions | None) -> Any:
    from agent.executors import create_executor
    from agent.facts import gather_facts
    from agent.facts_windows import gather_windows_facts

    ssh_options, winrm_options = _transport_options(target, ssh, winrm)
    with create_executor(target, ssh_options=ssh_options, winrm_options=winrm_options) as executor:
        if target.is_windows:
            return gather_windows_facts(executor)
        return gather_facts(executor)


def _execute(
    target: Target,
    *,
    playbook: str,
    profile: str,
    backup: str | None,
    no_backup_reason: str | None,
    ssh: SshOptions | None,
    winrm: WinRmOptions | None,
    run_dir: Path | None,
    variables: Mapping[str, Any] | None,
    selection: Selection,
    profiles_dirs: tuple[Path, ...],
    playbooks_dirs: tuple[Path, ...],
    platform: str | None,
    capture: str | None,
    replace_version: bool,
    resume: Path | None,
    observer: RunObserver | None,
) -> RunResult:
    from agent.runner import RunRequest, execute

    ssh_options, winrm_options = _transport_options(target, ssh, winrm)
    request = RunRequest(
        target=target,
        playbook=playbook,
        profile=profile,
        ssh_options=ssh_options,
        winrm_options=winrm_options,
        backup_spec=backup,
        no_backup_reason=no_backup_reason,
        run_dir=run_dir,
        profiles_dirs=profiles_dirs,
        playbooks_dirs=playbooks_dirs,
        var_overrides=dict(variables or {}),
        selection=selection,
        configure_logging=False,
        resume=resume,
        platform_spec=platform,
        capture_spec=capture,
        replace_version=replace_version,
    )
    # The runner binds run_id and target in structlog's context variables and unbinds
    # them at the end; in a copy of the context the caller's own bindings stay as they are.
    outcome = contextvars.copy_context().run(execute, request, observer)
    return _result_of(outcome)


def _result_of(outcome: RunOutcome) -> RunResult:
    """The run's result, from the result.json it wrote."""
    # The document as written (redacted, with its schema version): what a pipeline reads.
    document = ResultDocument.model_validate_json(
        (outcome.run_dir / RESULT_FILE).read_text(encoding="utf-8")
    )
    status: Status = "failed"
    if document.status in ("succeeded", "interrupted"):
        status = document.status
    return RunResult(
        run_id=outcome.run_id,
        exit_code=outcome.exit_code,
        status=status,
        message=outcome.message,
        run_dir=outcome.run_dir,
        steps=tuple(
            StepSummary(
                phase=s.phase,
                name=s.name,
                status=s.status,
                exit_code=s.exit_code,
                duration=s.duration,
                message=s.message,
            )
            for s in document.steps
        ),
        document=document,
    )
