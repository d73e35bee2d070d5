"""SshOptions and JumpHost: how to reach and authenticate to a Linux target.

Imports no transport library, so that planning and validation can name SSH options
without loading paramiko or fabric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from agent.errors import UsageError
from agent.secrets import Secret

__all__ = ["JumpHost", "SshOptions"]


@dataclass(frozen=True)
class JumpHost:
    """One ``--jump USER@HOST[:PORT]`` (or one entry of an ssh_config ProxyJump)."""

    user: str | None
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str, *, what: str = "--jump") -> JumpHost:
        """``USER@HOST[:PORT]``, ``HOST``, ``[V6]:PORT``; anything else is a UsageError."""
        if not text or text.startswith("-") or any(c.isspace() for c in text):
            raise UsageError(f"{what} {text!r}: expected USER@HOST[:PORT]")
        try:
            parts = urlsplit(f"ssh://{text}")
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"{what} {text!r}: expected USER@HOST[:PORT] ({exc})") from None
        if parts.password is not None or parts.path or parts.query or not parts.hostname:
            raise UsageError(f"{what} {text!r}: expected USER@HOST[:PORT]")
        if port is not None and not 1 <= port <= 65535:
            raise UsageError(f"{what} {text!r}: port {port} is outside 1-65535")
        return cls(parts.username or None, parts.hostname, port or 22)


@dataclass(frozen=True)
class SshOptions:
    """How to authenticate and which host keys to trust. Secrets arrive as ``Secret``."""

    identity: Path | None = None
    identity_passphrase: Secret | None = None
    password: Secret | None = None
    sudo_password: Secret | None = None
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    use_agent: bool = True
    connect_timeout: float = 15.0
    # ProxyJump: reach the target through these SSH hosts, in order (see jump).
    jumps: tuple[JumpHost, ...] = ()
