"""The engine: runs a validated Plan on an Executor, step by step.

It owns the rules that make a run safe:

* the backup phase runs where the playbook puts it, and a destructive step refuses to
  start unless this run recorded a successful backup (or the user said ``--no-backup
  --reason``);
* the point of no return is recorded the moment a destructive step *starts*, so a crash
  inside it is still reported as "restore from backup";
* destructive steps are never retried; other steps retry only as their YAML allows;
* a dropped connection is success only for a step marked ``expect_disconnect``;
* ``on_failure: continue`` runs the rest of the failed step's phase, never the next phase;
* a step may be sent ahead (``Executor.run``'s ``then``) only when this engine is certain
  to run it next whenever the target lets it start (:meth:`Engine._followers`);
* a resumed run (:class:`ResumeState`, built from the journal by ``agent.journal``) keeps
  the earlier sessions' backup and finished steps, and settles a destructive step whose
  outcome is unknown with its ``resume_check`` instead of running it again.

Every state change goes to the :class:`RunObserver` (journal, result.json, console
progress) at once, so an interrupted run leaves an accurate record.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog

from agent.backups.base import BackupContext, BackupProvider, BackupRecord
from agent.errors import BackupError, CommandTimeout, Disconnected
from agent.executors.base import Executor, FollowUp
from agent.outcome import ExitCode
from agent.plan import Plan, PlannedStep
from agent.records import BACKUP_PHASE, PREFLIGHT_PHASE, VERIFY_PHASE
from agent.results import CommandResult, StepResult, StepStatus

log = structlog.get_logger("agent.engine")

TAIL_LINES = 40
TAIL_CHARS = 8192  # one endless line (a progress bar, a blob) must not bloat result.json
# How many following steps one command offers to send ahead (the SSH root shell sends up
# to 16 and 32 KiB): enough to keep a phase's trivial steps streaming over a slow link.
AHEAD_STEPS = 16
# Exit codes of a command killed at its timeout (timeout(1), the root shell's timer): a
# step that counts them as success still ends "timed out" here, so its gate must not pass.
_TIMEOUT_CODES = frozenset({124, 137})


class RunObserver(Protocol):
    def step_started(self, step: PlannedStep) -> None: ...

    def step_finished(self, step: PlannedStep, result: StepResult) -> None: ...

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None: ...


@dataclass(frozen=True)
class BackupGate:
    """How this run satisfies "backup first": a provider, or an explicit waiver."""

    provider: BackupProvider | None
    context: BackupContext | None
    waiver_reason: str | None = None


@dataclass(frozen=True)
class ResumeState:
    """What earlier sessions of this run did, as far as the engine needs to know."""

    completed: Mapping[str, StepResult] = field(default_factory=dict)  # kept, not rerun
    in_doubt: frozenset[str] = frozenset()  # destructive steps to settle by resume_check
    backup: BackupRecord | None = None
    waiver: str | None = None
    point_of_no_return: bool = False

    @property
    def backup_done(self) -> bool:
        return self.backup is not None or self.waiver is not None


@dataclass(frozen=True)
class EngineResult:
    exit_code: ExitCode
    message: str
    steps: tuple[StepResult, ...]
    backup: BackupRecord | None
    point_of_no_return_reached: bool
    powered_off: bool
    failed_step: str | None = None


@dataclass
class _Progress:
    """Mutable bookkeeping of one engine run; frozen into an EngineResult at the end."""

    results: dict[str, StepResult] = field(default_factory=dict)
    backup: BackupRecord | None = None
    backup_error: str | None = None
    point_of_no_return: bool = False
    connection_gone: bool = False
    powered_off: bool = False
    first_failure: tuple[PlannedStep, StepResult] | None = None
    aborted: bool = False


class Engine:
    def __init__(
        self,
        plan: Plan,
        executor: Executor,
        gate: BackupGate,
        observer: RunObserver,
        *,
        disconnect_timeout: float = 180.0,
        sleep: Callable[[float], None] = time.sleep,
        resume: ResumeState | None = None,
    ) -> None:
        self._plan = plan
        self._executor = executor
        self._gate = gate
        self._observer = observer
        self._disconnect_timeout = disconnect_timeout
        self._sleep = sleep
        self._resume = resume or ResumeState()
        self._progress = _Progress(
            backup=self._resume.backup, point_of_no_return=self._resume.point_of_no_return
        )
        self._sends_ahead: bool = getattr(executor, "sends_ahead", False)

    @property
    def point_of_no_return_reached(self) -> bool:
        return self._progress.point_of_no_return

    def run(self) -> EngineResult:
        progress = self._progress
        for phase in self._plan.phases:
            if progress.aborted:
                break
            if phase == BACKUP_PHASE:
                if self._resume.backup_done:
                    # Taken (or waived) by an earlier session of this run: never twice.
                    reference = progress.backup.reference if progress.backup else None
                    log.info("backup.reused", reference=reference, waiver=self._resume.waiver)
                else:
                    self._take_backup()
                continue
            for step in self._plan.steps_in(phase):
                if progress.aborted:
                    break
                self._run_step(step)
            # `on_failure: continue` lets the rest of its phase run (every verification
            # gets reported), but the run never moves on to the next phase after a
            # failure: a VM that failed verification is left running for inspection.
            if progress.first_failure is not None:
                progress.aborted = True
        return self._finish()

    # -- backup -----------------------------------------------------------------------

    def _take_backup(self) -> None:
        progress = self._progress
        gate = self._gate
        if gate.provider is None or gate.context is None:
            log.warning("backup.waived", reason=gate.waiver_reason)
            self._observer.backup_finished(None, None)
            return
        log.info("backup.start", provider=gate.provider.describe())
        try:
            progress.backup = gate.provider.take(self._executor, gate.context)
        except BackupError as exc:
            progress.backup_error = str(exc)
            progress.aborted = True
            log.error("backup.failed", error=str(exc))
            self._observer.backup_finished(None, str(exc))
            return
        log.info(
            "backup.end",
            reference=progress.backup.reference,
            sha256=progress.backup.sha256,
            size_bytes=progress.backup.size_bytes,
            duration=round(progress.backup.duration, 3),
        )
        self._observer.backup_finished(progress.backup, None)

    def _backup_recorded(self) -> bool:
        return (
            self._progress.backup is not None
            or self._gate.waiver_reason is not None
            or self._resume.waiver is not None
        )

    # -- steps ------------------------------------------------------------------------

    def _run_step(self, step: PlannedStep) -> None:
        # In the context too, not only on the engine's own logger: the executor's events
        # (ssh.command_start, pywinrm's records) then name the step they belong to. Not
        # those of threads a library starts (paramiko's transport): a thread starts with
        # an empty context.
        with structlog.contextvars.bound_contextvars(phase=step.phase, step=step.name):
            self._run_step_in_context(step)

    def _run_step_in_context(self, step: PlannedStep) -> None:
        progress = self._progress
        bound = log.bind(phase=step.phase, step=step.name)
        if self._settled_without_running(step, bound):
            return
        if step.spec.destructive:
            # Before anyone hears of the start: an interruption from here on is past it.
            progress.point_of_no_return = True
        self._observer.step_started(step)
        if step.spec.destructive:
            bound.warning("point_of_no_return", step=step.key)
        followers = self._followers(step)
        if followers:
            announce = getattr(self._observer, "steps_sent_ahead", None)
            if announce is not None:
                announce(tuple(f for f, _ in followers))
        result = self._attempt(step, bound, tuple(then for _, then in followers))
        if (
            result.status is StepStatus.DISCONNECTED
            and step.spec.destructive
            and step.resume_check is not None
            and self._executor.is_connected()
        ):
            # Its command died but the target answers again (WinRM deleted the shell
            # that watched Sysprep): settle it by its check now, as --resume would.
            bound.warning("step.command_lost", step=step.key, message=result.message)
            self._settle_in_doubt(step, bound, why="its command was lost while it ran")
            return
        self._conclude(step, result, bound)

    def _settled_without_running(
        self, step: PlannedStep, bound: structlog.stdlib.BoundLogger
    ) -> bool:
        """Record a step that is not to be sent (done, skipped, unsafe, in doubt): True."""
        progress = self._progress
        earlier = self._resume.completed.get(step.key)
        if earlier is not None:
            progress.results[step.key] = earlier  # finished in an earlier session
            bound.debug("step.done_earlier", status=earlier.status.value)
            return True
        if not step.will_run:
            reason = step.skip_reason or f"condition false: {step.spec.when}"
            self._record(
                step, StepResult(step.phase, step.name, StepStatus.SKIPPED, message=reason)
            )
            bound.info("step.end", status="skipped", reason=reason)
            return True
        if progress.connection_gone:
            self._record(
                step,
                StepResult(step.phase, step.name, StepStatus.NOT_RUN, message="target is gone"),
            )
            return True
        if step.spec.destructive and not self._backup_recorded():
            message = "refusing a destructive step: this run recorded no successful backup"
            result = StepResult(
                step.phase, step.name, StepStatus.FAILED, message=message, destructive=True
            )
            self._fail(step, result)
            bound.error("step.end", status="failed", message=message)
            return True
        if step.key in self._resume.in_doubt:
            self._settle_in_doubt(step, bound)
            return True
        return False

    def _conclude(
        self, step: PlannedStep, result: StepResult, bound: structlog.stdlib.BoundLogger
    ) -> None:
        """Wait for an expected power-off, note a lost target, log and record the result."""
        progress = self._progress
        if (
            result.status is StepStatus.OK
            and step.spec.expect_disconnect
            and not result.disconnected
        ):
            result = self._await_power_off(step, result, bound)
        if result.disconnected:
            progress.connection_gone = True
            progress.powered_off = True
        if result.status is StepStatus.DISCONNECTED:
            progress.connection_gone = True

        bound.info(
            "step.end",
            status=result.status.value,
            exit_code=result.exit_code,
            attempts=result.attempts,
            duration=round(result.duration, 3),
        )
        if result.succeeded:
            self._record(step, result)
        elif step.spec.on_failure == "ignore":
            self._record(step, replace(result, status=StepStatus.IGNORED))
        else:
            self._fail(step, result)

    def _settle_in_doubt(
        self,
        step: PlannedStep,
        bound: structlog.stdlib.BoundLogger,
        *,
        why: str = "started in an earlier session",
    ) -> None:
        """A destructive step an earlier session started but never saw end: check, not run.

        Its ``resume_check`` (exit 0: the effect is in place) decides; the step itself is
        never sent again, so it cannot run twice.
        """
        if step.resume_check is None:  # agent.journal refuses such a resume before this
            message = "started in an earlier session, outcome unknown, and no resume_check"
            failed = StepResult(
                step.phase, step.name, StepStatus.FAILED, message=message, destructive=True
            )
            self._fail(step, failed)
            return
        bound.warning("step.resume_check", step=step.key)
        check = replace(
            step,
            command=step.resume_check,
            spec=replace(step.spec, retries=0, ok_exit_codes=(0,), expect_disconnect=False),
        )
        result = replace(self._attempt_once(check, 1, time.monotonic(), bound), attempts=0)
        if result.status is StepStatus.OK:
            result = replace(
                result,
                message=f"{why}; resume_check found its effect in place, so it was not run again",
            )
            bound.info("step.end", status="ok", resume_check="in place")
            self._record(step, result)
            return
        detail = result.message or result.status.value
        result = replace(
            result,
            message=f"{why} and its resume_check says its effect is not in place "
            f"({detail}); it is never run twice",
        )
        bound.error("step.end", status=result.status.value, resume_check="not in place")
        self._fail(step, result)

    def _followers(self, step: PlannedStep) -> tuple[tuple[PlannedStep, FollowUp], ...]:
        """The steps after ``step`` that may be sent ahead of it, each with its gate.

        A command sent ahead runs whenever its gate passes on the target, asked for or not,
        so a step is offered only if this engine is then certain to run it next: in the
        same phase (the next phase waits for the phase's verdict), as root (the root shell
        is what holds the queue), not destructive (the journal records a destructive
        step's start before it is sent), not expected to disconnect, not in doubt from an
        earlier session; and only behind a step whose exit code alone decides that the run
        goes on (:func:`_gate_after`). Steps this engine passes over without running
        (plan-skipped, finished in an earlier session) are passed over here too.
        """
        if not self._sends_ahead:
            return ()
        phase = self._plan.steps_in(step.phase)
        chain: list[tuple[PlannedStep, FollowUp]] = []
        before = step
        for after in phase[phase.index(step) + 1 :]:
            if not after.will_run or after.key in self._resume.completed:
                continue
            if not _may_be_sent_ahead(after) or after.key in self._resume.in_doubt:
                break
            gate = _gate_after(before)
            if gate is None:
                break
            chain.append((after, FollowUp(after.command, after.spec.timeout, gate.codes)))
            if len(chain) == AHEAD_STEPS:
                break
            before = after
        return tuple(chain)

    def _attempt(
        self,
        step: PlannedStep,
        bound: structlog.stdlib.BoundLogger,
        then: tuple[FollowUp, ...] = (),
    ) -> StepResult:
        # Destructive steps never run twice, whatever the YAML says (the schema refuses
        # retries there too; this is the second lock on the same door).
        max_attempts = _max_attempts(step)
        started = time.monotonic()
        result: StepResult | None = None
        for attempt in range(1, max_attempts + 1):
            result = self._attempt_once(step, attempt, started, bound, then)
            if result.status in (StepStatus.OK, StepStatus.DISCONNECTED) or result.disconnected:
                return result
            if attempt < max_attempts:
                bound.warning(
                    "step.retry",
                    attempt=attempt,
                    status=result.status.value,
                    exit_code=result.exit_code,
                    delay=step.spec.retry_delay,
                )
                self._sleep(step.spec.retry_delay)
        assert result is not None
        return result

    def _echoer(self, step: PlannedStep) -> Callable[[str, str], None] | None:
        """Where the step's output lines go as they arrive (the console's -v), if anywhere."""
        echo = getattr(self._observer, "step_output", None)
        if echo is None:
            return None
        return lambda stream, line: echo(step, stream, line)

    def _noter(self, step: PlannedStep) -> Callable[[str, str], None] | None:
        """Where the step's ``imageprep-journal: KEY=VALUE`` lines go (the journal)."""
        note = getattr(self._observer, "step_note", None)
        if note is None:
            return None
        return lambda key, value: note(step, key, value)

    def _attempt_once(
        self,
        step: PlannedStep,
        attempt: int,
        started: float,
        bound: structlog.stdlib.BoundLogger,
        then: tuple[FollowUp, ...] = (),
    ) -> StepResult:
        def elapsed() -> float:
            return time.monotonic() - started

        on_output = (
            None
            if step.spec.no_log
            else _LineLogger(bound, note=self._noter(step), echo=self._echoer(step))
        )
        base = StepResult(
            step.phase,
            step.name,
            StepStatus.FAILED,
            attempts=attempt,
            destructive=step.spec.destructive,
        )
        try:
            command = self._executor.run(
                step.command,
                become=step.spec.become,
                timeout=step.spec.timeout,
                on_output=on_output,
                then=then,
            )
        except CommandTimeout as exc:
            if on_output is not None:
                on_output.flush()
            return replace(
                base,
                status=StepStatus.TIMED_OUT,
                duration=elapsed(),
                message=f"timed out after {step.spec.timeout} s",
                stdout_tail=_tail(step, exc.stdout),
                stderr_tail=_tail(step, exc.stderr),
            )
        except Disconnected as exc:
            if step.spec.expect_disconnect:
                return replace(
                    base,
                    status=StepStatus.OK,
                    duration=elapsed(),
                    disconnected=True,
                    message="connection closed as expected",
                )
            return replace(
                base,
                status=StepStatus.DISCONNECTED,
                duration=elapsed(),
                message=f"lost the connection during step {step.key}: {exc}",
            )
        if on_output is not None:
            on_output.flush()
        return self._judge(step, base, command, elapsed())

    def _judge(
        self, step: PlannedStep, base: StepResult, command: CommandResult, duration: float
    ) -> StepResult:
        judged = replace(
            base,
            exit_code=command.exit_code,
            duration=duration,
            stdout_tail=_tail(step, command.stdout),
            stderr_tail=_tail(step, command.stderr),
        )
        if command.exit_code in step.spec.ok_exit_codes:
            return replace(judged, status=StepStatus.OK)
        last_line = _last_line(command.stderr) or _last_line(command.stdout)
        message = f"exit code {command.exit_code}"
        if last_line and not step.spec.no_log:
            message += f": {last_line}"
        return replace(judged, message=message)

    def _await_power_off(
        self, step: PlannedStep, result: StepResult, bound: structlog.stdlib.BoundLogger
    ) -> StepResult:
        """After a step that ends the session (power-off), see the connection go away."""
        bound.info("step.await_disconnect", timeout=self._disconnect_timeout)
        waited = time.monotonic()
        if self._executor.wait_disconnected(self._disconnect_timeout):
            return replace(
                result,
                disconnected=True,
                duration=result.duration + time.monotonic() - waited,
                message="connection closed as expected",
            )
        return replace(
            result,
            status=StepStatus.FAILED,
            message=f"the target was still connected {self._disconnect_timeout:.0f} s later",
        )

    # -- bookkeeping ------------------------------------------------------------------

    def _record(self, step: PlannedStep, result: StepResult) -> None:
        self._progress.results[step.key] = result
        self._observer.step_finished(step, result)

    def _fail(self, step: PlannedStep, result: StepResult) -> None:
        progress = self._progress
        self._record(step, result)
        if progress.first_failure is None:
            progress.first_failure = (step, result)
        if step.spec.on_failure != "continue" or result.status is StepStatus.DISCONNECTED:
            progress.aborted = True

    def _finish(self) -> EngineResult:
        progress = self._progress
        steps = tuple(
            progress.results.get(
                s.key,
                StepResult(s.phase, s.name, StepStatus.NOT_RUN, destructive=s.spec.destructive),
            )
            for s in self._plan.steps
        )
        code, message, failed = self._verdict()
        return EngineResult(
            exit_code=code,
            message=message,
            steps=steps,
            backup=progress.backup,
            point_of_no_return_reached=progress.point_of_no_return,
            powered_off=progress.powered_off,
            failed_step=failed,
        )

    def _verdict(self) -> tuple[ExitCode, str, str | None]:
        progress = self._progress
        if progress.backup_error is not None:
            return (
                ExitCode.BACKUP_FAILED,
                f"backup failed, nothing on the VM was changed: {progress.backup_error}",
                None,
            )
        if progress.first_failure is None:
            return ExitCode.OK, "all steps succeeded", None
        step, result = progress.first_failure
        what = f"step {step.key} {result.status.value}: {result.message}".rstrip(": ")
        if _is_preflight(step.phase) and not progress.point_of_no_return:
            return ExitCode.PREFLIGHT_FAILED, f"{what} (nothing on the VM was changed)", step.key
        if step.phase == VERIFY_PHASE:
            return ExitCode.VERIFICATION_FAILED, f"{what} (the VM is generalized)", step.key
        if progress.point_of_no_return:
            return (
                ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN,
                f"{what} (past the point of no return: restore the VM from the backup)",
                step.key,
            )
        return (
            ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN,
            f"{what} (before the point of no return: the VM is still usable)",
            step.key,
        )


