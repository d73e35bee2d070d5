"""The one small transport interface everything else sits on.

Contract (every implementation):

* ``run`` blocks until the command ends, its deadline passes, or the connection drops.
  stdout and stderr are read concurrently, so a command printing many MiB never stalls.
* ``become=True`` runs the command as root (sudo on Linux, elevated on Windows). How
  privilege is obtained is the executor's business; it authenticates once per run.
* ``timeout`` (seconds, None = no limit) is enforced on the target *and* by the client:
  past it the command is killed and :class:`~agent.errors.CommandTimeout` is raised.
* A dropped connection raises :class:`~agent.errors.Disconnected`; the caller decides
  whether that was expected (a shutdown step) or a failure.
* ``on_output(stream, text)`` is called with decoded chunks ("stdout"/"stderr") as they
  arrive, for live logs. ``stdout_sink``, when given, receives stdout as raw bytes instead
  of it being kept in the result (binary streams such as a tar backup).
* ``then``: the commands the caller will run next, in order, each of them whenever its
  ``after`` holds for the command before it (:class:`FollowUp`). An executor may send any
  prefix of them ahead, so that the target starts each the moment the one before it ends
  instead of a round trip later; the caller's ``run`` of the same command and timeout then
  only collects it. A command sent ahead whose gate failed does not run; asked for anyway,
  it is sent then. The caller must keep its word: a command sent ahead whose gate passed
  runs whether or not it is asked for (only the SSH root shell sends ahead).
* Nothing from a transport library escapes: every error is one of ``agent.errors``.
* Not thread safe: one run, one thread.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, ClassVar, Protocol, Self, runtime_checkable

import structlog

from agent.results import CommandResult
from agent.targets import Target

OutputCallback = Callable[[str, str], None]

log = structlog.get_logger(__name__)


@runtime_checkable
class Executor(Protocol):
    """Runs commands on one target over one connection."""

    @property
    def description(self) -> str:
        """Where this executor is connected, without secrets (for logs and reports)."""
        ...

    def run(
        self,
        command: str,
        *,
        become: bool = False,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        stdout_sink: BinaryIO | None = None,
        then: Sequence[FollowUp] = (),
    ) -> CommandResult: ...

    def put(self, local: Path, remote: str, *, mode: int = 0o600) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...

    def is_connected(self) -> bool: ...

    def wait_disconnected(self, timeout: float) -> bool:
        """Block until the target closes the connection (it powered off); False on timeout."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True)
class FollowUp:
    """A command the caller will run next, which an executor may send ahead (``then``).

    ``after``: when the target may start it. ``None``: once the command before it ran,
    whatever its exit code; a tuple: once the command before it exited with one of these.
    """

    command: str
    timeout: float | None
    after: tuple[int, ...] | None


@dataclass(frozen=True)
class Output:
    """What a command printed: decoded text (stdout empty when it went to a sink), byte counts."""

    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int


@dataclass(frozen=True)
class Exchanged:
    """What a transport's exchange of one command returned: its exit code and output."""

    exit_code: int
    output: Output


def first_line(command: str, limit: int = 80) -> str:
    """The first non-blank line of ``command``, clipped: how logs and errors name it."""
    line = next((s.strip() for s in command.splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


class BaseExecutor(ABC):
    """What every transport shares; a transport implements only the exchange.

    Like testinfra's ``BaseBackend.result()`` and httpx's ``BaseTransport``: ``run``
    checks its arguments, logs the command's start and end under the transport's name
    and builds the frozen :class:`CommandResult`; ``_exchange`` sends the command and
    returns its exit code and output, or raises one of :mod:`agent.errors`. The context
    manager connects on enter and closes on exit.
    """

    #: Prefix of the log events ("ssh" gives ``ssh.command_start``, ``ssh.command_end``).
    transport_name: ClassVar[str]
    #: Whether ``run`` may send the commands of ``then`` ahead (the engine offers none else).
    sends_ahead: ClassVar[bool] = False

    def __init__(self, target: Target) -> None:
        self._target = target

    @property
    def description(self) -> str:
        """Where this executor is connected, without secrets (for logs and reports)."""
        return self._target.display

    def run(
        self,
        command: str,
        *,
        become: bool = False,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        stdout_sink: BinaryIO | None = None,
        then: Sequence[FollowUp] = (),
    ) -> CommandResult:
        """Run ``command`` under the contract in this module's docstring."""
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        label = first_line(command)
        log.debug(
            f"{self.transport_name}.command_start", command=label, become=become, timeout=timeout
        )
        started = time.monotonic()
        done = self._exchange(
            command,
            label,
            become=become,
            timeout=timeout,
            on_output=on_output,
            stdout_sink=stdout_sink,
            then=then,
        )
        duration = time.monotonic() - started
        output = done.output
        log.debug(
            f"{self.transport_name}.command_end",
            command=label,
            become=become,
            exit_code=done.exit_code,
            duration_s=round(duration, 3),
            stdout_bytes=output.stdout_bytes,
            stderr_bytes=output.stderr_bytes,
        )
        return CommandResult(
            command=command,
            exit_code=done.exit_code,
            stdout=output.stdout,
            stderr=output.stderr,
            duration=duration,
            stdout_bytes=output.stdout_bytes,
            stderr_bytes=output.stderr_bytes,
        )

    @abstractmethod
    def _exchange(
        self,
        command: str,
        label: str,
        *,
        become: bool,
        timeout: float | None,
        on_output: OutputCallback | None,
        stdout_sink: BinaryIO | None,
        then: Sequence[FollowUp],
    ) -> Exchanged:
        """Send ``command`` (named ``label`` in errors) and return how it ended."""

    @abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent while it is up)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection and everything on the target that belongs to it."""

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
