"""A fleet: one inventory, many runs, at most ``forks`` at once, one fleet folder.

Each selected host becomes one ordinary run (:func:`agent.runner.execute`) with its own
run folder under the fleet folder, and so its own lock, journal, result.json and
run.log.jsonl. Runs are threads of this process, not processes: a run spends its time
waiting on its target, and 16 threads share one interpreter's imports (about 60 MiB)
where 16 processes would each pay them.

What a host runs: the command line's ``--playbook``/``--profile``/``--var`` when given
(like Ansible's extra vars, they win), else the host's ``imageprep_playbook``,
``imageprep_profile`` and ``imageprep_vars``, else the defaults. ``archive:DIR`` backups
go to ``DIR/<host folder>``; a ``command:`` backup sees the host in
``IMAGEPREP_TARGET_HOST`` (agent/backups/command.py).

One host failing never stops the others. Ctrl-C (and SIGTERM, which the CLI turns into
Ctrl-C) stops every running host the way it stops a single run (:mod:`agent.interrupts`):
each records itself interrupted (exit 130) in its result.json; hosts that had not
started are recorded in fleet.json as interrupted, with no run folder. The fleet's exit
code is its worst host's (``agent.outcome.FLEET_EXIT_ORDER``).

``run --resume FLEET_DIR`` (:func:`resume_fleet`) keeps the hosts that succeeded,
resumes those whose run folder has a journal (agent/resume.py decides, per host, as for
``run --resume RUN_DIR``), and starts the others afresh in a new run folder.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

from agent import console, errors
from agent.catalog import Catalog
from agent.executors.ssh import SshOptions
from agent.fleet_record import (
    FLEET_FILE,
    FLEET_LOG_FILE,
    FleetRecord,
    HostResult,
    is_fleet_dir,
    load_fleet,
    render_table,
    tally,
)
from agent.interrupts import ThreadInterrupts, run_threads
from agent.inventory import InventoryHost, load_inventory
from agent.journal import JOURNAL_FILE
from agent.logging import configure_fleet_logging, host_logging
from agent.outcome import ExitCode, exit_code_for_error
from agent.plan import Selection
from agent.report import LOG_FILE, RESULT_FILE, new_run_id, utc_now
from agent.targets import Target, parse_target

if TYPE_CHECKING:
    from agent.engine import RunObserver
    from agent.executors.winrm import WinRmOptions
    from agent.runner import RunOutcome, RunRequest

log = structlog.get_logger("agent.fleet")

DEFAULT_FORKS = 5  # Ansible's default
# Folder names a host must not take: the fleet's own files live beside the host folders.
_RESERVED = frozenset({FLEET_FILE, FLEET_LOG_FILE, f"{FLEET_FILE}.tmp"})


@dataclass(frozen=True)
class FleetPlan:
    """What every host runs; recorded in fleet.json, so ``--resume`` needs none of it again."""

    inventory: Path
    limit: str | None = None
    command: str = "run"  # run | check
    playbook: str | None = None  # None: the host's imageprep_playbook, else generalize
    profile: str | None = None  # None: the host's imageprep_profile, else auto
    backup_spec: str | None = None
    no_backup_reason: str | None = None
    var_overrides: Mapping[str, Any] = field(default_factory=dict)
    var_origins: Mapping[str, str] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)
    profiles_dirs: tuple[Path, ...] = ()
    playbooks_dirs: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "inventory": str(self.inventory.absolute()),
            "limit": self.limit,
            "command": self.command,
            "playbook": self.playbook,
            "profile": self.profile,
            "backup": self.backup_spec,
            "no_backup_reason": self.no_backup_reason,
            "vars": dict(self.var_overrides),
            "var_origins": dict(self.var_origins),
            "selection": {
                "only": sorted(self.selection.only),
                "skip": sorted(self.selection.skip),
                "tags": sorted(self.selection.tags),
            },
            "profiles_dirs": [str(p.absolute()) for p in self.profiles_dirs],
            "playbooks_dirs": [str(p.absolute()) for p in self.playbooks_dirs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetPlan:
        selection = data.get("selection") or {}
        return cls(
            inventory=Path(data["inventory"]),
            limit=data.get("limit"),
            command=str(data.get("command", "run")),
            playbook=data.get("playbook"),
            profile=data.get("profile"),
            backup_spec=data.get("backup"),
            no_backup_reason=data.get("no_backup_reason"),
            var_overrides=dict(data.get("vars") or {}),
            var_origins=dict(data.get("var_origins") or {}),
            selection=Selection(
                only=frozenset(selection.get("only", ())),
                skip=frozenset(selection.get("skip", ())),
                tags=frozenset(selection.get("tags", ())),
            ),
            profiles_dirs=tuple(Path(p) for p in data.get("profiles_dirs", ())),
            playbooks_dirs=tuple(Path(p) for p in data.get("playbooks_dirs", ())),
        )


@dataclass(frozen=True)
class FleetSettings:
    """How hosts are reached and shown: from the command line, on a resume too."""

    ssh_options: SshOptions = field(default_factory=SshOptions)
    winrm_options: WinRmOptions | None = None
    forks: int = DEFAULT_FORKS
    log_format: str = "text"
    verbose: bool = False
    quiet: bool = False
    # False: the caller keeps its own logging (each host's records still go to its run log).
    configure_logging: bool = True
    stream: TextIO | None = None  # the console (stderr by default)


@dataclass(frozen=True)
class FleetOutcome:
    fleet_id: str
    fleet_dir: Path
    exit_code: ExitCode
    hosts: tuple[HostResult, ...]


@dataclass(frozen=True)
class HostJob:
    """One host's run as the fleet will start it."""

    host: InventoryHost
    request: RunRequest
    folder: Path  # where its run.log.jsonl goes: the new run's folder or the resumed one
    earlier_run_dirs: tuple[Path, ...] = ()

    def pending(self) -> HostResult:
        return HostResult(
            name=self.host.name,
            address=_address(self.request.target),
            target=self.request.target.display,
            status="pending",
            run_dir=self.folder,
            earlier_run_dirs=self.earlier_run_dirs,
        )