def _max_attempts(step: PlannedStep) -> int:
    return 1 if step.spec.destructive else step.spec.retries + 1


@dataclass(frozen=True)
class _Gate:
    """When a step sent ahead may start: ``codes`` None once the one before it ran at all."""

    codes: tuple[int, ...] | None


def _gate_after(step: PlannedStep) -> _Gate | None:
    """When the step after ``step`` is certain to run, as a gate; None if it is not certain.

    After ``on_failure: continue`` or ``ignore`` with one attempt the next step runs
    whatever the exit code. Otherwise it runs once ``step`` exits with one of its
    ``ok_exit_codes`` (a failure ends the run; a retry sends ``step`` again, and with it
    the steps after it). Never behind a step that ends the connection, nor one that runs
    outside the root shell, nor one whose success codes include a timeout's.
    """
    spec = step.spec
    if spec.expect_disconnect or not spec.become:
        return None
    if spec.on_failure in ("continue", "ignore") and _max_attempts(step) == 1:
        return _Gate(None)
    if spec.timeout is not None and _TIMEOUT_CODES & set(spec.ok_exit_codes):
        return None
    return _Gate(tuple(spec.ok_exit_codes))


def _may_be_sent_ahead(step: PlannedStep) -> bool:
    spec = step.spec
    return spec.become and not spec.destructive and not spec.expect_disconnect


