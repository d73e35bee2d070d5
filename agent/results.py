"""Frozen result types: what a command, a step and a run produced."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


def _tail(text: str, lines: int) -> str:
    parts = text.splitlines()
    return "\n".join(parts[-lines:]) if lines > 0 else ""


@dataclass(frozen=True)
class CommandResult:
    """What one command on the target produced.

    ``exit_code`` is None only when the command never reported one (it was killed or the
    connection went away); executors raise instead of returning such a result, so callers
    normally see an int.
    """

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, stream: str = "stderr", lines: int = 20) -> str:
        """The last ``lines`` lines of ``stdout`` or ``stderr``."""
        text = self.stdout if stream == "stdout" else self.stderr
        return _tail(text, lines)


class StepStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"  # on_failure: abort or continue
    IGNORED = "ignored"  # failed, but on_failure: ignore
    SKIPPED = "skipped"  # `when` was false, or deselected
    TIMED_OUT = "timed_out"
    DISCONNECTED = "disconnected"  # lost the connection where none was expected
    NOT_RUN = "not_run"  # the run stopped before reaching it


@dataclass(frozen=True)
class StepResult:
    """The outcome of one planned step."""

    phase: str
    name: str
    status: StepStatus
    exit_code: int | None = None
    attempts: int = 0
    duration: float = 0.0
    stdout_tail: str = ""
    stderr_tail: str = ""
    message: str = ""
    destructive: bool = False
    disconnected: bool = False  # an expected disconnect was observed

    @property
    def succeeded(self) -> bool:
        return self.status in (StepStatus.OK, StepStatus.IGNORED, StepStatus.SKIPPED)