# -- from inventory hosts to run requests ---------------------------------------------------


def folder_names(hosts: Sequence[InventoryHost]) -> dict[str, str]:
    """A folder name per host: its name made safe, unique even ignoring case."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for host in hosts:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", host.name).lstrip(".") or "host"
        if base in _RESERVED:
            base = f"host-{base}"
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        names[host.name] = name
    return names


def host_target(host: InventoryHost) -> Target:
    """The host's target, or an InventoryError naming the inventory line and the host."""
    if not host.vars.get("ansible_user"):
        raise errors.InventoryError(
            f"{host.where}: host {host.name!r}: no ansible_user (the login user; imageprep "
            "does not guess it)"
        )
    try:
        return parse_target(host.target_url)
    except errors.UsageError as exc:
        raise errors.InventoryError(f"{host.where}: host {host.name!r}: {exc}") from None


def host_ssh_options(host: InventoryHost, base: SshOptions) -> SshOptions:
    """The command line's SSH options with the host's own key (ansible_ssh_private_key_file)."""
    if host.identity is None:
        return base
    return replace(base, identity=Path(host.identity).expanduser())


def host_winrm_options(
    host: InventoryHost, base: WinRmOptions | None, ssh: SshOptions
) -> WinRmOptions:
    """The command line's WinRM options with the host's ansible_winrm_transport."""
    from agent.executors.winrm import WinRmOptions

    options = base or WinRmOptions(password=ssh.password, connect_timeout=ssh.connect_timeout)
    transport = host.winrm_transport
    return options if transport is None else replace(options, transport=transport)  # type: ignore[arg-type]


def host_backup(spec: str | None, folder: str) -> str | None:
    """``archive:DIR`` -> ``archive:DIR/<host folder>``: each host's archives apart."""
    if spec is None or not spec.startswith("archive:"):
        return spec
    return f"archive:{Path(spec.removeprefix('archive:')) / folder}"


