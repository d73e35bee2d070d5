"""The TCP connection under an SSH connection, opened here rather than by paramiko.

Why not let paramiko's ``SSHClient.connect`` open it: CPython's ``getaddrinfo`` encodes a
host name given as text with the ``idna`` codec, and its first use imports
``encodings.idna``, ``stringprep`` and ``unicodedata``: the first ``getaddrinfo`` of a
run took about 3 ms against 0.01 ms for the next (``-X importtime`` shows 10 ms, its own
overhead included), for a name that is nearly always an address or plain ASCII. An ASCII
name goes to ``getaddrinfo`` as bytes, which skips the codec, after the one check the
codec makes of an ASCII name (every label 1 to 63 characters; the last may be empty, a
trailing dot): a name that fails it raises the same UnicodeError, which
``errors.map_connect_errors`` reports, and is never looked up. Any other name still
takes the codec.

The addresses are tried in the order ``getaddrinfo`` gives them, with the policy of
paramiko's ``SSHClient.connect``, so that errors read as before: a refused or unreachable
address moves on to the next, any other error (a time-out, an unreachable network) ends
the attempt at once, and when every address refused, paramiko's own
``NoValidConnectionsError`` carries each address's reason.
"""

from __future__ import annotations

import contextlib
import errno
import socket

import paramiko

# With keepalives (the transport's), a target that vanished without closing the
# connection is noticed within about half a minute.
_TCP_USER_TIMEOUT_MS = 30_000
# What makes paramiko try the next address rather than give up.
_NEXT_ADDRESS = (errno.ECONNREFUSED, errno.EHOSTUNREACH)


def open_tcp(host: str, port: int, *, timeout: float) -> socket.socket:
    """A connected, tuned TCP socket to ``host``:``port``; ``timeout`` bounds each attempt."""
    name: str | bytes = _checked_ascii(host) if host.isascii() else host
    refused: dict[tuple[str, int] | tuple[str, int, int, int], Exception] = {}
    for family, _, _, _, address in socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            if exc.errno not in _NEXT_ADDRESS:
                raise
            refused[(str(address[0]), int(address[1]))] = exc
            continue
        tune(sock)
        return sock
    raise paramiko.ssh_exception.NoValidConnectionsError(refused)


def _checked_ascii(host: str) -> bytes:
    """``host`` as bytes, if the idna codec would pass it (what it checks of ASCII names)."""
    *labels, last = host.split(".")
    if any(not 0 < len(label) < 64 for label in labels) or len(last) >= 64:
        raise UnicodeError(f"a label of {host!r} is empty or longer than 63 characters")
    return host.encode("ascii")


def tune(sock: socket.socket) -> None:
    """Low latency for request/response, and dead-peer detection by the kernel."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, _TCP_USER_TIMEOUT_MS)
