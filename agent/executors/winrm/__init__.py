"""WinRM transport for Windows targets: ``WinRmExecutor`` and ``WinRmOptions``.

Modules: ``executor`` (the exchange over one WinRS shell), ``options`` (checks and
pywinrm's arguments; imports no transport library), ``errors`` (pywinrm, requests and
pyspnego errors to agent.errors), ``output`` (code page and CLIXML decoding), ``clixml``,
``scripts`` (the PowerShell command line and the stdin bootstraps).

``WinRmExecutor`` is loaded on first use: importing ``WinRmOptions`` must not import
pywinrm or requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.executors.winrm.options import WinRmOptions, WinRmTransport

if TYPE_CHECKING:
    from agent.executors.winrm.executor import WinRmExecutor

__all__ = ["WinRmExecutor", "WinRmOptions", "WinRmTransport"]


def __getattr__(name: str) -> object:
    # PEP 562: the executor module (and with it pywinrm) is imported only when asked for.
    if name == "WinRmExecutor":
        from agent.executors.winrm.executor import WinRmExecutor

        return WinRmExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