def host_request(
    plan: FleetPlan,
    settings: FleetSettings,
    host: InventoryHost,
    folder: str,
    run_dir: Path | None,
    catalog: Catalog | None = None,
) -> RunRequest:
    """One host's RunRequest: the command line first, then the host's imageprep_* vars."""
    from agent.runner import RunRequest

    target = host_target(host)
    ssh = host_ssh_options(host, settings.ssh_options)
    if plan.command == "check":
        playbook = "check"
    else:
        playbook = plan.playbook or host.playbook or "generalize"
    origins = {key: f"{host.where} (host {host.name}, imageprep_vars)" for key in host.profile_vars}
    return RunRequest(
        catalog=catalog,
        target=target,
        playbook=playbook,
        profile=plan.profile or host.profile or "auto",
        ssh_options=ssh,
        winrm_options=host_winrm_options(host, settings.winrm_options, ssh)
        if target.is_windows
        else None,
        backup_spec=host_backup(plan.backup_spec, folder) if plan.command == "run" else None,
        no_backup_reason=plan.no_backup_reason if plan.command == "run" else None,
        run_dir=run_dir,
        profiles_dirs=plan.profiles_dirs,
        playbooks_dirs=plan.playbooks_dirs,
        var_overrides={**host.profile_vars, **plan.var_overrides},
        var_origins={**origins, **plan.var_origins},
        selection=plan.selection,
        log_format=settings.log_format,
        configure_logging=False,
    )


def check_hosts(hosts: Sequence[InventoryHost], settings: FleetSettings) -> None:
    """Refuse, before anything starts, a host whose URL or key cannot work (exit 2)."""
    for host in hosts:
        target = host_target(host)
        if target.is_windows or host.identity is None:
            continue
        key = Path(host.identity).expanduser()
        from agent.executors.ssh.executor import load_identity

        try:
            load_identity(key, settings.ssh_options.identity_passphrase)
        except errors.UsageError as exc:
            message = str(exc).replace("--identity", "ansible_ssh_private_key_file", 1)
            raise errors.InventoryError(f"{host.where}: host {host.name!r}: {message}") from None


def transports_used(hosts: Sequence[InventoryHost]) -> frozenset[str]:
    """``ssh`` and/or ``winrm``: which transports the selected hosts use."""
    return frozenset("winrm" if h.connection == "winrm" else "ssh" for h in hosts)


def load_catalog(plan: FleetPlan) -> Catalog:
    """The profiles and playbooks every host plans from, loaded and validated once."""
    return Catalog.load(profiles_dirs=plan.profiles_dirs, playbooks_dirs=plan.playbooks_dirs)


def select_hosts(plan: FleetPlan) -> tuple[InventoryHost, ...]:
    """The inventory's hosts that ``--limit`` selects (InventoryError: none, or a bad file)."""
    return load_inventory(plan.inventory).select(plan.limit)


# -- a new fleet ------------------------------------------------------------------------------


