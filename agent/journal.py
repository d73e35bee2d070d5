"""The journal: a run's progress on the controller, one JSON line per event.

``journal.jsonl`` lives in the run folder next to result.json. result.json is the
report (rewritten whole); the journal is the record ``run --resume`` trusts: it is only
ever appended to, each event is one ``write`` *before* the run moves on, so an event
that is not in the file is something the run never went past, whatever kills the
process. In particular ``step_started`` is written before the step's command is sent: a
step with no ``step_started`` line never ran.

Surviving a crash of the controller's machine (power loss) is what ``fsync`` adds, and it
costs a disk flush per call: about one step's worth of a run's time for every 20 steps.
So an event is fsync'd only when losing it could make a resume do something twice or
too early: the ``step_started`` of a destructive step (it also carries every earlier
line to disk: the backup record before the first destructive step, each step finished
before it), and every rare event (header, backup, notes, interruptions, the end).
Losing the unsynced lines of non-destructive steps only makes a resume run those steps
again, which profiles keep idempotent; losing the ``step_finished`` of a destructive
step makes it look unreported, and its ``resume_check`` settles it or resuming is
refused: the safe direction.

Events (every line has ``v``, ``seq``, ``at``, ``session`` and ``event``)::

    run_started        the header: run id, target, the request (playbook, profile, vars,
                       selection, catalog dirs, backup spec), profile and playbook files
                       with their sha256, the facts the plan was built from, plan_hash
    session_started    a resume began (session 2, 3, ...)
    backup_recorded    the BackupRecord (``to_dict``)
    backup_waived      --no-backup --reason: the reason
    backup_failed      the error
    step_started       step key, attempt (how many times this run has started the step,
                       counting every session), destructive
    step_finished      step key and its result, as result.json has it
    step_interrupted   Ctrl-C / SIGTERM while the step ran: its outcome is unknown
    step_note          step key, key, value: a fact the step printed as
                       ``imageprep-journal: KEY=VALUE`` (Sysprep's process id)
    run_finished       status, exit code, message

Reading it back (:func:`load_journal`) gives a :class:`JournalState`; deciding how a run
continues from it is :mod:`agent.resume`'s job. The rules it applies:

* steps that finished OK (or were skipped or ignored) are kept and not run again;
* other non-destructive steps run again (profiles keep them idempotent);
* a destructive step that started and never reported (killed, interrupted, connection
  lost, timed out) is settled by its ``resume_check`` on the target, never re-run; with no
  ``resume_check``, or when it ran and reported failure, resuming is refused
  (:class:`~agent.errors.ResumeUnsafe`): restore from the backup.

Test hook: ``IMAGEPREP_TEST_KILL_AFTER=EVENT[:PHASE/STEP]`` makes the process SIGKILL
itself right after that event is written (for the interruption tests; see README). It
is read only from the environment, refuses malformed values and logs a warning when armed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.backups.base import BackupRecord
from agent.errors import JournalError, ResumeError, RunDirError, UsageError
from agent.excerpt import clip, excerpt
from agent.limits import MAX_DEPTH, MAX_JOURNAL_BYTES, MAX_RECORDED_FILE_BYTES
from agent.plan import Plan, PlannedStep
from agent.redaction import Redactor
from agent.report import utc_now
from agent.results import StepResult, StepStatus
from agent.safefiles import read_regular

log = structlog.get_logger("agent.journal")

JOURNAL_FILE = "journal.jsonl"
FORMAT = 1
TEST_KILL_ENV = "IMAGEPREP_TEST_KILL_AFTER"

EVENTS = (
    "run_started",
    "session_started",
    "backup_recorded",
    "backup_waived",
    "backup_failed",
    "step_started",
    "step_finished",
    "step_interrupted",
    "step_note",
    "run_finished",
    # The platform stage after the steps (agent/capture.py): recorded, not replayed; a
    # resumed capture asks the platform what exists instead.
    "power_state_confirmed",
    "capture_requested",
    "capture_started",
    "capture_step",
    "capture_finished",
    "capture_command_finished",
    "platform_failed",
)
_STEP_EVENTS = ("step_started", "step_finished", "step_interrupted", "step_note")
# A destructive step that ended like this may or may not have done its work.


# -- step results <-> JSON ----------------------------------------------------------------


def step_entry(result: StepResult) -> dict[str, Any]:
    """A step's result as result.json and the journal store it."""
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


