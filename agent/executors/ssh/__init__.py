"""SSH transport for Linux targets: ``SshExecutor`` and ``SshOptions``.

Modules: ``executor`` (the exchange over exec channels and the root shell), ``channel``
(reading a channel's two streams), ``exec`` (one command per exec channel), ``rootshell``
(the run's one sudo shell), ``hostkeys`` (known_hosts), ``jump`` (ProxyJump),
``errors`` (paramiko and socket errors to agent.errors), ``options`` (no paramiko).

``SshExecutor`` is loaded on first use: importing ``SshOptions`` (planning, validation,
the CLI's option parsing) must not import paramiko or fabric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.executors.ssh.options import JumpHost, SshOptions

if TYPE_CHECKING:
    from agent.executors.ssh.executor import SshExecutor

__all__ = ["JumpHost", "SshExecutor", "SshOptions"]


def __getattr__(name: str) -> object:
    # PEP 562: the executor module (and with it paramiko) is imported only when asked for.
    if name == "SshExecutor":
        from agent.executors.ssh.executor import SshExecutor

        return SshExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