def _is_preflight(phase: str) -> bool:
    """A phase of checks that change nothing: `preflight`, or a playbook's own such as
    azure-ready's `azure-preflight`. Its failure is exit 3 whichever playbook runs it
    (README, "Exit codes": 3 means a preflight check failed and the VM is unchanged)."""
    return phase == PREFLIGHT_PHASE or phase.endswith(f"-{PREFLIGHT_PHASE}")


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _tail(step: PlannedStep, text: str) -> str:
    """The last lines (at most TAIL_CHARS) of a step's output; nothing for a no_log step."""
    if step.spec.no_log:
        return ""
    return "\n".join(text.splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]


# A line a step prints for the journal (its outcome may be settled by it after a crash).
_NOTE = re.compile(r"imageprep-journal: (?P<key>[a-z_]{1,40})=(?P<value>\S{1,200})\s*$")


class _LineLogger:
    """Stream a step's output into the log line by line, as it arrives.

    Bounded: a step printing megabytes would otherwise become millions of log events.
    The first lines of each stream are logged; the rest is counted (the report keeps the
    tails, and the step's full output is never needed twice).
    """

    MAX_LINES = 2000
    MAX_LINE_CHARS = 2000

    def __init__(
        self,
        bound: structlog.stdlib.BoundLogger,
        note: Callable[[str, str], None] | None = None,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        self._bound = bound
        self._note = note
        self._echo = echo
        self._pending = {"stdout": "", "stderr": ""}
        self._logged = {"stdout": 0, "stderr": 0}
        self._dropped = {"stdout": 0, "stderr": 0}

    def __call__(self, stream: str, chunk: str) -> None:
        lines = (self._pending.get(stream, "") + chunk).split("\n")
        rest = lines.pop()
        # A line without end (a progress bar, binary noise) is cut into pieces.
        while len(rest) > self.MAX_LINE_CHARS:
            lines.append(rest[: self.MAX_LINE_CHARS])
            rest = rest[self.MAX_LINE_CHARS :]
        self._pending[stream] = rest
        for line in lines:
            self._emit(stream, line)

    def _emit(self, stream: str, line: str) -> None:
        noted = _NOTE.match(line) if stream == "stdout" and self._note is not None else None
        if noted is not None and self._note is not None:
            self._note(noted["key"], noted["value"])
        if self._logged.get(stream, 0) >= self.MAX_LINES:
            self._dropped[stream] = self._dropped.get(stream, 0) + 1
            return
        self._logged[stream] = self._logged.get(stream, 0) + 1
        self._bound.debug("step.output", stream=stream, line=line[: self.MAX_LINE_CHARS])
        if self._echo is not None:
            self._echo(stream, line[: self.MAX_LINE_CHARS])

    def flush(self) -> None:
        for stream, rest in self._pending.items():
            if rest:
                self._emit(stream, rest)
        for stream, dropped in self._dropped.items():
            if dropped:
                self._bound.debug("step.output_not_logged", stream=stream, lines=dropped)
        self._pending = {"stdout": "", "stderr": ""}
        self._dropped = {"stdout": 0, "stderr": 0}
