"""Executors by target scheme. The only package that imports transport libraries."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agent.errors import UsageError
from agent.executors.base import Executor
from agent.targets import Target

if TYPE_CHECKING:
    from agent.executors.ssh import SshOptions
    from agent.executors.winrm import WinRmOptions


# The module of each scheme's executor: the one that imports its transport library.
# create_executor's branches name the same schemes; tests/unit/test_startup.py keeps the two
# in step.
_EXECUTOR_MODULES = {
    "ssh": "agent.executors.ssh.executor",
    "winrm": "agent.executors.winrm.executor",
    "winrm+https": "agent.executors.winrm.executor",
}


def import_transport(scheme: str) -> None:
    """Import the executor of ``scheme`` and its transport library now, not on connect.

    For the CLI, which imports what a run needs before it starts (agent/startup.py). An
    unknown scheme imports nothing: create_executor names it.
    """
    module = _EXECUTOR_MODULES.get(scheme)
    if module is not None:
        importlib.import_module(module)


def create_executor(
    target: Target,
    *,
    ssh_options: SshOptions | None = None,
    winrm_options: WinRmOptions | None = None,
) -> Executor:
    """An unconnected executor for ``target``; connecting happens on ``__enter__``.

    Options are checked here (UsageError) for WinRM, before anything is contacted.
    """
    # Transports are imported here so that `imageprep validate` never pays for
    # paramiko's or pywinrm's import.
    if target.scheme == "ssh":
        from agent.executors.ssh import SshExecutor, SshOptions

        return SshExecutor(target, ssh_options or SshOptions())
    if target.scheme in ("winrm", "winrm+https"):
        from agent.executors.winrm import WinRmExecutor, WinRmOptions

        return WinRmExecutor(target, winrm_options or WinRmOptions())
    raise UsageError(f"target {target.display}: {target.scheme}:// targets are not supported yet")
