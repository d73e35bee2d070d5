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
* Nothing from a transport library escapes: every error is one of ``agent.errors``.
* Not thread safe: one run, one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self, runtime_checkable

from agent.results import CommandResult

OutputCallback = Callable[[str, str], None]


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