def step_result(entry: Mapping[str, Any]) -> StepResult:
    """The inverse of :func:`step_entry`; ValueError/KeyError/TypeError on a bad entry."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"a step result must be an object, not {excerpt(entry)}")
    exit_code = entry.get("exit_code")
    return StepResult(
        phase=str(entry["phase"]),
        name=str(entry["name"]),
        status=StepStatus(entry["status"]),
        exit_code=None if exit_code is None else int(exit_code),
        attempts=int(entry.get("attempts", 0)),
        duration=float(entry.get("duration", 0.0)),
        stdout_tail=str(entry.get("stdout_tail", "")),
        stderr_tail=str(entry.get("stderr_tail", "")),
        message=str(entry.get("message", "")),
        destructive=bool(entry.get("destructive", False)),
        disconnected=bool(entry.get("disconnected", False)),
    )


# -- what identifies a plan and a target --------------------------------------------------


def plan_hash(plan: Plan) -> str:
    """sha256 of what the plan would do: phases, vars, and every step with its commands.

    File paths are left out (the same profiles installed elsewhere make the same plan);
    ``no_log`` commands are in (only their hash is ever written).
    """
    canonical = {
        "profile": plan.profile_id,
        "playbook": plan.playbook_name,
        "requires_backup": plan.requires_backup,
        "phases": list(plan.phases),
        "vars": dict(plan.vars),
        "backup_paths": list(plan.backup_paths),
        "steps": [asdict(step) for step in plan.steps],
    }
    text = json.dumps(canonical, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_hashes(paths: Iterable[str]) -> dict[str, str]:
    """sha256 of each file ("missing" for one that cannot be read).

    The paths may come from a journal, which anyone could have edited: only regular files
    of a profile's size are read (a FIFO would block the resume forever, a device or a
    huge file would never end); anything else counts as missing.
    """
    hashes: dict[str, str] = {}
    for path in paths:
        try:
            data = read_regular(Path(path), MAX_RECORDED_FILE_BYTES)
        except OSError:
            hashes[path] = "missing"
        else:
            hashes[path] = hashlib.sha256(data).hexdigest()
    return hashes


# -- writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KillHook:
    event: str
    step: str | None

    def matches(self, event: str, fields: Mapping[str, Any]) -> bool:
        return event == self.event and (self.step is None or fields.get("step") == self.step)


def _kill_hook_from_env() -> _KillHook | None:
    value = os.environ.get(TEST_KILL_ENV)
    if not value:
        return None
    event, _, step = value.partition(":")
    if event not in EVENTS or (step and "/" not in step):
        raise UsageError(
            f"{TEST_KILL_ENV}={value!r}: expected EVENT[:PHASE/STEP] with EVENT one of "
            f"{', '.join(EVENTS)} (a test hook: it kills imageprep on purpose)"
        )
    log.warning("test_hook.armed", variable=TEST_KILL_ENV, value=value)
    return _KillHook(event, step or None)


class Journal:
    """Appends events to ``journal.jsonl``: one ``write`` and one ``fsync`` per event.

    It is also a :class:`~agent.engine.RunObserver` (step and backup events).
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        *,
        session: int,
        seq: int = 0,
        started: Mapping[str, int] | None = None,
        waiver: str | None = None,
    ) -> None:
        self.path = path
        self._fd: int | None = fd
        self.session = session
        self._seq = seq
        self._started = dict(started or {})
        self._waiver = waiver
        self._redactor = Redactor()
        self._kill_hook = _kill_hook_from_env()
        self.running: PlannedStep | None = None

    @classmethod
    def create(cls, folder: Path, *, waiver: str | None = None) -> Journal:
        """A new journal in ``folder``; refuses a folder that already holds one."""
        path = folder / JOURNAL_FILE
        try:
            # 0o666 less the umask, as result.json and run.log.jsonl get (os.open's default,
            # 0o777, made the journal executable).
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            raise RunDirError(
                f"run folder {folder} already holds a run ({JOURNAL_FILE}): continue it with "
                f"`imageprep run --resume {folder}` or give another --run-dir"
            ) from None
        except OSError as exc:
            raise RunDirError(f"run folder {folder}: cannot create {JOURNAL_FILE}: {exc}") from exc
        _fsync_dir(folder)  # the new file's name must survive a crash too
        return cls(path, fd, session=1, waiver=waiver)

    @classmethod
    def reopen(cls, state: JournalState) -> Journal:
        """Append a new session to the journal ``state`` was read from."""
        try:
            fd = os.open(state.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise RunDirError(f"cannot append to {state.path}: {exc}") from exc
        if state.torn_tail:
            # A half-written last line was never durable, so never acted on: drop it
            # (it is in the log) rather than leave a corrupt line before new events.
            log.warning("journal.torn_tail_dropped", file=str(state.path), kept=state.size)
            os.ftruncate(fd, state.size)
        started = {key: s.started for key, s in state.steps.items()}
        return cls(
            state.path,
            fd,
            session=state.sessions + 1,
            seq=state.last_seq,
            started=started,
            waiver=state.waiver,
        )

    def append(self, event: str, **fields: Any) -> None:
        """Write one event and fsync it (see the module's docstring for the exceptions)."""
        self._write(event, fields, sync=True)

    def _write(self, event: str, fields: Mapping[str, Any], *, sync: bool) -> None:
        if self._fd is None:
            raise RunDirError(f"{self.path} is closed")
        self._seq += 1
        record = {
            "v": FORMAT,
            "seq": self._seq,
            "at": utc_now(),
            "session": self.session,
            "event": event,
            **fields,
        }
        clean = self._redactor.redact(record)
        line = json.dumps(clean, sort_keys=False, default=str, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd, line.encode("utf-8"))
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise RunDirError(f"cannot write {self.path}: {exc}") from exc
        if self._kill_hook is not None and self._kill_hook.matches(event, fields):
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    # -- the run's events ---------------------------------------------------------------

    def run_started(self, header: Mapping[str, Any]) -> None:
        self.append(
            "run_started",
            **header,
            controller={"host": socket.gethostname(), "pid": os.getpid()},
        )

    def session_started(self, **fields: Any) -> None:
        self.append("session_started", pid=os.getpid(), **fields)

    def step_started(self, step: PlannedStep) -> None:
        attempt = self._started.get(step.key, 0) + 1
        self._started[step.key] = attempt
        self.running = step
        # Write-ahead for destructive steps only: see the module's docstring.
        self._write(
            "step_started",
            {"step": step.key, "attempt": attempt, "destructive": step.spec.destructive},
            sync=step.spec.destructive,
        )

    def step_finished(self, step: PlannedStep, result: StepResult, **extra: Any) -> None:
        if self.running is not None and self.running.key == step.key:
            self.running = None
        self._write(
            "step_finished", {"step": step.key, "result": step_entry(result), **extra}, sync=False
        )

    def step_note(self, step: PlannedStep, key: str, value: str) -> None:
        """A fact the running step reported (an ``imageprep-journal: KEY=VALUE`` line)."""
        self.append("step_note", step=step.key, key=key, value=value)

    def step_interrupted(self) -> PlannedStep | None:
        """Record that the running step (if any) was interrupted; return it."""
        step, self.running = self.running, None
        if step is not None:
            self.append("step_interrupted", step=step.key, destructive=step.spec.destructive)
        return step

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        if error is not None:
            self.append("backup_failed", error=error)
        elif record is not None:
            self.append("backup_recorded", record=record.to_dict())
        elif self._waiver:
            self.append("backup_waived", reason=self._waiver)
        # Neither: a playbook whose backup phase is optional ran without one; nothing
        # was recorded, and destructive steps stay refused.

    def run_finished(self, *, status: str, exit_code: int, message: str) -> None:
        self.append("run_finished", status=status, exit_code=exit_code, message=message)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ------------------------------------------------------------------------------


@dataclass
class StepState:
    """One step's history across sessions."""

    started: int = 0
    destructive: bool = False
    result: StepResult | None = None  # its last reported result; None while unreported
    session: int = 0  # the session of the last event about it
    # What the step itself asked to journal while it ran (e.g. sysprep_pid), by key.
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class JournalState:
    """What a journal says happened, for ``--resume``."""

    path: Path
    header: dict[str, Any]
    sessions: int = 1
    last_seq: int = 0
    backup: BackupRecord | None = None
    waiver: str | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    finished: dict[str, Any] | None = None  # the last session's run_finished, if any
    torn_tail: bool = False
    size: int = 0  # bytes of complete lines

    @property
    def run_id(self) -> str:
        return str(self.header["run_id"])

    @property
    def target(self) -> str:
        return str(self.header["target"])

    @property
    def point_of_no_return(self) -> bool:
        """Whether any destructive step ever started in this run."""
        return any(s.started and s.destructive for s in self.steps.values())

    def in_doubt(self) -> list[str]:
        """Steps that started and never reported a result."""
        return [key for key, s in self.steps.items() if s.started and s.result is None]

    def last_finished(self) -> str | None:
        done = [k for k, s in self.steps.items() if s.result is not None and s.result.succeeded]
        return done[-1] if done else None


def journal_path(run_dir: Path) -> Path:
    """The journal of ``run_dir``, checking that the folder is a run folder with one."""
    if not run_dir.exists():
        raise ResumeError(f"--resume {run_dir}: no such directory")
    if not run_dir.is_dir():
        raise ResumeError(f"--resume {run_dir}: not a directory")
    path = run_dir / JOURNAL_FILE
    if not path.is_file():
        what = (
            "an imageprep run folder whose run stopped before its plan was built (nothing "
            "on the VM was changed: start a new run)"
            if (run_dir / "result.json").is_file()
            else "not an imageprep run folder"
        )
        raise ResumeError(f"--resume {run_dir}: no {JOURNAL_FILE} in it: {what}")
    return path


def read_header(run_dir: Path) -> dict[str, Any]:
    """The run_started event of ``run_dir``'s journal (enough to find the target)."""
    path = journal_path(run_dir)
    try:
        raw = read_regular(path, MAX_JOURNAL_BYTES)
    except OSError as exc:
        raise ResumeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    first = raw.split(b"\n", 1)[0]
    if not first.strip():
        raise ResumeError(
            f"{path} is empty: the run stopped before its plan was built (nothing on the VM "
            "was changed: start a new run)"
        )
    event = _parse_line(path, 1, first)
    if event["event"] != "run_started":
        raise JournalError(f"{path}:1: expected the run_started header, got {event['event']}")
    check_header(path, event, _HEADER_CORE)
    return event


#: What ``--resume`` reads from the header, and the JSON type each must have.
_HEADER_SHAPE: tuple[tuple[tuple[str, ...], type | tuple[type, ...]], ...] = (
    (("run_id",), str),
    (("target",), str),
    (("plan_hash",), str),
    (("request",), dict),
    (("request", "playbook"), str),
    (("request", "vars"), dict),
    (("request", "selection"), dict),
    (("request", "selection", "only"), list),
    (("request", "selection", "skip"), list),
    (("request", "selection", "tags"), list),
    (("request", "profiles_dirs"), list),
    (("request", "playbooks_dirs"), list),
    (("profile",), dict),
    (("profile", "id"), str),
    (("profile", "files"), dict),
    (("playbook",), dict),
    (("playbook", "files"), dict),
    (("facts",), dict),
)


#: What every reader of the header relies on (the rest is checked before a plan rebuild).
_HEADER_CORE = _HEADER_SHAPE[:4]


def check_header(
    path: Path,
    header: Mapping[str, Any],
    shape: tuple[tuple[tuple[str, ...], type | tuple[type, ...]], ...] = _HEADER_SHAPE,
) -> None:
    """Refuse a header that lacks what a resume reads, naming ``journal.jsonl:1``."""
    for keys, kind in shape:
        value: Any = header
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        name = ".".join(keys)
        if value is None:
            raise JournalError(f"{path}:1: the run_started header lacks {name}")
        if not isinstance(value, kind):
            raise JournalError(
                f"{path}:1: the run_started header's {name} is {excerpt(value)}, "
                f"not {'an object' if kind is dict else 'a list' if kind is list else 'a string'}"
            )
    if shape is not _HEADER_SHAPE:
        return
    for name in ("profiles_dirs", "playbooks_dirs"):
        if not all(isinstance(item, str) for item in header["request"][name]):
            raise JournalError(
                f"{path}:1: the run_started header's request.{name} holds a non-string"
            )
    for name in ("only", "skip", "tags"):
        if not all(isinstance(item, str) for item in header["request"]["selection"][name]):
            raise JournalError(
                f"{path}:1: the run_started header's request.selection.{name} holds a non-string"
            )
    for part in ("profile", "playbook"):
        files = header[part]["files"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise JournalError(f"{path}:1: the run_started header's {part}.files is malformed")


def load_journal(run_dir: Path) -> JournalState:
    """Read and check the whole journal; JournalError names ``file:line`` of a bad line."""
    header = read_header(run_dir)
    path = run_dir / JOURNAL_FILE
    try:
        raw = read_regular(path, MAX_JOURNAL_BYTES)
    except OSError as exc:
        raise ResumeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    state = JournalState(path=path, header=header, size=len(raw) - len(tail))
    asked = header.get("request")
    if isinstance(asked, dict) and asked.get("no_backup_reason"):
        # --no-backup --reason is a decision of the whole run, recorded in its header.
        state.waiver = str(asked["no_backup_reason"])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise JournalError(f"{path}:{number}: empty line")
        _apply(state, path, number, _parse_line(path, number, line))
    if tail.strip():
        try:
            event = _parse_line(path, len(lines) + 1, tail)
        except JournalError:
            # A crash during the last write: that event never became durable, so the run
            # never acted on it (every event is fsync'd before the run moves on).
            state.torn_tail = True
            log.warning("journal.torn_tail", file=str(path), line=len(lines) + 1, text=tail[:200])
        else:
            _apply(state, path, len(lines) + 1, event)
    return state


def _parse_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:  # also an integer past Python's 4300-digit limit
        raise JournalError(f"{path}:{number}: not a JSON object ({clip(str(exc), 120)})") from None
    except RecursionError:
        raise JournalError(f"{path}:{number}: nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(event, dict):
        raise JournalError(f"{path}:{number}: not a JSON object")
    if _too_deep(event):
        # Later readers (redaction, result.json) recurse; refuse before they do.
        raise JournalError(f"{path}:{number}: nested deeper than {MAX_DEPTH} levels")
    if event.get("v") != FORMAT:
        raise JournalError(f"{path}:{number}: unknown journal format {excerpt(event.get('v'))}")
    kind = event.get("event")
    if not isinstance(kind, str) or kind not in EVENTS:
        raise JournalError(f"{path}:{number}: unknown event {excerpt(kind)}")
    if event["event"] in _STEP_EVENTS and not isinstance(event.get("step"), str):
        raise JournalError(f"{path}:{number}: {event['event']} without a step")
    return event


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _apply(state: JournalState, path: Path, number: int, event: dict[str, Any]) -> None:
    kind = event["event"]
    where = f"{path}:{number}"
    if number > 1 and kind == "run_started":
        raise JournalError(f"{where}: a second run_started header")
    seq = event.get("seq")
    if not isinstance(seq, int) or seq <= state.last_seq:
        raise JournalError(f"{where}: sequence number {excerpt(seq)} out of order")
    state.last_seq = seq
    try:
        if kind == "session_started":
            state.sessions = int(event["session"])
            state.finished = None
        elif kind == "backup_recorded":
            state.backup = BackupRecord.from_dict(event["record"])
        elif kind == "backup_waived":
            if not event.get("reason"):
                raise JournalError(f"{where}: backup_waived without a reason")
            state.waiver = str(event["reason"])
        elif kind == "step_started":
            step = state.steps.setdefault(event["step"], StepState())
            step.started += 1
            step.destructive = bool(event.get("destructive", False))
            step.result = None
            step.session = int(event["session"])
        elif kind == "step_finished":
            step = state.steps.setdefault(event["step"], StepState())
            step.result = step_result(event["result"])
            step.session = int(event["session"])
        elif kind == "step_note":
            notes = state.steps.setdefault(event["step"], StepState()).notes
            notes[str(event["key"])] = str(event["value"])
        elif kind == "step_interrupted":
            state.steps.setdefault(event["step"], StepState()).result = None
        elif kind == "run_finished":
            state.finished = event
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        why = clip(f"{type(exc).__name__}: {exc}", 160)
        raise JournalError(f"{where}: malformed {kind} event ({why})") from None
