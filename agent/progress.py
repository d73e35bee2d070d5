"""What a human sees: a line when each step starts and ends, a heartbeat while it runs,
then a summary.

The same text on a terminal and in a CI log (a build log of JSON lines is unreadable);
machines read result.json, or the JSON log lines with ``--log-format json``, where the
summary is one JSON object on stdout. Colour only on a terminal, and never when
``NO_COLOR`` is set (https://no-color.org). ``-q`` prints only the summary; ``-v`` adds
each step's output as it arrives. Everything passes the console redaction.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import TextIO

from agent import console
from agent.backups.base import BackupRecord
from agent.outcome import ExitCode
from agent.plan import Plan, PlannedStep
from agent.recorder import ProgressSink
from agent.results import StepResult, StepStatus
from agent.runner import RunOutcome

# A step that runs this long without a word gets a "still running" line, so a 40-minute
# Sysprep does not look like a hung job. IMAGEPREP_HEARTBEAT_SECONDS changes it.
HEARTBEAT_SECONDS = 30.0

_MARKS = {
    StepStatus.OK: "ok",
    StepStatus.SKIPPED: "skip",
    StepStatus.IGNORED: "ignored",
    StepStatus.FAILED: "FAILED",
    StepStatus.TIMED_OUT: "TIMEOUT",
    StepStatus.DISCONNECTED: "LOST",
    StepStatus.NOT_RUN: "not run",
}
_COLOURS = {
    StepStatus.OK: "32",  # green
    StepStatus.SKIPPED: "2",  # dim
    StepStatus.IGNORED: "33",  # yellow
    StepStatus.FAILED: "1;31",  # bold red
    StepStatus.TIMED_OUT: "1;31",
    StepStatus.DISCONNECTED: "1;31",
    StepStatus.NOT_RUN: "2",
}


def colour_wanted(stream: TextIO) -> bool:
    """Colour on a terminal, unless NO_COLOR is set to anything non-empty."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def heartbeat_seconds() -> float:
    value = os.environ.get("IMAGEPREP_HEARTBEAT_SECONDS")
    try:
        return float(value) if value else HEARTBEAT_SECONDS
    except ValueError:
        return HEARTBEAT_SECONDS


def elapsed_text(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``1h02m``: short and unambiguous in a log."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ConsoleProgress(ProgressSink):
    """Step lines on stderr: ``[n/N] phase/step`` at the start, its status and time at the end."""

    def __init__(
        self,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        verbose: bool = False,
        heartbeat: float | None = None,
        colour: bool | None = None,
    ) -> None:
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._verbose = verbose
        self._heartbeat = heartbeat_seconds() if heartbeat is None else heartbeat
        self._colour = colour_wanted(self._stream) if colour is None else colour
        self._index: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()
        self._running: tuple[str, float] | None = None
        self._wake = threading.Event()
        self._ticker: threading.Thread | None = None

    def _write(self, text: str) -> None:
        if self._enabled:
            with self._lock:
                # A step's message quotes its output, which may hold a password.
                console.write(text, self._stream)

    def _painted(self, status: StepStatus, text: str) -> str:
        return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if self._colour else text

    def _counter(self, step: PlannedStep) -> str:
        if not self._total:
            return ""
        width = len(str(self._total))
        return f"[{self._index.get(step.key, 0):>{width}}/{self._total}] "

    def plan_ready(self, plan: Plan) -> None:
        self._index = {step.key: n for n, step in enumerate(plan.steps, start=1)}
        self._total = len(plan.steps)

    def step_started(self, step: PlannedStep) -> None:
        if step.spec.destructive:
            self._write(f"{self._counter(step)}>>> {step.key}: the point of no return\n")
        self._write(f"{self._counter(step)}{step.key} ...\n")
        self._running = (f"{self._counter(step)}{step.key}", time.monotonic())
        self._start_ticker()

    def step_output(self, step: PlannedStep, stream: str, line: str) -> None:
        if self._verbose:
            self._write(f"    {'|' if stream == 'stdout' else '!'} {line}\n")

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        self._running = None
        mark = self._painted(result.status, f"{_MARKS[result.status]:<7}")
        detail = ""
        if result.status is StepStatus.SKIPPED:
            detail = f"  ({result.message})"
        elif not result.succeeded or result.status is StepStatus.IGNORED:
            detail = f"  {result.message}"
        self._write(
            f"{self._counter(step)}{mark} {step.key}  {elapsed_text(result.duration)}{detail}\n"
        )

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        if error:
            self._write(f"{self._painted(StepStatus.FAILED, 'FAILED ')} backup  {error}\n")
        elif record is None:
            self._write("skip    backup  (--no-backup)\n")
        else:
            self._write(
                f"{self._painted(StepStatus.OK, 'ok     ')} backup  {record.reference}  "
                f"{elapsed_text(record.duration)}\n"
            )

    def close(self) -> None:
        """Stop the heartbeat thread (the run is over)."""
        self._running = None
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            self._wake.set()
            ticker.join()

    def _start_ticker(self) -> None:
        if self._ticker is None and self._enabled and self._heartbeat > 0:
            self._wake.clear()
            self._ticker = threading.Thread(
                target=self._tick, name="imageprep-heartbeat", daemon=True
            )
            self._ticker.start()

    def _tick(self) -> None:
        # One thread for the run: it wakes every heartbeat and speaks only for a step
        # that has been running at least that long since it last spoke.
        spoke: tuple[str, float] | None = None
        while not self._wake.wait(min(self._heartbeat, 1.0)):
            running = self._running
            if running is None:
                continue
            label, started = running
            now = time.monotonic()
            last = spoke[1] if spoke is not None and spoke[0] == label else started
            if now - last >= self._heartbeat:
                self._write(f"{label} still running ({elapsed_text(now - started)})\n")
                spoke = (label, now)


def print_summary(outcome: RunOutcome, log_format: str) -> None:
    result = outcome.result
    if log_format == "json":
        summary = {
            "run_id": outcome.run_id,
            "status": result.get("status"),
            "exit_code": int(outcome.exit_code),
            "message": outcome.message,
            "result": str(outcome.run_dir / "result.json"),
        }
        console.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    steps = result.get("steps", [])
    counts: dict[str, int] = {}
    for step in steps:
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    verdict = "succeeded" if outcome.exit_code is ExitCode.OK else "FAILED"
    code = int(outcome.exit_code)
    lines = [
        f"imageprep run {outcome.run_id} {verdict} (exit {code}): {outcome.message}",
        f"  target:  {result.get('target')}  profile: {result.get('profile')}  "
        f"playbook: {result.get('playbook')}",
        f"  steps:   {tally or 'none'}",
    ]
    backup = result.get("backup")
    if backup:
        lines.append(f"  backup:  {backup.get('reference')}")
    reached = "yes" if result.get("point_of_no_return_reached") else "no"
    powered_off = "yes" if result.get("powered_off") else "no"
    lines.append(f"  point of no return reached: {reached}; powered off: {powered_off}")
    lines.append(f"  report:  {outcome.run_dir / 'result.json'}")
    console.write("\n".join(lines) + "\n")
