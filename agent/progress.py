"""What a human sees on a terminal: a line per step with its duration, then a summary.

Machines read result.json or the JSON log lines instead; with ``--log-format json`` the
summary is one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from agent import console
from agent.backups.base import BackupRecord
from agent.outcome import ExitCode
from agent.plan import PlannedStep
from agent.recorder import ProgressSink
from agent.results import StepResult, StepStatus
from agent.runner import RunOutcome

_MARKS = {
    StepStatus.OK: "ok",
    StepStatus.SKIPPED: "skip",
    StepStatus.IGNORED: "ignored",
    StepStatus.FAILED: "FAILED",
    StepStatus.TIMED_OUT: "TIMEOUT",
    StepStatus.DISCONNECTED: "LOST",
    StepStatus.NOT_RUN: "not run",
}


class ConsoleProgress(ProgressSink):
    def __init__(self, *, enabled: bool, stream: TextIO | None = None) -> None:
        self._enabled = enabled
        self._stream = stream or sys.stderr
        # The transient "running" line only makes sense where it can be overwritten.
        self._live = enabled and self._stream.isatty()

    def _write(self, text: str) -> None:
        if self._enabled:
            # A step's message quotes its output, which may hold a password.
            console.write(text, self._stream)

    def step_started(self, step: PlannedStep) -> None:
        if step.destructive:
            self._clear()
            self._write(f"  >>>     {step.key}: point of no return\n")
        if self._live:
            self._write(f"  ...     {step.key}")

    def _clear(self) -> None:
        if self._live:
            self._write("\r\x1b[2K")

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        mark = _MARKS[result.status]
        detail = ""
        if result.status is StepStatus.SKIPPED:
            detail = f"  ({result.message})"
        elif not result.succeeded or result.status is StepStatus.IGNORED:
            detail = f"  {result.message}"
        self._clear()
        self._write(f"  {mark:<7} {step.key:<45} {result.duration:6.2f}s{detail}\n")

    def backup_finished(self, record: BackupRecord | None, error: str | None) -> None:
        if error:
            self._write(f"  FAILED  backup  {error}\n")
        elif record is None:
            self._write("  skip    backup  (--no-backup)\n")
        else:
            self._write(f"  ok      backup  {record.reference}  {record.duration:.2f}s\n")


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
