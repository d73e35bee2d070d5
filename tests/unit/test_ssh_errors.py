"""Translation of paramiko and socket errors into agent.errors (no network)."""

from __future__ import annotations

import re
import socket

import paramiko
import pytest

from agent.errors import (
    AuthenticationError,
    ConnectError,
    Disconnected,
    HostKeyError,
    TransferError,
    TransportError,
)
from agent.executors.ssh.errors import (
    Endpoint,
    map_command_errors,
    map_connect_errors,
    map_transfer_errors,
)

WHERE = Endpoint("azureuser", "vm.example", 2222)


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (socket.gaierror(-2, "Name or service not known"), ConnectError, "cannot resolve host"),
        (TimeoutError(), ConnectError, "timed out after 5 s"),
        (ConnectionResetError(104, "Connection reset by peer"), ConnectError, "reset by peer"),
        (EOFError(), ConnectError, "closed the connection"),
        (paramiko.SSHException("Error reading SSH protocol banner"), ConnectError, "SSH banner"),
        (
            paramiko.ssh_exception.NoValidConnectionsError(
                {("1.2.3.4", 22): ConnectionRefusedError(111, "Connection refused")}
            ),
            ConnectError,
            "connection refused",
        ),
        (
            paramiko.AuthenticationException("Authentication failed."),
            AuthenticationError,
            "authentication as azureuser@vm.example:2222 failed (tried: password (env:PW))",
        ),
        (
            paramiko.BadAuthenticationType("bad", ["publickey"]),
            AuthenticationError,
            "the server accepts: publickey",
        ),
        (
            paramiko.BadHostKeyException(
                "h", paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
            ),
            HostKeyError,
            "changed",
        ),
    ],
)
def test_connect_errors_are_translated(
    raised: Exception, expected: type[Exception], text: str
) -> None:
    """Each paramiko/socket failure while connecting becomes one agent error, chained."""
    with (
        pytest.raises(expected, match=re.escape(text)) as caught,
        map_connect_errors(WHERE, methods=("password (env:PW)",), timeout=5),
    ):
        raise raised
    assert caught.value.__cause__ is raised


def test_command_errors_on_a_dead_transport_are_disconnected() -> None:
    """A transport failure mid-command is Disconnected when the connection is gone."""
    with (
        pytest.raises(Disconnected, match="lost while running: reboot"),
        map_command_errors(WHERE, "reboot", connected=lambda: False),
    ):
        raise EOFError()


def test_command_errors_on_a_live_transport_are_transport_errors() -> None:
    """A channel failure while the connection lives is a TransportError, not Disconnected."""
    with (
        pytest.raises(TransportError) as caught,
        map_command_errors(WHERE, "ls", connected=lambda: True),
    ):
        raise paramiko.ChannelException(1, "Administratively prohibited")
    assert not isinstance(caught.value, Disconnected)


def test_transfer_errors_are_transfer_errors() -> None:
    """An SFTP failure becomes TransferError with the OS reason."""
    with (
        pytest.raises(TransferError, match="cannot copy: No such file"),
        map_transfer_errors("cannot copy"),
    ):
        raise FileNotFoundError(2, "No such file")