def default_fleet_dir(fleet_id: str, base: Path = Path("imageprep-runs")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return base / f"{stamp}-fleet-{fleet_id}"


def run_fleet(
    plan: FleetPlan, settings: FleetSettings, fleet_dir: Path | None = None
) -> FleetOutcome:
    """Run ``plan`` on every selected host, ``settings.forks`` at a time.

    Raises (ImagePrepError) only for refusals before any host starts: a bad inventory or
    ``--limit``, a host whose key cannot be used, a fleet folder that holds a fleet.
    Everything after is in fleet.json and the hosts' run folders.
    """
    hosts = select_hosts(plan)
    check_hosts(hosts, settings)
    if plan.command == "run" and plan.backup_spec:
        from agent.backups.base import provider_from_spec

        provider_from_spec(plan.backup_spec)  # an unknown provider: refused before any host
    fleet_id = new_run_id()
    fleet_dir = fleet_dir or default_fleet_dir(fleet_id)
    if is_fleet_dir(fleet_dir):
        raise errors.RunDirError(
            f"--run-dir {fleet_dir} already holds a fleet ({FLEET_FILE}): continue it with "
            f"`imageprep run --resume {fleet_dir}`, or give another --run-dir"
        )
    catalog = load_catalog(plan)
    names = folder_names(hosts)
    jobs = [
        HostJob(
            host,
            host_request(
                plan, settings, host, names[host.name], fleet_dir / names[host.name], catalog
            ),
            fleet_dir / names[host.name],
        )
        for host in hosts
    ]
    record = _new_record(fleet_dir, fleet_id, plan, jobs)
    return _run_jobs(record, jobs, settings)


def _new_record(
    fleet_dir: Path, fleet_id: str, plan: FleetPlan, jobs: Sequence[HostJob]
) -> FleetRecord:
    try:
        fleet_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.RunDirError(
            f"fleet folder {fleet_dir}: cannot create: {exc.strerror}"
        ) from exc
    record = FleetRecord(
        path=fleet_dir / FLEET_FILE,
        fleet_id=fleet_id,
        command=plan.command,
        request=plan.to_dict(),
        hosts={job.host.name: job.pending() for job in jobs},
    )
    return record


# -- resuming a fleet -------------------------------------------------------------------------


def resume_fleet(fleet_dir: Path, settings: FleetSettings) -> FleetOutcome:
    """Continue FLEET_DIR: keep what succeeded, resume or restart the rest."""
    loaded = load_fleet(fleet_dir)
    plan = FleetPlan.from_dict(loaded.request)
    inventory = load_inventory(plan.inventory)
    by_name = {host.name: host for host in inventory.hosts}
    recorded = [by_name[h.name] for h in loaded.hosts if h.name in by_name]
    check_hosts(recorded, settings)
    names = folder_names(recorded)
    catalog = load_catalog(plan)
    kept: dict[str, HostResult] = {}
    jobs: list[HostJob] = []
    for entry in loaded.hosts:
        host = by_name.get(entry.name)
        if entry.exit_code is ExitCode.OK or _succeeded(entry.run_dir):
            kept[entry.name] = _kept(entry)
        elif host is None:
            kept[entry.name] = replace(
                entry,
                status="refused",
                exit_code=ExitCode.USAGE,
                message=f"host {entry.name} is no longer in the inventory {plan.inventory}",
            )
        else:
            job = _resume_job(plan, settings, host, names[host.name], entry, fleet_dir, catalog)
            jobs.append(job)
    pending = {job.host.name: job.pending() for job in jobs}
    record = FleetRecord(
        path=fleet_dir / FLEET_FILE,
        fleet_id=loaded.fleet_id,
        command=loaded.command,
        request=loaded.request,
        hosts={h.name: kept.get(h.name) or pending[h.name] for h in loaded.hosts},
        started_at=loaded.started_at or utc_now(),
        sessions=[*map(dict, loaded.sessions)],
    )
    return _run_jobs(record, jobs, settings)


def _succeeded(run_dir: Path | None) -> bool:
    """A run folder whose result.json says it succeeded (fleet.json may lag behind it)."""
    if run_dir is None:
        return False
    try:
        data = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("exit_code") == 0


def _kept(entry: HostResult) -> HostResult:
    if entry.exit_code is ExitCode.OK:
        return entry
    return replace(entry, status="succeeded", exit_code=ExitCode.OK, message="succeeded")


def _resume_job(
    plan: FleetPlan,
    settings: FleetSettings,
    host: InventoryHost,
    folder: str,
    entry: HostResult,
    fleet_dir: Path,
    catalog: Catalog,
) -> HostJob:
    run_dir = entry.run_dir
    if run_dir is not None and (run_dir / JOURNAL_FILE).is_file():
        request = replace(
            host_request(plan, settings, host, folder, run_dir), run_dir=None, resume=run_dir
        )
        return HostJob(host, request, run_dir, entry.earlier_run_dirs)
    # Nothing to continue (never started, or stopped before its plan was built): a new run,
    # in a new folder if the old one holds a report worth keeping.
    earlier = entry.earlier_run_dirs
    if run_dir is None or not (run_dir / RESULT_FILE).exists():
        fresh = run_dir or fleet_dir / folder
    else:
        fresh = _next_free(fleet_dir / folder)
        earlier = (*earlier, run_dir)
    return HostJob(host, host_request(plan, settings, host, folder, fresh, catalog), fresh, earlier)


def _next_free(base: Path) -> Path:
    n = 2
    while base.with_name(f"{base.name}.{n}").exists():
        n += 1
    return base.with_name(f"{base.name}.{n}")


# -- running the jobs -------------------------------------------------------------------------


def _run_jobs(
    record: FleetRecord, jobs: Sequence[HostJob], settings: FleetSettings
) -> FleetOutcome:
    fleet_dir = record.path.parent
    if settings.configure_logging:
        configure_fleet_logging(settings.log_format, fleet_dir / FLEET_LOG_FILE)
    session: dict[str, Any] = {
        "session": len(record.sessions) + 1,
        "started_at": utc_now(),
        "hosts": [job.host.name for job in jobs],
        "forks": settings.forks,
    }
    record.sessions.append(session)
    record.save()
    log.info("fleet.start", fleet_id=record.fleet_id, hosts=len(jobs), forks=settings.forks)
    stream = settings.stream or sys.stderr
    lock = threading.Lock()
    scheduler = Scheduler(
        jobs,
        forks=settings.forks,
        run=lambda job, interrupts: _run_host(job, settings, interrupts, record, stream, lock),
        not_started=lambda job: _not_started(job),
    )
    results = scheduler.run()
    for result in results:
        record.update(result)
    session["finished_at"] = utc_now()
    code = record.finish()
    log.info("fleet.end", fleet_id=record.fleet_id, exit_code=int(code))
    return FleetOutcome(
        fleet_id=record.fleet_id,
        fleet_dir=fleet_dir,
        exit_code=code,
        hosts=tuple(record.hosts.values()),
    )


class Scheduler:
    """Runs jobs on at most ``forks`` threads; Ctrl-C in the caller stops every one.

    ``run(job, interrupts)`` must return the job's result whatever happens (it runs in a
    worker thread); ``not_started(job)`` gives the result of a job Ctrl-C kept from starting.
    """

    def __init__(
        self,
        jobs: Sequence[HostJob],
        *,
        forks: int,
        run: Callable[[HostJob, ThreadInterrupts], HostResult],
        not_started: Callable[[HostJob], HostResult],
    ) -> None:
        if forks < 1:
            raise errors.UsageError(f"--forks {forks}: at least 1")
        self._jobs: queue.SimpleQueue[HostJob] = queue.SimpleQueue()
        for job in jobs:
            self._jobs.put(job)
        self._order = [job.host.name for job in jobs]
        self._forks = min(forks, len(jobs))
        self._run = run
        self._not_started = not_started
        self._results: dict[str, HostResult] = {}
        self._lock = threading.Lock()
        self.interrupts = ThreadInterrupts()

    def run(self) -> list[HostResult]:
        def interrupted() -> None:
            stopped = self.interrupts.interrupt_all()
            log.warning("fleet.interrupted", running_hosts=stopped)

        run_threads(self._work, self._forks, on_interrupt=interrupted, name="imageprep-fleet")
        while not self._jobs.empty():  # what Ctrl-C kept from starting
            job = self._jobs.get_nowait()
            self._results[job.host.name] = self._not_started(job)
        return [self._results[name] for name in self._order if name in self._results]

    def _work(self) -> None:
        while not self.interrupts.stopping:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                result = self._run(job, self.interrupts)
            except Exception as exc:  # a bug in the fleet itself: this host ends, not the rest
                log.error("fleet.worker_error", host=job.host.name, exc_info=exc)
                result = replace(
                    job.pending(),
                    status="failed",
                    exit_code=ExitCode.INTERNAL_ERROR,
                    message=f"internal error ({type(exc).__name__}): a bug in imageprep; "
                    f"see {FLEET_LOG_FILE}",
                )
            with self._lock:
                self._results[job.host.name] = result


def _not_started(job: HostJob) -> HostResult:
    return replace(
        job.pending(),
        status="interrupted",
        exit_code=ExitCode.INTERRUPTED,
        message="not started: the fleet was interrupted first",
        run_dir=job.folder if (job.folder / RESULT_FILE).exists() else None,
    )


def _run_host(
    job: HostJob,
    settings: FleetSettings,
    interrupts: ThreadInterrupts,
    record: FleetRecord,
    stream: TextIO,
    lock: threading.Lock,
) -> HostResult:
    """One host, in its own thread: whatever happens, a result (never an exception)."""
    from agent.progress import ConsoleProgress

    started = _mark_started(job, record)
    progress = ConsoleProgress(
        enabled=settings.log_format == "text" and not settings.quiet,
        stream=cast(TextIO, LabelledStream(job.host.name, stream, lock)),
        verbose=settings.verbose,
    )
    try:
        job.folder.mkdir(parents=True, exist_ok=True)
        with host_logging(job.host.name, job.folder / LOG_FILE):
            outcome = _execute_host(job, started, interrupts, progress)
    except OSError as exc:
        return _ended(
            started,
            ExitCode.USAGE,
            f"run folder {job.folder}: {exc.strerror}",
            job,
            status="refused",
        )
    except errors.ImagePrepError as exc:  # the run log could not be opened
        return _ended(started, exit_code_for_error(exc), str(exc), job, status="refused")
    finally:
        progress.close()
    if isinstance(outcome, HostResult):
        return outcome
    status = str(
        outcome.result.get("status")
        or ("succeeded" if outcome.exit_code is ExitCode.OK else "failed")
    )
    return replace(
        started,
        status=status,
        exit_code=outcome.exit_code,
        message=outcome.message,
        run_dir=outcome.run_dir,
        run_id=outcome.run_id,
        finished_at=utc_now(),
    )


def _mark_started(job: HostJob, record: FleetRecord) -> HostResult:
    """The host's "running" entry, in fleet.json when it can be written."""
    started = replace(job.pending(), status="running", started_at=utc_now())
    try:
        record.update(started, durable=False)
    except errors.RunDirError as exc:  # fleet.json is a summary; the run still has its folder
        log.warning("fleet.record_not_written", error=str(exc))
    return started


def _execute_host(
    job: HostJob, started: HostResult, interrupts: ThreadInterrupts, progress: RunObserver
) -> RunOutcome | HostResult:
    """The host's run; a refusal, an interruption before it began or a bug as a result."""
    from agent.runner import execute

    outcome = None
    try:
        with interrupts.section():
            outcome = execute(job.request, progress)
    except KeyboardInterrupt:
        if outcome is None:
            return _ended(started, ExitCode.INTERRUPTED, "interrupted before its run started", job)
    except errors.ImagePrepError as exc:  # refused before its run folder was written
        return _ended(started, exit_code_for_error(exc), str(exc), job, status="refused")
    except Exception as exc:  # a bug: the runner wrote result.json (exit 1) if it could
        log.error("fleet.host_internal_error", host=job.host.name, exc_info=exc)
        message = f"internal error ({type(exc).__name__}): a bug in imageprep; see {LOG_FILE}"
        return _ended(started, ExitCode.INTERNAL_ERROR, message, job)
    assert outcome is not None
    return outcome


def _ended(
    started: HostResult, code: ExitCode, message: str, job: HostJob, *, status: str | None = None
) -> HostResult:
    if status is None:
        status = "interrupted" if code is ExitCode.INTERRUPTED else "failed"
    has_report = (job.folder / RESULT_FILE).exists()
    return replace(
        started,
        status=status,
        exit_code=code,
        message=message,
        run_dir=job.folder if has_report else None,
        finished_at=utc_now(),
    )


def _address(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


class LabelledStream:
    """A console stream whose every line starts with ``[host]``; one lock for all hosts."""

    def __init__(self, label: str, stream: TextIO, lock: threading.Lock) -> None:
        self._prefix = f"[{label}] "
        self._stream = stream
        self._lock = lock
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if lines:
            with self._lock:
                self._stream.write("".join(f"{self._prefix}{line}\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def isatty(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())


# -- the summary ------------------------------------------------------------------------------


def print_fleet_summary(outcome: FleetOutcome, log_format: str) -> None:
    """The table on stderr-like text output (stdout), or one JSON object with --log-format json."""
    report = outcome.fleet_dir / FLEET_FILE
    if log_format == "json":
        summary = {
            "fleet_id": outcome.fleet_id,
            "exit_code": int(outcome.exit_code),
            "hosts": [
                {
                    "name": h.name,
                    "exit_code": None if h.exit_code is None else int(h.exit_code),
                    "status": h.status,
                    "run_dir": None if h.run_dir is None else str(h.run_dir),
                }
                for h in outcome.hosts
            ],
            "fleet": str(report),
        }
        console.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    verdict = "succeeded" if outcome.exit_code is ExitCode.OK else "FAILED"
    text = render_table(outcome.hosts, fleet_dir=outcome.fleet_dir)
    text += (
        f"imageprep fleet {outcome.fleet_id} {verdict} (exit {int(outcome.exit_code)}): "
        f"{len(outcome.hosts)} host(s): {tally(outcome.hosts)}\n"
        f"  report:  {report}\n"
    )
    console.write(text)
