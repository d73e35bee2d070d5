"""Executors by target scheme. The only package that imports transport libraries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.errors import UsageError
from agent.executors.base import Executor
from agent.targets import Target

if TYPE_CHECKING:
    from agent.executors.ssh import SshOptions


def create_executor(target: Target, *, ssh_options: SshOptions | None = None) -> Executor:
    """An unconnected executor for ``target``; connecting happens on ``__enter__``."""
    if target.scheme == "ssh":
        # Imported here so that `imageprep validate` never pays for paramiko's import.
        from agent.executors.ssh import SshExecutor, SshOptions

        return SshExecutor(target, ssh_options or SshOptions())
    raise UsageError(f"target {target.display}: {target.scheme}:// targets are not supported yet")
