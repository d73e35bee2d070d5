"""Reaching a target through SSH jump hosts (OpenSSH's ProxyJump), one hop at a time.

Each hop is a full SSH connection of its own, made over a ``direct-tcpip`` channel of the
hop before it: its host key is verified against the same known_hosts file and policy as
the target's, and it authenticates with the same key or agent (ProxyJump does the same).
No password goes to a jump host. The last hop's channel to the target becomes the socket
of the target's own connection, so the target still verifies and authenticates end to
end: a jump host relays bytes it cannot read.

Every failure names the jump host, not the target, except a target the last hop could not
reach, which names both.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import paramiko

from agent.errors import ConnectError, TransportError, UsageError
from agent.executors.ssh.errors import (
    TRANSPORT_FAILURES,
    Endpoint,
    map_connect_errors,
    reason,
)
from agent.executors.ssh.hostkeys import HostKeyPolicy, KnownHostsVerifier
from agent.executors.ssh.options import JumpHost
from agent.executors.ssh.tcp import open_tcp

__all__ = ["HopAuth", "JumpChain", "open_jump_chain"]

# How often an idle hop sends a keepalive (as the target's connection does).
_KEEPALIVE_INTERVAL = 5


@dataclass(frozen=True)
class HopAuth:
    """What every hop may authenticate with: a loaded key and/or the SSH agent."""

    pkey: paramiko.PKey | None
    allow_agent: bool
    look_for_keys: bool
    methods: tuple[str, ...]


class JumpChain:
    """Open connections to the jump hosts, and the channel from the last one to the target."""

    def __init__(self) -> None:
        self.clients: list[paramiko.SSHClient] = []
        self.channel: paramiko.Channel | None = None

    def close(self) -> None:
        """Close the hops, the last first (closing a hop closes every channel through it)."""
        for client in reversed(self.clients):
            with contextlib.suppress(*TRANSPORT_FAILURES):
                client.close()
        self.clients.clear()
        self.channel = None


def open_jump_chain(
    jumps: Sequence[JumpHost],
    target: Endpoint,
    *,
    auth: HopAuth,
    known_hosts: Any,
    policy: HostKeyPolicy,
    timeout: float,
) -> JumpChain:
    """Connect through ``jumps`` in order; return the chain whose ``channel`` reaches TARGET."""
    chain = JumpChain()
    hops = [Endpoint(jump.user or target.user, jump.host, jump.port) for jump in jumps]
    try:
        sock: socket.socket | paramiko.Channel | None = None
        for index, where in enumerate(hops):
            with _naming_jump(where):
                client = _connect_hop(where, sock, auth, known_hosts, policy, timeout)
            chain.clients.append(client)
            to = hops[index + 1] if index + 1 < len(hops) else target
            sock = _forward(client, where, to, timeout)
        if not isinstance(sock, paramiko.Channel):
            raise UsageError("no jump host given")
        chain.channel = sock
        return chain
    except BaseException:
        chain.close()
        raise


@contextmanager
def _naming_jump(where: Endpoint) -> Iterator[None]:
    """Errors of a hop name it as the jump host, so nobody goes looking at the target."""
    try:
        yield
    except TransportError as exc:
        raise type(exc)(f"jump host {where.address}: {exc}") from exc


def _connect_hop(
    where: Endpoint,
    sock: socket.socket | paramiko.Channel | None,
    auth: HopAuth,
    known_hosts: Any,
    policy: HostKeyPolicy,
    timeout: float,
) -> paramiko.SSHClient:
    verifier = KnownHostsVerifier(known_hosts, where.host, where.port, policy)

    def transport_factory(hop_sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(hop_sock, **kwargs)
        verifier.prefer_known_types(transport)
        return transport

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(verifier.as_policy())
    opened: socket.socket | None = None
    try:
        with map_connect_errors(where, methods=auth.methods, timeout=timeout):
            if sock is None:  # the first hop
                sock = opened = open_tcp(where.host, where.port, timeout=timeout)
            client.connect(
                where.host,
                port=where.port,
                username=where.user,
                pkey=auth.pkey,
                allow_agent=auth.allow_agent,
                look_for_keys=auth.look_for_keys,
                sock=sock,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                transport_factory=transport_factory,
            )
    except BaseException:
        with contextlib.suppress(*TRANSPORT_FAILURES):
            client.close()
        if opened is not None:  # the client closes it only if its transport was made
            with contextlib.suppress(*TRANSPORT_FAILURES):
                opened.close()
        raise
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(_KEEPALIVE_INTERVAL)
    return client


def _forward(
    client: paramiko.SSHClient, hop: Endpoint, to: Endpoint, timeout: float
) -> paramiko.Channel:
    """A direct-tcpip channel from HOP to TO (what ``ssh -W`` / ProxyJump open)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectError(f"jump host {hop.address} closed the connection")
    try:
        return transport.open_channel(
            "direct-tcpip", (to.host, to.port), ("127.0.0.1", 0), timeout=timeout
        )
    except TRANSPORT_FAILURES as exc:
        raise ConnectError(
            f"jump host {hop.address} could not connect to {to.address}: {reason(exc)}"
        ) from exc
