"""The TCP connection under SSH (agent/executors/ssh/tcp.py), against loopback sockets only."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import paramiko
import pytest

from agent.executors.ssh.tcp import open_tcp
from tests.unit.hostile_peers import closed_port


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield server
    server.close()


def test_connects_and_tunes_the_socket(listener: socket.socket) -> None:
    """The socket is connected to the address, with Nagle off and keepalives on."""
    sock = open_tcp("127.0.0.1", listener.getsockname()[1], timeout=5)
    with sock:
        assert sock.getpeername() == listener.getsockname()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def test_an_ascii_name_does_not_load_the_idna_codec(listener: socket.socket) -> None:
    """A plain host name reaches getaddrinfo as bytes: no encodings.idna in start-up."""
    probe = (
        "import sys\n"
        "from agent.executors.ssh.tcp import open_tcp\n"
        f"open_tcp('localhost', {listener.getsockname()[1]}, timeout=5).close()\n"
        "print('encodings.idna' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "False"


def test_refused_everywhere_names_each_address() -> None:
    """Nothing listening: paramiko's NoValidConnectionsError with the address's reason."""
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError) as caught:
        open_tcp("127.0.0.1", closed_port(), timeout=5)
    (error,) = caught.value.errors.values()
    assert isinstance(error, ConnectionRefusedError)


@pytest.mark.parametrize(
    "host",
    ["é" * 64 + ".invalid", "h" * 64 + ".invalid", "a..invalid", ".invalid", "h" * 64],
    ids=["international-label-too-long", "label-too-long", "empty-label", "leading-dot", "last"],
)
def test_a_name_the_idna_codec_refuses_is_a_unicode_error(host: str) -> None:
    """An empty or over-long label fails as in the idna codec, before any lookup is sent."""
    with pytest.raises(UnicodeError):
        open_tcp(host, 22, timeout=5)
