"""Translate paramiko and socket errors into :mod:`agent.errors`, at the SSH boundary.

Modelled on httpx's ``map_httpcore_exceptions``: one context manager per phase (connect,
command, transfer), each mapping to the most specific error and chaining with ``from``.
Errors that already belong to :mod:`agent.errors` pass through untouched.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import paramiko

from agent.errors import (
    AuthenticationError,
    ConnectError,
    Disconnected,
    HostKeyError,
    ImagePrepError,
    TransferError,
    TransportError,
)
from agent.excerpt import clip

# What paramiko raises once a connection exists: its own errors, socket errors (OSError)
# and EOFError from a half-read packet.
TRANSPORT_FAILURES = (paramiko.SSHException, OSError, EOFError)


@dataclass(frozen=True)
class Endpoint:
    """Who we talk to, for messages (never carries a secret)."""

    user: str
    host: str
    port: int

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def login(self) -> str:
        return f"{self.user}@{self.address}"


def reason(exc: BaseException) -> str:
    """A short human reason: ``strerror`` for OS errors, else the message or class name."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text or type(exc).__name__


@contextmanager
def map_connect_errors(
    where: Endpoint, *, methods: tuple[str, ...], timeout: float
) -> Iterator[None]:
    """Errors while opening the TCP connection, negotiating SSH and authenticating.

    A peer that accepts the TCP connection and then says nothing (a hung sshd, an HTTP
    server, a tarpit) makes paramiko give up after ``timeout`` with whatever its threads
    saw last ("No existing session", "Error reading SSH protocol banner", a closed
    socket); any failure that took the whole time-out is reported as the time-out it is.
    """
    started = time.monotonic()
    try:
        yield
    except ImagePrepError:
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _connect_error(where, methods, timeout, exc, time.monotonic() - started) from exc
    except UnicodeError as exc:  # the idna codec: a label over 63 characters, say
        raise ConnectError(
            f"cannot resolve host {clip(where.host)!r}: not a valid host name"
        ) from exc


def _connect_error(
    where: Endpoint,
    methods: tuple[str, ...],
    timeout: float,
    exc: paramiko.SSHException | EOFError | OSError,
    elapsed: float,
) -> ImagePrepError:
    if isinstance(exc, paramiko.BadHostKeyException):  # only if keys were loaded into paramiko
        return HostKeyError(f"host key for {where.address} changed: {exc}")
    if isinstance(exc, paramiko.AuthenticationException):
        return _auth_error(where, methods, exc)
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve host {clip(where.host)!r}: {reason(exc)}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return ConnectError(f"cannot connect to {where.address}: {_refusal(exc)}")
    if isinstance(exc, TimeoutError):
        return ConnectError(f"timed out after {timeout:g} s connecting to {where.address}")
    if elapsed >= timeout * 0.95:
        return ConnectError(
            f"timed out after {timeout:g} s waiting for {where.address} to speak SSH (it "
            "accepted the connection but sent no SSH banner; --connect-timeout sets the "
            "time-out)"
        )
    if isinstance(exc, OSError):
        return ConnectError(f"cannot connect to {where.address}: {reason(exc)}")
    if isinstance(exc, EOFError):
        return ConnectError(f"{where.address} closed the connection during the handshake")
    return ConnectError(_negotiation_message(where, exc))


def _auth_error(
    where: Endpoint, methods: tuple[str, ...], exc: paramiko.AuthenticationException
) -> AuthenticationError:
    tried = ", ".join(methods) or "none"
    message = f"authentication as {where.login} failed (tried: {tried})"
    if isinstance(exc, paramiko.BadAuthenticationType) and exc.allowed_types:
        message += f"; the server accepts: {', '.join(exc.allowed_types)}"
    return AuthenticationError(message)


def _refusal(exc: paramiko.ssh_exception.NoValidConnectionsError) -> str:
    reasons = sorted({reason(err) for err in exc.errors.values()})
    return "; ".join(reasons).lower() or "connection refused"


def _negotiation_message(where: Endpoint, exc: paramiko.SSHException) -> str:
    text = reason(exc)
    if "banner" in text.lower():
        return f"{where.address} did not answer with an SSH banner ({text})"
    return f"SSH negotiation with {where.address} failed: {text}"


@contextmanager
def map_command_errors(
    where: Endpoint, label: str, *, connected: Callable[[], bool]
) -> Iterator[None]:
    """Errors while a command is being started or is running.

    A dead transport means the target went away (reboot, power-off): ``Disconnected``, so
    the engine can decide whether that was expected. Anything else that breaks a channel
    while the connection lives is a plain ``TransportError``.
    """
    try:
        yield
    except ImagePrepError:
        raise
    except TRANSPORT_FAILURES as exc:
        if not connected():
            raise Disconnected(
                f"connection to {where.address} lost while running: {label}"
            ) from exc
        raise TransportError(
            f"SSH failure on {where.address} running {label}: {reason(exc)}"
        ) from exc


@contextmanager
def map_transfer_errors(what: str) -> Iterator[None]:
    """Errors of an SFTP transfer (remote or local side): ``TransferError``."""
    try:
        yield
    except ImagePrepError:
        raise
    except TRANSPORT_FAILURES as exc:
        raise TransferError(f"{what}: {reason(exc)}") from exc
